"""taridx under damage and foreign input: a read never writes, a repair never destroys, no silent rollback.

Every scenario here was once a way to lose or misreport data (issue 13);
each test states the rule it pins.
"""

from __future__ import annotations

import gzip
import io as stdio
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from mummi_io import IntegrityError, get_io
from mummi_io.backends.taridx import index as idx
from mummi_io.core.errors import (
    ReadOnlyError, StorageError, StorageIsADirectoryError, UnsupportedFormatError,
)
from mummi_io.objects import Pack

from taridx_helpers import append_torn_batch, snapshot


def every_read(path: str, **options) -> list[BaseException | object]:
    """Call every read of the API on ``path`` in a fresh process's view; return results or errors."""
    outcomes: list[BaseException | object] = []
    with get_io("taridx", **options) as io:
        for call in (
            lambda: io.list_keys(path),
            lambda: io.file_exists(path, "k"),
            lambda: io.load_files(path, ["k"], missing=None),
            lambda: io.namespace_exists(path),
            lambda: io.stat_keys(path, "k"),
            lambda: io.storage_report(path),
        ):
            try:
                outcomes.append(call())
            except Exception as exc:  # collected, then checked by the caller
                outcomes.append(exc)
    return outcomes


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = stdio.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, stdio.BytesIO(data))
    return buffer.getvalue()


def _zip_bytes() -> bytes:
    buffer = stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("k", b"zipped")
    return buffer.getvalue()


FOREIGN = {
    "zip": (_zip_bytes(), "zip"),
    "hdf5": (b"\x89HDF\r\n\x1a\n" + bytes(2000), "HDF5"),
    "text": (b"step,energy\n1,-3.5\n2,-3.7\n" * 100, "text"),
    "random": (bytes((i * 7919 + 13) % 251 for i in range(5000)), "binary"),
    "npy": (b"\x93NUMPY\x01\x00" + bytes(200), "NumPy"),
}


# --------------------------------------------------------------------------
# A read never writes; what is not ours is refused, byte for byte untouched
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_files_are_refused_and_left_as_they_were(tmp_path: Path, kind: str) -> None:
    content, says = FOREIGN[kind]
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    before = snapshot(tmp_path)
    for outcome in every_read(str(path), suffix="")[:3]:
        assert isinstance(outcome, UnsupportedFormatError), outcome
        assert says in str(outcome) and str(path) in str(outcome)
    with get_io("taridx", suffix="") as io:
        with pytest.raises(UnsupportedFormatError):
            io.save_files(str(path), "k", b"v")  # nor does a write: it is not ours
        with pytest.raises(UnsupportedFormatError):
            Pack(str(path))
    assert snapshot(tmp_path) == before


def test_a_directory_is_not_a_namespace(tmp_path: Path) -> None:
    (tmp_path / "run.tar").mkdir()
    before = snapshot(tmp_path)
    for outcome in every_read(str(tmp_path / "run.tar")):
        if not isinstance(outcome, list) or outcome:
            assert isinstance(outcome, UnsupportedFormatError), outcome
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("mode, name", [("w:gz", "run.tar.gz"), ("w:bz2", "run.tar.bz2"), ("w:xz", "run.tar.xz"),
                                        ("w:gz", "gzipped-but-named.tar")])
