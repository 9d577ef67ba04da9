"""What users call: waits for signals, work queues with leases, counters and barriers.

Written once over any :class:`~mummi_io.core.coordinator.Coordinator`: every
wait subscribes first, then checks, then sleeps on the coordinator's notice
(server-side blocking on Redis, inotify or bounded backoff on files) and
checks again, so a change between the check and the sleep is never missed.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from ..core.coordinator import Claim, Coordinator
from ..core.errors import InvalidArgumentError, LeaseLostError, SignalTimeoutError, WaitTimeoutError
from ..core.keys import as_name_list, validate_name

LOGGER = logging.getLogger(__name__)

T = TypeVar("T")
MODES = ("all", "any")


class Deadline:
    """Seconds left until a timeout (``None``: wait forever)."""

    def __init__(self, timeout: float | None) -> None:
        if timeout is not None and (not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0):
            raise InvalidArgumentError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float:
        return math.inf if self._end is None else max(0.0, self._end - time.monotonic())


def wait_until(
    coordinator: Coordinator,
    place: str,
    topic: str,
    check: Callable[[], tuple[T | None, float | None]],
    deadline: Deadline,
    keys: Sequence[str] | None = None,
) -> T | None:
    """Re-run ``check`` whenever ``topic`` may have changed until it returns a result or time is up.

    ``check`` returns ``(result, None)`` when done, else ``(None, seconds
    after which it wants to run again even without a change, or None)``.
    Returns ``None`` when the deadline passes.
    """
    result, _ = check()  # the common case, already there (or timeout=0), needs no subscription
    if result is not None or deadline.remaining() <= 0:
        return result
    with coordinator.notices(place, topic, keys) as notice:
        while True:
            result, recheck_after = check()
            if result is not None:
                return result
            remaining = deadline.remaining()
            if remaining <= 0:
                return None
            pause = remaining if recheck_after is None else min(remaining, max(recheck_after, 0.001))
            notice.wait(min(pause, 3600.0))


def wait_signals(
    coordinator: Coordinator, place: str, keys: str | Iterable[str], timeout: float | None = None, mode: str = "all"
) -> list[str]:
    """Block until all (``mode="all"``) or any (``mode="any"``) of the signals ``keys`` are raised.

    Returns the keys found raised when the wait ended, in the order given.

    Raises
    ------
    SignalTimeoutError
        After ``timeout`` seconds, naming the signals still missing.
    """
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {MODES}, not {mode!r}")
    names, _ = as_name_list(keys if isinstance(keys, str) else list(keys), "signal")
    deadline = Deadline(timeout)
    if not names:
        return []
    missing: list[str] = names

    def check() -> tuple[list[str] | None, None]:
        nonlocal missing
        raised = coordinator.present(place, names)
        arrived = [key for key, up in zip(names, raised) if up]
        missing = [key for key, up in zip(names, raised) if not up]
        done = not missing if mode == "all" else bool(arrived)
        return (arrived if done else None), None

    arrived = wait_until(coordinator, place, "signals", check, deadline, names)
    if arrived is None:
        shown = ", ".join(repr(k) for k in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        needed = "any of" if mode == "any" else "all of"
        raise SignalTimeoutError(
            f"waited {timeout} s for {needed} {len(names)} signal(s) at {place!r} ({coordinator.where}); "
            f"still missing: {shown}. Check that the jobs that send them are running, or wait longer",
            missing,
        )
    LOGGER.debug("signals arrived at %s: %d of %d", place, len(arrived), len(names))
    return arrived


class Lease:
    """An item taken from a :class:`WorkQueue`: finish it with :meth:`ack`, or give it back.

    Used as a context manager it acks when the block ends normally and
    releases the item (back to the front of the queue) when the block raises.
    If the holder dies, the lease expires and the item goes to another
    consumer, so an item may be *processed* more than once but is *acked*
    exactly once: a late :meth:`ack` raises :class:`LeaseLostError`.
    """

    def __init__(self, queue: WorkQueue, claim: Claim) -> None:
        self.queue = queue
        self._claim = claim
        self.done = False

    @property
    def item(self) -> str:
        """The item the producer put."""
        return self._claim.item

    def __repr__(self) -> str:
        return f"<Lease {self.item!r} of queue {self.queue.name!r}>"

    def _finish(self, action: Callable[[str, str, Claim], bool], what: str) -> None:
        if self.done:
            raise InvalidArgumentError(f"{self!r} was already acked or released")
        if not action(self.queue.place, self.queue.name, self._claim):
            self.done = True
            raise LeaseLostError(
                f"cannot {what} {self.item!r}: its lease on queue {self.queue.name!r} expired and the item went "
                "back to the queue; use a longer lease, or call extend() while working on the item"
            )
        self.done = True

    def ack(self) -> None:
        """Remove the item for good (the work is done)."""
        self._finish(self.queue.coordinator.ack, "ack")

    def release(self) -> None:
        """Give the item back (front of the queue) for another consumer now."""
        self._finish(self.queue.coordinator.release, "release")

    def extend(self) -> None:
        """Restart the lease clock (the queue's ``lease`` seconds from now), for long work."""
        if self.done or not self.queue.coordinator.extend(self.queue.place, self.queue.name, self._claim,
                                                          self.queue.lease):
            self.done = True
            raise LeaseLostError(f"the lease on {self.item!r} expired before it was extended")

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.done:
            return
        if exc_type is None:
            self.ack()
        else:
            self.release()


def _positive(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


class WorkQueue:
    """A consume-once queue of items shared by producers and consumers in any process.

    Every item put is handed to exactly one consumer at a time, under a lease
    of ``lease`` seconds; an item whose consumer dies returns to the queue
    when its lease expires. Get one with ``io.queue(place, name)``.
    """

    def __init__(self, coordinator: Coordinator, place: str, name: str, lease: float = 60.0) -> None:
        self.coordinator = coordinator
        self.place = place
        self.name = validate_name(name)
        self.lease = _positive(lease, "lease")

    def __repr__(self) -> str:
        return f"<WorkQueue {self.name!r} at {self.place!r} ({self.coordinator.where})>"

    def put(self, items: str | Iterable[str]) -> None:
        """Append one item or several (strings, e.g. keys of work to do)."""
        batch = [items] if isinstance(items, (str, bytes, bytearray)) else list(items)
        for item in batch:
            if not isinstance(item, str):
                raise InvalidArgumentError(
                    f"queue items are str (text such as the key of the work to do), not {type(item).__name__}"
                    + ("; decode bytes first" if isinstance(item, (bytes, bytearray)) else "")
                )
        if batch:
            self.coordinator.put(self.place, self.name, batch)

    def get(self, timeout: float | None = None) -> Lease | None:
        """Take the next item, waiting up to ``timeout`` seconds (``None``: forever, ``0``: do not wait).

        Returns a :class:`Lease`, or ``None`` if nothing came in time.
        """
        deadline = Deadline(timeout)
        claim = wait_until(self.coordinator, self.place, "queue:" + self.name,
                           lambda: self.coordinator.claim(self.place, self.name, self.lease), deadline)
        return None if claim is None else Lease(self, claim)

    def sizes(self) -> tuple[int, int]:
        """``(pending, leased)``: items waiting, items held by consumers."""
        return self.coordinator.queue_sizes(self.place, self.name)

    def __len__(self) -> int:
        pending, leased = self.sizes()
        return pending + leased

    def delete(self) -> None:
        """Remove the queue and every item in it."""
        self.coordinator.delete(self.place, "queue:" + self.name)


class Counter:
    """A shared integer that any job can add to and wait on (``io.counter(place, name)``)."""

    def __init__(self, coordinator: Coordinator, place: str, name: str) -> None:
        self.coordinator = coordinator
        self.place = place
        self.name = validate_name(name)

    def add(self, amount: int = 1) -> int:
        """Add ``amount`` and return the value afterwards."""
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise InvalidArgumentError(f"amount must be an int, not {amount!r}")
        return self.coordinator.add(self.place, self.name, amount)

    def value(self) -> int:
        """The current value."""
        return self.coordinator.value(self.place, self.name)

    def wait_for(self, target: int, timeout: float | None = None) -> int:
        """Block until the value is at least ``target``; return it.

        Raises :class:`WaitTimeoutError` after ``timeout`` seconds.
        """
        deadline = Deadline(timeout)
        reached = wait_until(self.coordinator, self.place, "counter:" + self.name,
                             lambda: (self._at_least(target), None), deadline)
        if reached is None:
            raise WaitTimeoutError(
                f"counter {self.name!r} at {self.place!r} is {self.value()} after {timeout} s, waiting for {target}"
            )
        return reached

    def _at_least(self, target: int) -> int | None:
        current = self.value()
        return current if current >= target else None

    def delete(self) -> None:
        """Remove the counter (its value becomes 0)."""
        self.coordinator.delete(self.place, "counter:" + self.name)


def default_member() -> str:
    """A barrier member name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class Barrier:
    """N jobs wait until all N have arrived (``io.barrier(place, name, parties)``).

    Arrivals are named, so a job that is restarted and arrives again is
    counted once. A barrier is used once: name each phase (``"step-3"``).
    """

    def __init__(self, coordinator: Coordinator, place: str, name: str, parties: int) -> None:
        if not isinstance(parties, int) or isinstance(parties, bool) or parties < 1:
            raise InvalidArgumentError(f"parties must be a positive int, not {parties!r}")
        self.coordinator = coordinator
        self.place = place
        self.name = validate_name(name)
        self.parties = parties

    def arrive(self, member: str | None = None) -> int:
        """Record this job's arrival without waiting; return how many arrived."""
        return self.coordinator.arrive(self.place, self.name, validate_name(member or default_member(), "barrier member"))

    def arrived(self) -> int:
        """How many distinct members arrived so far."""
        return self.coordinator.arrived(self.place, self.name)

    def wait(self, member: str | None = None, timeout: float | None = None) -> int:
        """Arrive as ``member`` and block until ``parties`` members arrived; return the count.

        Raises :class:`WaitTimeoutError` after ``timeout`` seconds, saying how
        many of the parties are still missing.
        """
        deadline = Deadline(timeout)
        self.arrive(member)
        reached = wait_until(self.coordinator, self.place, "barrier:" + self.name, self._complete, deadline)
        if reached is None:
            count = self.arrived()
            raise WaitTimeoutError(
                f"barrier {self.name!r} at {self.place!r}: {count} of {self.parties} arrived within {timeout} s; "
                f"{self.parties - count} still missing"
            )
        return reached

    def _complete(self) -> tuple[int | None, None]:
        count = self.arrived()
        return (count if count >= self.parties else None), None

    def delete(self) -> None:
        """Remove the barrier's arrivals."""
        self.coordinator.delete(self.place, "barrier:" + self.name)

