"""Coordination through files in a directory (the seed's signal files, plus queues and counters).

Layout under a place (a directory)::

    <place>/<key>                                  a raised signal (one byte, created atomically)
    <place>/.mummi_io.queue.<name>/pending/<id>    an item waiting (content: the item)
    <place>/.mummi_io.queue.<name>/leased/<id>~<token>~<lease ms>
    <place>/.mummi_io.counter.<name>/<sequence>      an add's claim (content: the amount)
    <place>/.mummi_io.counter.<name>/<sequence>~<amount>   the same add, readable from its name
    <place>/.mummi_io.barrier.<name>/<member>

Every change is a single atomic file-system operation, so no lock is needed
and a killed job leaves nothing half-done: an item is claimed by renaming it
from ``pending`` to ``leased`` (only one consumer's rename can succeed), acked
by unlinking the leased file, and released or reaped by renaming it back. The
lease clock is the leased file's ctime, which the claiming rename sets and
``extend`` refreshes; an expired lease is returned by the next consumer that
looks for work. (Lease expiry compares that ctime with this host's clock:
keep leases much longer than the clock skew between nodes.)

A counter add takes the next free sequence number by hard-linking its
(complete) amount file there: ``link`` fails if the name exists, so every add
gets its own number, with no gaps, and ``add`` returns the sum up to its own
number, exactly the value right after it, as Redis's INCRBY does (of N
concurrent ``add(1)``, exactly one sees 1). A second link names the amount, so
readers sum names and open a file only for an add caught between its two links.

Waiting uses inotify on a local file system (no polling at all) and, elsewhere,
one polling thread per process that lists each watched directory with bounded
exponential backoff for all the process's waiters at once (see :mod:`.watch`),
so a thousand waiters do not turn into a storm of ``stat`` calls on a parallel
file system.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from ..core.coordinator import Claim, Coordinator, Notice
from ..core.errors import InvalidArgumentError
from ..core.fs import TEMP_PREFIX, atomic_write, storage_errors
from ..core.keys import RESERVED_PREFIX, as_name_list, validate_name, validate_namespace
from . import watch

LOGGER = logging.getLogger(__name__)

WATCH_MODES = ("auto", "inotify", "poll")
#: Above this many missing signals a check lists the directory once instead of one stat per signal.
_LIST_ABOVE = 16


def _entries(directory: str) -> list[str]:
    """Names in ``directory``, without temporary files (an absent directory is empty)."""
    try:
        with os.scandir(directory) as listing:
            return [entry.name for entry in listing if not entry.name.startswith(TEMP_PREFIX)]
    except FileNotFoundError:
        return []


#: Digits of a counter add's sequence number (zero-padded, so names sort by it).
_SEQUENCE_DIGITS = 20


def _counter_entries(directory: str) -> tuple[set[int], dict[int, int], int]:
    """A counter's adds: the claimed sequence numbers, the amounts named so far, and the total of the adds
    written before sequence numbers (``<random>~<amount>``, counted always)."""
    claimed: set[int] = set()
    named: dict[int, int] = {}
    older = 0
    for name in _entries(directory):
        number, tilde, amount = name.partition("~")
        if len(number) != _SEQUENCE_DIGITS or not number.isdigit():
            older += int(amount) if tilde else 0
        elif tilde:
            named[int(number)] = int(amount)
        else:
            claimed.add(int(number))
    return claimed, named, older


def _counter_sum(directory: str, through: int | None) -> int:
    """The amounts of a counter's adds numbered up to ``through`` (all when ``None``)."""
    claimed, named, total = _counter_entries(directory)
    for number in claimed | set(named):
        if through is not None and number > through:
            continue
        if number in named:
            total += named[number]
            continue
        try:  # an add between its two links: its amount is in the claim file
            with open(os.path.join(directory, f"{number:0{_SEQUENCE_DIGITS}d}"), "rb") as handle:
                total += int(handle.read())
        except FileNotFoundError:  # the counter was deleted meanwhile
            continue
    return total


class _PollNotice(Notice):
    """Sleeps with exponential backoff: ``initial`` doubling up to ``maximum`` seconds (a waiter on its own)."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.interval = initial
        self.maximum = maximum

    def wait(self, seconds: float) -> None:
        time.sleep(min(seconds, self.interval))
        self.interval = min(self.interval * 2, self.maximum)


class _EventNotice(Notice):
    """Sleeps until the process's inotify reader or poller sets the event for this waiter."""

    def __init__(self, event: threading.Event, alive: Callable[[], bool] | None = None,
                 fallback: _PollNotice | None = None) -> None:
        self.event = event
        self.alive = alive
        self.fallback = fallback

    def wait(self, seconds: float) -> None:
        if self.alive is not None and self.fallback is not None and not self.alive():
            self.fallback.wait(seconds)  # the watched directory was removed: poll it instead
            return
        self.event.wait(seconds)
        self.event.clear()


