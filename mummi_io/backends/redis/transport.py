"""Running batches of Redis commands: independent nodes or a Redis Cluster.

Why one module of this size: independent nodes and a Redis Cluster share the
partition, pipeline, retry and replication steps; both transports sit beside
the helpers they share.

Both transports take a list of ``(tag, command...)`` and return the results
in the same order: partition by the node that serves each tag, one pipeline
per node on one connection, nodes served in parallel threads, results put
back in order (the three steps of redis-py's cluster ``mget_nonatomic``).

Batches are *not atomic across pieces*: each command is atomic, and so is
each ``MULTI`` ... ``EXEC`` a caller sends (a write sends one per piece of up
to 1,000 keys, on one node or one cluster slot); a batch as a whole is not.

Replication (``replica_acks=N``): a write batch ends, on every node it wrote
to, with ``WAIT N timeout`` *on the connection that wrote* (``WAIT`` counts
the replicas that have that client's writes). Each node's reply is checked:
fewer than N raises :class:`~mummi_io.core.errors.ReplicationError` (the batch is
not acknowledged), whatever the cluster's view of which masters have replicas.

Independent nodes know their shape: every node holds ``mio:deployment``, a
HASH whose ``nodes`` field lists the node set the data was placed over
(sorted ``host:port`` names, comma-separated; written by the first client
to write, or by the launch scripts; rewritten by ``rebalance()``; a read never
writes it). Before its first command a client compares that record with its
own node list and refuses a difference with :class:`BackendUnavailableError` naming it: with a missing
or an extra node, rendezvous hashing would place shards elsewhere and the
client would see (and write) a partial view.

Transient failures (connection reset, timeout, a cluster failing over) are
retried with jittered exponential backoff until ``retry_timeout``; then, or
at once for a refused password, :class:`BackendUnavailableError` names the
node.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

pack_command: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack

    pack_command = _hiredis_pack  # type: ignore[assignment]  # its stub types a tuple of one item
except ImportError:  # redis-py without hiredis: its own pipeline packs
    pack_command = None

from ...core.errors import BackendUnavailableError, ReplicationError, StorageError
from .layout import owner
from .nodes import Node

LOGGER = logging.getLogger(__name__)

Command = tuple[bytes, tuple[Any, ...]]
T = TypeVar("T")

TRANSIENT_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ReadOnlyError,  # a replica still being promoted
    redis.exceptions.AskError,  # MOVED/ASK that redis-py did not follow
    redis.exceptions.BusyLoadingError,
    redis.exceptions.RedisClusterException,  # no slot coverage while a cluster fails over
)


#: Independent nodes have no failover: a read-only node is a replica given by mistake, not one being promoted,
#: and a MOVED reply means cluster nodes given without cluster=True.
_NODE_TRANSIENT = tuple(kind for kind in TRANSIENT_ERRORS
                        if kind not in (redis.exceptions.ReadOnlyError, redis.exceptions.AskError))


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, redis.exceptions.AuthenticationError) or text.startswith(("NOAUTH", "WRONGPASS"))


#: What to do when independent nodes stay unreachable.
NODES_DOWN_HINT = (
    "check it with `mummi-io servers ping`; restart one node of a deployment with "
    "`setup/redis/start_redis_node.sh --port PORT --dir DIR --detach`, or start a deployment with "
    "setup/redis/start_all_redis_nodes.sh"
)
#: What to do when a cluster stays unreachable.
CLUSTER_DOWN_HINT = (
    "a master may have failed and its failover not finished (it takes about cluster-node-timeout plus the "
    "election), or a master without a replica is down; check `redis-cli cluster info`, retry, or raise "
    "retry_timeout"
)


def with_retries(
    where: str, retry_timeout: float, action: Callable[[], T], on_failure: Callable[[], object] | None = None,
    down_hint: str = NODES_DOWN_HINT, transient: tuple[type[BaseException], ...] | None = None,
) -> T:
    """Run ``action``, retrying transient Redis errors with jittered backoff for ``retry_timeout`` s.

    ``on_failure`` runs after each transient failure (a cluster client
    refreshes its view of which node serves which slot there). ``down_hint``
    is the advice given when the time is up; ``transient`` the errors worth
    retrying (by default those of a restarting node or a failing-over cluster).
    """
    transient = TRANSIENT_ERRORS if transient is None else transient
    started = time.monotonic()
    deadline = time.monotonic() + retry_timeout
    delay = 0.02
    while True:
        try:
            return action()
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            if "Cluster mode is not enabled" in str(exc):  # cluster=True given for independent nodes
                raise BackendUnavailableError(
                    f"Redis {where}: {exc}; these are independent nodes, not a Redis Cluster: leave out "
                    "cluster=True (and MUMMI_REDIS_CLUSTER)"
                ) from exc
            if _is_auth_error(exc):
                raise BackendUnavailableError(
                    f"Redis {where} refused authentication ({exc}); check the password option, "
                    "$MUMMI_REDIS_PASSWORD or the secret file written by the launch scripts"
                ) from exc
            if not isinstance(exc, transient):
                if isinstance(exc, redis.exceptions.AskError):  # MOVED/ASK outside a cluster client
                    raise BackendUnavailableError(
                        f"Redis {where} is a Redis Cluster node (it answered {exc}): pass cluster=True to get_io, "
                        "or set MUMMI_REDIS_CLUSTER=1 (the registry of a cluster deployment says 'mode cluster')"
                    ) from exc
                if isinstance(exc, redis.exceptions.ReadOnlyError):
                    raise StorageError(
                        f"Redis {where} is a read-only replica ({exc}); give the master's address instead"
                    ) from exc
                raise StorageError(f"Redis {where} refused a command: {exc}") from exc
            if time.monotonic() + delay > deadline:
                raise BackendUnavailableError(
                    f"Redis {where} is unavailable ({exc}; retried for {time.monotonic() - started:.1f} s); {down_hint}"
                ) from exc
            LOGGER.debug("retrying Redis %s after %s", where, exc)
            time.sleep(delay * random.uniform(0.5, 1.0))
            if on_failure is not None:
                try:
                    on_failure()
                except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as refresh_error:
                    LOGGER.debug("could not refresh %s yet: %s", where, refresh_error)
            delay = min(delay * 2, 1.0)


class Transport(Protocol):
    """What runs our commands: :class:`IndependentNodes` or :class:`ClusterTransport`."""

    retry_timeout: float

    def execute(self, commands: Sequence[Command], write: bool = False) -> list[Any]:
        """Run ``(tag, command)`` pairs on the nodes serving their tags; results in order."""
        ...

    def pubsub_for(self, tag: bytes) -> Any:
        """A Pub/Sub connection to the node where ``tag``'s publishes happen."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...


