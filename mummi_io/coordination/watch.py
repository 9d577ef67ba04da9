"""Being told that a directory changed, without polling it: one inotify watcher per process.

A process may hold thousands of waiters (threads of a workflow manager), but
Linux allows only 128 inotify instances per user by default, so every waiter
of a process shares one instance and one reader thread. A waiter subscribes
to a directory and receives a :class:`threading.Event` that the reader sets
whenever an entry of the directory is created, renamed in or out, written or
removed; the waiter then re-checks what it waits for.

inotify only reports changes made through this machine's kernel. On a
network or parallel file system (NFS, Lustre, GPFS, ...) a file created by a
job on another node raises no event, so :func:`inotify_usable` says no for
those file systems and the waiters are served by the :class:`Poller`: one
thread per process that lists each watched directory with bounded backoff,
once for all the process's waiters of that directory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from typing import Any, Final, TypeVar

try:  # the inotify binding: Linux only (elsewhere every waiter is served by the Poller)
    import inotify_simple
    from inotify_simple import flags as _flags
except (ImportError, OSError):  # pragma: no cover - not Linux
    inotify_simple = None

LOGGER = logging.getLogger(__name__)

#: File systems whose changes all go through the local kernel (inotify sees every writer).
LOCAL_FILE_SYSTEMS: Final = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "f2fs", "zfs", "jfs", "reiserfs",
    "bcachefs", "hfsplus", "apfs", "vfat", "exfat", "ntfs3",
})

#: What a watched directory reports: entries created, renamed in or out, written, removed; the directory gone.
_MASK: Final = 0 if inotify_simple is None else (
    _flags.MODIFY | _flags.CLOSE_WRITE | _flags.MOVED_FROM | _flags.MOVED_TO | _flags.CREATE | _flags.DELETE
    | _flags.DELETE_SELF | _flags.MOVE_SELF | _flags.ONLYDIR
)
T = TypeVar("T")


def file_system_type(path: str) -> str | None:
    """The type of the file system holding ``path`` (``"ext4"``, ``"nfs4"``, ``"lustre"``...), from mountinfo."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            mounts = handle.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in mounts:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, line.split(" - ", 1)[1].split()[0]
    return best_type


def inotify_usable(path: str) -> bool:
    """Whether inotify sees every change of ``path``: Linux, inotify available, a local file system."""
    return inotify_simple is not None and file_system_type(path) in LOCAL_FILE_SYSTEMS


class Watcher:
    """The process's inotify instance and its reader thread (created on first use, again after a fork).

    The system calls are inotify_simple's; what is ours is the sharing: one
    instance per process, each watch shared by every waiter of its directory.
    """

    def __init__(self) -> None:
        if inotify_simple is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this platform")
        self._inotify: Any = inotify_simple.INotify()  # close-on-exec
        self._lock = threading.Lock()
        self._by_wd: dict[int, dict[threading.Event, frozenset[bytes] | None]] = {}
        self._thread = threading.Thread(target=self._read_events, name="mummi-io-inotify", daemon=True)
        self._thread.start()

    def subscribe(self, directory: str, names: frozenset[bytes] | None = None) -> tuple[int, threading.Event]:
        """Watch ``directory``; the returned event is set on every change of it.

        With ``names``, only changes of entries with those names set it (and
        events that say nothing precise: a queue overflow, the directory gone).

        Raises
        ------
        OSError
            If the directory cannot be watched (gone, not a directory, the watch limit reached).
        """
        event = threading.Event()
        with self._lock:
            wd = self._inotify.add_watch(os.fsencode(directory), _MASK)
            self._by_wd.setdefault(wd, {})[event] = names
        return wd, event

    def unsubscribe(self, wd: int, event: threading.Event) -> None:
        """Stop telling ``event``; the watch goes when its last subscriber does."""
        with self._lock:
            subscribers = self._by_wd.get(wd)
            if subscribers is None:
                return
            subscribers.pop(event, None)
            if not subscribers:
                del self._by_wd[wd]
                with contextlib.suppress(OSError):  # the kernel dropped it already (the directory went away)
                    self._inotify.rm_watch(wd)

    def _read_events(self) -> None:
        while True:
            try:
                events = self._inotify.read()
            except InterruptedError:
                continue
            except OSError:
                LOGGER.exception("the inotify reader stopped; waiters fall back to polling at their next check")
                return
            changed: dict[int, set[bytes] | None] = {}  # None: anything may have changed
            with self._lock:
                for wd, mask, _cookie, name in events:
                    if mask & _flags.Q_OVERFLOW:  # events were lost: everyone re-checks
                        changed = dict.fromkeys(self._by_wd)
                    elif mask & _flags.IGNORED:  # the directory went away: the kernel dropped the watch
                        for event in self._by_wd.pop(wd, {}):
                            event.set()
                    elif wd in self._by_wd:
                        names = changed.setdefault(wd, set())
                        if names is not None:
                            if name:
                                names.add(os.fsencode(name))
                            else:
                                changed[wd] = None
                for wd, names in changed.items():
                    for event, wanted in self._by_wd.get(wd, {}).items():
                        if wanted is None or names is None or not wanted.isdisjoint(names):
                            event.set()

    def watching(self, wd: int) -> bool:
        """Whether the watch ``wd`` still exists (its directory was not removed or moved away)."""
        with self._lock:
            return wd in self._by_wd


