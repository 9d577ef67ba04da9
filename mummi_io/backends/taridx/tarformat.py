"""The POSIX tar members of a ``taridx`` namespace: building and parsing headers.

Why one module: the writer and the parser of one on-disk format, with the
fast batch writer next to the one-member reference it must match byte for
byte; split apart, a change to one side would not show on the other.

Members are plain regular files named by their key, so ``tar -tvf`` lists
them and any tar extracts them. What mummi_io needs to rebuild its index from
the tar alone lives in the last 12 bytes of each member's ustar header, a
field POSIX leaves unused (offsets 500-511; GNU tar, bsdtar and Python's
``tarfile`` ignore it, and the header checksum covers it)::

    b"M"            mummi_io's mark
    b"c" or b"e"    the member continues its batch, or ends it (the batch is complete)
    u32 LE          CRC-32 of the member's data
    u32 LE          blocks (512 bytes) from the batch's first header to this member's first header
    u16 LE          low 16 bits of the CRC-32 of the name, size, distance and flag (see :func:`name_check`)

So every value carries its checksum and its batch, at no extra byte: an
archive of N one-key saves lists N members. The name check covers what the
tar header's own checksum (a plain byte sum) cannot: two swapped digits of a
name keep the sum, not the check. It also lets a scan recover a member whose
header is damaged elsewhere (mode, owner, time, the header checksum itself):
name, size, batch and data are then all confirmed by checksums. A batch that deletes keys (a ``remove_files``, or a rename inside
the namespace) ends with one member named ``.mummi_io.journal`` holding its
list of keys twice, each copy with its own CRC-32 (see :func:`journal_bytes`);
it is the only extra member, and only where something is deleted.

Headers are built by hand for the common case (an ASCII name of at most 100
bytes): a ustar header of exactly 512 bytes, for a whole batch at once with
numpy (:func:`build_members`; small values are laid out with their headers
as the rows of one array). Any other name, or a size that
needs more than 11 octal digits, goes through :mod:`tarfile`'s PAX writer,
and the mark goes into the ustar header that follows the PAX header. Either
way the data offset is computed from the length of the header bytes actually
written, never assumed to be 512 (the bug of the original pytaridx).

Archives written before this format (a journal member after every batch, no
mark) and archives written by other tools (pytaridx, ``tar``) are read too:
see :mod:`.scan`.
"""

from __future__ import annotations

import json
import struct
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...core.crc import crc32

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
END_OF_ARCHIVE = bytes(2 * BLOCK)
JOURNAL_NAME = ".mummi_io.journal"
OWNER = "mummi_io"

_MARK = ord("M")
_CONTINUES, _ENDS = ord("c"), ord("e")
_MAX_USTAR_SIZE = 8**11 - 1
_MAX_BACK_BLOCKS = (1 << 32) - 1
# The constant fields of a ustar header for a regular file, with the checksum
# field as eight spaces (the POSIX rule for computing it).
_MODE, _UID, _GID = b"0000644\0", b"0000000\0", b"0000000\0"
_MAGIC, _DEV = b"ustar\x0000", b"0000000\0"
_OWNER = OWNER.encode().ljust(32, b"\0")
_CONSTANT_SUM = sum(_MODE + _UID + _GID + b" " * 8 + _MAGIC + _OWNER + _OWNER + _DEV + _DEV) + ord("0")
_PREFIX_PAD = bytes(155)
_ZEROS = bytes(BLOCK)


def padding(size: int) -> int:
    """Bytes of zero padding after ``size`` bytes of member data."""
    return -size % BLOCK


def name_check(name: str | bytes, size: int, back_blocks: int, ends_batch: bool) -> int:
    """The 16-bit check kept in a member's mark: of its name, size, batch distance and flag."""
    encoded = name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
    return zlib.crc32(encoded + b"/%d/%d/%d" % (size, back_blocks, ends_batch)) & 0xFFFF


_MARK_LAYOUT = struct.Struct("<BBIIH")


def _with_mark(header: bytes, mark: bytes) -> bytes:
    """Put ``mark`` into the pad of the last header block and recompute that block's checksum."""
    block = bytearray(header[-BLOCK:])
    block[500:512] = mark
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return header[:-BLOCK] + bytes(block)


