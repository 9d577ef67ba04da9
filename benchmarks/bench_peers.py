"""taridx against what a user would pick instead (sqlite3, LMDB, diskcache, zarr, h5py), in the same runs.

    python benchmarks/bench_peers.py            # the issue's sizes (10k x 1 KiB, 1M x 100 B)
    python benchmarks/bench_peers.py --quick    # small sizes, for CI

Key-value workloads: every contestant stores the same keys and values and
none flushes to disk per batch: taridx with its default ``fsync=False``,
sqlite3 in WAL mode with ``synchronous=NORMAL`` (one transaction per batch),
LMDB with ``sync=False`` (one write transaction per batch), diskcache (one
transaction per batch; small sizes only: it lists a million keys in minutes),
and zarr v3's ``LocalStore`` used as a key-value store (a file per key;
small sizes only). One large array: taridx
``save_object`` (BLAKE3, the default digest, and xxh3_128) against
``np.save``/``np.load``, h5py and zarr v3 with its default codecs.

Each repetition runs the contestants in a rotated order, so none always
goes first (or last) on a shared machine. The ratio is the peer's median
time over taridx's: above 1, taridx is faster. A peer whose package is
missing is skipped (``pip install 'mummi_io[bench]'`` installs them all).
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

import numpy as np
from multiprocessing import get_context

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import suite_main  # noqa: E402

import mummi_io  # noqa: E402

try:
    import lmdb
except ImportError:  # optional contestant
    lmdb = None
try:
    import diskcache
except ImportError:  # optional contestant
    diskcache = None
try:
    import h5py
except ImportError:  # optional contestant
    h5py = None
try:
    import zarr
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync as zarr_sync
    from zarr.storage import LocalStore
except ImportError:  # optional contestant
    zarr = None


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


class Diskcache(Contestant):
    name = "diskcache"
    small_only = True  # listing a million keys (iterkeys) took over 4 minutes per repetition here

    def __init__(self, path: str) -> None:
        super().__init__(path + ".diskcache")
        self.cache = diskcache.Cache(self.path, size_limit=1 << 40, eviction_policy="none")

    def write(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        with self.cache.transact():
            for key, value in zip(keys, values):
                self.cache.set(key, value)

    def read(self, keys: Sequence[str]) -> list[bytes]:
        return [self.cache.get(key) for key in keys]

    def exists(self, key: str) -> bool:
        return key in self.cache

    def list_all(self) -> list[str]:
        return sorted(self.cache.iterkeys())

    def close(self) -> None:
        self.cache.close()


class ZarrLocalStore(Contestant):
    """zarr v3's own LocalStore used as a key-value store (a file per key, as zarr writes chunks)."""

    name = "zarr LocalStore"
    small_only = True  # a file per key: a million keys would take most of an hour per repetition

    def __init__(self, path: str) -> None:
        super().__init__(path + ".zarr")
        self.store = zarr_sync(LocalStore.open(self.path))
        self.prototype = default_buffer_prototype()

    def write(self, keys: Sequence[str], values: Sequence[bytes]) -> None:
        async def set_all() -> None:
            import asyncio

            await asyncio.gather(*(self.store.set(key, self.prototype.buffer.from_bytes(value))
                                   for key, value in zip(keys, values)))

        zarr_sync(set_all())

    def read(self, keys: Sequence[str]) -> list[bytes]:
        async def get_all() -> list[object]:
            import asyncio

            return await asyncio.gather(*(self.store.get(key, self.prototype) for key in keys))

        return [buffer.to_bytes() for buffer in zarr_sync(get_all())]  # type: ignore[attr-defined]

    def exists(self, key: str) -> bool:
        return zarr_sync(self.store.exists(key))

    def list_all(self) -> list[str]:
        async def listed() -> list[str]:
            return [key async for key in self.store.list()]

        return sorted(zarr_sync(listed()))


CONTESTANTS: list[type[Contestant]] = (
    [Taridx, Sqlite] + ([Lmdb] if lmdb is not None else []) + ([Diskcache] if diskcache is not None else [])
    + ([ZarrLocalStore] if zarr is not None else [])
)


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


