"""The ``taridx`` backend: the contract suite plus format, concurrency, crash and integrity tests."""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import tarfile
import time
from io import BytesIO
from pathlib import Path

import pytest

from mummi_io import BackendUnavailableError, IntegrityError, InvalidArgumentError, InvalidNamespaceError, get_io
from mummi_io.backends.taridx.tarformat import parse_journal
from mummi_io import IO
from mummi_io.testing import BackendContract


def _tar_path(namespace: str) -> str:
    return namespace if namespace.endswith(".tar") else namespace + ".tar"


class TestTaridxContract(BackendContract):
    kind = "taridx"

    def raw_get(self, io: IO, namespace: str, key: str) -> bytes | None:
        """Read the last member named ``key`` with the standard library's tarfile."""
        path = _tar_path(namespace)
        if not os.path.exists(path):
            return None
        with tarfile.open(path) as archive:
            found = None
            deleted = False
            for member in archive:
                if member.name == key:
                    found, deleted = member, False
                elif member.name == ".mummi_io.journal":
                    if key in parse_journal(archive.extractfile(member).read()):
                        deleted = True
            if found is None or deleted:
                return None
            return archive.extractfile(found).read()

    def raw_put(self, io: IO, namespace: str, key: str, value: bytes) -> None:
        """Append a member with plain tarfile (as ``tar -r`` would), then reindex."""
        path = _tar_path(namespace)
        with tarfile.open(path, "a") as archive:
            info = tarfile.TarInfo(key)
            info.size = len(value)
            archive.addfile(info, BytesIO(value))
        io.reindex(path)


# --------------------------------------------------------------------------
# Format: a plain tar that standard tools read
# --------------------------------------------------------------------------
KEYS_OF_EVERY_SHAPE = ["plain.npz", "x" * 150, "é" * 100, "ünï cødé.pdb", "a" * 100, "b" * 101]


@pytest.fixture
def io():
    with get_io("taridx") as io:
        yield io


@pytest.fixture
def ns(tmp_path: Path) -> str:
    return str(tmp_path / "campaign.tar")


def _values(keys: list[str]) -> list[bytes]:
    return [(key * 7).encode("utf-8")[: 37 * (i + 1)] + bytes([i]) * (i * 300) for i, key in enumerate(keys)]


def test_gnu_tar_lists_and_extracts_every_key(io, ns: str, tmp_path: Path) -> None:
    values = _values(KEYS_OF_EVERY_SHAPE)
    io.save_files(ns, KEYS_OF_EVERY_SHAPE, values)
    listing = subprocess.run(["tar", "-tf", ns], capture_output=True, text=True, check=True)
    assert [line for line in listing.stdout.splitlines() if line != ".mummi_io.journal"] == KEYS_OF_EVERY_SHAPE
    assert listing.stderr == ""
    out = tmp_path / "extracted"
    out.mkdir()
    subprocess.run(["tar", "-xf", ns, "-C", str(out)], check=True)
    for key, value in zip(KEYS_OF_EVERY_SHAPE, values):
        assert (out / key).read_bytes() == value


def test_python_tarfile_reads_the_same_bytes(io, ns: str) -> None:
    values = _values(KEYS_OF_EVERY_SHAPE)
    io.save_files(ns, KEYS_OF_EVERY_SHAPE, values)
    with tarfile.open(ns) as archive:
        found = {m.name: archive.extractfile(m).read() for m in archive if m.name != ".mummi_io.journal"}
    assert found == dict(zip(KEYS_OF_EVERY_SHAPE, values))


def test_namespace_gets_tar_suffix(io, tmp_path: Path) -> None:
    io.save_files(str(tmp_path / "run"), "k", b"v")
    assert (tmp_path / "run.tar").is_file()
    assert io.load_files(str(tmp_path / "run.tar"), "k") == b"v"
    assert io.namespace_exists(str(tmp_path / "run"))


