"""Default npz writer and reader, compatible with MuMMI's ``write_npz``/``read_npz``.

A writer is ``writer_func(fileobj, data) -> fileobj``; a reader is
``reader_func(fileobj) -> object``. The default reader refuses pickled
objects: ``np.load`` with ``allow_pickle=True`` runs code from the file.
"""

from __future__ import annotations

import zipfile
import zlib
from typing import IO, Any

import numpy as np

from ..core.errors import PickleRefusedError, UnreadableValueError

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def write_npz(fileobj: IO[bytes], data: dict[str, Any]) -> IO[bytes]:
    """Write ``data`` (a dict of arrays) as a compressed npz into ``fileobj`` and return it."""
    np.savez_compressed(fileobj, **data)
    return fileobj


def read_npz(fileobj: IO[bytes], allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """Read an npz from ``fileobj`` into a dict of arrays.

    Object arrays need pickle; pass ``reader_func=functools.partial(read_npz,
    allow_pickle=True)`` to ``load_npz`` only for files you trust.

    Raises
    ------
    PickleRefusedError
        If the file holds object arrays and ``allow_pickle`` is false.
    UnreadableValueError
        (a ``ValueError``) If the bytes are not an npz archive.
    """
    head = fileobj.read(4)
    fileobj.seek(-len(head), 1)
    if head not in _ZIP_MAGIC:
        # np.load would take anything that is neither zip nor .npy for a pickle.
        kind = "an .npy array" if head == b"\x93NUM" else "empty" if not head else "not a zip archive"
        raise UnreadableValueError(f"not a readable npz file ({kind}; an npz is a zip archive of .npy arrays)")
    try:
        _check_declared_sizes(fileobj, allow_pickle)
        with np.load(fileobj, allow_pickle=allow_pickle) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise PickleRefusedError(
                "this npz holds pickled object arrays, and loading a pickle runs code from the "
                "file; if you trust it, pass reader_func=functools.partial(mummi_io.read_npz, "
                "allow_pickle=True)"
            ) from exc
        raise UnreadableValueError(f"not a readable npz file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise UnreadableValueError(f"not a readable npz file ({type(exc).__name__}: {exc})") from exc


def _check_declared_sizes(fileobj: IO[bytes], allow_pickle: bool) -> None:
    """Refuse an npz whose arrays declare more bytes than they hold, before numpy allocates them.

    A 200-byte file can declare a shape of 10**12 elements; numpy would try
    to allocate it. Each member's header must match its stored size.
    """
    position = fileobj.tell()
    try:
        with zipfile.ZipFile(fileobj) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    reader = _HEADER_READERS.get(version)
                    if reader is None:
                        continue  # a newer format: numpy checks it
                    shape, _, dtype = reader(member)
                    if dtype.hasobject:
                        continue  # pickled: its size says nothing (and needs allow_pickle anyway)
                    header = member.tell()
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared != info.file_size - header:
                    raise ValueError(f"array {info.filename!r} declares {declared} bytes but holds "
                                     f"{info.file_size - header}")
    finally:
        fileobj.seek(position)
