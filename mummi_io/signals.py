"""Signal files: how MuMMI jobs tell each other that something is done.

A signal is a file ``path/key`` holding one character. It is created
atomically, so a poller never sees a half-made signal. ``wait_signal`` polls
with exponential backoff (starting at 10 ms, capped at ``max_interval``) so
thousands of waiters do not flood a parallel file system with ``stat`` calls.
"""

from __future__ import annotations

import logging
import os
import time

from ._fs import atomic_write, storage_errors
from .errors import SignalTimeoutError
from .keys import validate_key, validate_namespace

LOGGER = logging.getLogger(__name__)


def _signal_path(path: str, key: str) -> str:
    return os.path.join(validate_namespace(path), validate_key(key))


def send_signal(path: str, key: str) -> None:
    """Create the signal file ``path/key`` atomically (creating ``path`` if needed).

    Raises
    ------
    InvalidKeyError
        If ``key`` is not a flat file name.
    StorageError
        If the file cannot be created.
    """
    target = _signal_path(path, key)
    with storage_errors(f"send signal {target!r}"):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        atomic_write(target, b"1")
    LOGGER.info("sent signal %s", target)


def test_signal(path: str, key: str) -> bool:
    """Return whether the signal file ``path/key`` exists.

    An empty ``key`` answers ``False``, as in MuMMI (a job without a signal).
    """
    if key == "":
        return False
    return os.path.isfile(_signal_path(path, key))


def clear_signal(path: str, key: str) -> None:
    """Remove the signal ``path/key``; a signal that is not there is a no-op."""
    target = _signal_path(path, key)
    try:
        os.unlink(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        with storage_errors(f"clear signal {target!r}"):
            raise exc
    LOGGER.debug("cleared signal %s", target)


def wait_signal(
    path: str,
    key: str,
    timeout: float | None = None,
    *,
    initial_interval: float = 0.01,
    max_interval: float = 1.0,
) -> bool:
    """Block until the signal ``path/key`` exists, then return ``True``.

    Polls with exponential backoff from ``initial_interval`` up to
    ``max_interval`` seconds between checks. ``timeout=None`` waits forever.

    Raises
    ------
    SignalTimeoutError
        If the signal has not appeared after ``timeout`` seconds.
    """
    target = _signal_path(path, key)
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = initial_interval
    while not os.path.isfile(target):
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise SignalTimeoutError(
                f"signal {target!r} did not arrive within {timeout} s; check that the job "
                "that sends it is running, or wait longer"
            )
        pause = interval if deadline is None else min(interval, deadline - now)
        time.sleep(pause)
        interval = min(interval * 2, max_interval)
    return True


# A library function named test_*: tell pytest it is not a test when a test
# module imports it.
test_signal.__test__ = False  # type: ignore[attr-defined]
