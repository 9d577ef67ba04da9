"""The ``redis`` backend on real servers: one node, three independent nodes, a 3-master cluster."""

from __future__ import annotations

from typing import Any

import pytest

from mummi_io import IO
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
        layout = backend.layout_of(namespace)
        assert layout is not None, "the namespace exists (the contract tests save first)"
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


# --------------------------------------------------------------------------
# Where the nodes and the password come from
# --------------------------------------------------------------------------
from mummi_io import BackendUnavailableError, InvalidArgumentError, UnsupportedOperation, get_io  # noqa: E402
from mummi_io.core.errors import ReplicationError  # noqa: E402
from mummi_io.backends.redis.layout import Layout, owner  # noqa: E402
from mummi_io.backends.redis.nodes import Node, read_registry, resolve_deployment, resolve_password  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ENV_VARS = ["MUMMI_REDIS_NODES", "MUMMI_REDIS_CLUSTER", "MUMMI_REDIS_REGISTRY", "MUMMI_REDIS_DIR",
            "MUMMI_REDIS_PASSWORD", "MUMMI_REDIS_PASSWORD_FILE"]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MUMMI_REDIS_DIR", str(tmp_path / "no-such-dir"))
    return monkeypatch


def test_resolution_order(clean_env, tmp_path) -> None:
    registry = tmp_path / "registry"
    registry.write_text("# nodes\nhostA 7000\nhostA 7001   # same host, another node\n\nhostB 7000\n")
    assert resolve_deployment().nodes == (Node("localhost", 6379),)
    clean_env.setenv("MUMMI_REDIS_REGISTRY", str(registry))
    found = resolve_deployment()
    assert found.nodes == (Node("hostA", 7000), Node("hostA", 7001), Node("hostB", 7000))
    assert found.registry == str(registry) and not found.cluster
    clean_env.setenv("MUMMI_REDIS_NODES", "envhost:1,envhost:2")
    assert resolve_deployment().nodes == (Node("envhost", 1), Node("envhost", 2))
    assert resolve_deployment(["opt:5"]).nodes == (Node("opt", 5),)
    assert resolve_deployment("a:1,[::1]:2").nodes == (Node("a", 1), Node("::1", 2))


def test_registry_in_default_dir_and_cluster_mode(clean_env, tmp_path) -> None:
    base = tmp_path / "redisdir"
    base.mkdir()
    (base / "registry").write_text("mode cluster\nn1 7000\nn2 7000\n")
    clean_env.setenv("MUMMI_REDIS_DIR", str(base))
    found = resolve_deployment()
    assert found.cluster and len(found.nodes) == 2


@pytest.mark.parametrize("line", ["justahost", "host port extra", "host notaport", "host 70000"])
def test_bad_registry_lines_are_named(tmp_path, line) -> None:
    registry = tmp_path / "registry"
    registry.write_text(f"good 1\n{line}\n")
    with pytest.raises(InvalidArgumentError):
        read_registry(str(registry))


def test_password_order(clean_env, tmp_path, caplog) -> None:
    registry = tmp_path / "registry"
    registry.write_text("h 1\n")
    assert resolve_password(None, None, str(registry)) is None
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    secret.chmod(0o644)
    assert resolve_password(None, None, str(registry)) == "from-file"
    assert "readable by others" in caplog.text
    clean_env.setenv("MUMMI_REDIS_PASSWORD", "from-env")
    assert resolve_password(None, None, str(registry)) == "from-env"
    assert resolve_password("explicit", None, str(registry)) == "explicit"
    clean_env.delenv("MUMMI_REDIS_PASSWORD")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        resolve_password(None, str(tmp_path / "missing"), None)


def test_bad_redis_option_is_refused_at_get_io() -> None:
    with pytest.raises(InvalidArgumentError):
        get_io("redis", nodes=["127.0.0.1:1"], no_such_redis_option=True)


# --------------------------------------------------------------------------
# Placement
# --------------------------------------------------------------------------
def test_rendezvous_is_stable_when_a_node_is_added() -> None:
    three = [Node("h", p) for p in (1, 2, 3)]
    four = three + [Node("h", 4)]
    tags = [Layout.tag(f"ns{n}", shard) for n in range(40) for shard in range(256)]
    moved = [tag for tag in tags if owner(three, tag) != owner(four, tag)]
    assert all(owner(four, tag) == 3 for tag in moved)  # only to the new node
    assert 0.2 < len(moved) / len(tags) < 0.3
    counts = [sum(owner(three, tag) == i for tag in tags) for i in range(3)]
    assert max(counts) / min(counts) < 1.1


