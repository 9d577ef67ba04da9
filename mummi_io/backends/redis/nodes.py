"""Where the Redis nodes are and how to authenticate: options, environment, registry file.

Resolution order (first that gives nodes wins):

1. ``nodes=[...]`` passed to ``get_io("redis", ...)`` (``"host:port"`` strings
   or ``(host, port)`` pairs), with ``cluster=True`` for a Redis Cluster;
2. ``MUMMI_REDIS_NODES="host:port,host:port"`` (and ``MUMMI_REDIS_CLUSTER=1``).
   A plain number keeps MuMMI's meaning: how many nodes there are; the nodes
   then come from the registry below, and a different count is reported;
3. the server registry file: ``registry=`` option, else ``MUMMI_REDIS_REGISTRY``,
   else ``$MUMMI_REDIS_DIR/registry`` (``MUMMI_REDIS_DIR`` defaults to
   ``~/.mummi_io/redis``) if it exists, else MuMMI's server list
   ``$MUMMI_ROOT/redis/all_servers.txt`` if it exists (the same format);
4. ``localhost:6379``.

``MUMMI_REDIS_NNODES`` (what MuMMI's launch script exports) is compared with
the nodes found, and a difference is reported too.

Registry file format (written by ``setup/redis/start_redis_node.sh``, read
here): one node per line as ``host port``; blank lines and ``#`` comments are
ignored; a line ``mode cluster`` says the nodes form a Redis Cluster. Two
nodes on one host are two lines: a node is identified by host *and* port.

Password: ``password=`` option, else ``MUMMI_REDIS_PASSWORD``, else the first
line of a secret file: ``password_file=``, ``MUMMI_REDIS_PASSWORD_FILE``, or
``password`` beside the registry file in use.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...core.errors import InvalidArgumentError, StorageError

LOGGER = logging.getLogger(__name__)

NODES_ENV = "MUMMI_REDIS_NODES"
NNODES_ENV = "MUMMI_REDIS_NNODES"
MUMMI_ROOT_ENV = "MUMMI_ROOT"
CLUSTER_ENV = "MUMMI_REDIS_CLUSTER"
REGISTRY_ENV = "MUMMI_REDIS_REGISTRY"
DIR_ENV = "MUMMI_REDIS_DIR"
PASSWORD_ENV = "MUMMI_REDIS_PASSWORD"
PASSWORD_FILE_ENV = "MUMMI_REDIS_PASSWORD_FILE"
DEFAULT_NODE = ("localhost", 6379)
#: A host name, an IPv4 or an IPv6 address (with a zone): never an option-like "-p" or text with spaces.
_HOST = re.compile(r"[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]*")


@dataclass(frozen=True, order=True)
class Node:
    """One Redis server, identified by host and port."""

    host: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, spec: object) -> Node:
        """Accept ``"host:port"``, ``"[v6addr]:port"``, ``(host, port)`` or a Node."""
        if isinstance(spec, Node):
            return spec
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            host, port = spec
        elif isinstance(spec, str) and ":" in spec:
            host, _, port = spec.rpartition(":")
            host = host.strip("[]")
        else:
            raise InvalidArgumentError(f"a Redis node is 'host:port' or (host, port), not {spec!r}")
        try:
            port_number = int(port)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"bad port in Redis node {spec!r}") from None
        host = str(host)
        if not _HOST.fullmatch(host) or not 0 < port_number < 65536:
            raise InvalidArgumentError(
                f"bad Redis node {spec!r}: a host name or address (letters, digits, '.', '-', ':', not starting "
                "with '-') and a port from 1 to 65535"
            )
        return cls(host, port_number)


@dataclass(frozen=True)
class Deployment:
    """The resolved nodes, whether they form a cluster, and where that came from."""

    nodes: tuple[Node, ...]
    cluster: bool
    source: str
    registry: str | None = None


def default_registry_path() -> str:
    """``$MUMMI_REDIS_DIR/registry`` (``~/.mummi_io/redis/registry`` by default)."""
    base = os.environ.get(DIR_ENV) or os.path.join(os.path.expanduser("~"), ".mummi_io", "redis")
    return os.path.join(base, "registry")


def read_registry(path: str) -> tuple[list[Node], bool]:
    """Parse a registry file into its nodes (deduplicated, in order) and cluster flag.

    Raises
    ------
    StorageError
        If the file cannot be read.
    InvalidArgumentError
        If a line is malformed (the message names the line).
    """
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise StorageError(f"cannot read the Redis registry {path!r}: {exc.strerror}") from exc
    nodes: list[Node] = []
    cluster = False
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "mode" and len(words) == 2:
            cluster = words[1] == "cluster"
            continue
        if len(words) != 2:
            raise InvalidArgumentError(f"{path}:{number}: expected 'host port', got {line!r}")
        node = Node.parse((words[0], words[1]))
        if node not in nodes:
            nodes.append(node)
    return nodes, cluster


def _write_registry(path: str, nodes: list[Node], cluster: bool) -> None:
    lines = ["# mummi_io Redis server registry: one 'host port' per node"]
    if cluster:
        lines.append("mode cluster")
    lines += [f"{node.host} {node.port}" for node in nodes]
    temporary = f"{path}.tmp.{os.getpid()}"
    with open(temporary, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.replace(temporary, path)


def update_registry(
    path: str, add: Iterable[Node] = (), remove: Iterable[Node] = (), cluster: bool | None = None
) -> list[Node]:
    """Add and remove nodes in the registry under its file lock; return the nodes listed after.

    Safe when many nodes of a deployment register at the same moment: each
    update holds ``<registry>.lock`` (a ``filelock`` lock) while it reads and
    rewrites the file, and the rewrite is atomic (temporary file + rename).
    """
    from filelock import FileLock

    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    with FileLock(path + ".lock", timeout=60):
        nodes, mode = read_registry(path) if os.path.exists(path) else ([], False)
        gone = set(remove)
        nodes = [node for node in nodes if node not in gone]
        nodes += [node for node in add if node not in nodes]
        _write_registry(path, nodes, mode if cluster is None else cluster)
    return nodes


def mummi_server_list() -> str | None:
    """MuMMI's server list, ``$MUMMI_ROOT/redis/all_servers.txt``, if ``MUMMI_ROOT`` is set."""
    root = os.environ.get(MUMMI_ROOT_ENV)
    return os.path.join(os.path.expandvars(root), "redis", "all_servers.txt") if root else None


