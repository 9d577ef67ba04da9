"""Packs: many handles and processes on one file, file objects of every kind, MLIO's examples and MLIO's files."""

from __future__ import annotations

import hashlib
import io as stdio
import json
import multiprocessing
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mummi_io import IntegrityError, PickleRefusedError, ReadOnlyError, UnsupportedFormatError
from mummi_io.objects import Pack, dump, import_mlio_pack, load
from objects_helpers import Params, Point


# ------------------------------------------------------------ MLIO's own examples, imports changed
def test_mlio_readme_examples_run_with_only_the_import_changed(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    m1, m2 = Params(1, "m1", [0.5]), {"weights": np.arange(3.0), "bias": np.float32(0.25)}
    # Store objects in a new or existing pack file
    with open("thefile", "w+b") as f:
        with Pack(f) as pck:
            pck.dump("object-1", m1)
            pck.dump("object-2", m2)
    # Recover objects
    with open("thefile", "r+b") as f:
        with Pack(f) as pck:
            if "object-1" not in pck:
                raise RuntimeError("Cannot find object-1")
            m1_recovered = pck.load("object-1")
            if "object-2" not in pck:
                raise RuntimeError("Cannot find object-2")
            m2_recovered = pck.load("object-2")
            # Delete one object
            pck.remove("object-1")
    assert m1_recovered == m1
    assert np.array_equal(m2_recovered["weights"], m2["weights"]) and type(m2_recovered["bias"]) is np.float32
    # Query metadata
    with open("thefile", "r+b") as f:
        with Pack(f) as pck:
            assert pck.manifest_info.created_at <= pck.manifest_info.updated_at
            assert {slot_id: slot_info.serializer for slot_id, slot_info in pck.slots_info.items()} == {
                "object-2": "values"}
            assert all(len(info.serialized_sha256_hash) == 64 for info in pck.slots_info.values())
    # Compatibility API, instead of pickle's
    model = Point(1, 2)
    with open("thefile2", "w+b") as f:
        dump(model, f)
    with open("thefile2", "r+b") as f:
        model_recovered = load(f)
    assert model_recovered == model and type(model_recovered) is Point


# ------------------------------------------------------------ handles and processes
def test_two_handles_on_one_pack_lose_no_slot(tmp_path) -> None:
    path = tmp_path / "shared.pack"
    with Pack(path) as first, Pack(path) as second:
        first.dump("a", 1)
        second.dump("b", 2)  # its handle was opened before "a" existed
        first.dump("c", np.int64(3))
        second.remove("a")
        assert sorted(first) == ["b", "c"] and second.load("c") == 3
    with Pack(path) as again:
        assert sorted(again) == ["b", "c"] and type(again.load("c")) is np.int64


def _dump_slots(path: str, worker: int, count: int) -> None:
    with Pack(path) as pack:
        for i in range(count):
            pack.dump(f"w{worker}-{i}", {"worker": worker, "i": i})
            if i % 3 == 0:
                pack.dump("shared", [worker, i])  # everyone rewrites one slot too


def test_processes_dumping_into_one_pack_lose_no_slot(tmp_path) -> None:
    path = str(tmp_path / "busy.pack")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_dump_slots, args=(path, worker, 25)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(300)
    assert [process.exitcode for process in workers] == [0, 0, 0, 0]
    with Pack(path) as pack:
        assert len(pack) == 4 * 25 + 1
        assert all(pack.load(f"w{w}-{i}") == {"worker": w, "i": i} for w in range(4) for i in range(25))
        assert pack.load("shared")[1] in range(25)
    with tarfile.open(path) as archive:  # blobs no slot uses were dropped
        blobs = {m.name for m in archive if m.name.startswith("blob-")}
    with Pack(path) as pack:
        assert {f"blob-{info.serializer}-{info.serialized_sha256_hash}" for info in pack.slots_info.values()} <= blobs


# ------------------------------------------------------------ file objects
def test_a_bytesio_holds_a_pack(tmp_path) -> None:
    buffer = stdio.BytesIO()
    with Pack(buffer) as pack:
        pack.dump("x", np.arange(4))
        pack.dump("y", {"k": (1, 2)})
    assert tarfile.is_tarfile(stdio.BytesIO(buffer.getvalue()))
    copy = stdio.BytesIO(buffer.getvalue())
    with Pack(copy) as pack:
        assert pack.load("y") == {"k": (1, 2)} and np.array_equal(pack.load("x"), np.arange(4))
        pack.remove("x")
    with Pack(stdio.BytesIO(copy.getvalue())) as pack:
        assert list(pack) == ["y"]


def test_a_read_only_file_object_is_only_read(tmp_path) -> None:
    path = tmp_path / "ro.pack"
    with Pack(path) as pack:
        pack.dump("kept", "value")
    before = path.read_bytes()
    with open(path, "rb") as handle:
        with Pack(handle) as pack:
            assert pack.load("kept") == "value"
            with pytest.raises(ReadOnlyError, match="r\\+b"):
                pack.dump("new", 1)
            with pytest.raises(ReadOnlyError):
                pack.remove("kept")
    assert path.read_bytes() == before


# ------------------------------------------------------------ MLIO's files
def _mlio_pack(path: Path, slots: dict[str, tuple[str, bytes]], damage: str | None = None) -> None:
    """An MLIO pack as MLIO writes one: a zip, manifest.json (version 2), one '<sha256>.slot' per payload."""
    manifest = {"version": 2, "meta": {"created_at": 1.7e9, "updated_at": 1.7e9, "python": "3.11"},
                "dependencies": {"module-version:numpy-~=" + np.__version__: {
                    "type": "module-version", "module_name": "numpy", "version_specs": "~=" + np.__version__}},
                "slots": {}}
    with zipfile.ZipFile(path, "w") as archive:
        for slot, (serializer, payload) in slots.items():
            digest = hashlib.sha256(payload).hexdigest()
            if f"{digest}.slot" not in archive.namelist():  # slots with equal payloads share one blob
                archive.writestr(f"{digest}.slot", payload if damage != slot else payload[:-1] + b"!")
            manifest["slots"][slot] = {"serialized_sha256_hash": digest, "serializer": serializer,
                                       "dependencies": list(manifest["dependencies"])}
        archive.writestr("manifest.json", json.dumps(manifest))


def test_an_mlio_pack_comes_over_verified_and_loads_with_the_opt_in(tmp_path) -> None:
    source = tmp_path / "model.mlpack"
    _mlio_pack(source, {"model": ("default", pickle.dumps({"coef": np.arange(3)})),
                        "alias": ("default", pickle.dumps({"coef": np.arange(3)}))})
    before = source.read_bytes()
    with pytest.raises(PickleRefusedError, match="alias"):
        import_mlio_pack(source, tmp_path / "refused.pack")
    assert not (tmp_path / "refused.pack").exists()
    imported = import_mlio_pack(source, tmp_path / "model.pack", allow_pickle=True)
    assert sorted(imported) == ["alias", "model"] and imported["model"].serializer == "pickle"
    assert source.read_bytes() == before  # only read
    with Pack(tmp_path / "model.pack") as pack:
        with pytest.raises(PickleRefusedError):
            pack.load("model")
    with Pack(tmp_path / "model.pack", allow_pickle=True) as pack:
        assert np.array_equal(pack.load("model")["coef"], np.arange(3))
        assert pack.slots_info["alias"].serialized_sha256_hash == pack.slots_info["model"].serialized_sha256_hash


def test_a_damaged_or_foreign_mlio_pack_imports_nothing(tmp_path) -> None:
    damaged = tmp_path / "damaged.mlpack"
    _mlio_pack(damaged, {"good": ("default", pickle.dumps(1)), "bad": ("default", pickle.dumps(2))}, damage="bad")
    with pytest.raises(IntegrityError, match="'bad'"):
        import_mlio_pack(damaged, tmp_path / "out.pack", allow_pickle=True)
    assert not (tmp_path / "out.pack").exists()
    gensim = tmp_path / "gensim.mlpack"
    _mlio_pack(gensim, {"w2v": ("gensim-word2vec", b"...")})
    with pytest.raises(UnsupportedFormatError, match="gensim-word2vec"):
        import_mlio_pack(gensim, tmp_path / "out.pack", allow_pickle=True)
    not_a_zip = tmp_path / "plain.bin"
    not_a_zip.write_bytes(b"not a zip at all")
    with pytest.raises(UnsupportedFormatError):
        import_mlio_pack(not_a_zip, tmp_path / "out.pack", allow_pickle=True)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(UnsupportedFormatError, match="manifest.json"):
        import_mlio_pack(other_zip, tmp_path / "out.pack", allow_pickle=True)


def test_equal_payload_bytes_of_two_serializers_are_two_objects(tmp_path) -> None:
    """bytes b"[1, 2]", str "[1, 2]" and JSON [1, 2] have one payload; each slot still loads its own type."""
    with Pack(tmp_path / "p.pack") as pack:
        pack.dump("a", b"[1, 2]")
        pack.dump("b", "[1, 2]")
        pack.dump("c", [1, 2], serializer="json")
        pack.dump("d", [1, 2], serializer="pickle", allow_pickle=True)
        pack.dump("e", [1, 2])  # values: pickle's bytes exactly, but no pickle needed to load it
        assert (pack.load("a"), pack.load("b"), pack.load("c"), pack.load("e")) == (b"[1, 2]", "[1, 2]", [1, 2], [1, 2])
        pack.remove("d")
        assert pack.load("e") == [1, 2]


def test_two_packs_on_one_bytesio_lose_no_slot() -> None:
    buffer = stdio.BytesIO()
    first, second = Pack(buffer), Pack(buffer)
    first.dump("a", 1)
    second.dump("b", 2)
    first.close()
    second.close()
    with Pack(stdio.BytesIO(buffer.getvalue())) as pack:
        assert sorted(pack) == ["a", "b"]


def test_a_damaged_manifest_is_an_integrity_error(tmp_path) -> None:
    from mummi_io import get_io
    from mummi_io.objects.pack import MANIFEST_KEY

    path = tmp_path / "p.pack"
    with Pack(path) as pack:
        pack.dump("a", 1)
    with get_io("taridx", suffix="") as io:
        io.backend.write_many(str(path), [(MANIFEST_KEY, b'{"slots": []}')])
    with pytest.raises(IntegrityError, match="manifest"):
        Pack(path)


@pytest.mark.parametrize("manifest", [
    {"version": 2, "slots": [["a", "b"]]},
    {"version": 2, "slots": {"a": "not a map"}},
    {"version": 2, "slots": {"a": {"serializer": "default", "serialized_sha256_hash": "0" * 64,
                                   "dependencies": ["x"]}}, "dependencies": ["x"]},
    {"version": 2, "slots": {"a": {"serializer": "default", "serialized_sha256_hash": "0" * 64}}},
])
def test_hostile_mlio_manifests_are_unsupported_formats(tmp_path, manifest) -> None:
    source = tmp_path / "odd.mlpack"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
    with pytest.raises(UnsupportedFormatError):
        import_mlio_pack(source, tmp_path / "out.pack", allow_pickle=True)
    assert not (tmp_path / "out.pack").exists()


def test_an_mlio_import_never_replaces_a_slot_silently(tmp_path) -> None:
    source = tmp_path / "model.mlpack"
    _mlio_pack(source, {"object-1": ("default", pickle.dumps("theirs"))})
    with Pack(tmp_path / "mine.pack") as pack:
        pack.dump("object-1", "mine")
    with pytest.raises(ValueError, match="already has the slots"):
        import_mlio_pack(source, tmp_path / "mine.pack", allow_pickle=True)
    with Pack(tmp_path / "mine.pack") as pack:
        assert pack.load("object-1") == "mine"
    import_mlio_pack(source, tmp_path / "mine.pack", allow_pickle=True, overwrite=True)
    with Pack(tmp_path / "mine.pack", allow_pickle=True) as pack:
        assert pack.load("object-1") == "theirs"
