"""The coordination contract: signals, work queues and counters as a few primitives.

A :class:`Coordinator` is where jobs of a campaign meet: files in a directory
(:class:`~mummi_io.coordination.files.FileCoordinator`, for every backend) or
keys of a Redis deployment (the ``redis`` backend's coordinator). It
implements non-blocking primitives plus :meth:`Coordinator.notices`, a way to
sleep until something *may* have changed. Everything that waits (the
timeouts, the re-checks, the errors naming what is missing, leases and
barriers) is written once, in :mod:`mummi_io.coordination.api`, on top.

``place`` is the seed's ``path`` argument: a directory for files, a name for
Redis. ``topic`` says what a waiter watches: ``"signals"`` of a place, or the
queue, counter or barrier of that name (``"queue:<name>"``, ``"counter:<name>"``,
``"barrier:<name>"``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass


class Notice(ABC):
    """A subscription to one topic: sleep until it may have changed."""

    @abstractmethod
    def wait(self, seconds: float) -> None:
        """Return after at most ``seconds``, earlier when the topic may have changed.

        Spurious returns are allowed (the caller re-checks); missing a change is
        not: a change made after the subscription started must end the wait.
        """


@dataclass(frozen=True)
class Claim:
    """An item taken from a work queue under a lease: its id, the lease token, the item."""

    item_id: str
    token: str
    item: str


class Coordinator(ABC):
    """Non-blocking coordination primitives of one storage (see the module docstring)."""

    #: Short description for messages ("files", "redis localhost:6379").
    where: str = "coordinator"

    # ------------------------------------------------------------- signals
    @abstractmethod
    def send(self, place: str, keys: Sequence[str]) -> None:
        """Raise the signals ``keys`` of ``place`` (idempotent) and wake their waiters."""

    @abstractmethod
    def present(self, place: str, keys: Sequence[str]) -> list[bool]:
        """Whether each signal is raised."""

    @abstractmethod
    def clear(self, place: str, keys: Sequence[str]) -> None:
        """Lower the signals (a signal that is not raised is skipped)."""

    # -------------------------------------------------------------- queues
    @abstractmethod
    def put(self, place: str, queue: str, items: Sequence[str]) -> None:
        """Append ``items`` to the work queue and wake its consumers."""

    @abstractmethod
    def claim(self, place: str, queue: str, lease: float) -> tuple[Claim | None, float | None]:
        """Take the next item under a lease of ``lease`` seconds.

        Leases that expired are first returned to the front of the queue.
        Returns ``(claim, None)``, or ``(None, seconds until the next lease
        expires or None)`` when nothing is pending.
        """

    @abstractmethod
    def ack(self, place: str, queue: str, claim: Claim) -> bool:
        """Finish the item for good; ``False`` if the lease was lost (expired and given to another)."""

    @abstractmethod
    def release(self, place: str, queue: str, claim: Claim) -> bool:
        """Put the item back at the front of the queue now; ``False`` if the lease was lost."""

    @abstractmethod
    def extend(self, place: str, queue: str, claim: Claim, lease: float) -> bool:
        """Restart the lease's clock (``lease`` seconds from now); ``False`` if it was lost."""

    @abstractmethod
    def queue_sizes(self, place: str, queue: str) -> tuple[int, int]:
        """``(pending, leased)`` item counts."""

    # ------------------------------------------------- counters and barriers
    @abstractmethod
    def add(self, place: str, counter: str, amount: int) -> int:
        """Add ``amount`` to the counter and return its value afterwards."""

    @abstractmethod
    def value(self, place: str, counter: str) -> int:
        """The counter's value (0 if it was never added to)."""

    @abstractmethod
    def arrive(self, place: str, barrier: str, member: str) -> int:
        """Record ``member`` at the barrier (idempotent) and return how many members arrived."""

    @abstractmethod
    def arrived(self, place: str, barrier: str) -> int:
        """How many distinct members arrived at the barrier."""

    @abstractmethod
    def delete(self, place: str, topic: str) -> None:
        """Remove a queue, counter or barrier (``topic`` as in the module docstring)."""

    # -------------------------------------------------------------- waiting
    @abstractmethod
    def notices(self, place: str, topic: str, keys: Sequence[str] | None = None) -> AbstractContextManager[Notice]:
        """Subscribe to changes of ``topic`` at ``place`` for the duration of a ``with`` block.

        ``keys`` (signals only): the waiter cares about these signals alone, so
        a coordinator that can tell which signal changed need not wake it for
        others (a manager waiting for one of a thousand jobs is not woken by
        the other 999).
        """

    def close(self) -> None:
        """Release connections (the coordinator reopens them lazily)."""
