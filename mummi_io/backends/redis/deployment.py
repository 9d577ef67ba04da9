"""The Redis servers of a deployment: list, ping, register and unregister them.

What the launch scripts in ``setup/redis/`` and the ``mummi-io servers``
command use (the successors of MuMMI's ``bind_local_redis`` and
``bind_global_redis``). The registry format is documented in
:mod:`mummi_io.backends.redis.nodes`.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass

from ...core.errors import BackendUnavailableError, MummiIOError
from .nodes import Node, default_registry_path, read_registry, resolve_password, update_registry

__all__ = ["PingResult", "ping", "rebalance", "record_shape", "register", "registered", "unregister", "wait_until_ready"]


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


def ping(nodes: list[Node], password: str | None, timeout: float = 2.0, check_shape: bool = False) -> list[PingResult]:
    """PING every node with authentication, measuring latency and memory in use.

    With ``check_shape`` (independent nodes), each node is also asked which
    node set it records (``mio:deployment``): a node that answers but records
    another set (a foreign server listed by mistake, a node of another
    deployment) is not ok, as clients would refuse it.
    """
    import redis

    from .transport import SHAPE_KEY, shape_difference, shape_of

    expected = shape_of(nodes)
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
            found = client.hget(SHAPE_KEY, "nodes") if check_shape else None
            recorded = found.decode("utf-8", "replace") if isinstance(found, bytes) else found
            if recorded is not None and recorded != expected:
                results.append(PingResult(node, latency, memory, error=(
                    f"answers, but records the node set {recorded} "
                    f"({shape_difference(expected, recorded, 'the list pinged')}): clients with this list are refused"
                )))
                continue
            results.append(PingResult(node, latency, memory))
        except redis.exceptions.RedisError as exc:
            results.append(PingResult(node, error=str(exc) or exc.__class__.__name__))
        finally:
            client.close()
    return results


def failed_starts(nodes_dir: str) -> dict[str, str]:
    """The nodes whose start failed, ``{"host:port": reason}``, from the ``start-failed`` files
    that ``start_redis_node.sh`` writes in its node directory (``nodes/HOST-PORT/``)."""
    found = {}
    for path in glob.glob(os.path.join(glob.escape(nodes_dir), "*", "start-failed")):
        host, _, port = os.path.basename(os.path.dirname(path)).rpartition("-")
        try:
            with open(path, errors="replace") as handle:
                found[f"{host}:{port}"] = handle.read().strip() or "no reason given"
        except OSError:  # removed by a new start meanwhile
            continue
    return found


def wait_until_ready(registry: str | None, expected: int, timeout: float) -> list[PingResult]:
    """Wait until the registry lists ``expected`` nodes and each answers PING.

    Raises
    ------
    BackendUnavailableError
        As soon as a node reports that it could not start (with its reason), or
        after ``timeout`` seconds, naming each node that did not register or answer.
    """
    path = registry or default_registry_path()
    deadline = time.monotonic() + timeout
    problems = "no node registered"
    nodes_dir = os.path.join(os.path.dirname(path), "nodes")
    while True:
        failed = failed_starts(nodes_dir)
        if failed:
            raise BackendUnavailableError("; ".join(
                f"Redis node {name} did not start: {reason}" for name, reason in sorted(failed.items())
            ) + f" (node logs under {nodes_dir}/)")
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


def record_shape(registry: str | None, deployment_id: str | None = None) -> str | None:
    """Record the registry's node list as the deployment's shape on every node (independent nodes).

    What the launch script runs once every node answers, so that a client
    given only some of the nodes is refused from its first command. A node
    whose record names another node set (data placed over other nodes; a
    restart with another count or other ports) is left as it is: the return
    value says so, and clients are refused until ``mummi-io servers
    rebalance`` moves the data. ``None`` when every node now records the list.
    """
    import redis

    from .transport import IndependentNodes, shape_difference, shape_of

    path = registry or default_registry_path()
    nodes, cluster = read_registry(path)
    if cluster or not nodes:
        return None  # a Redis Cluster knows its own shape
    options = {"password": resolve_password(None, None, path), "socket_timeout": 10.0, "socket_connect_timeout": 5.0}
    transport = IndependentNodes(nodes, 10.0, options)
    try:
        expected = shape_of(nodes)
        recorded = transport.recorded_shapes()
        different = {node.name: value for node, value in zip(nodes, recorded) if value not in (None, expected)}
        if different:
            return "; ".join(
                f"{name} records the data as placed over {value} ({shape_difference(expected, value, 'the registry')})"
                for name, value in sorted(different.items())
            ) + "; clients will be refused until `mummi-io servers --registry " + path + " rebalance` moves the data"
        blank = [node.name for node, value in zip(nodes, recorded) if value is None]
        if blank and len(blank) < len(nodes):
            return (f"{', '.join(blank)} hold(s) no deployment record while the other nodes do: new to this "
                    "deployment, or the data was lost (its AOF/RDB files gone?). Clients will be refused; if the "
                    f"node is new on purpose, `mummi-io servers --registry {path} rebalance` moves its share to it")
        transport.record_shape(deployment_id)
        return None
    except redis.exceptions.RedisError as exc:
        raise BackendUnavailableError(f"cannot record the deployment's shape on its nodes: {exc}") from exc
    finally:
        transport.close()


def rebalance(registry: str | None) -> int:
    """Move every shard to its owner under the registry's node list and record that list; return keys moved."""
    from .backend import RedisBackend

    backend = RedisBackend(registry=registry or default_registry_path())
    try:
        return backend.rebalance()
    finally:
        backend.close()