def member_header(name: str, size: int, mtime: int, crc: int, ends_batch: bool, back_blocks: int) -> bytes:
    """Return the header bytes (one or more blocks) of a regular-file member with mummi_io's mark."""
    encoded = name.encode("utf-8")
    mark = _MARK_LAYOUT.pack(
        _MARK, _ENDS if ends_batch else _CONTINUES, crc, back_blocks,
        zlib.crc32(encoded + b"/%d/%d/%d" % (size, back_blocks, ends_batch)) & 0xFFFF,
    )
    if len(encoded) <= 100 and encoded.isascii() and size <= _MAX_USTAR_SIZE:
        size_field = b"%011o\0" % size
        mtime_field = b"%011o\0" % mtime
        checksum = _CONSTANT_SUM + sum(encoded) + sum(size_field) + sum(mtime_field) + sum(mark)
        return b"".join(
            (
                encoded.ljust(100, b"\0"), _MODE, _UID, _GID, size_field, mtime_field,
                b"%06o\0 " % checksum, b"0", bytes(100), _MAGIC, _OWNER, _OWNER, _DEV, _DEV,
                _PREFIX_PAD, mark,
            )
        )
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uname = info.gname = OWNER
    plain = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
    # The PAX header's data (the long name) is covered by no header checksum: record its
    # CRC-32 in a standard `comment` record, which readers ignore, when it costs no extra block.
    info.pax_headers = {"comment": pax_comment(name, size)}
    guarded = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
    return _with_mark(guarded if len(guarded) == len(plain) else plain, mark)


def pax_comment(name: str, size: int) -> str:
    """The ``comment`` record guarding a PAX member's name and size."""
    return f"{OWNER}:{zlib.crc32(name.encode('utf-8', 'surrogateescape') + b'/%d' % size):08x}"


@dataclass
class Placement:
    """Where the members of a blob built by :func:`build_members` landed, one column per field.

    Offsets are relative to the start of the blob. The first ``values``
    members are the batch's values; a journal member, if any, is last.
    """

    keys: list[bytes]  # member names, UTF-8
    header_offsets: list[int]
    data_offsets: list[int]
    sizes: list[int]
    crcs: list[int]
    values: int


def crc_of(pieces: Sequence[bytes | bytearray | memoryview]) -> int:
    """CRC-32 of consecutive pieces."""
    crc = 0
    for piece in pieces:
        crc = crc32(piece, crc)
    return crc


def pieces_of(value: object) -> tuple:
    """A value as a tuple of buffers (a :class:`mummi_io.core.contract.Parts` already is one)."""
    return value if isinstance(value, tuple) else (value,)


def _nbytes(pieces: tuple) -> int:
    return sum(len(p) if isinstance(p, (bytes, bytearray)) else memoryview(p).nbytes for p in pieces)


# The ustar header of a plain member (ASCII name of at most 100 bytes) with
# name, size, checksum and mark left to fill: see :func:`_plain_headers`.
_PLAIN_TEMPLATE = np.frombuffer(
    b"".join((bytes(100), _MODE, _UID, _GID, bytes(12), bytes(12), b" " * 8, b"0", bytes(100), _MAGIC, _OWNER,
              _OWNER, _DEV, _DEV, _PREFIX_PAD, bytes(12))), np.uint8,
)
_TEMPLATE_SUM = int(_PLAIN_TEMPLATE.sum())
_MARK_DTYPE = np.dtype([("mark", "u1"), ("flag", "u1"), ("crc", "<u4"), ("back", "<u4"), ("check", "<u2")])
_OCTAL_11 = np.arange(30, -1, -3, dtype=np.int64)
_OCTAL_6 = np.arange(15, -1, -3, dtype=np.int64)
_PADS = tuple(bytes(n) for n in range(BLOCK))
#: Batches up to this many bytes are joined into one buffer (one system call, no per-piece bookkeeping).
_JOIN_BYTES = 4 << 20


