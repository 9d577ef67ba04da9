"""Reading a namespace's state from its tar alone, whatever happened to it.

Why one module of this size: recovering batches from a damaged tar (recovery,
resync, uncertain members, torn tails) is one algorithm whose cases depend on
each other.

:func:`scan` walks the tar's headers and returns the complete batches in
order, plus what it could not use:

- **damage**: a header that fails its checksum. If mummi_io's own checks
  (the mark's name check and the data's CRC-32) still confirm the member, it
  is *recovered*; otherwise the scan skips by the damaged header's size
  field if that lands on a valid header, and else looks for the next valid
  header (*resync*). Members found by looking are *uncertain* until the scan
  reaches the end: if a zero gap follows them, they were the data of the
  damaged member (a tar stored as a value) and are dropped. One bad header
  costs at most its own member, never what follows; the range is reported,
  never cut;
- **incomplete batches**: a batch counts only when every block from its
  first header to the end of its last member is accounted for (its members,
  or damage): zeros inside it are a hole left by a crash;
- the **tail**: bytes after the last complete batch. It is *torn* (the trace
  of a writer killed mid-batch, safe to cut once copied aside) only when it
  holds nothing but members of one batch that starts right there, zeros, and
  a member cut short at the end of the file; anything else is left in place;
- **zero gaps**: zero blocks before the last member (``tar -t`` stops at the
  first; mummi_io reads past them, as ``tar --ignore-zeros`` does).

Which members make a batch (see :mod:`.tarformat`): members with mummi_io's
mark belong to the batch their mark points to. Members of the earlier format
(owner ``mummi_io``, no mark) wait for the ``.mummi_io.journal`` member that
ended every batch then. Members of other tools (pytaridx, ``tar``) are
complete one by one; their hard links are followed, and symbolic links,
directories and sparse files are not values.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ...core.crc import crc32
from .tarformat import (
    BLOCK, JOURNAL_NAME, OWNER, ZERO_BLOCK, Mark, name_check, padding, parse_header, parse_journal, parse_pax,
    pax_comment,
)

_OWNER = OWNER.encode()
_EXTENSIONS = (b"x", b"g", b"L", b"K")
_REGULAR = (b"0", b"\0", b"7")
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")


class Source(Protocol):
    """Random reads of a tar's bytes."""

    size: int

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end)."""

    def next_header(self, offset: int) -> int | None:
        """The first offset at or after ``offset`` holding a valid ustar header, or ``None``."""


class MappedTar:
    """A tar file read through a read-only memory map (no system call per header)."""

    def __init__(self, fd: int, size: int | None = None) -> None:
        self.size = os.fstat(fd).st_size if size is None else size
        self._map = mmap.mmap(fd, self.size, access=mmap.ACCESS_READ) if self.size else None

    def read(self, offset: int, size: int) -> bytes:
        if self._map is None or offset >= self.size:
            return b""
        return self._map[offset:min(offset + size, self.size)]

    def next_header(self, offset: int) -> int | None:
        if self._map is None:
            return None
        offset += -offset % BLOCK
        search = offset + 257
        while True:
            found = self._map.find(b"ustar", search)
            if found < 0:
                return None
            start = found - 257
            if start >= offset and start % BLOCK == 0 and parse_header(self._map[start:start + BLOCK]):
                return start
            search = found + 1

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def __enter__(self) -> MappedTar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tidy_member_name(name: str) -> str:
    """The key a foreign tar member names: ``./a``, ``a/./b`` and ``a//b`` as ``a`` and ``a/b``.

    Archivers write these spellings (``tar -cf x.tar ./run``); extracted, they
    are the same file. ``..`` and an absolute name stay as they are, so
    remain invalid keys: a key never climbs out of its namespace.
    """
    if "/." not in name and "//" not in name and not name.startswith("./"):
        return name  # mummi_io's own names, and most others: nothing to tidy
    if name.startswith("/"):
        return name
    return "/".join(part for part in name.split("/") if part not in ("", "."))


@dataclass
class Member:
    """One member as found in the tar."""

    name: str
    start: int  # offset of its first header block (a PAX header, if any)
    data_offset: int
    size: int
    mark: Mark | None
    owner: bytes
    kind: str  # "file", "hardlink", or "other" (directory, symbolic link, sparse file, device...)
    linkname: str = ""
    recovered: bool = False  # its header was damaged; mummi_io's checks confirmed it

    @property
    def end(self) -> int:
        return self.data_offset + self.size + padding(self.size)


@dataclass
class Damage:
    """A range of the tar that could not be used, and why."""

    start: int
    end: int
    reason: str

    def __str__(self) -> str:
        return f"bytes {self.start}-{self.end} ({self.end - self.start} bytes): {self.reason}"


@dataclass
class ScannedBatch:
    """A complete batch: the values it sets and the keys it deletes."""

    puts: list[tuple[str, int, int, int | None]]  # key, data offset, size, CRC-32 (None: not in the tar)
    deletes: list[str]
    start: int
    end: int


@dataclass
class ScanResult:
    """What :func:`scan` found (see the module docstring)."""

    batches: list[ScannedBatch] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    zero_gaps: list[Damage] = field(default_factory=list)
    end: int = 0  # end of the last complete batch: where the next batch goes
    tail: Damage | None = None
    tail_is_torn: bool = False  # the tail is provably an interrupted batch (safe to cut once copied aside)
    not_values: int = 0  # whole members that are not values (links to nothing, directories, sparse files...)
    recovered: int = 0  # members whose damaged header mummi_io's checks confirmed
    size: int = 0


class _Unreadable(Exception):
    """A member could not be parsed; ``truncated`` if it runs past the end of the file."""

    def __init__(
        self, reason: str, truncated: bool = False, size_hint: int | None = None, marked: bool = False,
        resume_at: int | None = None, name: bytes = b"",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated
        self.size_hint = size_hint  # the data size a damaged header claims, if it parses
        self.marked = marked  # a truncated member carries mummi_io's mark
        self.resume_at = resume_at  # where the member certainly ends, when its last header is sound
        self.name = name  # the name the damaged header gives (for salvaging a delete record)


def _read_member(source: Source, start: int) -> Member:
    """Parse the member whose first header block is at ``start``; raise :class:`_Unreadable` if damaged."""
    header = parse_header(source.read(start, BLOCK), strict=False)
    if header is None:
        raise _Unreadable("a header that does not parse (damaged)")
    damaged = not header.checksum_ok
    name: bytes | None = header.name
    size: int | None = header.size
    guard, sparse, linkname = None, False, None
    position = start
    while header.typeflag in _EXTENSIONS:
        data = source.read(position + BLOCK, header.size)
        if len(data) < header.size:
            raise _Unreadable("truncated", truncated=True)
        if header.typeflag == b"x":
            records = parse_pax(data)
            name = records.get(b"path", None)
            size_record = records.get(b"size")
            size = int(size_record) if size_record and size_record.isdigit() else None
            comment = records.get(b"comment", b"")
            guard = comment.decode("ascii", "replace") if comment.startswith(_OWNER + b":") else None
            sparse = any(key.startswith(b"GNU.sparse.") for key in records)
            linkname = records.get(b"linkpath", linkname)
        elif header.typeflag == b"L":
            name, size = data.split(b"\0", 1)[0], None
        elif header.typeflag == b"K":
            name, size, linkname = None, None, data.split(b"\0", 1)[0]
        else:
            name, size = None, None
        position += BLOCK + header.size + padding(header.size)
        block = source.read(position, BLOCK)
        if len(block) < BLOCK:
            raise _Unreadable("truncated", truncated=True)
        following = parse_header(block, strict=False)
        if following is None:
            raise _Unreadable("the header after an extended header does not parse (damaged)")
        damaged = damaged or not following.checksum_ok
        header = following
        name = name if name is not None else header.name
        size = size if size is not None else header.size
    if name is None:  # (set by the loop above when it ran: narrowed here for the type checker)
        name = header.name
    if size is None:
        size = header.size
    typeflag = header.typeflag
    if typeflag in _NO_DATA:
        size = 0
    decoded = name.decode("utf-8", "surrogateescape")
    data_end = position + BLOCK + size + padding(size)
    if guard is not None and guard != pax_comment(decoded, size):
        # The member's own ustar header is sound: skip exactly this member.
        raise _Unreadable("the name in an extended header is damaged", resume_at=data_end if not damaged else None,
                          size_hint=size if start == position else None)
    mark = header.mark
    if mark is not None and name_check(name, size, mark.back_blocks, mark.ends_batch) != mark.name_check:
        # The tar checksum is a plain sum: swapped digits keep it. The mark's check does not.
        raise _Unreadable("a header's name, size or batch fails mummi_io's check (damaged)", size_hint=size,
                          name=name)
    if damaged:
        # A header that fails the tar checksum is kept only if mummi_io's own checks confirm
        # its name, size and batch (the mark's check above), and its data (the CRC-32).
        if mark is None or typeflag not in _REGULAR:
            raise _Unreadable("a header fails its checksum (damaged)", size_hint=size, name=name)
        if position + BLOCK + size > source.size or crc32(source.read(position + BLOCK, size)) != mark.crc:
            raise _Unreadable("a header fails its checksum (damaged)", size_hint=size, name=name)
    kind = "other" if sparse or typeflag == b"S" else "file" if typeflag in _REGULAR else (
        "hardlink" if typeflag == b"1" else "other")
    link = (linkname if linkname is not None else header.linkname).decode("utf-8", "surrogateescape")
    member = Member(decoded, start, position + BLOCK, size, header.mark, header.uname, kind, link, damaged)
    if member.data_offset + member.size > source.size:
        raise _Unreadable("truncated", truncated=True, size_hint=size, marked=header.mark is not None)
    return member


def last_nonzero_end(source: Source, start: int) -> int:
    """End (rounded up to a block) of the last non-zero byte at or after ``start``; ``start`` if none."""
    end = source.size
    while end > start:
        begin = max(start, end - (1 << 20))
        chunk = source.read(begin, end - begin)
        stripped = len(chunk.rstrip(b"\0"))
        if stripped:
            last = begin + stripped
            return min(source.size, last + (-last % BLOCK))
        end = begin
    return start


class _Scan:
    """The state of one walk through a tar (see :func:`scan`)."""

    def __init__(self, source: Source, start: int, is_key: Callable[[str], bool]) -> None:
        self.source = source
        self.is_key = is_key
        self.result = ScanResult(end=start, size=source.size)
        self.names: dict[str, tuple[int, int, int | None]] = {}  # for hard links: the latest member of a name
        self.marked: list[Member] = []  # the open batch of marked members
        self.marked_start = -1
        self.covered = -1  # how far the open batch's blocks are accounted for
        self.holed = False  # zeros inside the open batch: a crash hole
        self.legacy: list[Member] = []  # members of the earlier format waiting for their journal
        self.uncertain_from: int | None = None  # batches found after a resync by search, not yet confirmed
        self.uncertain_start = 0
        self.truncated: tuple[int, bool] | None = None  # (where, marked) of a member cut short at the end
        #: Incomplete batches waiting to see whether a complete batch follows them: then they were
        #: committed and later damaged, and their confirmed members count (see :meth:`defer`).
        self.deferred: list[tuple[ScannedBatch, Damage, int]] = []  # (batch, its damage, its batch start)

    # ------------------------------------------------------------ helpers
    def incomplete(self, members: list[Member], why: str) -> None:
        if members:
            self.result.damage.append(Damage(members[0].start, members[-1].end, why))

    def complete(self, batch: ScannedBatch) -> None:
        for waiting, damage, _ in self.deferred:
            # A writer appends only after complete batches (it moves a torn tail aside first), so an
            # incomplete batch with a complete one after it was committed, then damaged.
            damage.reason += "; later batches follow it, so it was committed: its confirmed members are used"
            self.result.damage.append(damage)
            self.apply(waiting)
        self.deferred = []
        self.apply(batch)
        self.result.end = batch.end

    def apply(self, batch: ScannedBatch) -> None:
        self.result.batches.append(batch)
        for name, offset, size, crc in batch.puts:
            self.names[name] = (offset, size, crc)
        for name in batch.deletes:
            self.names.pop(name, None)

    def defer(self, members: list[Member], why: str) -> None:
        """Hold an incomplete marked batch until we know whether a complete batch follows it."""
        if members:
            self.deferred.append((self.batch_of(members), Damage(members[0].start, members[-1].end, why),
                                  self.marked_start))

    def batch_of(self, members: list[Member]) -> ScannedBatch:
        """The puts and deletes of marked members (each confirmed by its mark's checks)."""
        puts, deletes = [], []
        for part in members:
            if part.name == JOURNAL_NAME:
                data = self.source.read(part.data_offset, part.size)
                listed = parse_journal(data)
                if listed is None:
                    self.result.damage.append(Damage(part.start, part.end, "a delete record is damaged: the "
                                                     "keys it deleted are not known from the tar"))
                else:
                    if crc32(data) != part.mark.crc:  # type: ignore[union-attr]
                        self.result.damage.append(Damage(part.start, part.end, "a delete record is damaged; "
                                                         "its other copy is intact and was used"))
                    deletes += [key for key in listed if self.is_key(key)]
            else:
                found = self.put_of(part, part.mark.crc)  # type: ignore[union-attr]
                if found:
                    puts.append(found)
        return ScannedBatch(puts, deletes, members[0].start, members[-1].end)

    def put_of(self, member: Member, crc: int | None) -> tuple[str, int, int, int | None] | None:
        name = tidy_member_name(member.name)
        if member.kind == "hardlink" and tidy_member_name(member.linkname) in self.names and self.is_key(name):
            return (name, *self.names[tidy_member_name(member.linkname)])
        if member.kind == "file" and self.is_key(name):
            return name, member.data_offset, member.size, crc
        self.result.not_values += 1
        return None

    def zero_gap(self, start: int, end: int) -> None:
        """Zero blocks followed by a member: a gap, a hole in an open batch, or the end of uncertain members."""
        self.result.zero_gaps.append(Damage(start, end, "zero blocks: tar -t stops here (tar -i reads on)"))
        if self.marked:
            self.holed = True
        if self.uncertain_from is not None:
            dropped = self.result.batches[self.uncertain_from:]
            if dropped or self.deferred or self.marked:
                del self.result.batches[self.uncertain_from:]
                self.result.end = self.result.batches[-1].end if self.result.batches else self.uncertain_start
                first = dropped[0].start if dropped else (self.deferred[0][1].start if self.deferred else start)  # noqa: E501
                self.result.damage.append(Damage(first, start, "members found inside a damaged member's data "
                                                 "(a tar stored as a value?): not used"))
                self.deferred, self.marked, self.holed = [], [], False
                self.names = {}
                for batch in self.result.batches:  # hard links resolve against what remains
                    for name, offset, size, crc in batch.puts:
                        self.names[name] = (offset, size, crc)
                    for name in batch.deletes:
                        self.names.pop(name, None)
            self.uncertain_from = None

    # ------------------------------------------------------------ members
    def marked_member(self, member: Member) -> None:
        mark = member.mark
        batch_start = member.start - mark.back_blocks * BLOCK  # type: ignore[union-attr]
        if self.marked and batch_start != self.marked_start:
            self.defer(self.marked, "a batch whose last member is missing or damaged")
            self.marked = []
        if self.legacy:
            self.incomplete(self.legacy, "an incomplete batch of the earlier format: skipped")
            self.legacy = []
        if not self.marked:
            self.marked_start, self.covered, self.holed = batch_start, batch_start, False
        if not self.covered_up_to(member.start):
            self.holed = True
        self.marked.append(member)
        self.covered = member.end
        if not mark.ends_batch:  # type: ignore[union-attr]
            return
        members, self.marked = self.marked, []
        if self.holed:
            self.defer(members, "a batch with missing parts (zeros inside it: a crash's hole, or damage)")
            return
        self.complete(self.batch_of(members))

    def salvage_journal(self, position: int, problem: _Unreadable) -> int | None:
        """A delete record whose header is damaged, recognized by its checksummed content; its end."""
        if problem.size_hint is None or not problem.name.startswith(b".mummi_io"):
            return None
        end = position + BLOCK + problem.size_hint + padding(problem.size_hint)
        listed = parse_journal(self.source.read(position + BLOCK, problem.size_hint), checksummed_only=True)
        if listed is None or end > self.source.size:
            return None
        self.result.damage.append(Damage(position, end, "a delete record's header is damaged; its content is "
                                         "intact (checksummed) and was used"))
        deletes = [key for key in listed if self.is_key(key)]
        if self.marked and self.covered == position and not self.holed:
            members, self.marked = self.marked, []
            batch = self.batch_of(members)
            batch.deletes += deletes
            batch.end = end
            self.complete(batch)
        else:
            self.complete(ScannedBatch([], deletes, position, end))
        return end

    def covered_up_to(self, position: int) -> bool:
        """Whether the open batch's blocks up to ``position`` are its members or damage (no hole)."""
        if position == self.covered:
            return True
        return any(d.start <= self.covered and d.end >= position for d in self.result.damage)

    def plain_member(self, member: Member) -> None:
        if member.name == JOURNAL_NAME and member.owner == _OWNER:  # ends a batch of the earlier format
            listed = parse_journal(self.source.read(member.data_offset, member.size))
            if listed is None:
                self.result.damage.append(Damage(member.start, member.end, "a journal member is unreadable: "
                                                 "its batch is not known to be complete"))
                self.incomplete(self.legacy, "a batch of the earlier format whose journal is unreadable: skipped")
            else:
                puts = [found for found in (self.put_of(part, None) for part in self.legacy) if found]
                self.complete(ScannedBatch(puts, [key for key in listed if self.is_key(key)],
                                           self.legacy[0].start if self.legacy else member.start, member.end))
            self.legacy = []
        elif member.owner == _OWNER and member.kind == "file":  # a value of the earlier format
            self.legacy.append(member)
        else:  # another tool's member: whole, so complete
            found = self.put_of(member, None)
            self.complete(ScannedBatch([found] if found else [], [], member.start, member.end))

    # ---------------------------------------------------------------- walk
    def resync(self, position: int, problem: _Unreadable) -> int | None:
        """Where to go on after a damaged member at ``position`` (``None``: nowhere, the rest is damage)."""
        source = self.source
        if problem.resume_at is not None and problem.resume_at <= source.size:
            return problem.resume_at  # the member's own last header is sound: skip exactly it
        if problem.size_hint is not None:
            guided = position + BLOCK + problem.size_hint + padding(problem.size_hint)
            if guided <= source.size and (
                guided == source.size or parse_header(source.read(guided, BLOCK)) is not None
                or not source.read(guided, source.size - guided).strip(b"\0")
            ):
                return guided  # the damaged header's size field lands on the next member: trust it
        resume = source.next_header(position + BLOCK)
        if resume is not None and self.uncertain_from is None:
            self.uncertain_from, self.uncertain_start = len(self.result.batches), self.result.end
        return resume

    def run(self, start: int) -> ScanResult:
        source, result = self.source, self.result
        position = start
        zero_run: int | None = None
        while position + BLOCK <= source.size:
            if source.read(position, BLOCK) == ZERO_BLOCK:
                if zero_run is None:
                    zero_run = position
                position += BLOCK
                continue
            try:
                member = _read_member(source, position)
            except _Unreadable as problem:
                if problem.truncated:
                    # A valid header whose data runs past the end of the file: an interrupted
                    # write. Its size is trusted: headers inside its data are data (a tar stored
                    # as a value), never members.
                    self.truncated = (position, problem.marked)
                    break
                salvaged = self.salvage_journal(position, problem)
                if salvaged is not None:
                    zero_run = None
                    position = salvaged
                    continue
                resume = self.resync(position, problem)
                if zero_run is not None:
                    self.zero_gap(zero_run, position)
                    zero_run = None
                result.damage.append(Damage(position, source.size if resume is None else resume, problem.reason))
                if resume is None:
                    break
                position = resume
                continue
            if zero_run is not None:
                self.zero_gap(zero_run, position)
                zero_run = None
            if member.recovered:
                result.recovered += 1
            position = member.end
            if member.mark is not None:
                self.marked_member(member)
            else:
                self.plain_member(member)
        # Incomplete batches after the last complete one are the tail (an interrupted write, or damage).
        for _, damage, _ in self.deferred:
            if damage.start < result.end:
                result.damage.append(damage)
        if self.legacy and self.legacy[-1].end <= result.end:
            self.incomplete(self.legacy, "an incomplete batch of the earlier format: skipped")
        self.finish_tail()
        return result

    def finish_tail(self) -> None:
        """Describe the bytes after the last complete batch, and whether they are provably torn.

        Torn means: no damage among them, and their members (if any) are the
        members of one batch that starts right after the last complete one
        (or, in the earlier format, a run of values starting there); zeros
        (a crash's hole) and a member cut short at the end may be among them.
        """
        result = self.result
        end = result.end
        tail_end = last_nonzero_end(self.source, end)
        in_tail = [d for d in result.damage if d.start >= end]
        result.damage = [d for d in result.damage if d.start < end]
        result.zero_gaps = [g for g in result.zero_gaps if g.start < end]
        if tail_end <= end:
            return
        starts = [batch_start for _, damage, batch_start in self.deferred if damage.start >= end]
        if self.marked and self.marked[-1].start >= end:
            starts.append(self.marked_start)
        legacy = [m for m in self.legacy if m.start >= end]
        torn = (
            not in_tail
            and len(set(starts)) <= 1 and all(batch_start == end for batch_start in starts)
            and (not legacy or (not starts and legacy[0].start == end))
        )
        if torn and self.truncated is not None and not self.truncated[1]:
            # Another tool's member cut short: torn only if no valid header hides in what follows
            # (else its size field may be wrong, and whole members after it would be cut).
            torn = self.source.next_header(self.truncated[0] + BLOCK) is None
        # A damaged member's bytes reach as far as the scan skipped it: they are part of the tail.
        tail_end = max([tail_end, *(d.end for d in in_tail)])
        result.tail = Damage(end, tail_end, "bytes after the last complete batch (an interrupted write)"
                             if torn else "bytes after the last complete batch that are not an interrupted "
                             "write of mummi_io's (damage, or another tool's): left in place")
        result.tail_is_torn = torn


def scan(source: Source, start: int = 0, is_key: Callable[[str], bool] = lambda name: True) -> ScanResult:
    """Walk the tar from ``start`` (a member boundary) and return its complete batches and damage."""
    return _Scan(source, start, is_key).run(start)
