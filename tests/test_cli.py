"""The mummi-io command, driven as a user would: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mummi_io.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_demo_runs_a_campaign(tmp_path: Path) -> None:
    result = run("demo", "--workers", "2", "--results", "5", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "archived 10 results" in result.stdout
    assert len(list((tmp_path / "archive").glob("sim-*.npz"))) == 10
    assert list((tmp_path / "results").iterdir()) == []
    assert (tmp_path / "manager.chk").is_file()


def test_an_unknown_backend_or_option_is_bad_usage_with_a_message(tmp_path: Path) -> None:
    result = run("demo", "--backend", "nosuch", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown io kind 'nosuch'" in result.stderr
    result = run("ls", "-b", "tarix", str(tmp_path / "run.tar"))
    assert result.returncode == 2 and "unknown io kind 'tarix'" in result.stderr
    result = run("ls", "-o", "bogus=1", str(tmp_path))
    assert result.returncode == 2 and "it accepts: ['fsync']" in result.stderr
    result = run("ls", "-o", "fsync", str(tmp_path))
    assert result.returncode == 2 and "is not NAME=VALUE" in result.stderr


def test_help_and_version() -> None:
    assert "demo" in run("--help").stdout
    assert run("--version").stdout.startswith("mummi-io ")
    assert run("no-such-command").returncode == 2


# --------------------------------------------------------------------------
# Data commands, driven as a user would
# --------------------------------------------------------------------------
import json  # noqa: E402
import tarfile  # noqa: E402
import zlib  # noqa: E402

import pytest  # noqa: E402


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mummi_io.cli", *args], capture_output=True, input=stdin, timeout=300)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    contents = {"a.pdb": b"ATOM 1\n", "b.npz": bytes(range(256)) * 10, "c.txt": "unicodé\n".encode()}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    return contents


@pytest.mark.parametrize("backend", ["simple", "taridx"])
def test_put_ls_cat_get_info_mv_rm(tmp_path: Path, files: dict[str, bytes], backend: str) -> None:
    ns = str(tmp_path / "ns")
    put = cli("put", "-b", backend, ns, *(str(tmp_path / n) for n in files))
    assert put.returncode == 0, put.stderr
    assert cli("put", "-b", backend, ns, "-", "--key", "stdin.txt", stdin=b"from stdin").returncode == 0
    assert cli("ls", "-b", backend, ns).stdout.decode().split() == ["a.pdb", "b.npz", "c.txt", "stdin.txt"]
    assert cli("ls", "-b", backend, ns, "*.npz").stdout.decode().split() == ["b.npz"]
    long = json.loads(cli("--json", "ls", "-l", "-b", backend, ns, "b.npz").stdout)
    assert long == [{"key": "b.npz", "size": 2560, "crc32": f"{zlib.crc32(files['b.npz']):08x}"}]
    assert cli("cat", "-b", backend, ns, "a.pdb", "stdin.txt").stdout == b"ATOM 1\nfrom stdin"
    target = tmp_path / "out.bin"
    assert cli("get", "-b", backend, ns, "b.npz", "--output", str(target)).returncode == 0
    assert target.read_bytes() == files["b.npz"]
    info = json.loads(cli("--json", "info", "-b", backend, ns).stdout)
    assert info["keys"] == 4 and info["bytes"] == sum(map(len, files.values())) + 10 and info["exists"]
    assert json.loads(cli("--json", "stat", "-b", backend, ns, "c.txt").stdout)[0]["size"] == len(files["c.txt"])
    assert cli("mv", "-b", backend, ns, "a.pdb", "done-a.pdb").returncode == 0
    other = str(tmp_path / "archive")
    assert cli("mv", "-b", backend, ns, "--pattern", "*.txt", "--to", other).returncode == 0
    assert cli("ls", "-b", backend, other).stdout.decode().split() == ["c.txt", "stdin.txt"]
    assert cli("rm", "-b", backend, ns, "done-a.pdb", "never-was").returncode == 0
    assert cli("rm", "-b", backend, ns, "--pattern", "*.npz").returncode == 0
    assert cli("ls", "-b", backend, ns).stdout == b""


def test_exit_codes_and_messages(tmp_path: Path) -> None:
    ns = str(tmp_path / "ns")
    assert cli("put", ns, "-", "--key", "here", stdin=b"x").returncode == 0
    missing = cli("cat", ns, "nope")
    assert missing.returncode == 3 and b"nope" in missing.stderr
    assert cli("info", ns, "nope").returncode == 3
    assert cli("ls").returncode == 2
    bad_option = cli("ls", "-o", "fsynk=1", ns)
    assert bad_option.returncode == 2 and b"fsync" in bad_option.stderr
    assert cli("ls", "-o", "novalue", ns).returncode == 2
    hostile = cli("put", ns, "-", "--key", "../escape", stdin=b"x")
    assert hostile.returncode == 1 and b"key" in hostile.stderr
    assert not (tmp_path / "escape").exists()
    not_tar = cli("compact", ns)
    assert not_tar.returncode == 1 and b"taridx" in not_tar.stderr


def test_cp_between_backends_verify_and_corruption(tmp_path: Path, files: dict[str, bytes]) -> None:
    source = str(tmp_path / "src")
    cli("put", source, *(str(tmp_path / n) for n in files))
    archive = str(tmp_path / "archive.tar")
    copied = cli("--json", "cp", source, archive, "--to-backend", "taridx")
    assert copied.returncode == 0, copied.stderr
    report = json.loads(copied.stdout)
    assert report["copied"] == 3 and report["bytes"] == sum(map(len, files.values())) and report["skipped"] == 0
    again = json.loads(cli("--json", "cp", source, archive, "--to-backend", "taridx").stdout)
    assert again["copied"] == 0 and again["skipped"] == 3  # incremental
    assert copied.stderr == b""  # no progress bar when not on a terminal
    verified = json.loads(cli("--json", "verify", "-b", "taridx", archive).stdout)
    assert verified == {"checked": 3, "checksummed": True, "unchecked": 0, "bad": [], "damage": [], "notes": []}
    with tarfile.open(archive) as tar:
        offset = tar.getmember("b.npz").offset_data + 100
    with open(archive, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff")
    corrupt = cli("verify", "-b", "taridx", archive)
    assert corrupt.returncode == 4 and b"BAD b.npz" in corrupt.stdout
    assert cli("cat", "-b", "taridx", archive, "b.npz").returncode == 4
    plain = json.loads(cli("--json", "verify", source).stdout)
    assert plain["checked"] == 3 and plain["checksummed"] is False


def test_reindex_and_compact(tmp_path: Path, files: dict[str, bytes]) -> None:
    archive = str(tmp_path / "a.tar")
    cli("put", "-b", "taridx", archive, *(str(tmp_path / n) for n in files))
    cli("rm", "-b", "taridx", archive, "a.pdb")
    report = json.loads(cli("--json", "reindex", "-b", "taridx", archive).stdout)
    assert report["keys"] == 2 and report["lost"] == [] and report["damage"] == []
    compacted = json.loads(cli("--json", "compact", "-b", "taridx", archive).stdout)
    assert compacted["after"] < compacted["before"]
    assert cli("cat", "-b", "taridx", archive, "c.txt").stdout == files["c.txt"]


def test_verify_reports_damage_and_reindex_refuses_a_loss_unless_accepted(tmp_path: Path) -> None:
    archive = str(tmp_path / "a.tar")
    for name in ["one", "two", "three"]:
        (tmp_path / name).write_bytes(name.encode() * 400)
        cli("put", "-b", "taridx", archive, str(tmp_path / name))
    with open(archive, "r+b") as handle:  # flip a bit in the first member's name
        handle.seek(1)
        byte = handle.read(1)
        handle.seek(1)
        handle.write(bytes([byte[0] ^ 1]))
    damaged = cli("verify", "-b", "taridx", archive)
    assert damaged.returncode == 4 and b"DAMAGE damaged: bytes 0-" in damaged.stdout
    assert b"0 bad" in damaged.stdout  # every value is intact: the index knows where they are
    os.truncate(archive, os.path.getsize(archive) - 1500)  # now the tar loses "three"
    refused = cli("reindex", "-b", "taridx", archive)
    assert refused.returncode == 4 and b"would lose" in refused.stderr and b"three" in refused.stderr
    accepted = json.loads(cli("--json", "reindex", "-b", "taridx", archive, "--accept-loss").stdout)
    assert accepted["lost"] == ["three"] and accepted["kept_from_index"] == ["one"]
    assert cli("cat", "-b", "taridx", archive, "one").stdout == b"one" * 400


def test_cp_from_redis_to_an_archive(tmp_path: Path, redis_single) -> None:
    server = redis_single[0]
    options = ["-o", f"nodes={server.name}", "-o", f"password={server.password}"]
    ns = f"campaign-{tmp_path.name}"
    for name in ["r1", "r2"]:
        (tmp_path / name).write_bytes(name.encode() * 100)
        assert cli("put", "-b", "redis", *options, ns, str(tmp_path / name)).returncode == 0
    archive = str(tmp_path / "archive.tar")
    copied = cli("cp", "-b", "redis", *options, ns, archive, "--to-backend", "taridx")  # redis options stay with redis
    assert copied.returncode == 0, copied.stderr
    assert cli("cat", "-b", "taridx", archive, "r2").stdout == b"r2" * 100
    fsynced = cli("cp", "-b", "redis", *options, ns, archive + "2", "--to-backend", "taridx", "--to-option", "fsync=true")
    assert fsynced.returncode == 0, fsynced.stderr


def test_sync_archive_and_registry_commands(tmp_path: Path, files: dict[str, bytes]) -> None:
    source = str(tmp_path / "src")
    cli("put", source, *(str(tmp_path / n) for n in files))
    mirror = str(tmp_path / "mirror")
    cli("put", mirror, str(tmp_path / "a.pdb"), "--key", "stale")
    refused = cli("sync", source, mirror, "--mirror")  # it would delete 1 of the 1 key(s) there
    assert refused.returncode == 1 and b"--yes" in refused.stderr
    synced = json.loads(cli("--json", "sync", source, mirror, "--mirror", "--yes").stdout)
    assert synced["copied"] == 3 and synced["deleted"] == 1
    assert json.loads(cli("--json", "sync", source, mirror).stdout)["skipped"] == 3
    archived = json.loads(cli("--json", "archive", source, str(tmp_path / "a.tar"), "--to-backend", "taridx").stdout)
    assert archived["removed_from_source"] == 3
    assert cli("ls", source).stdout == b""
    assert sorted(cli("ls", "-b", "taridx", str(tmp_path / "a.tar")).stdout.decode().split()) == sorted(files)

    import mummi_io
    from mummi_io.filer import Filer

    local = tmp_path / "models"
    remote_ns = str(tmp_path / "remote.tar")
    Filer(str(local), mummi_io.get_io("taridx"), remote_ns).dump({"w": 1}, "m1")
    base = ["registry", "--local-dir", str(local), "--remote-backend", "taridx", "--remote-namespace", remote_ns]
    assert cli(*base, "show").stdout.decode().strip() == "m1 (local)"
    assert cli(*base, "push-all").returncode == 0
    assert cli(*base, "show").stdout.decode().strip() == "m1 (synced)"
    assert cli(*base, "pull", "nope").returncode == 3
    assert cli(*base, "remove", "m1", "--remove-remote").returncode == 0
    assert cli(*base, "show").stdout.decode().strip() == "[no files exist]"


def test_bench_entry_point_reaches_the_benchmarks() -> None:
    result = cli("bench", "--help")
    assert result.returncode == 0 and b"--quick" in result.stdout


# --------------------------------------------------------------------------
# Signals from job scripts
# --------------------------------------------------------------------------
def test_signal_commands_on_files(tmp_path: Path) -> None:
    place = str(tmp_path / "signals")
    missing = run("signal", "test", place, "sim-1.done")
    assert missing.returncode == 3 and "missing" in missing.stdout
    assert run("signal", "send", place, "sim-1.done", "sim-2.done").returncode == 0
    assert (tmp_path / "signals" / "sim-1.done").read_bytes() == b"1"  # MuMMI's signal file
    assert run("signal", "test", place, "sim-1.done", "sim-2.done").returncode == 0
    waited = run("--json", "signal", "wait", place, "sim-1.done", "sim-3.done", "--timeout", "0.3")
    assert waited.returncode == 3
    assert json.loads(waited.stdout) == {"arrived": ["sim-1.done"], "missing": ["sim-3.done"]}
    assert "sim-3.done" in waited.stderr
    assert run("signal", "wait", place, "sim-1.done", "sim-3.done", "--any").stdout.split() == ["sim-1.done"]
    assert run("signal", "clear", place, "sim-1.done").returncode == 0
    assert run("signal", "test", place, "sim-1.done").returncode == 3
    assert run("signal", "send", place, "../escape").returncode == 1


def test_signal_wait_wakes_when_another_process_sends(tmp_path: Path) -> None:
    place = str(tmp_path / "signals")
    waiter = subprocess.Popen([sys.executable, "-m", "mummi_io.cli", "signal", "wait", place, "go", "--timeout", "60"],
                              stdout=subprocess.PIPE, text=True)
    assert run("signal", "send", place, "go").returncode == 0
    assert waiter.communicate(timeout=60)[0].split() == ["go"]
    assert waiter.returncode == 0


def test_signal_commands_on_redis(redis_single, redis_password) -> None:
    options = ["-b", "redis", "-o", f"nodes={redis_single[0].name}", "-o", f"password={redis_password}",
               "-o", "coordination=backend"]
    assert run("signal", "send", *options, "campaign-cli", "ready").returncode == 0
    assert run("signal", "test", *options, "campaign-cli", "ready").returncode == 0
    assert run("signal", "wait", *options, "campaign-cli", "ready", "--timeout", "5").stdout.split() == ["ready"]
    assert run("signal", "test", "campaign-cli", "ready").returncode == 3  # files hold no such signal


def test_destructive_commands_guard_themselves(tmp_path: Path) -> None:
    """A misspelt source changes nothing and exits 3; --dry-run changes nothing; a mirror that would empty most
    of the destination needs --yes."""
    results, backup = str(tmp_path / "results"), str(tmp_path / "backup")
    for i in range(4):
        cli("put", results, "-", "--key", f"r{i}", stdin=b"result")
        cli("put", backup, "-", "--key", f"b{i}", stdin=b"kept")
    before = sorted(os.listdir(backup))
    typo = cli("sync", str(tmp_path / "resultz"), backup, "--mirror")
    assert typo.returncode == 3 and b"does not exist" in typo.stderr and sorted(os.listdir(backup)) == before
    for command in (["archive", str(tmp_path / "resultz"), backup], ["rm", str(tmp_path / "resultz"), "--pattern", "*"],
                    ["mv", str(tmp_path / "resultz"), "--pattern", "*", "--to", backup], ["ls", str(tmp_path / "nope")],
                    ["verify", str(tmp_path / "nope")], ["info", str(tmp_path / "nope")]):
        assert cli(*command).returncode == 3, command
    dry = json.loads(cli("--json", "sync", results, backup, "--mirror", "--dry-run").stdout)
    assert dry["copied"] == 4 and dry["deleted"] == 4 and dry["dry_run"] and sorted(os.listdir(backup)) == before
    assert cli("sync", results, backup, "--mirror").returncode == 1 and sorted(os.listdir(backup)) == before
    drain = cli("archive", results, backup, "--dry-run")
    assert drain.returncode == 0 and b"would be removed" in drain.stdout and len(os.listdir(results)) == 4
    listed = cli("rm", results, "--pattern", "r*", "--dry-run")
    assert listed.returncode == 0 and b"r3" in listed.stdout and len(os.listdir(results)) == 4
    moved = cli("mv", results, "--pattern", "r*", "--to", backup, "--dry-run")
    assert moved.returncode == 0 and b"would move 4" in moved.stdout and len(os.listdir(results)) == 4
    assert cli("sync", results, backup, "--mirror", "--yes").returncode == 0
    assert sorted(os.listdir(backup)) == sorted(os.listdir(results))


def test_errors_are_one_line_in_command_line_terms_unless_debug(tmp_path: Path) -> None:
    ns = str(tmp_path / "ns")
    absent = cli("put", ns, str(tmp_path / "no-such-file"))
    assert absent.returncode == 1 and b"Traceback" not in absent.stderr and absent.stderr.count(b"\n") == 1
    assert b"No such file or directory" in absent.stderr and b"no-such-file" in absent.stderr
    assert cli("put", ns, "-", "--key", "k", stdin=b"some bytes").returncode == 0
    full = cli("get", ns, "k", "--output", "/dev/full")
    assert full.returncode == 1 and b"Traceback" not in full.stderr and b"No space left" in full.stderr
    missing = cli("cat", ns, "nope")
    assert missing.returncode == 3 and b"missing=None" not in missing.stderr and b"mummi-io ls" in missing.stderr
    debug = cli("--debug", "put", ns, str(tmp_path / "no-such-file"))
    assert debug.returncode != 0 and b"Traceback" in debug.stderr


def test_keys_with_control_characters_list_as_one_line_each(tmp_path: Path) -> None:
    ns = str(tmp_path / "ns")
    for key in ("plain", "two\nlines", "tab\there", "back\\slash"):
        assert cli("put", ns, "-", "--key", key, stdin=b"v").returncode == 0
    listed = cli("ls", ns).stdout.decode().splitlines()
    assert listed == ["back\\\\slash", "plain", "tab\\there", "two\\nlines"]
    raw = cli("ls", "-0", ns).stdout
    assert raw.split(b"\0")[:-1] == [b"back\\slash", b"plain", b"tab\there", b"two\nlines"]
