"""MuMMI drop-in: MuMMI's call patterns through ``mummi_io.compat``, on every backend.

Each test transcribes how MuMMI's code (mummi-core's interfaces and tests,
mummi-ras's IO layer, feedback managers, patch creator, selectors, job
tracker and workflow manager) calls its I/O layer and what it does with the
results: written here from those call sites, not copied.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import yaml

from mummi_io import InvalidArgumentError, compat, get_io


@pytest.fixture(params=["simple", "taridx", "redis"])
def mummi(request, tmp_path, monkeypatch) -> compat.MummiIO:
    """What ``mummi_core.get_io(kind)`` returns, in a fresh working directory (MuMMI uses relative paths)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUMMI_REDIS_DIR", str(tmp_path / "no-registry"))
    if request.param == "redis":
        servers = request.getfixturevalue("redis_three")
        monkeypatch.setenv("MUMMI_REDIS_NODES", ",".join(s.name for s in servers))
        monkeypatch.setenv("MUMMI_REDIS_PASSWORD", servers[0].password)
        monkeypatch.setenv("MUMMI_ROOT", str(tmp_path / "root"))  # a fresh namespace space per test
    compat.get_io.cache_clear()
    yield compat.get_io(request.param)
    compat.get_io.cache_clear()


def _prefix(mummi: compat.MummiIO, tmp_path: Path) -> str:
    """Namespaces are paths on disk; on Redis they are strings: keep tests apart there too."""
    return str(tmp_path.name) + "/" if mummi.get_type() == "redis" else ""


# --------------------------------------------------------------------------
# mummi-core's own interface test flow, with the results it prints
# --------------------------------------------------------------------------
def test_the_mummi_core_interface_flow(mummi, tmp_path) -> None:
    p = _prefix(mummi, tmp_path) + "_test_io"
    assert mummi.save_files(f"{p}/dir", "testkey", "testdata") is True
    assert mummi.save_files(f"{p}/dir", ["testkey2", "testkey3"], ["testdata2", "testdata3"]) is True
    assert mummi.load_files(f"{p}/dir", "testkey") == b"testdata"
    assert mummi.load_files(f"{p}/dir", ["testkey2", "testkey3"]) == [b"testdata2", b"testdata3"]
    assert mummi.namespace_exists(f"{p}/dir") is True
    assert mummi.file_exists(f"{p}/dir", "testkey") is True
    assert mummi.namespace_exists(f"{p}/baddir") is False
    assert mummi.file_exists(f"{p}/dir", "badkey") is False
    assert mummi.file_exists(f"{p}/baddir", "testkey") is False
    arrays = {"a": np.random.rand(4, 6), "b": np.random.rand(3, 5)}
    assert mummi.save_npz(f"{p}/file", "key", arrays) is True
    loaded = mummi.load_npz(f"{p}/file", "key")
    assert max(np.max(np.abs(arrays[k] - loaded[k])) for k in arrays) == 0.0
    assert mummi.save_files(f"{p}/test_namespace", "test_key", "blahblahblah") is True
    assert mummi.load_files(f"{p}/test_namespace", "test_key") == b"blahblahblah"
    keys = [f"k_{i}" for i in range(500)]
    assert mummi.save_files(f"{p}/dir", keys, [f"d_{i}" for i in range(500)]) is True
    assert mummi.load_files(f"{p}/dir", keys)[-1] == b"d_499"
    assert len(mummi.list_keys(f"{p}/dir", "*")) == 503
    mixed = [pickle.dumps(5), "testdata3", pickle.dumps({"a": 5})]
    assert mummi.save_files(f"{p}/dir", ["testkey2", "testkey3", "testkey4"], mixed) is True
    assert mummi.load_files(f"{p}/dir", ["testkey2", "testkey3", "testkey4"]) == [
        mixed[0], b"testdata3", mixed[2]]


