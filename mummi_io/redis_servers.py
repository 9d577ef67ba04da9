"""The Redis servers of a deployment: list, ping, register and unregister them.

What the launch scripts in ``setup/redis/`` and the ``mummi-io servers``
command use (the successors of MuMMI's ``bind_local_redis`` and
``bind_global_redis``). The registry format is documented in
:mod:`mummi_io.backends.redis.nodes`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .backends.redis.nodes import Node, default_registry_path, read_registry, resolve_password, update_registry
from .errors import BackendUnavailableError, MummiIOError

__all__ = ["PingResult", "ping", "register", "registered", "unregister", "wait_until_ready"]


@dataclass
class PingResult:
    """The answer of one node to PING (and INFO memory)."""

    node: Node
    latency_ms: float | None = None
    used_memory: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def registered(registry: str | None = None) -> tuple[list[Node], bool]:
    """The nodes listed in the registry (default location if not given), and the cluster flag."""
    return read_registry(registry or default_registry_path())


def register(host: str, port: int, registry: str | None = None, cluster: bool | None = None) -> list[Node]:
    """Add ``host port`` to the registry (under its lock); return all registered nodes."""
    return update_registry(registry or default_registry_path(), add=[Node.parse((host, port))], cluster=cluster)


def unregister(host: str, port: int, registry: str | None = None) -> list[Node]:
    """Remove ``host port`` from the registry (a node not listed is a no-op)."""
    return update_registry(registry or default_registry_path(), remove=[Node.parse((host, port))])


def ping(nodes: list[Node], password: str | None, timeout: float = 2.0) -> list[PingResult]:
    """PING every node with authentication, measuring latency and memory in use."""
    import redis

    results = []
    for node in nodes:
        client = redis.Redis(
            host=node.host, port=node.port, password=password, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            started = time.perf_counter()
            client.ping()
            latency = 1000 * (time.perf_counter() - started)
            memory = client.info("memory").get("used_memory_human")
            results.append(PingResult(node, latency, memory))
        except redis.exceptions.RedisError as exc:
            results.append(PingResult(node, error=str(exc) or exc.__class__.__name__))
        finally:
            client.close()
    return results


def wait_until_ready(registry: str | None, expected: int, timeout: float) -> list[PingResult]:
    """Wait until the registry lists ``expected`` nodes and each answers PING.

    Raises
    ------
    BackendUnavailableError
        After ``timeout`` seconds, naming each node that did not register or answer.
    """
    path = registry or default_registry_path()
    deadline = time.monotonic() + timeout
    problems = "no node registered"
    while True:
        try:
            nodes, _ = read_registry(path)
        except MummiIOError as exc:  # not written yet: keep waiting, report it at the end
            nodes, problems = [], f"registry {path} unreadable ({exc})"
        if len(nodes) >= expected:
            results = ping(nodes, resolve_password(None, None, path), timeout=1.0)
            failing = [r for r in results if not r.ok]
            if not failing:
                return results
            problems = "; ".join(f"{r.node.name}: {r.error}" for r in failing)
        elif nodes:
            problems = f"{len(nodes)} of {expected} nodes registered ({', '.join(n.name for n in nodes)})"
        if time.monotonic() > deadline:
            raise BackendUnavailableError(
                f"Redis nodes not ready after {timeout} s: {problems}; see the node logs under "
                f"{path.rsplit('/', 1)[0]}/nodes/"
            )
        time.sleep(0.1)