def test_each_value_lives_on_exactly_one_node(redis_three, tmp_path) -> None:
    options = {"nodes": [s.name for s in redis_three], "password": redis_three[0].password}
    namespace = str(tmp_path)
    with get_io("redis", **options) as io:
        keys = [f"k{i}" for i in range(300)]
        io.save_files(namespace, keys, keys)
        clients = io.backend.transport.clients
        layout = io.backend.layout_of(namespace)
        assert layout is not None and layout.shards == 48  # 16 per node
        for key in keys:
            shard = layout.shard_of(key)
            value_key = layout.shard_prefix(namespace, shard) + key.encode()
            assert sum(bool(c.exists(value_key)) for c in clients) == 1
        used = {owner(io.backend.transport.nodes, layout.tag(namespace, layout.shard_of(k))) for k in keys}
        assert used == {0, 1, 2}


def test_rebalance_after_adding_a_node(tmp_path, redis_password) -> None:
    """A client whose node list differs from the deployment's is refused, naming the difference, until
    rebalance() moves the data and records the new list (its own servers: it changes their record)."""
    from mummi_io.backends.redis.local_servers import start_servers, stop_servers

    servers = start_servers(3, str(tmp_path / "srv"), redis_password)
    try:
        names = [s.name for s in servers]
        password = redis_password
        namespace = "campaign"
        keys = [f"key-{i:04d}" for i in range(2000)]
        with get_io("redis", nodes=names[:2], password=password) as two:
            two.save_files(namespace, keys, [k.upper() for k in keys])
        with get_io("redis", nodes=names, password=password) as three:
            # The new node would own about a third of the shards: a partial view, refused and named.
            with pytest.raises(BackendUnavailableError, match=f"node {names[0]} records the deployment as "
                               f"{','.join(sorted(names[:2]))} \\(this client adds {names[2]}\\)"):
                three.load_files(namespace, keys, missing=None)
            with get_io("redis", nodes=names[:1], password=password) as one:
                with pytest.raises(BackendUnavailableError, match=f"this client lacks {names[1]}"):
                    one.list_keys(namespace)
            moved = three.backend.rebalance()
            assert moved > 0
            assert three.load_files(namespace, keys) == [k.upper().encode() for k in keys]
            assert three.list_keys(namespace) == keys
            assert three.backend.rebalance() == 0  # nothing left to move
        with get_io("redis", nodes=names[:2], password=password) as old:  # the old list is refused from now on
            with pytest.raises(BackendUnavailableError, match=f"this client lacks {names[2]}"):
                old.file_exists(namespace, keys[0])
        with get_io("redis", nodes=names[1:], password=password) as shrunk:  # rebalance cannot drop a node
            with pytest.raises(InvalidArgumentError, match=f"placed over {names[0]} too, which this node list lacks"):
                shrunk.backend.rebalance()
        servers[2].cli("DEL", "mio:deployment")  # a node that lost its data (or a new one) is named as such
        with get_io("redis", nodes=names, password=password) as three:
            with pytest.raises(BackendUnavailableError, match=f"node {names[2]} holds no deployment record"):
                three.namespace_exists(namespace)
    finally:
        stop_servers(servers)


def test_cluster_nodes_given_as_independent_nodes_are_named(redis_cluster) -> None:
    with get_io("redis", nodes=[s.name for s in redis_cluster], password=redis_cluster[0].password,
                retry_timeout=5) as io:
        with pytest.raises(BackendUnavailableError, match="is a Redis Cluster node .*pass cluster=True"):
            io.save_files("ns", [f"k{i}" for i in range(50)], [b"v"] * 50)


def test_rebalance_is_for_independent_nodes(redis_cluster) -> None:
    with get_io("redis", nodes=[s.name for s in redis_cluster], cluster=True, password=redis_cluster[0].password) as io:
        with pytest.raises(UnsupportedOperation):
            io.backend.rebalance()