# --------------------------------------------------------------------------
# The conventions MuMMI's callers test
# --------------------------------------------------------------------------
def test_missing_keys_are_none_as_each_mummi_backend_gave(mummi, tmp_path) -> None:
    ns = _prefix(mummi, tmp_path) + "macro/sim1"
    mummi.save_files(ns, ["cfield.iter12#000000", "snapshot.00000012/atoms#000000"], [b"c", b"a"])
    assert mummi.load_files(ns, "gone") is None  # the AA feedback: `if data is None: raise`
    assert mummi.load_npz(ns, "gone") is None
    found = mummi.load_files(ns, ["cfield.iter12#000000", "gone#0"])
    if mummi.get_type() == "redis":
        assert found == [b"c", None]
    else:
        assert found is None  # the patch creator: `if data is None: break`
    data = mummi.load_files(ns, ["cfield.iter12#000000", "snapshot.00000012/atoms#000000"])
    del data[0]  # the patch creator edits the list it gets
    assert data == [b"a"]


def test_saves_answer_true_or_false_and_log_the_error(mummi, tmp_path, caplog) -> None:
    ns = _prefix(mummi, tmp_path) + "out"
    with caplog.at_level("ERROR", logger="mummi_io.compat"):
        assert mummi.save_files(ns, "k", None) is False
        assert mummi.save_files(ns, "k", 5) is False
        assert mummi.save_files(ns, ["a", "b"], [b"1"]) is False
        assert mummi.save_files(ns, ["a"], b"not a list") is False
    assert caplog.text.count("Failed to save files") == 4
    assert mummi.namespace_exists(ns) is False
    assert mummi.save_npz(ns, "rdf_main", {"x": np.ones(2)}) is True  # `if io.save_npz(...)`


def test_check_environment_answers_a_bool(mummi, tmp_path, monkeypatch) -> None:
    if mummi.get_type() != "redis":
        assert mummi.check_environment() is True
        return
    monkeypatch.setenv("MUMMI_ROOT", str(tmp_path / "empty-root"))
    assert mummi.check_environment() is False  # no server list: MuMMI's bind_local_redis said False
    mummi.bind_global_redis("127.0.0.1", 6334)
    assert mummi.check_environment() is True


def test_object_arrays_load_with_mummis_reader(mummi, tmp_path) -> None:
    ns = _prefix(mummi, tmp_path) + "aa"
    checkpoint = {"ids": np.array([{"a": 1}, "x", None], dtype=object), "n": 3, "names": ["a", "b"]}
    assert mummi.save_npz(ns, "aa_checkpoint.npz", checkpoint) is True
    loaded = mummi.load_npz(ns, "aa_checkpoint.npz")
    assert loaded["ids"].tolist() == [{"a": 1}, "x", None] and int(loaded["n"]) == 3


def test_list_keys_matches_as_each_mummi_backend_did(mummi, tmp_path) -> None:
    ns = _prefix(mummi, tmp_path) + "fb"
    names = ["rasraf_1_aaf00000012.npz", "rasraf_2_aaf00000012.npz", "done-rasraf_0_aaf00000011.npz",
             "ras_9_aaf00000001.npz", "snapshot.1/subset#000000", "snapshot.2/subset#000000", ".hidden"]
    mummi.save_files(ns, names, [b"x"] * len(names))
    # What every caller does: a basename pattern at the top.
    assert mummi.list_keys(ns, "rasraf*_aaf*") == ["rasraf_1_aaf00000012.npz", "rasraf_2_aaf00000012.npz"]
    listed = mummi.list_keys(ns, "*")
    if mummi.get_type() == "simple":  # glob: entries at the top, directories too, no hidden names
        assert listed == sorted(names[:4] + ["snapshot.1", "snapshot.2"])
        assert mummi.list_keys(ns, "snapshot.*/subset*") == ["subset#000000"]
    elif mummi.get_type() == "taridx":  # pathlib: right-anchored, so nested keys match by their base name
        assert listed == sorted(names[:4] + ["subset#000000", ".hidden"])
        assert mummi.list_keys(ns, "subset*") == ["subset#000000"]
    else:  # Redis's glob: the whole key, * crossing /
        assert listed == sorted(names[:4] + ["subset#000000", ".hidden"])
        assert mummi.list_keys(ns, "snapshot.*") == ["subset#000000"]