def test_compressed_tars_are_read_only(tmp_path: Path, mode: str, name: str) -> None:
    members = {f"frame-{i:03d}.npz": os.urandom(300 + i) for i in range(40)}
    path = tmp_path / name
    with tarfile.open(path, mode) as archive:
        for key, data in members.items():
            info = tarfile.TarInfo(key)
            info.size = len(data)
            archive.addfile(info, stdio.BytesIO(data))
    before = snapshot(tmp_path)
    with get_io("taridx") as io:
        assert io.list_keys(str(path)) == sorted(members)
        assert io.file_exists(str(path), ["frame-003.npz", "nope"]) == [True, False]
        keys = sorted(members, reverse=True)  # out of tar order: still one forward pass each call
        assert io.load_files(str(path), keys) == [members[k] for k in keys]
        with pytest.raises(ReadOnlyError, match="mummi-io cp"):
            io.save_files(str(path), "new", b"v")
        with pytest.raises(ReadOnlyError):
            io.remove_files(str(path), "frame-000.npz")
    assert snapshot(tmp_path) == before
    converted = str(tmp_path / "converted.tar")
    subprocess.run([sys.executable, "-m", "mummi_io.cli", "cp", "-b", "taridx", str(path), converted], check=True, capture_output=True)
    with get_io("taridx") as io:
        assert io.load_files(converted, sorted(members)) == [members[k] for k in sorted(members)]


def test_a_damaged_compressed_tar_is_an_integrity_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(gzip.compress(_tar_bytes({f"k{i}": os.urandom(4000) for i in range(20)}))[:3000])
    before = snapshot(tmp_path)
    with get_io("taridx") as io, pytest.raises(IntegrityError, match="compressed"):
        io.list_keys(str(path))
    assert snapshot(tmp_path) == before


def _pytaridx_append(path: str, members: dict[str, bytes]) -> None:
    """Append members as pytaridx does: headers and data at the end of the file, no end marker."""
    with open(path, "ab") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1.5  # a float: tarfile adds a PAX header, as in pytaridx
            tar.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + data + bytes(-len(data) % 512))


def test_reading_a_pytaridx_archive_leaves_it_as_it_was(tmp_path: Path) -> None:
    path = str(tmp_path / "legacy.tar")
    first = {f"patch-{i:03d}.npz": os.urandom(700 + i) for i in range(30)}
    _pytaridx_append(path, first)
    before = snapshot(tmp_path)
    with get_io("taridx") as io:
        assert io.load_files(path, sorted(first)) == [first[k] for k in sorted(first)]
        assert snapshot(tmp_path) == before  # no end marker appended, no index written
        more = {"patch-100.npz": b"appended later by pytaridx"}
        _pytaridx_append(path, more)  # pytaridx keeps appending after our read
        assert io.load_files(path, "patch-100.npz") == more["patch-100.npz"]
    with tarfile.open(path) as archive:
        assert archive.extractfile("patch-100.npz").read() == more["patch-100.npz"]