class FileCoordinator(Coordinator):
    """Signals, queues, counters and barriers as files (see the module docstring).

    Parameters
    ----------
    watch:
        ``"auto"`` (inotify on a local file system, polling elsewhere),
        ``"inotify"`` (always, even where it may miss other nodes' writes) or
        ``"poll"`` (never).
    initial_interval, max_interval:
        The polling backoff, in seconds: the first pause and the cap. Once
        backed off, a process lists each directory its waiters watch at most
        ``1/max_interval`` times a second, however many waiters it has.
    """

    where = "files"

    def __init__(self, watch: str = "auto", initial_interval: float = 0.01, max_interval: float = 1.0) -> None:
        if watch not in WATCH_MODES:
            raise InvalidArgumentError(f"watch must be one of {WATCH_MODES}, not {watch!r}")
        if not 0 < initial_interval <= max_interval:
            raise InvalidArgumentError("need 0 < initial_interval <= max_interval (seconds)")
        self.watch = watch
        self.initial_interval = initial_interval
        self.max_interval = max_interval
        self._usable: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"FileCoordinator(watch={self.watch!r}, max_interval={self.max_interval})"

    # ------------------------------------------------------------- paths
    @staticmethod
    def _place(place: str) -> str:
        return validate_namespace(place)

    def _directory(self, place: str, topic: str) -> str:
        base = self._place(place)
        if topic == "signals":
            return base
        kind, _, name = topic.partition(":")
        if kind not in ("queue", "counter", "barrier") or not name:
            raise InvalidArgumentError(f"unknown coordination topic {topic!r}")
        directory = os.path.join(base, f"{RESERVED_PREFIX}.{kind}.{validate_name(name)}")
        return os.path.join(directory, "pending") if kind == "queue" else directory

    def _queue(self, place: str, queue: str) -> tuple[str, str]:
        pending = self._directory(place, "queue:" + queue)
        return pending, os.path.join(os.path.dirname(pending), "leased")

    # ------------------------------------------------------------- signals
    def send(self, place: str, keys: Sequence[str]) -> None:
        directory = self._place(place)
        keys, _ = as_name_list(keys, "signal")  # the facade checked already; direct callers are checked here
        with storage_errors(f"send signals in {directory!r}"):
            os.makedirs(directory, exist_ok=True)
            for key in keys:
                atomic_write(os.path.join(directory, key), b"1")
        LOGGER.info("sent %d signal(s) in %s", len(keys), directory)

    def present(self, place: str, keys: Sequence[str]) -> list[bool]:
        directory = self._place(place)
        keys, _ = as_name_list(keys, "signal")
        if len(keys) > _LIST_ABOVE:
            names = set(_entries(directory))
            return [key in names for key in keys]
        return [os.path.isfile(os.path.join(directory, key)) for key in keys]

    def clear(self, place: str, keys: Sequence[str]) -> None:
        directory = self._place(place)
        keys, _ = as_name_list(keys, "signal")
        for key in keys:
            with storage_errors(f"clear signal {key!r} in {directory!r}"), contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, key))

    # -------------------------------------------------------------- queues
    def put(self, place: str, queue: str, items: Sequence[str]) -> None:
        pending, _ = self._queue(place, queue)
        with storage_errors(f"put into queue {queue!r} at {place!r}"):
            os.makedirs(pending, exist_ok=True)
            for item in items:
                item_id = f"{time.time_ns():020d}.{secrets.token_hex(6)}"
                atomic_write(os.path.join(pending, item_id), item.encode("utf-8"))

    def _reap(self, pending: str, leased: str) -> float | None:
        """Return expired leases to ``pending``; return seconds until the next lease expires."""
        now = time.time()
        soonest: float | None = None
        for name in _entries(leased):
            item_id, _, rest = name.partition("~")
            try:
                lease_ms = int(rest.rpartition("~")[2])
                changed = os.stat(os.path.join(leased, name)).st_ctime
            except (ValueError, FileNotFoundError):
                continue
            left = changed + lease_ms / 1000 - now
            if left > 0:
                soonest = left if soonest is None else min(soonest, left)
                continue
            with contextlib.suppress(FileNotFoundError):  # acked, or reaped by another consumer meanwhile
                os.rename(os.path.join(leased, name), os.path.join(pending, item_id))
                LOGGER.info("lease on %s expired; returned to the queue", item_id)
        return soonest

    def claim(self, place: str, queue: str, lease: float) -> tuple[Claim | None, float | None]:
        pending, leased = self._queue(place, queue)
        with storage_errors(f"take from queue {queue!r} at {place!r}"):
            soonest = self._reap(pending, leased)
            candidates = sorted(_entries(pending))
            if candidates:
                os.makedirs(leased, exist_ok=True)
            # Consumers race for the oldest items; a lost race costs one failed rename.
            for item_id in candidates:
                token = secrets.token_hex(6)
                target = os.path.join(leased, f"{item_id}~{token}~{round(lease * 1000)}")
                try:
                    os.rename(os.path.join(pending, item_id), target)
                except FileNotFoundError:
                    continue
                with open(target, "rb") as handle:
                    item = handle.read().decode("utf-8")
                return Claim(item_id, f"{token}~{round(lease * 1000)}", item), None
        return None, soonest

    def _leased_path(self, place: str, queue: str, claim: Claim) -> str:
        return os.path.join(self._queue(place, queue)[1], f"{claim.item_id}~{claim.token}")

    def ack(self, place: str, queue: str, claim: Claim) -> bool:
        try:
            os.unlink(self._leased_path(place, queue, claim))
        except FileNotFoundError:
            return False
        return True

    def release(self, place: str, queue: str, claim: Claim) -> bool:
        pending, _ = self._queue(place, queue)
        try:
            os.rename(self._leased_path(place, queue, claim), os.path.join(pending, claim.item_id))
        except FileNotFoundError:
            return False
        return True

    def extend(self, place: str, queue: str, claim: Claim, lease: float) -> bool:
        # The lease length is in the leased file's name; setting its times restarts the clock (the ctime).
        try:
            os.utime(self._leased_path(place, queue, claim))
        except FileNotFoundError:
            return False
        return True

    def queue_sizes(self, place: str, queue: str) -> tuple[int, int]:
        pending, leased = self._queue(place, queue)
        return len(_entries(pending)), len(_entries(leased))

    # ------------------------------------------------- counters and barriers
    def add(self, place: str, counter: str, amount: int) -> int:
        directory = self._directory(place, "counter:" + counter)
        with storage_errors(f"add to counter {counter!r} at {place!r}"):
            os.makedirs(directory, exist_ok=True)
            temp = os.path.join(directory, TEMP_PREFIX + secrets.token_hex(8))
            atomic_write(temp, str(amount).encode("ascii"))
            try:
                sequence = max(_counter_entries(directory)[0], default=0) + 1
                while True:
                    try:
                        os.link(temp, os.path.join(directory, f"{sequence:0{_SEQUENCE_DIGITS}d}"))
                        break
                    except FileExistsError:  # another add took it: the next one (taken numbers leave no gap)
                        sequence += 1
                os.link(temp, os.path.join(directory, f"{sequence:0{_SEQUENCE_DIGITS}d}~{amount}"))
            finally:
                os.unlink(temp)
            return _counter_sum(directory, sequence)

    def value(self, place: str, counter: str) -> int:
        with storage_errors(f"read counter {counter!r} at {place!r}"):
            return _counter_sum(self._directory(place, "counter:" + counter), None)

    def arrive(self, place: str, barrier: str, member: str) -> int:
        directory = self._directory(place, "barrier:" + barrier)
        with storage_errors(f"arrive at barrier {barrier!r} at {place!r}"):
            os.makedirs(directory, exist_ok=True)
            atomic_write(os.path.join(directory, member), b"")
        return self.arrived(place, barrier)

    def arrived(self, place: str, barrier: str) -> int:
        return len(_entries(self._directory(place, "barrier:" + barrier)))

    def delete(self, place: str, topic: str) -> None:
        directory = self._directory(place, topic)
        if topic.startswith("queue:"):
            directory = os.path.dirname(directory)
        with storage_errors(f"delete {topic!r} at {place!r}"), contextlib.suppress(FileNotFoundError):
            shutil.rmtree(directory)

    # -------------------------------------------------------------- waiting
    def uses_inotify(self, directory: str) -> bool:
        """Whether waits on ``directory`` are told by inotify (else they poll)."""
        if self.watch == "poll":
            return False
        if self.watch == "inotify":
            return True
        usable = self._usable.get(directory)
        if usable is None:
            usable = self._usable[directory] = watch.inotify_usable(directory)
            if not usable:
                LOGGER.info("%s is not on a local file system (or has no inotify): waits there poll with backoff",
                            directory)
        return usable

    @contextlib.contextmanager
    def notices(self, place: str, topic: str, keys: Sequence[str] | None = None) -> Iterator[Notice]:
        directory = self._directory(place, topic)
        if self.uses_inotify(directory):
            try:
                os.makedirs(directory, exist_ok=True)  # a directory must exist to be watched
                current = watch.watcher()
                names = None if keys is None else frozenset(os.fsencode(key) for key in keys)
                wd, event = current.subscribe(directory, names)
            except OSError as exc:
                LOGGER.warning("cannot watch %s with inotify (%s); polling with backoff instead", directory, exc)
            else:
                fallback = _PollNotice(self.initial_interval, self.max_interval)
                try:
                    yield _EventNotice(event, lambda: current.watching(wd), fallback)
                finally:
                    current.unsubscribe(wd, event)
                return
        poller = watch.poller()
        subscriber = poller.subscribe(directory, None if keys is None else frozenset(keys), self.initial_interval,
                                      self.max_interval)
        try:
            yield _EventNotice(subscriber.event)
        finally:
            poller.unsubscribe(directory, subscriber)
