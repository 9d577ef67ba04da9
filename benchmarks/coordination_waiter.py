"""A waiting job for the coordination benchmark (run by bench_coordination.py, not by hand).

    python coordination_waiter.py <method> <options json> <place> latency <signals>
        wait for k0, k1, ... in turn; print the monotonic time of each wake
    python coordination_waiter.py <method> <options json> <place> hold <first> <count>
        ``count`` threads each wait for its own signal w-<first+i>; print "ready", then "done"

``method`` is ``redis``, ``inotify``, ``backoff`` (mummi_io waits) or
``seed`` (MuMMI's plain loop: test_signal, then sleep 1 s).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import mummi_io
from mummi_io.coordination import FileCoordinator

SEED_INTERVAL = 1.0


def open_io(method: str, options: dict) -> mummi_io.IO:
    if method == "redis":
        return mummi_io.get_io("redis", coordination="backend", **options)
    watch = {"inotify": "inotify", "backoff": "poll", "seed": "poll"}[method]
    return mummi_io.get_io("simple", coordination=FileCoordinator(watch=watch))


def wait_for(io: mummi_io.IO, method: str, place: str, key: str) -> None:
    if method == "seed":
        while not io.test_signal(place, key):
            time.sleep(SEED_INTERVAL)
    else:
        io.wait_signal(place, key, timeout=600)


def main(method: str, options: dict, place: str, mode: str, *numbers: str) -> None:
    io = open_io(method, options)
    if mode == "latency":
        print("ready", flush=True)
        for index in range(int(numbers[0])):
            wait_for(io, method, place, f"k{index}")
            print(time.monotonic(), flush=True)
        return
    first, count = int(numbers[0]), int(numbers[1])
    threads = [threading.Thread(target=wait_for, args=(io, method, place, f"w-{first + i}")) for i in range(count)]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], *sys.argv[5:])
