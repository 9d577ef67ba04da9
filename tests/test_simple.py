"""The ``simple`` backend: the contract suite plus what is specific to a directory of files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mummi_io import StorageError, get_io
from mummi_io.facade import IO
from mummi_io.testing import BackendContract


class TestSimpleContract(BackendContract):
    kind = "simple"

    def raw_get(self, io: IO, namespace: str, key: str) -> bytes | None:
        path = Path(namespace, key)
        return path.read_bytes() if path.is_file() else None

    def raw_put(self, io: IO, namespace: str, key: str, value: bytes) -> None:
        Path(namespace, key).write_bytes(value)


class TestSimpleFsyncContract(TestSimpleContract):
    """The same contract with durable writes switched on."""

    @pytest.fixture
    def io_options(self) -> dict[str, object]:
        return {"fsync": True}


def test_namespace_is_a_directory_of_plain_files(tmp_path: Path) -> None:
    io = get_io("simple")
    io.save_files(str(tmp_path / "ns"), ["a.pdb", "b"], ["ATOM", b"\x01"])
    assert sorted(os.listdir(tmp_path / "ns")) == ["a.pdb", "b"]  # no temp files left
    assert (tmp_path / "ns" / "a.pdb").read_text() == "ATOM"


def test_pathlike_namespace(tmp_path: Path) -> None:
    io = get_io("simple")
    io.save_files(tmp_path / "ns", "k", b"v")
    assert io.load_files(tmp_path / "ns", "k") == b"v"


def test_subdirectories_and_temp_files_are_not_keys(tmp_path: Path) -> None:
    io = get_io("simple")
    ns = tmp_path / "ns"
    io.save_files(str(ns), "real", b"1")
    (ns / "subdir").mkdir()
    (ns / ".mummi_io.tmp.0123456789abcdef").write_bytes(b"left by a killed writer")
    assert io.list_keys(str(ns)) == ["real"]
    assert io.file_exists(str(ns), "subdir") is False
    assert io.load_files(str(ns), "subdir", missing=None) is None
    io.remove_files(str(ns), "subdir")  # not a key: a no-op that leaves it alone
    assert (ns / "subdir").is_dir()


def test_namespace_that_is_a_file(tmp_path: Path) -> None:
    io = get_io("simple")
    (tmp_path / "file").write_bytes(b"")
    assert io.namespace_exists(str(tmp_path / "file")) is False
    assert io.list_keys(str(tmp_path / "file")) == []
    assert io.load_files(str(tmp_path / "file"), "k", missing=None) is None
    with pytest.raises(StorageError, match="namespace"):
        io.save_files(str(tmp_path / "file"), "k", b"v")


def test_storage_error_is_an_oserror_with_the_path(tmp_path: Path) -> None:
    io = get_io("simple")
    ns = tmp_path / "ns"
    io.save_files(str(ns), "k", b"v")
    (ns / "dir-as-key").mkdir()
    (ns / "dir-as-key" / "x").write_bytes(b"")
    with pytest.raises(StorageError) as caught:
        io.save_files(str(ns), "dir-as-key", b"v")  # a non-empty directory stands in the way
    assert isinstance(caught.value, OSError)
    assert "dir-as-key" in str(caught.value)