def test_deletes_and_renames_are_appended(io, ns: str) -> None:
    io.save_files(ns, ["a", "b"], [b"1" * 1000, b"2" * 1000])
    size = os.path.getsize(ns)
    io.remove_files(ns, "a")
    io.move_keys(ns, ["b"], ["c"])
    assert os.path.getsize(ns) > size  # nothing rewritten in place
    assert io.list_keys(ns) == ["c"]
    with get_io("taridx") as fresh:  # another process's view: rebuilt from the files
        assert fresh.list_keys(ns) == ["c"]
        fresh.reindex(ns)
        assert fresh.list_keys(ns) == ["c"]
        assert fresh.load_files(ns, "c") == b"2" * 1000


# --------------------------------------------------------------------------
# Integrity
# --------------------------------------------------------------------------
def test_large_batches_get_the_same_checksums(io, ns: str) -> None:
    """From 8 MiB a batch's CRC-32s are computed in a thread beside the write: same values, same checks."""
    import zlib

    big = [os.urandom(5 << 20), os.urandom(4 << 20)]
    io.save_files(ns, ["big-1", "big-2", "small"], [big[0], big[1], b"s"])
    assert io.stat_keys(ns, ["big-1", "big-2", "small"]) == [
        {"key": "big-1", "size": len(big[0]), "crc32": f"{zlib.crc32(big[0]):08x}"},
        {"key": "big-2", "size": len(big[1]), "crc32": f"{zlib.crc32(big[1]):08x}"},
        {"key": "small", "size": 1, "crc32": f"{zlib.crc32(b's'):08x}"},
    ]
    with tarfile.open(ns) as archive:
        offset = archive.getmember("big-2").offset_data + (3 << 20)
    with open(ns, "r+b") as handle:
        handle.seek(offset)
        handle.write(bytes([big[1][3 << 20] ^ 1]))
    with get_io("taridx") as fresh:
        assert fresh.load_files(ns, "big-1") == big[0]
        with pytest.raises(IntegrityError, match="big-2"):
            fresh.load_files(ns, "big-2")


def test_flipped_byte_raises_integrity_error_naming_key(io, ns: str) -> None:
    io.save_files(ns, ["good", "victim"], [b"g" * 2000, b"v" * 2000])
    with tarfile.open(ns) as archive:
        offset = archive.getmember("victim").offset_data + 1234
    with open(ns, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"X")
    with get_io("taridx") as fresh:
        assert fresh.load_files(ns, "good") == b"g" * 2000
        with pytest.raises(IntegrityError, match="victim"):
            fresh.load_files(ns, ["good", "victim"])
    with get_io("taridx", verify=False) as unchecked:
        assert unchecked.load_files(ns, "victim").count(b"X") == 1


# --------------------------------------------------------------------------
# A damaged, truncated, missing or foreign index is rebuilt from the tar
# --------------------------------------------------------------------------
def _fill(io, ns: str, batches: int = 6) -> dict[str, bytes]:
    expected = {}
    for batch in range(batches):
        keys = [f"b{batch}-{i}" for i in range(20)]
        values = [os.urandom(100 + i) for i in range(20)]
        io.save_files(ns, keys, values)
        expected.update(zip(keys, values))
    io.remove_files(ns, ["b0-0", "b5-19"])
    io.move_keys(ns, ["b1-1"], ["renamed"])
    expected["renamed"] = expected.pop("b1-1")
    del expected["b0-0"], expected["b5-19"]
    return expected


def _check(ns: str, expected: dict[str, bytes]) -> None:
    with get_io("taridx") as fresh:
        assert fresh.list_keys(ns) == sorted(expected)
        assert fresh.load_files(ns, sorted(expected)) == [expected[k] for k in sorted(expected)]
        fresh.save_files(ns, "after-repair", b"ok")  # and it is writable again
        assert fresh.load_files(ns, "after-repair") == b"ok"
    subprocess.run(["tar", "-tf", ns], capture_output=True, check=True)