def _is_count(text: str) -> bool:
    """Whether ``text`` is a node count as MuMMI writes one (ASCII digits: ``"²"`` is no count)."""
    return text.isascii() and text.isdigit()


def resolve_deployment(
    nodes: Iterable[object] | str | None = None, cluster: bool | None = None, registry: str | None = None
) -> Deployment:
    """Find the nodes in the documented order (see the module docstring)."""
    if nodes:
        specs = nodes.split(",") if isinstance(nodes, str) else list(nodes)
        return Deployment(tuple(Node.parse(s) for s in specs), bool(cluster), "the nodes option")
    env_nodes = os.environ.get(NODES_ENV, "").strip()
    expected = None
    if _is_count(env_nodes):
        expected = int(env_nodes)  # MuMMI's meaning: a count of nodes, found in the registry
    elif env_nodes:
        env_cluster = os.environ.get(CLUSTER_ENV, "").lower() in ("1", "yes", "true")
        parsed = tuple(Node.parse(s.strip()) for s in env_nodes.split(",") if s.strip())
        return Deployment(parsed, env_cluster if cluster is None else cluster, f"${NODES_ENV}")
    if expected is None and _is_count(os.environ.get(NNODES_ENV, "").strip()):
        expected = int(os.environ[NNODES_ENV])
    path = registry or os.environ.get(REGISTRY_ENV) or default_registry_path()
    mummi_list = mummi_server_list()
    if not (registry or os.environ.get(REGISTRY_ENV) or os.path.exists(path)) and mummi_list and os.path.exists(mummi_list):
        path = mummi_list
    if registry or os.environ.get(REGISTRY_ENV) or os.path.exists(path):
        found, registry_cluster = read_registry(path)
        if not found:
            raise InvalidArgumentError(f"the Redis registry {path!r} lists no nodes; start them first")
        if expected is not None and expected != len(found):
            LOGGER.warning("%d Redis node(s) expected ($%s/$%s), but the registry %s lists %d: %s", expected,
                           NODES_ENV, NNODES_ENV, path, len(found), ", ".join(node.name for node in found))
        return Deployment(
            tuple(found), registry_cluster if cluster is None else cluster, f"the registry {path}", path
        )
    if expected is not None:
        raise InvalidArgumentError(
            f"${NODES_ENV} or ${NNODES_ENV} says {expected} Redis node(s) (a count, as in MuMMI), but no registry "
            f"lists them: looked for {path}" + (f" and {mummi_list}" if mummi_list else "")
            + "; start the nodes with setup/redis/start_all_redis_nodes.sh, or set MUMMI_REDIS_REGISTRY"
        )
    return Deployment((Node(*DEFAULT_NODE),), bool(cluster), "the default localhost:6379")


def resolve_password(password: str | None, password_file: str | None, registry: str | None) -> str | None:
    """Find the password in the documented order; ``None`` when none is configured."""
    if password:
        return password
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    candidates = [password_file, os.environ.get(PASSWORD_FILE_ENV)]
    if registry:
        candidates.append(os.path.join(os.path.dirname(registry), "password"))
    for path in candidates:
        if path and os.path.exists(path):
            mode = os.stat(path).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                LOGGER.warning("the Redis secret file %s is readable by others; chmod 600 it", path)
            with open(path) as handle:
                secret = handle.readline().strip()
            if secret:
                return secret
        elif path and path in (password_file, os.environ.get(PASSWORD_FILE_ENV)):
            raise InvalidArgumentError(f"the Redis password file {path!r} does not exist")
    return None


@functools.lru_cache(maxsize=4096)
def _address(host: str) -> str:
    """``host``'s address, looked up once per process (moves and syncs ask on every call)."""
    try:
        return socket.gethostbyname(host)
    except OSError:  # unresolvable here: its name is all we know
        return host


def servers_identity(nodes: Sequence[Node]) -> frozenset[tuple[str, int]]:
    """The servers behind ``nodes`` whatever their spelling (``localhost`` and ``127.0.0.1`` are one)."""
    return frozenset((_address(node.host), node.port) for node in nodes)
