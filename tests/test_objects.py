"""Objects, groups and packs on every backend: serializers, integrity, environment policies, pickle."""

from __future__ import annotations

import json
import os
import struct
import tarfile
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mummi_io
from mummi_io import EnvironmentMismatchError, IntegrityError, KeyNotFoundError, PickleRefusedError, get_io
from mummi_io.objects import Pack, dump, load
from mummi_io.objects.serializers import Serializer, register_serializer
from mummi_io.objects.store import HEAD, MAGIC
from objects_helpers import Counter, Experiment, Opaque, Params

BACKENDS = ["simple", "taridx", "redis"]


@pytest.fixture
def io(io_each_backend):
    return io_each_backend


@pytest.fixture
def ns(tmp_path) -> str:
    return str(tmp_path / "objects")


#: label -> (object, serializer asked for or None, serializer used)
SAMPLES = {
    "npy": (np.arange(24, dtype=np.float32).reshape(2, 3, 4), None, "npy"),
    "npy-fortran": (np.asfortranarray(np.arange(6).reshape(2, 3)), None, "npy"),
    "npz": ({"positions": np.random.rand(5, 3), "ids": np.arange(5)}, None, "npz"),
    "bytes": (b"\x00\x01 raw", None, "bytes"),
    "str": ("unicodé ✓", None, "str"),
    "values": ({"a": [1, 2.5, None, True], "t": (1, "two"), "nested": {"x": "y"}}, None, "values"),
    "values-dataclass": (Experiment(Params(3, "p", [0.5]), tags=("a", "b")), None, "values"),
    "values-state": (Counter(7), None, "values"),
    "json": ({"a": [1, 2.5, None, True], "t": (1, "two"), "nested": {"x": "y"}}, "json", "json"),
    "dataclass": (Experiment(Params(3, "p", [0.5]), tags=("a", "b")), "dataclass", "dataclass"),
}


def _equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b) and a.dtype == b.dtype
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, Counter):
        return a.count == b.count and a.history == b.history and b.restored
    return a == b


@pytest.mark.parametrize("label", list(SAMPLES))
def test_each_serializer_round_trips(io, ns, label) -> None:
    obj, asked, expected = SAMPLES[label]
    meta = io.save_object(ns, label, obj, serializer=asked)
    assert meta["serializer"] == expected
    assert _equal(obj, io.load_object(ns, label))
    info = io.object_info(ns, label)
    assert info["serializer"] == expected and info["size"] == meta["size"] and len(info["blake3"]) == 64
    assert info["environment"]["python"].count(".") == 2


def test_npy_loads_zero_copy_and_aligned(io, ns) -> None:
    io.save_object(ns, "big", np.ones(1_000_000))
    loaded = io.load_object(ns, "big")
    assert not loaded.flags.owndata and loaded.flags.aligned
    # File backends read into fresh memory the array may own; redis returns immutable bytes.
    assert loaded.flags.writeable == (io.get_type() != "redis")
    assert loaded.sum() == 1_000_000


def test_metadata_records_packages_module_and_git_revision(io, ns) -> None:
    meta = io.save_object(ns, "exp", SAMPLES["dataclass"][0])
    assert meta["environment"]["module"] == "objects_helpers"
    assert meta["environment"]["class"] == "Experiment"
    npy = io.save_object(ns, "arr", np.zeros(3))
    assert npy["environment"]["packages"]["numpy"] == np.__version__
    here = io.save_object(ns, "pack", Pack.__new__(Pack).__class__.__name__)
    assert here["environment"]["module"] == "builtins"


