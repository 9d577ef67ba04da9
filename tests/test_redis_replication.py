"""redis: replica_acks means it, failovers are outlasted, and a read never misses a key that exists.

Real redis-server processes: a replica is stalled with SIGSTOP, a master is
killed with SIGKILL, a writer process switches a key between chunked and
plain storage while a reader reads it.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from mummi_io import get_io
from mummi_io.core.errors import (
    BackendUnavailableError, InvalidArgumentError, KeyNotFoundError, ReplicationError, StorageError,
)
from mummi_io.backends.redis.local_servers import RedisServer, create_cluster, start_servers, stop_servers

pytest.importorskip("redis")


def _replica_of(master: RedisServer, servers: list[RedisServer]) -> RedisServer:
    for server in servers:
        info = server.cli("INFO", "replication")
        if "role:slave" in info and f"master_port:{master.port}" in info:
            return server
    raise AssertionError(f"no replica of {master.name}")


@pytest.fixture(scope="module")
def cluster_with_replicas(tmp_path_factory, redis_password) -> Iterator[list[RedisServer]]:
    servers = start_servers(6, str(tmp_path_factory.mktemp("replicated")), redis_password, cluster=True)
    try:
        create_cluster(servers, replicas=1)
        yield servers
    finally:
        stop_servers(servers)


@pytest.fixture
def stalled(cluster_with_replicas) -> Iterator[tuple[RedisServer, RedisServer]]:
    """One master whose replica is stopped (SIGSTOP) for the test, resumed after it."""
    servers = cluster_with_replicas
    master = next(s for s in servers if "role:master" in s.cli("INFO", "replication"))
    replica = _replica_of(master, servers)
    replica.process.send_signal(signal.SIGSTOP)
    try:
        yield master, replica
    finally:
        replica.process.send_signal(signal.SIGCONT)


def _cluster_io(servers: list[RedisServer], **options):
    return get_io("redis", nodes=[s.name for s in servers], cluster=True, password=servers[0].password, **options)


def test_a_stalled_replica_makes_the_write_unacknowledged(cluster_with_replicas, stalled) -> None:
    master, _ = stalled
    keys = [f"k{i:04d}" for i in range(300)]  # spread over every shard, so every master
    with _cluster_io(cluster_with_replicas, replica_acks=1, replica_timeout=1.0) as io:
        with pytest.raises(ReplicationError, match=master.name) as caught:
            io.save_files("stall", keys, [b"v"] * len(keys))
        acks = caught.value.acks
        assert len(acks) == 3 and acks[master.name] == 0  # the stalled master is named, not hidden in a sum
        assert max(acks.values()) >= 1  # each master's reply is counted on its own
        with pytest.raises(ReplicationError):
            io.remove_files("stall", keys)


def test_queue_and_counter_operations_wait_for_replicas_too(cluster_with_replicas, stalled) -> None:
    with _cluster_io(cluster_with_replicas, replica_acks=1, replica_timeout=1.0, coordination="backend") as io:
        failures = 0
        for place in (f"place-{i}" for i in range(12)):  # some places live on the stalled master
            try:
                io.queue(place, "work").put(["a", "b"])
            except ReplicationError:
                failures += 1
                with pytest.raises(ReplicationError):
                    io.counter(place, "done").add(1)
        assert failures > 0


def test_writes_are_acknowledged_once_the_replica_is_back(cluster_with_replicas) -> None:
    with _cluster_io(cluster_with_replicas, replica_acks=1, replica_timeout=2.0) as io:
        deadline = time.monotonic() + 30
        while True:
            try:
                io.save_files("back", [f"k{i}" for i in range(100)], [b"v"] * 100)
                break
            except ReplicationError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the replica resumed by the previous test is catching up
        assert io.load_files("back", "k7") == b"v"


def test_independent_nodes_with_a_replica(tmp_path, redis_password) -> None:
    master, replica = start_servers(2, str(tmp_path), redis_password)
    try:
        replica.cli("REPLICAOF", "127.0.0.1", str(master.port))
        deadline = time.monotonic() + 20
        while "master_link_status:up" not in replica.cli("INFO", "replication"):
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        with get_io("redis", nodes=[replica.name], password=redis_password, retry_timeout=600) as wrong:
            with pytest.raises(StorageError, match="read-only replica"):
                # A replica given as a node: said at once, not retried (a retry would outlast the test's limit).
                wrong.save_files("ns", "a", b"1")
        with get_io("redis", nodes=[master.name], password=redis_password, replica_acks=1, replica_timeout=0.3) as io:
            io.save_files("ns", ["a", "b"], [b"1", b"2"])
            replica.process.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(ReplicationError, match=master.name):
                    io.save_files("ns", "c", b"3")
            finally:
                replica.process.send_signal(signal.SIGCONT)
    finally:
        stop_servers([master, replica])


def test_default_retry_budget_outlasts_a_failover(tmp_path, redis_password) -> None:
    servers = start_servers(6, str(tmp_path / "failover"), redis_password, cluster=True)
    try:
        create_cluster(servers, replicas=1)
        victim = [s for s in servers if "role:master" in s.cli("INFO", "replication")][0]
        with _cluster_io(servers) as io:  # the default retry_timeout
            assert io.backend.transport.retry_timeout >= 20  # 2 x cluster-node-timeout (1 s) + 20 s
            io.save_files("campaign", ["warm"], [b"up"])
            threading.Timer(0.5, victim.kill).start()
            started = time.monotonic()
            slowest = 0.0
            batch = 0
            while time.monotonic() - started < 8 or batch < 30:
                keys = [f"b{batch:04d}-{i}" for i in range(20)]
                begun = time.monotonic()
                io.save_files("campaign", keys, [b"x"] * len(keys))  # must never fail
                slowest = max(slowest, time.monotonic() - begun)
                batch += 1
            assert victim.process.poll() is not None
            assert io.load_files("campaign", "b0000-0") == b"x"
        assert slowest < io.backend.transport.retry_timeout
    finally:
        stop_servers(servers)


def test_a_master_down_without_replica_says_a_failover_may_be_in_progress(tmp_path, redis_password) -> None:
    servers = start_servers(3, str(tmp_path / "bare"), redis_password, cluster=True)
    try:
        create_cluster(servers)
        with _cluster_io(servers, retry_timeout=2) as io:
            io.save_files("ns", [f"k{i}" for i in range(50)], [b"v"] * 50)
            servers[1].kill()
            with pytest.raises(BackendUnavailableError, match="failover"):
                io.save_files("ns", [f"k{i}" for i in range(50)], [b"w"] * 50)
    finally:
        stop_servers(servers)


# --------------------------------------------------------------------------
# A read never misses a key that exists, whatever writers do
# --------------------------------------------------------------------------
def _switch_chunked_and_plain(name: str, password: str, seconds: float) -> None:
    with get_io("redis", nodes=[name], password=password, chunk_size=1024) as io:
        deadline = time.monotonic() + seconds
        turn = 0
        while time.monotonic() < deadline:
            size = 3000 if turn % 2 else 500  # chunked (3 pieces), then plain
            io.save_files("race", "hot", bytes([turn % 251]) * size)
            turn += 1


def test_a_reader_never_misses_a_key_switching_between_chunked_and_plain(redis_single) -> None:
    server = redis_single[0]
    with get_io("redis", nodes=[server.name], password=server.password, chunk_size=1024) as io:
        io.save_files("race", "hot", b"\0" * 500)
        writer = multiprocessing.get_context("spawn").Process(
            target=_switch_chunked_and_plain, args=(server.name, server.password, 3.0)
        )
        writer.start()
        reads = 0
        try:
            while writer.is_alive():
                try:
                    value = io.load_files("race", "hot")
                except KeyNotFoundError:
                    pytest.fail(f"the key was reported missing after {reads} reads")
                assert len(value) in (500, 3000) and value.count(value[:1]) == len(value)
                reads += 1
        finally:
            writer.join(30)
        assert writer.exitcode == 0 and reads > 100


@pytest.mark.parametrize("option, value", [("chunk_size", -1), ("chunk_size", 0), ("chunk_size", 1e3),
                                           ("shards", 0), ("replica_acks", -1), ("replica_timeout", -2),
                                           ("retry_timeout", "10")])
def test_bad_options_are_refused_before_anything_is_stored(option, value) -> None:
    with pytest.raises(InvalidArgumentError, match=option):
        get_io("redis", nodes=["127.0.0.1:1"], **{option: value})