# --------------------------------------------------------------------------
# The format: checksums and batches in the headers, no extra member per save
# --------------------------------------------------------------------------
def test_single_key_saves_add_one_member_each_and_cost_what_plain_tar_costs(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    files = tmp_path / "files"
    files.mkdir()
    with get_io("taridx") as io:
        for i in range(200):
            value = os.urandom(1024)
            io.save_files(ns, f"frame-{i:04d}", value)
            (files / f"frame-{i:04d}").write_bytes(value)
    listing = subprocess.run(["tar", "-tf", ns], capture_output=True, text=True, check=True).stdout.split()
    assert listing == [f"frame-{i:04d}" for i in range(200)]
    plain = tmp_path / "plain.tar"
    subprocess.run(["tar", "-cf", str(plain), "-C", str(files), *sorted(os.listdir(files))], check=True)
    assert os.path.getsize(ns) <= 1.1 * os.path.getsize(plain)


def test_checksums_survive_losing_the_index(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, ["good", "victim"], [b"g" * 3000, b"v" * 3000])
    with tarfile.open(ns) as archive:
        offset = archive.getmember("victim").offset_data + 100
    with open(ns, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"X")
    os.unlink(ns + ".idx")
    with get_io("taridx") as fresh:
        assert fresh.load_files(ns, "good") == b"g" * 3000
        with pytest.raises(IntegrityError, match="victim"):
            fresh.load_files(ns, "victim")  # the CRC-32 came from the tar's header
        fresh.reindex(ns)  # a rebuilt index keeps the tar's checksums...
        with pytest.raises(IntegrityError, match="victim"):
            fresh.load_files(ns, "victim")  # ...so the corrupt value is still caught


def _fill(io, ns: str, count: int = 52) -> dict[str, bytes]:
    expected = {}
    for i in range(count):
        key = f"frame-{i:03d}"
        expected[key] = os.urandom(1000 + 37 * i)
        io.save_files(ns, key, expected[key])
    io.remove_files(ns, ["frame-010", "frame-012"])
    io.save_files(ns, "frame-005", b"overwritten")
    del expected["frame-010"], expected["frame-012"]
    expected["frame-005"] = b"overwritten"
    return expected


def _flip_header_bit(ns: str, member: str, at: int = 2) -> None:
    """Flip a bit of ``member``'s header at byte ``at`` (2: inside its name; 105: its mode field)."""
    with tarfile.open(ns) as archive:
        header = archive.getmember(member).offset
    with open(ns, "r+b") as handle:
        handle.seek(header + at)
        byte = handle.read(1)
        handle.seek(header + at)
        handle.write(bytes([byte[0] ^ 0x04]))


def test_a_damaged_header_costs_nothing_with_the_index_and_one_member_without(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        expected = _fill(io, ns)
    size = os.path.getsize(ns)
    _flip_header_bit(ns, "frame-002")  # an early header
    with get_io("taridx") as fresh:
        report = fresh.reindex(ns)
        assert report.losses == [] and report.kept_from_index == ["frame-002"]
        assert len(report.damage) == 1
        assert fresh.list_keys(ns) == sorted(expected)
        assert fresh.load_files(ns, sorted(expected)) == [expected[k] for k in sorted(expected)]
        assert os.path.getsize(ns) == size  # nothing cut
        assert any("damaged" in line for line in fresh.storage_report(ns).damage)
    os.unlink(ns + ".idx")  # now the tar alone: the scan resyncs past the bad header
    with get_io("taridx") as fresh:
        assert fresh.list_keys(ns) == sorted(set(expected) - {"frame-002"})
        assert fresh.load_files(ns, "frame-051") == expected["frame-051"]
        fresh.save_files(ns, "after", b"ok")
        assert os.path.getsize(ns) > size


def test_a_header_damaged_outside_its_name_size_and_mark_is_recovered_from_the_tar_alone(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        expected = _fill(io, ns)
    _flip_header_bit(ns, "frame-002", at=105)  # the mode field: the tar checksum fails
    os.unlink(ns + ".idx")
    with get_io("taridx") as fresh:
        assert fresh.list_keys(ns) == sorted(expected)  # name, size and data confirmed by the mark's checks
        assert fresh.load_files(ns, "frame-002") == expected["frame-002"]
        assert any("fail the tar checksum" in line for line in fresh.storage_report(ns).damage)


def test_a_damaged_delete_record_does_not_bring_keys_back(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        expected = _fill(io, ns)
    with tarfile.open(ns) as archive:
        journal = [m for m in archive if m.name == ".mummi_io.journal"][0]
    with open(ns, "r+b") as handle:  # damage the delete record's data
        handle.seek(journal.offset_data + 3)
        handle.write(b"#")
    with get_io("taridx") as fresh:
        report = fresh.reindex(ns)
        assert report.losses == []
        assert fresh.list_keys(ns) == sorted(expected)  # frame-010 and frame-012 stay deleted
        assert any("delete record is damaged; its other copy" in str(d) for d in report.damage)
    os.unlink(ns + ".idx")  # and from the tar alone: the intact copy of the key list is used
    with get_io("taridx") as fresh:
        assert fresh.list_keys(ns) == sorted(expected)


def test_truncation_never_resurrects_deleted_keys(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, ["a", "b"], [b"A" * 600, b"B" * 600])
        io.remove_files(ns, "a")
        io.save_files(ns, "c", b"C")
    with tarfile.open(ns) as archive:
        journal = [m for m in archive if m.name == ".mummi_io.journal"][0]
    os.truncate(ns, journal.offset)  # the delete record and what follows are gone
    with get_io("taridx") as fresh:
        assert fresh.list_keys(ns) == ["b", "c"]  # "a" stays deleted
        assert fresh.load_files(ns, "a", missing=None) is None
        with pytest.raises(IntegrityError, match="'c'"):
            fresh.load_files(ns, "c")
        with pytest.raises(IntegrityError) as caught:
            fresh.reindex(ns)
        assert sorted(caught.value.keys) == ["a", "c"]
        report = fresh.reindex(ns, accept_loss=True)
        assert report.resurrected == ["a"] and report.lost == ["c"]  # accepted, and said so


# --------------------------------------------------------------------------
# A repair never destroys: the torn tail goes to a side file
# --------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.97])
def test_a_torn_tail_is_moved_to_a_side_file_by_the_next_writer(tmp_path: Path, keep: float) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, ["a", "b"], [b"A", b"B"])
    torn = append_torn_batch(ns, ["x", "y", "z"], keep)
    before = snapshot(tmp_path)
    with get_io("taridx") as reader:
        assert reader.list_keys(ns) == ["a", "b"]
        assert any("interrupted write" in line for line in reader.storage_report(ns).notes)
    assert snapshot(tmp_path) == before  # readers leave it to the writer
    with get_io("taridx") as writer:
        writer.save_files(ns, "c", b"C")
        assert writer.list_keys(ns) == ["a", "b", "c"]
    sides = sorted(tmp_path.glob("run.tar.torn-*"))
    assert len(sides) == 1
    assert sides[0].read_bytes().rstrip(b"\0") == torn.rstrip(b"\0")
    assert subprocess.run(["tar", "-tf", ns], capture_output=True, text=True, check=True).stdout.split() == ["a", "b", "c"]


@pytest.mark.parametrize("damage", ["missing index", "garbage index", "index cut mid-record", "torn tail",
                                    "truncated tar", "header flip"])
def test_reads_of_a_damaged_namespace_change_no_byte(tmp_path: Path, damage: str) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        _fill(io, ns, 20)
    if damage == "missing index":
        os.unlink(ns + ".idx")
    elif damage == "garbage index":
        Path(ns + ".idx").write_bytes(b"not an index at all" * 5)
    elif damage == "index cut mid-record":
        os.truncate(ns + ".idx", os.path.getsize(ns + ".idx") - 7)
    elif damage == "torn tail":
        append_torn_batch(ns, ["t1", "t2"], 0.6)
    elif damage == "truncated tar":
        os.truncate(ns, os.path.getsize(ns) // 2)
    else:
        _flip_header_bit(ns, "frame-003")
    before = snapshot(tmp_path)
    outcomes = every_read(ns)
    assert snapshot(tmp_path) == before
    assert all(not isinstance(o, Exception) or isinstance(o, (IntegrityError,)) for o in outcomes), outcomes


# --------------------------------------------------------------------------
# Archives of the earlier format (a journal after every batch, index v1)
# --------------------------------------------------------------------------
def test_archives_of_the_earlier_format_still_open(tmp_path: Path) -> None:
    ns = str(tmp_path / "old.tar")
    batches = [({"a": b"1" * 700, "b": b"2"}, []), ({"c": b"3"}, ["a"]), ({"b": b"2 again"}, [])]
    entries = []
    with open(ns, "wb") as tar:
        for values, deletes in batches:
            puts = []
            for name, data in [*values.items(), (".mummi_io.journal", json.dumps({"delete": deletes}).encode())]:
                info = tarfile.TarInfo(name)
                info.size, info.uname, info.gname = len(data), "mummi_io", "mummi_io"
                header = info.tobuf(tarfile.USTAR_FORMAT)
                if name != ".mummi_io.journal":
                    puts.append((name.encode(), tar.tell() + len(header), len(data), __import__("zlib").crc32(data)))
                tar.write(header + data + bytes(-len(data) % 512))
            entries.append((puts, deletes, tar.tell()))
        tar.write(bytes(1024))
    with open(ns + ".idx", "wb") as index:  # a version-1 index: its header names the tar's inode
        index.write(idx.FILE_HEADER.pack(idx.FILE_MAGIC, 1, 0, os.stat(ns).st_ino, 0))
        for puts, deletes, end in entries:
            index.write(idx.encode_put([p[0] for p in puts], [p[1] for p in puts], [p[2] for p in puts],
                                       [p[3] for p in puts], end, commit=not deletes))
            if deletes:
                index.write(idx.encode_delete([d.encode() for d in deletes], end, commit=True))
    with get_io("taridx") as io:
        assert io.list_keys(ns) == ["b", "c"]
        assert io.load_files(ns, ["b", "c"]) == [b"2 again", b"3"]
        io.save_files(ns, "d", b"new format")
        io.remove_files(ns, "c")
        assert io.list_keys(ns) == ["b", "d"]
    os.unlink(ns + ".idx")  # rebuilt from the mixed tar alone
    with get_io("taridx") as fresh:
        assert fresh.list_keys(ns) == ["b", "d"]
        assert fresh.load_files(ns, ["b", "d"]) == [b"2 again", b"new format"]
        assert fresh.reindex(ns).losses == []


# --------------------------------------------------------------------------
# One error model
# --------------------------------------------------------------------------
def test_a_lock_that_cannot_be_created_fails_at_once_naming_it(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    os.mkdir(ns + ".lock")  # something in the way of the lock file
    with get_io("taridx", lock_timeout=600) as io:
        with pytest.raises(StorageIsADirectoryError, match=r"run\.tar\.lock") as caught:
            io.save_files(ns, "k", b"v")
    assert isinstance(caught.value, StorageError) and isinstance(caught.value, IsADirectoryError)


def test_a_lost_value_is_never_served_even_unverified(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, ["a", "b"], [b"A" * 3000, b"B" * 3000])
    with open(ns, "r+b") as handle:  # replace the tar's content with an unrelated one of the same size
        size = os.path.getsize(ns)
        handle.write(_tar_bytes({"other": os.urandom(size - 3072)})[:size])
    with get_io("taridx", verify=False) as unchecked:
        with pytest.raises(IntegrityError, match="no longer in its tar"):
            unchecked.load_files(ns, "a")


def test_reindex_without_a_tar_says_so(tmp_path: Path) -> None:
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "k", b"v")
    os.unlink(ns)
    with get_io("taridx") as io:
        with pytest.raises(StorageError, match="no tar file") as caught:
            io.reindex(ns)
        assert isinstance(caught.value, FileNotFoundError)
        with pytest.raises(IntegrityError, match="'k'"):
            io.load_files(ns, "k")


def test_compaction_refuses_to_drop_what_is_not_a_value_unless_told(tmp_path: Path) -> None:
    """A directory member, or a damaged range reindex left in place, is not copied: compact says so first."""
    ns = str(tmp_path / "run.tar")
    with tarfile.open(ns, "w") as archive:
        folder = tarfile.TarInfo("results")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        data = tarfile.TarInfo("x")
        data.size = 3
        archive.addfile(data, BytesIO(b"abc"))
    with get_io("taridx") as io:
        io.save_files(ns, ["y", "x"], [b"why", b"new"])
        before = Path(ns).read_bytes()
        with pytest.raises(IntegrityError, match="not values") as refused:
            io.compact(ns)
        assert "accept-loss" in str(refused.value)
        assert Path(ns).read_bytes() == before  # nothing changed
        result = subprocess.run([sys.executable, "-m", "mummi_io.cli", "compact", "-b", "taridx", ns],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 4 and "not values" in result.stderr
        io.compact(ns, accept_loss=True)
        assert io.load_files(ns, ["x", "y"]) == [b"new", b"why"]
        with tarfile.open(ns) as archive:
            assert "results" not in archive.getnames()
