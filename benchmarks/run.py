"""Every benchmark workload on every available backend, with its raw baseline in the same run.

    python benchmarks/run.py [--quick] [--out benchmarks/results] [--repeat 5]
    mummi-io bench [--quick] ...                      (the same, from a checkout)

Writes ``results.json``, ``results.md`` (the tables) and PNG plots into
``--out``. ``--quick`` uses small sizes and finishes in about four minutes (CI runs
it); each section announces itself on stderr. Workloads:

- small values: 1 KiB x N, save and load in one call each;
- npz arrays of ~100 KB: ``save_npz`` / ``load_npz``;
- objects: ``save_object`` / ``load_object`` of a 100 MB array vs ``np.save`` / ``np.load``;
- nested objects: ``save_object`` / ``load_object`` of nested plain data vs ``pickle`` + a plain file;
- the feedback loop: list by pattern, load, move to an archive namespace;
- namespace size 1k -> 1M keys: cost per save, exists, list and load;
- concurrent writers: 1, 2 and 4 processes;
- MPI: 1, 2 and 4 ranks writing directly vs through ``aggregated_save``;
- the taridx and redis issue targets (bench_taridx.py, bench_redis.py);
- taridx against its peers: sqlite3, LMDB, diskcache, zarr v3's LocalStore,
  and for one large array np.save, h5py and zarr (bench_peers.py);
- the zarr store: a 1 GB chunked array through taridx vs zarr's LocalStore,
  and through redis vs a raw redis-py store (bench_ecosystem.py);
- coordination: signal latency and file-system calls while 1,000 jobs wait
  (bench_coordination.py).

Baselines: plain files (``os.open``/``write``/``close``, ``open().read()``,
``os.rename``) for simple and taridx, and redis-py pipelined MSET/MGET for
redis. Every figure is a median over ``--repeat`` runs with its spread.
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing
import os
import pickle
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bench_coordination  # noqa: E402
import bench_ecosystem  # noqa: E402
import bench_peers  # noqa: E402
import bench_redis  # noqa: E402
import bench_taridx  # noqa: E402
from harness import Measurement, machine, measure, report, row  # noqa: E402

import mummi_io  # noqa: E402
from mummi_io.backends.redis.local_servers import redis_server_binary, start_servers, stop_servers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class Backends:
    """The backends to measure, each with a fresh-namespace factory and its raw baseline kind."""

    def __init__(self, scratch: str) -> None:
        self.scratch = scratch
        self.servers = []
        self.options: dict[str, dict[str, object]] = {"simple": {}, "taridx": {}}
        if redis_server_binary() is not None:
            password = secrets.token_hex(16)
            self.servers = start_servers(1, os.path.join(scratch, "redis"), password)
            self.options["redis"] = {"nodes": [self.servers[0].name], "password": password}
        self._count = 0

    def namespace(self, kind: str) -> str:
        self._count += 1
        if kind == "redis":
            return f"bench-{self._count}"
        return os.path.join(self.scratch, f"{kind}-{self._count}" + (".tar" if kind == "taridx" else ""))

    def io(self, kind: str) -> mummi_io.IO:
        return mummi_io.get_io(kind, **self.options[kind])

    def close(self) -> None:
        stop_servers(self.servers)


# --------------------------------------------------------------- baselines
def plain_write(directory: str, keys: list[str], values: list[bytes]) -> None:
    os.makedirs(directory, exist_ok=True)
    for key, value in zip(keys, values):
        fd = os.open(os.path.join(directory, key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, value)
        os.close(fd)


def plain_read(directory: str, keys: list[str]) -> list[bytes]:
    out = []
    for key in keys:
        with open(os.path.join(directory, key), "rb") as handle:
            out.append(handle.read())
    return out


def redis_client(backends: Backends):
    import redis

    options = backends.options["redis"]
    host, port = str(options["nodes"][0]).split(":")
    return redis.Redis(host=host, port=int(port), password=options["password"])


# --------------------------------------------------------------- workloads
def small_values(backends: Backends, count: int, repeat: int) -> list[dict[str, object]]:
    keys = [f"sim-{i:06d}.dat" for i in range(count)]
    values = [os.urandom(1024) for _ in keys]
    rows = []
    for kind in backends.options:
        io = backends.io(kind)
        target = {"ns": ""}

        def fresh(kind: str = kind) -> None:
            target["ns"] = backends.namespace(kind)

        if kind == "redis":
            client = redis_client(backends)

            def base_save() -> None:
                pipe = client.pipeline(transaction=False)
                for start in range(0, count, 1000):
                    pipe.mset({f"raw:{k}": v for k, v in zip(keys[start:start + 1000], values[start:start + 1000])})
                pipe.execute()

            def base_load() -> None:
                pipe = client.pipeline(transaction=False)
                for start in range(0, count, 1000):
                    pipe.mget([f"raw:{k}" for k in keys[start:start + 1000]])
                pipe.execute()

            names = ("redis-py pipelined MSET", "redis-py pipelined MGET")
            base_fresh = None
        else:
            plain = {"dir": ""}

            def base_fresh() -> None:  # new files each time, as the backend gets a new namespace
                plain["dir"] = os.path.join(backends.scratch, f"plain-small-{time.monotonic_ns()}")

            def base_save() -> None:
                plain_write(plain["dir"], keys, values)

            def base_load() -> None:
                plain_read(plain["dir"], keys)

            names = ("plain files write", "plain files read")
        baseline_save = measure(names[0], count, base_save, repeat, base_fresh)
        ours_save = measure(f"{kind} save_files", count, lambda: io.save_files(target["ns"], keys, values), repeat, fresh)
        baseline_load = measure(names[1], count, base_load, repeat)
        ours_load = measure(f"{kind} load_files", count, lambda: io.load_files(target["ns"], keys), repeat)
        rows += [row(ours_save, baseline_save), row(ours_load, baseline_load)]
        io.close()
    return rows


def npz_arrays(backends: Backends, count: int, repeat: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    arrays = [{"rdf": np.round(rng.random(12_500), 3)} for _ in range(count)]  # ~100 KB raw each
    keys = [f"frame-{i:05d}" for i in range(count)]
    plain_dir = os.path.join(backends.scratch, "plain-npz")
    os.makedirs(plain_dir, exist_ok=True)

    def base_save() -> None:
        for key, data in zip(keys, arrays):
            np.savez_compressed(os.path.join(plain_dir, key + ".npz"), **data)

    def base_load() -> None:
        for key in keys:
            with np.load(os.path.join(plain_dir, key + ".npz")) as npz:
                {name: npz[name] for name in npz.files}

    baseline_save = measure("np.savez_compressed to plain files", count, base_save, repeat)
    baseline_load = measure("np.load from plain files", count, base_load, repeat)
    rows = []
    for kind in backends.options:
        io = backends.io(kind)
        ns = backends.namespace(kind)
        ours_save = measure(f"{kind} save_npz (~100 KB arrays)", count, lambda: io.save_npz(ns, keys, arrays), repeat)
        ours_load = measure(f"{kind} load_npz", count, lambda: io.load_npz(ns, keys), repeat)
        rows += [row(ours_save, baseline_save),
                 row(ours_load, baseline_load)]
        io.close()
    return rows


def big_arrays(backends: Backends, megabytes: int, repeat: int) -> list[dict[str, object]]:
    """save_object / load_object of one large array against np.save / np.load of a plain file."""
    array = np.random.rand(megabytes * 1024 * 1024 // 8)
    path = os.path.join(backends.scratch, "plain-array.npy")
    fresh_paths = iter(range(10**6))
    # np.save over the same file reuses its page-cache pages (fast); saving a new object is a new file.
    baseline_new = measure(f"np.save {megabytes} MB, new file", 1, lambda: np.save(
        os.path.join(backends.scratch, f"plain-array-{next(fresh_paths)}.npy"), array), repeat)
    baseline_save = measure(f"np.save {megabytes} MB", 1, lambda: np.save(path, array), repeat)
    baseline_load = measure(f"np.load {megabytes} MB", 1, lambda: np.load(path), repeat)
    rows = []
    for kind in backends.options:
        io = backends.io(kind)
        ns = backends.namespace(kind)
        ours_save = measure(f"{kind} save_object {megabytes} MB array", 1, lambda: io.save_object(ns, "a", array), repeat)
        ours_load = measure(f"{kind} load_object", 1, lambda: io.load_object(ns, "a"), repeat)
        unverified = measure(f"{kind} load_object, verify=False", 1, lambda: io.load_object(ns, "a", verify=False), repeat)
        fast_save = measure(f"{kind} save_object, digest=xxh3_128", 1,
                            lambda: io.save_object(ns, "b", array, digest="xxh3_128"), repeat)
        fast_load = measure(f"{kind} load_object, xxh3_128", 1, lambda: io.load_object(ns, "b"), repeat)
        rows += [row(ours_save, baseline_save), row(ours_load, baseline_load), row(unverified, baseline_load),
                 row(fast_save, baseline_save), row(fast_load, baseline_load),
                 {**row(fast_save, baseline_new), "workload": f"{kind} save_object, digest=xxh3_128 (vs new file)"}]
        io.close()
    return rows


def nested_object(size: int) -> dict[str, object]:
    """Plain nested data as simulations keep it: a few thousand numbers and strings in dicts and lists."""
    return {
        "params": {f"p{i}": i * 0.5 for i in range(size // 10)},
        "frames": [{"step": step, "energy": -1.5 * step, "label": f"frame-{step}", "ok": step % 3 == 0}
                   for step in range(size // 5)],
        "ids": list(range(size)),
        "names": [f"lipid-{i}" for i in range(size // 5)],
    }


def nested_objects(backends: Backends, count: int, repeat: int) -> list[dict[str, object]]:
    """save_object / load_object of nested plain objects against pickle.dumps + write / read + pickle.loads."""
    obj = nested_object(3_000)
    directory = os.path.join(backends.scratch, "pickled")
    os.makedirs(directory, exist_ok=True)

    def pickle_save() -> None:
        for i in range(count):
            with open(os.path.join(directory, f"o{i}"), "wb") as handle:
                handle.write(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def pickle_load() -> None:
        for i in range(count):
            with open(os.path.join(directory, f"o{i}"), "rb") as handle:
                pickle.loads(handle.read())

    baseline_save = measure("pickle.dumps + write", count, pickle_save, repeat)
    baseline_load = measure("read + pickle.loads", count, pickle_load, repeat)
    rows = []
    for kind in backends.options:
        io = backends.io(kind)
        ns = backends.namespace(kind)
        def save(io: mummi_io.IO = io, ns: str = ns) -> None:
            for i in range(count):
                io.save_object(ns, f"o{i}", obj)

        def load(io: mummi_io.IO = io, ns: str = ns) -> None:
            for i in range(count):  # each loaded object dropped, as the baseline does (no list kept alive)
                io.load_object(ns, f"o{i}")

        ours_save = measure(f"{kind} save_object (nested, ~3,000 items)", count, save, repeat)
        ours_load = measure(f"{kind} load_object (nested)", count, load, repeat)
        rows += [row(ours_save, baseline_save), row(ours_load, baseline_load)]
        io.close()
    return rows


def feedback_loop(backends: Backends, count: int, repeat: int) -> list[dict[str, object]]:
    keys = [f"rdf-{i:06d}.npz" for i in range(count)]
    values = [os.urandom(1024) for _ in keys]
    state = {"ns": "", "archive": "", "dir": "", "archive_dir": ""}

    def fill_plain() -> None:
        state["dir"] = os.path.join(backends.scratch, f"loop-{time.monotonic_ns()}")
        state["archive_dir"] = state["dir"] + "-archive"
        plain_write(state["dir"], keys, values)
        os.makedirs(state["archive_dir"])

    def plain_loop() -> None:
        found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(state["dir"], "rdf-*.npz")))
        plain_read(state["dir"], found)
        for key in found:
            os.rename(os.path.join(state["dir"], key), os.path.join(state["archive_dir"], key))

    baseline = measure("plain files: glob, read, rename", count, plain_loop, repeat, fill_plain)
    rows = []
    for kind in backends.options:
        io = backends.io(kind)

        def fill(kind: str = kind) -> None:
            state["ns"], state["archive"] = backends.namespace(kind), backends.namespace(kind)
            for start in range(0, count, 10_000):
                io.save_files(state["ns"], keys[start:start + 10_000], values[start:start + 10_000])

        def loop() -> None:
            found = io.list_keys(state["ns"], "rdf-*.npz")
            io.load_files(state["ns"], found)
            io.move_keys(state["ns"], found, dest_namespace=state["archive"])

        ours = measure(f"{kind} feedback loop (list, load, move)", count, loop, repeat, fill)
        rows.append(row(ours, baseline))
        io.close()
    return rows


def scaling(backends: Backends, sizes: list[int], repeat: int) -> list[dict[str, object]]:
    """Per-operation cost as the namespace grows; each op is 1,000 keys (list: the whole namespace)."""
    rows = []
    probe = 1000
    for kind in backends.options:
        io = backends.io(kind)
        ns = backends.namespace(kind)
        filled = 0
        for size in sizes:
            while filled < size:
                step = min(50_000, size - filled)
                io.save_files(ns, [f"k{i:08d}" for i in range(filled, filled + step)], [b"x" * 64] * step)
                filled += step
            rng = np.random.default_rng(size)
            sample = [f"k{i:08d}" for i in rng.integers(0, size, probe)]
            extra = iter(range(10**9))

            def save() -> None:
                batch = next(extra)
                io.save_files(ns, [f"new-{size}-{batch}-{i}" for i in range(probe)], [b"y" * 64] * probe)

            results = {
                "save": measure("save", probe, save, repeat),
                "exists": measure("exists", probe, lambda: [io.file_exists(ns, k) for k in sample], repeat),
                "load": measure("load", probe, lambda: io.load_files(ns, sample), repeat),
                "list": measure("list", size, lambda: io.list_keys(ns, "k*"), repeat),
            }
            filled += 0
            for operation, result in results.items():
                rows.append({"backend": kind, "keys": size, "operation": operation,
                             "us/key": result.per_operation_us, "spread": f"{100 * result.spread:.0f}%"})
        io.close()
    return rows


def _writer_process(kind: str, options: dict[str, object], namespace: str, keys: list[str], size: int) -> None:
    io = mummi_io.get_io(kind, **options)
    value = b"w" * size
    for start in range(0, len(keys), 100):
        io.save_files(namespace, keys[start:start + 100], [value] * len(keys[start:start + 100]))
    io.close()


def _plain_writer(directory: str, keys: list[str], size: int) -> None:
    plain_write(directory, keys, [b"w" * size] * len(keys))


def concurrent_writers(backends: Backends, per_process: int, repeat: int) -> list[dict[str, object]]:
    context = multiprocessing.get_context("fork")
    rows = []

    def run_processes(target, argument_lists) -> None:
        processes = [context.Process(target=target, args=args) for args in argument_lists]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
            if process.exitcode != 0:
                raise RuntimeError(f"a writer process failed with exit code {process.exitcode}")

    for processes in (1, 2, 4):
        total = processes * per_process
        plain = {"dir": ""}

        def plain_fresh() -> None:
            plain["dir"] = os.path.join(backends.scratch, f"conc-{time.monotonic_ns()}")

        baseline = measure(f"plain files, {processes} process(es)", total, lambda: run_processes(
            _plain_writer, [(plain["dir"], [f"p{p}-{i}" for i in range(per_process)], 1024) for p in range(processes)]
        ), repeat, plain_fresh)
        for kind, options in backends.options.items():
            target = {"ns": ""}

            def fresh(kind: str = kind) -> None:
                target["ns"] = backends.namespace(kind)

            ours = measure(f"{kind}, {processes} writer process(es)", total, lambda kind=kind, options=options: run_processes(
                _writer_process,
                [(kind, options, target["ns"], [f"p{p}-{i}" for i in range(per_process)], 1024) for p in range(processes)],
            ), repeat, fresh)
            rows.append(row(ours, baseline))
    return rows


def mpi_ranks(backends: Backends, per_rank: int, repeat: int) -> list[dict[str, object]]:
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = shutil.which("mpiexec") or ""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpiexec = ""
    if not mpiexec:
        return [{"workload": "MPI", "note": "mpi4py/mpiexec not installed: pip install -e '.[mpi]'"}]
    rows = []
    program = os.path.join(HERE, "mpi_writers.py")
    for kind, options in backends.options.items():
        for ranks in (1, 2, 4):
            for mode in ("direct", "aggregated"):
                times = []
                for _ in range(repeat):
                    namespace = backends.namespace(kind)
                    result = subprocess.run(
                        [mpiexec, "-n", str(ranks), sys.executable, program, kind, namespace, mode, str(per_rank),
                         json.dumps(options)],
                        capture_output=True, text=True, timeout=600,
                    )
                    if result.returncode != 0:
                        raise RuntimeError(f"mpi benchmark failed: {result.stderr}")
                    times.append(float(result.stdout.split()[-1]))
                measurement = Measurement(f"{kind}, {ranks} rank(s), {mode}", ranks * per_rank, times)
                rows.append({**row(measurement), "ranks": ranks, "mode": mode})
    return rows


# ------------------------------------------------------------------ output
def plot(results: dict[str, list[dict[str, object]]], out: str) -> list[str]:
    """PNG plots: cost per key against namespace size, and ratios to the baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    scaling_rows = results.get("namespace size", [])
    if scaling_rows:
        figure, axes = plt.subplots(1, 4, figsize=(16, 4), sharex=True)
        for axis, operation in zip(axes, ["save", "exists", "load", "list"]):
            for kind in sorted({r["backend"] for r in scaling_rows}):
                points = [(r["keys"], r["us/key"]) for r in scaling_rows if r["backend"] == kind and r["operation"] == operation]
                axis.plot(*zip(*points), marker="o", label=kind)
            axis.set(xscale="log", yscale="log", title=operation, xlabel="keys in namespace", ylabel="us per key")
            axis.legend()
        figure.tight_layout()
        path = os.path.join(out, "namespace_size.png")
        figure.savefig(path, dpi=100)
        written.append(path)
    ratio_rows = [r for section in ("small values", "npz arrays", "feedback loop") for r in results.get(section, [])
                  if isinstance(r.get("ratio to baseline"), float)]
    if ratio_rows:
        figure, axis = plt.subplots(figsize=(10, 0.4 * len(ratio_rows) + 1))
        axis.barh([r["workload"] for r in ratio_rows], [r["ratio to baseline"] for r in ratio_rows])
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set(xlabel="throughput relative to the raw baseline (higher is better)")
        figure.tight_layout()
        path = os.path.join(out, "ratios.png")
        figure.savefig(path, dpi=100)
        written.append(path)
    peer_rows = [r for r in results.get("peers", []) if isinstance(r.get("peer / taridx"), float)]
    if peer_rows:
        labels = [f"{r['workload']}: {r['contestant']}" for r in peer_rows]
        figure, axis = plt.subplots(figsize=(11, 0.3 * len(peer_rows) + 1))
        axis.barh(labels, [r["peer / taridx"] for r in peer_rows])
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set(xscale="log", xlabel="peer's time / taridx's time (above 1: taridx is faster)")
        axis.invert_yaxis()
        figure.tight_layout()
        path = os.path.join(out, "peers.png")
        figure.savefig(path, dpi=100)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about four minutes), for CI")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per figure (quick: 3)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="results folder")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    os.makedirs(args.out, exist_ok=True)
    # A TERM (a CI timeout, a stopped test run) unwinds like Ctrl-C, so the finally below cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    scratch = tempfile.mkdtemp(prefix="mummi-io-bench-")
    backends = Backends(scratch)
    sections: dict[str, list[dict[str, object]]] = {}
    started = time.monotonic()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    steps: list[tuple[str, object]] = [
        ("small values", lambda: small_values(backends, 1_000 if args.quick else 10_000, repeat)),
        ("npz arrays", lambda: npz_arrays(backends, 10 if args.quick else 200, repeat)),
        ("objects", lambda: big_arrays(backends, 10 if args.quick else 100, repeat)),
        ("nested objects", lambda: nested_objects(backends, 20 if args.quick else 200, repeat)),
        ("feedback loop", lambda: feedback_loop(backends, 2_000 if args.quick else 100_000, repeat)),
        ("namespace size", lambda: scaling(backends, sizes, repeat)),
        ("concurrent writers", lambda: concurrent_writers(backends, 200 if args.quick else 5_000, repeat)),
        ("MPI ranks", lambda: mpi_ranks(backends, 100 if args.quick else 2_000, repeat)),
        ("taridx targets", lambda: bench_taridx.collect(args.quick, repeat)),
        ("peers", lambda: bench_peers.collect(args.quick, repeat)),
    ]
    if redis_server_binary() is not None:
        steps.append(("redis targets", lambda: bench_redis.collect(args.quick, repeat)))
        steps.append(("zarr store", lambda: bench_ecosystem.collect(args.quick, min(repeat, 3))))
    steps.append(("coordination", lambda: bench_coordination.collect(args.quick)))
    try:
        for number, (title, collect) in enumerate(steps, 1):
            # Progress on stderr (a full run takes an hour): the tables go to stdout at the end.
            print(f"[{number}/{len(steps)}] {title} ({time.monotonic() - started:.0f} s so far)", file=sys.stderr,
                  flush=True)
            sections[title] = collect()  # type: ignore[operator]
    finally:
        backends.close()
        shutil.rmtree(scratch, ignore_errors=True)
    header = (f"Measured {time.strftime('%Y-%m-%d')} on {machine()['platform']}, {machine()['cpus']} CPUs, "
              f"Python {machine()['python']}; {'quick' if args.quick else 'full'} run, medians of {repeat}, "
              f"{time.monotonic() - started:.0f} s.")
    tables = [header] + [report(title, rows, None) for title, rows in sections.items()]
    with open(os.path.join(args.out, "results.md"), "w") as handle:
        handle.write("\n\n".join(tables) + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"machine": machine(), "quick": args.quick, "repeat": repeat, "sections": sections}, handle, indent=2)
    plots = plot(sections, args.out)
    print("\n\n".join(tables))
    print(f"\nwrote {args.out}/results.md, results.json and {len(plots)} plot(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
