"""The zarr v3 store on every backend: zarr's own store test suite, real arrays, several writer processes."""

from __future__ import annotations

import multiprocessing
import pickle
import uuid
from typing import Any

import numpy as np
import pytest

zarr = pytest.importorskip("zarr", minversion="3", reason="pip install 'mummi_io[zarr]' (zarr 3 needs Python >= 3.11)")

from zarr.core.buffer import cpu, default_buffer_prototype  # noqa: E402
from zarr.testing.store import StoreTests  # noqa: E402

from mummi_io import IO, InvalidArgumentError, InvalidKeyError, get_io  # noqa: E402
from mummi_io.zarr import MummiStore  # noqa: E402

BACKENDS = ["simple", "taridx", "redis"]


def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> tuple[IO, str, dict[str, Any]]:
    """An IO of ``kind`` (redis: the session's real server), a fresh namespace, and the options to open it again."""
    options: dict[str, Any] = {}
    if kind == "redis":
        server = request.getfixturevalue("redis_single")[0]
        options = {"nodes": [server.name], "password": server.password}
        namespace = f"zarr-{uuid.uuid4().hex}"
    else:
        namespace = str(tmp_path / f"store-{uuid.uuid4().hex[:8]}")
    return get_io(kind, **options), namespace, options


class _OnBackend(StoreTests[MummiStore, cpu.Buffer]):
    """zarr's store suite (``zarr.testing.store.StoreTests``), unchanged, on one backend."""

    store_cls = MummiStore
    buffer_cls = cpu.Buffer
    kind = ""

    @pytest.fixture
    def store_kwargs(self, request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, Any]:
        io, namespace, _ = _open(self.kind, request, tmp_path)
        return {"io": io, "namespace": namespace}

    async def set(self, store: MummiStore, key: str, value: Any) -> None:
        store.io.save_files(store.namespace, key, value.to_bytes())  # around the store, as the suite asks

    async def get(self, store: MummiStore, key: str) -> Any:
        return self.buffer_cls.from_bytes(store.io.load_files(store.namespace, key))

    def test_store_repr(self, store: MummiStore) -> None:
        assert repr(store) == f"MummiStore('mummi://{self.kind}/{store.namespace}')"

    def test_store_supports_writes(self, store: MummiStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: MummiStore) -> None:
        assert store.supports_listing


class TestOnSimple(_OnBackend):
    kind = "simple"


class TestOnTaridx(_OnBackend):
    kind = "taridx"


class TestOnRedis(_OnBackend):
    kind = "redis"


# --------------------------------------------------------------------------
# Real arrays: chunked, compressed, written by several processes
# --------------------------------------------------------------------------
def _write_one_chunk(kind: str, options: dict[str, Any], namespace: str, row: int) -> None:
    """A worker process: opens the array and writes its own chunk (row block ``row``)."""
    array = zarr.open_array(store=MummiStore(get_io(kind, **options), namespace), mode="r+")
    array[row * 10:(row + 1) * 10, :] = np.full((10, 50), row, dtype=np.int32) + np.arange(50, dtype=np.int32)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_chunked_compressed_array_written_by_four_processes(kind: str, request, tmp_path) -> None:
    io, namespace, options = _open(kind, request, tmp_path)
    array = zarr.create_array(store=MummiStore(io, namespace), shape=(40, 50), chunks=(10, 50), dtype="int32",
                              compressors=zarr.codecs.ZstdCodec(level=3), zarr_format=3)
    assert array.nchunks == 4
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_one_chunk, args=(kind, options, namespace, row)) for row in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    expected = np.repeat(np.arange(4, dtype=np.int32), 10)[:, None] + np.arange(50, dtype=np.int32)
    reopened = zarr.open_array(store=MummiStore(get_io(kind, **options), namespace, read_only=True))
    np.testing.assert_array_equal(reopened[:], expected)
    assert io.list_keys(namespace) == sorted(["zarr.json"] + [f"c/{row}/0" for row in range(4)])
    assert len(io.load_files(namespace, "c/0/0")) < 10 * 50 * 4  # compressed


