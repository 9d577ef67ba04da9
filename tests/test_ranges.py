"""Range reads (``IO.load_ranges``, what the zarr store and fsspec build on): each key gets its own range.

The state machines (test_stateful) check ranges against a model on every
backend; these pin the cases that once went wrong and what taridx checks
before it hands back part of a value.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mummi_io import IntegrityError, get_io
from mummi_io.backends.taridx import index as idx
from mummi_io.backends.taridx.session import WHOLE_READ_BYTES
from mummi_io.core.crc import crc32
from mummi_io.core.errors import InvalidArgumentError

from taridx_helpers import committed_end


@pytest.fixture
def io(io_each_backend):
    return io_each_backend


def test_missing_keys_do_not_shift_the_ranges_of_the_keys_after_them(io, tmp_path) -> None:
    ns = str(tmp_path / "ns")  # a fresh namespace on every backend (redis takes it as a name)
    values = {"a": bytes(range(100)), "c": bytes(range(100, 200)), "e": os.urandom(5000)}
    io.save_files(ns, list(values), list(values.values()))
    keys = ["missing-1", "a", "missing-2", "c", "e", "missing-3", "e"]
    ranges = [(0, 10), (5, 9), (1, 2), (-3, None), (100, 4000), (0, None), (4990, 2**64)]
    expected = [None if key not in values else values[key][slice(*span)] for key, span in zip(keys, ranges)]
    assert io.load_ranges(ns, keys, ranges) == expected
    huge = [(2**64, None), (-(2**70), 3), (0, 2**80), (2**63, 2**64)]  # beyond Redis's 64-bit offsets
    assert io.load_ranges(ns, ["e"] * 4, huge) == [values["e"][slice(*span)] for span in huge]
    io.remove_files(ns, list(values))


def test_a_range_per_key_and_well_formed_ranges_are_required(io, tmp_path) -> None:
    ns = str(tmp_path / "ns")
    io.save_files(ns, "a", b"abc")
    with pytest.raises(InvalidArgumentError, match="one range per key"):
        io.load_ranges(ns, ["a", "a"], [(0, 1)])
    for bad in [(0, -1), (None, 2), ("0", 2), (0,), (0.5, None)]:
        with pytest.raises(InvalidArgumentError, match="a range is"):
            io.load_ranges(ns, ["a"], [bad])  # type: ignore[list-item]
    io.remove_files(ns, "a")


def _repoint(ns: str, key: str, location: tuple[int, int, int], last: tuple[str, tuple[int, int, int]]) -> None:
    """Append a committed index record that says ``key`` lies at ``location`` (a stale or damaged index).

    ``last`` (a key and its true location) ends the record: opening checks
    only the index's last value, so the damage is found by the read itself.
    """
    end = committed_end(ns)
    keys, places = [key.encode(), last[0].encode()], [location, last[1]]
    with open(ns + ".idx", "ab") as index:
        index.write(idx.encode_put(keys, [p[0] for p in places], [p[1] for p in places], [p[2] for p in places],
                                   end, commit=True))


def _data_offsets(ns: str) -> dict[str, int]:
    import tarfile

    with tarfile.open(ns) as archive:
        return {member.name: member.offset_data for member in archive.getmembers()}


@pytest.mark.parametrize("size", [1000, WHOLE_READ_BYTES + 4096])
@pytest.mark.parametrize("recorded_crc", ["its own", "the other's"])
def test_taridx_never_hands_back_part_of_another_member(tmp_path: Path, size: int, recorded_crc: str) -> None:
    """An index entry pointing at another member fails, even with that member's CRC-32 (the mark names the key)."""
    ns = str(tmp_path / "run.tar")
    mine, other = b"m" * size, b"o" * size
    with get_io("taridx") as io:
        io.save_files(ns, ["mine", "other"], [mine, other])
        assert io.load_ranges(ns, ["mine"], [(10, 20)]) == [b"m" * 10]
    offsets = _data_offsets(ns)
    crc = crc32(mine) if recorded_crc == "its own" else crc32(other)
    _repoint(ns, "mine", (offsets["other"], size, crc), ("other", (offsets["other"], size, crc32(other))))
    with get_io("taridx") as fresh:
        for span in [(10, 20), (0, None), (-3, None)]:
            with pytest.raises(IntegrityError, match="mine"):
                fresh.load_ranges(ns, ["mine"], [span])
        assert fresh.load_ranges(ns, ["other"], [(-5, None)]) == [b"o" * 5]


def test_taridx_a_large_slice_of_a_sound_value_is_read_in_place(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    value = os.urandom(WHOLE_READ_BYTES * 3)
    with get_io("taridx") as io:
        io.save_files(ns, ["big", "long/" + "n" * 150], [value, value])  # a ustar and a PAX member
        spans = [(0, 1), (WHOLE_READ_BYTES, WHOLE_READ_BYTES + 10), (-7, None), (len(value) + 5, None)]
        for key in ["big", "long/" + "n" * 150]:
            assert io.load_ranges(ns, [key] * len(spans), spans) == [value[slice(*s)] for s in spans]


def test_taridx_ranges_of_one_call_come_from_one_version_of_each_value(tmp_path: Path) -> None:
    """A whole-value range is sliced like any other, from the version the call read."""
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "k", b"A" * 10)
        assert io.load_ranges(ns, ["k", "k", "k"], [(0, 10), (-10, None), (0, None)]) == [b"A" * 10] * 3
        io.save_files(ns, "k", b"B" * 20)
        assert io.load_ranges(ns, ["k", "k", "k"], [(0, 10), (-10, None), (0, None)]) == [b"B" * 10, b"B" * 10,
                                                                                          b"B" * 20]


_REWRITER = """
import sys, time
from mummi_io import get_io
io = get_io("taridx")
ends = time.monotonic() + float(sys.argv[2])
while time.monotonic() < ends:
    io.save_files(sys.argv[1], "k", b"A" * 10)
    io.save_files(sys.argv[1], "k", b"B" * 20)
"""


def test_taridx_ranges_read_while_another_process_rewrites_the_value(tmp_path: Path) -> None:
    import subprocess
    import sys

    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "k", b"A" * 10)
        writer = subprocess.Popen([sys.executable, "-c", _REWRITER, ns, "3"])
        try:
            while writer.poll() is None:
                head, tail = io.load_ranges(ns, ["k", "k"], [(0, 10), (-10, None)])
                assert head in (b"A" * 10, b"B" * 10) and tail in (b"A" * 10, b"B" * 10)
            assert writer.returncode == 0
        finally:
            writer.kill()
            writer.wait()
