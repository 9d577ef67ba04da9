"""The Redis launch scripts in setup/redis/, run for real in local mode."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mummi_io import get_io
from mummi_io.backends.redis.local_servers import confined, free_run

redis = pytest.importorskip("redis")

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "setup" / "redis"


def run_script(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MUMMI_IO_PYTHON": sys.executable, **(env or {})}
    return subprocess.run(
        ["bash", str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=timeout, env=environment
    )


def free_base_port(count: int, cluster: bool = False) -> int:
    """A run of ``count`` free ports in the test range (``$MUMMI_IO_TEST_PORTS``)."""
    return free_run(count, cluster)


def running_servers(base: int, count: int) -> list[int]:
    """The ports among base..base+count-1 where something still accepts connections."""
    listening = []
    for port in range(base, base + count):
        with socket.socket() as probe:
            probe.settimeout(2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                listening.append(port)
    return listening


@pytest.fixture
def deployment(tmp_path):
    directory = tmp_path / "deploy"
    yield directory
    if (directory / "registry").exists():
        run_script("stop_all_redis_nodes.sh", "--dir", str(directory))


def test_three_nodes_start_serve_stop_and_reload(deployment, monkeypatch) -> None:
    base = free_base_port(3)
    started = run_script("start_all_redis_nodes.sh", "3", "--dir", str(deployment), "--port", str(base))
    assert started.returncode == 0, started.stderr
    assert "3 Redis node(s) ready" in started.stderr
    registry = (deployment / "registry").read_text().split("\n")
    assert sorted(line for line in registry if line and not line.startswith("#")) == [
        f"127.0.0.1 {base + i}" for i in range(3)
    ]
    password_file = deployment / "password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) == 64 and int(password, 16) >= 0  # 32 random bytes in hex, as the README says

    # Security: protected mode, loopback bind, and no access without the password.
    client = redis.Redis(host="127.0.0.1", port=base, password=password)
    assert client.config_get("protected-mode")["protected-mode"] == "yes"
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("appendonly")["appendonly"] == "yes"
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=base).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=base, password="guess").ping()

    # Clients find the nodes and the password through the deployment directory.
    for name in ["MUMMI_REDIS_NODES", "MUMMI_REDIS_REGISTRY", "MUMMI_REDIS_PASSWORD", "MUMMI_REDIS_PASSWORD_FILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MUMMI_REDIS_DIR", str(deployment))
    with get_io("redis") as io:
        assert len(io.backend.deployment.nodes) == 3
        io.save_files("campaign", [f"k{i}" for i in range(300)], [f"v{i}" for i in range(300)])

    listing = subprocess.run(
        [sys.executable, "-m", "mummi_io.cli", "servers", "--registry", str(deployment / "registry"), "ping"],
        capture_output=True, text=True,
    )
    assert listing.returncode == 0 and listing.stdout.count(" ok ") == 3, listing

    stopped = run_script("stop_all_redis_nodes.sh", "--dir", str(deployment))
    assert stopped.returncode == 0, stopped.stderr
    assert running_servers(base, 3) == []
    assert [l for l in (deployment / "registry").read_text().splitlines() if not l.startswith("#")] == []
    again = run_script("stop_all_redis_nodes.sh", "--dir", str(deployment))
    assert again.returncode == 0 and "nothing to stop" in again.stderr

    # The data outlives the nodes: a restart on the same directory reloads it.
    restarted = run_script("start_all_redis_nodes.sh", "3", "--dir", str(deployment), "--port", str(base))
    assert restarted.returncode == 0, restarted.stderr
    with get_io("redis") as io:
        assert io.load_files("campaign", ["k0", "k299"]) == [b"v0", b"v299"]
        assert len(io.list_keys("campaign")) == 300
    assert run_script("stop_all_redis_nodes.sh", "--dir", str(deployment)).returncode == 0


def test_cluster_mode(deployment, monkeypatch) -> None:
    base = free_base_port(3, cluster=True)
    bus = ["--bus-port", str(free_base_port(3))] if confined() else []  # inside $MUMMI_IO_TEST_PORTS too
    started = run_script("start_all_redis_nodes.sh", "3", "--cluster", "--dir", str(deployment), "--port", str(base),
                         *bus)
    assert started.returncode == 0, started.stderr
    assert "mode cluster" in (deployment / "registry").read_text()
    monkeypatch.delenv("MUMMI_REDIS_NODES", raising=False)
    monkeypatch.setenv("MUMMI_REDIS_DIR", str(deployment))
    with get_io("redis") as io:
        assert io.backend.deployment.cluster
        keys = [f"k{i}" for i in range(500)]
        io.save_files("campaign", keys, keys)
        assert io.load_files("campaign", keys) == [k.encode() for k in keys]
    assert run_script("stop_all_redis_nodes.sh", "--dir", str(deployment)).returncode == 0
    assert running_servers(base, 3) == []


def test_second_start_on_a_running_deployment_is_refused(deployment) -> None:
    base = free_base_port(1)
    assert run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(base)).returncode == 0
    second = run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(base + 1))
    assert second.returncode == 1 and "already registered" in second.stderr


def test_node_that_cannot_start_is_named(deployment) -> None:
    base = free_base_port(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 1))
        squatter.listen()
        result = run_script("start_all_redis_nodes.sh", "2", "--dir", str(deployment), "--port", str(base), "--timeout", "5")
    assert result.returncode != 0
    assert f"127.0.0.1:{base + 1}" in result.stderr


def test_missing_redis_server_gives_install_hint(tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ["bash", "dirname", "sed", "head", "od", "tr", "cat", "mkdir", "chmod"]:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    result = run_script("start_all_redis_nodes.sh", "1", "--dir", str(tmp_path / "d"), env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "redis-server not found: install it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "launcher, expected",
    [("slurm", "srun --nodes=1 --ntasks=1 --overlap"), ("flux", "flux submit --nodes=1 --ntasks=1")],
)
def test_scheduler_launchers_dry_run(tmp_path, launcher, expected) -> None:
    result = run_script("start_all_redis_nodes.sh", "4", "--launcher", launcher, "--dry-run", "--dir", str(tmp_path),
                        "--port", "7000", "--cluster", "--maxmemory", "4gb")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    node_lines = [l for l in lines if expected in l]
    assert len(node_lines) == 4
    for i, line in enumerate(node_lines):
        assert f"start_redis_node.sh --port {7000 + i} --dir {tmp_path} --bind auto --cluster --maxmemory 4gb" in line
    assert any("mummi_redis.py wait 4" in l for l in lines)
    assert any("redis-cli --cluster create" in l for l in lines)
    assert not (tmp_path / "password").exists()  # a dry run changes nothing


def test_bad_arguments() -> None:
    assert run_script("start_all_redis_nodes.sh").returncode == 1
    assert run_script("start_all_redis_nodes.sh", "3", "--launcher", "pbs").returncode == 1
    small = run_script("start_all_redis_nodes.sh", "3", "--cluster", "--replicas", "1", "--dry-run")
    assert small.returncode == 1 and "at least 6 nodes" in small.stderr


def test_shellcheck_finds_nothing_above_style() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (Debian/Ubuntu: apt-get install shellcheck); .ci/run installs it")
    result = subprocess.run(
        ["shellcheck", "-x", "-S", "style", *sorted(str(p.relative_to(REPO)) for p in SCRIPTS.glob("*.sh"))],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout


def _register(registry: str, port: int) -> None:
    from mummi_io.backends.redis.deployment import register

    register("node-host", port, registry)


def test_concurrent_registrations_are_all_kept(tmp_path) -> None:
    import multiprocessing

    registry = str(tmp_path / "registry")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_register, args=(registry, 7000 + i)) for i in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    from mummi_io.backends.redis.deployment import registered, unregister

    nodes, cluster = registered(registry)
    assert sorted(n.port for n in nodes) == list(range(7000, 7016))  # two nodes on one host are two nodes
    assert not cluster
    unregister("node-host", 7003, registry)
    unregister("node-host", 7003, registry)  # twice: a no-op
    assert len(registered(registry)[0]) == 15


def test_sourced_as_mummi_does_it_returns_and_exports(deployment) -> None:
    """MuMMI's job scripts `source start_all_redis_nodes.sh N`: the caller's shell must survive and get the variables."""
    base = free_base_port(1)
    program = f"""
        set +e
        source {SCRIPTS / 'start_all_redis_nodes.sh'} not-a-number 2>/dev/null
        echo "bad count returned $?; options $-"
        source {SCRIPTS / 'start_all_redis_nodes.sh'} 1 --port {base} --dir {deployment} > /dev/null 2>&1
        echo "start returned $?"
        echo "NNODES=$MUMMI_REDIS_NNODES REGISTRY=$MUMMI_REDIS_REGISTRY OUTPUTS=$MUMMI_REDIS_OUTPUTS"
        echo "SERVER=$MUMMI_REDIS_SERVER"
    """
    environment = {**os.environ, "MUMMI_IO_PYTHON": sys.executable}
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=120, env=environment)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bad count returned 1") and "e" not in lines[0].split("options ")[1]
    assert lines[1] == "start returned 0", result.stderr
    assert lines[2] == f"NNODES=1 REGISTRY={deployment}/registry OUTPUTS={deployment}"
    assert lines[3].startswith("SERVER=/") and lines[3].endswith("redis-server")


def test_sourced_without_dir_uses_mummi_redis_dir_and_drops_a_stale_environment(deployment) -> None:
    """Sourced with only N, the deployment is $MUMMI_REDIS_DIR's (not a directory named "1"), and what an
    earlier deployment exported (its password, its node list) neither breaks the start nor reaches clients."""
    base = free_base_port(1)
    program = f"""
        export MUMMI_REDIS_DIR={deployment}
        export MUMMI_REDIS_PASSWORD=stale-password MUMMI_REDIS_NODES=127.0.0.1:1
        source {SCRIPTS / 'start_all_redis_nodes.sh'} 1 --port {base} > /dev/null 2>&1
        echo "start returned $?"
        echo "REGISTRY=$MUMMI_REDIS_REGISTRY PASSWORD=${{MUMMI_REDIS_PASSWORD:-unset}} NODES=${{MUMMI_REDIS_NODES:-unset}}"
        {sys.executable} -c 'import mummi_io; io = mummi_io.get_io("redis"); io.save_files("ns", "k", b"v"); print(io.load_files("ns", "k"))'
    """
    environment = {**os.environ, "MUMMI_IO_PYTHON": sys.executable}
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=120, env=environment,
                            cwd=deployment.parent)
    lines = result.stdout.splitlines()
    assert lines[0] == "start returned 0", result.stderr
    assert lines[1] == f"REGISTRY={deployment}/registry PASSWORD=unset NODES=unset"
    assert lines[2] == "b'v'", result.stderr
    assert not (deployment.parent / "1").exists()


def test_help_answers_in_any_position() -> None:
    for arguments in (["--help"], ["3", "--help"], ["-h", "--port", "7000"]):
        shown = run_script("start_all_redis_nodes.sh", *arguments)
        assert shown.returncode == 0 and "start_all_redis_nodes.sh N" in shown.stdout, arguments


# --------------------------------------------------------------------------
# Validation before action, failures reported from the node's log, ownership on stop
# --------------------------------------------------------------------------
@pytest.mark.parametrize("arguments, message", [
    (["--port", "a[$(touch {canary})]"], "--port must be a whole number"),
    (["--port", "SECONDS[$(touch {canary})]"], "--port must be a whole number"),
    (["--maxmemory", "4gb\nbind 0.0.0.0\nrequirepass \"\""], "--maxmemory must be a size"),
    (["--maxmemory", "$(touch {canary})"], "--maxmemory must be a size"),
    (["--timeout", "1+$(touch {canary})"], "--timeout must be a whole number"),
    (["--replicas", "x[$(touch {canary})]", "--cluster"], "--replicas must be a whole number"),
    (["--bind", "127.0.0.1 0.0.0.0"], "--bind must be an address"),
    (["--bind", "300.1.1.1"], "is not an IPv4 address"),
    (["--appendfsync", "sometimes"], "--appendfsync must be one of: always everysec no"),
    (["--launcher", "pbs"], "--launcher must be one of"),
    (["--dir", "/tmp/a\nb"], "--dir must not contain control characters"),
    (["--port", "65535"], "do not fit below 65536"),
    (["--port"], "--port"),  # last: "needs a value"; before --dry-run: "not --dry-run"
    (["--dir", "/tmp/deploy[a]"], "must not contain the glob characters"),  # redis-server globs its config path
    (["--dir", "/tmp/deploy*"], "must not contain the glob characters"),
    (["--bind", "0"], "is not an IPv4 address"),  # getaddrinfo reads "0" as 0.0.0.0: every interface
])
def test_every_option_is_checked_before_anything_runs(tmp_path, arguments, message) -> None:
    canary = tmp_path / "canary"
    arguments = [a.format(canary=canary) for a in arguments]
    for dry_run in ([], ["--dry-run"]):
        result = run_script("start_all_redis_nodes.sh", "2", "--dir", str(tmp_path / "deploy"), *arguments, *dry_run)
        assert result.returncode == 1 and message in result.stderr, (arguments, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert not canary.exists()  # no value reached $(( )) or a command line
    assert not (tmp_path / "deploy").exists()  # nothing was created


def test_node_script_checks_its_options_too(tmp_path) -> None:
    canary = tmp_path / "canary"
    for arguments in (["--port", f"a[$(touch {canary})]"], ["--port", "7000", "--maxmemory", "1gb\nbind 0.0.0.0"],
                      ["--port", "7000", "--bind", "auto;touch " + str(canary)]):
        result = run_script("start_redis_node.sh", "--dir", str(tmp_path), *arguments)
        assert result.returncode == 1 and "error:" in result.stderr, result.stderr
    assert not canary.exists()


def test_a_directory_with_spaces_and_quotes_works_and_keeps_its_mode(tmp_path, monkeypatch) -> None:
    directory = tmp_path / 'my "redis" dir'
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    base = free_base_port(1)
    try:
        started = run_script("start_all_redis_nodes.sh", "1", "--dir", str(directory), "--port", str(base))
        assert started.returncode == 0, started.stderr
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755  # not chmod-ed to 700
        assert "is readable by group or others (mode 755)" in started.stderr
        assert stat.S_IMODE((directory / "password").stat().st_mode) == 0o600
        password = (directory / "password").read_text().strip()
        client = redis.Redis(host="127.0.0.1", port=base, password=password)
        assert client.config_get("dir")["dir"] == str(directory / "nodes" / f"127.0.0.1-{base}")
        monkeypatch.delenv("MUMMI_REDIS_NODES", raising=False)
        monkeypatch.setenv("MUMMI_REDIS_DIR", str(directory))
        with get_io("redis") as io:
            io.save_files("ns", "k", b"v")
            assert io.load_files("ns", "k") == b"v"
    finally:
        stopped = run_script("stop_all_redis_nodes.sh", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    assert running_servers(base, 1) == []


def test_a_new_directory_is_private(deployment) -> None:
    result = run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(free_base_port(1)))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(deployment.stat().st_mode) == 0o700
    assert "readable by group" not in result.stderr


def test_a_busy_port_is_reported_with_the_reason_and_nothing_is_left_behind(deployment) -> None:
    base = free_base_port(3)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 2))
        squatter.listen()
        result = run_script("start_all_redis_nodes.sh", "3", "--dir", str(deployment), "--port", str(base))
        assert result.returncode == 1
        assert f"Redis node 127.0.0.1:{base + 2} did not start" in result.stderr
        assert "Address already in use" in result.stderr  # the reason, from the node's log
        assert "invalid username-password" not in result.stderr
        assert running_servers(base, 2) == []  # the nodes that did start were stopped
    assert [l for l in (deployment / "registry").read_text().splitlines() if not l.startswith("#")] == []


def test_a_foreign_redis_on_the_port_is_neither_registered_nor_shut_down(deployment, tmp_path, redis_password) -> None:
    """The attack: a stale registry entry whose port now belongs to someone else's Redis (no password, or
    another one). start must not report it as ours; stop must not SHUTDOWN it."""
    from mummi_io.backends.redis.local_servers import RedisServer

    base = free_base_port(2)
    started = run_script("start_all_redis_nodes.sh", "2", "--dir", str(deployment), "--port", str(base))
    assert started.returncode == 0, started.stderr
    pid = int((deployment / "nodes" / f"127.0.0.1-{base + 1}" / "redis.pid").read_text())
    os.kill(pid, 9)  # the node dies; its registry entry stays
    for _ in range(100):
        if running_servers(base + 1, 1) == []:
            break
        import time
        time.sleep(0.05)
    for foreign_password in (None, "someone-else"):
        foreign = RedisServer(str(tmp_path / f"foreign-{foreign_password}"), foreign_password or "", port=base + 1)
        foreign.start()
        try:
            foreign.wait_ready()
            # A start on that port is refused with the reason; the foreign server is not registered.
            restart = run_script("start_redis_node.sh", "--port", str(base + 1), "--dir", str(deployment), "--detach",
                                 "--timeout", "10")
            assert restart.returncode == 1 and "Address already in use" in restart.stderr, restart.stderr
            stopped = run_script("stop_all_redis_nodes.sh", "--dir", str(deployment))
            assert stopped.returncode == 0, stopped.stderr
            assert f"warning: 127.0.0.1:{base + 1} is not a node of this deployment" in stopped.stderr
            assert running_servers(base + 1, 1) == [base + 1]  # left running
            assert foreign.cli("PING").strip() == "PONG"
            assert running_servers(base, 1) == []  # ours was stopped
            assert [l for l in (deployment / "registry").read_text().splitlines() if not l.startswith("#")] == []
        finally:
            foreign.stop()
        started = run_script("start_all_redis_nodes.sh", "2", "--dir", str(deployment), "--port", str(base))
        assert started.returncode == 0, started.stderr
        os.kill(int((deployment / "nodes" / f"127.0.0.1-{base + 1}" / "redis.pid").read_text()), 9)


def test_one_node_restarts_with_one_command_and_keeps_its_data(deployment, monkeypatch) -> None:
    base = free_base_port(2)
    assert run_script("start_all_redis_nodes.sh", "2", "--dir", str(deployment), "--port", str(base)).returncode == 0
    monkeypatch.delenv("MUMMI_REDIS_NODES", raising=False)
    monkeypatch.setenv("MUMMI_REDIS_DIR", str(deployment))
    keys = [f"k{i}" for i in range(200)]
    with get_io("redis") as io:
        io.save_files("ns", keys, keys)
    node_dir = deployment / "nodes" / f"127.0.0.1-{base + 1}"
    password = (deployment / "password").read_text().strip()
    redis.Redis(host="127.0.0.1", port=base + 1, password=password).shutdown(save=True)
    assert running_servers(base + 1, 1) == []
    again = run_script("start_redis_node.sh", "--port", str(base + 1), "--dir", str(deployment), "--detach")
    assert again.returncode == 0, again.stderr
    assert f"node 127.0.0.1:{base + 1} is running" in again.stderr
    assert (node_dir / "ready").exists()
    with get_io("redis") as io:
        assert io.load_files("ns", keys) == [k.encode() for k in keys]
    twice = run_script("start_redis_node.sh", "--port", str(base + 1), "--dir", str(deployment), "--detach")
    assert twice.returncode == 1 and "already running" in twice.stderr
    assert run_script("stop_all_redis_nodes.sh", "--dir", str(deployment)).returncode == 0
    assert running_servers(base, 2) == []


def test_clients_given_part_of_the_deployment_are_refused(deployment, monkeypatch) -> None:
    from mummi_io import BackendUnavailableError

    base = free_base_port(3)
    assert run_script("start_all_redis_nodes.sh", "3", "--dir", str(deployment), "--port", str(base)).returncode == 0
    password = (deployment / "password").read_text().strip()
    record = redis.Redis(host="127.0.0.1", port=base, password=password).hgetall("mio:deployment")
    assert record[b"nodes"] == ",".join(f"127.0.0.1:{base + i}" for i in range(3)).encode()
    assert record[b"id"] == (deployment / "deployment-id").read_text().strip().encode()
    with get_io("redis", nodes=[f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"], password=password) as partial:
        with pytest.raises(BackendUnavailableError, match=f"this client lacks 127.0.0.1:{base + 2}"):
            partial.save_files("ns", "k", b"v")
    with get_io("redis", nodes=[f"localhost:{base + i}" for i in range(3)], password=password) as renamed:
        with pytest.raises(BackendUnavailableError, match="this client lacks 127.0.0.1"):
            renamed.list_keys("ns")


def test_python_without_the_dependencies_is_one_line(tmp_path) -> None:
    bare = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = run_script("start_all_redis_nodes.sh", "1", "--dir", str(tmp_path / "d"),
                        env={"MUMMI_IO_PYTHON": str(bare / "bin" / "python")})
    assert result.returncode == 1
    assert "lacks mummi_io's dependencies" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _entries(deployment: Path) -> list[str]:
    return [l for l in (deployment / "registry").read_text().splitlines() if l and not l.startswith("#")]


def test_a_restart_keeps_the_nodes_saved_configuration(deployment) -> None:
    """Restarting a --no-aof node without --no-aof used to start it with AOF, ignoring its dump.rdb:
    empty, and the next SHUTDOWN SAVE overwrote the data."""
    base = free_base_port(1)
    started = run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(base), "--no-aof",
                         "--maxmemory", "100mb")
    assert started.returncode == 0, started.stderr
    password = (deployment / "password").read_text().strip()
    client = redis.Redis(host="127.0.0.1", port=base, password=password)
    client.mset({f"k{i}": i for i in range(100)})
    client.save()
    os.kill(int((deployment / "nodes" / f"127.0.0.1-{base}" / "redis.pid").read_text()), 9)
    for arguments in (["--detach"], ["--detach", "--cluster"], ["--detach", "--appendfsync", "always"]):
        restart = run_script("start_redis_node.sh", "--port", str(base), "--dir", str(deployment), *arguments)
        if "--cluster" in arguments:  # switching cluster mode is refused, with the reason, and nothing starts
            assert restart.returncode == 1 and "cluster-enabled no" in restart.stderr, restart.stderr
            assert running_servers(base, 1) == []
            continue
        assert restart.returncode == 0, restart.stderr
        client = redis.Redis(host="127.0.0.1", port=base, password=password)
        assert len(list(client.scan_iter("k*"))) == 100  # beside mio:deployment, the node's record
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert client.config_get("maxmemory")["maxmemory"] == str(100 * 1024 * 1024)
        client.shutdown(save=True)
    assert run_script("stop_all_redis_nodes.sh", "--dir", str(deployment)).returncode == 0
    switched = run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(base),
                          "--timeout", "20")
    assert switched.returncode == 0, switched.stderr  # not given: --no-aof is kept
    assert len(list(redis.Redis(host="127.0.0.1", port=base, password=password).scan_iter("k*"))) == 100


def test_a_node_that_lost_its_data_is_reported_at_start(deployment) -> None:
    base = free_base_port(2)
    assert run_script("start_all_redis_nodes.sh", "2", "--dir", str(deployment), "--port", str(base)).returncode == 0
    assert run_script("stop_all_redis_nodes.sh", "--dir", str(deployment)).returncode == 0
    lost = deployment / "nodes" / f"127.0.0.1-{base + 1}"
    shutil.rmtree(lost / "appendonlydir")
    (lost / "dump.rdb").unlink()
    again = run_script("start_all_redis_nodes.sh", "2", "--dir", str(deployment), "--port", str(base))
    assert again.returncode == 0, again.stderr
    assert f"127.0.0.1:{base + 1} hold(s) no deployment record while the other nodes do" in again.stderr


def test_a_bad_registry_line_stops_nothing_and_starts_nothing(deployment) -> None:
    base = free_base_port(1)
    assert run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(base)).returncode == 0
    registry = deployment / "registry"
    good = registry.read_text()
    for bad in ("garbage\n", "-p 7000\n", "host 99999\n"):
        registry.write_text(good + bad)
        stopped = run_script("stop_all_redis_nodes.sh", "--dir", str(deployment))
        assert stopped.returncode == 1 and "cannot read the registry" in stopped.stderr, stopped.stderr
        assert running_servers(base, 1) == [base]  # still running, still registered: nothing half done
        started = run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(base + 1))
        assert started.returncode == 1 and "cannot read the registry" in started.stderr
        assert running_servers(base + 1, 1) == []
    registry.write_text(good)
    assert run_script("stop_all_redis_nodes.sh", "--dir", str(deployment)).returncode == 0


def test_a_node_that_cannot_save_stays_registered(deployment) -> None:
    base = free_base_port(1)
    started = run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(base), "--no-aof")
    assert started.returncode == 0, started.stderr
    password = (deployment / "password").read_text().strip()
    redis.Redis(host="127.0.0.1", port=base, password=password).set("precious", "1")
    blocker = deployment / "nodes" / f"127.0.0.1-{base}" / "dump.rdb"
    blocker.mkdir()  # the snapshot cannot be written: Redis refuses to shut down and lose the key
    try:
        for failed_background_save in (False, True):  # then PING answers MISCONF, not PONG: still running
            if failed_background_save:
                client = redis.Redis(host="127.0.0.1", port=base, password=password)
                client.bgsave()
                import time
                while client.info("persistence")["rdb_bgsave_in_progress"]:
                    time.sleep(0.05)
                assert client.info("persistence")["rdb_last_bgsave_status"] == "err"
            stopped = run_script("stop_all_redis_nodes.sh", "--dir", str(deployment), "--timeout", "1")
            assert stopped.returncode == 1, stopped.stderr
            assert "still running, with data it could not save; it stays registered" in stopped.stderr
            assert _entries(deployment) == [f"127.0.0.1 {base}"]
            assert running_servers(base, 1) == [base]
    finally:
        blocker.rmdir()
    stopped = run_script("stop_all_redis_nodes.sh", "--dir", str(deployment))
    assert stopped.returncode == 0 and running_servers(base, 1) == []


def test_a_dead_node_is_reported_as_not_running(deployment) -> None:
    base = free_base_port(2)
    assert run_script("start_all_redis_nodes.sh", "2", "--dir", str(deployment), "--port", str(base),
                      "--timeout", "030").returncode == 0
    os.kill(int((deployment / "nodes" / f"127.0.0.1-{base}" / "redis.pid").read_text()), 9)
    import time
    time.sleep(0.5)
    stopped = run_script("stop_all_redis_nodes.sh", "--dir", str(deployment))
    assert stopped.returncode == 0, stopped.stderr
    assert f"node 127.0.0.1:{base} is not running; removed from the registry" in stopped.stderr
    assert "not a node of this deployment" not in stopped.stderr


def test_relative_dir_leading_zeros_and_one_start_at_a_time(tmp_path) -> None:
    base = free_base_port(1)
    environment = {"MUMMI_IO_PYTHON": sys.executable}
    program = f"""
        cd {tmp_path}
        mkdir rel && exec 9> rel/.start.lock && flock 9
        bash {SCRIPTS / 'start_all_redis_nodes.sh'} 1 --dir rel --port {base}; echo "while locked: $?"
        test -e rel/password && echo "the refused start wrote a password"
        exec 9>&-
        bash {SCRIPTS / 'start_all_redis_nodes.sh'} 1 --dir rel --port {base} --timeout 09; echo "start: $?"
        bash {SCRIPTS / 'stop_all_redis_nodes.sh'} --dir rel --timeout 08; echo "stop: $?"
        bash {SCRIPTS / 'start_redis_node.sh'} --dir rel --port {base} --timeout 09 --detach; echo "node: $?"
        bash {SCRIPTS / 'stop_all_redis_nodes.sh'} --dir rel; echo "stop: $?"
    """
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **environment})
    assert "while locked: 1" in result.stdout and "another start_all_redis_nodes.sh is starting" in result.stderr
    assert "the refused start wrote a password" not in result.stdout  # refused before it changed anything
    assert "start: 0" in result.stdout and "node: 0" in result.stdout, result.stderr  # relative --dir; 09 is nine
    assert result.stdout.count("stop: 0") == 2, result.stderr
    assert (tmp_path / "rel" / "nodes" / f"127.0.0.1-{base}" / "redis.log").exists()
    assert running_servers(base, 1) == []


def test_the_default_directory_is_checked_like_dir(tmp_path) -> None:
    """$MUMMI_REDIS_DIR with a glob character used to reach redis-server's config path unchecked."""
    for script, arguments in (("start_all_redis_nodes.sh", ["1"]), ("start_redis_node.sh", ["--port", "7000"]),
                              ("stop_all_redis_nodes.sh", [])):
        result = run_script(script, *arguments, env={"MUMMI_REDIS_DIR": str(tmp_path / "m[1]")})
        assert result.returncode == 1 and "must not contain the glob characters" in result.stderr, result.stderr


