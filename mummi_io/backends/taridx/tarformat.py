"""Writing and scanning the POSIX tar members of a ``taridx`` namespace.

Members are plain regular files named by their key, so ``tar -tvf`` lists
them and any tar extracts them. Every batch a writer appends ends with a
member named ``.mummi_io.journal`` holding JSON ``{"delete": [keys]}`` (the
keys the batch deletes, often none), which an extractor writes as an ordinary
hidden file. The journal member marks the batch complete: a scan of the tar
alone tells which batches were fully written, so the index can always be
rebuilt from the tar. The archive ends with the two zero blocks of the POSIX
end-of-archive marker; the next append starts where that marker begins.

Headers are built by hand for the common case (an ASCII name of at most 100
bytes): a ustar header of exactly 512 bytes. Any other name, or a size that
needs more than 11 octal digits, goes through :mod:`tarfile`'s PAX writer.
Either way the data offset is computed from the length of the header bytes
actually written, never assumed to be 512 (the bug of the original pytaridx).
"""

from __future__ import annotations

import functools
import json
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
JOURNAL_NAME = ".mummi_io.journal"

_MAX_USTAR_SIZE = 8**11 - 1
# The constant fields of a ustar header for a regular file, with the checksum
# field as eight spaces (the POSIX rule for computing it).
_MODE, _UID, _GID = b"0000644\0", b"0000000\0", b"0000000\0"
_MAGIC, _DEV = b"ustar\x0000", b"0000000\0"
_OWNER = b"mummi_io".ljust(32, b"\0")
_CONSTANT_SUM = sum(_MODE + _UID + _GID + b" " * 8 + _MAGIC + _OWNER + _OWNER + _DEV + _DEV) + ord("0")


def _pad(size: int) -> bytes:
    return bytes(-size % BLOCK)


def member_header(name: str, size: int, mtime: int) -> bytes:
    """Return the header bytes (one or more blocks) of a regular-file member."""
    encoded = name.encode("utf-8")
    if len(encoded) <= 100 and encoded.isascii() and size <= _MAX_USTAR_SIZE:
        size_field = b"%011o\0" % size
        mtime_field = b"%011o\0" % mtime
        checksum = _CONSTANT_SUM + sum(encoded) + sum(size_field) + sum(mtime_field)
        header = b"".join(
            (
                encoded.ljust(100, b"\0"), _MODE, _UID, _GID, size_field, mtime_field,
                b"%06o\0 " % checksum, b"0", bytes(100), _MAGIC, _OWNER, _OWNER, _DEV, _DEV,
                bytes(167),
            )
        )
        return header
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uname = info.gname = "mummi_io"
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


@dataclass
class PlacedMember:
    """Where one value landed in a blob of members built by :func:`build_members`."""

    key: str
    data_offset: int  # relative to the start of the blob
    size: int
    pieces: tuple[bytes | bytearray | memoryview, ...]

    @functools.cached_property
    def crc(self) -> int:
        """CRC-32 of the value (computed on first use: zlib releases the GIL, so a thread can do it)."""
        crc = 0
        for piece in self.pieces:
            crc = zlib.crc32(piece, crc)
        return crc


def build_members(
    items: list[tuple[str, bytes | bytearray | memoryview]], deletes: list[str], mtime: int
) -> tuple[list[bytes | bytearray | memoryview], int, list[PlacedMember]]:
    """Serialize one batch: the values, then the journal member that completes it.

    Returns the list of byte chunks to write in order, their total length, and
    the placement of every value relative to the start of the chunks.
    """
    chunks: list[bytes | bytearray | memoryview] = []
    placed: list[PlacedMember] = []
    position = 0
    journal = json.dumps({"delete": deletes}, ensure_ascii=False).encode("utf-8")
    for key, value, is_value in [*((k, v, True) for k, v in items), (JOURNAL_NAME, journal, False)]:
        pieces = value if isinstance(value, tuple) else (value,)  # mummi_io.abc.Parts
        size = sum(len(p) if isinstance(p, (bytes, bytearray)) else memoryview(p).nbytes for p in pieces)
        header = member_header(key, size, mtime)
        padding = _pad(size)
        chunks.append(header)
        chunks.extend(pieces)
        chunks.append(padding)
        if is_value:
            placed.append(PlacedMember(key, position + len(header), size, tuple(pieces)))
        position += len(header) + size + len(padding)
    return chunks, position, placed


@dataclass
class ScannedBatch:
    """A complete batch found by :func:`scan_batches`."""

    members: list[tuple[str, int, int]]  # (name, data offset, size) of each value
    deletes: list[str]
    end: int  # where the next member starts (the end-of-archive marker's place)


def scan_batches(path: str, start: int = 0, foreign: bool = False) -> Iterator[ScannedBatch]:
    """Yield the complete batches of the tar at ``path``, reading from byte ``start``.

    A batch is complete when its journal member is. The scan stops at the
    end-of-archive marker or at the first torn member (invalid header, or data
    running past the end of the file); members after the last journal are an
    incomplete batch and are not yielded, unless ``foreign`` is set and the
    scan met no journal at all: then the tar was not written by mummi_io
    (pytaridx, ``tar``, ``tarfile``) and every whole member counts.
    """
    file_size = os.path.getsize(path)
    pending: list[tuple[str, int, int]] = []
    pending_end = start
    seen_journal = False
    with open(path, "rb") as handle:
        handle.seek(start)
        try:
            archive = tarfile.open(fileobj=handle, mode="r:", encoding="utf-8", errors="surrogateescape")
        except tarfile.ReadError:  # empty, or the first header is torn: nothing valid
            return
        while True:
            try:
                info = archive.next()
            except tarfile.ReadError:
                break
            if info is None:
                break
            data_offset = info.offset_data  # tarfile counts from the file's start
            if data_offset + info.size > file_size:
                break
            member_end = data_offset + info.size + len(_pad(info.size))
            if not info.isreg():
                pending_end = member_end
                continue
            if info.name != JOURNAL_NAME:
                pending.append((info.name, data_offset, info.size))
                pending_end = member_end
                continue
            resume = handle.tell()
            handle.seek(data_offset)
            try:
                deletes = list(json.loads(handle.read(info.size))["delete"])
            except (ValueError, KeyError, TypeError):
                break  # a damaged journal: the batch is not known to be complete
            handle.seek(resume)
            seen_journal = True
            yield ScannedBatch(pending, deletes, member_end)
            pending = []
    if foreign and not seen_journal and pending:
        yield ScannedBatch(pending, [], pending_end)


def crc_of_range(read: Callable[[int, int], bytes], offset: int, size: int) -> int:
    """CRC-32 of ``size`` bytes at ``offset``, read in 8 MiB pieces via ``read(size, offset)``."""
    crc = 0
    done = 0
    while done < size:
        piece = read(min(size - done, 8 << 20), offset + done)
        if not piece:
            break
        crc = zlib.crc32(piece, crc)
        done += len(piece)
    return crc
