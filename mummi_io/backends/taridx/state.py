"""What one process holds for one namespace, and how it is brought up to date, read-only.

Why one module of this size: every way a reader may find a namespace (index,
compaction's index, tar alone, compressed) must agree on one state, and the
checks that choose between them read best side by side.

Nothing here writes a byte: readers never change the tar, the index, or
anything else (DESIGN.md, "A read never writes"). What a reader finds that
needs a repair (no index, a damaged index, an interrupted write) it works
around in memory, and leaves the repair to the next writer (``repair.py``).

Where the state comes from, in order of preference:

1. **the index** (``run.tar.idx``), once it is shown to describe this tar:
   the tar is at least as long as the index says, and the header of the last
   value the index recorded is where the index says, with the same size and
   CRC-32. An index whose records stop early (a torn append, a damaged
   record) is completed by scanning the tar after its last good record;
2. **the compaction's index** (``run.tar.idx.compact``) when a compaction was
   interrupted between renaming its tar and its index;
3. **the tar alone** (:mod:`.scan`) when there is no readable index;
4. **a compressed tar**: decompressed once into a private temporary file,
   then read like the tar alone; writes are refused (:mod:`.compressed`).

Only regular files are namespaces: a directory, a FIFO, a socket or a device
(``/dev/zero`` behind a symbolic link) is refused before it is opened.

When the index knows of values the tar no longer holds (the tar was cut
short, replaced or restored from an older copy), the state is *diverged*: the
index is kept, so nothing rolls back and no deleted key comes back; reading a
lost value raises :class:`~mummi_io.core.errors.IntegrityError` naming it, and
writers refuse until ``reindex(accept_loss=True)`` accepts the tar's state.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar
from dataclasses import dataclass, field

from ...core.flock import ExclusiveFileLock

from ...core.crc import crc32
from ...core.errors import ReentrantCallError, UnsupportedFormatError
from ...core.fs import stat_or_none
from . import index as idx
from .compressed import decompress
from .scan import MappedTar, ScannedBatch, last_nonzero_end, scan
from .sniff import Kind, identify
from .tarformat import BLOCK, ZERO_BLOCK, parse_header

LOGGER = logging.getLogger(__name__)

#: How often a reader retries when the files change under it (a compaction renaming them).
_RELOAD_ATTEMPTS = 20
_TORN_INDEX = "its index ends with a torn or damaged record"
_MISSING_BATCHES = "its index lacks complete batches the tar holds"
_SCANNED = (_TORN_INDEX, _MISSING_BATCHES)


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    """Read ``size`` bytes at ``offset`` (fewer only at the end of the file)."""
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


_FORKS = [0]


def forks_seen() -> int:
    """How many forks led to this process since mummi_io was imported: state from before a fork is the parent's.

    Cheaper than ``os.getpid()`` (a system call) on every read.
    """
    return _FORKS[0]


def _after_fork_in_child() -> None:
    _FORKS[0] += 1


os.register_at_fork(after_in_child=_after_fork_in_child)

#: (namespace, thread) pairs where the thread is writing or reading the index in: a call into the namespace
#: from that thread then comes from a signal handler, and would interleave (a half-applied table, two writes
#: at one offset); it is refused (:meth:`NamespaceState.refuse_reentry`). One table for the process, so
#: that a handler reaching the namespace through another session (after an eviction, or through another
#: get_io object) is refused too. The value is the frame of the marking call: a mark whose frame has ended
#: (its call stopped by an interrupt before unmarking) is dropped, not obeyed.
BUSY: dict[tuple[str, int], FrameType] = {}


def frame_is_running(frame: FrameType | None, top: FrameType | None = None) -> bool:
    """Whether ``frame`` is on the stack that ``top`` (by default the caller's frame) ends: running in that
    thread. Its holder keeps it alive, so its identity is never another frame's."""
    current: FrameType | None = top if top is not None else sys._getframe(1)
    while current is not None:
        if current is frame:
            return True
        current = current.f_back
    return False


@dataclass
class NamespaceState:
    """What one process keeps open for one namespace (see the module docstring)."""

    tar_path: str
    forks: int = field(default_factory=forks_seen)  # of this process's ancestry: see forks_seen
    mutex: threading.RLock = field(default_factory=threading.RLock)
    table: idx.IndexTable = field(default_factory=idx.IndexTable)
    #: "absent", "index" or "scan" (the tar alone, or a decompressed copy of a compressed tar).
    mode: str = "absent"
    #: Why the namespace can only be read ("" if it can be written).
    read_only: str = ""
    tar_fd: int | None = None
    index_fd: int | None = None
    index_identity: tuple[int, int] = (0, 0)
    index_size: int = 0  # size of the index when last read
    consumed: int = 0  # bytes of the index applied (the end of its last good commit)
    #: Why the next writer must rewrite the index ("" if it need not).
    index_repair: str = ""
    #: Where the batches taken from the tar beyond the index begin and end.
    scanned_from: int | None = None
    scanned_end: int = 0
    #: For mode "scan": the tar's (inode, device, size, mtime) when it was scanned.
    tar_identity: tuple[int, ...] = ()
    #: Keys the index knows whose value the tar no longer holds -> why (the state is diverged).
    lost: dict[str, str] = field(default_factory=dict)
    diverged: str = ""
    #: From a scan of the tar alone: damaged ranges and values without a stored checksum.
    scan_notes: list[str] = field(default_factory=list)
    lock: ExclusiveFileLock | None = None
    #: The reading or writing blocks the thread holding :attr:`mutex` is in (see :meth:`close`).
    blocks: list[Any] = field(default_factory=list)
    #: The frame of the block that took :attr:`mutex` (None when it is free, or held by close()).
    mutex_holder: Any = None
    #: Descriptors closed while a block still read through them, to close when the last block ends.
    retired: list[int] = field(default_factory=list)
    #: Counts :meth:`close` calls: a table and a descriptor taken under one value belong together.
    generation: int = 0

    def refuse_reentry(self) -> None:
        """Raise :class:`ReentrantCallError` if this thread is writing to this namespace or reading its index in
        (see :data:`BUSY`)."""
        busy = (self.tar_path, threading.get_ident())
        marked_by = BUSY.get(busy)
        if marked_by is not None and not frame_is_running(marked_by):
            BUSY.pop(busy, None)  # marked by a call an interrupt stopped before it unmarked
        elif marked_by is not None:
            raise ReentrantCallError(
                f"namespace {self.tar_path!r} was used from a signal handler (or another callback) while the "
                "same thread was writing to it or reading its index, so nothing was done (if not caught, this "
                "error also stops the interrupted call, as Ctrl-C would). Save from a handler into another "
                "namespace, or set a flag in the handler and save from the main loop"
            )

    def view(self) -> tuple[idx.IndexTable, int | None]:
        """The table and the tar descriptor that belong to it, taken together.

        A signal handler's call may read the files afresh between any two
        steps of a read (after another process compacted them); the table
        and descriptor taken here stay usable together until the block ends
        (:meth:`close` keeps the descriptor open), so an old place is never
        read in a new file.
        """
        while True:
            generation = self.generation
            table, fd = self.table, self.tar_fd
            if generation == self.generation:
                return table, fd

    @property
    def index_path(self) -> str:
        return self.tar_path + ".idx"

    @property
    def compact_index_path(self) -> str:
        return self.tar_path + ".idx.compact"

    @property
    def lock_path(self) -> str:
        return self.tar_path + ".lock"

    def close(self) -> None:
        """Close the files and forget the table (the lock object stays).

        The state is forgotten before any file is closed, so that an
        exception (a signal handler's) landing half-way leaves a state the
        next call reads afresh. While a block of this thread is still in
        progress (a signal handler's call replaced the files under it), the
        descriptors stay open until that block ends (:meth:`close_retired`):
        their numbers must not be reused for another file under a read.
        """
        descriptors = [fd for fd in (self.tar_fd, self.index_fd) if fd is not None]
        self.mode = "absent"
        self.tar_fd = self.index_fd = None
        self.generation += 1
        self.retired += descriptors  # no call since they were forgotten: no signal handler runs in between
        self.index_identity = (0, 0)
        self.index_size = self.consumed = 0
        self.table = idx.IndexTable()
        self.index_repair = ""
        self.scanned_from = None
        self.scanned_end = 0
        self.tar_identity = ()
        self.lost = {}
        self.diverged = ""
        self.read_only = ""
        self.scan_notes = []
        if not self.blocks:
            self.close_retired()

    def close_retired(self) -> None:
        """Close the descriptors :meth:`close` let go of (kept open while a block could read through them)."""
        while self.retired:
            os.close(self.retired.pop())  # out of the list first: never closed twice (a reused number)


def apply_batches(table: idx.IndexTable, batches: list[ScannedBatch]) -> None:
    """Apply scanned batches to ``table`` in order (puts, then deletes, as they were written)."""
    for batch in batches:
        if batch.puts:
            table.put(
                [p[0].encode("utf-8", "surrogateescape") for p in batch.puts], [p[1] for p in batch.puts],
                [p[2] for p in batch.puts], [p[3] for p in batch.puts],
            )
        if batch.deletes:
            table.delete([key.encode("utf-8", "surrogateescape") for key in batch.deletes])
        table.tar_end = batch.end


def crc_of_range(fd: int, offset: int, size: int) -> int:
    """CRC-32 of ``size`` bytes of ``fd`` at ``offset``, read in 8 MiB pieces."""
    crc = 0
    done = 0
    while done < size:
        piece = os.pread(fd, min(size - done, 8 << 20), offset + done)
        if not piece:
            break
        crc = crc32(piece, crc)
        done += len(piece)
    return crc


def member_matches(tar_fd: int, tar_size: int, offset: int, size: int, crc: int | None) -> str:
    """Why the tar does not hold the value the index recorded at ``offset`` ("" if it does).

    First the member header just before the data: valid, a regular file of
    the same size, and the same CRC-32 when the header carries one. A header
    that is damaged or differs is not proof: the data itself, checked
    against the CRC-32 the index recorded, decides.
    """
    if offset + size > tar_size:
        return "the tar ends before this value (it was cut short, or replaced by an older copy)"
    if offset < BLOCK:
        return "the index points before the first header"
    header = parse_header(pread_exact(tar_fd, BLOCK, offset - BLOCK), strict=False)
    if (
        header is not None and header.checksum_ok and header.typeflag in (b"0", b"\0", b"7")
        and (header.size == size or (header.size == 0 and size > 8**11 - 1))
        and (header.mark is None or crc is None or header.mark.crc == crc)
    ):
        return ""
    if crc is not None and crc_of_range(tar_fd, offset, size) == crc:
        return ""  # a damaged header over intact data
    return "the tar holds other bytes where the index says this value is (the tar was replaced or rewritten)"


def _index_describes_tar(table: idx.IndexTable, tar_fd: int) -> str:
    """Why ``table`` does not describe the tar ("" if it does): a cheap check of its end and last value."""
    tar_size = os.fstat(tar_fd).st_size
    if table.tar_end > tar_size:
        return f"the tar is {tar_size} bytes but its index says it holds {table.tar_end}"
    if table.tar_end + BLOCK <= tar_size:
        block = pread_exact(tar_fd, BLOCK, table.tar_end)
        if block != ZERO_BLOCK and parse_header(block) is None and block[257:262] != b"ustar":
            return "the tar holds something else where its index says its members end"
    if not table.offsets:
        return ""
    slot = len(table.offsets) - 1
    return member_matches(tar_fd, tar_size, table.offsets[slot], table.sizes[slot], table.crcs[slot])


def lost_values(table: idx.IndexTable, tar_fd: int) -> dict[str, str]:
    """Every live key whose value is not in the tar where the index says -> why."""
    tar_size = os.fstat(tar_fd).st_size
    lost = {}
    for key, offset, size, crc in table.live_entries():
        why = member_matches(tar_fd, tar_size, offset, size, crc)
        if why:
            lost[key.decode("utf-8", "surrogateescape")] = why
    return lost


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _rebuilds(method: _Method) -> _Method:
    """A :class:`StateLoader` method that changes the state: a busy block, and on any exception
    (a signal handler's included) the half-built state is forgotten, to be read afresh next time."""

    @functools.wraps(method)
    def run(self: StateLoader, state: NamespaceState, *args: Any) -> Any:
        busy = (state.tar_path, threading.get_ident())
        marked = busy not in BUSY  # else an outer block of this thread marked it, and unmarks it
        if marked:
            BUSY[busy] = sys._getframe()
        try:
            return method(self, state, *args)
        except BaseException:
            state.close()
            raise
        finally:
            if marked:
                BUSY.pop(busy, None)  # in this frame: an interrupted close() above does not skip it

    return run  # type: ignore[return-value]


class StateLoader:
    """Brings a :class:`NamespaceState` up to date with the files; never writes."""

    def __init__(self, is_key: Callable[[str], bool]) -> None:
        self.is_key = is_key

    def refresh(self, state: NamespaceState) -> None:
        """Bring ``state`` up to date: one ``stat`` of the index when nothing changed."""
        info = stat_or_none(state.index_path, f"look at the index of {state.tar_path!r}")
        if info is None:
            self._from_tar_alone(state, "there is no index")
        elif state.mode != "index" or (info.st_ino, info.st_dev) != state.index_identity:
            self.load(state)
        elif info.st_size < state.index_size:
            self.load(state)  # the index was cut or replaced in place: read it afresh
        elif info.st_size != state.index_size:
            self._read_index_tail(state, info.st_size)
        elif state.index_repair in _SCANNED and state.tar_fd is not None and state.scanned_from is not None:
            # We took batches from the tar beyond the index; a writer whose commit failed takes its
            # batch back out of the tar (an end marker where it began): then look again.
            if (os.fstat(state.tar_fd).st_size < state.scanned_end
                    or pread_exact(state.tar_fd, BLOCK, state.scanned_from) == ZERO_BLOCK):
                self.load(state)

    def still_describes(self, state: NamespaceState) -> bool:
        """Whether the tar on disk is still the one the index describes (a writer checks before writing).

        A process notices other processes' appends through the index alone;
        a tar replaced, cut or restored from a copy meanwhile shows here.
        """
        if state.mode != "index" or state.tar_fd is None:
            return True
        info = stat_or_none(state.tar_path, f"look at namespace {state.tar_path!r}")
        opened = os.fstat(state.tar_fd)
        if info is None or (info.st_ino, info.st_dev) != (opened.st_ino, opened.st_dev):
            return False
        return not _index_describes_tar(state.table, state.tar_fd)

    # ----------------------------------------------------------- the index
    @_rebuilds
    def load(self, state: NamespaceState) -> None:
        """Open the index and the tar afresh and check that they agree."""
        for _ in range(_RELOAD_ATTEMPTS):
            state.close()
            _require_regular_path(state.index_path)
            try:
                index_fd = os.open(state.index_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return self._from_tar_alone(state, "there is no index")
            state.index_fd = index_fd
            opened = os.fstat(index_fd)
            require_regular(state.index_path, opened.st_mode)
            data = pread_exact(index_fd, opened.st_size, 0)
            if not idx.is_index(data):
                os.close(index_fd)
                state.index_fd = None
                return self._from_tar_alone(state, "its index is unreadable")
            _require_regular_path(state.tar_path)
            try:
                state.tar_fd = os.open(state.tar_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                state.tar_fd = None
            state.mode = "index"
            state.index_identity = (opened.st_ino, opened.st_dev)
            state.index_size = opened.st_size
            header = idx.FILE_HEADER.size
            parsed = idx.apply_records(state.table, memoryview(data)[header:], header)
            state.consumed = parsed.committed
            if state.tar_fd is None:
                if state.table.slots:
                    self._diverge(state, "the tar file is missing but its index lists keys",
                                  {k.decode("utf-8", "surrogateescape"): "the tar file is missing" for k in state.table.slots})
                return None
            why = _index_describes_tar(state.table, state.tar_fd)
            if not why:
                if parsed.stopped_early or os.fstat(state.tar_fd).st_size > state.table.tar_end + 2 * BLOCK:
                    # The index stops early (torn, damaged, or cut at a record boundary) or a
                    # writer is committing: take the complete batches the tar holds after it.
                    self._complete_from_tar(state, parsed.stopped_early)
                return None
            if self._index_was_replaced(state):
                continue  # the files changed while we opened them (a compaction): look again
            if self._use_compaction_index(state):
                return None
            if self._index_was_replaced(state):
                continue  # a compaction renamed its index into place while we looked for it: look again
            lost = lost_values(state.table, state.tar_fd)
            if not lost:
                with MappedTar(state.tar_fd) as source:
                    kind = _identify(source)
                if kind.kind != "tar":
                    raise UnsupportedFormatError(
                        f"{state.tar_path!r} is {kind.description}, not the tar its index describes; nothing was "
                        "changed. Move it away, or delete the index to read it as a new namespace"
                    )
            self._diverge(state, why, lost)
            return None
        raise UnsupportedFormatError(  # pragma: no cover - needs a compaction every few microseconds
            f"the index of {state.tar_path!r} kept changing while being opened; retry"
        )

    @staticmethod
    def _index_was_replaced(state: NamespaceState) -> bool:
        """Whether the index on disk is no longer the one just read (a compaction renamed another over it)."""
        current = stat_or_none(state.index_path, f"look at the index of {state.tar_path!r}")
        return current is None or (current.st_ino, current.st_dev) != state.index_identity

    @_rebuilds
    def _read_index_tail(self, state: NamespaceState, size: int) -> None:
        """Apply the records other processes appended since our last look."""
        data = pread_exact(state.index_fd, size - state.consumed, state.consumed)  # type: ignore[arg-type]
        parsed = idx.apply_records(state.table, data, state.consumed)
        state.consumed = parsed.committed
        state.index_size = size
        if parsed.stopped_early and state.tar_fd is not None and not state.lost:
            self._complete_from_tar(state, True)
        elif not parsed.stopped_early and state.index_repair in _SCANNED and state.table.tar_end >= state.scanned_end:
            state.index_repair = ""  # what we took from the tar was a commit in progress: now in the index
            state.scanned_from = None

    def _complete_from_tar(self, state: NamespaceState, index_is_torn: bool) -> None:
        """Add the complete batches the tar holds after the index's last good record (in memory).

        The next writer rewrites the index, unless the index catches up by
        itself (a commit was in progress).
        """
        start = state.table.tar_end
        with MappedTar(state.tar_fd) as source:  # type: ignore[arg-type]
            found = scan(source, start, self.is_key)
        apply_batches(state.table, found.batches)
        if found.batches and state.scanned_from is None:
            state.scanned_from = start
        if found.batches:
            state.index_repair = _MISSING_BATCHES
            state.scanned_end = state.table.tar_end
        elif index_is_torn:
            state.index_repair = _TORN_INDEX
            state.scanned_end = state.table.tar_end

    def _use_compaction_index(self, state: NamespaceState) -> bool:
        """Whether a compaction stopped between its two renames: then its index describes the tar; use it.

        Only then: the compacted tar is in place (``run.tar.compact`` is gone,
        renamed), and it is exactly the tar the compaction index describes.
        A compaction stopped earlier leaves both files, which mean nothing.
        """
        if os.path.exists(state.tar_path + ".compact"):
            return False
        try:
            with open(state.compact_index_path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return False
        if not idx.is_index(data):
            return False
        table = idx.IndexTable()
        parsed = idx.apply_records(table, memoryview(data)[idx.FILE_HEADER.size:], idx.FILE_HEADER.size)
        tar_size = os.fstat(state.tar_fd).st_size  # type: ignore[arg-type]
        if parsed.stopped_early or parsed.committed != len(data) or tar_size != table.tar_end + 2 * BLOCK:
            return False
        if _index_describes_tar(table, state.tar_fd) or lost_values(table, state.tar_fd):  # type: ignore[arg-type]
            return False
        state.table = table
        state.index_repair = "a compaction was interrupted before renaming its index"
        return True

    @staticmethod
    def _diverge(state: NamespaceState, why: str, lost: dict[str, str]) -> None:
        state.diverged = why
        state.lost = lost

    # -------------------------------------------------------- the tar alone
    @_rebuilds
    def _from_tar_alone(self, state: NamespaceState, why: str) -> None:
        """State from the tar alone (no readable index): scanned in memory, decompressed if need be."""
        info = stat_or_none(state.tar_path, f"look at namespace {state.tar_path!r}")
        if info is None:
            if state.mode != "absent":
                state.close()
            return
        require_regular(state.tar_path, info.st_mode)
        identity = (info.st_ino, info.st_dev, info.st_size, info.st_mtime_ns)
        if state.mode == "scan" and state.tar_identity == identity:
            return
        state.close()
        state.tar_fd = os.open(state.tar_path, os.O_RDONLY | os.O_CLOEXEC)
        state.tar_identity = identity
        with MappedTar(state.tar_fd, info.st_size) as source:
            kind = _identify(source)
        if kind.kind == "compressed":
            if not kind.readable:
                raise UnsupportedFormatError(
                    f"{state.tar_path!r} is {kind.description}, which mummi_io cannot read; decompress it "
                    "first (nothing was changed)"
                )
            os.close(state.tar_fd)
            state.tar_fd = None
            state.tar_fd = decompress(state.tar_path, kind.compression)
            with MappedTar(state.tar_fd) as source:
                inner = _identify(source)
            if inner.kind != "tar":
                raise UnsupportedFormatError(
                    f"{state.tar_path!r} is {kind.description} holding {inner.description}, not a tar archive"
                )
            state.read_only = f"it is {kind.description} (a compressed tar)"
        elif kind.kind != "tar":
            raise UnsupportedFormatError(
                f"{state.tar_path!r} is {kind.description}, not a tar archive; a taridx namespace must be "
                "a plain tar file, and nothing was changed. To start a new namespace, name a file that "
                "does not exist yet (the namespace is the tar file itself)"
            )
        with MappedTar(state.tar_fd) as source:  # type: ignore[arg-type]
            found = scan(source, 0, self.is_key)
        apply_batches(state.table, found.batches)
        state.table.tar_end = found.end
        state.mode = "scan"
        state.index_repair = "" if state.read_only else why
        state.scan_notes = [f"damaged: {d} (skipped, left in place)" for d in found.damage]
        if found.tail is not None and not found.tail_is_torn:
            state.scan_notes.append(f"damaged: {found.tail}")
        if state.scan_notes:
            LOGGER.warning(
                "%s is read from the tar alone, which is damaged: %s. Values written in the damaged ranges "
                "are missing, and older versions of them may show; run mummi-io verify",
                state.tar_path, "; ".join(state.scan_notes),
            )


def _identify(source: MappedTar) -> Kind:
    def first_nonzero() -> bytes | None:
        end = last_nonzero_end(source, 0)
        if end == 0:
            return None
        position = 0
        while source.read(position, BLOCK) == ZERO_BLOCK:
            position += BLOCK
        return source.read(position, BLOCK)

    return identify(source.read(0, BLOCK), lambda: source.next_header(0) is not None, first_nonzero)


_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]


def require_regular(path: str, mode: int) -> None:
    """Refuse anything but a regular file (after symbolic links), before it is read."""
    if stat.S_ISREG(mode):
        return
    what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    advice = " (use the simple backend for a directory of files)" if stat.S_ISDIR(mode) else ""
    raise UnsupportedFormatError(f"{path!r} is {what}, not a tar file; nothing was read or written{advice}")


def _require_regular_path(path: str) -> None:
    info = stat_or_none(path, f"look at {path!r}")
    if info is not None:
        require_regular(path, info.st_mode)