def _rotated(repeat: int, contestants: Sequence[type[Contestant]] | None = None) -> list[list[type[Contestant]]]:
    """Per repetition, the contestants in a rotated order."""
    pool = list(CONTESTANTS if contestants is None else contestants)
    return [pool[r % len(pool):] + pool[:r % len(pool)] for r in range(repeat)]


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
            pool = [c for c in CONTESTANTS if not (count == big and getattr(c, "small_only", False))]
            # ---- write into a new container
            times: dict[str, list[float]] = {c.name: [] for c in pool}
            kept: dict[str, str] = {}
            for order in _rotated(repeat, pool):
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
            times = {c.name: [] for c in pool}
            exists_times: dict[str, list[float]] = {c.name: [] for c in pool}
            for order in _rotated(repeat, pool):
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
                times = {c.name: [] for c in pool}
                for order in _rotated(repeat, pool):
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
        rows += arrays(scratch, 10 if quick else 100, repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _array_contestants(scratch: str) -> dict[str, tuple[Callable[[object, str], None], Callable[[str], object]]]:
    """name -> (save(array, path), load(path)) of each way to keep one large array in a file."""
    ios = {digest: mummi_io.get_io("taridx") for digest in ("blake3", "xxh3_128")}

    def object_saver(digest: str) -> Callable[[object, str], None]:
        return lambda array, path: ios[digest].save_object(path + ".tar", "a", array, digest=digest)

    def object_loader(digest: str) -> Callable[[str], object]:
        return lambda path: ios[digest].load_object(path + ".tar", "a")

    contestants: dict[str, tuple[Callable[[object, str], None], Callable[[str], object]]] = {
        "taridx save_object (blake3, default)": (object_saver("blake3"), object_loader("blake3")),
        "taridx save_object (xxh3_128)": (object_saver("xxh3_128"), object_loader("xxh3_128")),
        "np.save / np.load": (lambda array, path: np.save(path + ".npy", array), lambda path: np.load(path + ".npy")),
    }
    if h5py is not None:
        def h5_save(array: object, path: str) -> None:
            with h5py.File(path + ".h5", "w") as handle:
                handle.create_dataset("a", data=array)

        def h5_load(path: str) -> object:
            with h5py.File(path + ".h5", "r") as handle:
                return handle["a"][()]

        contestants["h5py"] = (h5_save, h5_load)
    if zarr is not None:
        contestants["zarr v3 LocalStore (default codecs)"] = (
            lambda array, path: zarr.save_array(path + ".zarr", array),
            lambda path: zarr.open_array(path + ".zarr", mode="r")[...],
        )
    return contestants


def arrays(scratch: str, megabytes: int, repeat: int) -> list[dict[str, object]]:
    """Save (into a new file) and load one float64 array of ``megabytes``, each way, order rotated."""
    array = np.random.default_rng(7).random(megabytes * (1 << 20) // 8)
    contestants = _array_contestants(scratch)
    names = list(contestants)
    saves: dict[str, list[float]] = {name: [] for name in names}
    loads: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(repeat):
        for name in names[repetition % len(names):] + names[:repetition % len(names)]:
            save, load = contestants[name]
            path = os.path.join(scratch, f"array-{repetition}-{names.index(name)}")
            saves[name].append(_timed(lambda: save(array, path)))
            loaded: list[object] = []
            loads[name].append(_timed(lambda: loaded.append(load(path))))
            assert np.array_equal(loaded[0], array), name  # type: ignore[arg-type]
    rows = []
    for operation, times in (("save", saves), ("load", loads)):
        ours = statistics.median(times[names[0]])
        for name, seconds in times.items():
            median = statistics.median(seconds)
            rows.append({
                "workload": f"{operation} one {megabytes} MB float64 array", "contestant": name, "median s": median,
                "spread": f"{100 * (max(seconds) - min(seconds)) / median:.0f}%",
                "peer / taridx": "" if name == names[0] else median / ours,
            })
    return rows


if __name__ == "__main__":
    sys.exit(suite_main("peers", __doc__.splitlines()[0], collect))
