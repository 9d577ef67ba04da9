"""taridx against hostile and odd input: each test is a class of attack that once lost or faked data.

Found by attacking the integrity work from outside: files that are not tars
but look like one, compressed tars with flipped bits, crash holes, tars
stored as values, devices and FIFOs given as namespaces, a tar replaced under
a running writer, headers that lie about sizes, hostile journal members.
"""

from __future__ import annotations

import gzip
import io as stdio
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mummi_io import IntegrityError, InvalidNamespaceError, StorageError, UnreadableValueError, get_io
from mummi_io.core.errors import UnsupportedFormatError

from taridx_helpers import snapshot


def _tar_of(members: dict[str, bytes], **info_fields) -> bytes:
    buffer = stdio.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for field_name, value in info_fields.items():
                setattr(info, field_name, value)
            archive.addfile(info, stdio.BytesIO(data))
    return buffer.getvalue()


def _flip(path: str, offset: int, bit: int = 2) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ (1 << bit)]))


# --------------------------------------------------------------------------
# Not a tar, though it starts like an empty one
# --------------------------------------------------------------------------
@pytest.mark.parametrize("zeros", [512, 1024, 32768])
def test_a_file_that_starts_with_zeros_but_is_no_tar_is_refused_and_kept(tmp_path: Path, zeros: int) -> None:
    image = tmp_path / "disk.img"  # a file-system image, an ISO, HDF5 with a user block...
    image.write_bytes(bytes(zeros) + b"\x53\xef\x01\x00" + bytes(range(256)) * 40)
    before = snapshot(tmp_path)
    with get_io("taridx", suffix="") as io:
        with pytest.raises(UnsupportedFormatError):
            io.list_keys(str(image))
        with pytest.raises(UnsupportedFormatError):
            io.save_files(str(image), "k", b"v")
    assert snapshot(tmp_path) == before


