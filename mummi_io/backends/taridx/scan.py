"""Reading a namespace's state from its tar alone, whatever happened to it.

:func:`scan` walks the tar's headers and returns the complete batches in
order, plus what it could not use:

- **damage**: a header that fails its checksum (a flipped bit, overwritten
  bytes) is skipped by looking for the next valid header (*resync*), so one
  bad header costs only its own member, never what follows; the skipped
  range is reported, never cut;
- **incomplete batches** in the middle (members of a batch whose last member
  never came) are skipped and reported;
- the **tail**: non-zero bytes after the last complete batch, the trace of a
  writer killed mid-batch (or damage at the very end). Only a writer holding
  the lock acts on it, and it keeps the bytes in a side file;
- **zero gaps**: zero blocks before the last member (``tar -t`` stops at the
  first; mummi_io reads past them, as ``tar --ignore-zeros`` does).

Which members make a batch (see :mod:`.tarformat`): members with mummi_io's
mark belong to the batch their mark points to, complete when its
``ends_batch`` member is whole. Members of the earlier format (owner
``mummi_io``, no mark) wait for the ``.mummi_io.journal`` member that ended
every batch then. Members of other tools (pytaridx, ``tar``) are complete
one by one.
"""

from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .tarformat import (
    BLOCK, JOURNAL_NAME, OWNER, ZERO_BLOCK, Mark, padding, parse_header, parse_journal, parse_pax, pax_comment,
)

_OWNER = OWNER.encode()
_EXTENSIONS = (b"x", b"g", b"L", b"K")
_REGULAR = (b"0", b"\0", b"7")
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")


class Source(Protocol):
    """Random or forward reads of a tar's bytes."""

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
            if start % BLOCK == 0 and start + BLOCK <= self.size and parse_header(self._map[start:start + BLOCK]):
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


@dataclass
class Member:
    """One member as found in the tar."""

    name: str
    start: int  # offset of its first header block (a PAX header, if any)
    data_offset: int
    size: int
    mark: Mark | None
    owner: bytes
    regular: bool

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
    not_keys: int = 0  # whole members that are not keys (directories, links, names that are not keys)
    size: int = 0


def _read_member(source: Source, start: int, block: bytes) -> tuple[Member | None, str]:
    """Parse the member whose first header block is ``block`` at ``start``; ``(None, why)`` if damaged."""
    header = parse_header(block)
    if header is None:
        return None, "a header fails its checksum (damaged)"
    name, size = header.name, header.size
    position = start
    guard = None
    while header.typeflag in _EXTENSIONS:
        data = source.read(position + BLOCK, header.size)
        if len(data) < header.size:
            return None, "truncated"
        if header.typeflag == b"x":
            records = parse_pax(data)
            name = records.get(b"path", None)
            size_record = records.get(b"size")
            size = int(size_record) if size_record and size_record.isdigit() else None
            comment = records.get(b"comment", b"")
            guard = comment.decode("ascii", "replace") if comment.startswith(OWNER.encode() + b":") else None
        elif header.typeflag == b"L":
            name, size = data.split(b"\0", 1)[0], None
        else:
            name, size = None, None
        position += BLOCK + header.size + padding(header.size)
        block = source.read(position, BLOCK)
        if len(block) < BLOCK:
            return None, "truncated"
        following = parse_header(block)
        if following is None:
            return None, "the header after an extended header fails its checksum (damaged)"
        header = following
        name = name if name is not None else header.name
        size = size if size is not None else header.size
    typeflag = header.typeflag
    if typeflag in _NO_DATA:
        size = 0
    if guard is not None and guard != pax_comment(name.decode("utf-8", "surrogateescape"), size):
        return None, "the name in an extended header is damaged"
    member = Member(
        name.decode("utf-8", "surrogateescape"), start, position + BLOCK, size, header.mark, header.uname,
        typeflag in _REGULAR,
    )
    if member.data_offset + member.size > source.size:
        return None, "truncated"
    return member, ""


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