# --------------------------------------------------------------------------
# Large values are chunked transparently
# --------------------------------------------------------------------------
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_values_larger_than_chunk_size(topology, request, tmp_path) -> None:
    options = options_for(topology, request)
    namespace = str(tmp_path)
    with get_io("redis", chunk_size=1000, **options) as io:
        big = bytes(range(256)) * 23  # 5888 bytes: 6 pieces
        io.save_files(namespace, ["big", "small"], [big, b"s"])
        assert io.load_files(namespace, ["big", "small"]) == [big, b"s"]
        assert io.list_keys(namespace) == ["big", "small"]
        assert io.file_exists(namespace, "big")
        bigger = b"x" * 2500
        io.save_files(namespace, "big", bigger)  # a new generation replaces the old pieces
        assert io.load_files(namespace, "big") == bigger
        io.save_files(namespace, "big", b"tiny now")
        assert io.load_files(namespace, "big") == b"tiny now"
        io.save_files(namespace, "big", big)
        io.move_keys(namespace, ["big"], ["moved"])
        assert io.load_files(namespace, "moved") == big
        io.remove_files(namespace, "moved")
        assert io.load_files(namespace, ["moved", "big"], missing=None) == [None, None]
        leftovers = _all_redis_keys(io, namespace)
        assert not [k for k in leftovers if b"\0big\0" in k or b"\0moved\0" in k], leftovers


def _all_redis_keys(io, namespace: str) -> list[bytes]:
    transport = io.backend.transport
    clients = list(transport.client.get_nodes()) if io.backend.deployment.cluster else transport.clients
    found = []
    for client in clients:
        connection = transport.client.get_redis_connection(client) if io.backend.deployment.cluster else client
        found.extend(connection.scan_iter(match=b"mio:{*", count=1000))
    return [k for k in found if namespace.encode() in k]


# --------------------------------------------------------------------------
# Shard counts: recorded per namespace; namespaces of the 256-shard layout still read
# --------------------------------------------------------------------------
def test_a_namespace_keeps_the_shard_count_it_was_created_with(redis_single, tmp_path) -> None:
    """Clients configured with other counts read and write a namespace at the count its marker records."""
    server = redis_single[0]
    options = {"nodes": [server.name], "password": server.password}
    namespace = str(tmp_path)
    keys = [f"k{i:03d}" for i in range(200)]
    with get_io("redis", shards=8, **options) as creator:
        creator.save_files(namespace, keys[:100], keys[:100])
    assert server.cli("GET", Layout.marker(namespace).decode()) == "shards=8"
    with get_io("redis", **options) as default, get_io("redis", shards=64, **options) as other:
        assert default.backend.new_shards == 16 and other.backend.new_shards == 64
        assert default.load_files(namespace, keys[:100]) == [k.encode() for k in keys[:100]]
        other.save_files(namespace, keys[100:], keys[100:])
        assert default.list_keys(namespace) == keys
        assert all(default.file_exists(namespace, keys))
        other.remove_files(namespace, keys[::2])
        assert default.list_keys(namespace) == keys[1::2]
    prefixes = {bytes(k).split(b"}")[0] for k in _all_redis_keys_on(server, namespace)}
    assert len(prefixes - {b"mio:{" + Layout.tag(namespace, "meta")}) <= 8  # every value in one of the 8 shards


def _all_redis_keys_on(server, namespace: str) -> list[bytes]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    try:
        return [k for k in client.scan_iter(match=b"mio:{*", count=1000) if namespace.encode() in k]
    finally:
        client.close()


def test_a_namespace_of_the_256_shard_layout_is_read_and_written(redis_single, tmp_path) -> None:
    """Data written before shard counts were recorded (marker ``1``, 256 shards) is found where it was put."""
    import redis

    server = redis_single[0]
    namespace = str(tmp_path)
    old = Layout(256)
    raw = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    keys = [f"old-{i:03d}" for i in range(50)]
    for key in keys:  # what the previous release wrote: value at its shard's prefix, the key in its index SET
        prefix = old.shard_prefix(namespace, old.shard_of(key))
        raw.set(prefix + key.encode(), key.encode())
        raw.sadd(prefix, key)
    raw.set(Layout.marker(namespace), b"1")
    with get_io("redis", nodes=[server.name], password=server.password) as io:
        assert io.list_keys(namespace) == keys
        assert io.load_files(namespace, keys) == [k.encode() for k in keys]
        assert all(io.file_exists(namespace, keys))
        io.save_files(namespace, "new", b"n")
        io.remove_files(namespace, keys[:10])
        assert io.list_keys(namespace) == sorted(keys[10:] + ["new"])
    new_prefix = old.shard_prefix(namespace, old.shard_of("new"))
    assert raw.get(new_prefix + b"new") == b"n"  # written in the namespace's own (256-shard) layout
    assert raw.get(Layout.marker(namespace)) == b"1"  # and the marker left as it was
    raw.close()


