"""Telling, from its first bytes, what a file given as a ``taridx`` namespace is.

A namespace must be a plain tar that mummi_io can append to. Anything else
is refused before a byte is changed, with an error saying what the file
looks like; compressed tars are opened read-only (see :mod:`.compressed`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .tarformat import BLOCK, ZERO_BLOCK, parse_header

#: Compressions a tar may come in: name -> (magic bytes, whether Python's tarfile reads it).
COMPRESSIONS = {
    "gzip": (b"\x1f\x8b", True),
    "bzip2": (b"BZh", True),
    "xz": (b"\xfd7zXZ\x00", True),
    "zstd": (b"\x28\xb5\x2f\xfd", False),
    "lzip": (b"LZIP", False),
    "compress (.Z)": (b"\x1f\x9d", False),
}

#: Namespace names kept as given (no ``.tar`` appended): compressed tars.
COMPRESSED_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tar.zst")

_OTHER_FORMATS = [
    (b"PK\x03\x04", "a zip archive (an .npz file is one)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"CDF\x01", "a netCDF file"),
    (b"CDF\x02", "a netCDF file"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"MUMMIIDX", "a mummi_io index file (the namespace is the .tar beside it)"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"%PDF", "a PDF document"),
]


@dataclass(frozen=True)
class Kind:
    """What a file is: ``"tar"`` (possibly empty), ``"compressed"`` (with ``compression``), or ``"other"``."""

    kind: str
    description: str
    compression: str = ""
    readable: bool = True


def identify(head: bytes, has_tar_header: Callable[[], bool], first_nonzero: Callable[[], bytes | None]) -> Kind:
    """Classify a file from its first bytes (``head``, up to a block).

    ``has_tar_header()`` says whether a valid ustar header occurs anywhere in
    the file (asked only when the first bytes match no known format): a tar
    whose first header is damaged is still a tar. ``first_nonzero()`` gives
    the first block that is not all zeros (``None`` if there is none), asked
    when the file starts with a zero block: an empty tar is all zeros, but a
    disk image or an HDF5 file with a user block also starts with zeros.
    """
    if not head:
        return Kind("tar", "an empty file")
    if len(head) >= BLOCK and parse_header(head[:BLOCK]) is not None:
        return Kind("tar", "a tar archive")
    if len(head) >= BLOCK and head[:BLOCK] == ZERO_BLOCK:
        block = first_nonzero()
        if block is None:
            return Kind("tar", "an empty tar (zero blocks only)")
        if parse_header(block) is not None:
            return Kind("tar", "a tar archive that starts with zero blocks")
        return Kind("other", "a file that starts with zero bytes but holds no tar header after them "
                    "(a disk image, or a file with a zeroed header)")
    for name, (magic, readable) in COMPRESSIONS.items():
        if head.startswith(magic):
            return Kind("compressed", f"a {name}-compressed file", name, readable)
    for magic, description in _OTHER_FORMATS:
        if head.startswith(magic):
            return Kind("other", description)
    if has_tar_header():
        return Kind("tar", "a tar archive whose first header is damaged")
    if len(head) < BLOCK and not head.strip(b"\0"):
        return Kind("tar", "a file of zero bytes (an empty tar)")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return Kind("other", "binary data that is not a tar archive")
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    if printable >= 0.95 * len(text):
        return Kind("other", "a text file")
    return Kind("other", "binary data that is not a tar archive")
