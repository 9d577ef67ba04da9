"""One namespace as this process works on it: open, refresh, read, lock, recover, commit.

Why one module of this size: the order of lock, refresh, repair and commit is
what keeps a namespace whole across crashes, and it is only visible when the
whole lifecycle of a namespace is in one class.

A :class:`NamespaceSession` wraps the :class:`~.state.NamespaceState` of one
tar and is the only way the backend's primitives touch it:

- ``with session.reading():`` brings the state up to date (one ``stat`` of
  the index when nothing changed) and never writes (:mod:`.state`).
- :meth:`NamespaceSession.read` is the one read path: a value's bytes at
  their recorded place, checked against their recorded size and CRC-32.
- ``with session.writing(action):`` takes the writers' lock, then creates
  the namespace or repairs what readers worked around: a missing or damaged
  index, complete batches an interrupted writer did not index, a torn tail
  (moved to a side file, never cut).
- :meth:`NamespaceSession.commit` appends one batch: members first, then one
  index append that commits them.

:class:`Sessions` keeps a bounded number of sessions open per process and
drops those inherited across a fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Literal
from ...core.crc import crc32

import numpy as np

from ...core.contract import Buffer
from ...core.errors import (
    BackendUnavailableError, IntegrityError, InvalidArgumentError, InvalidNamespaceError, MummiIOError, ReadOnlyError,
)
from ...core.flock import ExclusiveFileLock
from ...core.fs import fill_buffer, os_error, storage_errors
from ...core.keys import RESERVED_PREFIX, all_plain_keys, validate_key
from . import index as idx
from . import repair
from .scan import MappedTar, scan
from .sniff import COMPRESSED_SUFFIXES
from .state import BUSY, NamespaceState, StateLoader, apply_batches, forks_seen, frame_is_running, pread_exact
from .tarformat import (
    BLOCK, END_OF_ARCHIVE, Placement, build_members, crc_of, name_check, parse_header, pieces_of, seal_members,
)

LOGGER = logging.getLogger(__name__)

_IOV_MAX = 1024
_LOCK_POLL = 0.0005  # seconds between attempts to take a contended writer lock
#: Batches of at least this many bytes in at most this many values compute their
#: CRC-32s in a thread while the bytes are written, then seal the headers.
_PARALLEL_CRC_BYTES = 8 << 20
_PARALLEL_CRC_VALUES = 64
_SHOWN = 20
#: Slices of values up to this size read the whole value and check its CRC-32 (one read either way).
WHOLE_READ_BYTES = 256 << 10

#: Where a value lies in the tar: (data offset, size, CRC-32 or None when none was recorded, and the
#: descriptor of the tar the place is in, taken with the table: see NamespaceState.view).
Location = tuple[int, int, int | None, int | None]


def shown(keys: Sequence[str]) -> str:
    """The first keys of a list for a message, and how many more there are."""
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(repr(k) for k in keys[:_SHOWN]) + more


def is_key(name: str) -> bool:
    """Whether a member name is a key: a valid user key, or one of mummi_io's own reserved keys."""
    if name.startswith(RESERVED_PREFIX):
        name = "r" + name[len(RESERVED_PREFIX):]  # e.g. a pack's manifest: keep it, check the rest
    try:
        validate_key(name)
    except ValueError:
        return False
    return True


def names_not_keys(names: list[str]) -> list[str]:
    """The names that are not keys (:func:`is_key`): checked in bulk when the rest are plain ASCII keys."""
    reserved = [name for name in names if name.startswith(RESERVED_PREFIX)]
    users = [name for name in names if not name.startswith(RESERVED_PREFIX)] if reserved else names
    return [name for name in (reserved if all_plain_keys(users) else names) if not is_key(name)]


def pwrite_all(fd: int, chunks: Sequence[Buffer], offset: int, total: int | None = None) -> None:
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