def test_missing_index_is_rebuilt(io, ns: str) -> None:
    expected = _fill(io, ns)
    os.unlink(ns + ".idx")
    _check(ns, expected)


@pytest.mark.parametrize("keep", [0, 32, 33, 100, 500, -7, -1])
def test_truncated_index_is_recovered_from_the_tar(io, ns: str, keep: int) -> None:
    expected = _fill(io, ns)
    size = os.path.getsize(ns + ".idx")
    os.truncate(ns + ".idx", keep if keep >= 0 else size + keep)
    _check(ns, expected)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_corrupted_index_is_recovered_from_the_tar(io, ns: str, where: float) -> None:
    expected = _fill(io, ns)
    with open(ns + ".idx", "r+b") as handle:
        position = int(os.path.getsize(ns + ".idx") * where)
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0xFF]))
    _check(ns, expected)


def test_garbage_index_is_rebuilt(io, ns: str) -> None:
    expected = _fill(io, ns)
    Path(ns + ".idx").write_bytes(b"this is not an index" * 10)
    _check(ns, expected)


def test_copied_namespace_reindexes_on_open(io, ns: str, tmp_path: Path) -> None:
    expected = _fill(io, ns)
    copy = tmp_path / "copy.tar"
    shutil.copyfile(ns, copy)
    shutil.copyfile(ns + ".idx", str(copy) + ".idx")  # its header names the original tar's inode
    _check(str(copy), expected)


def test_truncated_tar_raises_instead_of_rolling_back(io, ns: str) -> None:
    io.save_files(ns, "first", b"1" * 5000)
    end_of_first = os.path.getsize(ns) - 1024
    io.save_files(ns, "second", b"2" * 5000)
    io.save_files(ns, "first", b"new first" * 500)  # overwritten after the cut point
    os.truncate(ns, end_of_first + 700)  # everything after the first batch is cut off
    with get_io("taridx") as fresh:
        assert fresh.list_keys(ns) == ["first", "second"]  # the index still knows both: nothing rolls back
        with pytest.raises(IntegrityError, match="second") as caught:
            fresh.load_files(ns, ["first", "second"])
        assert sorted(caught.value.keys) == ["first", "second"]
        with pytest.raises(IntegrityError, match="accept_loss"):
            fresh.save_files(ns, "third", b"3")
        with pytest.raises(IntegrityError, match="would lose"):
            fresh.reindex(ns)
        report = fresh.reindex(ns, accept_loss=True)
        assert report.lost == ["second"] and report.rolled_back == ["first"]
        assert fresh.load_files(ns, "first") == b"1" * 5000  # the older value, accepted explicitly
        fresh.save_files(ns, "third", b"3")
        assert fresh.list_keys(ns) == ["first", "third"]


# --------------------------------------------------------------------------
# pytaridx archives (PAX headers: the original's 512-byte assumption is wrong)
# --------------------------------------------------------------------------
def _write_pytaridx_style_archive(path: str, members: dict[str, bytes]) -> None:
    """Append members the way pytaridx did: tarfile headers (PAX, float mtime), no end marker."""
    with open(path, "ab") as tar, open(path + ".pylst", "a") as listing:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = time.time()  # a float: tarfile adds a PAX header
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            assert len(header) > 512
            listing.write(f"{name},{tar.tell() + 512},{len(data)}\n")  # the original's wrong offset
            tar.write(header + data + bytes(-len(data) % 512))


def test_reads_pytaridx_archives(tmp_path: Path) -> None:
    path = str(tmp_path / "legacy.tar")
    members = {f"patch-{i:03d}.npz": os.urandom(700 + i) for i in range(30)}
    _write_pytaridx_style_archive(path, members)
    with get_io("taridx") as io:
        assert io.list_keys(path) == sorted(members)
        assert io.load_files(path, list(members)) == list(members.values())
        io.save_files(path, "new", b"appended by mummi_io")
        assert io.load_files(path, ["patch-000.npz", "new"]) == [members["patch-000.npz"], b"appended by mummi_io"]
    with tarfile.open(path) as archive:
        assert archive.extractfile("new").read() == b"appended by mummi_io"


