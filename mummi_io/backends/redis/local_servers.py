"""Real ``redis-server`` processes for tests: started on free loopback ports, with a password.

Used by the project's tests (and usable by anyone testing code on mummi_io):
never a shared server on 6379, never a fake. Readiness is checked with PING
against a deadline, and the error names the server that did not come up.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

INSTALL_HINT = "redis-server was not found; install it (Debian/Ubuntu: apt-get install redis-server)"


def redis_server_binary() -> str | None:
    """Path of ``redis-server``, or ``None`` when it is not installed."""
    return shutil.which("redis-server")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


#: Confines the ports the tests use, e.g. ``MUMMI_IO_TEST_PORTS=41000-41999`` on a shared login node.
PORTS_ENV = "MUMMI_IO_TEST_PORTS"
_DEFAULT_PORTS = (30000, 55535)  # + 10000 (a cluster bus port) stays below 65536


def port_range() -> tuple[int, int]:
    """The ports tests may listen on: ``$MUMMI_IO_TEST_PORTS`` (``LOW-HIGH``), else 30000-55535."""
    text = os.environ.get(PORTS_ENV, "").strip()
    if not text:
        return _DEFAULT_PORTS
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) and int(low) + 50 <= int(high) <= 65535):
        raise RuntimeError(f"${PORTS_ENV} must be a range of at least 50 ports such as 41000-41999, not {text!r}")
    return int(low), int(high)


def confined() -> bool:
    """Whether ``$MUMMI_IO_TEST_PORTS`` confines the ports (cluster bus ports are then taken from it too)."""
    return bool(os.environ.get(PORTS_ENV, "").strip())


def free_port(cluster: bool = False) -> int:
    """A free loopback port in :func:`port_range`; with ``cluster`` and no confined range, port + 10000
    (the default cluster bus port) is free too."""
    return free_run(1, cluster)


def free_run(count: int, cluster: bool = False) -> int:
    """The first of ``count`` consecutive free loopback ports in :func:`port_range` (see :func:`free_port`)."""
    low, high = port_range()
    bus = cluster and not confined()
    for _ in range(1000):
        base = random.randint(low, high - count + 1)
        ports = range(base, base + count)
        if all(_port_is_free(p) and (not bus or (p + 10000 <= 65535 and _port_is_free(p + 10000))) for p in ports):
            return base
    raise RuntimeError(f"no run of {count} free loopback port(s) found in {low}-{high}")


@dataclass
class RedisServer:
    """One ``redis-server`` process on 127.0.0.1."""

    directory: str
    password: str
    port: int = 0
    cluster: bool = False
    #: The cluster bus port: port + 10000 unless ``$MUMMI_IO_TEST_PORTS`` confines ports (Redis 7's cluster-port).
    bus_port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.port = self.port or free_port(self.cluster)
        workdir = os.path.join(self.directory, str(self.port))
        os.makedirs(workdir, exist_ok=True)
        arguments = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
            "--requirepass", self.password, "--masterauth", self.password, "--dir", workdir,
            "--save", "", "--appendonly", "no", "--logfile", os.path.join(workdir, "redis.log"),
            # mummi_io must never list with KEYS (it blocks the server): make any use fail loudly.
            "--rename-command", "KEYS", "",
        ]
        if self.cluster:
            arguments += [
                "--cluster-enabled", "yes", "--cluster-config-file", os.path.join(workdir, "nodes.conf"),
                "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
            ]
            if confined():
                self.bus_port = self.bus_port or free_port()
                arguments += ["--cluster-port", str(self.bus_port)]
        self.process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def cli(self, *arguments: str, timeout: float = 10) -> str:
        """Run ``redis-cli`` against this server and return its output."""
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning", "-a", self.password,
             *arguments],
            capture_output=True, text=True, timeout=timeout,
        )
        return result.stdout.strip()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server {self.name} exited with {self.process.returncode}")
            try:
                if self.cli("PING", timeout=2) == "PONG":
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server {self.name} did not answer PING within {timeout} s")

    def kill(self) -> None:
        """SIGKILL, as a crashed node would die."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_servers(count: int, directory: str, password: str, cluster: bool = False) -> list[RedisServer]:
    """Start ``count`` servers and wait until each answers PING."""
    servers = [RedisServer(directory, password, cluster=cluster).start() for _ in range(count)]
    try:
        for server in servers:
            server.wait_ready()
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers: Sequence[RedisServer]) -> None:
    for server in servers:
        server.stop()


def create_cluster(servers: Sequence[RedisServer], replicas: int = 0, timeout: float = 60) -> None:
    """Join cluster-enabled servers into a Redis Cluster and wait until every slot is served."""
    first = servers[0]
    result = subprocess.run(
        ["redis-cli", "--no-auth-warning", "-a", first.password, "--cluster", "create",
         *(server.name for server in servers), "--cluster-replicas", str(replicas), "--cluster-yes"],
        capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout}\n{result.stderr}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        infos = [server.cli("CLUSTER", "INFO") for server in servers]
        if all("cluster_state:ok" in info and "cluster_slots_ok:16384" in info for info in infos):
            if not replicas or all(_replicas_synced(server) for server in servers):
                return
        time.sleep(0.1)
    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok with all slots covered")


def _replicas_synced(server: RedisServer) -> bool:
    info = server.cli("INFO", "replication")
    if "role:slave" in info:
        return "master_link_status:up" in info
    return True