def _octal_digits(numbers: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each number as ASCII octal digits, one row per number (as many digits as ``shifts``)."""
    return ((numbers[:, None] >> shifts) & 7).astype(np.uint8) + ord("0")


def _is_plain(encoded: list[bytes], sizes: list[int]) -> bool:
    """Whether every member gets a single 512-byte ustar header (short ASCII names, ustar sizes)."""
    return bool(encoded) and max(map(len, encoded)) <= 100 and b"".join(encoded).isascii() and max(
        sizes) <= _MAX_USTAR_SIZE


def _plain_blocks(
    encoded: list[bytes], sizes: list[int], crcs: Sequence[int], mtime: int, sealed: bool,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int]]:
    """The 512-byte headers of plain members (see :func:`_is_plain`), built for the whole batch at once.

    The same bytes :func:`member_header` gives one member at a time (a test
    checks that), computed with numpy: per-member Python would cost more
    than the write itself. Returns one row per header, and the headers'
    offsets in the blob. With ``out`` (``count`` rows of 512 bytes, possibly
    a view of a larger array), the headers are written there.
    """
    count = len(encoded)
    size_array = np.array(sizes, dtype=np.int64)
    strides = BLOCK + ((size_array + (BLOCK - 1)) & ~(BLOCK - 1))
    offsets = np.zeros(count, dtype=np.int64)
    np.cumsum(strides[:-1], out=offsets[1:])
    back = offsets >> 9
    if int(back[-1]) > _MAX_BACK_BLOCKS:
        raise ValueError("a batch larger than 2 TiB cannot be written as one tar batch; split it")
    ends = [0] * count
    ends[-1] = int(sealed)
    # The name check of each member (see name_check): the CRC-32 of the name continued over "/size/back/ends".
    suffixes = "\0".join(map("/%d/%d/%d".__mod__, zip(sizes, back.tolist(), ends))).encode().split(b"\0")
    marks = np.empty(count, dtype=_MARK_DTYPE)
    marks["mark"] = _MARK
    marks["flag"] = _CONTINUES
    marks["flag"][-1] = _ENDS if sealed else _CONTINUES
    marks["crc"] = crcs
    marks["back"] = back
    marks["check"] = np.fromiter(map(crc32, suffixes, map(crc32, encoded)), np.uint32, count) & 0xFFFF
    names = np.frombuffer(np.array(encoded, dtype="S100").tobytes(), np.uint8).reshape(count, 100)
    mark_bytes = marks.view(np.uint8).reshape(count, 12)
    size_digits = _octal_digits(size_array, _OCTAL_11)
    mtime_field = b"%011o\0" % mtime
    blocks = np.empty((count, BLOCK), dtype=np.uint8) if out is None else out
    blocks[:] = _PLAIN_TEMPLATE
    blocks[:, :100] = names
    blocks[:, 124:135] = size_digits
    blocks[:, 136:148] = np.frombuffer(mtime_field, np.uint8)
    blocks[:, 500:512] = mark_bytes
    checksums = (_TEMPLATE_SUM + sum(mtime_field) + names.sum(axis=1, dtype=np.int64)
                 + size_digits.sum(axis=1, dtype=np.int64) + mark_bytes.sum(axis=1, dtype=np.int64))
    blocks[:, 148:154] = _octal_digits(checksums, _OCTAL_6)
    blocks[:, 154] = 0
    return blocks, offsets.tolist()


def _headers(
    encoded: list[bytes], sizes: list[int], crcs: Sequence[int], mtime: int, sealed: bool,
) -> tuple[list[bytes], list[int]]:
    """The headers of a batch's members and their offsets in the blob (data follows each header)."""
    if _is_plain(encoded, sizes):
        blocks, offsets = _plain_blocks(encoded, sizes, crcs, mtime, sealed)
        flat = blocks.tobytes()
        return [flat[at:at + BLOCK] for at in range(0, len(flat), BLOCK)], offsets
    headers, offsets = [], []
    position = 0
    last = len(encoded) - 1
    for number, (name, size, crc) in enumerate(zip(encoded, sizes, crcs)):
        back = position >> 9
        if back > _MAX_BACK_BLOCKS:
            raise ValueError("a batch larger than 2 TiB cannot be written as one tar batch; split it")
        header = member_header(name.decode("utf-8"), size, mtime, crc, sealed and number == last, back)
        headers.append(header)
        offsets.append(position)
        position += len(header) + size + (-size % BLOCK)
    return headers, offsets


def _small_uniform_blob(
    encoded: list[bytes], values: list[bytes], sizes: list[int], crcs: Sequence[int], mtime: int, sealed: bool,
) -> tuple[memoryview, list[int]] | None:
    """The whole batch as one buffer when every value is ``bytes`` padded to one block; else ``None``.

    The common case of many small values: headers and values are laid out
    as the rows of one array, with no per-member Python at all. (A buffer
    reused between batches was tried: a save from a signal handler, or any
    nested save in the same thread, would overwrite a batch not yet written.)
    """
    if not values or max(sizes) > BLOCK or not _is_plain(encoded, sizes):
        return None
    rows = np.empty((len(values), 2 * BLOCK), dtype=np.uint8)
    _, offsets = _plain_blocks(encoded, sizes, crcs, mtime, sealed, out=rows[:, :BLOCK])
    # A fixed-width bytes array pads each value with zeros, which is the tar's padding; an empty value
    # still takes its header's row, so rows whose size is 0 are dropped below.
    rows[:, BLOCK:] = np.frombuffer(np.array(values, dtype=f"S{BLOCK}").tobytes(), np.uint8).reshape(-1, BLOCK)
    if min(sizes) == 0:
        keep = np.ones((len(values), 2), dtype=bool)
        keep[:, 1] = np.array(sizes) > 0
        rows = rows.reshape(-1, BLOCK)[keep.ravel()]
    return rows.data.cast("B"), offsets


def build_members(
    items: Sequence[tuple[str, object]], deletes: Sequence[str], mtime: int, crcs: Sequence[int] | None,
) -> tuple[list[bytes | bytearray | memoryview], int, Placement]:
    """Serialize one batch: its values, then (only if it deletes keys) its journal member.

    With ``crcs`` (one per value) the headers are final and the last member
    ends the batch. With ``crcs=None`` the headers are *unsealed*: checksum
    0 and no member ends the batch, so the bytes can be written while the
    checksums are still being computed; :func:`seal_members` then gives the
    final headers (of the same lengths). A crash before sealing leaves an
    incomplete batch, which no reader applies.

    Returns the byte chunks to write in order, their total length, and the
    placement of every member relative to the start of the chunks.
    """
    sealed = crcs is not None
    values: list[object] = [value for _, value in items]
    encoded = "\0".join([key for key, _ in items]).encode("utf-8").split(b"\0") if items else []
    if len(encoded) != len(items):  # a name with NUL in it (never a key): encode one by one
        encoded = [key.encode("utf-8") for key, _ in items]
    member_crcs = list(crcs) if crcs is not None else [0] * len(values)
    if deletes:
        journal = journal_bytes(deletes)
        values.append(journal)
        encoded.append(JOURNAL_NAME.encode())
        member_crcs.append(zlib.crc32(journal))
    all_bytes = all(value.__class__ is bytes for value in values)
    sizes = list(map(len, values)) if all_bytes else [  # type: ignore[arg-type]
        len(value) if value.__class__ is bytes else _nbytes(pieces_of(value)) for value in values  # type: ignore[arg-type]
    ]
    uniform = _small_uniform_blob(encoded, values, sizes, member_crcs, mtime, sealed) if all_bytes else None  # type: ignore[arg-type]
    if uniform is not None:
        blob, offsets = uniform
        placement = Placement(encoded, offsets, [offset + BLOCK for offset in offsets], sizes, member_crcs, len(items))
        return [blob], len(blob), placement
    headers, offsets = _headers(encoded, sizes, member_crcs, mtime, sealed)
    data_offsets = [offset + len(header) for offset, header in zip(offsets, headers)]
    length = data_offsets[-1] + sizes[-1] + (-sizes[-1] % BLOCK) if values else 0
    pads = list(map(_PADS.__getitem__, (-np.array(sizes, dtype=np.int64) % BLOCK).tolist()))
    chunks: list[bytes | bytearray | memoryview]
    if all_bytes:
        chunks = [b""] * (3 * len(values))
        chunks[0::3], chunks[1::3], chunks[2::3] = headers, values, pads  # type: ignore[assignment]
    else:
        chunks = []
        for header, value, pad in zip(headers, values, pads):
            chunks.append(header)
            chunks.extend(pieces_of(value))
            chunks.append(pad)
    if length <= _JOIN_BYTES and len(chunks) > 3:
        chunks = [b"".join(chunks)]
    placement = Placement(encoded, offsets, data_offsets, sizes, member_crcs, len(items))
    return chunks, length, placement


def seal_members(placement: Placement, crcs: Sequence[int], mtime: int) -> list[tuple[int, bytes]]:
    """The final headers of an unsealed batch: ``(relative offset, header bytes)`` per member."""
    placement.crcs[:placement.values] = crcs
    headers, offsets = _headers(placement.keys, placement.sizes, placement.crcs, mtime, sealed=True)
    if offsets != placement.header_offsets:  # cannot happen: a checksum never changes a header's length
        raise AssertionError("sealing moved a member header")
    return list(zip(offsets, headers))


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Mark:
    """mummi_io's mark in a member header (see the module docstring)."""

    crc: int
    ends_batch: bool
    back_blocks: int
    name_check: int


@dataclass(frozen=True)
class Header:
    """One parsed 512-byte header block."""

    name: bytes
    size: int
    typeflag: bytes
    uname: bytes
    linkname: bytes
    mark: Mark | None
    ustar: bool  # carries the ustar magic (POSIX or GNU)
    checksum_ok: bool


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 (first byte 0x80 or 0xff)."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 1 << (8 * (len(field) - 1))
        return value
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = _number(block[148:156])
    except ValueError:
        return False
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    if stored == unsigned:
        return True
    # Some old tars summed signed chars; readers accept either.
    signed = unsigned - 256 * sum(1 for byte in block if byte > 127) + 256 * sum(1 for byte in block[148:156] if byte > 127)
    return stored == signed


def parse_header(block: bytes, strict: bool = True) -> Header | None:
    """Parse one header block; ``None`` if it is not a valid tar header.

    With ``strict=False`` a block whose header checksum fails is still parsed
    (``checksum_ok`` false), for recovery by mummi_io's own checks; fields
    that do not parse still give ``None``.
    """
    if len(block) != BLOCK:
        return None
    checksum_ok = _checksum_ok(block)
    if strict and not checksum_ok:
        return None
    magic = block[257:263]
    ustar = magic in (b"ustar\x00", b"ustar ")
    try:
        size = _number(block[124:136])
        _number(block[100:108])  # mode: a damaged field means a damaged header
    except ValueError:
        return None
    if size < 0:
        return None
    name = block[0:100].split(b"\0", 1)[0]
    if magic == b"ustar\x00":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    mark = None
    if block[500] == _MARK and block[501] in (_CONTINUES, _ENDS):
        mark = Mark(
            int.from_bytes(block[502:506], "little"), block[501] == _ENDS,
            int.from_bytes(block[506:510], "little"), int.from_bytes(block[510:512], "little"),
        )
    return Header(
        name, size, block[156:157], block[265:297].split(b"\0", 1)[0], block[157:257].split(b"\0", 1)[0],
        mark, ustar, checksum_ok,
    )


def parse_pax(data: bytes) -> dict[bytes, bytes]:
    """The records of a PAX extended header (``"<length> <key>=<value>\\n"``...)."""
    records: dict[bytes, bytes] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        if space < 0:
            break
        try:
            length = int(data[position:space])
        except ValueError:
            break
        if length <= 0:
            break
        record = data[space + 1:position + length - 1]  # without the trailing newline
        key, _, value = record.partition(b"=")
        records[key] = value
        position += length
    return records


def journal_bytes(deletes: Sequence[str]) -> bytes:
    """The content of a journal member: the deleted keys, twice, each copy with its CRC-32.

    Two lines ``<crc32 hex> {"delete": [...]}``: a damaged byte spoils at
    most one copy, and its CRC-32 says which.
    """
    body = json.dumps({"delete": list(deletes)}, ensure_ascii=False).encode("utf-8")
    line = b"%08x " % zlib.crc32(body) + body + b"\n"
    return line + line


def parse_journal(data: bytes, checksummed_only: bool = False) -> list[str] | None:
    """The keys a journal member deletes; ``None`` if no copy of its content is intact.

    Reads the current format (two checksummed copies) and, unless
    ``checksummed_only``, the earlier one (plain JSON).
    """
    candidates = []
    for line in data.split(b"\n"):
        head, _, body = line.partition(b" ")
        if len(head) == 8 and body:
            try:
                if int(head, 16) == zlib.crc32(body):
                    candidates.append(body)
            except ValueError:
                pass  # not a checksummed line: try the next one
    if not candidates and not checksummed_only and data[:1] == b"{":
        candidates.append(data)  # the earlier format: one plain JSON object
    for body in candidates:
        try:
            deletes = json.loads(body)["delete"]
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        if isinstance(deletes, list) and all(isinstance(key, str) for key in deletes):
            return deletes
    return None
