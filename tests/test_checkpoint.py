"""Checkpoints: atomic, rotated, readable, and falling back to a valid backup."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mummi_io import CheckpointError, InvalidArgumentError, get_io
from mummi_io.facade.checkpoint import backup_name


@pytest.fixture
def io():
    return get_io("simple")


def test_round_trip_adds_timestamp_without_touching_caller_dict(io, tmp_path: Path) -> None:
    path = str(tmp_path / "manager.chk")
    data = {"a": 1, "nested": {"list": [1, 2.5, "x"], "none": None}, "flag": True}
    io.save_checkpoint(path, data)
    assert "ts" not in data
    loaded = io.load_checkpoint(path)
    assert loaded.pop("ts")
    assert loaded == data


def test_file_is_plain_yaml_that_any_reader_reads(io, tmp_path: Path) -> None:
    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {"step": 7})
    text = path.read_text()
    assert text.startswith("# mummi_io checkpoint sha256=")
    assert yaml.safe_load(text)["step"] == 7


def test_numpy_values_are_stored_as_plain_yaml(io, tmp_path: Path) -> None:
    path = str(tmp_path / "c.chk")
    io.save_checkpoint(path, {"n": np.int64(3), "x": np.float32(0.5), "arr": np.arange(3), "t": (1, 2)})
    loaded = io.load_checkpoint(path)
    assert loaded["n"] == 3 and loaded["x"] == 0.5 and loaded["arr"] == [0, 1, 2] and loaded["t"] == [1, 2]


def test_rotation_keeps_n_backups(io, tmp_path: Path) -> None:
    path = str(tmp_path / "c.chk")
    for step in range(6):
        io.save_checkpoint(path, {"step": step}, keep=3)
    steps = [yaml.safe_load(Path(p).read_text())["step"] for p in [backup_name(path, i) for i in range(3)]]
    assert steps == [4, 3, 2]
    assert not Path(backup_name(path, 3)).exists()
    assert io.load_checkpoint(path)["step"] == 5


def test_keep_zero_keeps_no_backup(io, tmp_path: Path) -> None:
    path = str(tmp_path / "c.chk")
    io.save_checkpoint(path, {"step": 1}, keep=0)
    io.save_checkpoint(path, {"step": 2}, keep=0)
    assert not Path(backup_name(path)).exists()


def test_missing_checkpoint_is_a_fresh_start(io, tmp_path: Path) -> None:
    assert io.load_checkpoint(str(tmp_path / "none.chk")) == {}


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "",  # emptied
        lambda text: text.replace("step: 2", "step: 9"),  # one flipped digit
        lambda text: "{{{ not yaml",  # garbage
    ],
    ids=["truncated", "empty", "flipped-byte", "garbage"],
)
def test_damaged_checkpoint_falls_back_to_backup_with_warning(io, tmp_path: Path, caplog, damage) -> None:
    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {"step": 1})
    io.save_checkpoint(str(path), {"step": 2})
    path.write_text(damage(path.read_text()))
    with caplog.at_level(logging.WARNING, logger="mummi_io.facade.checkpoint"):
        assert io.load_checkpoint(str(path))["step"] == 1
    assert "c.chk" in caplog.text


def test_damaged_file_does_not_displace_good_backup(io, tmp_path: Path) -> None:
    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {"step": 1}, keep=1)
    io.save_checkpoint(str(path), {"step": 2}, keep=1)
    path.write_text("truncat")
    io.save_checkpoint(str(path), {"step": 3}, keep=1)  # must not back up the damaged file
    path.write_text("truncat")
    assert io.load_checkpoint(str(path))["step"] == 1


def test_all_damaged_raises_naming_files(io, tmp_path: Path) -> None:
    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {"step": 1})
    io.save_checkpoint(str(path), {"step": 2})
    path.write_text("")
    Path(backup_name(str(path))).write_text("[1, 2]")
    with pytest.raises(CheckpointError) as caught:
        io.load_checkpoint(str(path))
    assert "c.chk.bak" in str(caught.value)


def test_legacy_mummi_yaml_checkpoint_loads(io, tmp_path: Path) -> None:
    path = tmp_path / "legacy.chk"
    path.write_text("a: 1\nb: [1, 2]\nts: '2021-01-01 00:00:00'\n")
    assert io.load_checkpoint(str(path)) == {"a": 1, "b": [1, 2], "ts": "2021-01-01 00:00:00"}


def test_unsafe_yaml_is_not_executed(io, tmp_path: Path) -> None:
    path = tmp_path / "evil.chk"
    path.write_text("a: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(CheckpointError):
        io.load_checkpoint(str(path))


def test_bad_arguments(io, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        io.save_checkpoint(str(tmp_path / "c"), ["not", "a", "dict"])
    with pytest.raises(InvalidArgumentError):
        io.save_checkpoint(str(tmp_path / "c"), {"a": 1}, keep=-1)
    with pytest.raises(InvalidArgumentError, match="YAML"):
        io.save_checkpoint(str(tmp_path / "c"), {"a": object()})
    assert not (tmp_path / "c").exists()


def test_take_backup_copies_and_keeps_original(io, tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    assert io.take_backup(str(path)) is None
    path.write_text("content")
    assert io.take_backup(str(path)) == str(path) + ".bak"
    assert io.take_backup(str(path), suffix="x") == str(path) + ".bak.x"
    assert path.read_text() == (tmp_path / "file.txt.bak").read_text() == "content"
    assert (tmp_path / "file.txt.bak.x").read_text() == "content"


def test_a_gap_in_the_backups_hides_nothing(io, tmp_path: Path) -> None:
    path = tmp_path / "c.chk"
    for step in range(1, 5):
        io.save_checkpoint(str(path), {"step": step}, keep=3)  # main 4, .bak 3, .bak.1 2, .bak.2 1
    path.write_text("truncat")
    os.unlink(backup_name(str(path)))  # .bak missing: .bak.1 is the newest valid
    assert io.load_checkpoint(str(path))["step"] == 2
    os.unlink(path)  # no main file either: still not a fresh start
    assert io.load_checkpoint(str(path))["step"] == 2
    Path(backup_name(str(path), 1)).write_text("{{{")
    assert io.load_checkpoint(str(path))["step"] == 1


def test_a_named_backup_newer_than_the_rotated_ones_wins(io, tmp_path: Path) -> None:
    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {"step": 1})
    io.save_checkpoint(str(path), {"step": 2})
    time.sleep(0.01)
    io.take_backup(str(path), suffix="before-restart")  # holds step 2, newer than .bak (step 1)
    os.unlink(path)
    assert io.load_checkpoint(str(path))["step"] == 2


def test_an_unlistable_directory_is_not_a_fresh_start(io, tmp_path: Path) -> None:
    from mummi_io.core.errors import StorageError

    path = tmp_path / "not-a-dir"
    path.write_text("a file where the checkpoint's directory should be")
    with pytest.raises(StorageError):
        io.load_checkpoint(str(path / "c.chk"))


def test_time_stamped_backups_and_their_cleanup(io, tmp_path: Path) -> None:
    path = tmp_path / "wf.chk"
    for name in ("wf.chk.bak.20200101_000000", "wf.chk.bak.20200102_000000", "wf.chk.bak.20200103_000000"):
        (tmp_path / name).write_text("step: 0\n")
    io.save_checkpoint(str(path), {"step": 1}, use_tstamp=True)
    io.save_checkpoint(str(path), {"step": 2}, use_tstamp=True, cleanup=True, keep_checkpoint=2)
    stamped = sorted(p.name for p in tmp_path.iterdir() if ".bak." in p.name)
    assert len(stamped) == 2 and stamped[0] == "wf.chk.bak.20200103_000000"  # the newest two are kept
    assert not (tmp_path / "wf.chk.bak").exists()  # no rotation with time stamps
    assert io.load_checkpoint(str(path))["step"] == 2


def test_a_zero_dimensional_array_and_a_chosen_loader(io, tmp_path: Path) -> None:
    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {"n": np.array(3), "v": np.arange(2)})
    assert io.load_checkpoint(str(path)) == {"n": 3, "v": [0, 1], "ts": io.load_checkpoint(str(path))["ts"]}
    assert io.load_checkpoint(str(path), loader=yaml.FullLoader)["n"] == 3


def test_subclasses_of_plain_types_and_enums_are_saved_as_their_plain_values(io, tmp_path: Path) -> None:
    """What MuMMI's managers keep in a checkpoint (OrderedDict, defaultdict, IntEnum states...) saves, and
    loads back as the plain value it holds, readable by any safe YAML reader."""
    import collections
    import enum

    class State(enum.Enum):
        RUNNING = "running"

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {
        "state": State.RUNNING, "level": Level.HIGH, "name": Name("patch"), "ratio": np.float32(0.5),
        "order": collections.OrderedDict(b=1, a=2), "seen": collections.defaultdict(list, sim=[1, 2]),
        "counts": collections.Counter("aab"),
    })
    loaded = io.load_checkpoint(str(path))
    loaded.pop("ts")
    assert loaded == {"state": "running", "level": 3, "name": "patch", "ratio": 0.5, "order": {"a": 2, "b": 1},
                      "seen": {"sim": [1, 2]}, "counts": {"a": 2, "b": 1}}
    assert type(loaded["level"]) is int and type(loaded["name"]) is str and type(loaded["order"]) is dict
    assert "python/" not in path.read_text()  # no tag a safe reader would refuse
    assert yaml.safe_load(path.read_text())["level"] == 3


def test_a_safe_loader_of_the_callers_still_reads_mummis_numpy_tags(io, tmp_path: Path) -> None:
    """MuMMI's checkpoints (yaml.dump of numpy values) loaded with loader=yaml.SafeLoader are not 'damaged'."""
    path = tmp_path / "mummi.chk"
    path.write_text(yaml.dump({"step": np.int64(7), "rates": np.arange(3.0)}))
    backup = Path(backup_name(str(path)))
    backup.write_text(yaml.dump({"step": 1}))  # an older, plain backup that must not be preferred
    loaded = io.load_checkpoint(str(path), loader=yaml.SafeLoader)
    assert loaded["step"] == 7 and loaded["rates"].tolist() == [0.0, 1.0, 2.0]
    path.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    assert io.load_checkpoint(str(path), loader=yaml.SafeLoader) == {"step": 1}  # code is still never run
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize("data, why", [
    ({"pairs": {(0, 1): 3.5}}, "tuple"),
    ({"d": {"ref": 0, **{__import__("enum").Enum("E", {"A": "ref"}).A: 1}}}, "both become 'ref'"),
    ({"t": np.datetime64("2020-01-01T00:00:00.000000001")}, "datetime64"),
    ({"t": np.arange(3).astype("m8[s]")}, "timedelta64"),
])
def test_what_would_not_load_back_exactly_is_refused_before_writing(io, tmp_path: Path, data, why) -> None:
    """A tuple key loads as a list (unhashable): the checkpoint would be 'damaged' and the campaign roll back."""
    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {"step": 1})
    with pytest.raises(InvalidArgumentError, match=why):
        io.save_checkpoint(str(path), {"step": 2, **data})
    assert io.load_checkpoint(str(path))["step"] == 1 and not Path(backup_name(str(path))).exists()


def test_scalar_keys_of_every_kind_load_back(io, tmp_path: Path) -> None:
    path = tmp_path / "c.chk"
    io.save_checkpoint(str(path), {"m": {1: "int", 2.5: "float", True: "bool", None: "none", np.int64(7): "np"}})
    assert io.load_checkpoint(str(path))["m"] == {1: "int", 2.5: "float", True: "bool", None: "none", 7: "np"}
