"""The ``simple`` backend: the contract suite plus what is specific to a directory of files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mummi_io import InvalidKeyError, StorageError, get_io
from mummi_io import IO
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


# --------------------------------------------------------------------------
# Symbolic links and patterns: nothing leads outside the namespace
# --------------------------------------------------------------------------
@pytest.fixture
def linked_namespace(tmp_path: Path) -> tuple[Path, Path]:
    """A namespace holding links to an outside directory (as a directory of keys) and an outside file (as a key)."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_bytes(b"not the namespace's")
    (outside / "sub" / "deep").write_bytes(b"not the namespace's either")
    ns = tmp_path / "ns"
    ns.mkdir()
    (ns / "real").write_bytes(b"mine")
    (ns / "dir").symlink_to(outside)
    (ns / "file").symlink_to(outside / "secret")
    return ns, outside


def test_links_inside_a_namespace_are_not_keys_and_are_never_followed(linked_namespace) -> None:
    ns, outside = linked_namespace
    io = get_io("simple")
    assert io.list_keys(str(ns)) == ["real"]
    assert io.list_keys(str(ns), "dir/*") == [] and io.list_keys(str(ns), "dir/sub/*") == []
    assert io.load_files(str(ns), ["dir/secret", "file", "dir/sub/deep"], missing=None) == [None, None, None]
    assert io.file_exists(str(ns), ["dir/secret", "file", "real"]) == [False, False, True]
    assert io.stat_keys(str(ns), ["dir/secret"]) == [None]
    io.remove_files(str(ns), ["dir/secret", "dir/sub/deep", "file"])
    with pytest.raises(KeyError):
        io.move_keys(str(ns), ["dir/sub/deep"], ["stolen"])
    with pytest.raises(InvalidKeyError, match="symbolic link"):
        io.save_files(str(ns), "dir/planted", b"x")
    with pytest.raises(InvalidKeyError, match="symbolic link"):
        io.move_keys(str(ns), ["real"], ["dir/sub/real"])
    # the outside directory is exactly as it was; the links themselves stay too
    assert (outside / "secret").read_bytes() == b"not the namespace's"
    assert (outside / "sub" / "deep").read_bytes() == b"not the namespace's either"
    assert sorted(p.name for p in outside.rglob("*")) == ["deep", "secret", "sub"]
    assert (ns / "dir").is_symlink() and (ns / "file").is_symlink() and (ns / "real").read_bytes() == b"mine"


def test_a_fifo_in_a_namespace_is_not_a_key_and_does_not_hang_a_reader(tmp_path: Path) -> None:
    ns = tmp_path / "ns"
    (ns / "d").mkdir(parents=True)
    os.mkfifo(ns / "d" / "pipe")
    io = get_io("simple")
    assert io.load_files(str(ns), "d/pipe", missing=None) is None
    assert io.file_exists(str(ns), "d/pipe") is False and io.list_keys(str(ns)) == []


@pytest.mark.parametrize("pattern", ["../*", "../outside/*", "/etc/pass*", "a/../../*", "./*/../../*"])
def test_patterns_that_climb_out_of_the_namespace_match_nothing(linked_namespace, pattern: str) -> None:
    ns, _ = linked_namespace
    assert get_io("simple").list_keys(str(ns), pattern) == []


def test_namespace_spellings_of_one_directory_are_one_namespace(tmp_path: Path) -> None:
    io = get_io("simple")
    io.save_files(f"{tmp_path}/ns/", "k", b"v")
    assert io.load_files(f"{tmp_path}/other/../ns", "k") == b"v"
    assert io.list_keys(f"{tmp_path}/./ns") == ["k"]


def _churn(namespace: str, worker: int, rounds: int) -> None:
    """Save, move and remove nested keys that share directories with the other workers' keys."""
    io = get_io("simple")
    for i in range(rounds):
        key = f"shared/sub/w{worker}-{i}"
        io.save_files(namespace, key, f"{worker}:{i}".encode())
        io.move_keys(namespace, [key], [f"shared/moved/w{worker}-{i}"])
        assert io.load_files(namespace, f"shared/moved/w{worker}-{i}") == f"{worker}:{i}".encode()
        io.remove_files(namespace, f"shared/moved/w{worker}-{i}")
        io.save_files(namespace, f"shared/kept/w{worker}-{i}", b"k")


def test_processes_saving_and_pruning_the_same_directories_lose_nothing(tmp_path: Path) -> None:
    """A remove prunes the directory it emptied; a save into it at that moment remakes it instead of failing."""
    import multiprocessing

    ns = str(tmp_path / "ns")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_churn, args=(ns, worker, 150)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(300)
    assert [process.exitcode for process in workers] == [0, 0, 0, 0]
    assert len(get_io("simple").list_keys(ns, "shared/kept/*")) == 4 * 150
    assert get_io("simple").list_keys(ns, "shared/moved/*") == []


def _swap_directory_for_a_link(namespace: str, outside: str, stop) -> None:
    """Turn ns/d into a link to ``outside`` and back, as fast as possible (an attacker racing the checks)."""
    while not stop.is_set():
        try:
            os.symlink(outside, os.path.join(namespace, "link"))
            os.rename(os.path.join(namespace, "d"), os.path.join(namespace, "d-real"))
            os.rename(os.path.join(namespace, "link"), os.path.join(namespace, "d"))
            os.rename(os.path.join(namespace, "d"), os.path.join(namespace, "gone"))
            os.unlink(os.path.join(namespace, "gone"))
            os.rename(os.path.join(namespace, "d-real"), os.path.join(namespace, "d"))
        except OSError:
            pass


def _use_keys_below_d(namespace: str, operation: str, rounds: int, leaked) -> None:
    """One kind of call on keys below ns/d, over and over, while d is swapped for a link to outside."""
    io = get_io("simple")
    for i in range(rounds):
        try:
            if operation == "load":
                if io.load_files(namespace, f"d/victim{i % 5}", missing=None) == b"OUTSIDE":
                    leaked.set()
            elif operation == "remove":
                io.remove_files(namespace, f"d/victim{i % 5}")
            elif operation == "save":
                io.save_files(namespace, [f"d/keep{i % 5}", f"d/victim{i % 5}"], [b"mine", b"mine"])
            else:
                io.move_keys(namespace, [f"d/keep{i % 5}"], [f"d/victim{i % 5}"])
        except (StorageError, InvalidKeyError, KeyError):
            pass  # the directory was a link at that moment: refused, which is right


def test_a_directory_swapped_for_a_link_during_calls_never_leads_outside(tmp_path: Path) -> None:
    """Each component is opened relative to its parent without following links, so no check-then-use race
    (before, a load read outside files and saves and removes wrote and deleted them within seconds)."""
    import multiprocessing

    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(5):
        (outside / f"victim{i}").write_bytes(b"OUTSIDE")
    before = {path.name: path.read_bytes() for path in outside.iterdir()}
    ns = tmp_path / "ns"
    (ns / "d").mkdir(parents=True)
    context = multiprocessing.get_context("fork")
    stop, leaked = context.Event(), context.Event()
    swapper = context.Process(target=_swap_directory_for_a_link, args=(str(ns), str(outside), stop))
    swapper.start()
    try:
        for operation in ("load", "remove", "save", "move"):
            user = context.Process(target=_use_keys_below_d, args=(str(ns), operation, 5000, leaked))
            user.start()
            user.join(300)
            assert user.exitcode == 0, operation
    finally:
        stop.set()
        swapper.join(30)
    assert not leaked.is_set(), "a load returned a file outside the namespace"
    assert {path.name: path.read_bytes() for path in outside.iterdir()} == before