class _Block:
    """A block that uses a session's files: the mutex held (one thread at a time) and the block registered.

    Blocks are classes, not generators: Ctrl-C landing just after a
    generator's block began would leave what it took (the mutex, the writer
    lock, the busy mark) held for as long as the exception is kept. What a
    block's ``__enter__`` takes, it gives back itself if it is interrupted.

    One window remains that no Python code can close: an exception raised
    by a signal handler at the very start of ``__exit__`` (or of a function
    it calls) skips what follows. So each block records the frame of its
    ``with`` statement, and the next block on the namespace gives back what
    a block whose frame has ended still holds (:func:`_heal`). A block
    inside a block of the same thread (a signal handler's call) does not
    take the mutex again.
    """

    __slots__ = ("session", "outer", "frame", "thread", "entered")

    def __init__(self, session: NamespaceSession) -> None:
        self.session = session
        self.outer = True  # until known otherwise: never let go of a mutex this block did not take
        self.frame: FrameType | None = None
        self.thread = threading.get_ident()
        self.entered = False

    def _open(self) -> None:
        """Take the mutex and register the block; called by ``__enter__`` inside a ``try`` whose ``except``
        calls ``__exit__``."""
        state = self.session.state
        mutex = state.mutex
        self.frame = sys._getframe(2)  # the frame of the ``with`` statement (above _open and __enter__)
        if mutex._is_owned():  # type: ignore[attr-defined]  # RLock's, as threading.Condition uses it
            _heal_mutex(state)
        self.outer = mutex._is_owned()  # type: ignore[attr-defined]
        if not self.outer:
            mutex.acquire()
            state.mutex_holder = self.frame
        if state.blocks:
            _heal(state)
        state.blocks.append(self)
        state.refuse_reentry()

    def _undo(self) -> None:
        """Give back what the block holds, then unregister it, closing the files after the last one.

        Safe to run again, in part or whole: a step skipped by an interrupt
        leaves the block registered, and :func:`_heal` runs it again.
        """
        state = self.session.state
        try:
            state.blocks.remove(self)
        except ValueError:
            return
        if not state.blocks:
            self.session.last_block_ended()

    def _close(self) -> None:
        """Give back what :meth:`_open` took (any part of it)."""
        state = self.session.state
        try:
            self._undo()
        finally:
            if not self.outer and (self.entered or state.mutex._is_owned()):  # type: ignore[attr-defined]
                state.mutex_holder = None  # no call from here to the release: no handler runs in between
                state.mutex.release()


def _holds_stopped_call(state: NamespaceState) -> bool:
    """Whether a call an interrupt stopped is still registered in the namespace (its frame no longer runs in
    its thread): the LRU keeps such a session until that thread's next call gives back what it holds. A
    session other threads are using is let go as usual (they close its files when they are done)."""
    blocks = list(state.blocks)
    if not blocks:
        return False
    running = sys._current_frames()
    return any(block.thread not in running or not frame_is_running(block.frame, running[block.thread])
               for block in blocks)


def _heal_mutex(state: NamespaceState) -> None:
    """This thread holds the mutex: let go of it if the block that took it has ended (see :class:`_Block`)."""
    holder = state.mutex_holder
    if holder is not None and not frame_is_running(holder):
        LOGGER.warning("%s: a call interrupted as it ended (Ctrl-C) kept it locked; let go now", state.tar_path)
        while state.mutex._is_owned():  # type: ignore[attr-defined]
            state.mutex.release()
        state.mutex_holder = None  # last: interrupted before this, the next block heals again


def _heal(state: NamespaceState) -> None:
    """With the mutex held: give back what blocks whose ``with`` statement has ended still hold."""
    for block in reversed(state.blocks[:]):
        if not frame_is_running(block.frame):
            LOGGER.warning("%s: a call interrupted as it ended (Ctrl-C) kept it busy; let go now", state.tar_path)
            block._undo()


class _Reading(_Block):
    """The block of :meth:`NamespaceSession.reading` (it runs on every read)."""

    __slots__ = ()

    def __enter__(self) -> NamespaceSession:
        session = self.session
        try:
            self._open()
            session.loader.refresh(session.state)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)  # lets go, and raises a StorageError for an OSError
            raise
        self.entered = True
        return session

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> Literal[False]:
        self._close()
        if isinstance(exc, OSError) and not isinstance(exc, MummiIOError):
            raise os_error(f"read namespace {self.session.namespace!r}", exc) from exc
        return False


