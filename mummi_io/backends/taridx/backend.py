"""The ``taridx`` backend: a namespace is one POSIX tar plus a sidecar index.

Files of namespace ``run.tar``: ``run.tar`` (the members, see
:mod:`.tarformat`), ``run.tar.idx`` (the index, a cache of the tar, see
:mod:`.index`) and ``run.tar.lock`` (the writers' lock).

- Readers never take the lock and never write (:mod:`.state`): each process
  keeps the tar and index open and the parsed index in memory, and one
  ``stat`` of the index per call tells whether another process appended.
- Writers append under a ``filelock`` lock: members first (one positioned
  write per batch, ending with the end-of-archive marker), then one index
  append that commits the batch. Before appending, a writer repairs what
  readers worked around (:mod:`.repair`): it rewrites a missing or damaged
  index, and moves the torn tail of an interrupted batch to a side file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from zlib import crc32

import numpy as np
from filelock import FileLock, Timeout

from ...core.contract import Backend, Buffer, Locating, Maintainable, StorageReport
from ...core.errors import (
    BackendUnavailableError, IntegrityError, InvalidNamespaceError, KeyNotFoundError, ReadOnlyError,
    StorageNotFoundError,
)
from ...core.fs import fsync_directory, os_error, stat_or_none, storage_errors
from ...core.keys import RESERVED_PREFIX, key_matcher, validate_key
from . import index as idx
from . import repair
from .repair import ReindexReport
from .scan import Damage, MappedTar, last_nonzero_end, scan
from .sniff import COMPRESSED_SUFFIXES
from .state import NamespaceState, StateLoader, apply_batches, pread_exact, require_regular
from .tarformat import BLOCK, END_OF_ARCHIVE, build_members, crc_of, pieces_of, seal_members

LOGGER = logging.getLogger(__name__)

_IOV_MAX = 1024
_LOCK_POLL = 0.0005  # seconds between attempts to take a contended writer lock
_COMPACT_BATCH_BYTES = 64 << 20
#: Batches of at least this many bytes in at most this many values compute their
#: CRC-32s in a thread while the bytes are written, then seal the headers.
_PARALLEL_CRC_BYTES = 8 << 20
_PARALLEL_CRC_VALUES = 64
_SHOWN = 20


def _groups_of_bytes(entries: list, limit: int) -> Iterator[list]:
    """Split index rows ``(key, offset, size, crc)`` into groups of about ``limit`` bytes of values."""
    group: list = []
    total = 0
    for row in entries:
        group.append(row)
        total += row[2]
        if total >= limit:
            yield group
            group, total = [], 0
    if group:
        yield group


def _pwrite_all(fd: int, chunks: Sequence[Buffer], offset: int, total: int | None = None) -> None:
    """Write ``chunks`` back to back at ``offset`` with as few system calls as possible.

    ``total``, the length of all chunks when the caller knows it, saves
    measuring them in the common case of one system call.
    """
    if total is not None and len(chunks) <= _IOV_MAX and os.pwritev(fd, chunks, offset) == total:
        return  # else (rare) written again below, from the start: the same bytes at the same place
    for start in range(0, len(chunks), _IOV_MAX):
        group = chunks[start:start + _IOV_MAX]
        total = sum(memoryview(chunk).nbytes for chunk in group)
        written = os.pwritev(fd, group, offset)
        if written < total:  # rare: finish the group byte by byte
            rest = memoryview(b"".join(bytes(chunk) for chunk in group))[written:]
            position = offset + written
            while rest:
                count = os.pwrite(fd, rest, position)
                rest, position = rest[count:], position + count
        offset += total


def _shown(keys: Sequence[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(repr(k) for k in keys[:_SHOWN]) + more


def _is_key(name: str) -> bool:
    """Whether a member name is a key: a valid user key, or one of mummi_io's own reserved keys."""
    if name.startswith(RESERVED_PREFIX):
        name = "r" + name[len(RESERVED_PREFIX):]  # e.g. a pack's manifest: keep it, check the rest
    try:
        validate_key(name)
    except ValueError:
        return False
    return True


