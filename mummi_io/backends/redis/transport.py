"""Running batches of Redis commands: independent nodes or a Redis Cluster.

Both transports take a list of ``(tag, command...)`` and return the results
in the same order. Independent nodes: partition by the tag's owner, one
pipeline per node, nodes served in parallel threads, results put back in
order (the three steps of redis-py's cluster ``mget_nonatomic``). Cluster:
one redis-py cluster pipeline, which routes by slot and follows MOVED/ASK.

Batches are *not atomic across shards*: each command is atomic (our writes
are Lua scripts per shard), a batch as a whole is not.

Transient failures (connection reset, timeout, a cluster failing over) are
retried with jittered exponential backoff until ``retry_timeout``; then, or
at once for a refused password, :class:`BackendUnavailableError` names the
node.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis
from redis.cluster import ClusterNode, RedisCluster

from ...errors import BackendUnavailableError, StorageError
from .layout import owner
from .nodes import Node

LOGGER = logging.getLogger(__name__)

Command = tuple[bytes, tuple[Any, ...]]
T = TypeVar("T")

_TRANSIENT = (
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


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, redis.exceptions.AuthenticationError) or text.startswith(("NOAUTH", "WRONGPASS"))


def with_retries(
    where: str, retry_timeout: float, action: Callable[[], T], on_failure: Callable[[], object] | None = None
) -> T:
    """Run ``action``, retrying transient Redis errors with jittered backoff for ``retry_timeout`` s.

    ``on_failure`` runs after each transient failure (a cluster client
    refreshes its view of which node serves which slot there).
    """
    deadline = time.monotonic() + retry_timeout
    delay = 0.02
    while True:
        try:
            return action()
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            if _is_auth_error(exc):
                raise BackendUnavailableError(
                    f"Redis {where} refused authentication ({exc}); check the password option, "
                    "$MUMMI_REDIS_PASSWORD or the secret file written by the launch scripts"
                ) from exc
            if not isinstance(exc, _TRANSIENT):
                raise StorageError(f"Redis {where} refused a command: {exc}") from exc
            if time.monotonic() + delay > deadline:
                raise BackendUnavailableError(
                    f"Redis {where} is unavailable ({exc}); check that it is running and reachable, "
                    "or start it with setup/redis/start_all_redis_nodes.sh"
                ) from exc
            LOGGER.debug("retrying Redis %s after %s", where, exc)
            time.sleep(delay * random.uniform(0.5, 1.0))
            if on_failure is not None:
                try:
                    on_failure()
                except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as refresh_error:
                    LOGGER.debug("could not refresh %s yet: %s", where, refresh_error)
            delay = min(delay * 2, 1.0)


class IndependentNodes:
    """Independent Redis servers; each shard tag lives on its rendezvous owner."""

    def __init__(self, nodes: Sequence[Node], retry_timeout: float, client_options: dict[str, Any]) -> None:
        self.nodes = list(nodes)
        self.retry_timeout = retry_timeout
        self.clients = [redis.Redis(host=n.host, port=n.port, **client_options) for n in self.nodes]
        self._owners: dict[bytes, int] = {}
        self._pool: ThreadPoolExecutor | None = None

    def owner_of(self, tag: bytes) -> int:
        index = self._owners.get(tag)
        if index is None:
            index = self._owners[tag] = owner(self.nodes, tag)
        return index

    def group_of(self, tag: bytes) -> int:
        """Shards that can share one command: those on the same node."""
        return self.owner_of(tag)

    def _run_node(self, index: int, commands: list[tuple[Any, ...]], atomic: bool) -> list[Any]:
        client = self.clients[index]

        def attempt() -> list[Any]:
            if len(commands) == 1:  # no pipeline object for a single command
                return [client.execute_command(*commands[0])]
            pipe = client.pipeline(transaction=atomic)
            for command in commands:
                pipe.execute_command(*command)
            return pipe.execute()

        return with_retries(f"node {self.nodes[index].name}", self.retry_timeout, attempt)

    def execute(self, commands: Sequence[Command], atomic: bool = False) -> list[Any]:
        """Run the commands, grouped by owner node, nodes in parallel; results in input order.

        With ``atomic``, each node runs its share in one MULTI/EXEC transaction.
        """
        if len(commands) == 1:
            tag, command = commands[0]
            return self._run_node(self.owner_of(tag), [command], atomic)
        by_node: dict[int, list[int]] = {}
        for position, (tag, _) in enumerate(commands):
            by_node.setdefault(self.owner_of(tag), []).append(position)
        results: list[Any] = [None] * len(commands)

        def run(index: int) -> None:
            positions = by_node[index]
            for position, result in zip(positions, self._run_node(index, [commands[p][1] for p in positions], atomic)):
                results[position] = result

        if len(by_node) == 1:
            run(next(iter(by_node)))
        elif by_node:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=len(self.nodes), thread_name_prefix="mummi-io-redis")
            for future in [self._pool.submit(run, index) for index in by_node]:
                future.result()
        return results

    def pubsub_for(self, tag: bytes) -> redis.client.PubSub:
        """A Pub/Sub connection to the node that owns ``tag`` (where its publishes happen)."""
        return self.clients[self.owner_of(tag)].pubsub()

    def on_each_node(self, action: Callable[[redis.Redis, Node], T]) -> list[T]:
        """Run ``action(client, node)`` for every node (for PING, rebalance)."""
        return [
            with_retries(f"node {node.name}", self.retry_timeout, lambda c=client, n=node: action(c, n))
            for client, node in zip(self.clients, self.nodes)
        ]

    def close(self) -> None:
        for client in self.clients:
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


class ClusterTransport:
    """A Redis Cluster through redis-py's cluster client."""

    def __init__(self, nodes: Sequence[Node], retry_timeout: float, client_options: dict[str, Any]) -> None:
        self.nodes = list(nodes)
        self.retry_timeout = retry_timeout
        self.where = "cluster " + ",".join(n.name for n in self.nodes)
        options = {k: v for k, v in client_options.items() if k not in ("retry", "retry_on_error", "db")}
        self.client = with_retries(
            self.where,
            retry_timeout,
            lambda: RedisCluster(startup_nodes=[ClusterNode(n.host, n.port) for n in self.nodes], **options),
        )

    @staticmethod
    def group_of(tag: bytes) -> bytes:
        """Shards that can share one command: only a shard with itself (one slot)."""
        return tag

    def execute(self, commands: Sequence[Command], atomic: bool = False) -> list[Any]:
        """Run the commands through one cluster pipeline; results in input order.

        ``atomic`` is not honoured: a cluster batch spans slots and nodes. Each
        command stays atomic, and a shard's value is written before its index.
        """

        def attempt() -> list[Any]:
            if len(commands) == 1:
                return [self.client.execute_command(*commands[0][1])]
            pipe = self.client.pipeline()
            for _, command in commands:
                pipe.execute_command(*command)
            return pipe.execute()

        return with_retries(self.where, self.retry_timeout, attempt, self._refresh_topology) if commands else []

    def pubsub_for(self, tag: bytes) -> Any:
        """A Pub/Sub connection to the node serving ``tag``'s slot (chosen on SUBSCRIBE)."""
        return self.client.pubsub()

    def _refresh_topology(self) -> None:
        """Ask the cluster again which node serves which slot (after a node died or failed over)."""
        self.client.nodes_manager.initialize()

    def wait_for_replicas(self, replicas: int, timeout_ms: int) -> None:
        """Block until each primary that has replicas got ``replicas`` acknowledgements (or the timeout).

        A primary without replicas (say, one just promoted by a failover) is
        skipped: waiting on it could only time out.
        """
        def attempt() -> object:
            primaries = {}
            for serving in self.client.nodes_manager.slots_cache.values():
                if len(serving) > 1:
                    primaries[serving[0].name] = serving[0]
            if not primaries:
                return None
            return self.client.execute_command("WAIT", replicas, timeout_ms, target_nodes=list(primaries.values()))

        acknowledged = with_retries(self.where, self.retry_timeout, attempt, self._refresh_topology)
        if isinstance(acknowledged, dict) and min(acknowledged.values(), default=replicas) < replicas:
            LOGGER.warning("only %s replica acknowledgements of %d asked for", acknowledged, replicas)

    def close(self) -> None:
        self.client.close()
