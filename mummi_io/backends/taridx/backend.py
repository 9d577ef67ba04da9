"""The ``taridx`` backend: a namespace is one POSIX tar plus a sidecar index.

Files of namespace ``run.tar``: ``run.tar`` (the members), ``run.tar.idx``
(the index, see :mod:`.index`) and ``run.tar.lock`` (the writers' lock).

- Writers append under a ``filelock`` lock: members first (one positioned
  write per batch, ending with the end-of-archive marker), then one index
  append that commits the batch. A writer killed at any point leaves the
  previous commit intact; the next writer cuts the uncommitted tail off.
- Readers never take the lock. Each process keeps the tar and index open and
  the parsed index in memory; one ``stat`` of the index per call tells whether
  another process appended (size grew: read the tail) or compacted (inode
  changed: reload).
- The index records the inode of the tar it describes. A missing, damaged or
  mismatched index is rebuilt by scanning the tar, under the lock, which is
  also how archives written by pytaridx or plain ``tar`` are opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from zlib import crc32

import numpy as np

from filelock import FileLock, Timeout

from ..._fs import storage_errors
from ...abc import Backend, Buffer
from ...errors import BackendUnavailableError, IntegrityError, KeyNotFoundError, StorageError
from ...keys import RESERVED_PREFIX, key_matcher, validate_key
from . import index as idx
from .tarformat import END_OF_ARCHIVE, build_members, crc_of_range, scan_batches

LOGGER = logging.getLogger(__name__)

_IOV_MAX = 1024
_LOCK_POLL = 0.0005  # seconds between attempts to take a contended writer lock
_COMPACT_BATCH_BYTES = 64 << 20
#: From this many bytes in a batch, CRC-32s are computed alongside the write.
_PARALLEL_CRC_BYTES = 8 << 20


def _groups_of_bytes(
    entries: list[tuple[bytes, int, int, int]], limit: int
) -> Iterator[list[tuple[bytes, int, int, int]]]:
    """Split index rows into groups whose values add up to about ``limit`` bytes."""
    group: list[tuple[bytes, int, int, int]] = []
    total = 0
    for row in entries:
        group.append(row)
        total += row[2]
        if total >= limit:
            yield group
            group, total = [], 0
    if group:
        yield group


def _pread(fd: int, size: int, offset: int) -> bytes:
    """Read exactly ``size`` bytes (fewer only at end of file)."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    done = len(data)
    while done < size:
        more = os.pread(fd, size - done, offset + done)
        if not more:
            break
        parts.append(more)
        done += len(more)
    return b"".join(parts)


def _pwrite_all(fd: int, chunks: Sequence[Buffer], offset: int) -> None:
    """Write ``chunks`` back to back at ``offset`` with as few system calls as possible."""
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


@dataclass
class _Namespace:
    """What one process keeps open for one namespace."""

    tar_path: str
    pid: int = field(default_factory=os.getpid)
    mutex: threading.RLock = field(default_factory=threading.RLock)
    table: idx.IndexTable = field(default_factory=idx.IndexTable)
    tar_fd: int | None = None
    index_fd: int | None = None
    index_inode: int = 0
    consumed: int = 0  # bytes of the index applied (the end of its last commit)
    lock: FileLock | None = None

    @property
    def index_path(self) -> str:
        return self.tar_path + ".idx"

    @property
    def lock_path(self) -> str:
        return self.tar_path + ".lock"

    def close(self) -> None:
        for fd in (self.tar_fd, self.index_fd):
            if fd is not None:
                os.close(fd)
        self.tar_fd = self.index_fd = None
        self.table = idx.IndexTable()
        self.index_inode = self.consumed = 0