def _legacy_namespace(server, namespace: str, shards: int, keys: list[str]) -> None:
    """What an earlier release wrote with ``shards`` shards: values, index SETs, marker ``1``."""
    import redis

    old = Layout(shards)
    raw = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    for key in keys:
        prefix = old.shard_prefix(namespace, old.shard_of(key))
        raw.set(prefix + key.encode(), key.encode())
        raw.sadd(prefix, key)
    raw.set(Layout.marker(namespace), b"1")
    raw.close()


@pytest.mark.parametrize("written, opened", [(256, 16), (16, None), (16, 64)])
def test_a_legacy_namespace_opened_with_another_count_is_refused_not_misread(redis_single, tmp_path, written,
                                                                               opened) -> None:
    """With no recorded count, the count comes from the client: one that contradicts the keys' places says so."""
    from mummi_io.core.errors import StorageError

    server = redis_single[0]
    namespace = str(tmp_path)
    keys = [f"old-{i:03d}" for i in range(100)]
    _legacy_namespace(server, namespace, written, keys)
    options = {"nodes": [server.name], "password": server.password}
    with get_io("redis", **options, **({} if opened is None else {"shards": opened})) as wrong:
        for action in (lambda: wrong.list_keys(namespace), lambda: wrong.file_exists(namespace, "old-000"),
                       lambda: wrong.save_files(namespace, "new", b"n")):
            with pytest.raises(StorageError, match="shards=256 unless"):
                action()
    with get_io("redis", shards=written, **options) as right:
        assert right.list_keys(namespace) == keys and all(right.file_exists(namespace, keys))


def test_a_shard_count_out_of_bounds_is_refused(redis_single, tmp_path) -> None:
    import redis

    from mummi_io.backends.redis.backend import MAX_SHARDS
    from mummi_io.core.errors import StorageError

    server = redis_single[0]
    options = {"nodes": [server.name], "password": server.password}
    with pytest.raises(InvalidArgumentError, match="at most"):
        get_io("redis", shards=MAX_SHARDS + 1, **options)
    namespace = str(tmp_path)
    raw = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    raw.set(Layout.marker(namespace), b"shards=100000000000")
    raw.close()
    with get_io("redis", **options) as io:
        with pytest.raises(StorageError, match="count of 1 to"):
            io.file_exists(namespace, "k")


@pytest.mark.parametrize("marker", [b"shards=", b"shards=0", b"shards=x", b"2", b"\xff"])
def test_an_unreadable_namespace_marker_is_named(redis_single, tmp_path, marker: bytes) -> None:
    """A marker changed outside mummi_io is refused, naming it, never read with a guessed shard count."""
    import redis

    from mummi_io.core.errors import StorageError

    server = redis_single[0]
    namespace = str(tmp_path)
    raw = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    raw.set(Layout.marker(namespace), marker)
    raw.close()
    with get_io("redis", nodes=[server.name], password=server.password) as io:
        for action in (lambda: io.load_files(namespace, "k"), lambda: io.list_keys(namespace),
                       lambda: io.save_files(namespace, "k", b"v")):
            with pytest.raises(StorageError, match="marker of namespace"):
                action()


# --------------------------------------------------------------------------
# Failure: auth, a node down, transient errors
# --------------------------------------------------------------------------
def test_wrong_password_is_refused_naming_the_node(redis_single, tmp_path) -> None:
    name = redis_single[0].name
    with get_io("redis", nodes=[name], password="wrong", retry_timeout=5) as io:
        with pytest.raises(BackendUnavailableError, match=name) as caught:
            io.save_files(str(tmp_path), "k", b"v")
        assert "authentication" in str(caught.value)


def test_no_password_is_refused(redis_single, tmp_path, clean_env) -> None:
    with get_io("redis", nodes=[redis_single[0].name], retry_timeout=5) as io:
        with pytest.raises(BackendUnavailableError, match="authentication"):
            io.load_files(str(tmp_path), "k")
        with pytest.raises(BackendUnavailableError):
            io.check_environment()


def test_node_down_raises_within_bounded_time(tmp_path, redis_password) -> None:
    from mummi_io.backends.redis.local_servers import start_servers

    import time

    servers = start_servers(2, str(tmp_path / "srv"), redis_password)
    try:
        names = [s.name for s in servers]
        with get_io("redis", nodes=names, password=redis_password, retry_timeout=1.0) as io:
            keys = [f"k{i}" for i in range(200)]
            io.save_files(str(tmp_path), keys, keys)
            assert io.check_environment()
            servers[1].kill()
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match=names[1]):
                io.load_files(str(tmp_path), keys)
            assert time.monotonic() - started < 10
            with pytest.raises(BackendUnavailableError, match=names[1]):
                io.check_environment()
    finally:
        for server in servers:
            server.stop()


