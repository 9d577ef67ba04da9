"""Copying keys between namespaces and backends, and verifying stored values.

The library side of ``mummi-io cp`` and ``mummi-io verify`` (and of MuMMI's
``convert_interface_type``): batched, verified against checksums, with an
optional progress callback.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import IntegrityError
from .facade import IO

#: Keys per batch: large enough to amortize round trips, small enough for memory.
BATCH = 500


def _batches(keys: Sequence[str], size: int) -> list[Sequence[str]]:
    return [keys[start:start + size] for start in range(0, len(keys), size)]


@dataclass
class CopyReport:
    """What a copy did."""

    copied: int = 0
    bytes: int = 0
    verified: bool = False


def copy_keys(
    source: IO,
    source_namespace: str,
    destination: IO,
    destination_namespace: str,
    keys: Sequence[str] | None = None,
    pattern: str = "*",
    verify: bool = True,
    batch: int = BATCH,
    progress: Callable[[int], object] | None = None,
) -> CopyReport:
    """Copy ``keys`` (default: those matching ``pattern``) to another namespace or backend.

    With ``verify``, every batch is checked after writing: the destination's
    size and CRC-32 of each value must equal the source's.

    Raises
    ------
    KeyNotFoundError
        If a listed key vanished from the source during the copy.
    IntegrityError
        If a copied value does not match its source, naming the keys.
    """
    if keys is None:
        keys = source.list_keys(source_namespace, pattern)
    report = CopyReport(verified=verify)
    for chunk in _batches(list(keys), batch):
        values = source.load_files(source_namespace, list(chunk))
        destination.save_files(destination_namespace, list(chunk), values)
        if verify:
            stats = destination.stat_keys(destination_namespace, list(chunk))
            bad = [
                key for key, value, stat in zip(chunk, values, stats)
                if stat is None or stat["size"] != len(value) or stat["crc32"] != f"{zlib.crc32(value):08x}"
            ]
            if bad:
                raise IntegrityError(
                    f"{len(bad)} value(s) differ after copying to {destination_namespace!r}: {bad[:10]}; "
                    "check the destination's storage and copy again"
                )
        report.copied += len(chunk)
        report.bytes += sum(len(value) for value in values)
        if progress is not None:
            progress(len(chunk))
    return report


@dataclass
class VerifyReport:
    """What ``verify_keys`` found: ``bad`` lists ``(key, reason)`` pairs."""

    checked: int = 0
    checksummed: bool = False
    bad: list[tuple[str, str]] = field(default_factory=list)


def verify_keys(
    io: IO, namespace: str, pattern: str = "*", batch: int = BATCH, progress: Callable[[int], object] | None = None
) -> VerifyReport:
    """Read every value matching ``pattern`` and report the ones that fail their checksum.

    On backends that store checksums (taridx) this finds corrupted values; on
    the others it proves every value is readable.
    """
    report = VerifyReport(checksummed=io.backend.stores_checksums)
    for chunk in _batches(io.list_keys(namespace, pattern), batch):
        try:
            io.load_files(namespace, list(chunk), missing=None)
        except IntegrityError:
            for key in chunk:  # find which ones, one by one
                try:
                    io.load_files(namespace, key, missing=None)
                except IntegrityError as exc:
                    report.bad.append((key, str(exc)))
        report.checked += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return report


__all__ = ["CopyReport", "VerifyReport", "copy_keys", "verify_keys"]
