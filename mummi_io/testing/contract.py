"""The contract suite: one set of tests that every backend passes unchanged.

Why one module of this size: it is a checklist, one test per rule of the
shared semantics, read top to bottom by whoever writes a backend.

A backend's test module subclasses :class:`BackendContract`, names its
``kind``, and provides the fixtures and the two "backdoor" methods that read
and write storage without going through mummi_io, so the API is checked
against ground truth::

    class TestSimple(BackendContract):
        kind = "simple"

        def raw_get(self, io, namespace, key): ...
        def raw_put(self, io, namespace, key, value): ...

Fixtures a subclass may override: ``io_options`` (keyword options for
``get_io``), ``namespace`` and ``other_namespace`` (two fresh, empty,
distinct namespaces).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import random
import signal
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from ..core.contract import Enumerable, Locating, Maintainable, Parts, Sharded, StorageReport
from ..core.errors import (
    IntegrityError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidNamespaceError,
    InvalidValueError,
    KeyNotFoundError,
    MummiIOError,
    PickleRefusedError,
    UnreadableValueError,
    UnsupportedOperation,
)
from ..facade.npz import read_npz
from ..registry import IO, get_interfaces, get_io

#: Keys that must be refused before any I/O, on every backend.
HOSTILE_KEYS: list[Any] = [
    "",
    ".",
    "..",
    "../escape",
    "a/../../escape",
    "/etc/passwd",
    "sub/",
    "a//b",
    "a/./b",
    "./a",
    "a/..",
    "nul\0byte",
    "x" * 256,
    "é" * 128,  # 256 UTF-8 bytes
    "ok/" + "x" * 256,  # one component too long
    "y/" * 512 + "y",  # 1025 bytes in all
    "\udcff",  # a lone surrogate cannot be encoded
    ".mummi_io.tmp.deadbeef",
    "sub/.mummi_io.tmp.deadbeef",
    5,
    None,
    b"bytes-key",
]

#: Keys that are unusual but valid, and must round-trip on every backend.
ODD_VALID_KEYS = [
    "x" * 255,
    "é" * 127,
    "with space",
    ".hidden",
    "star*[1]?",
    "-dash",
    "日本語.npz",
    "back\\slash",
    "...",
    "snapshot.3/subset#000000",
    "a/b/c/d/e.npz",
    "日本/語",
    ("d" * 255 + "/") * 3 + "e" * 250,  # 1018 bytes: long, in long components
]


def _expected_value(key: str, size: int) -> bytes:
    """A value that tells, from its key alone, what its every byte must be."""
    seed = sum(key.encode()) % 251
    return bytes([seed]) * size


def _batch_writer(io: IO, namespace: str, ack_path: str, batch_size: int, value_size: int) -> None:
    """Write numbered batches forever, appending each batch number to ``ack_path`` once saved."""
    batch = 0
    while True:
        keys = [f"b{batch:05d}-{j:03d}" for j in range(batch_size)]
        io.save_files(namespace, keys, [_expected_value(k, value_size) for k in keys])
        with open(ack_path, "a") as ack:
            ack.write(f"{batch}\n")
        batch += 1


def _overwrite_loop(io: IO, namespace: str, key: str, size: int, seconds: float) -> None:
    """Overwrite ``key`` with alternating uniform values for ``seconds``."""
    deadline = time.monotonic() + seconds
    turn = 0
    while time.monotonic() < deadline:
        io.save_files(namespace, key, (b"A" if turn % 2 else b"B") * size)
        turn += 1


def _wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.005)


class BackendContract(ABC):
    """Base class of every backend's test class; see the module docstring."""

    kind: ClassVar[str]

    # ------------------------------------------------------------ fixtures
    @pytest.fixture
    def io_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def io(self, io_options: dict[str, Any]) -> Iterator[IO]:
        with get_io(self.kind, **io_options) as io:
            yield io

    @pytest.fixture
    def namespace(self, tmp_path: Any) -> str:
        return str(tmp_path / "ns")

    @pytest.fixture
    def other_namespace(self, tmp_path: Any) -> str:
        return str(tmp_path / "other")

    @abstractmethod
    def raw_get(self, io: IO, namespace: str, key: str) -> bytes | None:
        """Read a stored value without mummi_io; ``None`` if it is not stored."""

    @abstractmethod
    def raw_put(self, io: IO, namespace: str, key: str, value: bytes) -> None:
        """Store a value without mummi_io, the way the backend's format holds it."""

    # -------------------------------------------------------------- basics
    def test_get_type_and_environment(self, io: IO) -> None:
        assert io.get_type() == self.kind
        assert self.kind in get_interfaces()
        assert io.check_environment() is True

    def test_capabilities_are_declared_exactly_when_implemented(self, io: IO, namespace: str) -> None:
        """A capability is offered only when declared, and declared only when its methods exist."""
        for wanted in (Maintainable, Locating, Sharded, Enumerable):
            declared = wanted in io.backend.capabilities
            assert declared == isinstance(io.backend, wanted), wanted.__name__
            assert (io.capability(wanted) is not None) == declared
        if Maintainable not in io.backend.capabilities:
            with pytest.raises(UnsupportedOperation, match="taridx"):
                io.reindex(namespace)
            with pytest.raises(UnsupportedOperation, match="taridx"):
                io.compact(namespace)

    def test_namespace_identity_tells_one_storage_from_another(
        self, io: IO, namespace: str, other_namespace: str
    ) -> None:
        """Moves and syncs rely on it never to copy a key onto itself and then remove it."""
        io.save_files(namespace, "k", b"v")
        io.save_files(other_namespace, "k", b"v")
        assert io.same_namespace(namespace, io, namespace)
        assert io.same_namespace(namespace, pickle.loads(pickle.dumps(io)), namespace)
        assert not io.same_namespace(namespace, io, other_namespace)
        with pytest.raises(InvalidArgumentError, match="not a capability"):
            io.capability("Maintainable")  # type: ignore[arg-type]

    def test_save_load_single_key(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "key", "value")
        assert io.load_files(namespace, "key") == b"value"

    def test_save_load_list_in_order(self, io: IO, namespace: str) -> None:
        keys = [f"k{i:03d}" for i in range(50)]
        io.save_files(namespace, keys, [f"v{i}" for i in range(50)])
        assert io.load_files(namespace, keys[::-1]) == [f"v{i}".encode() for i in reversed(range(50))]

    @pytest.mark.parametrize(
        "value, stored",
        [
            (b"\x00\xffbinary", b"\x00\xffbinary"),
            (bytearray(b"bytearray"), b"bytearray"),
            (memoryview(b"memoryview"), b"memoryview"),
            ("unicodé ✓", "unicodé ✓".encode("utf-8")),
            (b"", b""),
            ("", b""),
        ],
    )
    def test_value_types(self, io: IO, namespace: str, value: Any, stored: bytes) -> None:
        io.save_files(namespace, "k", value)
        loaded = io.load_files(namespace, "k")
        assert type(loaded) is bytes
        assert loaded == stored

    def test_large_value(self, io: IO, namespace: str) -> None:
        value = os.urandom(5 * 1024 * 1024)
        io.save_files(namespace, "big", value)
        assert io.load_files(namespace, "big") == value

    @pytest.mark.parametrize("key", ODD_VALID_KEYS)
    def test_odd_but_valid_keys_round_trip(self, io: IO, namespace: str, key: str) -> None:
        io.save_files(namespace, key, b"v")
        assert io.load_files(namespace, key) == b"v"
        assert io.list_keys(namespace, "*") == [key]
        assert io.file_exists(namespace, key)

    def test_overwrite_last_writer_wins(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "k", b"first")
        io.save_files(namespace, "k", b"second, longer than the first")
        io.save_files(namespace, "k", b"3rd")
        assert io.load_files(namespace, "k") == b"3rd"

    def test_repeated_key_in_one_batch_last_wins(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["k", "other", "k"], [b"1", b"x", b"2"])
        assert io.load_files(namespace, ["k", "other"]) == [b"2", b"x"]

    def test_empty_batches(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, [], [])
        assert io.load_files(namespace, []) == []
        io.remove_files(namespace, [])
        assert io.file_exists(namespace, []) == []

    def test_backdoor_read_sees_saved_value(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["a", "b"], [b"alpha", "beta"])
        assert self.raw_get(io, namespace, "a") == b"alpha"
        assert self.raw_get(io, namespace, "b") == b"beta"

    def test_backdoor_write_is_loaded(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "seed", b"s")  # the namespace exists
        self.raw_put(io, namespace, "planted", b"from outside")
        assert io.load_files(namespace, "planted") == b"from outside"
        assert "planted" in io.list_keys(namespace)

    # -------------------------------------------------------- missing keys
    def test_missing_key_raises_naming_every_key(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "present", b"p")
        with pytest.raises(KeyNotFoundError) as caught:
            io.load_files(namespace, ["gone1", "present", "gone2"])
        error = caught.value
        assert isinstance(error, KeyError) and isinstance(error, MummiIOError)
        assert error.keys == ["gone1", "gone2"]
        assert "gone1" in str(error) and "gone2" in str(error)
        assert error.namespace and str(error.namespace) in str(error)

    def test_missing_single_key_raises(self, io: IO, namespace: str) -> None:
        with pytest.raises(KeyNotFoundError):
            io.load_files(namespace, "never-saved")

    def test_missing_opt_in_none(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["a", "c"], [b"1", b"3"])
        assert io.load_files(namespace, ["a", "b", "c"], missing=None) == [b"1", None, b"3"]
        assert io.load_files(namespace, "b", missing=None) is None
        assert io.load_files(namespace, "b", missing=b"default") == b"default"

    def test_absent_namespace(self, io: IO, namespace: str) -> None:
        assert io.namespace_exists(namespace) is False
        assert io.list_keys(namespace) == []
        assert io.file_exists(namespace, "k") is False
        io.remove_files(namespace, ["k"])
        with pytest.raises(KeyNotFoundError):
            io.load_files(namespace, "k")
        with pytest.raises(KeyNotFoundError):
            io.move_key(namespace, "k")

    # ----------------------------------------------------- exists and list
    def test_namespace_exists_after_save(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "k", b"v")
        assert io.namespace_exists(namespace) is True

    def test_file_exists_single_and_list(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["a", "b"], [b"1", b"2"])
        assert io.file_exists(namespace, "a") is True
        assert io.file_exists(namespace, "zz") is False
        assert io.file_exists(namespace, ["a", "zz", "b"]) == [True, False, True]

    def test_list_keys_sorted_with_globs(self, io: IO, namespace: str) -> None:
        keys = ["b.npz", "a.npz", "a", "ab", "abc.pdb", "c1", "c2", "c10", ".dot"]
        io.save_files(namespace, keys, [b"x"] * len(keys))
        assert io.list_keys(namespace, "*") == sorted(keys)
        assert io.list_keys(namespace) == sorted(keys)
        assert io.list_keys(namespace, "*.npz") == ["a.npz", "b.npz"]
        assert io.list_keys(namespace, "a") == ["a"]  # not its prefix siblings
        assert io.list_keys(namespace, "a*") == ["a", "a.npz", "ab", "abc.pdb"]
        assert io.list_keys(namespace, "c?") == ["c1", "c2"]
        assert io.list_keys(namespace, "c[12]*") == ["c1", "c10", "c2"]
        assert io.list_keys(namespace, "nothing*") == []
        assert io.list_keys(namespace, "missing") == []

    def test_list_keys_in_sibling_namespaces_are_separate(self, io: IO, namespace: str, other_namespace: str) -> None:
        io.save_files(namespace, "mine", b"1")
        io.save_files(other_namespace, "theirs", b"2")
        assert io.list_keys(namespace) == ["mine"]
        assert io.list_keys(other_namespace) == ["theirs"]
        assert io.file_exists(namespace, "theirs") is False

    def test_list_keys_many(self, io: IO, namespace: str) -> None:
        keys = [f"sim-{i:05d}.npz" for i in range(2000)]
        io.save_files(namespace, keys, [b"x"] * len(keys))
        assert io.list_keys(namespace, "sim-*.npz") == keys
        assert io.list_keys(namespace, "sim-0001?.npz") == keys[10:20]

    @pytest.mark.parametrize("pattern", ["", "nul\0", 5, None])
    def test_bad_pattern(self, io: IO, namespace: str, pattern: Any) -> None:
        with pytest.raises(InvalidKeyError):
            io.list_keys(namespace, pattern)

    # ---------------------------------------------------------- hierarchy
    def test_hierarchical_keys_save_load_list_remove(self, io: IO, namespace: str) -> None:
        keys = ["snapshot.1/subset#000000", "snapshot.1/subset#000001", "snapshot.2/subset#000000",
                "snapshot.2/deep/er/x.npz", "top"]
        io.save_files(namespace, keys, [k.encode() for k in keys])
        assert io.load_files(namespace, keys) == [k.encode() for k in keys]
        assert io.list_keys(namespace) == sorted(keys)  # * matches / too: every key
        assert io.list_keys(namespace, "snapshot.1/*") == keys[:2]
        assert io.list_keys(namespace, "snapshot.*/subset#000000") == [keys[0], keys[2]]
        assert io.list_keys(namespace, "*.npz") == ["snapshot.2/deep/er/x.npz"]
        assert io.list_keys(namespace, "snapshot.2/deep/er/x.npz") == ["snapshot.2/deep/er/x.npz"]
        assert io.list_keys(namespace, "snapshot.1") == []  # a directory of keys is not a key
        assert io.file_exists(namespace, ["snapshot.1/subset#000001", "snapshot.1", "snapshot.9/x"]) == [
            True, False, False]
        io.remove_files(namespace, ["snapshot.2/subset#000000", "snapshot.2/deep/er/x.npz"])
        assert io.list_keys(namespace, "snapshot.2/*") == []
        io.save_files(namespace, "snapshot.2", b"now a key")  # emptied, the prefix may be a key again
        assert io.load_files(namespace, "snapshot.2") == b"now a key"

    def test_hierarchical_moves_within_and_across_namespaces(self, io: IO, namespace: str, other_namespace: str) -> None:
        io.save_files(namespace, ["in/a", "in/b", "flat"], [b"A", b"B", b"F"])
        io.move_keys(namespace, ["in/a", "flat"], ["out/deeper/a", "made/nested"])
        assert io.list_keys(namespace) == ["in/b", "made/nested", "out/deeper/a"]
        io.move_keys(namespace, ["in/b"], dest_namespace=other_namespace)
        assert io.load_files(other_namespace, "in/b") == b"B"
        assert io.list_keys(namespace, "in/*") == []

    def test_a_key_and_a_prefix_of_it(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "a", b"value")
        if io.keys_can_be_prefixes:
            io.save_files(namespace, "a/b", b"below")
            assert io.load_files(namespace, ["a", "a/b"]) == [b"value", b"below"]
            assert io.list_keys(namespace, "a*") == ["a", "a/b"]
            return
        with pytest.raises(InvalidKeyError, match="'a' is a key"):
            io.save_files(namespace, ["fine", "a/b"], [b"1", b"below"])
        assert io.list_keys(namespace) == ["a"]  # nothing of the batch was written
        io.save_files(namespace, "c/d", b"below")
        with pytest.raises(InvalidKeyError, match="directory of other keys"):
            io.save_files(namespace, "c", b"value")  # met when it is written (no check per flat key)
        with pytest.raises(InvalidKeyError):
            io.save_files(namespace, ["x", "x/y"], [b"1", b"2"])
        assert io.load_files(namespace, "c/d") == b"below"

    # -------------------------------------------------------------- remove
    def test_remove_single_list_and_missing(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["a", "b", "c"], [b"1", b"2", b"3"])
        io.remove_files(namespace, "a")
        io.remove_files(namespace, ["b", "not-there"])
        io.remove_files(namespace, "not-there-either")
        assert io.list_keys(namespace) == ["c"]
        assert self.raw_get(io, namespace, "a") is None
        with pytest.raises(KeyNotFoundError):
            io.load_files(namespace, "a")

    def test_save_after_remove(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "k", b"old")
        io.remove_files(namespace, "k")
        io.save_files(namespace, "k", b"new")
        assert io.load_files(namespace, "k") == b"new"

    # ---------------------------------------------------------------- move
    def test_move_key_seed_rule(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["a.npz", "b.npz"], [b"A", b"B"])
        assert io.move_key(namespace, "a") == "done-a"
        assert io.move_key(namespace, "b.npz", prefix="old") == "old-b.npz"
        assert io.list_keys(namespace) == ["done-a", "old-b.npz"]
        assert io.load_files(namespace, ["done-a", "old-b.npz"]) == [b"A", b"B"]

    def test_move_key_custom_suffix_and_list(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["x.pdb", "y.pdb"], [b"X", b"Y"])
        assert io.move_key(namespace, ["x", "y"], prefix="seen", suffix=".pdb") == ["seen-x", "seen-y"]
        assert io.load_files(namespace, ["seen-x", "seen-y"]) == [b"X", b"Y"]

    def test_move_missing_key_raises_and_moves_nothing(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "a.npz", b"A")
        with pytest.raises(KeyNotFoundError) as caught:
            io.move_key(namespace, ["a", "ghost"])
        assert caught.value.keys == ["ghost.npz"]
        assert io.list_keys(namespace) == ["a.npz"]

    def test_move_keys_across_namespaces(self, io: IO, namespace: str, other_namespace: str) -> None:
        io.save_files(namespace, ["a", "b", "keep"], [b"1", b"2", b"3"])
        io.save_files(other_namespace, "a", b"to be overwritten")
        io.move_keys(namespace, ["a", "b"], dest_namespace=other_namespace)
        assert io.list_keys(namespace) == ["keep"]
        assert io.load_files(other_namespace, ["a", "b"]) == [b"1", b"2"]

    def test_move_keys_rename_and_identity(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["a", "b"], [b"1", b"2"])
        io.move_keys(namespace, ["a", "b"], ["b2", "b"])  # "b" to itself is a no-op
        assert io.load_files(namespace, ["b2", "b"]) == [b"1", b"2"]
        assert io.file_exists(namespace, "a") is False

    def test_move_keys_bad_arguments(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["a", "b"], [b"1", b"2"])
        with pytest.raises(InvalidArgumentError):
            io.move_keys(namespace, ["a", "b"], ["c"])
        with pytest.raises(InvalidArgumentError):
            io.move_keys(namespace, ["a", "b"], ["c", "c"])
        with pytest.raises(InvalidArgumentError):
            io.move_keys(namespace, ["a", "b"], ["b", "c"])  # a chain of renames
        with pytest.raises(InvalidKeyError):
            io.move_keys(namespace, ["a"], ["../escape"])
        assert io.load_files(namespace, ["a", "b"]) == [b"1", b"2"]

    # ----------------------------------------------------------- bad input
    @pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
    def test_hostile_keys_refused_before_io(self, io: IO, namespace: str, key: Any) -> None:
        with pytest.raises(InvalidKeyError):
            io.save_files(namespace, key, b"v")
        with pytest.raises(InvalidKeyError):
            io.save_files(namespace, ["fine", key], [b"v", b"v"])
        with pytest.raises(InvalidKeyError):
            io.load_files(namespace, key)
        with pytest.raises(InvalidKeyError):
            io.file_exists(namespace, key)
        with pytest.raises(InvalidKeyError):
            io.remove_files(namespace, [key])
        with pytest.raises(InvalidKeyError):
            io.move_keys(namespace, [key], ["fine"])
        assert io.namespace_exists(namespace) is False  # nothing at all was written

    @pytest.mark.parametrize("value", [None, 5, 1.5, {"a": 1}, ["x"], np.zeros(3)], ids=repr)
    def test_wrong_value_type_names_key_and_writes_nothing(self, io: IO, namespace: str, value: Any) -> None:
        with pytest.raises(InvalidValueError, match="bad-one") as caught:
            io.save_files(namespace, ["good", "bad-one"], [b"ok", value])
        assert isinstance(caught.value, TypeError)
        assert io.namespace_exists(namespace) is False

    def test_memoryviews_of_any_layout_store_their_bytes(self, io: IO, namespace: str) -> None:
        strided = np.arange(20, dtype=np.int32)[::3]
        fortran = np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4))
        io.save_files(namespace, ["flat", "strided", "fortran", "2d"],
                      [b"1", strided.data, fortran.data, np.ones((2, 3)).data])  # memoryviews of those layouts
        assert io.load_files(namespace, ["strided", "fortran", "2d"]) == [
            strided.tobytes(), fortran.tobytes(order="C"), np.ones((2, 3)).tobytes()]

    def test_a_released_memoryview_is_refused_before_any_write(self, io: IO, namespace: str) -> None:
        view = memoryview(b"gone")
        view.release()
        with pytest.raises(InvalidValueError, match="second"):
            io.save_files(namespace, ["first", "second"], [b"ok", view])
        assert io.namespace_exists(namespace) is False

    def test_garbage_npz_is_an_error_naming_the_key(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["junk.npz", "npy.npz"], [b"not an npz at all", b"\x93NUMPY" + bytes(100)])
        for key in ("junk", "npy"):
            with pytest.raises(UnreadableValueError, match=f"{key}.npz") as caught:
                io.load_npz(namespace, key)
            assert isinstance(caught.value, ValueError) and caught.value.keys == [f"{key}.npz"]

    def test_mismatched_lengths(self, io: IO, namespace: str) -> None:
        with pytest.raises(InvalidArgumentError):
            io.save_files(namespace, ["a", "b"], [b"1"])
        with pytest.raises(InvalidArgumentError):
            io.save_files(namespace, ["a", "b"], b"12")
        with pytest.raises(InvalidArgumentError):
            io.save_files(namespace, ["a"], "one string for a list of keys")
        assert io.namespace_exists(namespace) is False

    @pytest.mark.parametrize("keys", [5, None, {"a": 1}.keys(), b"ab"], ids=repr)
    def test_keys_of_wrong_type(self, io: IO, namespace: str, keys: Any) -> None:
        with pytest.raises(InvalidKeyError):
            io.load_files(namespace, keys)

    @pytest.mark.parametrize("bad_namespace", ["", None, 5, "nul\0"], ids=repr)
    def test_bad_namespace(self, io: IO, bad_namespace: Any) -> None:
        with pytest.raises(InvalidNamespaceError):
            io.save_files(bad_namespace, "k", b"v")
        with pytest.raises(InvalidNamespaceError):
            io.list_keys(bad_namespace)
        with pytest.raises(InvalidNamespaceError):
            io.namespace_exists(bad_namespace)

    # ----------------------------------------------------------------- npz
    def test_npz_round_trip_appends_suffix(self, io: IO, namespace: str) -> None:
        arrays = {"a": np.random.rand(4, 6), "ids": np.arange(10, dtype=np.int64)}
        io.save_npz(namespace, "frame", arrays)
        assert io.list_keys(namespace) == ["frame.npz"]
        loaded = io.load_npz(namespace, "frame")
        assert loaded.keys() == arrays.keys()
        for name in arrays:
            np.testing.assert_array_equal(loaded[name], arrays[name])
        assert io.load_npz(namespace, "frame.npz").keys() == arrays.keys()

    def test_npz_list_and_missing(self, io: IO, namespace: str) -> None:
        io.save_npz(namespace, ["f1", "f2"], [{"x": np.ones(2)}, {"x": np.zeros(3)}])
        first, second = io.load_npz(namespace, ["f1", "f2"])
        np.testing.assert_array_equal(second["x"], np.zeros(3))
        assert io.load_npz(namespace, ["f1", "ghost"], missing=None)[1] is None
        with pytest.raises(KeyNotFoundError):
            io.load_npz(namespace, "ghost")
        with pytest.raises(InvalidArgumentError):
            io.save_npz(namespace, ["f1", "f2"], [{"x": np.ones(2)}])

    def test_npz_custom_writer_and_reader(self, io: IO, namespace: str) -> None:
        def writer(fileobj: Any, data: str) -> Any:
            fileobj.write(data.upper().encode())
            return fileobj

        def reader(fileobj: Any) -> str:
            return fileobj.read().decode()

        io.save_npz(namespace, "custom", "hello", writer_func=writer)
        assert io.load_npz(namespace, "custom", reader_func=reader) == "HELLO"

    def test_npz_pickle_refused_unless_opted_in(self, io: IO, namespace: str) -> None:
        objects = {"obj": np.array([{"a": 1}, None], dtype=object)}
        io.save_npz(namespace, "pickled", objects)
        with pytest.raises(PickleRefusedError, match="allow_pickle=True"):
            io.load_npz(namespace, "pickled")
        trusted = io.load_npz(namespace, "pickled", reader_func=functools.partial(read_npz, allow_pickle=True))
        assert trusted["obj"][0] == {"a": 1}

    # ------------------------------------------------------------- byte ranges
    def test_read_ranges_are_python_slices_of_each_value(self, io: IO, namespace: str) -> None:
        """Every backend's ranges (a pread, a GETRANGE, or the default) equal ``value[start:stop]``."""
        values = {"empty": b"", "one": b"x", "four": b"\x01\x02\x03\x04", "kib": bytes(range(256)) * 4,
                  "deep/c/0/0": os.urandom(5000)}
        io.save_files(namespace, list(values), list(values.values()))
        spans = [(0, None), (0, 0), (0, 2), (1, 4), (1, None), (3, 3), (5, 2), (2, 10_000), (10_000, None),
                 (-1, None), (-2, None), (-10_000, None), (-3, 2), (0, 1), (4095, None)]
        for key, value in values.items():
            got = io.load_ranges(namespace, [key] * len(spans), spans)
            assert got == [value[start:stop] for start, stop in spans], key
        assert io.load_ranges(namespace, ["missing", "one"], [(0, 1), (0, 1)]) == [None, b"x"]
        assert io.load_ranges(namespace, [], []) == []
        for bad in [(0,), (0, -1), (1.5, None), (True, None), (None, 3), "0:3"]:
            with pytest.raises(InvalidArgumentError, match="a range is"):
                io.load_ranges(namespace, ["one"], [bad])  # type: ignore[list-item]
        with pytest.raises(InvalidArgumentError, match="one range per key"):
            io.load_ranges(namespace, ["one", "four"], [(0, 1)])
        with pytest.raises(InvalidKeyError):
            io.load_ranges(namespace, ["../escape"], [(0, 1)])

    # ------------------------------------------------------------- objects
    # ------------------------------------------------- layers on the facade
    # Objects, groups and packs only use the facade, but they reach the optional
    # primitives (read_buffers, read_ranges_many, stat_many, child_namespace) that a
    # new backend inherits: these tests run them on every backend.
    def test_objects_round_trip_with_metadata_and_a_checked_digest(self, io: IO, namespace: str) -> None:
        array = np.arange(100_000, dtype=np.float64).reshape(100, 1000)
        meta = io.save_object(namespace, "arr", array)
        loaded = io.load_object(namespace, "arr")
        np.testing.assert_array_equal(loaded, array)
        assert io.object_info(namespace, "arr")["serializer"] == meta["serializer"]
        io.save_object(namespace, "cfg", {"steps": [1, 2, 3], "name": "run"})
        assert io.load_object(namespace, "cfg") == {"steps": [1, 2, 3], "name": "run"}
        with pytest.raises(KeyNotFoundError):
            io.load_object(namespace, "nope")
        with pytest.raises(KeyNotFoundError):
            io.object_info(namespace, "nope")

    def test_groups_nest_in_child_namespaces(self, io: IO, namespace: str) -> None:
        group = io.group(namespace)
        group["top"] = [1, 2]
        inner = group.create_group("inner")
        inner["leaf"] = {"x": 1}
        deeper = inner.create_group("deeper")
        deeper["bottom"] = "b"
        reopened = io.group(namespace)
        assert reopened["top"] == [1, 2] and reopened.groups() == ["inner"] and "top" in list(reopened)
        assert reopened.create_group("inner")["leaf"] == {"x": 1}
        assert reopened.create_group("inner").create_group("deeper")["bottom"] == "b"
        with pytest.raises(InvalidArgumentError):
            reopened.create_group("top")  # holds an object

    def test_stat_keys_size_and_crc(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, ["a", "b"], [b"hello", b""])
        assert io.stat_keys(namespace, ["a", "b", "nope"]) == [
            {"key": "a", "size": 5, "crc32": f"{zlib.crc32(b'hello'):08x}"}, {"key": "b", "size": 0, "crc32": "00000000"},
            None,
        ]

    def test_values_in_pieces_buffers_and_heads(self, io: IO, namespace: str) -> None:
        pieces = Parts([b"head-", memoryview(b"middle-"), bytearray(b"tail")])
        io.write_value(namespace, "v", pieces)
        assert io.load_files(namespace, "v") == b"head-middle-tail"
        assert bytes(io.load_buffer(namespace, "v")) == b"head-middle-tail"
        assert bytes(io.load_buffer(namespace, "v", backend_check=False)) == b"head-middle-tail"
        assert io.load_head(namespace, "v", 4) == b"head"
        assert io.load_head(namespace, "v", 1000) == b"head-middle-tail"
        for read in (lambda: io.load_buffer(namespace, "nope"), lambda: io.load_head(namespace, "nope", 4)):
            with pytest.raises(KeyNotFoundError):
                read()
        for size in (-1, None, 1.5, True):
            with pytest.raises(InvalidArgumentError, match="size"):
                io.load_head(namespace, "v", size)  # type: ignore[arg-type]
        assert isinstance(io.storage_report(namespace), StorageReport)

    def test_a_damaged_list_of_groups_is_an_integrity_error(self, io: IO, namespace: str) -> None:
        io.group(namespace).create_group("inner")
        io.save_reserved(namespace, ".mummi_io.groups", b"{not json")
        with pytest.raises(IntegrityError, match="sub-groups"):
            io.group(namespace).groups()

    def test_io_pickles_for_worker_processes(self, io: IO, namespace: str) -> None:
        io.save_files(namespace, "k", b"v")
        clone = pickle.loads(pickle.dumps(io))
        assert clone.get_type() == self.kind
        assert clone.load_files(namespace, "k") == b"v"
        clone.close()

    def test_repr_names_backend(self, io: IO) -> None:
        assert self.kind in repr(io)

    # ----------------------------------------------------------- processes
    def test_reader_never_sees_torn_value(self, io: IO, namespace: str) -> None:
        size = 512 * 1024
        io.save_files(namespace, "hot", b"A" * size)
        writer = multiprocessing.get_context("spawn").Process(
            target=_overwrite_loop, args=(io, namespace, "hot", size, 2.0)
        )
        writer.start()
        seen: set[bytes] = set()
        reads = 0
        try:
            while writer.is_alive():
                value = io.load_files(namespace, "hot")
                reads += 1
                assert len(value) == size and value.count(value[:1]) == size, "torn value read"
                seen.add(value[:1])
        finally:
            writer.join(30)
        assert writer.exitcode == 0
        assert reads > 10
        assert seen == {b"A", b"B"}, "the reader never overlapped the writer"

    def test_sigkilled_writer_leaves_only_whole_values(self, io: IO, namespace: str, tmp_path: Any) -> None:
        context = multiprocessing.get_context("spawn")
        rng = random.Random(12345)
        value_size, batch_size = 64 * 1024, 20
        for round_number in range(5):
            ns = f"{namespace}-kill{round_number}"
            ack_path = str(tmp_path / f"ack{round_number}")
            writer = context.Process(target=_batch_writer, args=(io, ns, ack_path, batch_size, value_size))
            writer.start()
            _wait_for(lambda: os.path.exists(ack_path), 60, "the writer's first batch")
            time.sleep(rng.uniform(0, 0.05))
            writer.kill()  # SIGKILL
            writer.join(30)
            assert writer.exitcode == -signal.SIGKILL
            with open(ack_path) as ack:
                acked = [int(line) for line in ack.read().split("\n")[:-1]]
            assert acked, "no batch finished before the kill"
            for batch in acked:
                keys = [f"b{batch:05d}-{j:03d}" for j in range(batch_size)]
                assert io.load_files(ns, keys) == [_expected_value(k, value_size) for k in keys]
            present = io.list_keys(ns)
            assert len(present) >= len(acked) * batch_size
            for key in present:
                assert io.load_files(ns, key) == _expected_value(key, value_size), f"torn {key}"
