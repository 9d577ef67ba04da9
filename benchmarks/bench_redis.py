"""redis backend performance against redis-py itself, measured in the same run.

    python benchmarks/bench_redis.py            # the issue's sizes
    python benchmarks/bench_redis.py --quick    # small sizes, for CI

Starts its own password-protected redis-server processes on free loopback
ports (one for the single-node workloads, three for the feedback loop).
Workloads, each against hand-written redis-py in the same run, order rotated
per repetition (targets from issue 18):

- ``save_files`` / ``load_files`` of 10,000 x 1 KiB in one call vs pipelined
  MSET / MGET (target >= 0.9);
- the same in batches of 100, one call per batch on both sides, vs one MSET
  / MGET per batch (target >= 0.7);
- ``file_exists`` on a warm client vs a raw ``EXISTS`` (target >= 0.8);
- 100,000 keys on 3 independent nodes, one ``save_files`` / ``load_files``
  call vs keys sharded by hand over three threads, each pipelining MSET /
  MGET to its node (target >= 0.9);
- the feedback loop on 3 nodes: list 100,000 keys by pattern, load them all,
  move them all to an archive namespace (reported in keys/s end to end);
- ``redis-benchmark`` SET/GET with 1 KiB values, where installed (the server's
  own capacity, for context).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import measure, measure_rotated, row, suite_main  # noqa: E402

import redis  # noqa: E402

import mummi_io  # noqa: E402
from mummi_io.sync import archive  # noqa: E402
from mummi_io.backends.redis.local_servers import start_servers, stop_servers  # noqa: E402

_CHUNK = 1000


def redis_benchmark(port: int, password: str, requests: int) -> list[dict[str, object]]:
    """Rows from ``redis-benchmark`` (pipelined SET/GET of 1 KiB values), if it is installed."""
    if shutil.which("redis-benchmark") is None:
        return []
    result = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-a", password, "-t", "set,get", "-n", str(requests),
         "-d", "1024", "-P", "16", "-q"],
        capture_output=True, text=True, timeout=300,
    )
    rows = []
    for line in result.stdout.replace("\r", "\n").splitlines():
        if "requests per second" in line:
            name, _, rest = line.partition(":")
            rows.append({"workload": f"redis-benchmark {name.strip()} (-P 16, 1 KiB)", "ops/s": float(rest.split()[0])})
    return rows


def collect(quick: bool = False, repeat_default: int = 5) -> list[dict[str, object]]:
    """Run every workload of this suite; return the table rows."""
    count = 2_000 if quick else 10_000
    loop_count = 10_000 if quick else 100_000
    repeat = 3 if quick else repeat_default
    password = secrets.token_hex(16)
    scratch = tempfile.mkdtemp(prefix="mummi-io-bench-redis-")
    servers = start_servers(4, scratch, password)
    rows: list[dict[str, object]] = []
    try:
        single, three = servers[0], servers[1:]
        raw = redis.Redis(host="127.0.0.1", port=single.port, password=password)
        keys = [f"sim-{i:06d}.npz" for i in range(count)]
        values = [os.urandom(1024) for _ in range(count)]
        raw_keys = [f"raw:{key}".encode() for key in keys]

        def mset() -> None:
            pipe = raw.pipeline(transaction=False)
            for start in range(0, count, _CHUNK):
                pipe.mset(dict(zip(raw_keys[start:start + _CHUNK], values[start:start + _CHUNK])))
            pipe.execute()

        def mget() -> None:
            pipe = raw.pipeline(transaction=False)
            for start in range(0, count, _CHUNK):
                pipe.mget(raw_keys[start:start + _CHUNK])
            pipe.execute()

        io = mummi_io.get_io("redis", nodes=[single.name], password=password)
        namespace = "bench-single"
        raw_save, our_save, raw_load, our_load = measure_rotated([
            ("redis-py pipelined MSET (baseline)", count, mset),
            ("redis save_files, one call", count, lambda: io.save_files(namespace, keys, values)),
            ("redis-py pipelined MGET (baseline)", count, mget),
            ("redis load_files, one call", count, lambda: io.load_files(namespace, keys)),
        ], repeat)
        rows += [row(raw_save), row(our_save, raw_save, target=">= 0.9"), row(raw_load), row(our_load, raw_load, target=">= 0.9")]

        probes = keys[:2000]

        def exists_loop() -> None:
            for key in probes:
                io.file_exists(namespace, key)

        def raw_exists_loop() -> None:
            for key in probes:
                raw.exists(f"raw:{key}")

        raw_exists, exists = measure_rotated([
            ("redis-py EXISTS per call (baseline)", len(probes), raw_exists_loop),
            ("redis file_exists, warm client", len(probes), exists_loop),
        ], repeat)
        rows += [{**row(raw_exists), "us/op": raw_exists.per_operation_us},
                 {**row(exists, raw_exists, target=">= 0.8"), "us/op": exists.per_operation_us}]

        # Batches of 100: one call per batch on both sides (a campaign saves a few files at a time).
        def batched(run: Callable[[list[str], list[bytes], list[bytes]], object]) -> Callable[[], None]:
            def loop() -> None:
                for start in range(0, count, 100):
                    run(keys[start:start + 100], raw_keys[start:start + 100], values[start:start + 100])
            return loop

        raw_save100, our_save100, raw_load100, our_load100 = measure_rotated([
            ("redis-py MSET per batch of 100 (baseline)", count, batched(lambda k, r, v: raw.mset(dict(zip(r, v))))),
            ("redis save_files, batches of 100", count, batched(lambda k, r, v: io.save_files(namespace, k, v))),
            ("redis-py MGET per batch of 100 (baseline)", count, batched(lambda k, r, v: raw.mget(r))),
            ("redis load_files, batches of 100", count, batched(lambda k, r, v: io.load_files(namespace, k))),
        ], repeat)
        rows += [row(raw_save100), row(our_save100, raw_save100, target=">= 0.7"),
                 row(raw_load100), row(our_load100, raw_load100, target=">= 0.7")]
        io.close()

        # Three independent nodes: mummi_io's one call against keys sharded by hand over three threads.
        three_count = loop_count
        three_keys = [f"spread-{i:07d}.npz" for i in range(three_count)]
        three_values = [values[i % count] for i in range(three_count)]
        clients = [redis.Redis(host="127.0.0.1", port=s.port, password=password) for s in three]
        shards = [[(f"hand:{key}".encode(), value) for number, (key, value) in enumerate(zip(three_keys, three_values))
                   if number % 3 == node] for node in range(3)]

        def hand_sharded(work: Callable[[redis.Redis, list[tuple[bytes, bytes]]], object]) -> Callable[[], None]:
            def run() -> None:
                with ThreadPoolExecutor(3) as pool:
                    list(pool.map(work, clients, shards))
            return run

        def hand_save(client: redis.Redis, shard: list[tuple[bytes, bytes]]) -> None:
            pipe = client.pipeline(transaction=False)
            for start in range(0, len(shard), _CHUNK):
                pipe.mset(dict(shard[start:start + _CHUNK]))
            pipe.execute()

        def hand_load(client: redis.Redis, shard: list[tuple[bytes, bytes]]) -> None:
            pipe = client.pipeline(transaction=False)
            for start in range(0, len(shard), _CHUNK):
                pipe.mget([key for key, _ in shard[start:start + _CHUNK]])
            pipe.execute()

        spread_io = mummi_io.get_io("redis", nodes=[s.name for s in three], password=password)
        hand_save_m, our_save3, hand_load_m, our_load3 = measure_rotated([
            ("3 nodes: redis-py sharded by hand, 3 threads, save (baseline)", three_count, hand_sharded(hand_save)),
            ("3 nodes: redis save_files, one call", three_count,
             lambda: spread_io.save_files("bench-spread", three_keys, three_values)),
            ("3 nodes: redis-py sharded by hand, 3 threads, load (baseline)", three_count, hand_sharded(hand_load)),
            ("3 nodes: redis load_files, one call", three_count, lambda: spread_io.load_files("bench-spread", three_keys)),
        ], repeat)
        rows += [row(hand_save_m), row(our_save3, hand_save_m, target=">= 0.9"),
                 row(hand_load_m), row(our_load3, hand_load_m, target=">= 0.9")]
        spread_io.remove_files("bench-spread", three_keys)
        spread_io.close()
        for client, shard in zip(clients, shards):
            for start in range(0, len(shard), _CHUNK):
                client.delete(*[key for key, _ in shard[start:start + _CHUNK]])
            client.close()

        # The feedback loop over three nodes.
        three_io = mummi_io.get_io("redis", nodes=[s.name for s in three], password=password)
        loop_keys = [f"rdf-{i:07d}.npz" for i in range(loop_count)]
        payload = [os.urandom(1024) for _ in range(1000)]
        rounds = iter(range(10**6))
        current = {"results": "", "archive": ""}

        def fill() -> None:
            number = next(rounds)
            current["results"], current["archive"] = f"results-{number}", f"archive-{number}"
            for start in range(0, loop_count, 10_000):
                piece = loop_keys[start:start + 10_000]
                three_io.save_files(current["results"], piece, [payload[i % 1000] for i in range(len(piece))])

        def feedback_loop() -> None:
            found = three_io.list_keys(current["results"], "rdf-*.npz")
            for start in range(0, len(found), 10_000):
                piece = found[start:start + 10_000]
                three_io.load_files(current["results"], piece)
                three_io.move_keys(current["results"], piece, dest_namespace=current["archive"])

        loop = measure(f"feedback loop, {loop_count:,} keys on 3 nodes (list, load, move)", loop_count,
                       feedback_loop, min(repeat, 3), fill)
        rows.append({**row(loop), "target": "report keys/s"})

        # Archive: drain a campaign's keys from the three nodes into one tar, verified.
        tar_io = mummi_io.get_io("taridx")
        archives = iter(range(10**6))
        target = {"tar": ""}

        def fill_archive() -> None:
            fill()
            target["tar"] = os.path.join(scratch, f"archive-{next(archives)}.tar")

        drained = measure(f"archive {loop_count:,} keys from 3 nodes into one tar", loop_count, lambda: archive(
            three_io, current["results"], tar_io, target["tar"]), min(repeat, 3), fill_archive)
        rows.append({**row(drained), "target": "report keys/s"})
        tar_io.close()
        three_io.close()
        rows += redis_benchmark(single.port, password, 20_000 if quick else 100_000)
    finally:
        stop_servers(servers)
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    return suite_main("redis", __doc__.splitlines()[0], collect, argv)


if __name__ == "__main__":
    sys.exit(main())