class _Locked(_Block):
    """The block of :meth:`NamespaceSession.locked` and :meth:`~NamespaceSession.writing`: busy, and the
    writer lock held."""

    __slots__ = ("action", "busy")

    def __init__(self, session: NamespaceSession, action: str | None) -> None:
        super().__init__(session)
        self.action = action  # what a writing block does, named in errors; None for locked()
        self.busy: tuple[str, int] | None = None  # its mark in BUSY, once made

    def __enter__(self) -> NamespaceSession:
        session = self.session
        state = session.state
        try:
            self._open()
            self.busy = busy = (state.tar_path, threading.get_ident())  # refuse_reentry passed: not marked yet
            BUSY[busy] = self.frame  # type: ignore[assignment]  # set by _open
            session._take_lock()
            if self.action is not None:
                with storage_errors(f"{self.action} namespace {session.namespace!r}"):
                    session.prepare()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.entered = True
        return session

    def _undo(self) -> None:
        state = self.session.state
        if self.busy is not None:  # this block got past refuse_reentry: the writer lock, if held, is its own
            if state.lock is not None:
                state.lock.release()
            BUSY.pop(self.busy, None)
            self.busy = None
        super()._undo()

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> Literal[False]:
        session = self.session
        self._close()
        if self.action is not None and isinstance(exc, OSError) and not isinstance(exc, MummiIOError):
            raise os_error(f"{self.action} namespace {session.namespace!r}", exc) from exc
        return False


