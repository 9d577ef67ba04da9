"""What ``mummi-io verify``, ``reindex`` and ``compact`` do to one namespace's tar and index.

Each works on a :class:`~.session.NamespaceSession`. The report only reads;
reindex and compact hold the writers' lock, replace the index through the
atomic rewrite (:meth:`~.session.NamespaceSession.replace_index`), and never
drop damage silently: reindex refuses to lose what the index knew unless told
to, compact refuses to copy a corrupt value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from ...core.crc import crc32

from ...core.contract import StorageReport
from ...core.errors import IntegrityError, StorageNotFoundError
from ...core.fs import fsync_directory, storage_errors
from . import index as idx
from . import repair
from .repair import ReindexReport
from .scan import Damage, MappedTar, last_nonzero_end, scan
from .session import NamespaceSession, is_key, names_not_keys, pwrite_all, shown
from .tarformat import BLOCK, END_OF_ARCHIVE, build_members

LOGGER = logging.getLogger(__name__)

_COMPACT_BATCH_BYTES = 64 << 20

#: An index row: (key, data offset, size, CRC-32 or None).
Row = tuple[bytes, int, int, int | None]


def _groups_of_bytes(entries: list[Row], limit: int) -> Iterator[list[Row]]:
    """Split index rows into groups of about ``limit`` bytes of values."""
    group: list[Row] = []
    total = 0
    for row in entries:
        group.append(row)
        total += row[2]
        if total >= limit:
            yield group
            group, total = [], 0
    if group:
        yield group


def require_existing(session: NamespaceSession, action: str) -> None:
    """Refuse to ``action`` a namespace that does not exist (a typo must not create files)."""
    with session.reading() as current:
        if current.state.mode == "absent":
            raise StorageNotFoundError(f"cannot {action} {session.namespace!r}: there is no such namespace (no tar file)")


def storage_report(session: NamespaceSession) -> StorageReport:
    """A read-only scan of the whole tar, and the values the tar no longer holds."""
    report = StorageReport()
    with session.reading():
        state = session.state
        if state.mode == "absent":
            return report
        if state.diverged:
            report.damage.append(f"the tar no longer holds {len(state.lost)} value(s) its index knows "
                                 f"({state.diverged}): {shown(sorted(state.lost))}")
        table, fd = state.view()  # together, whatever a signal handler's call does meanwhile
        if fd is None:
            return report
        report.unchecked = sum(1 for slot in table.slots.values() if slot in table.unchecked)
        with MappedTar(fd) as source:
            found = scan(source, 0, is_key)
            committed = max(found.end, min(table.tar_end, source.size))
            tail_end = last_nonzero_end(source, committed)
    report.damage += [f"damaged: {d} (skipped by readers, left in place)" for d in found.damage]
    if found.recovered:
        report.damage.append(f"{found.recovered} member header(s) fail the tar checksum (tar tools will complain); "
                             "mummi_io's own checks confirm their names, sizes and data")
    if tail_end > committed:
        tail = Damage(committed, tail_end, "bytes after the last complete batch")
        if found.tail_is_torn or found.tail is None:
            report.notes.append(f"interrupted write: {tail}; the next writer moves it to a side file")
        else:
            report.damage.append(f"damaged: {tail}: not an interrupted write of mummi_io's; left in place")
    report.notes += [f"zero blocks: {g}" for g in found.zero_gaps]
    if found.not_values:
        report.notes.append(f"{found.not_values} member(s) are not values (directories, symbolic links, "
                            "sparse files, or names that are not keys)")
    if report.unchecked:
        report.notes.append(f"{report.unchecked} value(s) have no checksum stored when written (another "
                            "tool wrote them); the next mummi_io writer records one")
    return report


def reindex(session: NamespaceSession, accept_loss: bool) -> ReindexReport:
    """Rebuild the index from the tar, checked against the old index (see ``TarIndexBackend.reindex``)."""
    namespace, state = session.namespace, session.state
    require_existing(session, "reindex")
    with session.locked(), storage_errors(f"reindex namespace {namespace!r}"):
        session.loader.refresh(state)
        if state.tar_fd is None:
            raise StorageNotFoundError(
                f"cannot reindex {namespace!r}: there is no such namespace (no tar file)"
                + (f" (its index lists {len(state.lost)} key(s); restore the tar, or delete "
                   f"{state.index_path!r} to start an empty namespace)" if state.lost else "")
            )
        old = state.table if state.mode == "index" else None
        report = ReindexReport(namespace)
        fd = os.open(namespace, os.O_RDWR | os.O_CLOEXEC)
        try:
            with MappedTar(fd) as source:
                found = scan(source, 0, is_key)
                table = repair.reconcile(found, old, not state.diverged, fd, report, is_key)
                tail_end = last_nonzero_end(source, table.tar_end)
            report.damage, report.zero_gaps, report.not_values = found.damage, found.zero_gaps, found.not_values
            if report.losses and not accept_loss:
                raise IntegrityError(
                    f"reindex of {namespace!r} would lose data, so nothing was changed: "
                    + "; ".join(report.lines()[1:])
                    + ". Restore the tar from a copy, or accept the tar's state with "
                    "reindex(accept_loss=True) (mummi-io reindex --accept-loss)",
                    report.losses,
                )
            if tail_end > table.tar_end:
                with MappedTar(fd) as source:
                    after = scan(source, table.tar_end, is_key)
                report.tail = after.tail or Damage(table.tar_end, tail_end, "bytes after the last complete batch")
                if after.tail_is_torn:
                    report.tail_file = repair.move_aside(namespace, fd, report.tail.start, report.tail.end)
                else:  # not provably an interrupted write: left in place, and written after
                    table.tar_end = report.tail.end + -report.tail.end % BLOCK
            repair.end_tar_at(fd, table.tar_end, fsync=True)
            repair.complete_checksums(table, fd)
        finally:
            os.close(fd)
        session.replace_index(table)
        session.reload()
        report.keys = len(state.table.slots)
    for line in report.lines()[1:]:
        LOGGER.warning("reindex %s", line)
    return report


def _what_compaction_drops(session: NamespaceSession) -> list[str]:
    """What the tar holds besides live values and superseded ones: compaction would not copy it."""
    with MappedTar(session.state.tar_fd) as source:  # type: ignore[arg-type]
        found = scan(source, 0, is_key)
    dropped = [f"damaged: {damage}" for damage in found.damage]
    if found.tail is not None:
        dropped.append(f"bytes after the last complete batch: {found.tail}")
    if found.not_values:
        dropped.append(f"{found.not_values} member(s) that are not values (directories, links, sparse files, "
                       "names that are not keys)")
    return dropped


def compact(session: NamespaceSession, accept_loss: bool = False) -> tuple[int, int]:
    """Rewrite the namespace with only its live values (see ``TarIndexBackend.compact``)."""
    state = session.state
    require_existing(session, "compact")
    with session.writing("compact"):
        dropped = _what_compaction_drops(session)
        if dropped and not accept_loss:
            raise IntegrityError(
                f"compaction of {session.namespace!r} would drop what its tar holds besides values, so nothing was "
                f"changed: {'; '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}. Copy out what you need "
                "(mummi-io verify lists it), then compact(accept_loss=True) (mummi-io compact --accept-loss)",
            )
        for line in dropped:
            LOGGER.warning("compact %s drops %s", session.namespace, line)
        before = os.fstat(state.tar_fd).st_size  # type: ignore[arg-type]
        entries = state.table.live_entries()
        names = b"\0".join(key for key, *_ in entries).decode("utf-8", "surrogateescape").split("\0")
        not_keys = names_not_keys(names) if entries else []
        if not_keys:  # only a foreign or crafted index lists them: never write them as tar members
            raise IntegrityError(
                f"the index of {session.namespace!r} lists {len(not_keys)} name(s) that are not keys ("
                f"{shown(not_keys)}), so nothing was changed. Run mummi-io reindex --accept-loss on it first, "
                "which rebuilds the index from the tar and leaves them out",
                not_keys,
            )
        new_tar = state.tar_path + ".compact"
        try:
            return _compact_into(session, new_tar, before, entries)
        except BaseException:
            if os.path.exists(new_tar):
                # Stopped before the tar's rename: the half-made copies mean nothing.
                for leftover in (new_tar, state.compact_index_path):
                    with contextlib.suppress(OSError):
                        os.unlink(leftover)
            raise


def _compact_into(session: NamespaceSession, new_tar: str, before: int, entries: list[Row]) -> tuple[int, int]:
    """Write the live values to ``new_tar`` and its index beside, then rename both into place."""
    state = session.state
    fd = os.open(new_tar, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    table = idx.IndexTable()
    length = 0
    try:
        for group in _groups_of_bytes(entries, _COMPACT_BATCH_BYTES):
            values = [(key.decode("utf-8"), session.read(key.decode("utf-8"), (offset, size, crc, state.tar_fd)))
                      for key, offset, size, crc in group]
            crcs = [crc if crc is not None else crc32(value) for (_, value), (*_, crc) in zip(values, group)]
            chunks, group_length, placed = build_members(values, [], int(time.time()), crcs)
            pwrite_all(fd, chunks, length, group_length)
            table.put(placed.keys, [length + offset for offset in placed.data_offsets], placed.sizes, placed.crcs)
            length += group_length
        table.tar_end = length
        repair.end_tar_at(fd, length, fsync=True)
    finally:
        os.close(fd)
    repair.write_index(state.compact_index_path, table)
    os.replace(new_tar, state.tar_path)
    os.replace(state.compact_index_path, state.index_path)
    fsync_directory(os.path.dirname(state.tar_path))
    session.reload()
    return before, length + len(END_OF_ARCHIVE)
