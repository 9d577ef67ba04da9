"""The sidecar index of a ``taridx`` namespace: an append-only log of committed batches.

File ``<namespace>.tar.idx``::

    file header (32 bytes): b"MUMMIIDX", u32 version (2), u32 zero, u64 zero, u64 zero
    record*:  b"MREC", u8 op (1 put, 2 delete), u8 flags (1 = commit),
              u16 zero, u32 count, u32 keys_len, u64 tar_end, u32 crc32
              put:    count entries of (u64 data offset, u64 size, u32 crc32 of value)
              both:   keys_len bytes: the keys, UTF-8, each followed by NUL

All integers are little-endian. ``crc32`` covers the record header (without
the crc field) and body. ``tar_end`` is where the tar's members end after
this record (the next append starts there). A batch is one or more records,
the last one flagged commit; readers apply a batch only when its commit
record is complete and valid, so a torn append is never seen. Records are
parsed with numpy, so an index of a million keys loads in a fraction of a
second; in memory a key costs one dict entry plus 20 bytes of arrays.

The index is a cache of the tar: everything in it can be rebuilt from the tar
(see :mod:`.scan`), so a damaged index costs time, never data. Version 1
files (which recorded the tar's inode in the header) are read the same way;
the inode is no longer used: whether an index describes its tar is checked
against the tar's content (see :mod:`.state`).
"""

from __future__ import annotations

import itertools
import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

FILE_MAGIC = b"MUMMIIDX"
VERSION = 2
READABLE_VERSIONS = (1, 2)
FILE_HEADER = struct.Struct("<8sIIQQ")
RECORD_MAGIC = b"MREC"
RECORD_HEADER = struct.Struct("<4sBBHIIQ")
CRC = struct.Struct("<I")
RECORD_PREFIX = RECORD_HEADER.size + CRC.size
ENTRY = np.dtype([("offset", "<u8"), ("size", "<u8"), ("crc", "<u4")])

OP_PUT = 1
OP_DELETE = 2
FLAG_COMMIT = 1


def encode_file_header() -> bytes:
    """The 32-byte header of an index file."""
    return FILE_HEADER.pack(FILE_MAGIC, VERSION, 0, 0, 0)


def is_index(data: bytes) -> bool:
    """Whether ``data`` starts with the header of an index file this version reads."""
    if len(data) < FILE_HEADER.size:
        return False
    magic, version, _, _, _ = FILE_HEADER.unpack_from(data)
    return magic == FILE_MAGIC and version in READABLE_VERSIONS


def _record(op: int, commit: bool, count: int, entries: bytes, keys: Sequence[bytes], tar_end: int) -> bytes:
    blob = b"\0".join(keys) + b"\0" if keys else b""
    head = RECORD_HEADER.pack(RECORD_MAGIC, op, FLAG_COMMIT if commit else 0, 0, count, len(blob), tar_end)
    crc = zlib.crc32(blob, zlib.crc32(entries, zlib.crc32(head)))
    return b"".join((head, CRC.pack(crc), entries, blob))


def encode_put(
    keys: Sequence[bytes], offsets: Sequence[int], sizes: Sequence[int], crcs: Sequence[int],
    tar_end: int, commit: bool,
) -> bytes:
    """A record mapping each key to (offset, size, crc) in the tar."""
    entries = np.empty(len(keys), ENTRY)
    entries["offset"], entries["size"], entries["crc"] = offsets, sizes, crcs
    return _record(OP_PUT, commit, len(keys), entries.tobytes(), keys, tar_end)


def encode_delete(keys: Sequence[bytes], tar_end: int, commit: bool) -> bytes:
    """A record removing each key."""
    return _record(OP_DELETE, commit, len(keys), b"", keys, tar_end)


class _DeferredPut:
    """A run of puts read from an index, not yet in the key dict.

    ``blobs`` are the records' keys, each followed by a NUL, as read; ``base``
    the slot of the first key; ``gate`` yields once per key and is used up by
    whichever call applies the put first (see :attr:`IndexTable.slots`).
    Compares by identity.
    """

    __slots__ = ("blobs", "base", "gate")

    def __init__(self, blobs: list[bytes], base: int, gate: Iterator[bool]) -> None:
        self.blobs = blobs
        self.base = base
        self.gate = gate


