"""The zarr store against what zarr users have: a 1 GB chunked array written and read whole (issue 19).

    python benchmarks/bench_ecosystem.py            # 1 GiB: 16384 x 16384 float32 in 4 MiB chunks
    python benchmarks/bench_ecosystem.py --quick    # 64 MiB, for CI

Workloads, contestants in the same run, order rotated per repetition:

- ``MummiStore`` over ``taridx`` against zarr's own ``LocalStore`` on the same
  disk (a new directory / tar each repetition; target >= 0.8);
- ``MummiStore`` over ``redis`` against ``RawRedisStore`` below, a zarr store
  written directly on redis-py (one Redis string per zarr key, pipelined
  MGET/MSET for batches), on one password-protected local redis-server
  (target >= 0.8).

Chunks are 1024 x 1024 float32 (4 MiB) and uncompressed (``compressors=None``),
so the figures are the stores' I/O, not the codec's CPU time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import measure_rotated, row, suite_main  # noqa: E402

import numpy as np  # noqa: E402

import mummi_io  # noqa: E402
from mummi_io.backends.redis.local_servers import start_servers, stop_servers  # noqa: E402

try:
    import redis
    import zarr
    from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

    from mummi_io.zarr import MummiStore
except ImportError:  # zarr 3 needs Python >= 3.11: the suite reports nothing without it
    zarr = None

CHUNK = 1024
#: Reads take under a second and this VM adds 1-2 s of kernel time to one now and then (either store):
#: at least this many repetitions, so that the median is the stores' and not those stalls'.
READ_REPEAT = 9


def _slice(value: bytes, byte_range: Any) -> bytes:
    if byte_range is None:
        return value
    if isinstance(byte_range, RangeByteRequest):
        return value[byte_range.start:byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return value[byte_range.offset:]
    if isinstance(byte_range, SuffixByteRequest):
        return value[len(value) - byte_range.suffix:]
    raise TypeError(f"Unexpected byte_range, got {byte_range!r}")


if zarr is not None:
    class RawRedisStore(Store):
        """The baseline: a zarr store on redis-py alone, one Redis string per zarr key under ``prefix``.

        Each blocking redis-py call runs in a thread (``asyncio.to_thread``), as
        ``MummiStore``'s do, so zarr's concurrent requests overlap on both sides
        and the contest compares the stores, not their use of the event loop.
        """

        supports_writes = True
        supports_deletes = True
        supports_listing = True

        def __init__(self, client: redis.Redis, prefix: str, *, read_only: bool = False) -> None:
            super().__init__(read_only=read_only)
            self.client = client
            self.prefix = prefix

        def with_read_only(self, read_only: bool = False) -> RawRedisStore:
            return RawRedisStore(self.client, self.prefix, read_only=read_only)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, RawRedisStore) and other.prefix == self.prefix

        async def get(self, key: str, prototype: BufferPrototype | None = None,
                      byte_range: ByteRequest | None = None) -> Buffer | None:
            value = await asyncio.to_thread(self.client.get, self.prefix + key)
            return None if value is None else (prototype or default_buffer_prototype()).buffer.from_bytes(
                _slice(value, byte_range))

        async def get_partial_values(self, prototype: BufferPrototype,
                                     key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
            requests = list(key_ranges)
            values = await asyncio.to_thread(self.client.mget, [self.prefix + key for key, _ in requests]) if requests else []
            return [None if value is None else prototype.buffer.from_bytes(_slice(value, byte_range))
                    for value, (_, byte_range) in zip(values, requests)]

        async def _get_many(self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]) -> Any:
            listed = list(requests)
            if listed:
                found = await self.get_partial_values(listed[0][1], [(key, byte_range) for key, _, byte_range in listed])
                for (key, _, _), value in zip(listed, found):
                    yield key, value

        async def exists(self, key: str) -> bool:
            return bool(await asyncio.to_thread(self.client.exists, self.prefix + key))

        async def set(self, key: str, value: Buffer) -> None:
            self._check_writable()
            await asyncio.to_thread(self.client.set, self.prefix + key, value.to_bytes())

        async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
            self._check_writable()
            pairs = {self.prefix + key: value.to_bytes() for key, value in values}
            if pairs:
                await asyncio.to_thread(self.client.mset, pairs)

        async def delete(self, key: str) -> None:
            self._check_writable()
            await asyncio.to_thread(self.client.delete, self.prefix + key)

        async def list(self) -> AsyncIterator[str]:
            for key in self.client.scan_iter(match=self.prefix + "*", count=1000):
                yield key.decode()[len(self.prefix):]

        async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
            async for key in self.list():
                if key.startswith(prefix):
                    yield key

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:
            below = prefix.rstrip("/") + "/" if prefix.rstrip("/") else ""
            names = set()
            async for key in self.list_prefix(below):
                names.add(key[len(below):].split("/", 1)[0])
            for name in sorted(names):
                yield name


def _write(make_store: Callable[[], Any], data: np.ndarray) -> Callable[[], None]:
    def run() -> None:
        array = zarr.create_array(store=make_store(), shape=data.shape, chunks=(CHUNK, CHUNK), dtype=data.dtype,
                                  compressors=None, overwrite=True)
        array[:] = data
    return run


def _read(make_store: Callable[[], Any], data: np.ndarray) -> Callable[[], None]:
    def run() -> None:
        loaded = zarr.open_array(store=make_store(), mode="r")[:]
        assert loaded.shape == data.shape
    return run


def _contest(label: str, baseline: tuple[str, Callable[[], Any]], ours: tuple[str, Callable[[], Any]],
             data: np.ndarray, repeat: int, fresh: Callable[[], object] | None = None,
             before_reads: Callable[[], object] | None = None) -> list[dict[str, object]]:
    """Write, then read, the array through both stores (rotated); the rows with ours as a ratio to the baseline."""
    rows: list[dict[str, object]] = []
    for action, run in (("write", _write), ("read", _read)):
        if action == "read" and before_reads is not None:
            before_reads()
        base, mine = measure_rotated([
            (f"{action} {label}: {baseline[0]} (baseline)", 1, run(baseline[1], data)),
            (f"{action} {label}: {ours[0]}", 1, run(ours[1], data)),
        ], repeat if action == "write" else max(repeat, READ_REPEAT), setup=fresh if action == "write" else None)
        rows += [row(base), row(mine, base, target=">= 0.8")]
    return rows


def collect(quick: bool = False, repeat_default: int = 3) -> list[dict[str, object]]:
    """Run every workload of this suite; return the table rows."""
    if zarr is None:
        return []
    side = 4 * CHUNK if quick else 16 * CHUNK
    repeat = 2 if quick else repeat_default
    data = np.random.default_rng(0).random((side, side), dtype=np.float32)
    megabytes = data.nbytes / 2**20
    scratch = tempfile.mkdtemp(prefix="mummi-io-bench-ecosystem-")
    password = secrets.token_hex(16)
    server = start_servers(1, os.path.join(scratch, "redis"), password)[0]
    rows: list[dict[str, object]] = []
    try:
        taridx = mummi_io.get_io("taridx")
        counter = iter(range(10**6))
        paths = {"local": "", "taridx": ""}

        def fresh() -> None:  # a new directory and a new tar for each write (the old ones removed, untimed)
            shutil.rmtree(paths["local"], ignore_errors=True)
            for leftover in (paths["taridx"], paths["taridx"] + ".idx"):
                if os.path.exists(leftover):
                    os.remove(leftover)
            number = next(counter)
            paths["local"] = os.path.join(scratch, f"local-{number}")
            paths["taridx"] = os.path.join(scratch, f"array-{number}.tar")

        def local_store() -> Any:
            return zarr.storage.LocalStore(paths["local"])

        def taridx_store() -> Any:
            return MummiStore(taridx, paths["taridx"])

        def written_once() -> None:  # what the reads read: one array in each store, written untimed
            paths.update(local=os.path.join(scratch, "local-read"), taridx=os.path.join(scratch, "array-read.tar"))
            _write(local_store, data)()
            _write(taridx_store, data)()

        label = f"{megabytes:,.0f} MiB array, {CHUNK}x{CHUNK} float32 chunks, uncompressed"
        rows += _contest(label, ("zarr LocalStore", local_store), ("MummiStore on taridx", taridx_store), data, repeat,
                         fresh=fresh, before_reads=written_once)

        client = redis.Redis(host="127.0.0.1", port=server.port, password=password)
        on_redis = mummi_io.get_io("redis", nodes=[server.name], password=password)

        def raw_store() -> Any:
            return RawRedisStore(client, "raw-array/")

        def redis_store() -> Any:
            return MummiStore(on_redis, "array")

        rows += _contest(label, ("raw redis-py store", raw_store), ("MummiStore on redis", redis_store), data, repeat)
        on_redis.close()
        client.close()
    finally:
        stop_servers([server])
        shutil.rmtree(scratch, ignore_errors=True)
    for entry in rows:
        entry["MiB/s"] = megabytes / float(entry["median s"])  # type: ignore[arg-type]
    return rows


if __name__ == "__main__":
    raise SystemExit(suite_main("ecosystem", __doc__.splitlines()[0], collect))
