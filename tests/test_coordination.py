"""Coordination on every kind: signals, waits, work queues with leases, counters, barriers.

Each test runs on files woken by inotify, files that poll, a Redis node and a
Redis Cluster. The process tests use real producer and consumer processes
(one consumer is SIGKILLed while it holds an item); the file-wait test counts
the waiter's real system calls with strace.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mummi_io
from mummi_io import InvalidArgumentError, InvalidKeyError, LeaseLostError, SignalTimeoutError, WaitTimeoutError
from mummi_io.coordination import FileCoordinator

import coordination_programs as programs

HERE = Path(__file__).parent
KINDS = ["files-inotify", "files-poll", "redis", "redis-cluster"]


def _setup(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict, str]:
    """Return (backend kind, get_io options, place) for a coordination kind."""
    if kind.startswith("files"):
        watch = kind.split("-")[1]
        return "simple", {"coordination": FileCoordinator(watch=watch)}, str(tmp_path / "signals")
    servers = request.getfixturevalue("redis_cluster" if kind == "redis-cluster" else "redis_single")
    password = request.getfixturevalue("redis_password")
    options = {"nodes": [s.name for s in servers], "password": password, "cluster": kind == "redis-cluster",
               "coordination": "backend"}
    return "redis", options, f"campaign-{tmp_path.name}"


@pytest.fixture(params=KINDS)
def setup(request, tmp_path):
    return _setup(request.param, request, tmp_path)


@pytest.fixture
def io(setup):
    kind, options, _ = setup
    with mummi_io.get_io(kind, **options) as opened:
        yield opened


@pytest.fixture
def place(setup):
    return setup[2]


def later(seconds: float, action) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


# ------------------------------------------------------------------ signals
def test_send_test_clear(io, place):
    assert io.test_signal(place, "done") is False
    io.send_signal(place, "done")
    io.send_signal(place, "done")  # idempotent
    assert io.test_signal(place, "done") is True
    io.send_signal(place, ["a", "b"])
    assert io.test_signal(place, ["a", "b", "c"]) == [True, True, False]
    io.clear_signal(place, ["done", "a", "never-sent"])
    assert io.test_signal(place, ["done", "a", "b"]) == [False, False, True]
    assert io.test_signal(place, "") is False


@pytest.mark.parametrize("key", ["../escape", "a/b", "", ".mummi_io.queue.x"])
def test_bad_signal_keys_are_refused(io, place, key):
    with pytest.raises(InvalidKeyError):
        io.send_signal(place, key)
    with pytest.raises(InvalidKeyError):
        io.wait_signals(place, [key], timeout=0)


def test_wait_all_and_any(io, place):
    later(0.2, lambda: io.send_signal(place, "b"))
    assert io.wait_signals(place, ["a", "b"], timeout=10, mode="any") == ["b"]  # woken by "b", not timed out
    later(0.2, lambda: io.send_signal(place, "a"))
    assert io.wait_signals(place, ["a", "b"], timeout=10) == ["a", "b"]
    assert io.wait_signal(place, "a", timeout=0) is True  # already there: no wait at all
    assert io.wait_signals(place, [], timeout=0) == []


def test_wait_timeout_names_what_is_missing(io, place):
    io.send_signal(place, "here")
    started = time.monotonic()
    with pytest.raises(SignalTimeoutError) as caught:
        io.wait_signals(place, ["here", "gone-1", "gone-2"], timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert caught.value.missing == ["gone-1", "gone-2"]
    assert "gone-1" in str(caught.value) and "here'" not in str(caught.value)
    assert isinstance(caught.value, TimeoutError)


@pytest.mark.parametrize("timeout", [-1, float("nan"), "5"])
def test_bad_timeouts_and_modes(io, place, timeout):
    with pytest.raises(InvalidArgumentError):
        io.wait_signals(place, ["a"], timeout=timeout)
    with pytest.raises(InvalidArgumentError):
        io.wait_signals(place, ["a"], timeout=1, mode="most")


def test_many_waiting_threads_all_wake(io, place):
    """300 waiters in one process (more than Linux's 128 inotify instances) are all woken."""
    woke: list[str] = []
    errors: list[BaseException] = []

    def waiter(index: int) -> None:
        try:
            woke.extend(io.wait_signals(place, [f"job-{index:03d}"], timeout=60))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(300)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    io.send_signal(place, [f"job-{i:03d}" for i in range(300)])
    for thread in threads:
        thread.join(90)
    assert not errors
    assert sorted(woke) == [f"job-{i:03d}" for i in range(300)]


# ------------------------------------------------------------------- queues
def test_queue_put_get_ack(io, place):
    queue = io.queue(place, "work", lease=30)
    assert queue.get(timeout=0) is None
    queue.put(["x", "y"])
    queue.put("z")
    assert queue.sizes() == (3, 0) and len(queue) == 3
    first = queue.get(timeout=0)
    assert first.item == "x"
    assert queue.sizes() == (2, 1)
    first.ack()
    with pytest.raises(InvalidArgumentError):
        first.ack()  # once only
    assert [queue.get(0).item, queue.get(0).item] == ["y", "z"]
    assert queue.get(timeout=0.2) is None


def test_queue_get_blocks_until_an_item_arrives(io, place):
    queue = io.queue(place, "work")
    later(0.3, lambda: queue.put("late"))
    started = time.monotonic()
    lease = queue.get(timeout=20)
    assert lease.item == "late" and time.monotonic() - started > 0.25  # it waited for the item
    lease.ack()


def test_expired_lease_returns_the_item_and_a_late_ack_fails(io, place):
    queue = io.queue(place, "work", lease=0.4)
    queue.put(["a", "b"])
    slow = queue.get(0)
    assert slow.item == "a"
    time.sleep(0.6)
    again = queue.get(timeout=5)
    assert again.item == "a"  # back at the front of the queue
    with pytest.raises(LeaseLostError, match="expired"):
        slow.ack()
    again.ack()
    assert queue.get(0).item == "b"


def test_waiting_consumer_takes_over_an_expired_lease(io, place):
    """With nothing pending, a waiting consumer wakes when the only lease expires."""
    queue = io.queue(place, "work", lease=0.5)
    queue.put("only")
    assert queue.get(0).item == "only"  # this holder "dies"
    lease = queue.get(timeout=10)
    assert lease is not None and lease.item == "only"  # woken by the expiry, within the wait
    lease.ack()


def test_extend_keeps_the_item(io, place):
    queue = io.queue(place, "work", lease=0.6)
    queue.put("long")
    lease = queue.get(0)
    for _ in range(3):
        time.sleep(0.3)
        lease.extend()
    assert queue.get(timeout=0) is None  # never expired
    lease.ack()
    lease2 = io.queue(place, "other", lease=0.2)
    lease2.put("x")
    held = lease2.get(0)
    time.sleep(0.3)
    assert lease2.get(0).item == "x"
    with pytest.raises(LeaseLostError):
        held.extend()


def test_release_and_context_manager(io, place):
    queue = io.queue(place, "work")
    queue.put(["a", "b"])
    lease = queue.get(0)
    lease.release()
    assert queue.get(0).item == "a"  # released to the front
    with queue.get(0) as lease:
        assert lease.item == "b"
    assert queue.sizes() == (0, 1)  # "a" is still leased; "b" was acked by the block
    queue.put("c")
    with pytest.raises(RuntimeError), queue.get(0) as lease:
        raise RuntimeError("work failed")
    assert queue.get(0).item == "c"  # released by the failing block


def test_queue_bad_input(io, place):
    with pytest.raises(InvalidArgumentError):
        io.queue(place, "work", lease=0)
    with pytest.raises(InvalidKeyError):
        io.queue(place, "../x")
    queue = io.queue(place, "work")
    with pytest.raises(InvalidArgumentError):
        queue.put([b"bytes"])
    queue.put([])
    assert queue.sizes() == (0, 0)
    queue.put("é and spaces")
    assert queue.get(0).item == "é and spaces"
    queue.delete()
    assert queue.sizes() == (0, 0)


# ------------------------------------------------------- counters, barriers
def test_counter(io, place):
    counter = io.counter(place, "finished")
    assert counter.value() == 0
    assert counter.add() == 1
    assert counter.add(4) == 5
    later(0.2, lambda: counter.add(5))
    assert counter.wait_for(10, timeout=10) == 10
    with pytest.raises(WaitTimeoutError, match="waiting for 11"):
        counter.wait_for(11, timeout=0.2)
    with pytest.raises(InvalidArgumentError):
        counter.add(1.5)
    counter.delete()
    assert counter.value() == 0


def test_queue_items_are_text_and_bytes_are_told_so(io, place):
    queue = io.queue(place, "work")
    with pytest.raises(InvalidArgumentError, match="queue items are str .*not bytes; decode bytes first"):
        queue.put(b"x")
    with pytest.raises(InvalidArgumentError, match="not int"):
        queue.put([1])
    assert queue.sizes() == (0, 0)


def test_concurrent_adds_each_see_the_value_right_after_their_own(setup, io, place):
    """A counter add is a fetch-and-add on every backend: of N concurrent add(1), each returns a different
    value from 1 to N (on files, add used to return whatever the directory held by then: none saw 1)."""
    kind, options, _ = setup
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    adders = [context.Process(target=programs.add_to_counter, args=(kind, options, place, "claims", 5, results))
              for _ in range(4)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join(120)
        assert adder.exitcode == 0
    seen = sorted(results.get(timeout=10) for _ in range(20))
    assert seen == list(range(1, 21))
    assert io.counter(place, "claims").value() == 20


def test_barrier(io, place):
    barrier = io.barrier(place, "step-1", parties=3)
    assert barrier.arrive("job-a") == 1
    assert barrier.arrive("job-a") == 1  # a restarted job counts once
    with pytest.raises(WaitTimeoutError, match="2 of 3 arrived"):
        barrier.wait("job-b", timeout=0.2)
    later(0.2, lambda: barrier.arrive("job-c"))
    assert barrier.wait("job-b", timeout=10) == 3
    assert barrier.arrived() == 3
    with pytest.raises(InvalidArgumentError):
        io.barrier(place, "x", parties=0)
    barrier.delete()
    assert barrier.arrived() == 0


# ---------------------------------------------------------- real processes
def test_producers_and_consumers_consume_every_item_exactly_once(setup, tmp_path):
    """50 producer processes, 4 consumer processes; one consumer is killed holding an item."""
    kind, options, place = setup
    context = multiprocessing.get_context("fork")
    items_each = 10
    logs = [str(tmp_path / f"consumer-{i}.log") for i in range(4)]
    consumers = [context.Process(target=programs.consume, args=(kind, options, place, logs[0], 1.0, True))]
    consumers += [context.Process(target=programs.consume, args=(kind, options, place, log, 1.0)) for log in logs[1:]]
    for process in consumers:
        process.start()
    producers = [context.Process(target=programs.produce, args=(kind, options, place, i, items_each))
                 for i in range(50)]
    for process in producers:
        process.start()
    try:
        for process in producers:
            process.join(120)
            assert process.exitcode == 0
        deadline = time.monotonic() + 60
        while not (os.path.exists(logs[0]) and "claimed" in Path(logs[0]).read_text()):
            assert time.monotonic() < deadline, "the hanging consumer never claimed an item"
            time.sleep(0.05)
        os.kill(consumers[0].pid, signal.SIGKILL)  # dies holding a lease
        with mummi_io.get_io(kind, **options) as io:
            io.counter(place, "acked").wait_for(50 * items_each, timeout=120)
            io.send_signal(place, "stop")
            for process in consumers[1:]:
                process.join(60)
                assert process.exitcode == 0
            assert io.queue(place, "work").sizes() == (0, 0)
    finally:
        for process in consumers + producers:
            if process.is_alive():
                process.kill()
    lost_item = Path(logs[0]).read_text().split()[1]
    acked = [line.split()[1] for log in logs[1:] for line in Path(log).read_text().splitlines()]
    expected = [f"p{p:02d}-{i:03d}" for p in range(50) for i in range(items_each)]
    assert len(acked) == len(set(acked)), "an item was acked twice"
    assert sorted(acked) == expected
    assert lost_item in acked


def _wake_latencies(kind: str, options: dict, place: str, trials: int = 5) -> list[float]:
    """Send signals one by one to a waiting process; return send -> wake delays."""
    child_options = {k: v for k, v in options.items() if k != "coordination"}
    child_options["coordination"] = options["coordination"] if isinstance(options["coordination"], str) else "files"
    waiter = subprocess.Popen(
        [sys.executable, str(HERE / "coordination_programs.py"), "wake-times", kind, json.dumps(child_options),
         place, str(trials)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert waiter.stdout.readline().strip() == "ready"
        sent = []
        with mummi_io.get_io(kind, **options) as io:
            for index in range(trials):
                time.sleep(0.3)  # the waiter is blocked by now
                sent.append(time.monotonic())
                io.send_signal(place, f"k{index}")
        woke = [float(waiter.stdout.readline()) for _ in range(trials)]
        assert waiter.wait(30) == 0
    finally:
        waiter.kill()
    return [w - s for w, s in zip(woke, sent)]


@pytest.mark.parametrize("kind", ["redis", "redis-cluster", "files-inotify"])
def test_a_waiting_process_wakes_within_50_ms(kind, request, tmp_path):
    backend, options, place = _setup(kind, request, tmp_path)
    latencies = _wake_latencies(backend, options, place)
    assert max(latencies) < 0.050, f"wake latencies {latencies}"


# ------------------------------------------------- file-system calls counted
def _calls_on(directory: str, watch: str, seconds: float, tmp_path: Path, waiters: int = 1) -> list[tuple[float, str]]:
    """Run file waiters for ``seconds`` under strace; return (time, call) of each call naming ``directory``."""
    strace = shutil.which("strace")
    assert strace, "strace is needed to count system calls: apt-get install strace (CI installs it)"
    trace = tmp_path / f"trace-{watch}-{waiters}.txt"
    subprocess.run(
        [strace, "-f", "-qq", "-ttt", "-o", str(trace),
         "-e", "trace=stat,lstat,newfstatat,statx,access,faccessat,faccessat2,open,openat,getdents64",
         sys.executable, str(HERE / "coordination_programs.py"), "wait-files", directory, watch, str(seconds),
         str(waiters)],
        check=True, timeout=120, capture_output=True,
    )
    calls = []
    for line in trace.read_text().splitlines():
        if directory in line:
            _pid, stamp, call = line.split(maxsplit=2)
            calls.append((float(stamp), call.split("(")[0]))
    return calls


def _backoff_bound(seconds: float, initial: float = 0.01, maximum: float = 1.0) -> int:
    """Checks of one backoff: pauses of 10 ms, 20 ms, ... up to 1 s, then one a second, plus first and last."""
    return math.ceil(math.log2(maximum / initial)) + 1 + math.ceil(seconds / maximum) + 2


def test_file_waits_make_a_bounded_number_of_stat_calls(tmp_path):
    directory = str(tmp_path / "signals")
    seconds = 4.0
    polled = len(_calls_on(directory, "poll", seconds, tmp_path))
    assert 3 <= polled <= _backoff_bound(seconds), f"{polled} calls in {seconds} s"
    watched = len(_calls_on(directory, "inotify", seconds, tmp_path))
    assert watched <= 6, f"{watched} calls while inotify watched"  # a first and a last check, no polling


def test_many_polling_waiters_share_one_listing(tmp_path):
    """100 waiting threads of a process, backed off: one directory listing a second for all, no stat."""
    directory = str(tmp_path / "signals")
    calls = _calls_on(directory, "poll", 7.0, tmp_path, waiters=100)
    start = calls[0][0]
    window = [call for stamp, call in calls if start + 3.0 <= stamp < start + 6.0]  # all started, none timed out
    listings = window.count("openat")
    assert 1 <= listings <= 4, window  # 3 s at one listing a second (max_interval=1)
    assert len(window) - listings == 0, window  # the waiters themselves do not poll


def test_inotify_is_used_only_on_local_file_systems(tmp_path):
    from mummi_io.coordination import watch

    assert watch.file_system_type(str(tmp_path)) is not None
    assert watch.inotify_usable(str(tmp_path)) == (watch.file_system_type(str(tmp_path)) in watch.LOCAL_FILE_SYSTEMS)
    assert FileCoordinator(watch="poll").uses_inotify(str(tmp_path)) is False
    assert FileCoordinator(watch="inotify").uses_inotify(str(tmp_path)) is True
    with pytest.raises(InvalidArgumentError):
        FileCoordinator(watch="sometimes")
    with pytest.raises(InvalidArgumentError):
        FileCoordinator(initial_interval=2, max_interval=1)


def test_a_removed_directory_falls_back_to_polling(tmp_path):
    io = mummi_io.get_io("simple", coordination=FileCoordinator(watch="inotify", max_interval=0.1))
    directory = tmp_path / "signals"

    def remove_then_send() -> None:
        shutil.rmtree(directory)
        time.sleep(0.2)
        io.send_signal(str(directory), "after")

    later(0.3, remove_then_send)
    assert io.wait_signal(str(directory), "after", timeout=20) is True


# ----------------------------------------------------------- configuration
def test_coordination_is_chosen_per_get_io(redis_single, redis_password, tmp_path, monkeypatch):
    nodes = [s.name for s in redis_single]
    place = str(tmp_path / "signals")
    with mummi_io.get_io("redis", nodes=nodes, password=redis_password) as io:
        io.send_signal(place, "on-disk")  # the default: files, the seed's meaning
    assert (tmp_path / "signals" / "on-disk").exists()
    with mummi_io.get_io("redis", nodes=nodes, password=redis_password, coordination="backend") as io:
        assert io.test_signal(place, "on-disk") is False  # Redis holds its own signals
        io.send_signal(place, "in-redis")
        assert io.test_signal(place, "in-redis") is True
    assert not (tmp_path / "signals" / "in-redis").exists()
    monkeypatch.setenv("MUMMI_IO_COORDINATION", "backend")
    with mummi_io.get_io("redis", nodes=nodes, password=redis_password) as io:
        assert io.test_signal(place, "in-redis") is True
    with pytest.raises(InvalidArgumentError, match="coordination must be"):
        mummi_io.get_io("simple", coordination="carrier-pigeon")
    # The files-only module functions keep the seed's meaning whatever the backend.
    assert mummi_io.test_signal(place, "on-disk") is True
    assert (tmp_path / "signals" / "on-disk").read_bytes() == b"1"


def test_an_io_with_backend_coordination_pickles(redis_single, redis_password):
    import pickle

    io = mummi_io.get_io("redis", nodes=[s.name for s in redis_single], password=redis_password,
                         coordination="backend")
    io.send_signal("pickled", "x")
    copy = pickle.loads(pickle.dumps(io))
    assert copy.test_signal("pickled", "x") is True
    copy.close()
    io.close()


@pytest.mark.parametrize("kind", ["files-inotify", "redis"])
def test_a_waiter_is_not_woken_by_other_signals(kind, request, tmp_path):
    """A manager waiting for one job is not made to re-check by the other jobs' signals."""
    backend, options, place = _setup(kind, request, tmp_path)
    with mummi_io.get_io(backend, **options) as io:
        real = io.coordinator
        checks = []

        class CountingChecks(type(real)):  # the real coordinator, with its checks counted
            def present(self, place, keys):
                checks.append(list(keys))
                return super().present(place, keys)

        counting = CountingChecks.__new__(CountingChecks)
        counting.__dict__.update(real.__dict__)
        io.coordinator = counting

        def others_then_mine() -> None:
            for index in range(50):
                io.send_signal(place, f"other-{index}")
            time.sleep(0.2)
            io.send_signal(place, "mine")

        later(0.3, others_then_mine)
        assert io.wait_signals(place, ["mine"], timeout=20) == ["mine"]
    assert len(checks) <= 3, f"{len(checks)} checks: woken by other signals"


def test_coordinators_check_names_themselves(io, place):
    """Code that uses a coordinator directly cannot escape the place either."""
    coordinator = io.coordinator
    with pytest.raises(InvalidKeyError):
        coordinator.send(place, ["../escaped"])
    with pytest.raises(InvalidKeyError):
        coordinator.put(place, "../queue", ["x"])
    with pytest.raises(InvalidKeyError):
        coordinator.add(place, "a/b", 1)
    with pytest.raises(InvalidArgumentError):
        coordinator.delete(place, "nonsense:x")
