"""taridx performance against its raw baselines, measured in the same run.

    python benchmarks/bench_taridx.py            # the issue's sizes
    python benchmarks/bench_taridx.py --quick    # small sizes, for CI

Workloads (targets from the taridx issue):
- save 10,000 x 1 KiB values in batches of 100, vs a raw sequential tar append
  in plain Python (header + data + padding, no index; target >= 50%) and vs the
  original pytaridx (target >= 10x; skipped if pytaridx is not installed);
- load the same keys in random order, vs reading as many plain files with
  ``open().read()`` (target >= 1x);
- ``file_exists`` on an open namespace (target < 20 us);
- ``list_keys(ns, "*")`` on a namespace of 1,000,000 keys (target < 2 s), and
  the index memory per key (target well under 200 bytes).
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import measure, row, suite_main  # noqa: E402

import mummi_io  # noqa: E402
from mummi_io.backends.taridx.index import IndexTable  # noqa: E402


def raw_tar_header(name: bytes, size: int) -> bytes:
    """A minimal ustar header, written independently of mummi_io's."""
    fields = (
        name.ljust(100, b"\0") + b"0000644\0" + b"0000000\0" + b"0000000\0"
        + b"%011o\0" % size + b"%011o\0" % int(time.time())
    )
    tail = b"0" + bytes(100) + b"ustar\x0000" + bytes(32 + 32 + 8 + 8 + 155 + 12)
    checksum = sum(fields) + sum(tail) + 8 * 32
    return fields + b"%06o\0 " % checksum + tail


def raw_tar_append(path: str, keys: list[str], values: list[bytes]) -> None:
    with open(path, "ab") as handle:
        for key, value in zip(keys, values):
            handle.write(raw_tar_header(key.encode(), len(value)))
            handle.write(value)
            handle.write(bytes(-len(value) % 512))


def collect(quick: bool = False, repeat_default: int = 5) -> list[dict[str, object]]:
    """Run every workload of this suite; return the table rows."""
    count = 2_000 if quick else 10_000
    big = 100_000 if quick else 1_000_000
    repeat = 3 if quick else repeat_default
    batch = 100
    keys = [f"sim-{i:06d}.npz" for i in range(count)]
    values = [os.urandom(1024) for _ in range(count)]
    scratch = tempfile.mkdtemp(prefix="mummi-io-bench-")
    rows = []
    try:
        io = mummi_io.get_io("taridx")
        counter = iter(range(10**9))

        def fresh_path() -> str:
            return os.path.join(scratch, f"t{next(counter)}.tar")

        # ---- save
        target = {"path": ""}

        def new_target() -> None:
            target["path"] = fresh_path()

        raw_save = measure("raw tar append (baseline)", count, lambda: raw_tar_append(target["path"], keys, values), repeat, new_target)

        def ours() -> None:
            for start in range(0, count, batch):
                io.save_files(target["path"], keys[start:start + batch], values[start:start + batch])

        our_save = measure(f"taridx save_files, batches of {batch}", count, ours, repeat, new_target)
        namespace = target["path"]
        rows.append(row(raw_save))
        rows.append(row(our_save, raw_save, target=">= 0.5"))
        try:
            import pytaridx
        except ImportError:
            pytaridx = None
        if pytaridx is not None:
            pytaridx_count = min(count, 2_000)
            keys_original = keys[:pytaridx_count]

            def original_small() -> None:
                archive = pytaridx.IndexedTarFile()
                archive.open(target["path"], "r+")
                for start in range(0, pytaridx_count, batch):
                    archive.writelist(keys_original[start:start + batch], values[start:start + batch])
                archive.close()

            original_save = measure("pytaridx writelist (original)", pytaridx_count, original_small, repeat, new_target)
            rows.append(row(original_save))
            rows.append({**row(our_save, original_save, target=">= 10"), "workload": "taridx save vs pytaridx"})

        # ---- load in random order
        shuffled = keys[:]
        random.Random(1).shuffle(shuffled)
        plain_dir = os.path.join(scratch, "plain")
        os.makedirs(plain_dir)
        for key, value in zip(keys, values):
            with open(os.path.join(plain_dir, key), "wb") as handle:
                handle.write(value)

        def plain_reads() -> None:
            for key in shuffled:
                with open(os.path.join(plain_dir, key), "rb") as handle:
                    handle.read()

        plain_load = measure("open().read() of plain files (baseline)", count, plain_reads, repeat)
        our_load = measure("taridx load_files, random order", count, lambda: io.load_files(namespace, shuffled), repeat)
        rows.append(row(plain_load))
        rows.append(row(our_load, plain_load, target=">= 1"))

        # ---- file_exists on an open namespace
        probes = shuffled[:2000]

        def exists_loop() -> None:
            for key in probes:
                io.file_exists(namespace, key)

        exists = measure("taridx file_exists", len(probes), exists_loop, repeat)
        rows.append({**row(exists), "us/op": exists.per_operation_us, "target": "< 20 us"})

        # ---- list_keys on a big namespace, and index memory per key
        big_ns = fresh_path()
        big_keys = [f"patch-{i:07d}.npz" for i in range(big)]
        chunk = 50_000
        for start in range(0, big, chunk):
            io.save_files(big_ns, big_keys[start:start + chunk], [b"x"] * len(big_keys[start:start + chunk]))
        io.close()

        def cold_list() -> None:
            with mummi_io.get_io("taridx") as cold:
                assert len(cold.list_keys(big_ns, "*")) == big

        listing = measure(f"taridx list_keys('*') on {big:,} keys, cold open", big, cold_list, repeat)
        with mummi_io.get_io("taridx") as warm:
            warm.file_exists(big_ns, "x")
            warm_listing = measure(f"taridx list_keys('*') on {big:,} keys, open", big, lambda: warm.list_keys(big_ns, "*"), repeat)
        rows.append({**row(listing), "target": "< 2 s"})
        rows.append({**row(warm_listing), "target": "< 2 s"})

        gc.collect()
        tracemalloc.start()
        with mummi_io.get_io("taridx") as probe:
            probe.file_exists(big_ns, "x")
            table: IndexTable = probe.backend.sessions(big_ns).table
            in_use, _ = tracemalloc.get_traced_memory()
            assert len(table.slots) == big
        tracemalloc.stop()
        rows.append({"workload": f"index memory, {big:,} keys", "bytes/key": in_use / big, "target": "< 200"})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    return suite_main("taridx", __doc__.splitlines()[0], collect, argv)


if __name__ == "__main__":
    sys.exit(main())