def test_absolute_keys_inside_the_namespace_are_accepted(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    simple = compat.MummiIO("simple")
    outpath = str(tmp_path / "rdfs")
    assert simple.save_npz(outpath, os.path.join(outpath, "rdf_STATE") + ".npz", {"data": np.ones(3)}) is True
    assert (tmp_path / "rdfs" / "rdf_STATE.npz").is_file()
    assert simple.save_files(outpath, "/etc/escape", b"x") is False  # outside: refused, never written


# --------------------------------------------------------------------------
# The snapshot flow: simulation files in a directory, positions into a tar
# --------------------------------------------------------------------------
def test_snapshots_from_simulation_directories_into_a_tar(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for frame in (100, 200):  # written by the simulation code itself, not through the I/O layer
        path = tmp_path / "cgsim" / f"snapshot.{frame:012d}" / "subset#000000"
        path.parent.mkdir(parents=True)
        path.write_bytes(f"positions {frame}".encode())
    simple, tar = compat.MummiIO("simple"), compat.MummiIO("taridx")
    data = simple.load_files("cgsim", [f"snapshot.{f:012d}/subset#000000" for f in (100, 200)])
    assert tar.save_files("cgout/positions", [f"pos.{f:012d}" for f in (100, 200)], data) is True
    names = tar.load_index("cgout/positions")[:, 0]
    assert [n for n in names if PurePosixPath(n).match("pos.????????????")] == ["pos.000000000100", "pos.000000000200"]
    with tarfile.open("cgout/positions.tar") as archive:  # the analysis opens its tar with tarfile
        assert archive.extractfile("pos.000000000200").read() == b"positions 200"
    assert tar.files_exist("cgout/positions", ["pos.000000000100", "nope"]) == [True, False]


# --------------------------------------------------------------------------
# The macro feedback over Redis: per-server listing, loading in a Pool, archiving
# --------------------------------------------------------------------------
def _read_x(handle) -> list:
    with np.load(handle) as npz:
        return npz["x"].tolist()


def test_the_macro_feedback_reads_and_archives_per_server(redis_three, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MUMMI_REDIS_NODES", ",".join(s.name for s in redis_three))
    monkeypatch.setenv("MUMMI_REDIS_PASSWORD", redis_three[0].password)
    redis_io = compat.MummiIO("redis")
    ns = f"{tmp_path.name}/feedback-cg2ml"
    for i in range(60):
        assert redis_io.save_npz(ns, f"rdf_sim_{i}_00000003", {"x": np.arange(i % 5)}) is True
    servers_to_keys = redis_io.list_servers_to_keys(ns, "rdf_sim_*_*")
    assert len(servers_to_keys) == 3 and sum(map(len, servers_to_keys.values())) == 60
    assert all(key.endswith(".npz") for keys in servers_to_keys.values() for key in keys)
    arguments = [(ns, keys[start:start + 7], server, _read_x)
                 for server, keys in servers_to_keys.items() for start in range(0, len(keys), 7)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:  # MuMMI hands the bound methods to a Pool
        loaded = pool.starmap(redis_io.load_npz_at_server, arguments)
    merged = {key: value for chunk in loaded for key, value in chunk.items()}
    assert len(merged) == 60 and merged["rdf_sim_7_00000003.npz"] == [0, 1]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        pool.starmap(redis_io.rename_files_at_server,
                     [(ns, ns + "/processed_rdfs", keys, server) for server, keys in servers_to_keys.items()])
    assert redis_io.list_servers_to_keys(ns, "rdf_sim_*_*") == {}
    assert sum(map(len, redis_io.list_servers_to_keys(ns + "/processed_rdfs", "*").values())) == 60
    redis_io.remove_files_at_server(ns + "/processed_rdfs", ["rdf_sim_0_00000003.npz"], "any")
    assert redis_io.file_exists(ns + "/processed_rdfs", "rdf_sim_0_00000003.npz") is False


def test_bind_global_redis_writes_mummis_server_list(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MUMMI_ROOT", str(tmp_path))
    monkeypatch.delenv("MUMMI_REDIS_REGISTRY", raising=False)
    assert compat.MummiIO.bind_local_redis() is False
    compat.MummiIO.bind_global_redis("node1", 6334)
    compat.MummiIO.bind_global_redis("node2", "6335")
    compat.MummiIO.bind_global_redis("node1", 6334)
    lines = [line for line in (tmp_path / "redis" / "all_servers.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["node1 6334", "node2 6335"]
    assert compat.MummiIO.bind_local_redis() is True


# --------------------------------------------------------------------------
# Checkpoints, signals and backups, as the workflow manager and the feedback managers use them
# --------------------------------------------------------------------------
def test_checkpoints_with_mummis_keywords_and_values(tmp_path) -> None:
    simple = compat.MummiIO("simple")
    chk = str(tmp_path / "ws" / "wf.chk")
    state = {"jobs_cg": {"jobCnt": 3, "queued": [1, 2], "running": {"7": [3]}}, "naggregate": np.array(5)}
    simple.save_checkpoint(chk, state, use_tstamp=True)
    assert "ts" in state  # as MuMMI did, the caller's dict is stamped
    loaded = simple.load_checkpoint(chk, loader=yaml.UnsafeLoader)
    assert loaded["jobs_cg"]["running"] == {"7": [3]} and loaded["naggregate"] == 5
    simple.save_checkpoint(chk, {"round": 2}, use_tstamp=True)
    assert [p.name for p in (tmp_path / "ws").iterdir() if ".bak." in p.name][0].startswith("wf.chk.bak.")
    assert simple.load_checkpoint(str(tmp_path / "ws" / "none.chk")) == {}


def test_a_checkpoint_mummi_wrote_with_numpy_values_is_not_taken_for_damaged(tmp_path) -> None:
    chk = tmp_path / "macro.chk"
    with open(chk, "w") as handle:  # what MuMMI's save_checkpoint wrote: yaml.dump, numpy values tagged
        yaml.dump({"naggregates": np.int64(3), "rdf": {"naggregate": np.array(5)}, "w": np.arange(2.0),
                   "ts": "2021-07-16 10:31:24"}, handle)
    (tmp_path / "macro.chk.bak").write_text("naggregates: 1\nts: old\n")
    loaded = get_io("simple").load_checkpoint(str(chk))
    assert loaded["naggregates"] == 3 and loaded["rdf"]["naggregate"] == 5 and loaded["w"].tolist() == [0.0, 1.0]


def test_checkpoint_yaml_cannot_run_code(tmp_path) -> None:
    chk = tmp_path / "evil.chk"
    chk.write_text("!!python/object/apply:os.system ['touch " + str(tmp_path / "pwned") + "']\n")
    (tmp_path / "evil.chk.bak").write_text("safe: 1\n")
    assert get_io("simple").load_checkpoint(str(chk)) == {"safe": 1}
    assert not (tmp_path / "pwned").exists()


def test_signals_and_backups_of_the_job_tracker(tmp_path) -> None:
    simple = compat.MummiIO("simple")
    sim = str(tmp_path / "sims-cg" / "sim1")
    assert simple.test_signal(sim, "createsims_success") is False
    simple.send_signal(sim, "createsims_success")
    simple.send_signal(sim, "createsims_success")  # a second time: no error
    assert simple.test_signal(sim, "createsims_success") is True
    assert simple.test_signal(sim, "") is False
    assert simple.save_npz(str(tmp_path / "ws"), "checkpoint.npz", {"x": np.ones(2)}) is True
    simple.take_backup(str(tmp_path / "ws" / "checkpoint.npz"))
    assert (tmp_path / "ws" / "checkpoint.npz.bak").is_file()


# --------------------------------------------------------------------------
# install(): mummi_core hands out these interfaces
# --------------------------------------------------------------------------
def _fake_mummi_core(tmp_path: Path, **interfaces: str) -> None:
    """The shape of mummi_core that install() needs: get_io at both levels, and interface modules."""
    package = tmp_path / "site" / "mummi_core"
    (package / "interfaces").mkdir(parents=True)
    (package / "__init__.py").write_text("from .interfaces import get_io, get_interfaces\n")
    (package / "interfaces" / "__init__.py").write_text(
        "def get_io(kind):\n    raise RuntimeError('the original was called')\n"
        "def get_interfaces():\n    return []\n")
    for module, source in interfaces.items():
        (package / "interfaces" / f"{module}.py").write_text(source)


def test_install_makes_mummi_core_hand_out_compat_interfaces(tmp_path) -> None:
    _fake_mummi_core(tmp_path, simple="class IO_Simple:\n    pass\n")
    program = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path / 'site')!r})
        from mummi_io import compat
        assert compat.install() is True
        import mummi_core
        from mummi_core.interfaces import get_io
        from mummi_core.interfaces.simple import IO_Simple
        io = mummi_core.get_io("simple")
        assert io is get_io("simple") is IO_Simple and io.get_type() == "simple"
        assert io.save_files({str(tmp_path / 'ns')!r}, "k", "v") is True
        assert IO_Simple.list_keys({str(tmp_path / 'ns')!r}, "*") == ["k"]
        print("installed")
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "installed" in result.stdout, result.stderr


def test_install_patches_all_it_can_when_one_mummi_module_fails_to_import(tmp_path) -> None:
    _fake_mummi_core(tmp_path, simple="class IO_Simple:\n    pass\n", redis="class IO_Redis:\n    pass\n",
                     tar="raise OSError('pytaridx found no libc')\n")  # not an ImportError
    program = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path / 'site')!r})
        from mummi_io import compat
        assert compat.install() is True
        import mummi_core
        from mummi_core.interfaces.simple import IO_Simple
        from mummi_core.interfaces.redis import IO_Redis
        assert IO_Simple is mummi_core.get_io("simple") and IO_Redis is mummi_core.get_io("redis")
        assert mummi_core.get_io("taridx").get_type() == "taridx"
        print("installed")
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "installed" in result.stdout, result.stderr
    assert "mummi_core.interfaces.tar cannot be imported (OSError" in result.stderr


def test_absolute_keys_only_inside_the_namespace_itself(mummi, tmp_path, caplog) -> None:
    """``/abs/run/x`` belongs to namespace ``run``, never to a sibling such as ``run.old``."""
    namespace = str(tmp_path / "run.old")
    inside = str(tmp_path / "run.old" / "rdf" / "x.npz")
    sibling = str(tmp_path / "run" / "x.npz")
    assert mummi.save_files(namespace, inside, b"in") is True
    assert mummi.load_files(namespace, "rdf/x.npz") == b"in" and mummi.load_files(namespace, inside) == b"in"
    with caplog.at_level("ERROR"):
        assert mummi.save_files(namespace, sibling, b"out") is False
        assert mummi.load_files(namespace, sibling) is None
        assert mummi.load_files(namespace, "../run/x.npz") is None
        assert mummi.files_exist(namespace, [inside, "../x", sibling]) == [True, False, False]
        assert mummi.file_exists(namespace, "/etc/passwd") is False
        mummi.remove_files(namespace, ["../run/x.npz", sibling])  # logged, nothing removed, no exception
        mummi.move_key(namespace, "/etc/passwd")
    assert "outside namespace" in caplog.text
    assert not (tmp_path / "run").exists()
    assert mummi.save_files(namespace, Path(inside), b"path") is True  # pathlib keys, as os.path.join took
    assert mummi.load_files(namespace, Path(inside)) == b"path"


def test_install_without_mummi_core_says_so() -> None:
    result = subprocess.run([sys.executable, "-c", "from mummi_io import compat; print(compat.install())"],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------
# MuMMI's environment: a node count, its server list
# --------------------------------------------------------------------------
def test_mummi_redis_nodes_as_a_count_uses_mummis_server_list(tmp_path, monkeypatch, caplog) -> None:
    from mummi_io.backends.redis.nodes import resolve_deployment
    from mummi_io.core.errors import InvalidArgumentError

    monkeypatch.setenv("MUMMI_REDIS_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("MUMMI_REDIS_REGISTRY", raising=False)
    monkeypatch.setenv("MUMMI_ROOT", str(tmp_path))
    monkeypatch.setenv("MUMMI_REDIS_NODES", "3")
    with pytest.raises(InvalidArgumentError, match="a count"):
        resolve_deployment()
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "all_servers.txt").write_text("node1 6334\nnode2 6335\n")
    with caplog.at_level("WARNING"):
        deployment = resolve_deployment()
    assert [n.name for n in deployment.nodes] == ["node1:6334", "node2:6335"]
    assert "3 Redis node(s) expected" in caplog.text
    monkeypatch.delenv("MUMMI_REDIS_NODES")
    monkeypatch.setenv("MUMMI_REDIS_NNODES", "2")  # what MuMMI's launch script exports
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert len(resolve_deployment().nodes) == 2
    assert "expected" not in caplog.text


def test_servers_list_finds_the_nodes_get_io_would_use(tmp_path) -> None:
    """Without --registry, `mummi-io servers list` resolves as get_io does, MuMMI's all_servers.txt included."""
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "all_servers.txt").write_text("node1 6334\nnode2 6335\n")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MUMMI_REDIS")}
    environment.update(MUMMI_ROOT=str(tmp_path), MUMMI_REDIS_DIR=str(tmp_path / "none"), MUMMI_REDIS_NODES="2")
    listed = subprocess.run([sys.executable, "-m", "mummi_io.cli", "--json", "servers", "list"], env=environment,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    report = __import__("json").loads(listed.stdout)
    assert [node["port"] for node in report["nodes"]] == [6334, 6335]
    assert "all_servers.txt" in report["source"]
    environment["MUMMI_REDIS_NODES"] = "\u00b2"  # a superscript two is a digit to Python, not a count
    odd = subprocess.run([sys.executable, "-m", "mummi_io.cli", "servers", "list"], env=environment,
                         capture_output=True, text=True, timeout=60)
    assert odd.returncode != 0 and "Traceback" not in odd.stderr


# --------------------------------------------------------------------------
# A MuMMI deployment's keys taken over: the mummi-redis layout and its import
# --------------------------------------------------------------------------
def test_import_a_mummi_redis_deployment_verified_and_resumable(redis_single, tmp_path) -> None:
    import redis

    server = redis_single[0]
    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    prefix = tmp_path.name
    for i in range(30):  # MuMMI's layout, as its IO_Redis wrote it
        client.set(f"{prefix}/feedback-cg2ml::rdf_sim_{i}_00000003.npz", f"rdf {i}".encode())
    client.set(f"{prefix}/other::a/b", b"nested")
    client.set(f"{prefix}/other::../escape", b"not a valid key")
    destination = tmp_path / "archive"
    command = [sys.executable, "-m", "mummi_io.cli", "--json", "import-mummi-redis", "--servers", server.name,
               "--password", server.password, "--namespaces", f"{prefix}/*", "--to-backend", "taridx"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # a key was left behind: a script must notice
    report = __import__("json").loads(first.stdout)
    assert report["namespaces"] == 2 and report["copied"] == 31
    assert [entry.split(" (")[0] for entry in report["left"]] == [f"{prefix}/other::../escape"]
    again = __import__("json").loads(subprocess.run(command, capture_output=True, text=True, timeout=120,
                                                    cwd=tmp_path).stdout)
    assert again["copied"] == 0 and again["skipped"] == 31  # resumable: nothing copied twice
    with get_io("taridx") as io:
        assert io.load_files(str(tmp_path / prefix / "feedback-cg2ml"), "rdf_sim_7_00000003.npz") == b"rdf 7"
        assert io.load_files(str(tmp_path / prefix / "other"), "a/b") == b"nested"
    # and back: mummi_io's data written in MuMMI's layout
    with get_io("taridx") as source, get_io("mummi-redis", servers=server.name, password=server.password) as legacy:
        from mummi_io.sync import sync

        sync(source, str(tmp_path / prefix / "other"), legacy, f"{prefix}/exported")
        assert client.get(f"{prefix}/exported::a/b") == b"nested"
        assert legacy.list_keys(f"{prefix}/exported") == ["a/b"]
        assert destination.exists() is False


def _import(server, *extra: str, cwd) -> tuple[int, dict]:
    command = [sys.executable, "-m", "mummi_io.cli", "--json", "import-mummi-redis", "--servers", server.name,
               "--password", server.password, *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.stdout, done.stderr
    return done.returncode, __import__("json").loads(done.stdout)


def test_import_dry_run_conflicts_move_and_root(redis_single, tmp_path) -> None:
    """A dry run writes nothing; a differing destination key is never overwritten silently; --move drains."""
    import redis

    server = redis_single[0]
    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    campaign = f"/p/gpfs1/{tmp_path.name}/feedback"  # MuMMI's namespaces are absolute paths
    for i in range(5):
        client.set(f"{campaign}::f{i}", f"v{i}".encode())
    root = tmp_path / "root"
    options = ["--namespaces", campaign, "--to-backend", "simple", "--root", str(root)]
    landed = root / campaign.lstrip("/")

    code, report = _import(server, *options, "--dry-run", cwd=tmp_path)
    assert code == 0 and report["copied"] == 5 and not root.exists()

    landed.mkdir(parents=True)
    (landed / "f0").write_bytes(b"the destination's own, different value")
    code, report = _import(server, *options, "--move", cwd=tmp_path)
    assert code == 1 and report["copied"] == 4 and report["removed_from_source"] == 4
    assert report["conflicts"] == [f"{campaign}::f0 -> {landed}"]
    assert (landed / "f0").read_bytes() == b"the destination's own, different value"  # not overwritten
    assert client.get(f"{campaign}::f0") == b"v0"  # and not removed from MuMMI's servers
    assert client.get(f"{campaign}::f3") is None and (landed / "f3").read_bytes() == b"v3"

    (landed / "f3").unlink()  # the user deletes a moved key; a rerun must not bring it back
    code, report = _import(server, *options, "--move", cwd=tmp_path)
    assert code == 1 and report["copied"] == 0 and not (landed / "f3").exists()

    code, report = _import(server, *options, "--move", "--overwrite", cwd=tmp_path)
    assert code == 0 and report["copied"] == 1 and (landed / "f0").read_bytes() == b"v0"
    assert client.get(f"{campaign}::f0") is None


def test_import_root_refuses_a_namespace_that_climbs_out() -> None:
    from mummi_io.cli.migrate import _destination_namespace
    from mummi_io.core.errors import InvalidArgumentError

    assert _destination_namespace("/p/run/ns", "/r") == "/r/p/run/ns"
    assert _destination_namespace("./run//ns/", "/r") == "/r/run/ns"
    assert _destination_namespace("/p/run/ns", None) == "/p/run/ns"
    for climbing in ("/p/../../etc", "..", "/", "a/../b"):
        with pytest.raises(InvalidArgumentError, match="--root"):
            _destination_namespace(climbing, "/r")


def test_mummi_redis_leaves_names_it_cannot_hold(redis_single, tmp_path) -> None:
    import redis

    server = redis_single[0]
    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    ns = f"odd-{tmp_path.name}"
    client.set(f"{ns}::fine", b"1")
    client.set(f"{ns}::a::b".encode(), b"ambiguous")
    client.set(ns.encode() + b"::\xff\xfe", b"not utf-8")
    client.set(ns.encode() + b"::nul\0key", b"nul")
    client.set(b"\xffns-" + tmp_path.name.encode() + b"::k", b"namespace not utf-8")
    with get_io("redis", nodes=server.name, password=server.password) as ours:
        ours.save_files(ns, "ours", b"mummi_io's own layout on the same server")
    with get_io("mummi-redis", servers=server.name, password=server.password) as legacy:
        assert legacy.list_keys(ns) == ["fine"]
        names = legacy.backend.namespaces()
        assert ns in names and not any(name.startswith("mio:") for name in names)
        left = " ".join(legacy.backend.unusable)
        assert "ambiguous" in left and "not UTF-8" in left and "NUL" in left
        assert len(legacy.backend.unusable) == 4


def test_mummi_redis_write_keeps_the_old_value_when_its_home_server_is_down(tmp_path) -> None:
    """The new value is SET on its home server before other copies are deleted: a failure loses nothing."""
    import redis

    from mummi_io.core.errors import MummiIOError
    from mummi_io.backends.redis.local_servers import start_servers, stop_servers

    pytest.importorskip("redis")
    servers = start_servers(2, str(tmp_path), "pw-" + tmp_path.name)
    try:
        spec = ",".join(s.name for s in servers)
        with get_io("mummi-redis", servers=spec, password=servers[0].password, retry_timeout=0.5) as legacy:
            key = next(f"k{i}" for i in range(100) if legacy.backend._home(legacy.backend._name("ns", f"k{i}")) == 1)
            keeper = redis.Redis(host="127.0.0.1", port=servers[0].port, password=servers[0].password)
            keeper.set(f"ns::{key}", b"old")  # as a MuMMI writer bound to server 0 left it
            servers[1].stop()
            with pytest.raises(MummiIOError):
                legacy.save_files("ns", key, b"new")
            assert keeper.get(f"ns::{key}") == b"old"
    finally:
        stop_servers(servers)


def test_import_leaves_what_it_cannot_place_and_goes_on_with_the_rest(redis_single, tmp_path) -> None:
    """Non-string values, an empty namespace, keys that collide on simple, ':::' names: each is left and
    reported (exit 1); every other namespace still comes over."""
    import redis

    server = redis_single[0]
    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    base = f"/p/{tmp_path.name}"
    client.set(f"{base}/a::early", b"1")  # sorted before the broken namespaces, and after them:
    client.set(f"{base}/z::late", b"2")
    client.rpush(f"{base}/a::queue", b"q")  # a list: MGET cannot read it
    client.hset(f"{base}/a::table", "f", "v")
    client.set(f"{base}/b::conf", b"x")  # on simple, 'conf' cannot be a file and a directory
    client.set(f"{base}/b::conf/sub", b"y")
    client.set(f"{base}/c:::odd", b"ambiguous")
    code, report = _import(server, "--namespaces", f"{base}/*", "--to-backend", "simple", "--root",
                           str(tmp_path / "root"), "--move", cwd=tmp_path)
    assert code == 1
    landed = tmp_path / "root" / base.lstrip("/")
    assert (landed / "a" / "early").read_bytes() == b"1" and (landed / "z" / "late").read_bytes() == b"2"
    left = " ".join(report["left"])
    assert "queue" in left and "table" in left and f"{base}/b" in left and "ambiguous" in left
    assert client.type(f"{base}/a::queue") == b"list" and client.get(f"{base}/b::conf") == b"x"  # nothing lost
    assert client.get(f"{base}/a::early") is None  # moved
    client.set("::stray", b"no namespace")
    try:
        code, report = _import(server, "--namespaces", "", "--dry-run", cwd=tmp_path)
        assert code == 1 and "empty namespace" in " ".join(report["left"])
    finally:
        client.delete("::stray")


def test_a_move_between_two_spellings_of_one_mummi_redis_server_is_refused(redis_single, tmp_path) -> None:
    """``127.0.0.1:P`` and ``localhost:P`` are one server: compared by its run_id, a move onto it is refused."""
    from mummi_io.sync import sync

    server = redis_single[0]
    ns = f"spelled-{tmp_path.name}"
    with get_io("mummi-redis", servers=f"127.0.0.1:{server.port}", password=server.password) as first, \
            get_io("mummi-redis", servers=f"localhost:{server.port}", password=server.password) as second:
        first.save_files(ns, ["a", "b"], [b"A", b"B"])
        assert first.same_namespace(ns, second, ns) and not first.same_namespace(ns, second, ns + "-other")
        with pytest.raises(InvalidArgumentError, match="itself"):
            sync(first, ns, second, ns, mode="move")
        assert first.load_files(ns, ["a", "b"]) == [b"A", b"B"]
        first.remove_files(ns, ["a", "b"])
