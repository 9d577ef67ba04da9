"""Shared fixtures: real redis-server processes on free loopback ports, with passwords."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from mummi_io.testing.servers import (
    INSTALL_HINT,
    RedisServer,
    create_cluster,
    redis_server_binary,
    start_servers,
    stop_servers,
)


def _require_redis() -> None:
    pytest.importorskip("redis", reason="pip install 'mummi_io[redis]'")
    if redis_server_binary() is None:
        pytest.fail(INSTALL_HINT)  # CI installs it: a missing server is a failure, not a skip


@pytest.fixture(scope="session")
def redis_password() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="session")
def redis_single(tmp_path_factory, redis_password) -> Iterator[list[RedisServer]]:
    _require_redis()
    servers = start_servers(1, str(tmp_path_factory.mktemp("redis-single")), redis_password)
    yield servers
    stop_servers(servers)


@pytest.fixture(scope="session")
def redis_three(tmp_path_factory, redis_password) -> Iterator[list[RedisServer]]:
    _require_redis()
    servers = start_servers(3, str(tmp_path_factory.mktemp("redis-three")), redis_password)
    yield servers
    stop_servers(servers)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory, redis_password) -> Iterator[list[RedisServer]]:
    _require_redis()
    servers = start_servers(3, str(tmp_path_factory.mktemp("redis-cluster")), redis_password, cluster=True)
    try:
        create_cluster(servers)
        yield servers
    finally:
        stop_servers(servers)
