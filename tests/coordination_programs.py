"""Programs the coordination tests run as real processes (producers, consumers, waiters).

Run as a script for the ``strace`` and latency tests::

    python coordination_programs.py wait-files <dir> <watch> <timeout> [<waiting threads>]
    python coordination_programs.py wake-times <kind> <options json> <place> <count>
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import mummi_io
from mummi_io.coordination import FileCoordinator


def open_io(kind: str, options: dict) -> mummi_io.IO:
    return mummi_io.get_io(kind, **options)


def produce(kind: str, options: dict, place: str, index: int, count: int) -> None:
    """Put ``count`` items one at a time, so producers interleave."""
    with open_io(kind, options) as io:
        queue = io.queue(place, "work")
        for item in range(count):
            queue.put(f"p{index:02d}-{item:03d}")


def consume(kind: str, options: dict, place: str, log: str, lease: float, hang: bool = False) -> None:
    """Take items until the ``stop`` signal; log each acked item (a hanging consumer claims one and sleeps)."""
    with open_io(kind, options) as io, open(log, "a", buffering=1) as out:
        queue = io.queue(place, "work", lease=lease)
        acked = io.counter(place, "acked")
        while not io.test_signal(place, "stop"):
            lease_ = queue.get(timeout=0.2)
            if lease_ is None:
                continue
            if hang:  # a consumer that dies mid-item: the test kills it now
                out.write(f"claimed {lease_.item}\n")
                time.sleep(3600)
            try:
                lease_.ack()
            except mummi_io.LeaseLostError:
                continue
            out.write(f"acked {lease_.item}\n")
            acked.add(1)


def wait_files(directory: str, watch: str, timeout: float, waiters: int = 1) -> None:
    """``waiters`` threads wait for signals that never come (the test counts the system calls made meanwhile)."""
    io = mummi_io.get_io("simple", coordination=FileCoordinator(watch=watch))

    def wait(index: int) -> None:
        try:
            io.wait_signal(directory, f"never-{index}", timeout=timeout)
        except mummi_io.SignalTimeoutError:
            pass

    threads = [threading.Thread(target=wait, args=(index,)) for index in range(waiters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("timed out", flush=True)


def wake_times(kind: str, options: dict, place: str, count: int) -> None:
    """Wait for signals k0..k<count-1> one after the other; print the monotonic time of each wake."""
    with open_io(kind, options) as io:
        print("ready", flush=True)
        for index in range(count):
            io.wait_signal(place, f"k{index}", timeout=60)
            print(time.monotonic(), flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "wait-files":
        wait_files(args[0], args[1], float(args[2]), int(args[3]) if len(args) > 3 else 1)
    elif command == "wake-times":
        wake_times(args[0], json.loads(args[1]), args[2], int(args[3]))
    else:
        raise SystemExit(f"unknown command {command!r} (pid {os.getpid()})")


def add_to_counter(kind: str, options: dict, place: str, name: str, times: int, results) -> None:
    """Add 1 to a counter ``times`` times; put each value ``add`` returns on ``results``."""
    with open_io(kind, options) as io:
        counter = io.counter(place, name)
        for _ in range(times):
            results.put(counter.add(1))