def scan(source: Source, start: int = 0, is_key: Callable[[str], bool] = lambda name: True) -> ScanResult:
    """Walk the tar from ``start`` (a member boundary) and return its complete batches and damage."""
    result = ScanResult(end=start, size=source.size)
    position = start
    marked: list[Member] = []  # the open batch of marked members
    marked_start = -1
    legacy: list[Member] = []  # members of the earlier format waiting for their journal
    zero_run: int | None = None

    def incomplete(members: list[Member], why: str) -> None:
        if members:
            result.damage.append(Damage(members[0].start, members[-1].end, why))

    def complete(batch: ScannedBatch) -> None:
        result.batches.append(batch)
        result.end = batch.end

    def put_of(member: Member, crc: int | None) -> tuple[str, int, int, int | None] | None:
        if member.regular and is_key(member.name):
            return member.name, member.data_offset, member.size, crc
        result.not_keys += 1
        return None

    while position + BLOCK <= source.size:
        block = source.read(position, BLOCK)
        if block == ZERO_BLOCK:
            if zero_run is None:
                zero_run = position
            position += BLOCK
            continue
        member, problem = _read_member(source, position, block)
        if member is None:
            if problem == "truncated":
                break  # data runs past the end of the file: an interrupted write, part of the tail
            resume = source.next_header(position + BLOCK)
            result.damage.append(Damage(position, source.size if resume is None else resume, problem))
            if resume is None:
                break
            position = resume
            continue
        if zero_run is not None:
            result.zero_gaps.append(Damage(zero_run, position, "zero blocks: tar -t stops here (tar -i reads on)"))
            zero_run = None
        position = member.end
        if member.mark is not None:
            batch_start = member.start - member.mark.back_blocks * BLOCK
            if marked and batch_start != marked_start:
                incomplete(marked, "an incomplete batch (its writer was interrupted): skipped")
                marked = []
            if legacy:
                incomplete(legacy, "an incomplete batch of the earlier format: skipped")
                legacy = []
            marked.append(member)
            marked_start = batch_start
            if member.mark.ends_batch:
                puts, deletes = [], []
                for part in marked:
                    if part.name == JOURNAL_NAME:
                        data = source.read(part.data_offset, part.size)
                        listed = parse_journal(data) if zlib.crc32(data) == part.mark.crc else None  # type: ignore[union-attr]
                        if listed is None:
                            result.damage.append(Damage(part.start, part.end, "a delete record is damaged: "
                                                        "the keys it deleted are not known from the tar"))
                        else:
                            deletes += [key for key in listed if is_key(key)]
                    else:
                        found = put_of(part, part.mark.crc)  # type: ignore[union-attr]
                        if found:
                            puts.append(found)
                complete(ScannedBatch(puts, deletes, marked[0].start, member.end))
                marked = []
        elif member.name == JOURNAL_NAME:  # ends a batch of the earlier format
            listed = parse_journal(source.read(member.data_offset, member.size))
            if listed is None:
                result.damage.append(Damage(member.start, member.end, "a journal member is unreadable: "
                                            "its batch is not known to be complete"))
                incomplete(legacy, "a batch of the earlier format whose journal is unreadable: skipped")
            else:
                puts = [found for found in (put_of(part, None) for part in legacy) if found]
                complete(ScannedBatch(puts, [key for key in listed if is_key(key)],
                                      legacy[0].start if legacy else member.start, member.end))
            legacy = []
        elif member.owner == _OWNER:  # a value of the earlier format: waits for its journal
            legacy.append(member)
        else:  # another tool's member: whole, so complete
            found = put_of(member, None)
            complete(ScannedBatch([found] if found else [], [], member.start, member.end))
    # Members of an open batch before the last complete one were interrupted: report them.
    for members in (marked, legacy):
        if members and members[-1].end <= result.end:
            incomplete(members, "an incomplete batch (its writer was interrupted): skipped")
    tail_end = last_nonzero_end(source, result.end)
    if tail_end > result.end:
        result.tail = Damage(result.end, tail_end, "bytes after the last complete batch (an interrupted write)")
    result.damage = [d for d in result.damage if d.start < result.end]
    result.zero_gaps = [g for g in result.zero_gaps if g.start < result.end]
    return result
