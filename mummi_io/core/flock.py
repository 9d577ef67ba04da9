"""An exclusive lock on a file, shared between processes, that an interrupted call never leaves held.

Why not ``filelock`` here: it records what it holds in Python objects (a
thread lock, a counter, a descriptor) around the system calls, and an
exception raised by a signal handler (Ctrl-C) between a call and its record
leaves the lock held with nothing to let go of it. A timer signal raising in
1,500 taridx saves left another thread of the process waiting forever inside
filelock 4.3. Here the only record is the descriptor, stored before the lock
is asked for, and letting go closes it: an interrupted acquire is always
undone by :meth:`ExclusiveFileLock.release`.
"""

from __future__ import annotations

import fcntl
import os
import time

#: The locks of this process that hold (or are taking) their file, by id: a child process closes its
#: copies of their descriptors at once, since a flock belongs to the open file, which the child shares.
_HELD: dict[int, ExclusiveFileLock] = {}


def _forget_held_in_child() -> None:
    for lock in list(_HELD.values()):
        fd, lock.fd = lock.fd, None
        if fd is not None:
            os.close(fd)  # the parent's descriptor still holds the lock: the parent lets go when it is done
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_held_in_child)


class ExclusiveFileLock:
    """``flock(LOCK_EX)`` on ``path``, taken by :meth:`acquire` and given back by :meth:`release`.

    One holder at a time across processes (and across lock objects of one
    process: each opens the file afresh). Not re-entrant: the caller knows
    whether it holds it.
    """

    __slots__ = ("path", "fd")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None  # open while held (or while being taken)

    @property
    def is_locked(self) -> bool:
        """Whether this object holds the lock (or is taking it)."""
        return self.fd is not None

    def acquire(self, timeout: float, poll: float) -> bool:
        """Take the lock, asking every ``poll`` seconds; ``False`` if another holder kept it ``timeout`` seconds.

        The lock taken is the file now at ``path``: if the file was removed
        or replaced while this process waited for it (by hand, or a cleanup
        script), the new one is locked instead, so that two writers never
        hold two different files. Raises ``OSError`` when the file cannot be
        opened or locked (the lock is then not held).
        """
        deadline = time.monotonic() + timeout
        _HELD[id(self)] = self
        try:
            while True:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
                while True:
                    try:
                        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            self.release()
                            return False
                        time.sleep(poll)
                if self._still_the_file():
                    return True
                self.release()
                _HELD[id(self)] = self
        except BaseException:
            self.release()
            raise

    def _still_the_file(self) -> bool:
        """Whether the file locked is the one at ``path`` (not removed or replaced meanwhile)."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False
        locked = os.fstat(self.fd)  # type: ignore[arg-type]
        return (current.st_ino, current.st_dev) == (locked.st_ino, locked.st_dev)

    def release(self) -> None:
        """Let go of the lock; nothing happens when it is not held (an interrupted :meth:`acquire` included)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file lets go of its flock
        _HELD.pop(id(self), None)
