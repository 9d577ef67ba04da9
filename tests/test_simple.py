"""The ``simple`` backend: the contract suite plus what is specific to a directory of files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mummi_io import InvalidKeyError, StorageError, get_io
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
    (tmp_path / "plain-file").write_bytes(b"")
    ns = tmp_path / "plain-file" / "ns"  # a file stands where a directory must be
    with pytest.raises(StorageError) as caught:
        io.save_files(str(ns), "k", b"v")
    assert isinstance(caught.value, NotADirectoryError)
    assert "plain-file" in str(caught.value)


def test_a_key_over_a_directory_of_keys_is_an_invalid_key(tmp_path: Path) -> None:
    io = get_io("simple")
    ns = tmp_path / "ns"
    io.save_files(str(ns), "dir-as-key/x", b"")
    with pytest.raises(InvalidKeyError, match="dir-as-key"):
        io.save_files(str(ns), "dir-as-key", b"v")


def test_emptied_directories_are_removed_and_temporary_files_never_listed(tmp_path: Path) -> None:
    io = get_io("simple")
    ns = tmp_path / "ns"
    io.save_files(str(ns), ["a/b/c", "a/d"], [b"1", b"2"])
    (ns / "a" / ".mummi_io.tmp.0123").write_bytes(b"a killed writer's leftover")
    assert io.list_keys(str(ns)) == ["a/b/c", "a/d"]
    io.remove_files(str(ns), "a/b/c")
    assert not (ns / "a" / "b").exists() and (ns / "a").is_dir()
    io.move_keys(str(ns), ["a/d"], ["z"])
    assert (ns / "a").is_dir()  # still holds the leftover: only empty directories go
    assert io.list_keys(str(ns)) == ["z"]
