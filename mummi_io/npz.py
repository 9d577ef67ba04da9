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

from .errors import PickleRefusedError, UnreadableValueError

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


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
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UnreadableValueError(f"not a readable npz file ({type(exc).__name__}: {exc})") from exc