def test_an_all_zero_file_is_an_empty_tar(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tar"
    empty.write_bytes(bytes(10240))  # what tarfile writes for an empty archive
    with get_io("taridx") as io:
        assert io.list_keys(str(empty)) == []
        io.save_files(str(empty), "k", b"v")
        assert io.load_files(str(empty), "k") == b"v"


# --------------------------------------------------------------------------
# Compressed tars: a flipped bit is an error, never other bytes
# --------------------------------------------------------------------------
def test_flipped_bits_in_a_gzipped_tar_never_give_wrong_bytes(tmp_path: Path) -> None:
    plain = str(tmp_path / "r.tar")
    values = {f"k{i}": os.urandom(8).hex().encode() * 300 for i in range(20)}
    with get_io("taridx") as io:
        io.save_files(plain, list(values), list(values.values()))
    original = gzip.compress(Path(plain).read_bytes())
    wrong = []
    for trial in range(40):
        damaged = bytearray(original)
        damaged[len(damaged) * (trial + 1) // 42] ^= 1 << (trial % 8)
        path = tmp_path / f"d{trial}.tar.gz"
        path.write_bytes(damaged)
        with get_io("taridx") as io:
            try:
                got = io.load_files(str(path), list(values), missing=None)
            except IntegrityError:
                continue
            wrong += [f"trial {trial}: {k}" for k, v in zip(values, got) if v != values[k]]
    assert wrong == []


def test_a_compressed_namespace_is_never_created(tmp_path: Path) -> None:
    with get_io("taridx") as io, pytest.raises(InvalidNamespaceError, match=r"\.tar"):
        io.save_files(str(tmp_path / "new.tar.gz"), "k", b"v")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# Crash holes and tars stored as values
# --------------------------------------------------------------------------
def test_a_crash_hole_at_the_start_of_a_batch_never_applies_half_of_it(tmp_path: Path) -> None:
    ns = str(tmp_path / "p.tar")
    with get_io("taridx") as io:
        io.save_files(ns, ["a", "b"], [b"a1", b"b1"])
        committed = os.path.getsize(ns + ".idx")
        io.save_files(ns, ["a", "b"], [b"a2", b"b2"])
        first_header = io.backend.sessions(ns).table.lookup(b"a")[0] - 512
    os.truncate(ns + ".idx", committed)  # the writer died before committing...
    with open(ns, "r+b") as handle:  # ...and the page with the batch's first header never reached the disk
        handle.seek(first_header)
        handle.write(bytes(512))
    with get_io("taridx") as writer:
        writer.save_files(ns, "z", b"z")
    with get_io("taridx") as reader:
        assert reader.load_files(ns, ["a", "b"]) == [b"a1", b"b1"]  # all of the batch or none of it


def test_a_damaged_header_over_a_tar_stored_as_a_value_finds_no_phantoms(tmp_path: Path) -> None:
    inner, outer = str(tmp_path / "in.tar"), str(tmp_path / "o.tar")
    with get_io("taridx") as io:
        io.save_files(inner, ["x", "ghost"], [b"OLD", b"never saved in o.tar"])
        io.save_files(outer, "x", b"NEW")
        io.save_files(outer, "backup.tar", Path(inner).read_bytes())
        io.save_files(outer, "after", b"A")
        value_at = io.backend.sessions(outer).table.lookup(b"backup.tar")[0]
    for at in (value_at - 510, value_at - 512 + 126):  # in the header's name, and in its size field
        damaged = str(tmp_path / f"o-{at}.tar")
        shutil.copy(outer, damaged)
        _flip(damaged, at)
        with get_io("taridx") as fresh:  # the tar alone: no index
            keys = fresh.list_keys(damaged)
            assert "ghost" not in keys
            assert fresh.load_files(damaged, "x") == b"NEW"


# --------------------------------------------------------------------------
# Only regular files
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dev-zero", "dev-null", "fifo", "fifo-index"])
def test_devices_and_fifos_are_refused_without_hanging(tmp_path: Path, kind: str) -> None:
    ns = tmp_path / "z.tar"
    if kind == "dev-zero":
        ns.symlink_to("/dev/zero")
    elif kind == "dev-null":
        ns.symlink_to("/dev/null")
    elif kind == "fifo":
        os.mkfifo(ns)
    else:
        with get_io("taridx") as io:
            io.save_files(str(ns), "k", b"v")
        os.unlink(str(ns) + ".idx")
        os.mkfifo(str(ns) + ".idx")
    outcome: list[BaseException | object] = []

    def attempt() -> None:
        with get_io("taridx") as io:
            for call in (lambda: io.list_keys(str(ns)), lambda: io.save_files(str(ns), "k", b"precious"),
                         lambda: io.namespace_exists(str(ns))):
                try:
                    outcome.append(call())
                except Exception as exc:  # collected and checked below
                    outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "a call hung on a FIFO"
    if kind == "fifo-index":
        assert outcome[2] is True  # the tar itself is a regular file: the namespace exists
        outcome = outcome[:2]
    assert all(isinstance(o, UnsupportedFormatError) for o in outcome), outcome


# --------------------------------------------------------------------------
# A tar replaced or cut under a running process
# --------------------------------------------------------------------------
def test_a_running_writer_notices_its_tar_was_restored_from_a_copy(tmp_path: Path) -> None:
    ns, old = str(tmp_path / "s.tar"), str(tmp_path / "old.tar")
    with get_io("taridx") as writer:
        writer.save_files(ns, "a", b"a")
        shutil.copy(ns, old)
        writer.save_files(ns, "b", b"b" * 2000)
        subprocess.run(["cp", old, ns], check=True)  # in place: same inode, older and shorter content
        with pytest.raises(IntegrityError, match="'b'"):
            writer.save_files(ns, "c", b"c")
        assert writer.load_files(ns, "a") == b"a"


def test_an_index_cut_in_place_under_a_running_process_is_read_again(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "a", b"1")
        early = Path(ns + ".idx").read_bytes()
        io.save_files(ns, "b", b"2")
        with open(ns + ".idx", "r+b") as handle:  # `cp idx.bak run.tar.idx`: same inode, shorter
            handle.write(early)
            handle.truncate(len(early))
        assert io.load_files(ns, ["a", "b"]) == [b"1", b"2"]  # the tar still holds b: taken from it
        io.save_files(ns, "c", b"3")
        assert io.list_keys(ns) == ["a", "b", "c"]


# --------------------------------------------------------------------------
# Headers that lie, and what is not ours is not cut
# --------------------------------------------------------------------------
def test_a_header_claiming_more_data_than_the_file_holds_cuts_nothing(tmp_path: Path) -> None:
    ns = tmp_path / "foreign.tar"
    data = bytearray(_tar_of({"a": b"A" * 600, "b": b"B" * 600, "c": b"C" * 600, "d": b"D" * 600}))
    b_header = 512 + 1024
    data[b_header + 124:b_header + 136] = b"%011o\0" % (4 << 30)  # b claims 4 GiB, checksum made valid
    data[b_header + 148:b_header + 156] = b" " * 8
    data[b_header + 148:b_header + 156] = b"%06o\0 " % sum(data[b_header:b_header + 512])
    ns.write_bytes(bytes(data).rstrip(b"\0"))
    before = ns.read_bytes()
    with get_io("taridx") as io:
        assert io.list_keys(str(ns)) == ["a"]
        io.save_files(str(ns), "new", b"N")
        assert io.load_files(str(ns), ["a", "new"]) == [b"A" * 600, b"N"]
    assert ns.read_bytes().startswith(before)  # nothing cut: c and d are still in the file
    assert not list(tmp_path.glob("*.torn-*"))


def test_a_damaged_last_batch_without_an_index_is_not_cut(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "first", b"1" * 700)
        io.save_files(ns, ["second", "third"], [b"2" * 700, b"3" * 700])
        third = io.backend.sessions(ns).table.lookup(b"third")[0] - 512
    os.unlink(ns + ".idx")
    _flip(ns, third + 1)  # in the batch-ending member's name: that batch cannot be confirmed complete
    before = Path(ns).read_bytes()
    with get_io("taridx") as io:
        io.save_files(ns, "fourth", b"4")
        assert io.load_files(ns, ["first", "fourth"]) == [b"1" * 700, b"4"]
    assert Path(ns).read_bytes().startswith(before.rstrip(b"\0"))
    assert not list(tmp_path.glob("*.torn-*"))


# --------------------------------------------------------------------------
# Hostile members of foreign tars
# --------------------------------------------------------------------------
def test_hostile_journal_members_in_foreign_tars(tmp_path: Path) -> None:
    deep = tmp_path / "deep.tar"
    deep.write_bytes(_tar_of({"a": b"A", ".mummi_io.journal": b'{"delete":' + b"[" * 100_000}))
    planted = tmp_path / "planted.tar"
    planted.write_bytes(_tar_of({"a": b"A", ".mummi_io.journal": json.dumps({"delete": ["a"]}).encode()}))
    with get_io("taridx") as io:
        assert io.list_keys(str(deep)) == ["a"]  # no RecursionError
        assert io.list_keys(str(planted)) == ["a"]  # another tool's journal deletes nothing


def test_links_sparse_files_and_directories_of_foreign_tars(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "data").write_bytes(b"payload")
    os.link(source / "data", source / "hard")
    (source / "soft").symlink_to("data")
    (source / "sparse").write_bytes(b"")
    with open(source / "sparse", "r+b") as handle:
        handle.seek(3 << 20)
        handle.write(b"end")
    archive = tmp_path / "t.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(archive), "-C", str(source), "data", "hard", "soft", "sparse"],
                   check=True)
    with get_io("taridx") as io:
        assert io.list_keys(str(archive)) == ["data", "hard"]  # the hard link is followed
        assert io.load_files(str(archive), "hard") == b"payload"
        notes = io.storage_report(str(archive)).notes
        assert any("not values" in note for note in notes)


def test_foreign_member_names_spelt_with_dots_and_double_slashes_are_their_keys(tmp_path: Path) -> None:
    """`tar -cf x.tar ./run` writes ./run/a; hand-made tars hold a/./b or a//b: each is the key a/b once
    extracted. `..` and absolute names stay non-keys: nothing ever climbs out of the namespace."""
    archive = tmp_path / "t.tar"
    archive.write_bytes(_tar_of({"./run/a": b"1", "run/./b": b"2", "run//c": b"3", "./run/../up": b"no",
                                 "/etc/abs": b"no", "../out": b"no"}))
    with get_io("taridx") as io:
        assert io.list_keys(str(archive)) == ["run/a", "run/b", "run/c"]
        assert io.load_files(str(archive), ["run/a", "run/b", "run/c"]) == [b"1", b"2", b"3"]
    source = tmp_path / "src" / "run"
    source.mkdir(parents=True)
    (source / "data").write_bytes(b"payload")
    os.link(source / "data", source / "hard")
    gnu = tmp_path / "gnu.tar"
    subprocess.run(["tar", "-cf", str(gnu), "-C", str(tmp_path / "src"), "./run"], check=True)
    with get_io("taridx") as io:
        assert io.list_keys(str(gnu)) == ["run/data", "run/hard"]
        assert io.load_files(str(gnu), "run/hard") == b"payload"  # the hard link names ./run/data


def test_verify_of_a_healthy_foreign_tar_exits_0_and_says_what_it_could_check(tmp_path: Path) -> None:
    archive = tmp_path / "plain.tar"
    archive.write_bytes(_tar_of({"a": b"A", "b": b"B"}))
    result = subprocess.run([sys.executable, "-m", "mummi_io.cli", "verify", "-b", "taridx", str(archive)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 against checksums" in result.stdout and "no checksum" in result.stdout


def test_reindex_and_compact_of_a_mistyped_path_create_nothing(tmp_path: Path) -> None:
    with get_io("taridx") as io:
        for action in (io.reindex, io.compact):
            with pytest.raises(StorageError, match="no such namespace"):
                action(str(tmp_path / "typo" / "nothere.tar"))
    assert list(tmp_path.iterdir()) == []


def test_an_index_that_cannot_be_written_leaves_the_tar_untouched(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "a", b"1")
    before = Path(ns).read_bytes()
    os.unlink(ns + ".idx")
    os.mkdir(ns + ".idx")  # the index cannot be opened for writing
    with get_io("taridx") as io:
        with pytest.raises(UnsupportedFormatError):
            io.save_files(ns, "b", b"2")
    assert Path(ns).read_bytes() == before


# --------------------------------------------------------------------------
# npz that would make numpy allocate terabytes, or use what zipfile cannot read
# --------------------------------------------------------------------------
def _npz_with(member_bytes: bytes, compress_type: int = zipfile.ZIP_STORED) -> bytes:
    buffer = stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("a.npy")
        info.compress_type = zipfile.ZIP_STORED
        archive.writestr(info, member_bytes)
    data = bytearray(buffer.getvalue())
    if compress_type != zipfile.ZIP_STORED:  # rewrite the method fields of the local and central headers
        for signature in (b"PK\x03\x04", b"PK\x01\x02"):
            at = data.find(signature)
            offset = 8 if signature == b"PK\x03\x04" else 10
            data[at + offset:at + offset + 2] = compress_type.to_bytes(2, "little")
    return bytes(data)


def test_npz_bombs_and_unreadable_zip_members_are_unreadable_values(tmp_path: Path) -> None:
    bomb = stdio.BytesIO()
    np.lib.format.write_array_header_1_0(bomb, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    huge = _npz_with(b"\x93NUMPY\x01\x00" + bomb.getvalue()[8:] + bytes(16))
    method9 = _npz_with(np.lib.format.magic(1, 0) + b"x" * 64, compress_type=9)
    with get_io("simple") as io:
        ns = str(tmp_path / "ns")
        io.save_files(ns, ["huge.npz", "method9.npz"], [huge, method9])
        for key in ("huge", "method9"):
            with pytest.raises(UnreadableValueError, match=key):
                io.load_npz(ns, key)


def test_an_empty_two_dimensional_memoryview_stores_nothing(tmp_path: Path) -> None:
    with get_io("taridx") as io:
        io.save_files(str(tmp_path / "r.tar"), "empty", memoryview(np.zeros((0, 3))))
        assert io.load_files(str(tmp_path / "r.tar"), "empty") == b""


# --------------------------------------------------------------------------
# Second round: the index present must make damage cost nothing
# --------------------------------------------------------------------------
def test_a_damaged_header_of_the_last_value_costs_nothing_with_the_index(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "a", b"A" * 3000)
        io.save_files(ns, ["b", "c"], [b"B" * 2000, b"C" * 1500])
        c_header = io.backend.sessions(ns).table.lookup(b"c")[0] - 512
    size = os.path.getsize(ns)
    with open(ns, "r+b") as handle:
        handle.seek(c_header)
        handle.write(b"s")  # its name: neither the tar checksum nor mummi_io's check passes
    with get_io("taridx") as fresh:
        assert fresh.load_files(ns, ["a", "b", "c"]) == [b"A" * 3000, b"B" * 2000, b"C" * 1500]
        report = fresh.reindex(ns)
        assert report.losses == [] and report.tail_file is None
        assert os.path.getsize(ns) == size and not list(tmp_path.glob("*.torn-*"))
        fresh.save_files(ns, "d", b"D")
        assert fresh.load_files(ns, ["b", "c", "d"]) == [b"B" * 2000, b"C" * 1500, b"D"]


def test_leftovers_of_a_compaction_stopped_before_its_renames_mean_nothing(tmp_path: Path) -> None:
    ns, copy = str(tmp_path / "r.tar"), str(tmp_path / "copy.tar")
    with get_io("taridx") as io:
        io.save_files(ns, ["a", "b"], [b"a-v1", b"b-v1"])
        shutil.copy(ns, copy)
        shutil.copy(ns + ".idx", copy + ".idx")
        io.compact(copy)  # what the stopped compaction had written beside the namespace
        shutil.copy(copy, ns + ".compact")
        shutil.copy(copy + ".idx", ns + ".idx.compact")
        io.save_files(ns, ["a", "c"], [b"a-v2", b"c"])
        io.remove_files(ns, "b")
    with get_io("taridx") as reader:
        assert reader.list_keys(ns) == ["a", "c"] and reader.load_files(ns, "a") == b"a-v2"
    with get_io("taridx") as writer:
        writer.save_files(ns, "d", b"d")  # clears the leftovers
    assert not Path(ns + ".compact").exists() and not Path(ns + ".idx.compact").exists()
    with get_io("taridx") as reader:
        assert reader.list_keys(ns) == ["a", "c", "d"]


def test_another_file_over_a_namespace_whose_index_holds_no_value_is_refused(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "k", b"v")
        io.remove_files(ns, "k")
        io.compact(ns)  # the index now holds no value at all
    array = np.zeros(100_000)
    array[:10] = 1
    with open(ns, "wb") as handle:
        np.save(handle, array)
    before = Path(ns).read_bytes()
    with get_io("taridx") as io:
        with pytest.raises(UnsupportedFormatError, match="NumPy"):
            io.save_files(ns, "k", b"v")
    assert Path(ns).read_bytes() == before


def test_a_damaged_last_member_with_trailing_zero_data_is_not_written_over(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "first", b"1")
        io.save_files(ns, "arr", b"\1" * 1000 + bytes(7000))
        header = io.backend.sessions(ns).table.lookup(b"arr")[0] - 512
    os.unlink(ns + ".idx")
    _flip(ns, header + 1)
    before = Path(ns).read_bytes()
    member_end = header + 512 + 8192
    with get_io("taridx") as io:
        io.save_files(ns, "new", b"N")
    assert Path(ns).read_bytes()[:member_end] == before[:member_end]


def test_swapped_digits_that_keep_the_tar_checksum_are_caught(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, ["x10", "x01"], [b"ten", b"one"])
        header = io.backend.sessions(ns).table.lookup(b"x10")[0] - 512
    os.unlink(ns + ".idx")
    with open(ns, "r+b") as handle:  # "x10" -> "x01": the byte sum, so the tar checksum, is unchanged
        handle.seek(header + 1)
        handle.write(b"01")
    with get_io("taridx") as io:
        assert io.load_files(ns, "x01") == b"one"
        assert io.load_files(ns, "x10", missing=None) is None  # lost with its header, never another key's bytes


def test_a_flipped_bit_in_a_long_name_never_makes_a_truncated_key(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    long_key = "k" * 161
    with get_io("taridx") as io:
        io.save_files(ns, [long_key, "after"], [b"L" * 700, b"A"])
    with tarfile.open(ns) as archive:
        pax_data = archive.getmember(long_key).offset + 512
    os.unlink(ns + ".idx")
    _flip(ns, pax_data + 20)  # inside the PAX path record
    with get_io("taridx") as io:
        keys = io.list_keys(ns)
        assert keys == ["after"] and io.load_files(ns, "after") == b"A"


def test_a_hard_link_to_a_long_name_gives_that_member(tmp_path: Path) -> None:
    archive = tmp_path / "links.tar"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buffer = stdio.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=fmt) as out:
            for name, data in (("A" * 100, b"short"), ("A" * 100 + "_long", b"long")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, stdio.BytesIO(data))
            link = tarfile.TarInfo("link")
            link.type, link.linkname = tarfile.LNKTYPE, "A" * 100 + "_long"
            out.addfile(link)
        archive.write_bytes(buffer.getvalue())
        with get_io("taridx") as io:
            assert io.load_files(str(archive), "link") == b"long"


def test_a_flipped_bit_in_a_delete_records_batch_field_loses_nothing(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, ["keep", "old"], [b"K", b"moved value"])
        io.move_keys(ns, ["old"], ["new"])
    with tarfile.open(ns) as archive:
        journal = [m for m in archive if m.name == ".mummi_io.journal"][0].offset
    os.unlink(ns + ".idx")
    _flip(ns, journal + 506, bit=0)  # the mark's batch distance
    with get_io("taridx") as io:
        assert io.list_keys(ns) == ["keep", "new"] and io.load_files(ns, "new") == b"moved value"


def test_reindex_leaves_what_is_not_a_torn_write_in_place(tmp_path: Path) -> None:
    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "a", b"A")
    foreign = bytearray(_tar_of({"F": b"f" * 600, "G": b"g" * 600}))
    foreign[124:136] = b"%011o\0" % (1 << 20)  # F claims 1 MiB
    foreign[148:156] = b" " * 8
    foreign[148:156] = b"%06o\0 " % sum(foreign[0:512])
    with open(ns, "r+b") as handle:
        handle.seek(os.path.getsize(ns) - 1024)
        handle.write(bytes(foreign).rstrip(b"\0"))
    before = Path(ns).read_bytes().rstrip(b"\0")
    with get_io("taridx") as io:
        io.reindex(ns)
        io.save_files(ns, "b", b"B")
        assert io.load_files(ns, ["a", "b"]) == [b"A", b"B"]
    assert Path(ns).read_bytes().startswith(before) and not list(tmp_path.glob("*.torn-*"))


def test_a_reader_drops_a_batch_its_writer_took_back(tmp_path: Path) -> None:
    from mummi_io.backends.taridx.tarformat import END_OF_ARCHIVE, build_members

    ns = str(tmp_path / "r.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "j", b"J")
    end = os.path.getsize(ns) - 1024
    chunks, length, _ = build_members([("k", b"K")], [], 0, [__import__("zlib").crc32(b"K")])
    with open(ns, "r+b") as handle:  # a writer has written its batch, not yet its index record
        handle.seek(end)
        handle.write(b"".join(chunks) + END_OF_ARCHIVE)
    with get_io("taridx") as reader:
        assert reader.list_keys(ns) == ["j", "k"]
        with open(ns, "r+b") as handle:  # the commit failed: the writer takes the batch back
            handle.seek(end)
            handle.write(END_OF_ARCHIVE)
            handle.truncate(end + 1024)
        assert reader.list_keys(ns) == ["j"]