# --------------------------------------------------------------------------
# compact
# --------------------------------------------------------------------------
def test_compact_keeps_live_values_only(io, ns: str) -> None:
    expected = _fill(io, ns)
    io.save_files(ns, "b2-2", b"overwritten")
    expected["b2-2"] = b"overwritten"
    with get_io("taridx") as other:
        other.load_files(ns, "b2-3")  # another process holds the old files open
        before, after = io.compact(ns)
        assert after < before
        assert os.path.getsize(ns) == after
        assert other.load_files(ns, sorted(expected)) == [expected[k] for k in sorted(expected)]
    with tarfile.open(ns) as archive:
        names = [m.name for m in archive if m.name != ".mummi_io.journal"]
    assert sorted(names) == sorted(expected)
    _check(ns, expected)


def test_crash_before_compaction_swap_loses_nothing(io, ns: str) -> None:
    expected = _fill(io, ns)
    Path(ns + ".compact").write_bytes(b"half-written new tar")
    Path(ns + ".idx.compact").write_bytes(b"half-written new index")
    _check(ns, expected)
    io.compact(ns)
    expected["after-repair"] = b"ok"
    _check(ns, expected)


def test_crash_between_compaction_renames_loses_nothing(io, ns: str) -> None:
    expected = _fill(io, ns)
    old_index = Path(ns + ".idx").read_bytes()
    io.compact(ns)
    # The state a crash between the two renames leaves: the new tar, the old index, the new index beside it.
    Path(ns + ".idx.compact").write_bytes(Path(ns + ".idx").read_bytes())
    Path(ns + ".idx").write_bytes(old_index)
    with get_io("taridx") as reader:
        assert reader.load_files(ns, sorted(expected)) == [expected[k] for k in sorted(expected)]
    assert Path(ns + ".idx").read_bytes() == old_index  # the reader changed nothing
    _check(ns, expected)  # the writer there finishes the compaction
    assert not Path(ns + ".idx.compact").exists()


def test_old_index_over_a_compacted_tar_is_refused_then_reindexed_without_loss(io, ns: str) -> None:
    expected = _fill(io, ns)
    old_index = Path(ns + ".idx").read_bytes()
    io.compact(ns)
    Path(ns + ".idx").write_bytes(old_index)  # an index that describes another layout
    with get_io("taridx") as fresh:
        with pytest.raises(IntegrityError):
            fresh.load_files(ns, sorted(expected))
        report = fresh.reindex(ns)  # every value the index knew is in the tar: no loss
        assert report.losses == []
    _check(ns, expected)


# --------------------------------------------------------------------------
# Processes: concurrent writers, a concurrent reader, SIGKILL
# --------------------------------------------------------------------------
def _value_for(writer: int, index: int) -> bytes:
    return f"writer {writer} value {index} ".encode() * (1 + index % 40)


def _concurrent_writer(ns: str, writer: int, count: int, batch: int) -> None:
    with get_io("taridx") as io:
        for start in range(0, count, batch):
            keys = [f"w{writer}-{i:05d}" for i in range(start, start + batch)]
            io.save_files(ns, keys, [_value_for(writer, i) for i in range(start, start + batch)])


def test_four_writers_and_a_reader(ns: str) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_concurrent_writer, args=(ns, w, 1000, 10)) for w in range(4)]
    for process in writers:
        process.start()
    checked = 0
    with get_io("taridx") as reader:
        while any(process.is_alive() for process in writers):
            keys = reader.list_keys(ns, "w*")
            sample = keys[-50:]
            for key, value in zip(sample, reader.load_files(ns, sample)):
                writer, index = int(key[1]), int(key[3:])
                assert value == _value_for(writer, index)
            checked += len(sample)
        for process in writers:
            process.join(60)
            assert process.exitcode == 0
        keys = reader.list_keys(ns)
        assert len(keys) == 4000
        values = reader.load_files(ns, keys)
        assert values == [_value_for(int(k[1]), int(k[3:])) for k in keys]
    assert checked > 0
    subprocess.run(["tar", "-tf", ns], capture_output=True, check=True)


