"""Parameter-based persisting, sync between backends, and the file registry."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mummi_io import IntegrityError, InvalidArgumentError, KeyNotFoundError, get_io
from mummi_io.filer import Filer, SyncedOverwriteError
from mummi_io.persist import InvalidPayloadError
from mummi_io.sync import archive, sync
from persist_helpers import OutlierParams, Outliers, Points, PointsParams


# ------------------------------------------------------------------ persist
@pytest.mark.parametrize("backend", ["simple", "taridx"])
def test_generate_then_load_by_parameters(tmp_path, backend) -> None:
    io = get_io(backend)
    ns = str(tmp_path / "artifacts")
    first = Points(io, ns, PointsParams(n=100, random_state=10))
    generated = first.load_generate()
    again = Points(io, ns, PointsParams(n=100, random_state=10))
    assert again.exists() and again.key == first.key
    np.testing.assert_array_equal(again.load(), generated)
    params = json.loads(io.load_files(ns, first.params_key))
    assert params == {"name": "Points", "params": {"n": 100, "random_state": 10}, "dependencies": []}


def test_keys_follow_own_and_upstream_parameters(tmp_path) -> None:
    io = get_io("simple")
    ns = str(tmp_path)
    base = Points(io, ns, PointsParams(n=50))
    assert Points(io, ns, PointsParams(n=50)).key == base.key
    assert Points(io, ns, PointsParams(n=51)).key != base.key
    assert Points(io, ns, PointsParams(n=50, random_state=1)).key != base.key
    a = Outliers(io, ns, OutlierParams(2.0), points=Points(io, ns, PointsParams(n=50)))
    b = Outliers(io, ns, OutlierParams(2.0), points=Points(io, ns, PointsParams(n=60)))
    c = Outliers(io, ns, OutlierParams(3.0), points=Points(io, ns, PointsParams(n=50)))
    assert len({a.key, b.key, c.key}) == 3
    assert a.key.startswith("Outliers-") and a.params_tree["dependencies"][0]["params"]["n"] == 50


def test_upstream_is_generated_first_and_reused(tmp_path) -> None:
    io = get_io("simple")
    ns = str(tmp_path)
    outliers = Outliers(io, ns, OutlierParams(2.0), points=Points(io, ns, PointsParams(n=200)))
    result = outliers.load_generate()
    assert result["outliers"] >= 0 and 0.3 < result["mean"] < 0.7
    assert sorted(io.list_keys(ns, "*.params.json")) == sorted([outliers.params_key, outliers.points.params_key])
    fresh = Outliers(io, ns, OutlierParams(2.0), points=Points(io, ns, PointsParams(n=200)))
    assert fresh.load() == result


def test_load_without_payload_and_validation(tmp_path) -> None:
    io = get_io("simple")
    with pytest.raises(KeyNotFoundError):
        Points(io, str(tmp_path), PointsParams(n=5)).load()
    bad = Points(io, str(tmp_path), PointsParams(n=5))
    bad._generate_payload = lambda **_: np.zeros(3)  # type: ignore[method-assign]
    with pytest.raises(InvalidPayloadError, match="expected 5"):
        bad.generate()
    assert not bad.exists()
    with pytest.raises(ValueError):
        Points(io, str(tmp_path), {"n": 5})  # type: ignore[arg-type]


def _generate_concurrently(ns: str, marker: str) -> None:
    Points(get_io("simple"), ns, PointsParams(n=1000)).load_generate(marker=marker, delay=0.5)


def test_concurrent_generation_happens_once(tmp_path) -> None:
    ns, marker = str(tmp_path / "shared"), str(tmp_path / "generations")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_generate_concurrently, args=(ns, marker)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert len(Path(marker).read_text().split()) == 1  # one process generated, three loaded
    assert Points(get_io("simple"), ns, PointsParams(n=1000)).load().shape == (1000,)


# --------------------------------------------------------------------- sync
def _fill(io, ns, count, size=100):
    keys = [f"k{i:05d}" for i in range(count)]
    io.save_files(ns, keys, [os.urandom(size) for _ in keys])
    return keys


def test_sync_is_incremental_and_verified(tmp_path) -> None:
    source, destination = get_io("simple"), get_io("taridx")
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst.tar")
    keys = _fill(source, src, 300)
    first = sync(source, src, destination, dst)
    assert (first.copied, first.skipped) == (300, 0)
    second = sync(source, src, destination, dst)
    assert (second.copied, second.skipped) == (0, 300)  # nothing copied the second time
    source.save_files(src, ["k00007", "new"], [b"changed", b"new"])
    third = sync(source, src, destination, dst)
    assert (third.copied, third.skipped) == (2, 299)
    assert destination.load_files(dst, keys) == source.load_files(src, keys)


def test_mirror_deletes_extras_and_move_drains(tmp_path) -> None:
    io = get_io("simple")
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    _fill(io, src, 20)
    io.save_files(dst, "stale", b"x")
    report = sync(io, src, io, dst, mode="mirror")
    assert report.deleted == 1 and io.list_keys(dst) == io.list_keys(src)
    moved = sync(io, src, io, str(tmp_path / "third"), mode="move")
    assert moved.removed_from_source == 20 and io.list_keys(src) == []
    with pytest.raises(ValueError):
        sync(io, src, io, dst, mode="teleport")


def _slow_sync(src: str, dst: str) -> None:
    sync(get_io("simple"), src, get_io("taridx"), dst, batch=10, progress=lambda n: time.sleep(0.02))


def test_sync_killed_midway_then_resumed_ends_identical(tmp_path) -> None:
    source = get_io("simple")
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst.tar")
    keys = _fill(source, src, 500, size=2000)
    worker = multiprocessing.get_context("spawn").Process(target=_slow_sync, args=(src, dst))
    worker.start()
    destination = get_io("taridx")
    deadline = time.monotonic() + 60
    while len(destination.list_keys(dst)) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(30)
    partial = len(destination.list_keys(dst))
    assert 0 < partial < 500
    resumed = sync(source, src, destination, dst)
    assert resumed.skipped >= partial - 10 and resumed.copied + resumed.skipped == 500
    assert destination.load_files(dst, keys) == source.load_files(src, keys)


def test_archive_removes_only_verified_keys(tmp_path, redis_three) -> None:
    options = {"nodes": [s.name for s in redis_three], "password": redis_three[0].password}
    source = get_io("redis", **options)
    campaign = f"campaign-{tmp_path.name}"
    keys = _fill(source, campaign, 1000)
    values = source.load_files(campaign, keys)
    archive_path = str(tmp_path / "campaign.tar")
    report = archive(source, campaign, get_io("taridx"), archive_path)
    assert report.copied == 1000 and report.removed_from_source == 1000
    assert source.list_keys(campaign) == []
    assert get_io("taridx").load_files(archive_path, keys) == values


def test_archive_keeps_sources_when_the_copy_is_bad(tmp_path) -> None:
    io = get_io("simple")
    src = str(tmp_path / "src")
    _fill(io, src, 10)

    class Corrupting(type(io.backend)):  # a destination that damages what it stores
        def write_many(self, namespace, items):
            super().write_many(namespace, [(k, bytes(v)[:-1] + b"!") for k, v in items])

    broken = type(io)(Corrupting())
    with pytest.raises(IntegrityError):
        archive(io, src, broken, str(tmp_path / "dst"))
    assert len(io.list_keys(src)) == 10  # nothing was removed


# ----------------------------------------------------------------- registry
def test_filer_follows_the_seed_workflow(tmp_path) -> None:
    remote = get_io("taridx")
    filer = Filer(str(tmp_path / "models"), remote, str(tmp_path / "remote.tar"))
    model = {"weights": [1.0, 2.0], "name": "m"}
    assert filer.show_files() == "[no files exist]"
    filer.dump(model, "my_model", push=False)
    assert filer.show_files() == "my_model (local)"
    filer.push("my_model")
    assert filer.show_files() == "my_model (synced)"
    registry = (tmp_path / "models" / ".mummi_registry").read_text()
    assert "my_model" in registry and "synced" in registry and len(registry.split("\n")[1].split()) == 3
    with pytest.raises(SyncedOverwriteError):
        filer.dump(model, "my_model", overwrite=True)

    # Another user clones the repository (registry only) and loads: pulled from the remote.
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".mummi_registry").write_text(registry)
    other = Filer(str(clone), remote, str(tmp_path / "remote.tar"))
    assert other.load("my_model") == model
    assert (clone / "my_model").exists()

    filer.dump({"draft": True}, "draft")
    with pytest.raises(ValueError):
        filer.dump({"draft": 2}, "draft")
    filer.dump({"draft": 2}, "draft", overwrite=True)
    assert filer.push_all() == ["draft"]
    filer.dump([1], "scratch")
    assert filer.remove_locals() == ["scratch"]
    filer.remove("my_model")
    assert remote.file_exists(str(tmp_path / "remote.tar"), "my_model")  # not removed remotely by default
    filer.remove("draft", remove_remote=True)
    assert not remote.file_exists(str(tmp_path / "remote.tar"), "draft")
    assert filer.show_files() == "[no files exist]"


# --------------------------------------------------- a move never lands on its own source
@pytest.mark.parametrize("kind", ["simple", "taridx"])
@pytest.mark.parametrize("spelling", ["same", "absolute", "link"])
def test_a_move_onto_its_own_source_is_refused_and_removes_nothing(tmp_path, monkeypatch, kind, spelling) -> None:
    """``archive run run`` (a typo, or the same storage spelled another way) must not empty ``run``."""
    monkeypatch.chdir(tmp_path)
    io = get_io(kind)
    source = "run.tar" if kind == "taridx" else "run"
    io.save_files(source, ["a", "b/c"], [b"A", b"C"])
    if spelling == "link":
        os.symlink(source, "alias" + (".tar" if kind == "taridx" else ""))
    target = {"same": source, "absolute": os.path.abspath(source),
              "link": "alias" + (".tar" if kind == "taridx" else "")}[spelling]
    for move in (lambda: archive(io, source, get_io(kind), target), lambda: sync(io, source, io, target, mode="move")):
        with pytest.raises(InvalidArgumentError, match="itself"):
            move()
    assert io.load_files(source, ["a", "b/c"]) == [b"A", b"C"]
    # a move of keys into the same storage spelled another way is a rename in place
    io.move_keys(source, "a", "a2", dest_namespace=target)
    io.move_keys(source, "b/c", dest_namespace=target)
    assert io.list_keys(source) == ["a2", "b/c"] and io.load_files(source, "a2") == b"A"


def test_the_archive_command_refuses_a_destination_that_is_its_source(tmp_path) -> None:
    io = get_io("simple")
    source = str(tmp_path / "run")
    io.save_files(source, ["a", "b"], [b"A", b"B"])
    for command in (["archive", source, source], ["sync", "--move", source, source + "/."]):
        result = subprocess.run([sys.executable, "-m", "mummi_io.cli", *command], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode != 0 and "itself" in result.stderr, (command, result)
    assert io.load_files(source, ["a", "b"]) == [b"A", b"B"]


def test_archive_reads_an_existing_copy_back_before_removing_the_source(tmp_path) -> None:
    """A destination copy whose index says "identical" but whose bytes are damaged must not cost the original."""
    import tarfile

    source, destination = get_io("simple"), get_io("taridx")
    run, arch = str(tmp_path / "run"), str(tmp_path / "arch.tar")
    source.save_files(run, ["a", "b"], [b"A" * 1000, b"B" * 1000])
    destination.save_files(arch, ["a", "b"], [b"A" * 1000, b"B" * 1000])
    destination.close()
    with tarfile.open(arch) as members:
        offset = [m for m in members if m.name == "a"][0].offset_data
    with open(arch, "r+b") as handle:  # one flipped data byte: the index still records the right CRC-32
        handle.seek(offset + 10)
        handle.write(b"X")
    with pytest.raises(IntegrityError, match="nothing of this batch was removed"):
        archive(source, run, get_io("taridx"), arch)
    assert source.load_files(run, ["a", "b"]) == [b"A" * 1000, b"B" * 1000]


def test_a_destination_stored_inside_its_source_is_refused(tmp_path, monkeypatch) -> None:
    """Archiving ``run`` into ``run/archive.tar`` twice used to list the tar as a key of ``run``, copy it into
    itself, then remove it: the whole archive and the source were gone."""
    monkeypatch.chdir(tmp_path)
    files, tars = get_io("simple"), get_io("taridx")
    files.save_files("run", ["k1", "k2"], [b"1", b"2"])
    tars.save_files("run/archive.tar", "old", b"0")  # an archive already there, inside the source
    files.save_files("d", ["a", "sub/a"], [b"AAAA", b"SSSS"])
    tars.save_files("d/x.tar", ["a", "x.tar"], [b"A", b"X"])
    cases = [
        lambda: archive(files, "run", tars, "run/archive.tar"),
        lambda: sync(files, "run", tars, "run/archive.tar"),  # a copy too: the tar would be copied into itself
        lambda: sync(files, "d", files, "d/sub", mode="move"),
        lambda: sync(files, "d/sub", files, "d", mode="move"),
        lambda: sync(tars, "d/x.tar", files, "d", mode="move"),  # the key x.tar would replace the source tar
    ]
    for case in cases:
        with pytest.raises(InvalidArgumentError, match="inside"):
            case()
    with pytest.raises(InvalidArgumentError, match="inside"):
        files.move_keys("d", ["a", "sub/a"], ["a", "x"], dest_namespace="d/sub")
    assert files.load_files("run", ["k1", "k2"]) == [b"1", b"2"] and tars.list_keys("run/archive.tar") == ["old"]
    assert files.load_files("d", ["a", "sub/a"]) == [b"AAAA", b"SSSS"]
    assert tars.load_files("d/x.tar", ["a", "x.tar"]) == [b"A", b"X"]
    result = subprocess.run([sys.executable, "-m", "mummi_io.cli", "archive", "run", "run/archive.tar", "--to-backend",
                             "taridx"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "inside" in result.stderr
    assert files.load_files("run", ["k1", "k2"]) == [b"1", b"2"]