class TarIndexBackend(Backend):
    """Indexed append-only tar files; see the module docstring.

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
        Appended to a namespace that does not end with it (``""`` keeps names as given).
    """

    kind = "taridx"
    stores_checksums = True
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
        self._open: OrderedDict[str, _Namespace] = OrderedDict()
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
        # docstring inherited
        return namespace if not self.suffix or namespace.endswith(self.suffix) else namespace + self.suffix

    def describe(self) -> str:
        return f"taridx (fsync={self.fsync}, verify={self.verify})"

    def close(self) -> None:
        # docstring inherited
        with self._guard:
            for state in self._open.values():
                with state.mutex:
                    state.close()
            self._open.clear()

    def _state(self, namespace: str) -> _Namespace:
        with self._guard:
            state = self._open.get(namespace)
            if state is not None and state.pid != os.getpid():
                # Inherited across fork: drop the parent's copies (its mutex may be held).
                state.close()
                state = None
            if state is None:
                state = _Namespace(namespace)
                self._open[namespace] = state
                while len(self._open) > self.max_open:
                    _, evicted = self._open.popitem(last=False)
                    with evicted.mutex:
                        evicted.close()
            else:
                self._open.move_to_end(namespace)
            return state

    def _file_lock(self, state: _Namespace) -> FileLock:
        if state.lock is None:
            state.lock = FileLock(state.lock_path, timeout=self.lock_timeout)
        return state.lock

    @contextlib.contextmanager
    def _locked(self, state: _Namespace, timeout: float | None = None) -> Iterator[None]:
        """Hold the namespace's writer lock for the block (re-entrant within a thread).

        Raises ``filelock.Timeout`` only when an explicit ``timeout`` is given.
        """
        lock = self._file_lock(state)
        with storage_errors(f"create lock file {state.lock_path!r}"):
            os.makedirs(os.path.dirname(state.lock_path) or ".", exist_ok=True)
        try:
            # filelock polls a non-blocking flock; its default 50 ms poll would
            # make every contended batch wait that long.
            lock.acquire(timeout=self.lock_timeout if timeout is None else timeout, poll_interval=_LOCK_POLL)
        except Timeout as exc:  # a TimeoutError, so before the OSError below
            if timeout is not None:
                raise
            raise BackendUnavailableError(
                f"another process has held the write lock {state.lock_path!r} for over "
                f"{self.lock_timeout} s; check for a hung writer, or raise lock_timeout"
            ) from exc
        except OSError as exc:
            with storage_errors(f"lock {state.lock_path!r}"):
                raise exc
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------- index loading
    def _refresh(self, state: _Namespace) -> None:
        """Bring the in-memory index up to date with the files (one stat when nothing changed)."""
        try:
            info = os.stat(state.index_path)
        except FileNotFoundError:
            state.close()
            if os.path.exists(state.tar_path):
                self._rebuild_under_lock(state, reason="it has no index")
            return
        if state.index_fd is None or info.st_ino != state.index_inode:
            self._reload(state)
        elif info.st_size > state.consumed:
            self._read_tail(state, info.st_size)

    def _read_tail(self, state: _Namespace, size: int) -> None:
        """Apply the index records other processes appended since our last look."""
        if size > state.consumed:
            data = _pread(state.index_fd, size - state.consumed, state.consumed)
            state.consumed = idx.apply_records(state.table, data, state.consumed).committed

    def _reload(self, state: _Namespace) -> None:
        """Open the index and tar afresh and parse the whole index."""
        for attempt in range(50):
            state.close()
            try:
                index_fd = os.open(state.index_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return self._refresh(state)
            try:
                tar_fd = os.open(state.tar_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                os.close(index_fd)
                time.sleep(0.001 * (attempt + 1))  # a compaction swapping files, or a removal
                continue
            state.index_fd, state.tar_fd = index_fd, tar_fd
            state.index_inode = os.fstat(index_fd).st_ino
            data = _pread(index_fd, os.fstat(index_fd).st_size, 0)
            if idx.decode_file_header(data) == os.fstat(tar_fd).st_ino:
                break
            time.sleep(0.001 * (attempt + 1))  # mid-compaction: the new tar and old index
        else:
            state.close()
            if os.path.exists(state.tar_path):
                self._rebuild_under_lock(state, reason="its index describes another tar file")
            return
        header = idx.FILE_HEADER.size
        state.consumed = idx.apply_records(state.table, memoryview(data)[header:], header).committed
        if state.table.tar_end + len(END_OF_ARCHIVE) > os.fstat(state.tar_fd).st_size:
            self._rebuild_under_lock(state, reason="the tar is shorter than its index says")
        elif self._needs_recovery(state):
            self._try_recover(state)

    def _needs_recovery(self, state: _Namespace) -> bool:
        """Whether the files hold more than the last commit: a killed writer, or a damaged index."""
        if os.fstat(state.index_fd).st_size > state.consumed:
            return True
        return os.pread(state.tar_fd, len(END_OF_ARCHIVE), state.table.tar_end) != END_OF_ARCHIVE

    def _try_recover(self, state: _Namespace) -> None:
        """Repair the tail now if no writer is active (a writer repairs it otherwise)."""
        try:
            with self._locked(state, timeout=0):
                self._read_tail(state, os.fstat(state.index_fd).st_size)
                if self._needs_recovery(state):
                    self._recover_tail(state)
        except (Timeout, StorageError) as exc:
            LOGGER.debug("not repairing %s now (%s); its next writer will", state.tar_path, exc)

    def _records_from_scan(self, state: _Namespace, start: int, foreign: bool) -> tuple[bytes, int]:
        """Index records for every complete batch in the tar from ``start``, and where they end."""
        records = []
        end = start
        skipped = 0
        tar_fd = os.open(state.tar_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for batch in scan_batches(state.tar_path, start, foreign):
                keys, offsets, sizes, crcs = [], [], [], []
                for name, offset, size in batch.members:
                    if not self._is_key(name):
                        skipped += 1
                        continue
                    keys.append(name.encode("utf-8"))
                    offsets.append(offset)
                    sizes.append(size)
                    crcs.append(crc_of_range(lambda n, at: os.pread(tar_fd, n, at), offset, size))
                deletes = [key.encode("utf-8") for key in batch.deletes if isinstance(key, str) and self._is_key(key)]
                if keys:
                    records.append(idx.encode_put(keys, offsets, sizes, crcs, batch.end, commit=not deletes))
                if deletes or not keys:
                    records.append(idx.encode_delete(deletes, batch.end, commit=True))
                end = batch.end
        finally:
            os.close(tar_fd)
        if skipped:
            LOGGER.warning("%d member(s) of %s are not valid keys; ignored", skipped, state.tar_path)
        return b"".join(records), end

    @staticmethod
    def _end_tar_at(path: str, end: int) -> int:
        """Cut the tar after ``end`` and write the end-of-archive marker; return the tar's inode."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.pwrite(fd, END_OF_ARCHIVE, end)
            os.ftruncate(fd, end + len(END_OF_ARCHIVE))
            os.fsync(fd)
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    def _recover_tail(self, state: _Namespace) -> None:
        """With the lock held: index the complete batches past the last commit, drop the rest."""
        LOGGER.warning("recovering %s after an interrupted write or a damaged index", state.tar_path)
        with storage_errors(f"recover namespace {state.tar_path!r}"):
            records, end = self._records_from_scan(state, state.table.tar_end, foreign=False)
            os.truncate(state.index_path, state.consumed)
            index_fd = os.open(state.index_path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                _pwrite_all(index_fd, [records], state.consumed)
                os.fsync(index_fd)
            finally:
                os.close(index_fd)
            state.consumed = idx.apply_records(state.table, records, state.consumed).committed
            self._end_tar_at(state.tar_path, end)

    def _rebuild_under_lock(self, state: _Namespace, reason: str) -> None:
        with self._locked(state):
            self._rebuild(state, reason)

    def _rebuild(self, state: _Namespace, reason: str) -> None:
        """Re-create the whole index by scanning the tar (caller holds the lock)."""
        LOGGER.warning("rebuilding the index of %s because %s", state.tar_path, reason)
        state.close()
        with storage_errors(f"rebuild the index of {state.tar_path!r}"):
            records, end = self._records_from_scan(state, 0, foreign=True)
            tar_inode = self._end_tar_at(state.tar_path, end)
            temporary = state.index_path + ".rebuild"
            with open(temporary, "wb") as handle:
                handle.write(idx.encode_file_header(tar_inode) + records)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, state.index_path)
        self._reload(state)

    @staticmethod
    def _is_key(name: str) -> bool:
        """Whether a member name is a key: a valid user key, or one of mummi_io's own reserved keys."""
        if name.startswith(RESERVED_PREFIX):
            name = "r" + name[len(RESERVED_PREFIX):]  # e.g. a pack's manifest: keep it, check the rest
        try:
            validate_key(name)
        except ValueError:
            return False
        return True

    # ---------------------------------------------------------- committing
    def _prepare_write(self, state: _Namespace) -> None:
        """With the lock held: open for writing, creating the namespace or cutting a torn tail."""
        self._refresh(state)
        if state.index_fd is None:
            with storage_errors(f"create namespace {state.tar_path!r}"):
                os.makedirs(os.path.dirname(state.tar_path) or ".", exist_ok=True)
                tar_fd = os.open(state.tar_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
                try:
                    os.pwrite(tar_fd, END_OF_ARCHIVE, 0)
                    tar_inode = os.fstat(tar_fd).st_ino
                finally:
                    os.close(tar_fd)
                temporary = state.index_path + ".new"
                with open(temporary, "wb") as handle:
                    handle.write(idx.encode_file_header(tar_inode))
                os.replace(temporary, state.index_path)
            self._reload(state)
        if self._needs_recovery(state):
            self._recover_tail(state)

    def _commit(
        self, namespace: str, state: _Namespace, puts: Sequence[tuple[str, Buffer]], deletes: Sequence[str]
    ) -> None:
        """Append ``puts`` and ``deletes`` as one batch (caller holds the lock and has prepared)."""
        chunks, length, placed = build_members(list(puts), list(deletes), int(time.time()))
        start = state.table.tar_end
        end = start + length
        # Large values: their CRC-32s are computed in a thread while the bytes are written (both
        # release the GIL), instead of one after the other.
        checksums = None
        if sum(p.size for p in placed) >= _PARALLEL_CRC_BYTES:
            checksums = threading.Thread(target=lambda: [p.crc for p in placed], name="mummi-io-crc")
            checksums.start()
        try:
            with storage_errors(f"append to namespace {namespace!r}"):
                tar_fd = os.open(state.tar_path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    _pwrite_all(tar_fd, [*chunks, END_OF_ARCHIVE], start)
                    if os.fstat(tar_fd).st_size > end + len(END_OF_ARCHIVE):
                        os.ftruncate(tar_fd, end + len(END_OF_ARCHIVE))  # left by a killed writer
                    if self.fsync:
                        os.fsync(tar_fd)
                finally:
                    os.close(tar_fd)
        finally:
            if checksums is not None:
                checksums.join()
        records = []
        if placed:
            records.append(
                idx.encode_put(
                    [p.key.encode("utf-8") for p in placed], [start + p.data_offset for p in placed],
                    [p.size for p in placed], [p.crc for p in placed], end, commit=not deletes,
                )
            )
        if deletes:
            records.append(idx.encode_delete([key.encode("utf-8") for key in deletes], end, commit=True))
        record = b"".join(records)
        with storage_errors(f"append to namespace {namespace!r}"):
            index_fd = os.open(state.index_path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                _pwrite_all(index_fd, [record], state.consumed)
                if self.fsync:
                    os.fsync(index_fd)
            finally:
                os.close(index_fd)
        state.consumed = idx.apply_records(state.table, record, state.consumed).committed

    def _write_batch(self, namespace: str, puts: Sequence[tuple[str, Buffer]], deletes: Sequence[str]) -> None:
        state = self._state(namespace)
        with state.mutex, self._locked(state):
            self._prepare_write(state)
            self._commit(namespace, state, puts, deletes)

    # ----------------------------------------------------------- primitives
    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        # docstring inherited
        if items:
            self._write_batch(namespace, items, ())

    def _read_located(self, namespace: str, state: _Namespace, key: str, location: tuple[int, int, int]) -> bytes:
        offset, size, crc = location
        data = _pread(state.tar_fd, size, offset)
        if len(data) != size or (self.verify and crc32(data) != crc):
            raise IntegrityError(
                f"value of key {key!r} in namespace {namespace!r} is corrupt (checksum or size "
                "mismatch); restore it from a copy, or rebuild the index with reindex() if the "
                "tar itself is sound"
            )
        return data

    def read_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        state = self._state(namespace)
        with state.mutex:
            self._refresh(state)
            lookup = state.table.lookup
            values: list[bytes | None] = []
            for key in keys:
                location = lookup(key.encode("utf-8"))
                values.append(None if location is None else self._read_located(namespace, state, key, location))
            return values

    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        # docstring inherited
        state = self._state(namespace)
        with state.mutex:
            self._refresh(state)
            if not any(key.encode("utf-8") in state.table.slots for key in keys):
                return
            with self._locked(state):
                self._prepare_write(state)
                live = list(dict.fromkeys(k for k in keys if k.encode("utf-8") in state.table.slots))
                if live:
                    self._commit(namespace, state, (), live)

    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        state = self._state(namespace)
        with state.mutex:
            self._refresh(state)
            slots = state.table.slots
            return [key.encode("utf-8") in slots for key in keys]

    def list(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited
        state = self._state(namespace)
        with state.mutex:
            self._refresh(state)
            names = [key.decode("utf-8") for key in state.table.slots]
        matches = key_matcher(pattern)
        return iter(names if pattern == "*" else [name for name in names if matches(name)])

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        return os.path.isfile(namespace)

    def read_buffers(self, namespace: str, keys: Sequence[str], verify: bool = True) -> list[Buffer | None]:
        # docstring inherited: preadv into numpy-allocated memory; CRC-32 checked unless verify=False
        state = self._state(namespace)
        out: list[Buffer | None] = []
        with state.mutex:
            self._refresh(state)
            for key in keys:
                entry = state.table.lookup(key.encode("utf-8"))
                if entry is None:
                    out.append(None)
                    continue
                offset, size, crc = entry
                buffer = np.empty(size, dtype=np.uint8)
                got = os.preadv(state.tar_fd, [buffer], offset)
                if got != size or (verify and self.verify and crc32(buffer) != crc):
                    raise IntegrityError(
                        f"value of key {key!r} in namespace {namespace!r} is corrupt (checksum or size mismatch)"
                    )
                out.append(memoryview(buffer))
        return out

    def read_prefix_many(self, namespace: str, keys: Sequence[str], size: int) -> list[bytes | None]:
        # docstring inherited (the head is not checksummed: the whole value is, on a full read)
        state = self._state(namespace)
        with state.mutex:
            self._refresh(state)
            found = [state.table.lookup(key.encode("utf-8")) for key in keys]
            return [None if entry is None else _pread(state.tar_fd, min(size, entry[1]), entry[0]) for entry in found]

    def child_namespace(self, namespace: str, name: str) -> str:
        # docstring inherited: groups of run.tar live in run.groups/<name>.tar
        base = namespace[:-4] if namespace.endswith(".tar") else namespace
        return os.path.join(base + ".groups", name + ".tar")

    def stat_many(self, namespace: str, keys: Sequence[str]) -> list[tuple[int, int] | None]:
        # docstring inherited
        state = self._state(namespace)
        with state.mutex:
            self._refresh(state)
            found = [state.table.lookup(key.encode("utf-8")) for key in keys]
        return [None if entry is None else (entry[1], entry[2]) for entry in found]

    def move_many(self, source: str, pairs: Sequence[tuple[str, str]], destination: str) -> None:
        # docstring inherited
        if source != destination:
            return super().move_many(source, pairs, destination)
        state = self._state(source)
        with state.mutex, self._locked(state):
            self._prepare_write(state)
            missing = [old for old, _ in pairs if old.encode("utf-8") not in state.table.slots]
            if missing:
                raise KeyNotFoundError(source, missing)
            values = [
                self._read_located(source, state, old, state.table.lookup(old.encode("utf-8")))  # type: ignore[arg-type]
                for old, _ in pairs
            ]
            self._commit(source, state, [(new, value) for (_, new), value in zip(pairs, values)], [old for old, _ in pairs])

    # ------------------------------------------------------- maintenance
    def reindex(self, namespace: str) -> int:
        """Rebuild the index of ``namespace`` by scanning its tar; return the number of keys.

        Raises
        ------
        KeyNotFoundError
            If the namespace has no tar file.
        """
        namespace = self.normalize_namespace(namespace)
        if not os.path.isfile(namespace):
            raise KeyNotFoundError(namespace, [])
        state = self._state(namespace)
        with state.mutex, self._locked(state):
            self._rebuild(state, reason="reindex() was called")
            return len(state.table.slots)

    def compact(self, namespace: str) -> tuple[int, int]:
        """Rewrite ``namespace`` with only its live values; return (bytes before, bytes after).

        Crash-safe: the new tar and index are written beside the old ones and
        renamed into place; a crash before the renames leaves the old pair, a
        crash between them leaves a new tar whose index is rebuilt on open.
        """
        namespace = self.normalize_namespace(namespace)
        state = self._state(namespace)
        with state.mutex, self._locked(state):
            self._prepare_write(state)
            before = os.fstat(state.tar_fd).st_size
            entries = state.table.live_entries()
            new_tar = state.tar_path + ".compact"
            new_index = state.index_path + ".compact"
            with storage_errors(f"compact namespace {namespace!r}"):
                fd = os.open(new_tar, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
                placed = []
                length = 0
                try:
                    for group in _groups_of_bytes(entries, _COMPACT_BATCH_BYTES):
                        values = [
                            (key.decode("utf-8"), self._read_located(namespace, state, key.decode("utf-8"), (off, size, crc)))
                            for key, off, size, crc in group
                        ]
                        chunks, group_length, group_placed = build_members(values, [], int(time.time()))
                        _pwrite_all(fd, chunks, length)
                        placed.extend((p.key, length + p.data_offset, p.size, p.crc) for p in group_placed)
                        length += group_length
                    os.pwrite(fd, END_OF_ARCHIVE, length)
                    os.fsync(fd)
                    tar_inode = os.fstat(fd).st_ino
                finally:
                    os.close(fd)
                record = idx.encode_put(
                    [p[0].encode("utf-8") for p in placed], [p[1] for p in placed],
                    [p[2] for p in placed], [p[3] for p in placed], length, commit=True,
                )
                with open(new_index, "wb") as handle:
                    handle.write(idx.encode_file_header(tar_inode) + record)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(new_tar, state.tar_path)
                os.replace(new_index, state.index_path)
            self._reload(state)
            return before, length + len(END_OF_ARCHIVE)

