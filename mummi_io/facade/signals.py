"""Signal files: how MuMMI jobs tell each other that something is done.

A signal is a file ``path/key`` holding one character, created atomically so
a waiter never sees a half-made signal. These module functions always use
files, whatever the backend (the seed's meaning); ``io.send_signal`` and
friends use the coordination chosen in ``get_io`` (see
:mod:`mummi_io.coordination`). ``wait_signal`` is woken by inotify on a local
file system and polls with exponential backoff (10 ms doubling up to
``max_interval``) elsewhere, so thousands of waiters do not flood a parallel
file system with ``stat`` calls.
"""

from __future__ import annotations

from ..coordination.api import wait_signals
from ..coordination.files import FileCoordinator
from ..core.keys import validate_namespace

_FILES = FileCoordinator()


def send_signal(path: str, key: str) -> None:
    """Create the signal file ``path/key`` atomically (creating ``path`` if needed).

    Raises
    ------
    InvalidKeyError
        If ``key`` is not a flat file name.
    StorageError
        If the file cannot be created.
    """
    _FILES.send(path, [key])  # the coordinator checks the path and the key


def test_signal(path: str, key: str) -> bool:
    """Return whether the signal file ``path/key`` exists.

    An empty ``key`` answers ``False``, as in MuMMI (a job without a signal).
    """
    if key == "":
        return False
    return _FILES.present(path, [key])[0]


def clear_signal(path: str, key: str) -> None:
    """Remove the signal ``path/key``; a signal that is not there is a no-op."""
    _FILES.clear(path, [key])


def wait_signal(
    path: str,
    key: str,
    timeout: float | None = None,
    *,
    initial_interval: float = 0.01,
    max_interval: float = 1.0,
) -> bool:
    """Block until the signal ``path/key`` exists, then return ``True``.

    Where inotify cannot see every writer (network and parallel file
    systems), polls with backoff from ``initial_interval`` up to
    ``max_interval`` seconds. ``timeout=None`` waits forever.

    Raises
    ------
    SignalTimeoutError
        If the signal has not appeared after ``timeout`` seconds.
    """
    coordinator = FileCoordinator(initial_interval=initial_interval, max_interval=max_interval)
    wait_signals(coordinator, validate_namespace(path), [key], timeout)
    return True


# A library function named test_*: tell pytest it is not a test when a test
# module imports it.
test_signal.__test__ = False  # type: ignore[attr-defined]