def _killable_writer(ns: str, ack_path: str) -> None:
    with get_io("taridx") as io:
        batch = 0
        while True:
            keys = [f"k{batch:05d}-{j}" for j in range(1 + batch % 7)]
            io.save_files(ns, keys, [_value_for(batch, j) * (1 + j % 3) for j in range(len(keys))])
            if batch % 5 == 4:
                io.remove_files(ns, keys[0])
            with open(ack_path, "a") as ack:
                ack.write(f"{batch}\n")
            batch += 1


def test_sigkill_at_random_points_many_times(ns: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    rng = random.Random(7)
    for round_number in range(20):
        ack_path = str(tmp_path / f"ack{round_number}")
        target = ns.replace(".tar", f"-{round_number % 2}.tar")
        writer = context.Process(target=_killable_writer, args=(target, ack_path))
        writer.start()
        deadline = time.monotonic() + 60
        while not os.path.exists(ack_path) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(30)
        with open(ack_path) as ack:
            acked = [int(line) for line in ack.read().split("\n")[:-1]]
        with get_io("taridx") as fresh:  # a new process's view, opened after the crash
            present = set(fresh.list_keys(target))
            for batch in acked:
                for j in range(1 + batch % 7):
                    key = f"k{batch:05d}-{j}"
                    if batch % 5 == 4 and j == 0:
                        continue  # removed by the writer
                    assert key in present, f"acknowledged {key} lost in round {round_number}"
            for key in present:
                batch, j = int(key[1:6]), int(key[7:])
                assert fresh.load_files(target, key) == _value_for(batch, j) * (1 + j % 3)
        subprocess.run(["tar", "-tf", target], capture_output=True, check=True)


# --------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------
def test_many_namespaces_with_few_open_handles(tmp_path: Path) -> None:
    with get_io("taridx", max_open=2) as io:
        for n in range(6):
            io.save_files(str(tmp_path / f"ns{n}"), "k", str(n))
        assert [io.load_files(str(tmp_path / f"ns{n}"), "k") for n in range(6)] == [str(n).encode() for n in range(6)]
        assert len(io.backend.sessions) <= 2


def test_threads_racing_the_open_namespace_limit_leak_no_file(tmp_path: Path) -> None:
    """A thread may still use a namespace the LRU evicts under it: its files are closed when it is done."""
    import threading

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    namespaces = [str(tmp_path / f"ns{n}") for n in range(6)]
    before = open_files()
    with get_io("taridx", max_open=2) as io:
        for n, ns in enumerate(namespaces):
            io.save_files(ns, "k", str(n))
        failures: list[BaseException] = []

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(300):
                    n = rng.randrange(6)
                    assert io.load_files(namespaces[n], "k") == str(n).encode()
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(io.backend.sessions) <= 2
        assert open_files() <= before + 2 * 2  # at most two namespaces' tar and index
    assert open_files() == before


@pytest.mark.parametrize("max_open", [0, -1, 1.5, "2"])
def test_a_bad_open_namespace_limit_is_refused(max_open) -> None:
    with pytest.raises(InvalidArgumentError, match="max_open"):
        get_io("taridx", max_open=max_open)


def test_a_value_the_tar_lost_is_never_answered_by_any_read(tmp_path: Path) -> None:
    """Every read path (whole, buffer, head, metadata, stat, locations) refuses a value the tar no longer holds."""
    from mummi_io.core.contract import Locating

    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, "junk", os.urandom(5000))
        io.save_object(ns, "o1", list(range(100)))
        shutil.copy(ns, str(tmp_path / "old.tar"))
        io.remove_files(ns, "junk")
        io.compact(ns)  # o1 now sits where junk was in the old tar
    shutil.copy(str(tmp_path / "old.tar"), ns)  # an older tar restored under the newer index
    with get_io("taridx") as io:
        reads = {
            "load_files": lambda: io.load_files(ns, "o1"),
            "load_object": lambda: io.load_object(ns, "o1"),
            "object_info": lambda: io.object_info(ns, "o1"),
            "load_buffer": lambda: io.load_buffer(ns, "o1"),
            "load_head": lambda: io.load_head(ns, "o1", 16),
            "stat_keys": lambda: io.stat_keys(ns, "o1"),
            "index_entries": lambda: io.capability(Locating).index_entries(ns),
        }
        for name, read in reads.items():
            with pytest.raises(IntegrityError, match="no longer in its tar"):
                read()
                pytest.fail(f"{name} answered for a lost value")