def test_object_in_a_git_checkout_records_the_revision(io, ns, tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text("0123456789abcdef0123456789abcdef01234567\n")
    (repo / "modelcode.py").write_text("from dataclasses import dataclass\n@dataclass\nclass Model:\n    k: int\n")
    monkeypatch.syspath_prepend(str(repo))
    import modelcode

    meta = io.save_object(ns, "model", modelcode.Model(2))
    assert meta["environment"]["git_revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert io.load_object(ns, "model") == modelcode.Model(2)


def test_tampered_value_is_caught(io, ns) -> None:
    io.save_object(ns, "arr", np.arange(100))
    blob = bytearray(io.load_files(ns, "arr"))
    blob[-5] ^= 0xFF
    io.save_files(ns, "arr", bytes(blob))
    with pytest.raises(IntegrityError, match="blake3"):
        io.load_object(ns, "arr")
    assert io.load_object(ns, "arr", verify=False)[0] == 0
    io.save_files(ns, "plain", b"not an object")
    with pytest.raises(IntegrityError, match="not a mummi_io object"):
        io.load_object(ns, "plain")


def _fake_versions(io, ns: str, key: str, packages: dict[str, str], python: str | None = None) -> None:
    blob = io.load_files(ns, key)
    _, length = HEAD.unpack_from(blob)
    meta = json.loads(blob[HEAD.size:HEAD.size + length])
    meta["environment"]["packages"].update(packages)
    if python:
        meta["environment"]["python"] = python
    encoded = json.dumps(meta).encode()
    io.save_files(ns, key, HEAD.pack(MAGIC, len(encoded)) + encoded + blob[HEAD.size + length:])


def test_version_mismatch_under_each_policy(io, ns) -> None:
    io.save_object(ns, "arr", np.arange(4))
    _fake_versions(io, ns, "arr", {"numpy": "0.0.1"}, python="2.7.18")
    with pytest.raises(EnvironmentMismatchError) as caught:
        io.load_object(ns, "arr", env="raise")
    assert ("numpy", "0.0.1", np.__version__) in caught.value.differences
    assert "python" in str(caught.value) and "numpy 0.0.1" in str(caught.value)
    with pytest.warns(mummi_io.objects.EnvironmentMismatchWarning, match="numpy"):
        assert io.load_object(ns, "arr", env="warn")[3] == 3
    with pytest.warns(mummi_io.objects.EnvironmentMismatchWarning):
        io.load_object(ns, "arr")  # auto: warn for a safe serializer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert io.load_object(ns, "arr", env="ignore")[1] == 1
    with pytest.raises(ValueError):
        io.load_object(ns, "arr", env="sometimes")


def test_pickle_only_on_request_and_loading_only_when_opted_in(io, ns) -> None:
    with pytest.raises(PickleRefusedError, match="allow_pickle=True"):
        io.save_object(ns, "opaque", Opaque())
    assert not io.file_exists(ns, "opaque")
    io.save_object(ns, "opaque", Opaque(), allow_pickle=True)
    assert io.object_info(ns, "opaque")["serializer"] == "pickle"  # readable without loading
    with pytest.raises(PickleRefusedError, match="allow_pickle=True"):
        io.load_object(ns, "opaque")
    assert io.load_object(ns, "opaque", allow_pickle=True).function is len
    _fake_versions(io, ns, "opaque", {}, python="2.7.18")
    with pytest.raises(EnvironmentMismatchError):  # auto: raise for pickle, before unpickling
        io.load_object(ns, "opaque", allow_pickle=True)
    with pytest.raises(PickleRefusedError):
        io.save_object(ns, "forced", [1, 2], serializer="pickle")


def test_user_serializer(io, ns, monkeypatch) -> None:
    from mummi_io.objects import serializers

    monkeypatch.setattr(serializers, "_REGISTRY", list(serializers._REGISTRY))  # registered for this test only

    class Complex(Serializer):
        name = "complex"

        def accepts(self, obj):
            return type(obj) is complex

        def dump(self, obj):
            return struct.pack("<dd", obj.real, obj.imag)

        def load(self, payload):
            return complex(*struct.unpack("<dd", payload))

    register_serializer(Complex())
    assert io.save_object(ns, "z", 1 + 2j)["serializer"] == "complex"
    assert io.load_object(ns, "z") == 1 + 2j


def test_missing_object(io, ns) -> None:
    with pytest.raises(KeyNotFoundError):
        io.load_object(ns, "ghost")
    with pytest.raises(KeyNotFoundError):
        io.object_info(ns, "ghost")


# ------------------------------------------------------------------- groups
def test_group_is_a_lazy_mutable_mapping(io, ns) -> None:
    group = io.group(ns)
    group["params"] = Params(1)
    group["arr"] = np.arange(3)
    io.save_object(ns, "opaque", Opaque(), allow_pickle=True)
    sub = group.create_group("run-1")
    sub["result"] = {"energy": -1.5}
    deeper = sub.create_group("detail")
    deeper["x"] = "deep"
    assert sorted(group) == ["arr", "opaque", "params", "run-1"]  # listing loads nothing (pickle is never touched)
    assert len(group) == 4 and "run-1" in group and "nope" not in group
    assert group["params"] == Params(1)
    assert group["run-1"]["result"] == {"energy": -1.5}
    assert group["run-1"]["detail"]["x"] == "deep"
    assert group.info("arr")["serializer"] == "npy"
    # The group list is not a key (on simple, a sub-group's values are files below: nested keys).
    assert [key for key in io.list_keys(ns) if "/" not in key] == ["arr", "opaque", "params"]
    del group["run-1"]
    assert "run-1" not in group and list(io.group(sub.namespace)) == []
    del group["arr"]
    with pytest.raises(KeyError):
        del group["arr"]
    with pytest.raises(KeyError):
        group["never"]


# -------------------------------------------------------------------- packs
def test_pack_slots_dedup_and_metadata(tmp_path) -> None:
    path = tmp_path / "model.pack"
    big = np.random.rand(50_000)  # 400 KB
    with Pack(path) as pack:
        info = pack.dump("object-1", big)
        size_one = os.path.getsize(path)
        pack.dump("alias", big.copy())  # the same data: stored once
        size_two = os.path.getsize(path)
        pack.dump("object-2", {"k": "v"})
        assert "object-1" in pack and len(pack) == 3
        assert pack.slots_info["alias"].serialized_sha256_hash == info.serialized_sha256_hash
        assert pack.slots_info["object-2"].serializer == "values"
        created = pack.manifest_info.created_at
    assert size_two - size_one < 10_000, (size_one, size_two)  # a second 400 KB copy would add 400 KB
    with Pack(path) as pack:
        assert pack.manifest_info.created_at == created
        assert np.array_equal(pack.load("alias"), big)
        pack.remove("object-1")
        assert np.array_equal(pack.load("alias"), big)  # still shared by the alias
        pack.remove("alias")
        with pytest.raises(KeyError):
            pack.load("alias")
        assert list(pack) == ["object-2"]
    with tarfile.open(path) as archive:  # a plain tar underneath
        assert any(m.name.startswith("blob-") for m in archive)


def test_pack_over_an_open_file_and_compat_functions(tmp_path) -> None:
    with open(tmp_path / "thefile", "w+b") as handle:
        with Pack(handle) as pack:
            pack.dump("object-1", Params(2))
    with open(tmp_path / "thefile", "r+b") as handle:
        with Pack(handle) as pack:
            assert pack.load("object-1") == Params(2)
    dump(Experiment(Params(9)), tmp_path / "compat")
    assert load(tmp_path / "compat") == Experiment(Params(9))


# ------------------------------------------------------------ pyiron paths
def test_save_load_delete_by_path(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MUMMI_IO_BACKEND", raising=False)
    target = tmp_path / "store" / "exp"
    meta = mummi_io.save(Experiment(Params(4)), target)
    assert meta["serializer"] == "values"
    assert json.loads(target.read_bytes()[HEAD.size:HEAD.size + HEAD.unpack_from(target.read_bytes())[1]])
    assert mummi_io.load(target) == Experiment(Params(4))
    mummi_io.delete(target)
    mummi_io.delete(target)  # twice: a no-op
    assert not target.exists()
    assert mummi_io.save([1, 2], tmp_path / "t.tar" / "k", backend="taridx")["serializer"] == "values"
    assert mummi_io.load(tmp_path / "t.tar" / "k", backend="taridx") == [1, 2]


@pytest.mark.parametrize("digest", ["blake3", "sha256", "xxh3_128"])
@pytest.mark.parametrize("size", [1000, 3 << 20])  # below and above the size BLAKE3 hashes on every core
def test_every_digest_round_trips_and_catches_a_flipped_bit(io, ns, digest: str, size: int) -> None:
    """Objects written with any digest load (sha256 was the default before blake3), and a changed bit fails."""
    array = np.arange(size // 8, dtype=np.float64)
    meta = io.save_object(ns, "a", array, digest=digest)
    assert meta["digest"] == digest and io.object_info(ns, "a")[digest] == meta[digest]
    assert np.array_equal(io.load_object(ns, "a"), array)
    blob = bytearray(io.load_files(ns, "a"))
    blob[len(blob) // 2] ^= 4
    io.save_files(ns, "a", bytes(blob))
    with pytest.raises(IntegrityError, match=digest):
        io.load_object(ns, "a")


def test_the_default_digest_is_blake3_and_packs_keep_mlios_sha256(io, ns, tmp_path) -> None:
    assert io.save_object(ns, "d", [1, 2])["digest"] == "blake3"
    with Pack(tmp_path / "p.pack") as pack:
        info = pack.dump("s", np.arange(10))
    assert len(info.serialized_sha256_hash) == 64
    with Pack(tmp_path / "p.pack") as pack:
        assert np.array_equal(pack.load("s"), np.arange(10))


def test_fast_digest_round_trip_and_tamper(io, ns) -> None:
    meta = io.save_object(ns, "fast", np.arange(1000.0), digest="xxh3_128")
    assert meta["digest"] == "xxh3_128" and len(meta["xxh3_128"]) == 32 and "sha256" not in meta
    assert io.load_object(ns, "fast")[999] == 999.0
    blob = bytearray(io.load_files(ns, "fast"))
    blob[-1] ^= 1
    io.save_files(ns, "fast", bytes(blob))
    with pytest.raises(IntegrityError, match="xxh3_128"):
        io.load_object(ns, "fast")
    with pytest.raises(ValueError, match="digest"):
        io.save_object(ns, "x", 1, digest="md5")


def test_pack_and_groups_survive_a_taridx_reindex(tmp_path) -> None:
    path = tmp_path / "model.pack"
    with Pack(path) as pack:
        pack.dump("w", np.arange(10))
    os.unlink(str(path) + ".idx")  # the index is rebuilt from the tar, manifest included
    with Pack(path) as pack:
        assert list(pack) == ["w"] and pack.load("w")[9] == 9
    with get_io("taridx") as io:
        group = io.group(str(tmp_path / "g"))
        group.create_group("sub")["x"] = 1
        io.reindex(str(tmp_path / "g"))
        assert list(io.group(str(tmp_path / "g"))) == ["sub"]


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["blake3", "sha256", "xxh3_128"]), st.sampled_from([10, 3000, (1 << 20) + 8]),
       st.lists(st.integers(1, 1 << 21), min_size=1, max_size=8))
def test_a_streamed_digest_is_the_digest_however_the_value_is_cut(digest: str, size: int, cuts: list[int]) -> None:
    """StreamingDigest sees a stored object in pieces (the head may be cut anywhere) and hashes exactly the payload."""
    from mummi_io.objects.store import StreamingDigest, decode_head, encode_object

    value, meta = encode_object(np.frombuffer(bytes(range(256)) * (size // 256 + 1), np.uint8)[:size], digest=digest)
    blob = b"".join(bytes(part) for part in value)
    stream = StreamingDigest()
    position = 0
    for cut in cuts + [len(blob)]:
        stream.feed(memoryview(blob)[position:position + cut])
        position = min(len(blob), position + cut)
    stream.feed(memoryview(blob)[position:])
    assert stream.result() == (digest, meta[digest])
    assert decode_head(blob, "x")[0][digest] == meta[digest]


def test_a_streamed_digest_gives_up_on_what_is_not_an_object_and_load_object_says_so(io, ns) -> None:
    from mummi_io.objects.store import StreamingDigest

    stream = StreamingDigest()
    stream.feed(memoryview(b"not an object at all, and long enough"))
    assert stream.result() is None
    io.save_files(ns, "plain", b"not an object at all, and long enough")
    with pytest.raises(IntegrityError, match="not a mummi_io object"):
        io.load_object(ns, "plain")


@pytest.mark.parametrize("digest", ["blake3", "sha256"])
def test_objects_read_in_many_pieces_load_and_catch_a_flipped_bit(io, ns, monkeypatch, digest: str) -> None:
    """load_object hashes a large object while it is read, piece by piece: the same answers as hashing after."""
    import mummi_io.core.fs

    monkeypatch.setattr(mummi_io.core.fs, "STREAM_PIECE", 4099)  # many pieces, cut inside the head too
    array = np.arange((3 << 20) // 8, dtype=np.float64)
    io.save_object(ns, "big", array, digest=digest)
    assert np.array_equal(io.load_object(ns, "big"), array)
    blob = bytearray(io.load_files(ns, "big"))
    blob[-12345] ^= 1
    io.save_files(ns, "big", bytes(blob))
    with pytest.raises(IntegrityError, match=digest):
        io.load_object(ns, "big")
    assert io.load_object(ns, "big", verify=False)[0] == 0.0