def test_transient_outage_is_retried(tmp_path, redis_password) -> None:
    import threading
    import time

    from mummi_io.backends.redis.local_servers import RedisServer

    server = RedisServer(str(tmp_path / "srv"), redis_password).start()
    server.wait_ready()
    try:
        with get_io("redis", nodes=[server.name], password=redis_password, retry_timeout=20) as io:
            io.save_files(str(tmp_path), "k", b"before")
            server.kill()

            def restart() -> None:
                time.sleep(0.5)
                server.start()  # same port, empty (no persistence in this test server)

            thread = threading.Thread(target=restart)
            thread.start()
            io.save_files(str(tmp_path), "k", b"after")  # retried until the node is back
            thread.join()
            assert io.load_files(str(tmp_path), "k") == b"after"
    finally:
        server.stop()


# --------------------------------------------------------------------------
# The feedback loop: list by pattern, load, move to an archive namespace
# --------------------------------------------------------------------------
def test_feedback_loop_over_three_nodes(redis_three, tmp_path) -> None:
    options = {"nodes": [s.name for s in redis_three], "password": redis_three[0].password}
    results, archive = str(tmp_path / "results"), str(tmp_path / "archive")
    keys = [f"rdf-{i:05d}.npz" for i in range(5000)]
    with get_io("redis", **options) as io:
        io.save_files(results, keys + ["other.txt"], [k.encode() * 3 for k in keys] + [b"o"])
        found = io.list_keys(results, "rdf-*.npz")
        assert found == keys
        assert io.load_files(results, found) == [k.encode() * 3 for k in keys]
        io.move_keys(results, found, dest_namespace=archive)
        assert io.list_keys(results) == ["other.txt"]
        assert io.list_keys(archive) == keys
        assert io.load_files(archive, keys[:10]) == [k.encode() * 3 for k in keys[:10]]


# --------------------------------------------------------------------------
# Redis Cluster failover: a master killed mid-workload loses no acknowledged write
# --------------------------------------------------------------------------
def test_cluster_failover_keeps_every_acknowledged_write(tmp_path, redis_password) -> None:
    import threading
    import time

    from mummi_io.backends.redis.local_servers import create_cluster, start_servers, stop_servers

    servers = start_servers(6, str(tmp_path / "cluster"), redis_password, cluster=True)
    try:
        create_cluster(servers, replicas=1)
        masters = [s for s in servers if "role:master" in s.cli("INFO", "replication")]
        assert len(masters) == 3
        victim = masters[1]
        namespace = "failover-campaign"
        acknowledged: list[str] = []
        unacknowledged: list[str] = []  # written, but a replica did not confirm: may or may not survive
        refused = 0
        with get_io("redis", nodes=[s.name for s in servers], cluster=True, password=redis_password,
                    replica_acks=1, replica_timeout=0.5, retry_timeout=60) as io:
            killer = threading.Timer(1.0, victim.kill)
            killer.start()
            started = time.monotonic()
            batch = 0
            while time.monotonic() - started < 6 or batch < 40:
                keys = [f"b{batch:04d}-{i:02d}" for i in range(25)]
                try:
                    io.save_files(namespace, keys, [k.encode() * 4 for k in keys])
                    acknowledged.extend(keys)
                except ReplicationError:
                    refused += 1  # the promoted master has no replica: not acknowledged, and said so
                    unacknowledged.extend(keys)
                batch += 1
            killer.join()
            assert victim.process.poll() is not None, "the master was not killed during the workload"
        assert refused > 0, "writes to a master without a replica were acknowledged with replica_acks=1"
        with get_io("redis", nodes=[s.name for s in servers if s is not victim], cluster=True,
                    password=redis_password, retry_timeout=60) as reader:
            assert reader.load_files(namespace, acknowledged) == [k.encode() * 4 for k in acknowledged]
            present = set(reader.list_keys(namespace))
            assert present >= set(acknowledged) and present - set(acknowledged) <= set(unacknowledged)
    finally:
        stop_servers(servers)