class TransportSource(Protocol):
    """What a coordinator is given: something that holds a transport (made again after pickling) and names it."""

    @property
    def transport(self) -> Transport:
        """The transport, connected on first use."""
        ...

    def describe(self) -> str:
        """Where the commands go, in words (for messages)."""
        ...


class HoldsTransport:
    """For a backend holding a transport: not pickled (a worker process connects again), closed on close."""

    _transport: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_transport"] = None
        return state

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


#: Packed commands shorter than this are joined into one buffer before sending.
_JOIN_BELOW = 64 * 1024


def _packed(commands: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """The commands in the Redis protocol, packed by hiredis (redis-py's packer checks every argument first).

    Small commands are joined into one buffer; a large one is its own item,
    so a batch of large values is not copied twice.
    """
    pack = pack_command
    if pack is None:  # the callers check first; a check that survives python -O
        raise BackendUnavailableError("the fast Redis transport needs hiredis: pip install hiredis")
    out: list[bytes] = []
    small: list[bytes] = []
    for command in commands:
        try:
            packed = pack(command)
        except TypeError:  # hiredis takes memoryviews but not bytearrays
            packed = pack(tuple(memoryview(arg) if isinstance(arg, bytearray) else arg for arg in command))
        if len(packed) < _JOIN_BELOW:
            small.append(packed)
            continue
        if small:
            out.append(b"".join(small))
            small = []
        out.append(packed)
    if small:
        out.append(b"".join(small))
    return out


def _pipelined(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` on one pooled connection in one write and read their replies (an error reply in its place).

    redis-py's own pipeline does the same, plus per-argument checks and
    bookkeeping that cost about a third of a 100-key batch. Any failure but an
    error reply drops the connection: replies left unread would answer the
    next caller.
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command(_packed(commands))
        replies: list[Any] = []
        for command in commands:
            try:
                replies.append(client.parse_response(connection, command[0]))
            except redis.exceptions.ResponseError as error:
                replies.append(error)
        return replies
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def run_on_connection(
    client: redis.Redis, commands: Sequence[tuple[Any, ...]], replicas: int, timeout_ms: int,
) -> tuple[list[Any], int | None]:
    """Run ``commands`` on one connection of ``client``; return their results and the ``WAIT`` reply.

    With ``replicas``, ``WAIT replicas timeout_ms`` follows on the same
    connection, after the commands (so after any ``EXEC``: inside a
    transaction WAIT does not block). An error reply raises, and so does an
    error inside the reply of an ``EXEC`` the caller sent (a transaction per
    piece of a batch).
    """
    sent = list(commands)
    if replicas:
        sent.append(("WAIT", replicas, timeout_ms))
    if len(sent) == 1 and pack_command is None:
        replies = [client.execute_command(*sent[0])]
    elif pack_command is None:  # without hiredis: redis-py's pipeline
        pipe = client.pipeline(transaction=False)
        for command in sent:
            pipe.execute_command(*command)
        replies = pipe.execute(raise_on_error=False)
    else:
        replies = _pipelined(client, sent)
    acks = replies.pop() if replicas else None
    for command, reply in zip(commands, replies):
        if isinstance(reply, Exception):
            raise reply
        if command[0] == "EXEC" and isinstance(reply, list):
            for inner in reply:
                if isinstance(inner, Exception):
                    raise inner
    if isinstance(acks, Exception):
        raise acks
    return list(replies), acks


def check_acks(acks: dict[str, int | None], replicas: int, timeout_ms: int) -> None:
    """Raise :class:`ReplicationError` if a node confirmed fewer than ``replicas`` replicas."""
    short = {node: count or 0 for node, count in acks.items() if (count or 0) < replicas}
    if short:
        shown = ", ".join(f"{node}: {count}" for node, count in sorted(short.items()))
        raise ReplicationError(
            f"the write is not acknowledged: {replicas} replica(s) asked for, but within {timeout_ms} ms only "
            f"({shown}) confirmed; a failover now could lose it. Check the replicas (INFO replication), "
            "retry, or lower replica_acks",
            {node: count or 0 for node, count in acks.items()},
        )


class _Parallel:
    """Run a function for each node's share of a batch, in threads when there are several nodes."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def run(self, action: Callable[[Any], None], groups: Sequence[Any]) -> None:
        if len(groups) <= 1:
            for group in groups:
                action(group)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(2, self.workers), thread_name_prefix="mummi-io-redis")
        for future in [self._pool.submit(action, group) for group in groups]:
            future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


#: The HASH on every independent node that records the deployment's shape.
SHAPE_KEY = b"mio:deployment"


def shape_of(nodes: Sequence[Node]) -> str:
    """The node set as recorded in ``mio:deployment``: sorted ``host:port`` names, comma-separated."""
    return ",".join(sorted({node.name for node in nodes}))


def shape_difference(expected: str, recorded: str, whose: str = "this client") -> str:
    """``recorded`` compared with ``expected`` (``whose`` list), in words: which nodes one has and the other lacks."""
    mine, theirs = set(expected.split(",")), set(recorded.split(",")) - {""}
    parts = []
    if theirs - mine:
        parts.append(f"{whose} lacks " + ", ".join(sorted(theirs - mine)))
    if mine - theirs:
        parts.append(f"{whose} adds " + ", ".join(sorted(mine - theirs)))
    return "; ".join(parts)


class IndependentNodes:
    """Independent Redis servers; each shard tag lives on its rendezvous owner.

    With ``verify_shape``, the first command checks each node's
    ``mio:deployment`` record against this node list (see the module docstring).
    """

    def __init__(
        self, nodes: Sequence[Node], retry_timeout: float, client_options: dict[str, Any],
        replica_acks: int = 0, replica_timeout_ms: int = 1000, verify_shape: bool = False,
    ) -> None:
        self.nodes = list(nodes)
        # "unchecked" -> "unrecorded" (read-checked: no node holds a record yet) -> "verified"
        self._shape_state = "unchecked" if verify_shape else "verified"
        self.retry_timeout = retry_timeout
        self.replica_acks = replica_acks
        self.replica_timeout_ms = replica_timeout_ms
        self.clients = [redis.Redis(host=n.host, port=n.port, **client_options) for n in self.nodes]
        self._owners: dict[bytes, int] = {}
        self._parallel = _Parallel(len(self.nodes))

    def owner_of(self, tag: bytes) -> int:
        index = self._owners.get(tag)
        if index is None:
            index = self._owners[tag] = owner(self.nodes, tag)
        return index

    def group_of(self, tag: bytes) -> int:
        """Shards that can share one command: those on the same node."""
        return self.owner_of(tag)

    def execute(self, commands: Sequence[Command], write: bool = False) -> list[Any]:
        """Run the commands, grouped by owner node, nodes in parallel; results in input order.

        With ``write`` and ``replica_acks``, each node's share is
        acknowledged by that many replicas or :class:`ReplicationError` is raised.
        """
        if self._shape_state != "verified" and (write or self._shape_state == "unchecked"):
            self.verify_shape(record=write)
        replicas = self.replica_acks if write else 0
        by_node: dict[int, list[int]] = {}
        for position, (tag, _) in enumerate(commands):
            by_node.setdefault(self.owner_of(tag), []).append(position)
        results: list[Any] = [None] * len(commands)
        acks: dict[str, int | None] = {}

        def run(index: int) -> None:
            positions = by_node[index]
            client, name = self.clients[index], self.nodes[index].name
            found, acks[name] = with_retries(
                f"node {name}", self.retry_timeout,
                lambda: run_on_connection(client, [commands[p][1] for p in positions], replicas,
                                          self.replica_timeout_ms),
                transient=_NODE_TRANSIENT,
            )
            for position, result in zip(positions, found):
                results[position] = result

        self._parallel.run(run, list(by_node))
        if replicas:
            check_acks(acks, replicas, self.replica_timeout_ms)
        return results

    def pubsub_for(self, tag: bytes) -> redis.client.PubSub:
        """A Pub/Sub connection to the node that owns ``tag`` (where its publishes happen)."""
        if self._shape_state == "unchecked":
            self.verify_shape(record=False)
        return self.clients[self.owner_of(tag)].pubsub()

    def on_each_node(self, action: Callable[[redis.Redis, Node], T]) -> list[T]:
        """Run ``action(client, node)`` for every node (for PING, rebalance)."""
        return [
            with_retries(f"node {node.name}", self.retry_timeout, functools.partial(action, client, node),
                         transient=_NODE_TRANSIENT)
            for client, node in zip(self.clients, self.nodes)
        ]

    def server_ids(self) -> frozenset[str]:
        """Each server's ``run_id``: the same servers however their addresses are spelled (asked each time)."""
        return frozenset(self.on_each_node(lambda client, _: str(client.info("server")["run_id"])))

    def recorded_shapes(self) -> list[str | None]:
        """Each node's recorded node set (``None`` where a node holds no record)."""
        found = self.on_each_node(lambda client, _: client.hget(SHAPE_KEY, "nodes"))
        return [value.decode("utf-8", "replace") if isinstance(value, bytes) else value for value in found]

    def record_shape(self, deployment_id: str | None = None) -> None:
        """Write this node list as the deployment's shape on every node (``rebalance()``, the launch scripts)."""
        fields = ["nodes", shape_of(self.nodes)] + (["id", deployment_id] if deployment_id else [])
        self.on_each_node(lambda client, _: client.hset(SHAPE_KEY, items=fields))
        self._shape_state = "verified"

    def verify_shape(self, record: bool = True) -> None:
        """Refuse a node list that differs from the one the data was placed over.

        When no node holds a record yet (a new deployment), a writing client
        (``record``) records this list, with ``HSETNX`` so that two first
        clients cannot both win; a read never writes, and the check is made
        again at the first write.

        Raises
        ------
        BackendUnavailableError
            Naming the nodes this client lacks or adds, and the way out.
        """
        expected = shape_of(self.nodes)
        recorded = self.recorded_shapes()
        if all(value is None for value in recorded):
            if not record:
                self._shape_state = "unrecorded"
                return
            self.on_each_node(lambda client, _: client.hsetnx(SHAPE_KEY, "nodes", expected))
            recorded = self.recorded_shapes()
        for node, value in zip(self.nodes, recorded):
            if value == expected:
                continue
            if value is None:
                problem = (f"node {node.name} holds no deployment record while the other nodes do: it is new to "
                           "this deployment, or it lost its data (restarted without its AOF/RDB files?)")
            else:
                problem = (f"node {node.name} records the deployment as {value} "
                           f"({shape_difference(expected, value)})")
            raise BackendUnavailableError(
                f"this client's Redis nodes ({expected}) are not the deployment's: {problem}. A different node "
                "list would place keys elsewhere and show a partial view. Use the deployment's registry "
                "(source setup/redis/load_redis_env.sh DIR) or its node list; after adding or replacing a node "
                "on purpose, run `mummi-io servers rebalance` with the new list"
            )
        self._shape_state = "verified"

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self._parallel.close()


#: redis-py's default cluster-node-timeout, when the cluster does not tell its own.
_DEFAULT_NODE_TIMEOUT_MS = 15000


def failover_budget(node_timeout_ms: int) -> float:
    """Seconds a client should keep retrying so that a failover finishes within them, with margin.

    A failover takes the node timeout (to mark the master failed), the
    majority's agreement, and the replica's election (0.5-1 s, plus 1 s per
    rank): twice the node timeout plus 20 s covers it on every cluster we
    measured (docs/redis.md).
    """
    return 2 * node_timeout_ms / 1000 + 20.0


class ClusterTransport:
    """A Redis Cluster: redis-py's cluster client for the topology, our own per-node pipelines."""

    def __init__(
        self, nodes: Sequence[Node], retry_timeout: float | None, client_options: dict[str, Any],
        replica_acks: int = 0, replica_timeout_ms: int = 1000,
    ) -> None:
        self.nodes = list(nodes)
        self.where = "cluster " + ",".join(n.name for n in self.nodes)
        self.replica_acks = replica_acks
        self.replica_timeout_ms = replica_timeout_ms
        options = {k: v for k, v in client_options.items() if k not in ("retry", "retry_on_error", "db")}
        connect_budget = retry_timeout if retry_timeout is not None else failover_budget(_DEFAULT_NODE_TIMEOUT_MS)
        self.client = with_retries(
            self.where, connect_budget,
            lambda: RedisCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in self.nodes], **options),
            down_hint=CLUSTER_DOWN_HINT,
        )
        self.retry_timeout = retry_timeout if retry_timeout is not None else failover_budget(self._node_timeout_ms())
        self._parallel = _Parallel(len(self.nodes))

    def _node_timeout_ms(self) -> int:
        """The cluster's ``cluster-node-timeout`` (its default when CONFIG is not allowed)."""
        try:
            reply = self.client.config_get("cluster-node-timeout")
            return int(reply.get("cluster-node-timeout") or _DEFAULT_NODE_TIMEOUT_MS)
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, ValueError, AttributeError):
            return _DEFAULT_NODE_TIMEOUT_MS

    @staticmethod
    def group_of(tag: bytes) -> bytes:
        """Shards that can share one command: only a shard with itself (one slot)."""
        return tag

    def execute(self, commands: Sequence[Command], write: bool = False) -> list[Any]:
        """Run the commands on the masters serving their slots, one pipeline per master; results in order.

        A batch spans slots and nodes: each command, and each MULTI ... EXEC
        of commands of one slot, is atomic; the batch as a whole is not.
        A MOVED or ASK reply (a slot moved, a failover) refreshes the topology
        and the batch is sent again: every command we send is idempotent or
        refused before it runs.
        """
        if not commands:
            return []
        replicas = self.replica_acks if write else 0

        def attempt() -> tuple[list[Any], dict[str, int | None]]:
            manager = self.client.nodes_manager
            by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
            for position, (tag, _) in enumerate(commands):
                node = manager.get_node_from_slot(key_slot(tag))
                by_node.setdefault(node.name, (node, []))[1].append(position)
            results: list[Any] = [None] * len(commands)
            acks: dict[str, int | None] = {}

            def run(name: str) -> None:
                node, positions = by_node[name]
                client = self.client.get_redis_connection(node)
                found, acks[name] = run_on_connection(
                    client, [commands[p][1] for p in positions], replicas, self.replica_timeout_ms
                )
                for position, result in zip(positions, found):
                    results[position] = result

            self._parallel.run(run, list(by_node))
            return results, acks

        results, acks = with_retries(self.where, self.retry_timeout, attempt, self._refresh_topology,
                                     down_hint=CLUSTER_DOWN_HINT)
        if replicas:
            check_acks(acks, replicas, self.replica_timeout_ms)
        return results

    def pubsub_for(self, tag: bytes) -> Any:
        """A Pub/Sub connection to the node serving ``tag``'s slot (chosen on SUBSCRIBE)."""
        return self.client.pubsub()

    def _refresh_topology(self) -> None:
        """Ask the cluster again which node serves which slot (after a node died or failed over)."""
        self.client.nodes_manager.initialize()

    def close(self) -> None:
        self.client.close()
        self._parallel.close()
