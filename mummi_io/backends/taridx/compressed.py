"""Compressed tars (``.tar.gz``, ``.tar.bz2``, ``.tar.xz``): decompressed once, read like any tar.

A compressed stream cannot be appended to in place, nor read at an offset
without decompressing what comes before it. So a compressed tar is opened
read-only: the first read in a process decompresses it whole into a private
temporary file (in ``$TMPDIR``, unlinked: never visible, gone with the
process), checking the compression's own checksum on the way; from then on
it is read like any tar, each value checked against the CRC-32 in its header
when mummi_io wrote it. The compressed file is never written. Each process
holds its own copy: a compressed tar needs its uncompressed size free in
``$TMPDIR``.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import tempfile
import zlib
from typing import Any

from ...core.errors import IntegrityError, StorageError
from ...core.fs import os_error

_OPENERS: dict[str, Any] = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}
_PIECE = 8 << 20


def decompress(path: str, compression: str) -> int:
    """Decompress ``path`` into a private temporary file; return its descriptor (the caller closes it).

    Raises
    ------
    IntegrityError
        If the stream is damaged or cut short (its checksum fails, or it ends early).
    """
    out = tempfile.TemporaryFile(prefix="mummi-io-decompressed-")
    try:
        with _OPENERS[compression](path, "rb") as stream:
            while True:
                piece = stream.read(_PIECE)  # reading to the very end checks the stream's checksum
                if not piece:
                    break
                try:
                    out.write(piece)
                except OSError as exc:
                    raise os_error(
                        f"decompress {path!r} into {tempfile.gettempdir()!r} (set TMPDIR to a directory with "
                        f"room for it, or convert it once: mummi-io cp -b taridx {path} <new>.tar)", exc,
                    ) from exc
        out.flush()
        fd = os.dup(out.fileno())
    except StorageError:
        raise
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        raise IntegrityError(
            f"the {compression}-compressed tar {path!r} is damaged or cut short ({exc}); mummi_io does not read it. "
            "`tar -xf` may still extract the members before the damage"
        ) from exc
    finally:
        out.close()
    return fd
