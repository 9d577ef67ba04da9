"""Coordination: how fast a waiting job learns of a signal, and what waiting costs the file system.

    python benchmarks/bench_coordination.py            # 1,000 waiters
    python benchmarks/bench_coordination.py --quick    # 200 waiters, for CI

Four ways to wait, each in real processes (``coordination_waiter.py``):

- ``redis``: ``io.wait_signal`` with ``coordination="backend"`` (Pub/Sub);
- ``inotify``: ``io.wait_signal`` on files, woken by inotify;
- ``backoff``: ``io.wait_signal`` on files, polling 10 ms doubling to 1 s
  (what happens on a parallel file system, where inotify is blind);
- ``seed``: MuMMI's loop, ``test_signal`` then ``sleep(1)``.

Latency: one waiting process; the sender waits 1.5 s (so pollers have backed
off to their cap), sends, and the waiter prints when it woke. File-system
load: 1,000 waiting threads in 4 processes, each for its own signal (the
directory already holds 1,000 signals of finished jobs), run
under ``strace -f --seccomp-bpf -ttt``; the file-system calls (stat, open,
getdents, access...) logged during a window once every waiter has backed
off are counted; for redis the server's processed commands are counted too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis  # noqa: E402

import mummi_io  # noqa: E402
from harness import report  # noqa: E402
from mummi_io.coordination import FileCoordinator  # noqa: E402
from mummi_io.backends.redis.local_servers import redis_server_binary, start_servers, stop_servers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WAITER = os.path.join(HERE, "coordination_waiter.py")
METHODS = ("redis", "inotify", "backoff", "seed")
FS_CALLS = "trace=%file,%stat,getdents64"


def _sender(method: str, options: dict) -> mummi_io.IO:
    if method == "redis":
        return mummi_io.get_io("redis", coordination="backend", **options)
    return mummi_io.get_io("simple", coordination=FileCoordinator(watch="poll"))


def _start(method: str, options: dict, place: str, *args: object, trace: str | None = None) -> subprocess.Popen:
    """Start a waiter process (under strace writing ``trace``, when given); return once it is ready."""
    command = [sys.executable, WAITER, method, json.dumps(options), place, *map(str, args)]
    if trace is not None:
        # --seccomp-bpf stops the tracee only for the traced calls, not for every futex of 250 threads.
        command = [shutil.which("strace") or "strace", "-f", "--seccomp-bpf", "-ttt", "-qq", "-e", FS_CALLS,
                   "-o", trace, *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the {method} waiter did not start")
    return process


def latency(method: str, options: dict, place: str, trials: int, gap: float) -> list[float]:
    """Seconds from send to wake, one per trial."""
    waiter = _start(method, options, place, "latency", trials)
    sent = []
    with _sender(method, options) as io:
        for index in range(trials):
            time.sleep(gap)
            sent.append(time.monotonic())
            io.send_signal(place, f"k{index}")
        woke = [float(waiter.stdout.readline()) for _ in range(trials)]
    waiter.wait(60)
    return [w - s for w, s in zip(woke, sent)]


def _calls_between(traces: list[str], start: float, end: float) -> int:
    """System calls logged by ``strace -ttt`` in ``traces`` with a timestamp in [start, end]."""
    count = 0
    for trace in traces:
        with open(trace) as handle:
            for line in handle:
                fields = line.split(maxsplit=2)
                # A call interrupted by another thread's is logged twice ("<unfinished ...>", then "resumed").
                if len(fields) == 3 and not fields[2].startswith("<...") and start <= float(fields[1]) <= end:
                    count += 1
    return count


def _redis_commands(options: dict) -> int:
    host, port = options["nodes"][0].rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), password=options["password"])
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def _hold(method: str, options: dict, place: str, waiters: int, traces: list[str] | None) -> list[subprocess.Popen]:
    """Start ``waiters`` waiting threads in 4 processes (each under strace when ``traces`` are given).

    A campaign's signal directory is not empty: it already holds as many
    signals of finished jobs as there are waiters (a listing reads them all).
    """
    with _sender(method, options) as io:
        io.send_signal(place, [f"finished-{i}" for i in range(waiters)])
    share = waiters // 4
    return [_start(method, options, place, "hold", p * share, share, trace=None if traces is None else traces[p])
            for p in range(4)]


def _release(method: str, options: dict, place: str, waiters: int, started: list[subprocess.Popen]) -> float:
    """Send every waiter's signal in one call; return the seconds until all of them woke."""
    with _sender(method, options) as io:
        released = time.monotonic()
        io.send_signal(place, [f"w-{i}" for i in range(waiters)])
        for process in started:
            if process.stdout.readline().strip() != "done":
                raise RuntimeError(f"a {method} waiter process failed")
        all_woken = time.monotonic() - released
    for process in started:
        process.wait(60)
    return all_woken


def load_while_waiting(method: str, options: dict, place: str, waiters: int, window: float,
                       scratch: str) -> dict[str, object]:
    """File-system calls (and Redis commands) per second while ``waiters`` threads in 4 processes wait.

    Counted in a run under strace; the time to wake them all is measured in
    a second run without it (ptrace slows thread wake-ups down by itself).
    """
    traced = shutil.which("strace") is not None
    calls = commands = None
    if traced:
        traces = [os.path.join(scratch, f"trace-{method}-{p}.txt") for p in range(4)]
        started = _hold(method, options, place + "-traced", waiters, traces)
        time.sleep(2.0)  # every poller backed off to its cap
        commands_before = _redis_commands(options) if method == "redis" else None
        window_start = time.time()
        time.sleep(window)
        window_end = time.time()
        if commands_before is not None:
            commands = _redis_commands(options) - commands_before - 1
        _release(method, options, place + "-traced", waiters, started)
        calls = _calls_between(traces, window_start, window_end)
    started = _hold(method, options, place, waiters, None)
    time.sleep(1.0)
    all_woken = _release(method, options, place, waiters, started)
    return {
        "fs calls/s while waiting": "strace not installed" if calls is None else round(calls / window, 1),
        "redis commands/s while waiting": "-" if commands is None else round(max(commands, 0) / window, 1),
        "all woken after a batch send, s": round(all_woken, 3),
    }


def collect(quick: bool) -> list[dict[str, object]]:
    """The coordination table (needs redis-server for the redis rows)."""
    scratch = tempfile.mkdtemp(prefix="mummi-io-coord-bench-")
    waiters, window, trials, gap = (200, 2.0, 3, 1.5) if quick else (1000, 5.0, 5, 1.5)
    servers = []
    rows = []
    try:
        methods = list(METHODS)
        options: dict[str, object] = {}
        if redis_server_binary() is not None:
            password = secrets.token_hex(16)
            servers = start_servers(1, os.path.join(scratch, "redis"), password)
            options = {"nodes": [servers[0].name], "password": password}
        else:
            methods.remove("redis")
        for method in methods:
            place = os.path.join(scratch, f"{method}-latency") if method != "redis" else f"latency-{method}"
            delays = sorted(latency(method, options if method == "redis" else {}, place, trials, gap))
            place = os.path.join(scratch, f"{method}-load") if method != "redis" else f"load-{method}"
            load = load_while_waiting(method, options if method == "redis" else {}, place, waiters, window, scratch)
            rows.append({
                "wait": method,
                "latency median ms": round(delays[len(delays) // 2] * 1000, 2),
                "latency max ms": round(delays[-1] * 1000, 2),
                "waiters": waiters,
                **load,
            })
    finally:
        stop_servers(servers)
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    print(report("coordination", collect(quick), None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
