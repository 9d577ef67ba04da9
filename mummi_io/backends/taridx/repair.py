"""Repairs a writer makes, holding the namespace's lock, and never at a loss.

The rules (DESIGN.md, "A repair never destroys"):

- the tar is only ever cut after the last complete batch, and the bytes cut
  (the torn tail of an interrupted batch) are first copied to a side file
  ``run.tar.torn-<UTC time>``, flushed to disk;
- damage in the middle is skipped by readers and reported, never cut;
- the index is a cache of the tar: it is rewritten whole (to a temporary
  file renamed into place) from what the tar holds, keeping the checksums the
  old index recorded;
- a rebuild from the tar (:func:`reconcile`) keeps every value the old index
  knew that is still intact in the tar, and refuses, unless the caller
  accepts the loss, when the tar has lost values the index knew, holds older
  versions of them, or would bring back keys the index had deleted.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ...core.fs import atomic_write, fsync_directory
from . import index as idx
from .scan import Damage, ScanResult
from .state import apply_batches, crc_of_range
from .tarformat import END_OF_ARCHIVE

LOGGER = logging.getLogger(__name__)

_COPY_PIECE = 8 << 20


def move_aside(tar_path: str, fd: int, start: int, end: int) -> str:
    """Copy bytes ``start:end`` of the tar to a new side file, flushed to disk; return its path."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    side = f"{tar_path}.torn-{stamp}"
    out = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        position = start
        while position < end:
            piece = os.pread(fd, min(end - position, _COPY_PIECE), position)
            if not piece:
                break
            view = memoryview(piece)
            while view:
                view = view[os.write(out, view):]
            position += len(piece)
        os.fsync(out)
    finally:
        os.close(out)
    fsync_directory(os.path.dirname(side))
    return side


def end_tar_at(fd: int, end: int, fsync: bool) -> None:
    """Write the end-of-archive marker at ``end`` and drop what follows (only zeros, or bytes moved aside)."""
    os.pwrite(fd, END_OF_ARCHIVE, end)
    if os.fstat(fd).st_size > end + len(END_OF_ARCHIVE):
        os.ftruncate(fd, end + len(END_OF_ARCHIVE))
    if fsync:
        os.fsync(fd)


def complete_checksums(table: idx.IndexTable, tar_fd: int) -> None:
    """Compute the CRC-32 of every value that has none (members written by other tools)."""
    for slot in sorted(table.unchecked):
        table.crcs[slot] = crc_of_range(tar_fd, table.offsets[slot], table.sizes[slot])
    table.unchecked.clear()


def write_index(index_path: str, table: idx.IndexTable) -> None:
    """Replace the index with a snapshot of ``table`` (atomically, flushed to disk)."""
    atomic_write(index_path, idx.encode_snapshot(table), fsync=True)
    fsync_directory(os.path.dirname(index_path))


def batch_records(
    keys: Sequence[bytes], offsets: Sequence[int], sizes: Sequence[int], crcs: Sequence[int], deletes: Sequence[bytes],
    end: int,
) -> bytes:
    """The index records of one batch: its puts (one column per field), then deletes; the last record commits."""
    records = []
    if keys:
        records.append(idx.encode_put(keys, offsets, sizes, crcs, end, commit=not deletes))
    if deletes or not keys:
        records.append(idx.encode_delete(deletes, end, commit=True))
    return b"".join(records)


@dataclass
class ReindexReport:
    """What ``reindex`` found and did.

    ``lost``, ``rolled_back`` and ``resurrected`` are the keys whose state
    the rebuild changed against the old index (values gone, older values
    back, deleted keys back); a reindex only applies such changes when asked
    to accept the loss. ``kept_from_index`` are keys whose member header in
    the tar is damaged, kept because the old index knew them and their bytes
    are intact. ``not_keys`` are names the old index listed that are not keys
    (not UTF-8, or breaking the key rules: mummi_io never writes them); they
    are left out, which also needs the loss accepted.
    """

    namespace: str
    keys: int = 0
    damage: list[Damage] = field(default_factory=list)
    zero_gaps: list[Damage] = field(default_factory=list)
    tail: Damage | None = None
    tail_file: str | None = None
    not_values: int = 0
    lost: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)
    kept_from_index: list[str] = field(default_factory=list)
    not_keys: list[str] = field(default_factory=list)

    @property
    def losses(self) -> list[str]:
        """Every key whose state the rebuild changes for the worse."""
        return self.lost + self.rolled_back + self.resurrected + self.not_keys

    def lines(self) -> list[str]:
        """The report as lines of text."""
        out = [f"{self.namespace}: {self.keys} key(s)"]
        out += [f"damaged: {d} (skipped, left in place)" for d in self.damage]
        out += [f"zero blocks: {g}" for g in self.zero_gaps]
        if self.tail is not None:
            out.append(f"torn tail: {self.tail}" + (f"; moved to {self.tail_file}" if self.tail_file else ""))
        for name, keys in (("lost", self.lost), ("rolled back to an older value", self.rolled_back),
                           ("deleted but back", self.resurrected), ("kept from the old index", self.kept_from_index),
                           ("in the old index but not keys, left out", self.not_keys)):
            if keys:
                shown = ", ".join(repr(k) for k in keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else "")
                out.append(f"{name}: {len(keys)} key(s): {shown}")
        return out