_PER_PROCESS: dict[type, tuple[int, object]] = {}
_PER_PROCESS_LOCK = threading.Lock()


def _of_this_process(kind: type[T]) -> T:
    """The one ``kind()`` of this process (a forked child makes its own: threads do not survive a fork)."""
    pid = os.getpid()
    with _PER_PROCESS_LOCK:
        owner, current = _PER_PROCESS.get(kind, (None, None))
        if owner != pid:
            current = kind()
            _PER_PROCESS[kind] = (pid, current)
        return current  # type: ignore[return-value]


def watcher() -> Watcher:
    """This process's inotify watcher."""
    return _of_this_process(Watcher)


class _PollSubscriber:
    """One waiter of the shared poller: its event, the names it waits for, its own backoff."""

    def __init__(self, names: frozenset[str] | None, initial: float, maximum: float) -> None:
        self.event = threading.Event()
        self.names = names
        self.interval = initial
        self.maximum = maximum
        self.due = 0.0  # scan at once: the waiter's first check may have raced a change
        self.seen: frozenset[str] | None = None


class Poller:
    """One polling thread per process for every waiter that cannot use inotify.

    Each scan of a directory is one listing, however many waiters of the
    process watch it, and serves all of them: 1,000 waiting threads cost one
    ``getdents`` per interval instead of 1,000 ``stat`` calls. Each waiter has
    its own backoff (``initial`` doubling up to ``maximum`` seconds); a
    directory is listed when the earliest of its waiters is due.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._directories: dict[str, dict[_PollSubscriber, None]] = {}
        self._thread = threading.Thread(target=self._run, name="mummi-io-poller", daemon=True)
        self._thread.start()

    def subscribe(self, directory: str, names: frozenset[str] | None, initial: float, maximum: float
                  ) -> _PollSubscriber:
        """Start polling for ``directory``; the subscriber's event is set when its names appear (any change if None)."""
        subscriber = _PollSubscriber(names, initial, maximum)
        subscriber.due = time.monotonic() + initial
        with self._condition:
            self._directories.setdefault(directory, {})[subscriber] = None
            self._condition.notify()
        return subscriber

    def unsubscribe(self, directory: str, subscriber: _PollSubscriber) -> None:
        with self._condition:
            subscribers = self._directories.get(directory)
            if subscribers is not None:
                subscribers.pop(subscriber, None)
                if not subscribers:
                    del self._directories[directory]

    def _run(self) -> None:
        while True:
            with self._condition:
                now = time.monotonic()
                due = [d for d, subs in self._directories.items() if min(s.due for s in subs) <= now]
                if not due:
                    soonest = min((s.due for subs in self._directories.values() for s in subs), default=None)
                    self._condition.wait(None if soonest is None else max(soonest - now, 0.0))
                    continue
            for directory in due:
                self._scan(directory)

    def _scan(self, directory: str) -> None:
        try:
            with os.scandir(directory) as listing:
                names = frozenset(entry.name for entry in listing)
        except OSError:  # not there (yet): nothing any waiter is waiting for
            names = frozenset()
        now = time.monotonic()
        with self._condition:
            for subscriber in self._directories.get(directory, {}):
                if subscriber.names is None:
                    changed = subscriber.seen is None or names != subscriber.seen
                    subscriber.seen = names
                else:
                    changed = not subscriber.names.isdisjoint(names)
                if changed:
                    subscriber.event.set()
                subscriber.due = now + subscriber.interval
                subscriber.interval = min(subscriber.interval * 2, subscriber.maximum)


def poller() -> Poller:
    """This process's poller."""
    return _of_this_process(Poller)