@pytest.mark.parametrize("kind", BACKENDS)
def test_groups_and_sharded_arrays_read_back_through_byte_ranges(kind: str, request, tmp_path) -> None:
    """A group of arrays, one sharded (its reads are byte ranges of each shard), read by a new store."""
    io, namespace, options = _open(kind, request, tmp_path)
    root = zarr.open_group(store=MummiStore(io, namespace), mode="w")
    root.attrs["campaign"] = "ras"
    plain = root.create_array("energies", shape=(1000,), chunks=(100,), dtype="float64")
    plain[:] = np.linspace(0, 1, 1000)
    sharded = root.create_array("frames", shape=(64, 64), chunks=(8, 8), shards=(32, 32), dtype="uint16")
    sharded[:] = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    again = zarr.open_group(store=MummiStore(get_io(kind, **options), namespace), mode="r")
    assert again.attrs["campaign"] == "ras"
    np.testing.assert_array_equal(again["energies"][:], np.linspace(0, 1, 1000))
    np.testing.assert_array_equal(again["frames"][8:16, 40:48], np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)[8:16, 40:48])
    assert sorted(name for name, _ in again.members()) == ["energies", "frames"]


# --------------------------------------------------------------------------
# Failure paths and bad input
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_read_only_store_refuses_every_write(kind: str, request, tmp_path) -> None:
    io, namespace, _ = _open(kind, request, tmp_path)
    zarr.create_array(store=MummiStore(io, namespace), shape=(4,), chunks=(2,), dtype="int8")[:] = [1, 2, 3, 4]
    reader = MummiStore(io, namespace, read_only=True)
    array = zarr.open_array(store=reader, mode="r")
    with pytest.raises(ValueError, match="read-only"):
        array[:] = 0
    with pytest.raises(ValueError, match="read-only"):
        zarr.core.sync.sync(reader.delete("zarr.json"))
    with pytest.raises(ValueError, match="read-only"):
        zarr.core.sync.sync(reader.delete_dir(""))
    np.testing.assert_array_equal(zarr.open_array(store=reader, mode="r")[:], [1, 2, 3, 4])


@pytest.mark.parametrize("kind", BACKENDS)
def test_keys_that_would_escape_or_are_reserved_are_refused(kind: str, request, tmp_path) -> None:
    io, namespace, _ = _open(kind, request, tmp_path)
    store = MummiStore(io, namespace)
    value = cpu.Buffer.from_bytes(b"x")
    for bad in ["../outside", "/abs", "a//b", ".mummi_io.index", ""]:
        with pytest.raises(InvalidKeyError):
            zarr.core.sync.sync(store.set(bad, value))
        with pytest.raises(InvalidKeyError):
            zarr.core.sync.sync(store.get(bad, default_buffer_prototype()))
    assert io.list_keys(namespace) == []


def test_missing_keys_read_as_none_and_bad_arguments_are_named(tmp_path) -> None:
    store = MummiStore(get_io("taridx"), str(tmp_path / "ns"))
    prototype = default_buffer_prototype()
    assert zarr.core.sync.sync(store.get("c/0/0", prototype)) is None
    assert zarr.core.sync.sync(store.get_partial_values(prototype, [("zarr.json", None), ("c/9", None)])) == [None, None]
    with pytest.raises(TypeError, match="Buffer"):
        zarr.core.sync.sync(store.set("k", b"raw bytes"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="mummi_io IO"):
        MummiStore("taridx", str(tmp_path / "ns"))  # type: ignore[arg-type]


def test_glob_characters_in_keys_are_listed_literally(tmp_path) -> None:
    store = MummiStore(get_io("simple"), str(tmp_path / "ns"))
    value = cpu.Buffer.from_bytes(b"v")
    for key in ["a[1]/x", "a1/x", "a*/y", "ab/z"]:
        zarr.core.sync.sync(store.set(key, value))
    assert _listed(store.list_prefix("a[1]/")) == ["a[1]/x"]
    assert _listed(store.list_dir("a*")) == ["y"]


def _listed(iterator: Any) -> list[str]:
    return sorted(zarr.core.sync.sync(zarr.core.sync._collect_aiterator(iterator)))


def test_the_store_pickles_with_its_io(tmp_path) -> None:
    store = MummiStore(get_io("taridx"), str(tmp_path / "ns"), read_only=True)
    again = pickle.loads(pickle.dumps(store))
    assert again == store and again.read_only
    assert again != store.with_read_only(False)
