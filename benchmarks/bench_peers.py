"""taridx against what a user would pick instead: sqlite3 (WAL) and LMDB, in the same runs.

    python benchmarks/bench_peers.py            # the issue's sizes (10k x 1 KiB, 1M x 100 B)
    python benchmarks/bench_peers.py --quick    # small sizes, for CI

Every contestant stores the same keys and values in one container file and
none flushes to disk per batch: taridx with its default ``fsync=False``,
sqlite3 in WAL mode with ``synchronous=NORMAL`` (one transaction per batch),
LMDB with ``sync=False`` (one write transaction per batch). Each repetition
runs the contestants in a rotated order, so none always goes first (or last)
on a shared machine. The ratio is the peer's median time over taridx's: above
1, taridx is faster. LMDB is skipped when the ``lmdb`` package is missing
(``pip install 'mummi_io[bench]'``).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing import get_context

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import suite_main  # noqa: E402

import mummi_io  # noqa: E402

try:
    import lmdb
except ImportError:  # optional contestant
    lmdb = None


class Contestant:
    """One storage: a container at ``path`` taking batches of string keys and bytes values."""

    name = ""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        raise NotImplementedError

    def read(self, keys: Sequence[str]) -> list[bytes]:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def list_all(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Taridx(Contestant):
    name = "taridx"

    def __init__(self, path: str) -> None:
        super().__init__(path + ".tar")
        self.io = mummi_io.get_io("taridx")

    def write(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        self.io.save_files(self.path, list(keys), list(values))

    def read(self, keys: Sequence[str]) -> list[bytes]:
        return self.io.load_files(self.path, list(keys))

    def exists(self, key: str) -> bool:
        return self.io.file_exists(self.path, key)

    def list_all(self) -> list[str]:
        return self.io.list_keys(self.path)

    def close(self) -> None:
        self.io.close()


class Sqlite(Contestant):
    name = "sqlite3"

    def __init__(self, path: str) -> None:
        super().__init__(path + ".sqlite")
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID")

    def write(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", zip(keys, values))
        self.db.execute("COMMIT")

    def read(self, keys: Sequence[str]) -> list[bytes]:
        marks = ",".join("?" * len(keys))
        found = dict(self.db.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})", list(keys)))
        return [found[key] for key in keys]

    def exists(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM kv WHERE key = ?", (key,)).fetchone() is not None

    def list_all(self) -> list[str]:
        return [key for (key,) in self.db.execute("SELECT key FROM kv ORDER BY key")]

    def close(self) -> None:
        self.db.close()


class Lmdb(Contestant):
    name = "lmdb"

    def __init__(self, path: str) -> None:
        super().__init__(path + ".lmdb")
        self.env = lmdb.open(self.path, map_size=16 << 30, sync=False, metasync=False, max_readers=64)

    def write(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        with self.env.begin(write=True) as txn:
            for key, value in zip(keys, values):
                txn.put(key.encode(), value)

    def read(self, keys: Sequence[str]) -> list[bytes]:
        with self.env.begin() as txn:
            return [txn.get(key.encode()) for key in keys]

    def exists(self, key: str) -> bool:
        with self.env.begin() as txn:
            return txn.get(key.encode()) is not None

    def list_all(self) -> list[str]:
        with self.env.begin() as txn:
            return [key.decode() for key in txn.cursor().iternext(keys=True, values=False)]

    def close(self) -> None:
        self.env.close()


CONTESTANTS: list[type[Contestant]] = [Taridx, Sqlite] + ([Lmdb] if lmdb is not None else [])


def _writer_process(kind: str, base: str, keys: list[str], values: list[bytes], batch: int, ready: object,
                    go: object) -> None:
    contestant = {c.name: c for c in CONTESTANTS}[kind](base)
    ready.release()  # type: ignore[attr-defined]  # started and imported: the clock starts when all are
    go.wait()  # type: ignore[attr-defined]
    for start in range(0, len(keys), batch):
        contestant.write(keys[start:start + batch], values[start:start + batch])
    contestant.close()


_LIST_SCRIPT = """
import sys, time
sys.path.insert(0, {here!r})
import bench_peers  # the interpreter and the libraries loaded: what is timed is opening and listing
started = time.perf_counter()
contestant = {{c.name: c for c in bench_peers.CONTESTANTS}}[{kind!r}]({base!r})
count = len(contestant.list_all())
print(time.perf_counter() - started, count)
"""


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _rotated(repeat: int) -> list[list[type[Contestant]]]:
    """Per repetition, the contestants in a rotated order."""
    return [CONTESTANTS[r % len(CONTESTANTS):] + CONTESTANTS[:r % len(CONTESTANTS)] for r in range(repeat)]


def _rows(workload: str, times: dict[str, list[float]], operations: int) -> list[dict[str, object]]:
    ours = statistics.median(times["taridx"])
    rows = []
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rows.append({
            "workload": workload, "contestant": name, "ops/s": operations / median, "median s": median,
            "spread": f"{100 * (max(seconds) - min(seconds)) / median:.0f}%",
            "peer / taridx": "" if name == "taridx" else median / ours,
        })
    return rows


def collect(quick: bool = False, repeat_default: int = 5) -> list[dict[str, object]]:
    """Run every workload against every contestant; return the table rows."""
    repeat = 3 if quick else repeat_default
    small, big = (2_000, 20_000) if quick else (10_000, 1_000_000)
    scratch = tempfile.mkdtemp(prefix="mummi-io-bench-")
    rows: list[dict[str, object]] = []
    counter = iter(range(10**9))
    try:
        def fresh() -> str:
            return os.path.join(scratch, f"c{next(counter)}")

        for count, size, batch in ((small, 1024, 100), (big, 100, 1000)):
            keys = [f"sim-{i:07d}.npz" for i in range(count)]
            values = [os.urandom(size) for _ in range(count)]
            label = f"{count:,} x {size} B, batches of {batch}"
            # ---- write into a new container
            times: dict[str, list[float]] = {c.name: [] for c in CONTESTANTS}
            kept: dict[str, str] = {}
            for order in _rotated(repeat):
                for kind in order:
                    base = fresh()
                    contestant = kind(base)

                    def write_all(contestant: Contestant = contestant) -> None:
                        for start in range(0, count, batch):
                            contestant.write(keys[start:start + batch], values[start:start + batch])

                    times[kind.name].append(_timed(write_all))
                    contestant.close()
                    kept[kind.name] = base
            rows += _rows(f"write {label}", times, count)
            # ---- random loads in batches of 100, and file_exists per call, on the last containers written
            shuffled = random.Random(7).sample(keys, len(keys))
            probes = shuffled[: min(count, 20_000)]
            times = {c.name: [] for c in CONTESTANTS}
            exists_times: dict[str, list[float]] = {c.name: [] for c in CONTESTANTS}
            for order in _rotated(repeat):
                for kind in order:
                    contestant = kind(kept[kind.name])
                    contestant.exists(keys[0])  # opened and warm, as a campaign's reader is

                    def load_all(contestant: Contestant = contestant) -> None:
                        for start in range(0, len(shuffled), 100):
                            contestant.read(shuffled[start:start + 100])

                    def exists_all(contestant: Contestant = contestant) -> None:
                        for key in probes:
                            contestant.exists(key)

                    times[kind.name].append(_timed(load_all))
                    exists_times[kind.name].append(_timed(exists_all))
                    contestant.close()
            rows += _rows(f"random load {count:,} x {size} B, batches of 100", times, count)
            rows += _rows(f"file_exists per call, {count:,} keys", exists_times, len(probes))
            if count == big:
                # ---- open + list every key in a fresh process
                times = {c.name: [] for c in CONTESTANTS}
                for order in _rotated(repeat):
                    for kind in order:
                        script = _LIST_SCRIPT.format(here=os.path.dirname(os.path.abspath(__file__)), kind=kind.name,
                                                     base=kept[kind.name])
                        out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
                        seconds, listed = out.stdout.split()
                        assert int(listed) == count, (kind.name, listed)
                        times[kind.name].append(float(seconds))
                rows += _rows(f"open + list {count:,} keys, fresh process", times, count)
        # ---- 4 writer processes into one container
        count = small
        keys = [f"w-{i:07d}" for i in range(count)]
        values = [os.urandom(1024) for _ in range(count)]
        times = {c.name: [] for c in CONTESTANTS}
        spawn = get_context("spawn")
        for order in _rotated(repeat):
            for kind in order:
                base = fresh()
                kind(base).close()  # created before the writers start
                ready, go = spawn.Semaphore(0), spawn.Event()
                workers = [spawn.Process(target=_writer_process,
                                         args=(kind.name, base, keys[w::4], values[w::4], 100, ready, go))
                           for w in range(4)]
                for worker in workers:
                    worker.start()
                for _ in workers:
                    ready.acquire()
                started = time.perf_counter()
                go.set()
                for worker in workers:
                    worker.join()
                times[kind.name].append(time.perf_counter() - started)
                assert all(worker.exitcode == 0 for worker in workers), kind.name
        rows += _rows(f"4 writer processes, {count:,} x 1 KiB, batches of 100", times, count)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.exit(suite_main("peers", __doc__.splitlines()[0], collect))