@dataclass
class IndexTable:
    """The in-memory index: key (UTF-8 bytes) -> slot -> (offset, size, crc).

    ``unchecked`` holds the slots whose value has no known checksum (a member
    written by another tool, seen by a reader that may not write an index);
    their reads are not verified.

    Opening a large index is dominated by building the key -> slot dict
    (about half a microsecond a key here), so puts read from an index file
    are *deferred*: their locations go into the arrays at once, their keys
    into the dict only when something needs it (:attr:`slots`). Listing the
    keys of a freshly opened index never builds it.
    """

    _slots: dict[bytes, int] = field(default_factory=dict)
    offsets: array = field(default_factory=lambda: array("q"))
    sizes: array = field(default_factory=lambda: array("q"))
    crcs: array = field(default_factory=lambda: array("I"))
    unchecked: set[int] = field(default_factory=set)
    tar_end: int = 0
    #: Puts not yet in the dict, in order. Their key blobs are kept as read, so that listing
    #: never splits them per key.
    _deferred: list[_DeferredPut] = field(default_factory=list)

    @property
    def slots(self) -> dict[bytes, int]:
        """Key -> slot of every live key (deferred puts are applied first, in order).

        Safe against re-entry: a signal handler may run between any two
        bytecodes here and save or remove keys through this same table (the
        session lock is re-entrant). So each deferred put goes into the dict
        in one C-level ``update`` gated by the put's single-use iterator (a put
        a re-entrant call already applied is never applied again, over that
        call's removals), and only that put leaves the list (never a put the
        handler added meanwhile).
        """
        deferred = self._deferred
        while True:
            try:
                put = deferred[0]
            except IndexError:
                return self._slots
            keys = b"".join(put.blobs).split(b"\0")[:-1]
            self._slots.update(itertools.compress(zip(keys, range(put.base, put.base + len(keys))), put.gate))
            try:
                deferred.remove(put)  # by identity; gone already if a re-entrant call applied it
            except ValueError:
                pass

    def put(
        self, keys: Sequence[bytes], offsets: Sequence[int], sizes: Sequence[int], crcs: Sequence[int | None]
    ) -> None:
        """Point each key at a new location (an overwritten key's old slot is left unused)."""
        slots = self.slots
        base = len(self.offsets)
        self.offsets.extend(offsets)
        self.sizes.extend(sizes)
        if None in crcs:
            self.unchecked.update(base + i for i, crc in enumerate(crcs) if crc is None)
            crcs = [0 if crc is None else crc for crc in crcs]
        self.crcs.extend(crcs)  # type: ignore[arg-type]
        slots.update(zip(keys, range(base, base + len(keys))))

    def put_deferred(self, blobs: list[bytes], entries: np.ndarray) -> None:
        """:meth:`put` from index entries (an ``ENTRY`` array) and their keys as NUL-terminated blobs, deferred.

        ``blobs`` hold exactly ``len(entries)`` keys (see the class docstring).
        """
        base = len(self.offsets)
        self.offsets.frombytes(entries["offset"].astype("<i8").view(np.uint8).data)
        self.sizes.frombytes(entries["size"].astype("<i8").view(np.uint8).data)
        self.crcs.frombytes(entries["crc"].astype("<u4").view(np.uint8).data)
        self._deferred.append(_DeferredPut(blobs, base, itertools.repeat(True, len(entries))))

    def delete(self, keys: Sequence[bytes]) -> None:
        """Forget each key; absent keys are skipped."""
        pop = self.slots.pop
        for key in keys:
            pop(key, None)

    def key_names(self) -> list[str]:
        """Every live key, decoded and sorted (without building the dict if it is not built yet)."""
        pending = self._deferred.copy()  # first: a signal handler may apply or add puts while this runs
        deferred_only = bool(pending) and not self._slots
        if deferred_only:  # the blobs as read: one join, one decode, one split
            names = b"".join(blob for put in pending for blob in put.blobs).decode("utf-8").split("\0")[:-1]
        else:
            encoded = list(self.slots)
            names = b"\0".join(encoded).decode("utf-8").split("\0") if encoded else []
            if len(names) != len(encoded):  # a key with NUL in it (never a valid key): decode one by one
                names = [key.decode("utf-8") for key in encoded]
        names.sort()
        if deferred_only and any(map(str.__eq__, names, itertools.islice(names, 1, None))):
            names = list(dict.fromkeys(names))  # a key put twice: keep one (still sorted)
        return names

    def lookup(self, key: bytes) -> tuple[int, int, int | None] | None:
        """Return (offset, size, crc) of a key (crc ``None`` if unknown), or ``None``."""
        slot = self.slots.get(key)
        if slot is None:
            return None
        return self.offsets[slot], self.sizes[slot], None if slot in self.unchecked else self.crcs[slot]

    def live_entries(self) -> list[tuple[bytes, int, int, int | None]]:
        """Every live key with its location, in tar order (for compaction and snapshots)."""
        unchecked = self.unchecked
        rows = [
            (key, self.offsets[s], self.sizes[s], None if s in unchecked else self.crcs[s])
            for key, s in self.slots.items()
        ]
        rows.sort(key=lambda row: row[1])
        return rows

    def copy(self) -> IndexTable:
        """An independent copy (the live entries only)."""
        table = IndexTable(tar_end=self.tar_end)
        rows = self.live_entries()
        table.put([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
        return table


def encode_snapshot(table: IndexTable) -> bytes:
    """A whole index file holding ``table``'s live entries as one committed batch.

    Every entry must have a checksum (a writer computes the missing ones first).
    """
    rows = table.live_entries()
    if any(row[3] is None for row in rows):
        raise ValueError("an index snapshot needs the checksum of every value")
    record = encode_put(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],  # type: ignore[misc]
        table.tar_end, commit=True,
    ) if rows else encode_delete([], table.tar_end, commit=True)
    return encode_file_header() + record


@dataclass
class ParseResult:
    """How far a parse got: ``committed`` bytes were applied; ``stopped_early`` if bytes remain."""

    committed: int
    stopped_early: bool


def _decode_record(buf: memoryview, pos: int) -> tuple[int, int, int, int, int, bytes] | None:
    """Decode the record at ``pos``: (end, op, flags, tar_end, entries offset, key blob); ``None`` if invalid.

    The key blob is the record's keys, each followed by a NUL (split only where needed).
    """
    if pos + RECORD_PREFIX > len(buf):
        return None
    magic, op, flags, _, count, keys_len, tar_end = RECORD_HEADER.unpack_from(buf, pos)
    if magic != RECORD_MAGIC or op not in (OP_PUT, OP_DELETE):
        return None
    entries_at = pos + RECORD_PREFIX
    keys_at = entries_at + (count * ENTRY.itemsize if op == OP_PUT else 0)
    end = keys_at + keys_len
    if end > len(buf):
        return None
    (crc,) = CRC.unpack_from(buf, pos + RECORD_HEADER.size)
    if zlib.crc32(buf[entries_at:end], zlib.crc32(buf[pos:pos + RECORD_HEADER.size])) != crc:
        return None
    blob = bytes(buf[keys_at:end])
    if blob.count(b"\0") != count or (blob and not blob.endswith(b"\0")):
        return None
    return end, op, flags, tar_end, entries_at, blob


def apply_records(table: IndexTable, data: bytes | memoryview, base: int) -> ParseResult:
    """Apply every committed batch in ``data`` (index bytes starting at file offset ``base``).

    Stops at the first incomplete or damaged record; a batch whose commit
    record is missing is not applied.
    """
    buf = memoryview(data)
    pos = 0
    committed = 0
    pending: list[tuple[int, int, bytes]] = []
    applied: list[tuple[int, int, bytes]] = []
    committed_tar_end = table.tar_end
    while pos < len(buf):
        decoded = _decode_record(buf, pos)
        if decoded is None:
            break
        end, op, flags, tar_end, entries_at, keys = decoded
        pending.append((op, entries_at, keys))
        pos = end
        if flags & FLAG_COMMIT:
            applied.extend(pending)
            pending.clear()
            committed_tar_end = tar_end
            committed = pos
    _apply(table, buf, applied)
    if committed:
        table.tar_end = committed_tar_end
    return ParseResult(base + committed, committed < len(buf))


def _apply(table: IndexTable, buf: memoryview, records: list[tuple[int, int, bytes]]) -> None:
    """Apply decoded records in order; each run of puts goes into the table in one step (opening is fast)."""
    run_blobs: list[bytes] = []
    run_entries: list[np.ndarray] = []

    def flush() -> None:
        if run_blobs:
            table.put_deferred(list(run_blobs), np.concatenate(run_entries) if len(run_entries) > 1 else run_entries[0])
            run_blobs.clear()
            run_entries.clear()

    for op, at, blob in records:
        if op == OP_PUT:
            if blob:
                run_blobs.append(blob)
                run_entries.append(np.frombuffer(buf, ENTRY, blob.count(b"\0"), offset=at))
        else:
            flush()
            table.delete(blob.split(b"\0")[:-1])
    flush()

