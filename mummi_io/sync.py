"""Copy, mirror, move and archive keys between any two (backend, namespace) pairs.

Incremental: a key is copied only when the destination lacks it or holds
different bytes (size and CRC-32). Verified: each copied batch is read back
(the bytes, through the destination's own checks) before anything else
happens. Resumable: the work is done in batches and every run starts by
comparing, so a run killed mid-way and started again finishes the job
without copying twice. ``move`` and ``archive`` remove a source key only
after its copy was read back identical, also a copy that was already there,
and refuse a destination that is the source itself, however spelled.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .core.errors import IntegrityError, InvalidArgumentError
from .registry import IO

LOGGER = logging.getLogger(__name__)

BATCH = 500
MODES = ("copy", "mirror", "move")


@dataclass
class SyncReport:
    """What a sync did (or, with ``dry_run``, would do).

    Keys ``copied``, ``skipped`` (already identical), ``deleted`` (mirror),
    ``removed_from_source`` (move), ``conflicts``: keys the destination
    holds with other bytes, left on both sides when ``overwrite=False``, and
    ``vanished``: keys that held no value when read.
    """

    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    removed_from_source: int = 0
    bytes: int = 0
    conflicts: list[str] = field(default_factory=list)
    #: Keys given or listed that held no value when read (removed meanwhile, or not a value at all).
    vanished: list[str] = field(default_factory=list)


def _batches(keys: Sequence[str], size: int) -> list[Sequence[str]]:
    return [keys[start:start + size] for start in range(0, len(keys), size)]


def _fingerprint(value: bytes) -> tuple[int, str]:
    return len(value), f"{zlib.crc32(value):08x}"


def sync(
    source: IO,
    source_namespace: str,
    destination: IO,
    destination_namespace: str,
    pattern: str = "*",
    mode: str = "copy",
    keys: Sequence[str] | None = None,
    batch: int = BATCH,
    progress: Callable[[int], object] | None = None,
    *,
    overwrite: bool = True,
    dry_run: bool = False,
) -> SyncReport:
    """Make the destination hold the source's keys (``mode``: copy, mirror or move).

    - ``copy``: copy keys that are missing or different;
    - ``mirror``: the same, and delete destination keys (matching ``pattern``)
      that the source does not have;
    - ``move``: copy, then remove each verified key from the source.

    ``overwrite=False`` leaves a destination key that holds other bytes (and
    its source key) alone and lists it in ``report.conflicts``; ``dry_run``
    compares and reports without writing or removing anything.

    Raises
    ------
    IntegrityError
        If a copied value reads back different (or damaged); nothing of that
        batch is removed from the source.
    InvalidArgumentError
        For a ``move`` onto the source itself (it would remove every key), and
        for a destination stored inside the source or the other way round.
    """
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {MODES}, not {mode!r}")
    if source.nested_namespace(source_namespace, destination, destination_namespace):
        raise InvalidArgumentError(
            f"{destination_namespace!r} ({destination.get_type()}) and {source_namespace!r} ({source.get_type()}) are "
            "stored one inside the other (e.g. a tar inside the directory being archived): a key of one is a file "
            "of the other, so a copy could overwrite and a move remove the storage itself; nothing was done. "
            "Put the destination outside the source"
        )
    if mode == "move" and source.same_namespace(source_namespace, destination, destination_namespace):
        raise InvalidArgumentError(
            f"{destination_namespace!r} ({destination.get_type()}) is the source {source_namespace!r} itself: a move "
            "onto itself would remove every key it copies; nothing was done. Check the destination's spelling"
        )
    wanted = list(keys) if keys is not None else source.list_keys(source_namespace, pattern)
    report = SyncReport()
    for start in range(0, len(wanted), batch):
        chunk = wanted[start:start + batch]
        values = source.load_files(source_namespace, chunk, missing=None)
        present = [(key, value) for key, value in zip(chunk, values) if value is not None]
        report.vanished += [key for key, value in zip(chunk, values) if value is None]
        there = destination.stat_keys(destination_namespace, [key for key, _ in present]) if present else []
        todo = []
        for (key, value), stat in zip(present, there):
            if stat is not None and (stat["size"], stat["crc32"]) == _fingerprint(value):
                continue
            if stat is not None and not overwrite:
                report.conflicts.append(key)
                continue
            todo.append((key, value))
        conflicted = set(report.conflicts)
        if todo and not dry_run:
            destination.save_files(destination_namespace, [k for k, _ in todo], [v for _, v in todo])
            _read_back(destination, destination_namespace, todo)
        report.copied += len(todo)
        report.bytes += sum(len(v) for _, v in todo)
        report.skipped += len(present) - len(todo) - sum(1 for k, _ in present if k in conflicted)
        if mode == "move" and present:
            settled = [k for k, _ in present if k not in conflicted]
            if not dry_run:
                # What the destination already held was compared by size and CRC-32 (from an index on
                # taridx): before the source's copy goes, its bytes are read back too.
                copied = {k for k, _ in todo}
                _read_back(destination, destination_namespace, [(k, v) for k, v in present
                                                                 if k not in conflicted and k not in copied])
                source.remove_files(source_namespace, settled)
            report.removed_from_source += len(settled)
        if progress is not None:
            progress(len(chunk))
    if mode == "mirror":
        keep = set(wanted)
        extra = [k for k in destination.list_keys(destination_namespace, pattern) if k not in keep]
        if not dry_run:
            destination.remove_files(destination_namespace, extra)
        report.deleted = len(extra)
    LOGGER.info("sync %s -> %s (%s): %s", source_namespace, destination_namespace, mode, report)
    return report


def _read_back(destination: IO, namespace: str, items: Sequence[tuple[str, bytes]]) -> None:
    """Read ``items`` back from the destination (its own checks included) and compare the bytes."""
    if not items:
        return
    keys = [key for key, _ in items]
    try:
        stored = destination.load_files(namespace, keys, missing=None)
    except IntegrityError as exc:
        raise IntegrityError(f"the destination {namespace!r} holds damaged values ({exc}); nothing of this batch "
                             "was removed from the source", exc.keys) from exc
    bad = [key for (key, value), there in zip(items, stored) if there != value]
    if bad:
        raise IntegrityError(
            f"{len(bad)} value(s) read back different from {namespace!r}: {bad[:10]}; "
            "nothing of this batch was removed from the source", bad,
        )


def archive(
    source: IO, source_namespace: str, destination: IO, destination_namespace: str, pattern: str = "*",
    batch: int = 2000, progress: Callable[[int], object] | None = None,
) -> SyncReport:
    """Drain a namespace (e.g. a campaign's Redis keys) into an archive (e.g. one taridx tar).

    A move where each source key is removed only after its copy in the archive
    was read back as identical; safe to run again after a crash.
    """
    return sync(source, source_namespace, destination, destination_namespace, pattern, "move", batch=batch,
                progress=progress)


@dataclass
class VerifyReport:
    """What ``verify_keys`` found: ``bad`` lists ``(key, reason)`` pairs; the rest is the storage's own report."""

    checked: int = 0
    checksummed: bool = False
    bad: list[tuple[str, str]] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unchecked: int = 0


def verify_keys(
    io: IO, namespace: str, pattern: str = "*", batch: int = BATCH, progress: Callable[[int], object] | None = None
) -> VerifyReport:
    """Read every value matching ``pattern`` and report the ones that fail their checksum.

    On backends that store checksums (taridx) this finds corrupted values; on
    the others it proves every value is readable. The backend's own damage
    report (taridx: damaged ranges of the tar, an interrupted write, values
    its tar no longer holds) is included.
    """
    storage = io.storage_report(namespace)
    report = VerifyReport(checksummed=io.stores_checksums, damage=storage.damage, notes=storage.notes,
                          unchecked=storage.unchecked)
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