@pytest.mark.timeout(120)  # a retry would last the 600 s asked for: the error must come without one
def test_cluster_true_for_independent_nodes_is_said_at_once(redis_single) -> None:
    with pytest.raises(BackendUnavailableError, match="independent nodes, not a Redis Cluster: leave out cluster=True"):
        get_io("redis", nodes=[redis_single[0].name], cluster=True, password=redis_single[0].password,
               retry_timeout=600)


def test_servers_ping_names_a_node_of_another_deployment(tmp_path, redis_password) -> None:
    import subprocess
    import sys

    from mummi_io.backends.redis.local_servers import start_servers, stop_servers

    servers = start_servers(2, str(tmp_path / "srv"), redis_password)
    try:
        with get_io("redis", nodes=[servers[0].name], password=redis_password) as alone:
            alone.save_files("ns", "k", b"v")  # servers[0] now records itself alone
        registry = tmp_path / "registry"
        registry.write_text("".join(f"127.0.0.1 {s.port}\n" for s in servers))
        (tmp_path / "password").write_text(redis_password + "\n")
        (tmp_path / "password").chmod(0o600)
        result = subprocess.run([sys.executable, "-m", "mummi_io.cli", "servers", "--registry", str(registry), "ping"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        lines = result.stdout.splitlines()
        assert f"{servers[0].name}" in lines[0] and "WRONG" in lines[0] and "records the node set" in lines[0]
        assert " ok " in lines[1]
    finally:
        stop_servers(servers)


def test_a_read_never_writes_the_deployment_record(tmp_path, redis_password) -> None:
    """Reading a Redis that holds no record (a new deployment, or someone else's server) leaves it untouched;
    the first write records the node list."""
    from mummi_io.backends.redis.local_servers import start_servers, stop_servers

    servers = start_servers(1, str(tmp_path / "srv"), redis_password)
    try:
        with get_io("redis", nodes=[servers[0].name], password=redis_password) as io:
            assert io.load_files("ns", ["k"], missing=None) == [None]
            assert io.list_keys("ns") == [] and not io.namespace_exists("ns")
            assert servers[0].cli("DBSIZE") == "0"
            io.save_files("ns", "k", b"v")
        assert servers[0].cli("HGET", "mio:deployment", "nodes") == servers[0].name
    finally:
        stop_servers(servers)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text("abcdefgh/", min_size=1, max_size=6).filter(lambda k: "//" not in k), max_size=3000),
       st.integers(1, 4), st.sampled_from([4, 256]))
def test_batches_are_split_into_commands_covering_every_key_once(keys: list[str], nodes: int, shards: int) -> None:
    """How a batch becomes per-node commands: every key once, at its shard's Redis name, no command too long."""
    from mummi_io.backends.redis.backend import _KEYS_PER_COMMAND, RedisBackend

    backend = RedisBackend(nodes=[f"127.0.0.1:{port}" for port in range(1, nodes + 1)], password="x", shards=shards)
    layout = Layout.of(shards)
    pieces = list(backend._grouped("ns", keys, layout))
    assert sorted(p for piece in pieces for p in piece.positions) == list(range(len(keys)))
    for piece in pieces:
        assert 0 < piece.size <= _KEYS_PER_COMMAND and sum(piece.counts) == piece.size
        assert len({backend.transport.group_of(layout.tag("ns", shard)) for shard in piece.shards}) == 1
        expected = [layout.shard_prefix("ns", layout.shard_of(keys[p])) + keys[p].encode()
                    for p in piece.positions]
        assert piece.value_keys == expected
        assert piece.prefixes == [layout.shard_prefix("ns", shard) for shard in piece.shards]


def test_without_hiredis_redis_py_pipelines_the_same_commands(redis_single, tmp_path, monkeypatch) -> None:
    """The packing fallback (redis-py without hiredis) runs the same batches, transactions and errors."""
    from mummi_io.backends.redis import transport

    monkeypatch.setattr(transport, "pack_command", None)
    server = redis_single[0]
    namespace = str(tmp_path)
    keys = [f"k{i:04d}" for i in range(2500)]  # three pieces per node: three MULTI/EXEC
    values = [bytearray(b"%d" % i) for i in range(2500)]
    with get_io("redis", nodes=[server.name], password=server.password) as io:
        io.save_files(namespace, keys, values)
        assert io.load_files(namespace, keys) == [bytes(v) for v in values]
        assert io.file_exists(namespace, ["k0001", "nope"]) == [True, False]
        io.remove_files(namespace, keys[:100])
        assert len(io.list_keys(namespace)) == 2400
