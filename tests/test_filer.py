"""The file registry: the seed's workflow, no silent overwrite of a remote copy, pulls checked against the registry."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from mummi_io import IntegrityError, InvalidArgumentError
from mummi_io.filer import Filer, RemoteConflictError


def test_the_seeds_example_with_a_shared_directory_as_the_remote(tmp_path, monkeypatch) -> None:
    """ds_model_filer's README, with the import changed and a directory instead of s3 (no s3 here)."""
    monkeypatch.chdir(tmp_path)
    model = {"coef": [1.0, 2.0]}
    local_dir, remote_address = "models", str(tmp_path / "remote")
    filer = Filer(local_dir, remote_address, remote_type="simple")
    filer.dump(model, "my_model", push=True)
    assert filer.show_files() == "my_model (synced)"
    filer = Filer(local_dir, remote_address, remote_type="simple")
    assert filer.load("my_model") == model
    filer.dump(model, "other", push=False)
    assert filer.show_files() == "my_model (synced)\nother (local)"
    filer.push("other")
    assert filer.show_files() == "my_model (synced)\nother (synced)"
    filer.dump(model, "draft", push=False)
    filer.remove("draft")
    assert "draft" not in filer.show_files()
    with pytest.raises(InvalidArgumentError, match="no s3"):
        Filer(local_dir, "s3://bucket", remote_type="s3")


def test_a_name_pushed_by_another_user_is_never_overwritten_silently(tmp_path) -> None:
    remote = str(tmp_path / "remote")
    alice = Filer(str(tmp_path / "alice"), remote, remote_type="simple")
    bob = Filer(str(tmp_path / "bob"), remote, remote_type="simple")
    alice.dump({"by": "alice"}, "model")
    bob.dump({"by": "bob"}, "model")
    alice.push("model")
    with pytest.raises(RemoteConflictError, match="other content"):
        bob.push("model")
    assert Filer(str(tmp_path / "check"), remote, remote_type="simple").remote.load_object(remote, "model") == {
        "by": "alice"}
    assert bob.show_files() == "model (local)"  # his stays local, nothing lost
    alice.push("model")  # the same content again: fine, nothing changes

    bob.push("model", overwrite=True)  # he insists
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".mummi_registry").write_text((tmp_path / "alice" / ".mummi_registry").read_text())
    with pytest.raises(IntegrityError, match="not the object the registry"):
        Filer(str(clone), remote, remote_type="simple").load("model")  # alice's registry, bob's bytes
    assert not (clone / "model").exists()  # the wrong copy is not fetched
    with pytest.raises(IntegrityError, match="nothing was copied"):
        alice.pull("model")
    assert alice.load("model") == {"by": "alice"}  # her good local copy is untouched


def test_a_local_copy_changed_behind_the_registry_is_refused(tmp_path) -> None:
    filer = Filer(str(tmp_path / "local"), str(tmp_path / "remote"), remote_type="simple")
    filer.dump([1, 2, 3], "m", push=True)
    other = Filer(str(tmp_path / "other"), str(tmp_path / "remote"), remote_type="simple")
    other.dump([9], "m2")
    os.replace(tmp_path / "other" / "m2", tmp_path / "local" / "m")  # a valid object, but not the recorded one
    with pytest.raises(IntegrityError, match="not the object the registry"):
        filer.load("m")


def _push_mine(local: str, remote: str, results) -> None:
    filer = Filer(local, remote, remote_type="simple")
    filer.dump({"by": local}, "contested")
    try:
        filer.push("contested")
        results.put(("won", local))
    except RemoteConflictError:
        results.put(("lost", local))


def test_concurrent_pushes_of_one_name_one_wins_the_others_are_told(tmp_path) -> None:
    remote = str(tmp_path / "remote")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    pushers = [context.Process(target=_push_mine, args=(str(tmp_path / f"user{i}"), remote, results))
               for i in range(4)]
    for process in pushers:
        process.start()
    for process in pushers:
        process.join(120)
    outcomes = [results.get(timeout=10) for _ in pushers]
    winners = [local for outcome, local in outcomes if outcome == "won"]
    assert len(winners) == 1 and [process.exitcode for process in pushers] == [0] * 4
    stored = Filer(str(tmp_path / "reader"), remote, remote_type="simple").remote.load_object(remote, "contested")
    assert stored == {"by": winners[0]}