class NamespaceSession:
    """One namespace of one process (see the module docstring); its ``mutex`` serializes threads."""

    def __init__(self, namespace: str, loader: StateLoader, fsync: bool, verify: bool, lock_timeout: float) -> None:
        self.namespace = namespace
        self.state = NamespaceState(namespace)
        self.loader = loader
        self.fsync = fsync
        self.verify = verify
        self.lock_timeout = lock_timeout
        #: Set when the LRU let go of this session: a thread still using it closes its files when done.
        self.evicted = False

    @property
    def table(self) -> idx.IndexTable:
        return self.state.table

    def close(self, wait: bool = True) -> None:
        """Close the files, or, from inside a block of this thread (a signal handler's call evicted this
        session), leave that to the block's end (the caller has set :attr:`evicted`).

        What blocks stopped by an interrupt still hold is given back first
        (see :class:`_Block`). Without ``wait``, a session another thread is
        using is left to close itself at the end of its block.
        """
        state = self.state
        mutex = state.mutex
        if mutex._is_owned():  # type: ignore[attr-defined]
            _heal_mutex(state)
        if wait:
            with mutex:
                self._close_unless_used()
        elif mutex.acquire(blocking=False):
            try:
                self._close_unless_used()
            finally:
                mutex.release()

    def _close_unless_used(self) -> None:
        state = self.state
        if state.blocks:
            _heal(state)
        if not state.blocks:
            state.close()

    # -------------------------------------------------------------- reading
    def reading(self) -> _Reading:
        """``with session.reading() as session:`` the session, up to date, for a read (errors of the system
        as StorageError)."""
        return _Reading(self)

    def last_block_ended(self) -> None:
        """The last block using the files ended: close them if the LRU let go meanwhile (no leak), and those
        a signal handler's call replaced under it."""
        state = self.state
        if self.evicted:
            state.close()
        elif state.retired:
            state.close_retired()

    def locate(self, key: str) -> Location | None:
        """Where the value of ``key`` lies, ``None`` when the key does not exist."""
        table, fd = self.state.view()
        location = table.lookup(key.encode("utf-8"))
        return None if location is None else (*location, fd)

    def read(self, key: str, location: Location, into_buffer: bool = False, check: bool = True,
             consume: Callable[[memoryview], object] | None = None) -> Buffer:
        """The value of ``key`` at ``location``, checked against its recorded size and CRC-32.

        ``into_buffer`` reads into fresh numpy memory (writable, far fewer
        page faults for large values) instead of ``bytes``; ``check=False``
        skips the CRC for a caller that checks a stronger digest; ``consume``
        (with ``into_buffer``) is handed each piece as it is read (see
        :func:`~mummi_io.core.fs.fill_buffer`).

        Raises
        ------
        IntegrityError
            If the bytes are short, fail their CRC-32, or are known lost.
        """
        offset, size, crc, fd = location
        self._refuse_lost(key, fd)
        data: Buffer
        if into_buffer:
            data = np.empty(size, dtype=np.uint8).data
            got = fill_buffer(fd, data, offset, consume)  # type: ignore[arg-type]  # not None: see _refuse_lost
        else:
            data = pread_exact(fd, size, offset)  # type: ignore[arg-type]
            got = len(data)
        if got != size or (check and self.verify and crc is not None and crc32(data) != crc):
            raise self.corrupt([key])
        return data

    def read_values(self, keys: Sequence[str], into_buffer: bool = False, check: bool = True) -> list[Buffer | None]:
        """The value of each key (``None`` where missing); every corrupt one is named in one error."""
        values: list[Buffer | None] = []
        bad: list[str] = []
        for key in keys:
            location = self.locate(key)
            if location is None:
                values.append(None)
                continue
            try:
                values.append(self.read(key, location, into_buffer, check))
            except IntegrityError:
                bad.append(key)
        if bad:
            raise self.corrupt(bad)
        return values

    def read_slice(self, key: str, location: Location, offset: int, length: int) -> bytes:
        """``length`` bytes of a value from ``offset``, never unchecked bytes.

        The header block just before the value's data is read first: if it
        carries mummi_io's mark for another key, size or CRC-32 than the
        index recorded (a stale or damaged index pointing at another
        member), the read fails. The CRC-32 covers the value whole, so a
        value of at most :data:`WHOLE_READ_BYTES`, a slice that is the whole
        value, or a member without the mark (a tar written by another tool)
        is read whole, checked, and sliced; a part of a larger marked value
        is read in place, its place confirmed by the mark.

        Raises
        ------
        IntegrityError
            If the value is known lost, its header or bytes are not what the
            index recorded, or the tar ends inside the slice.
        """
        start, size, _, fd = location
        self._refuse_lost(key, fd)
        marked = self._mark_agrees(key, location)
        if marked is False:
            raise self.corrupt([key])
        if marked is None or size <= WHOLE_READ_BYTES or length == size:
            return bytes(memoryview(self.read(key, location))[offset:offset + length])
        piece = pread_exact(fd, length, start + offset)  # type: ignore[arg-type]
        if len(piece) != length:
            raise self.corrupt([key])
        return piece

    def _mark_agrees(self, key: str, location: Location) -> bool | None:
        """Whether mummi_io's mark before ``location``'s data names this key, size and CRC; ``None`` if no mark."""
        start, size, crc, fd = location
        if start < BLOCK:
            return None
        header = parse_header(pread_exact(fd, BLOCK, start - BLOCK))  # type: ignore[arg-type]
        mark = header.mark if header is not None else None
        if mark is None:
            return None
        return (crc is None or mark.crc == crc) and name_check(key, size, mark.back_blocks,
                                                                 mark.ends_batch) == mark.name_check

    def checksum(self, key: str, location: Location) -> int:
        """The CRC-32 of a value: the recorded one, else computed from the tar (``IntegrityError`` if lost)."""
        offset, size, crc, fd = location
        self._refuse_lost(key, fd)
        return crc if crc is not None else repair.crc_of_range(fd, offset, size)  # type: ignore[arg-type]

    def live_entries(self) -> list[tuple[bytes, int, int, int | None]]:
        """Every live value's (key, offset, size, CRC-32); ``IntegrityError`` if the tar lost any of them."""
        if self.state.lost:
            raise self.corrupt(sorted(self.state.lost))
        return self.state.table.live_entries()

    def _refuse_lost(self, key: str, fd: int | None) -> None:
        if (self.state.lost and key in self.state.lost) or fd is None:  # whatever lies there now is not its value
            raise self.corrupt([key])

    def corrupt(self, keys: list[str]) -> IntegrityError:
        """The error for values whose bytes are not what the index recorded."""
        lost = [key for key in keys if key in self.state.lost]
        if lost:
            return IntegrityError(
                f"{len(lost)} value(s) of namespace {self.namespace!r} are no longer in its tar: {shown(lost)} "
                f"({self.state.lost[lost[0]]}). Restore the tar from a copy; or, to accept the tar's older "
                "state, run reindex(accept_loss=True) (mummi-io reindex --accept-loss)",
                lost,
            )
        return IntegrityError(
            f"{len(keys)} value(s) of namespace {self.namespace!r} are corrupt (checksum or size mismatch): "
            f"{shown(keys)}. Restore them from a copy; mummi-io verify lists every damaged value",
            keys,
        )

    # -------------------------------------------------------------- writing
    def locked(self) -> _Locked:
        """``with session.locked():`` hold the namespace's writer lock for the block.

        The files are looked at first, read-only, so that a file that is not
        ours is refused before even a lock file is created beside it. The
        block is busy (:meth:`NamespaceState.busy`): a signal handler's call
        into this namespace from the same thread is refused.
        """
        return _Locked(self, None)

    def _take_lock(self) -> None:
        """With the mutex held: refuse what cannot be written, then take the writers' lock file."""
        state = self.state
        with storage_errors(f"read namespace {state.tar_path!r}"):
            self.loader.refresh(state)
        self._refuse_read_only()
        if state.lock is None:
            # Create the lock file's directory, and name the path if even that fails.
            with storage_errors(f"create the lock file {state.lock_path!r} of namespace {state.tar_path!r}"):
                os.makedirs(os.path.dirname(state.lock_path) or ".", exist_ok=True)
                os.close(os.open(state.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666))
            state.lock = ExclusiveFileLock(state.lock_path)
        with storage_errors(f"lock {state.lock_path!r}"):
            taken = state.lock.acquire(self.lock_timeout, _LOCK_POLL)
        if not taken:
            raise BackendUnavailableError(
                f"another process has held the write lock {state.lock_path!r} for over "
                f"{self.lock_timeout} s; check for a hung writer, or raise lock_timeout"
            )

    def writing(self, action: str) -> _Locked:
        """Locked, up to date, created or repaired: ready for :meth:`commit` (``action`` names it in errors)."""
        return _Locked(self, action)

    def _refuse_read_only(self) -> None:
        """Refuse, before any file is created, a write to a namespace that can only be read."""
        state = self.state
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

    def prepare(self) -> None:
        """With the lock held: bring the state up to date, then create or repair the namespace."""
        namespace, state = self.namespace, self.state
        self.loader.refresh(state)
        self._refuse_read_only()
        if not self.loader.still_describes(state):
            state.close()  # the tar was replaced, cut or restored under this process: look again
            self.loader.load(state)
        if state.diverged:
            lost = sorted(state.lost)
            raise IntegrityError(
                f"namespace {namespace!r} is not written to: its tar no longer holds {len(lost)} value(s) its "
                f"index knows ({state.diverged}): {shown(lost)}. Restore the tar from a copy; or, to accept "
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
            self.loader.refresh(state)
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
            self.replace_index(state.table)
            self.loader.refresh(state)
        self._recover_tail()

    def replace_index(self, table: idx.IndexTable) -> None:
        """Make ``table`` the namespace's index (an atomic rewrite) and forget a compaction's."""
        repair.write_index(self.state.index_path, table)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state.compact_index_path)

    def reload(self) -> None:
        """Forget what is held and read the namespace again (after its files were replaced)."""
        self.state.close()
        self.loader.refresh(self.state)

    def _recover_tail(self) -> None:
        """Index complete batches after the last commit; move a torn tail to a side file."""
        namespace, state = self.namespace, self.state
        end = state.table.tar_end
        fd = os.open(namespace, os.O_RDWR | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == end + len(END_OF_ARCHIVE) and pread_exact(fd, len(END_OF_ARCHIVE), end) == END_OF_ARCHIVE:
                return
            with MappedTar(fd, size) as source:
                found = scan(source, end, is_key)
            if found.batches:
                LOGGER.warning("%s: indexing %d complete batch(es) an interrupted writer left", namespace, len(found.batches))
                recovered = idx.IndexTable()
                apply_batches(recovered, found.batches)
                records = []
                for batch in found.batches:
                    records.append(repair.batch_records(
                        [k.encode("utf-8") for k, _, _, _ in batch.puts], [o for _, o, _, _ in batch.puts],
                        [s for _, _, s, _ in batch.puts],
                        [c if c is not None else repair.crc_of_range(fd, o, s) for _, o, s, c in batch.puts],
                        [k.encode("utf-8") for k in batch.deletes], batch.end,
                    ))
                self._append_index(b"".join(records))
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

    def _append_index(self, records: bytes, fd: int | None = None) -> None:
        """Append committed records to the index (through ``fd`` if given) and apply them."""
        state = self.state
        own = fd is None
        if fd is None:
            fd = os.open(state.index_path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            pwrite_all(fd, [records], state.consumed)
            if self.fsync:
                os.fsync(fd)
        finally:
            if own:
                os.close(fd)
        parsed = idx.apply_records(state.table, records, state.consumed)
        state.consumed = state.index_size = parsed.committed

    def _write_batch(
        self, fd: int, index_fd: int, chunks: list[Buffer], start: int, length: int, placed: Placement,
        crcs: list[int], deletes: Sequence[str], mtime: int, worker: threading.Thread | None,
    ) -> None:
        """Write a built batch at ``start`` of the tar, then commit it to the index (see :meth:`commit`)."""
        end = start + length
        try:
            chunks.append(END_OF_ARCHIVE)
            pwrite_all(fd, chunks, start, length + len(END_OF_ARCHIVE))
        finally:
            if worker is not None:
                worker.join()
        if worker is not None:
            for offset, header in seal_members(placed, crcs, mtime):
                os.pwrite(fd, header, start + offset)
        if os.fstat(fd).st_size > end + len(END_OF_ARCHIVE):
            os.ftruncate(fd, end + len(END_OF_ARCHIVE))  # zeros left after a shorter batch
        if self.fsync:
            os.fsync(fd)
        count = placed.values
        records = repair.batch_records(
            placed.keys[:count], [start + offset for offset in placed.data_offsets[:count]],
            placed.sizes[:count], placed.crcs[:count], [key.encode("utf-8") for key in deletes], end,
        )
        try:
            self._append_index(records, index_fd)
        except OSError:
            # Not committed: take the batch back out of the tar, so that the error means "not written".
            with contextlib.suppress(OSError):
                repair.end_tar_at(fd, start, fsync=self.fsync)
            raise

    def commit(self, puts: Sequence[tuple[str, Buffer]], deletes: Sequence[str]) -> None:
        """Append ``puts`` and ``deletes`` as one batch (inside :meth:`writing`)."""
        state = self.state
        mtime = int(time.time())
        overlap = len(puts) <= _PARALLEL_CRC_VALUES and sum(
            len(value) if value.__class__ is bytes else sum(memoryview(p).nbytes for p in pieces_of(value))
            for _, value in puts
        ) >= _PARALLEL_CRC_BYTES
        crcs: list[int] = []
        worker: threading.Thread | None = None
        if overlap:
            # Large values: write them with unsealed headers while a thread computes their CRC-32s
            # (both release the GIL), then write the final headers.
            worker = threading.Thread(target=lambda: crcs.extend(crc_of(pieces_of(v)) for _, v in puts), name="mummi-io-crc")
            worker.start()
            chunks, length, placed = build_members(puts, deletes, mtime, None)
        else:
            values = [value for _, value in puts]
            crcs = list(map(crc32, values)) if all(value.__class__ is bytes for value in values) else [
                crc32(value) if value.__class__ is bytes else crc_of(pieces_of(value)) for value in values
            ]
            chunks, length, placed = build_members(puts, deletes, mtime, crcs)
        start = state.table.tar_end
        # The index must take the commit: open it before a byte of the tar is written.
        index_fd = os.open(state.index_path, os.O_WRONLY | os.O_CLOEXEC)
        fd = os.open(state.tar_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                self._write_batch(fd, index_fd, chunks, start, length, placed, crcs, deletes, mtime, worker)
            except BaseException:
                # Stopped (an error, a signal, Ctrl-C) with the tar or the index perhaps changed: what this
                # process holds may no longer be what the files say; read them afresh, as another process would.
                state.close()
                raise
        finally:
            os.close(fd)
            os.close(index_fd)


class Sessions:
    """The sessions a backend keeps open in this process: at most ``max_open``, least recently used first out."""

    def __init__(self, fsync: bool, verify: bool, lock_timeout: float, max_open: int) -> None:
        if not isinstance(max_open, int) or max_open < 1:
            raise InvalidArgumentError(f"max_open is how many namespaces stay open (at least 1), not {max_open!r}")
        self.fsync = fsync
        self.verify = verify
        self.lock_timeout = lock_timeout
        self.max_open = max_open
        self._loader = StateLoader(is_key)
        self._open: OrderedDict[str, NamespaceSession] = OrderedDict()
        self._guard = threading.Lock()
        self._guard_holder: int | None = None  # the thread inside a guarded block (see _interrupted)
        self._latest: str | None = None  # the namespace asked for last

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # open files stay with this process
        state["_latest"] = state["_guard_holder"] = None
        del state["_guard"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._guard = threading.Lock()

    def __call__(self, namespace: str) -> NamespaceSession:
        """The session of ``namespace``, opened on first use."""
        session = self._open.get(namespace)
        if session is not None and namespace == self._latest and session.state.forks == forks_seen():
            return session  # the namespace used last, as most calls are: already first in line to stay open
        me = threading.get_ident()
        if self._guard_holder == me:
            return self._interrupted(namespace)
        evicted: list[NamespaceSession] = []
        with self._guard:
            self._guard_holder = me  # no call between taking the guard and this: no handler can run there
            try:
                self._latest = namespace
                session = self._open.get(namespace)
                if session is not None and session.state.forks != forks_seen():
                    # Inherited across fork: drop the parent's copies (its mutex may be held).
                    session.state.blocks.clear()
                    session.state.close()
                    session = None
                if session is None:
                    session = NamespaceSession(namespace, self._loader, self.fsync, self.verify, self.lock_timeout)
                    self._open[namespace] = session
                    while len(self._open) > self.max_open:
                        # The least recently used one that no stopped call holds (see _holds_stopped_call).
                        idle = next((name for name, open_session in self._open.items()
                                     if name != namespace and not _holds_stopped_call(open_session.state)), None)
                        if idle is None:
                            break
                        oldest = self._open.pop(idle)
                        oldest.evicted = True
                        evicted.append(oldest)
                else:
                    self._open.move_to_end(namespace)
            finally:
                self._guard_holder = None
        for oldest in evicted:  # outside the guard; a session in use closes itself when its user is done
            oldest.close(wait=False)
        return session

    def _interrupted(self, namespace: str) -> NamespaceSession:
        """A session for a signal handler that interrupted this thread inside a guarded block.

        Waiting for the guard would wait forever, and the sessions it
        guards may be half-updated: the handler gets the namespace's open
        session if there is one, else a session of its own that closes its
        files when its call ends (it is :attr:`~NamespaceSession.evicted`
        from the start).
        """
        session = self._open.get(namespace)
        if session is not None and session.state.forks == forks_seen() and not session.evicted:
            return session
        single = NamespaceSession(namespace, self._loader, self.fsync, self.verify, self.lock_timeout)
        single.evicted = True
        return single

    def __len__(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Close every open session."""
        me = threading.get_ident()
        if self._guard_holder == me:
            return  # a signal handler's close, inside this thread's guarded block: the block is left whole
        with self._guard:
            self._guard_holder = me
            try:
                sessions = list(self._open.values())
                self._open.clear()
            finally:
                self._guard_holder = None
        for session in sessions:
            session.evicted = True
            session.close()
