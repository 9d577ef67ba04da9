"""pyiron's storage requirements: save/load/delete by path, pickle's customization hooks honoured, groups."""

from __future__ import annotations

import numpy as np
import pytest

import mummi_io
from mummi_io import UnsupportedObjectError, get_io
from objects_helpers import CustomState, Experiment, Params, Reduced, Slotted, WithNewArgs, WithNewArgsEx


@pytest.mark.parametrize("obj", [
    Reduced("Al", 4), WithNewArgs(3), WithNewArgsEx(unit="eV"), CustomState([1, 2, 3]), Slotted(1, (2, 3)),
    Experiment(Params(2, "p", [0.5]), tags=("a",)), {"structure": Reduced("Cu", 2), "energies": np.arange(3.0)},
])
def test_save_load_delete_honour_pickles_hooks_without_pickle(tmp_path, obj) -> None:
    """__reduce__, __getnewargs__(_ex)__, __getstate__/__setstate__, slots and dataclasses, as pickle does."""
    target = tmp_path / "store" / "obj"
    meta = mummi_io.save(obj, target)
    assert meta["serializer"] == "values"  # no pickle involved
    back = mummi_io.load(target)
    if isinstance(obj, dict):
        assert back["structure"] == obj["structure"] and np.array_equal(back["energies"], obj["energies"])
    else:
        assert back == obj and type(back) is type(obj)
    mummi_io.delete(target)
    assert not target.exists()


def test_a_reduce_naming_another_callable_needs_the_opt_in(tmp_path) -> None:
    class_path_trick = Reduced("Al", 1)
    class_path_trick.__reduce__ = lambda: (print, ("hello",))  # type: ignore[method-assign]
    with pytest.raises(UnsupportedObjectError):
        mummi_io.save(class_path_trick, tmp_path / "x")


def test_groups_store_anything_the_values_serializer_takes(tmp_path) -> None:
    with get_io("taridx") as io:
        storage = io.group(str(tmp_path / "job.tar"))
        storage["structure"] = Reduced("Al", 4)
        run = storage.create_group("run-1")
        run["energy"] = np.float64(-3.5)
        assert storage["structure"] == Reduced("Al", 4)
        assert type(run["energy"]) is np.float64 and run["energy"] == -3.5
        del storage["structure"]
        assert "structure" not in storage


def test_a_tar_read_with_the_default_backend_says_which_backend_reads_it(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MUMMI_IO_BACKEND", raising=False)
    archive = tmp_path / "run.tar"
    mummi_io.save({"a": 1}, archive / "exp-1", backend="taridx")
    assert mummi_io.load(archive / "exp-1", backend="taridx") == {"a": 1}
    with pytest.raises(KeyError, match="is a file, read here with the simple backend.*backend='taridx'"):
        mummi_io.load(archive / "exp-1")
    with pytest.raises(KeyError) as plain:  # a directory namespace: no such advice
        mummi_io.load(tmp_path / "exp-1")
    assert "backend='taridx'" not in str(plain.value)