class TarIndexBackend(Backend):
    """Indexed append-only tar files; see the module docstring and docs/taridx.md.

    Parameters
    ----------
    fsync:
        Flush the tar and the index to disk before a save returns (survives a
        node crash; slower).
    verify:
        Check each value's CRC-32 on read and raise ``IntegrityError`` on a
        mismatch (on by default; costs about a microsecond per KiB).
    lock_timeout:
        Seconds a writer waits for another process's write before
        ``BackendUnavailableError``.
    max_open:
        Namespaces kept open per process (two file descriptors each).
    suffix:
        Appended to a namespace that does not end with it (``""`` keeps names
        as given). Compressed tars (``.tar.gz``...) keep their names.
    """

    kind = "taridx"
    stores_checksums = True
    capabilities = (Maintainable, Locating)
    accepts_parts = True

    def __init__(
        self, *, fsync: bool = False, verify: bool = True, lock_timeout: float = 600.0, max_open: int = 64,
        suffix: str = ".tar",
    ) -> None:
        self.suffix = suffix
        self.fsync = fsync
        self.verify = verify
        self.lock_timeout = lock_timeout
        self.max_open = max_open
        self._loader = StateLoader(_is_key)
        self._open: OrderedDict[str, NamespaceState] = OrderedDict()
        self._guard = threading.Lock()

    # ------------------------------------------------------------ plumbing
    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        del state["_guard"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._guard = threading.Lock()

    def normalize_namespace(self, namespace: str) -> str:
        # docstring inherited: a path, so "ns/" and "./ns" name one archive
        namespace = os.path.normpath(namespace)
        if not self.suffix or namespace.endswith(self.suffix) or namespace.endswith(COMPRESSED_SUFFIXES):
            return namespace
        return namespace + self.suffix

    def describe(self) -> str:
        return f"taridx (fsync={self.fsync}, verify={self.verify})"

    def close(self) -> None:
        # docstring inherited
        with self._guard:
            for state in self._open.values():
                with state.mutex:
                    state.close()
            self._open.clear()

    def _state(self, namespace: str) -> NamespaceState:
        with self._guard:
            state = self._open.get(namespace)
            if state is not None and state.pid != os.getpid():
                # Inherited across fork: drop the parent's copies (its mutex may be held).
                state.close()
                state = None
            if state is None:
                state = NamespaceState(namespace)
                self._open[namespace] = state
                while len(self._open) > self.max_open:
                    _, evicted = self._open.popitem(last=False)
                    with evicted.mutex:
                        evicted.close()
            else:
                self._open.move_to_end(namespace)
            return state

    @contextlib.contextmanager
    def _reading(self, namespace: str) -> Iterator[NamespaceState]:
        """The namespace's state, up to date, for a read (errors of the system as StorageError)."""
        state = self._state(namespace)
        with state.mutex, storage_errors(f"read namespace {namespace!r}"):
            self._loader.refresh(state)
            yield state

    @contextlib.contextmanager
    def _locked(self, state: NamespaceState) -> Iterator[None]:
        """Hold the namespace's writer lock for the block (re-entrant within a thread).

        The files are looked at first, read-only, so that a file that is not
        ours is refused before even a lock file is created beside it.
        """
        with storage_errors(f"read namespace {state.tar_path!r}"):
            self._loader.refresh(state)
        self._refuse_read_only(state)
        if not state.lock_ready:
            # filelock retries until its timeout when it cannot create the lock file at all; fail
            # at once, naming the path, instead of blaming "another process" ten minutes later.
            with storage_errors(f"create the lock file {state.lock_path!r} of namespace {state.tar_path!r}"):
                os.makedirs(os.path.dirname(state.lock_path) or ".", exist_ok=True)
                os.close(os.open(state.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666))
            state.lock = FileLock(state.lock_path, timeout=self.lock_timeout)
            state.lock_ready = True
        lock = state.lock
        try:
            # filelock polls a non-blocking flock; its default 50 ms poll would
            # make every contended batch wait that long.
            lock.acquire(timeout=self.lock_timeout, poll_interval=_LOCK_POLL)  # type: ignore[union-attr]
        except Timeout as exc:  # a TimeoutError, so before the OSError below
            raise BackendUnavailableError(
                f"another process has held the write lock {state.lock_path!r} for over "
                f"{self.lock_timeout} s; check for a hung writer, or raise lock_timeout"
            ) from exc
        except OSError as exc:
            raise os_error(f"lock {state.lock_path!r}", exc) from exc
        try:
            yield
        finally:
            lock.release()  # type: ignore[union-attr]

    @staticmethod
    def _refuse_read_only(state: NamespaceState) -> None:
        """Refuse, before any file is created, a write to a namespace that can only be read."""
        if state.mode == "absent" and state.tar_path.endswith(COMPRESSED_SUFFIXES):
            raise InvalidNamespaceError(
                f"{state.tar_path!r}: taridx writes plain tars (compressed ones can only be read); name the new "
                "namespace .tar, and compress a copy when it is complete"
            )
        if state.read_only:
            raise ReadOnlyError(
                f"{state.tar_path!r} can only be read: {state.read_only}. To change it, convert it once with: "
                f"mummi-io cp -b taridx {state.tar_path} <new>.tar"
            )

    # ------------------------------------------------------- reading values
    def _read_located(
        self, namespace: str, state: NamespaceState, key: str, location: tuple[int, int, int | None]
    ) -> bytes:
        offset, size, crc = location
        if state.lost and key in state.lost:  # known lost: whatever lies there now is not its value
            raise self._corrupt(namespace, state, [key])
        data = pread_exact(state.tar_fd, size, offset)  # type: ignore[arg-type]
        if len(data) != size or (self.verify and crc is not None and crc32(data) != crc):
            raise self._corrupt(namespace, state, [key])
        return data

    @staticmethod
    def _corrupt(namespace: str, state: NamespaceState, keys: list[str]) -> IntegrityError:
        """The error for values whose bytes are not what the index recorded."""
        lost = [key for key in keys if key in state.lost]
        if lost:
            return IntegrityError(
                f"{len(lost)} value(s) of namespace {namespace!r} are no longer in its tar: {_shown(lost)} "
                f"({state.lost[lost[0]]}). Restore the tar from a copy; or, to accept the tar's older "
                "state, run reindex(accept_loss=True) (mummi-io reindex --accept-loss)",
                lost,
            )
        return IntegrityError(
            f"{len(keys)} value(s) of namespace {namespace!r} are corrupt (checksum or size mismatch): "
            f"{_shown(keys)}. Restore them from a copy; mummi-io verify lists every damaged value",
            keys,
        )

    def read_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        with self._reading(namespace) as state:
            lookup = state.table.lookup
            values: list[bytes | None] = []
            bad: list[str] = []
            for key in keys:
                location = lookup(key.encode("utf-8"))
                if location is None:
                    values.append(None)
                    continue
                try:
                    values.append(self._read_located(namespace, state, key, location))
                except IntegrityError:
                    bad.append(key)
            if bad:
                raise self._corrupt(namespace, state, bad)
            return values

    def read_buffers(self, namespace: str, keys: Sequence[str], verify: bool = True) -> list[Buffer | None]:
        # docstring inherited: preadv into numpy-allocated memory; CRC-32 checked unless verify=False
        out: list[Buffer | None] = []
        with self._reading(namespace) as state:
            for key in keys:
                entry = state.table.lookup(key.encode("utf-8"))
                if entry is None:
                    out.append(None)
                    continue
                offset, size, crc = entry
                if state.lost and key in state.lost:
                    raise self._corrupt(namespace, state, [key])
                buffer = np.empty(size, dtype=np.uint8).data  # numpy memory: far fewer page faults
                got = os.preadv(state.tar_fd, [buffer], offset)  # type: ignore[arg-type]  # open while reading
                if got != size or (verify and self.verify and crc is not None and crc32(buffer) != crc):
                    raise self._corrupt(namespace, state, [key])
                out.append(buffer)
        return out

    def read_prefix_many(self, namespace: str, keys: Sequence[str], size: int) -> list[bytes | None]:
        # docstring inherited (the head is not checksummed: the whole value is, on a full read)
        with self._reading(namespace) as state:
            found = [state.table.lookup(key.encode("utf-8")) for key in keys]
            return [
                None if entry is None else pread_exact(state.tar_fd, min(size, entry[1]), entry[0])  # type: ignore[arg-type]
                for entry in found
            ]

    def stat_many(self, namespace: str, keys: Sequence[str]) -> list[tuple[int, int] | None]:
        # docstring inherited
        with self._reading(namespace) as state:
            found = [state.table.lookup(key.encode("utf-8")) for key in keys]
            return [
                None if entry is None else (
                    entry[1], entry[2] if entry[2] is not None else repair.crc_of_range(state.tar_fd, entry[0], entry[1])  # type: ignore[arg-type]
                )
                for entry in found
            ]

    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        with self._reading(namespace) as state:
            slots = state.table.slots
            return [key.encode("utf-8") in slots for key in keys]

    def list_matching(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited
        with self._reading(namespace) as state:
            names = [key.decode("utf-8") for key in state.table.slots]
        matches = key_matcher(pattern)
        return iter(names if pattern == "*" else [name for name in names if matches(name)])

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        info = stat_or_none(namespace, f"look at namespace {namespace!r}")
        if info is not None:
            require_regular(namespace, info.st_mode)
        return info is not None

    def child_namespace(self, namespace: str, name: str) -> str:
        # docstring inherited: groups of run.tar live in run.groups/<name>.tar
        base = namespace[:-4] if namespace.endswith(".tar") else namespace
        return os.path.join(base + ".groups", name + ".tar")

    # ----------------------------------------------------------- writing
    def _prepare_write(self, namespace: str, state: NamespaceState) -> None:
        """With the lock held: bring the state up to date, then create or repair the namespace."""
        self._loader.refresh(state)
        self._refuse_read_only(state)
        if not self._loader.still_describes(state):
            state.close()  # the tar was replaced, cut or restored under this process: look again
            self._loader.load(state)
        if state.diverged:
            lost = sorted(state.lost)
            raise IntegrityError(
                f"namespace {namespace!r} is not written to: its tar no longer holds {len(lost)} value(s) its "
                f"index knows ({state.diverged}): {_shown(lost)}. Restore the tar from a copy; or, to accept "
                "the tar's older state, run reindex(accept_loss=True) (mummi-io reindex --accept-loss)",
                lost,
            )
        if state.mode == "absent":
            os.makedirs(os.path.dirname(namespace) or ".", exist_ok=True)
            fd = os.open(namespace, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                os.pwrite(fd, END_OF_ARCHIVE, 0)
            finally:
                os.close(fd)
            repair.write_index(state.index_path, idx.IndexTable())
            self._loader.refresh(state)
            return
        if os.path.exists(namespace + ".compact"):
            # A compaction stopped before its renames: its half-made copies mean nothing (we hold the lock).
            LOGGER.warning("%s: removing the leftovers of a compaction that did not finish", namespace)
            for leftover in (namespace + ".compact", state.compact_index_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
        if state.index_repair:
            # A tar without an index (new, copied, or written by another tool) is normal: INFO; damage: WARNING.
            LOGGER.log(logging.INFO if state.index_repair == "there is no index" else logging.WARNING,
                       "rewriting the index of %s because %s", namespace, state.index_repair)
            repair.complete_checksums(state.table, state.tar_fd)  # type: ignore[arg-type]
            repair.write_index(state.index_path, state.table)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(state.compact_index_path)
            self._loader.refresh(state)
        self._recover_tail(namespace, state)

    def _recover_tail(self, namespace: str, state: NamespaceState) -> None:
        """Index complete batches after the last commit; move a torn tail to a side file."""
        end = state.table.tar_end
        fd = os.open(namespace, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == end + len(END_OF_ARCHIVE) and pread_exact(fd, len(END_OF_ARCHIVE), end) == END_OF_ARCHIVE:
                return
            with MappedTar(fd, size) as source:
                found = scan(source, end, _is_key)
            if found.batches:
                LOGGER.warning("%s: indexing %d complete batch(es) an interrupted writer left", namespace, len(found.batches))
                recovered = idx.IndexTable()
                apply_batches(recovered, found.batches)
                records = []
                for batch in found.batches:
                    puts = [(k.encode("utf-8"), o, s, c if c is not None else repair.crc_of_range(fd, o, s))
                            for k, o, s, c in batch.puts]
                    records.append(repair.batch_records(puts, [k.encode("utf-8") for k in batch.deletes], batch.end))
                self._append_index(state, b"".join(records))
            for damage in found.damage:
                LOGGER.warning("%s: %s", namespace, damage)
            end = found.end
            if found.tail is not None and found.tail_is_torn:
                side = repair.move_aside(namespace, fd, found.tail.start, found.tail.end)
                LOGGER.warning("%s: %s; moved to %s", namespace, found.tail, side)
            elif found.tail is not None:
                # Not provably an interrupted write of ours: never cut. The next batch goes after it.
                LOGGER.warning("%s: %s; the next batch is written after it", namespace, found.tail)
                end = found.tail.end + -found.tail.end % BLOCK
                state.table.tar_end = end
            repair.end_tar_at(fd, end, self.fsync)
        finally:
            os.close(fd)

    def _append_index(self, state: NamespaceState, records: bytes, fd: int | None = None) -> None:
        """Append committed records to the index (through ``fd`` if given) and apply them."""
        own = fd is None
        if fd is None:
            fd = os.open(state.index_path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            _pwrite_all(fd, [records], state.consumed)
            if self.fsync:
                os.fsync(fd)
        finally:
            if own:
                os.close(fd)
        parsed = idx.apply_records(state.table, records, state.consumed)
        state.consumed = state.index_size = parsed.committed

    def _commit(self, state: NamespaceState, puts: Sequence[tuple[str, Buffer]], deletes: Sequence[str]) -> None:
        """Append ``puts`` and ``deletes`` as one batch (caller holds the lock and has prepared)."""
        mtime = int(time.time())
        overlap = len(puts) <= _PARALLEL_CRC_VALUES and sum(
            len(value) if value.__class__ is bytes else sum(memoryview(p).nbytes for p in pieces_of(value))
            for _, value in puts
        ) >= _PARALLEL_CRC_BYTES
        crcs: list[int] = []
        if overlap:
            # Large values: write them with unsealed headers while a thread computes their CRC-32s
            # (both release the GIL), then write the final headers.
            worker = threading.Thread(target=lambda: crcs.extend(crc_of(pieces_of(v)) for _, v in puts), name="mummi-io-crc")
            worker.start()
            chunks, length, placed = build_members(puts, deletes, mtime, None)
        else:
            crcs = [crc32(value) if value.__class__ is bytes else crc_of(pieces_of(value)) for _, value in puts]
            chunks, length, placed = build_members(puts, deletes, mtime, crcs)
        start = state.table.tar_end
        end = start + length
        # The index must take the commit: open it before a byte of the tar is written.
        index_fd = os.open(state.index_path, os.O_WRONLY | os.O_CLOEXEC)
        fd = os.open(state.tar_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                chunks.append(END_OF_ARCHIVE)
                _pwrite_all(fd, chunks, start, length + len(END_OF_ARCHIVE))
            finally:
                if overlap:
                    worker.join()
            if overlap:
                for offset, header in seal_members(placed, crcs, mtime):
                    os.pwrite(fd, header, start + offset)
            if os.fstat(fd).st_size > end + len(END_OF_ARCHIVE):
                os.ftruncate(fd, end + len(END_OF_ARCHIVE))  # zeros left after a shorter batch
            if self.fsync:
                os.fsync(fd)
            values = [p for p in placed if p.is_value]
            records = repair.batch_records(
                [(p.key.encode("utf-8"), start + p.data_offset, p.size, crc) for p, crc in zip(values, crcs)],
                [key.encode("utf-8") for key in deletes], end,
            )
            try:
                self._append_index(state, records, index_fd)
            except OSError:
                # Not committed: take the batch back out of the tar, so that the error means "not written".
                with contextlib.suppress(OSError):
                    repair.end_tar_at(fd, start, fsync=self.fsync)
                raise
        finally:
            os.close(fd)
            os.close(index_fd)

    def _write_batch(self, namespace: str, puts: Sequence[tuple[str, Buffer]], deletes: Sequence[str]) -> None:
        state = self._state(namespace)
        with state.mutex, self._locked(state), storage_errors(f"append to namespace {namespace!r}"):
            self._prepare_write(namespace, state)
            if deletes:
                deletes = list(dict.fromkeys(k for k in deletes if k.encode("utf-8") in state.table.slots))
            if puts or deletes:
                self._commit(state, puts, deletes)

    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        # docstring inherited
        if items:
            self._write_batch(namespace, items, ())

    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        # docstring inherited
        with self._reading(namespace) as state:
            if not any(key.encode("utf-8") in state.table.slots for key in keys):
                return  # nothing to delete (and nothing written)
        self._write_batch(namespace, (), keys)

    def move_many(self, source: str, pairs: Sequence[tuple[str, str]], destination: str) -> None:
        # docstring inherited
        if source != destination:
            return super().move_many(source, pairs, destination)
        state = self._state(source)
        with state.mutex, self._locked(state), storage_errors(f"rename keys in namespace {source!r}"):
            self._prepare_write(source, state)
            missing = [old for old, _ in pairs if old.encode("utf-8") not in state.table.slots]
            if missing:
                raise KeyNotFoundError(source, missing)
            values = [
                self._read_located(source, state, old, state.table.lookup(old.encode("utf-8")))  # type: ignore[arg-type]
                for old, _ in pairs
            ]
            self._commit(state, [(new, value) for (_, new), value in zip(pairs, values)], [old for old, _ in pairs])
        return None

    def index_entries(self, namespace: str) -> list[tuple[str, int, int]]:
        """``(key, data offset, size)`` of every live key, sorted by key (MuMMI's ``load_index``)."""
        namespace = self.normalize_namespace(namespace)
        with self._reading(namespace) as state:
            rows = state.table.live_entries()
        return sorted((key.decode("utf-8"), offset, size) for key, offset, size, _ in rows)

    # ------------------------------------------------------- maintenance
    def _existing(self, namespace: str, action: str) -> NamespaceState:
        """The state of a namespace that must exist (a typo must not create files)."""
        with self._reading(namespace) as state:
            if state.mode == "absent":
                raise StorageNotFoundError(f"cannot {action} {namespace!r}: there is no such namespace (no tar file)")
        return state

    def storage_report(self, namespace: str) -> StorageReport:
        # docstring inherited: a read-only scan of the whole tar, and values the tar no longer holds
        namespace = self.normalize_namespace(namespace)
        report = StorageReport()
        with self._reading(namespace) as state:
            if state.mode == "absent":
                return report
            if state.diverged:
                report.damage.append(f"the tar no longer holds {len(state.lost)} value(s) its index knows "
                                     f"({state.diverged}): {_shown(sorted(state.lost))}")
            if state.tar_fd is None:
                return report
            report.unchecked = sum(1 for slot in state.table.slots.values() if slot in state.table.unchecked)
            with MappedTar(state.tar_fd) as source:
                found = scan(source, 0, _is_key)
                committed = max(found.end, min(state.table.tar_end, source.size))
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

    def reindex(self, namespace: str, accept_loss: bool = False) -> ReindexReport:
        """Rebuild the index of ``namespace`` from its tar, checked against the old index.

        Values the old index knows that are intact in the tar are kept (also
        when their member header is damaged); damaged ranges are reported and
        left in place; a torn tail is moved to a side file. If the tar has
        lost values the index knew, holds older versions of them, or would
        bring back deleted keys, nothing is changed and ``IntegrityError``
        names them, unless ``accept_loss`` is true: then the tar's state is
        taken and the report lists what was lost.

        Raises
        ------
        StorageNotFoundError
            If the namespace has no tar file.
        IntegrityError
            If the rebuild would lose something and ``accept_loss`` is false.
        """
        namespace = self.normalize_namespace(namespace)
        state = self._existing(namespace, "reindex")
        with state.mutex, self._locked(state), storage_errors(f"reindex namespace {namespace!r}"):
            self._loader.refresh(state)
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
                    found = scan(source, 0, _is_key)
                    table = repair.reconcile(found, old, not state.diverged, fd, report)
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
                        after = scan(source, table.tar_end, _is_key)
                    report.tail = after.tail or Damage(table.tar_end, tail_end, "bytes after the last complete batch")
                    if after.tail_is_torn:
                        report.tail_file = repair.move_aside(namespace, fd, report.tail.start, report.tail.end)
                    else:  # not provably an interrupted write: left in place, and written after
                        table.tar_end = report.tail.end + -report.tail.end % BLOCK
                repair.end_tar_at(fd, table.tar_end, fsync=True)
                repair.complete_checksums(table, fd)
            finally:
                os.close(fd)
            repair.write_index(state.index_path, table)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(state.compact_index_path)
            state.close()
            self._loader.refresh(state)
            report.keys = len(state.table.slots)
        for line in report.lines()[1:]:
            LOGGER.warning("reindex %s", line)
        return report

    def compact(self, namespace: str) -> tuple[int, int]:
        """Rewrite ``namespace`` with only its live values; return (bytes before, bytes after).

        Crash-safe: the new tar and index are written beside the old ones and
        renamed into place, tar first; a crash between the renames leaves the
        new tar beside ``run.tar.idx.compact``, which readers use and the next
        writer renames. Refuses (``IntegrityError``) if a value is corrupt:
        compaction never copies damage, nor drops it silently.
        """
        namespace = self.normalize_namespace(namespace)
        state = self._existing(namespace, "compact")
        with state.mutex, self._locked(state), storage_errors(f"compact namespace {namespace!r}"):
            self._prepare_write(namespace, state)
            before = os.fstat(state.tar_fd).st_size  # type: ignore[arg-type]
            entries = state.table.live_entries()
            new_tar = state.tar_path + ".compact"
            try:
                return self._compact_into(namespace, state, new_tar, before, entries)
            except BaseException:
                if os.path.exists(new_tar):
                    # Stopped before the tar's rename: the half-made copies mean nothing.
                    for leftover in (new_tar, state.compact_index_path):
                        with contextlib.suppress(OSError):
                            os.unlink(leftover)
                raise

    def _compact_into(
        self, namespace: str, state: NamespaceState, new_tar: str, before: int,
        entries: list[tuple[bytes, int, int, int | None]],
    ) -> tuple[int, int]:
        """Write the live values to ``new_tar`` and its index beside, then rename both into place."""
        fd = os.open(new_tar, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        table = idx.IndexTable()
        length = 0
        try:
            for group in _groups_of_bytes(entries, _COMPACT_BATCH_BYTES):
                values = [(key.decode("utf-8"), self._read_located(namespace, state, key.decode("utf-8"), (off, size, crc)))
                          for key, off, size, crc in group]
                crcs = [crc if crc is not None else crc32(value) for (_, value), (*_, crc) in zip(values, group)]
                chunks, group_length, placed = build_members(values, [], int(time.time()), crcs)
                _pwrite_all(fd, chunks, length, group_length)
                table.put([p.key.encode("utf-8") for p in placed], [length + p.data_offset for p in placed],
                          [p.size for p in placed], [p.crc for p in placed])
                length += group_length
            table.tar_end = length
            repair.end_tar_at(fd, length, fsync=True)
        finally:
            os.close(fd)
        repair.write_index(state.compact_index_path, table)
        os.replace(new_tar, state.tar_path)
        os.replace(state.compact_index_path, state.index_path)
        fsync_directory(os.path.dirname(state.tar_path))
        state.close()
        self._loader.refresh(state)
        return before, length + len(END_OF_ARCHIVE)
