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

        Raises ``OSError`` when the file cannot be opened or locked (the
        lock is then not held).
        """
        deadline = time.monotonic() + timeout
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self.release()
                        return False
                    time.sleep(poll)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Let go of the lock; nothing happens when it is not held (an interrupted :meth:`acquire` included)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file lets go of its flock
