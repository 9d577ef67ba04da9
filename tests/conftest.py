"""Shared fixtures: real redis-server processes on free loopback ports, with passwords."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

# Rich assertion messages for the contract suite shipped inside the package.
pytest.register_assert_rewrite("mummi_io.testing")

from mummi_io.backends.redis.local_servers import (  # noqa: E402  (after the rewrite hook)
    INSTALL_HINT,
    RedisServer,
    create_cluster,
    redis_server_binary,
    start_servers,
    stop_servers,
)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--runslow", action="store_true",
        help="run the Hypothesis state machines and the corruption fuzz at 10x their CI size (also MUMMI_IO_SLOW=1)",
    )


def pytest_configure(config) -> None:
    if config.getoption("--runslow"):
        import os

        os.environ["MUMMI_IO_SLOW"] = "1"


def _require_redis() -> None:
    pytest.importorskip("redis", reason="pip install 'mummi_io[redis]'")
    if redis_server_binary() is None:
        pytest.fail(INSTALL_HINT)  # CI installs it: a missing server is a failure, not a skip


@pytest.fixture(scope="session")
def redis_password() -> str:
    return secrets.token_hex(16)


def _independent_servers(tmp_path_factory, password: str, count: int) -> Iterator[list[RedisServer]]:
    _require_redis()
    servers = start_servers(count, str(tmp_path_factory.mktemp(f"redis-{count}")), password)
    yield servers
    stop_servers(servers)


@pytest.fixture(scope="session")
def redis_single(tmp_path_factory, redis_password) -> Iterator[list[RedisServer]]:
    yield from _independent_servers(tmp_path_factory, redis_password, 1)


@pytest.fixture(scope="session")
def redis_three(tmp_path_factory, redis_password) -> Iterator[list[RedisServer]]:
    yield from _independent_servers(tmp_path_factory, redis_password, 3)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory, redis_password) -> Iterator[list[RedisServer]]:
    _require_redis()
    servers = start_servers(3, str(tmp_path_factory.mktemp("redis-cluster")), redis_password, cluster=True)
    try:
        create_cluster(servers)
        yield servers
    finally:
        stop_servers(servers)


@pytest.fixture(params=["simple", "taridx", "redis"])
def io_each_backend(request):
    """An open ``IO`` on each backend in turn (redis: one real server of the session)."""
    from mummi_io import get_io

    options: dict[str, object] = {}
    if request.param == "redis":
        server = request.getfixturevalue("redis_single")[0]
        options = {"nodes": [server.name], "password": server.password}
    with get_io(request.param, **options) as opened:
        yield opened