def reconcile(
    found: ScanResult, index: idx.IndexTable | None, index_is_true: bool, tar_fd: int, report: ReindexReport,
    is_key: Callable[[str], bool],
) -> idx.IndexTable:
    """The namespace's state rebuilt from the scan ``found``, checked against the old ``index``.

    Up to the old index's end, a key keeps the index's value when that value
    is intact in the tar (its header may be damaged); batches after that end
    come from the tar. Differences that lose something are listed in
    ``report`` (see :class:`ReindexReport`) and resolved in the tar's favour;
    the caller decides whether to accept them. ``index_is_true`` says
    whether the old index was shown to describe this tar: then a key it had
    deleted stays deleted even if the tar's delete record is unreadable.
    A name in the old index that ``is_key`` refuses is left out (``report.not_keys``).
    """
    table = idx.IndexTable()
    if index is None:
        apply_batches(table, found.batches)
        table.tar_end = found.end
        return table
    boundary = index.tar_end
    at_boundary = idx.IndexTable()
    apply_batches(at_boundary, [b for b in found.batches if b.end <= boundary])
    tar_size = os.fstat(tar_fd).st_size
    is_intact = _intact_checker(tar_fd, tar_size)
    keys = list(dict.fromkeys([*at_boundary.slots, *index.slots]))
    rows: list[tuple[bytes, int, int, int | None]] = []
    only_in_tar: list[tuple[bytes, tuple[int, int, int | None]]] = []
    for key in keys:
        in_tar = at_boundary.lookup(key)
        in_index = index.lookup(key)
        name = key.decode("utf-8", "surrogateescape")
        if in_index is not None and not is_key(name):  # a name with surrogates fails too
            report.not_keys.append(name)
            in_index = None
        if in_tar is not None and in_index is not None and in_tar[1] == in_index[1] and (
            in_tar[2] is None or in_index[2] is None or in_tar[2] == in_index[2]
        ):
            rows.append((key, in_tar[0], in_tar[1], in_tar[2] if in_tar[2] is not None else in_index[2]))
        elif in_index is not None and is_intact(*in_index):
            rows.append((key, *in_index))
            report.kept_from_index.append(name)
        elif in_index is not None:
            if in_tar is not None:
                report.rolled_back.append(name)
                rows.append((key, *in_tar))
            else:
                report.lost.append(name)
        elif in_tar is not None:
            only_in_tar.append((key, in_tar))
    # An index all of whose values are intact in the tar is true, whatever the cheap check said; one
    # that lists names that are not keys was not written by mummi_io: its deletions are not trusted.
    trusted = not report.not_keys and (index_is_true or not (report.lost or report.rolled_back))
    for key, in_tar in only_in_tar:
        if not trusted:  # the index may describe another tar: the tar's key is not known to be deleted
            report.resurrected.append(key.decode("utf-8", "surrogateescape"))
            rows.append((key, *in_tar))  # type: ignore[misc]
    rows.sort(key=lambda row: row[1])
    table.put([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    apply_batches(table, [b for b in found.batches if b.end > boundary])
    table.tar_end = max(found.end, boundary if trusted and boundary <= tar_size else 0)
    return table


def _intact_checker(tar_fd: int, tar_size: int) -> Callable[[int, int, int | None], bool]:
    """Whether the tar holds, at ``offset``, ``size`` bytes whose CRC-32 is ``crc``.

    The member's header is not required to be intact: a damaged header is
    exactly the case where the old index still knows the value.
    """

    def is_intact(offset: int, size: int, crc: int | None) -> bool:
        if crc is None or offset + size > tar_size:
            return False
        return crc_of_range(tar_fd, offset, size) == crc

    return is_intact

