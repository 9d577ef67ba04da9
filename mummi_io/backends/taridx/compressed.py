"""Read-only access to compressed tars (``.tar.gz``, ``.tar.bz2``, ``.tar.xz``).

A compressed stream cannot be appended to in place, nor read at an offset
without decompressing what comes before it. So a compressed tar is opened
read-only: one pass builds the key -> (offset, size) table in memory (the
file is never written, and no index is written beside it), and each load
decompresses forward to the values it needs, in tar order. Loading many keys
in one call costs one pass; for repeated random access, convert it once:
``mummi-io cp -b taridx run.tar.gz run.tar``.

Values are not checked against a CRC-32 (members of compressed tars written
by other tools carry none); the compression's own checksum covers a full
decompression, not a seek.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib
from collections.abc import Callable, Sequence

from ...errors import IntegrityError
from .tarformat import JOURNAL_NAME, parse_journal

_STREAM_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


class CompressedTar:
    """The table of one compressed tar, and forward reads of its values."""

    def __init__(self, path: str, is_key: Callable[[str], bool]) -> None:
        self.path = path
        self.table: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    if member.name == JOURNAL_NAME and member.isreg():
                        handle = archive.extractfile(member)
                        deletes = parse_journal(handle.read() if handle else b"")
                        for key in deletes or []:
                            self.table.pop(key, None)
                    elif member.isreg() and is_key(member.name):
                        self.table[member.name] = (member.offset_data, member.size)
        except _STREAM_ERRORS as exc:
            raise IntegrityError(
                f"the compressed tar {path!r} is damaged or truncated ({exc}); the members before the damage "
                "can be extracted with tar, but mummi_io does not open it"
            ) from exc

    def read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` (``None`` where missing), decompressing once, forward."""
        wanted = sorted({key for key in keys if key in self.table}, key=lambda k: self.table[k][0])
        found: dict[str, bytes] = {}
        if wanted:
            try:
                with tarfile.open(self.path, "r:*") as archive:
                    stream = archive.fileobj
                    for key in wanted:
                        offset, size = self.table[key]
                        stream.seek(offset)  # type: ignore[union-attr]
                        data = stream.read(size)  # type: ignore[union-attr]
                        if len(data) != size:
                            raise EOFError(f"{key!r} is cut short")
                        found[key] = data
            except _STREAM_ERRORS as exc:
                raise IntegrityError(f"could not read {len(wanted)} value(s) from the compressed tar {self.path!r}: {exc}") from exc
        return [found.get(key) for key in keys]