def _use_inherited(io, ns: str, queue) -> None:
    io.save_files(ns, "from-child", b"c")
    queue.put(io.load_files(ns, ["from-parent", "from-child"]))


def test_forked_child_reopens_its_own_handles(io, ns: str) -> None:
    io.save_files(ns, "from-parent", b"p")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_use_inherited, args=(io, ns, queue))
    child.start()
    assert queue.get(timeout=60) == [b"p", b"c"]
    child.join(30)
    assert io.load_files(ns, "from-child") == b"c"


def test_lock_timeout_is_backend_unavailable(ns: str) -> None:
    from filelock import FileLock

    with get_io("taridx", lock_timeout=0.2) as io:
        io.save_files(ns, "k", b"v")
        with FileLock(ns + ".lock"):
            # the same process holds it through another FileLock object: flock blocks us
            with pytest.raises(BackendUnavailableError, match="lock"):
                io.save_files(ns, "k2", b"v")
        assert io.load_files(ns, "k") == b"v"  # readers never need the lock


@pytest.mark.parametrize("namespace", [".", "..", "/", "runs/.."])
def test_a_directory_is_never_a_taridx_namespace(tmp_path: Path, monkeypatch, namespace: str) -> None:
    """``mummi_io.save(obj, "name")`` on taridx used to create a hidden ``..tar`` in the working directory."""
    monkeypatch.chdir(tmp_path)
    with get_io("taridx") as io, pytest.raises(InvalidNamespaceError, match="names a directory"):
        io.save_files(namespace, "k", b"v")
    assert os.listdir(tmp_path) == []


def test_readers_never_see_a_false_loss_while_a_thread_compacts(tmp_path: Path) -> None:
    """A reader opening the files between a compaction's two renames (new tar, old index) must look again,
    not report the values as lost (and point the user at reindex --accept-loss)."""
    import threading

    ns, others = str(tmp_path / "x.tar"), [str(tmp_path / f"o{n}.tar") for n in range(3)]
    keys = [f"k{i}" for i in range(200)]
    values = {key: os.urandom(2000) for key in keys}
    errors: list[str] = []
    with get_io("taridx", max_open=1) as io:  # evictions: sessions of one namespace come and go between threads
        io.save_files(ns, keys, [values[k] for k in keys])
        for other in others:
            io.save_files(other, "a", b"a")
        done = threading.Event()

        def reader(seed: int) -> None:
            n = seed
            while not done.is_set():
                try:
                    assert io.load_files(ns, keys[:100]) == [values[k] for k in keys[:100]]
                    io.load_files(others[n % 3], "a")
                except Exception as exc:  # reported below
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                n += 1

        threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(3)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(60):
                io.save_files(ns, keys[:50], [values[k] for k in keys[:50]])
                io.compact(ns)
        finally:
            done.set()
            for thread in threads:
                thread.join()
    assert errors == []