def test_a_start_interrupted_while_launching_leaves_nothing(deployment) -> None:
    import signal
    import time

    base = free_base_port(6)
    environment = {**os.environ, "MUMMI_IO_PYTHON": sys.executable}
    starting = subprocess.Popen(["bash", str(SCRIPTS / "start_all_redis_nodes.sh"), "6", "--dir", str(deployment),
                                 "--port", str(base)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not (deployment / f"launch-{base}.log").exists() and starting.poll() is None:
        time.sleep(0.001)
    starting.send_signal(signal.SIGTERM)  # as timeout(1) would: to the script alone, mid-launch
    starting.communicate(timeout=120)
    assert starting.returncode != 0
    time.sleep(3)  # a node that was still starting would have registered by now
    registry = deployment / "registry"
    assert not registry.exists() or _entries(deployment) == []
    assert running_servers(base, 6) == []


def test_a_busy_node_is_neither_taken_for_foreign_nor_left_behind(deployment) -> None:
    """A node of ours running a long script answers BUSY: stop must keep it registered, not call it foreign."""
    import threading
    import time

    base = free_base_port(1)
    assert run_script("start_all_redis_nodes.sh", "1", "--dir", str(deployment), "--port", str(base)).returncode == 0
    password = (deployment / "password").read_text().strip()
    def spin() -> None:  # busy until SCRIPT KILL below (or 120 s): the stop script is never raced by a clock
        try:
            redis.Redis(host="127.0.0.1", port=base, password=password, socket_timeout=150).eval(
                "local t = redis.call('TIME')[1] while redis.call('TIME')[1] - t < 120 do end return 1", 0)
        except redis.exceptions.ResponseError:
            pass  # killed, as intended

    spinning = threading.Thread(target=spin, daemon=True)
    spinning.start()
    client = redis.Redis(host="127.0.0.1", port=base, password=password)
    while True:  # until the script passes Redis's busy limit (5 s) and others get BUSY
        try:
            client.ping()
        except redis.exceptions.BusyLoadingError:
            break
        except redis.exceptions.ResponseError as error:
            if "BUSY" in str(error):
                break
        time.sleep(0.2)
    try:
        stopped = run_script("stop_all_redis_nodes.sh", "--dir", str(deployment), "--timeout", "1")
        assert stopped.returncode == 1, stopped.stderr
        assert "cannot say yet" in stopped.stderr and "stays registered" in stopped.stderr
        assert "not a node of this deployment" not in stopped.stderr
        assert _entries(deployment) == [f"127.0.0.1 {base}"]
    finally:
        client.script_kill()  # a read-only script can be killed: the node answers again
        spinning.join(30)
    assert run_script("stop_all_redis_nodes.sh", "--dir", str(deployment)).returncode == 0
    assert running_servers(base, 1) == []
