"""The ``redis`` backend on real servers: one node, three independent nodes, a 3-master cluster."""

from __future__ import annotations

from typing import Any

import pytest

from mummi_io.facade import IO
from mummi_io.testing import BackendContract

redis = pytest.importorskip("redis")

TOPOLOGIES = ["single", "three", "cluster"]


def options_for(topology: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    servers = request.getfixturevalue({"single": "redis_single", "three": "redis_three", "cluster": "redis_cluster"}[topology])
    return {
        "nodes": [server.name for server in servers],
        "cluster": topology == "cluster",
        "password": servers[0].password,
    }


class TestRedisContract(BackendContract):
    kind = "redis"

    @pytest.fixture(params=TOPOLOGIES)
    def io_options(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        return options_for(request.param, request)

    def _locate(self, io: IO, namespace: str, key: str) -> tuple[Any, bytes, bytes]:
        """The redis-py client that holds ``key``, its value key and its index key."""
        backend = io.backend
        layout = backend.layout
        shard = layout.shard_of(key)
        prefix = layout.shard_prefix(namespace, shard)
        transport = backend.transport
        if backend.deployment.cluster:
            client = transport.client
        else:
            from mummi_io.backends.redis.layout import owner

            client = transport.clients[owner(transport.nodes, layout.tag(namespace, shard))]
        return client, prefix + key.encode(), prefix

    def raw_get(self, io: IO, namespace: str, key: str) -> bytes | None:
        client, value_key, _ = self._locate(io, namespace, key)
        return client.get(value_key)

    def raw_put(self, io: IO, namespace: str, key: str, value: bytes) -> None:
        client, value_key, index_key = self._locate(io, namespace, key)
        client.set(value_key, value)
        client.sadd(index_key, key)
