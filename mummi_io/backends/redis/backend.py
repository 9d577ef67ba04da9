"""The ``redis`` backend: sharded namespaces over independent nodes or a Redis Cluster.

Why one module of this size: the backend's primitives are thin, but each write
is a Lua script call whose keys, arguments and replies are checked here, next
to the primitive that sends it.

See :mod:`.layout` for the key layout, :mod:`.nodes` for where the nodes
come from, and :mod:`.transport` for pipelining, parallelism and retries.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import redis
from redis.backoff import EqualJitterBackoff
from redis.crc import key_slot
from redis.retry import Retry

from ...core.contract import Backend, Buffer, Sharded
from ...core.crc import crc32
from ...core.errors import BackendUnavailableError, InvalidArgumentError, StorageError, UnsupportedOperation
from ...core.keys import key_matcher
from . import scripts
from .coordination import RedisCoordinator
from .layout import LEGACY_MARKER, MARKER_PREFIX, PREFIX, Layout, owner
from .nodes import Deployment, Node, resolve_deployment, resolve_password, servers_identity
from .transport import ClusterTransport, Command, HoldsTransport, IndependentNodes, with_retries

LOGGER = logging.getLogger(__name__)

#: Largest value stored as one Redis string (Redis's own limit is 512 MB).
DEFAULT_CHUNK_SIZE = 256 * 1024 * 1024
#: Most keys handled by one script or MGET call.
_KEYS_PER_COMMAND = 1000
#: Keys moved per round when moving between namespaces (bounds memory).
_MOVE_ROUND = 10_000
#: Seconds independent nodes are retried by default (a node restarting).
_NODES_RETRY_TIMEOUT = 10.0
#: Times a reader follows a value that writers keep switching between chunked and plain.
_READ_ATTEMPTS = 20
#: Shards per listed node for a new namespace, and at most this many in all (see ``new_namespace_shards``).
SHARDS_PER_NODE = 16
MAX_DEFAULT_SHARDS = 256
#: The shard count of namespaces whose marker predates recorded counts (``b"1"``), unless ``shards=`` says otherwise.
LEGACY_SHARDS = 256
#: The most shards a namespace may have (each is an index SET; a batch groups its keys by shard).
MAX_SHARDS = 1 << 14
_INT64_MAX = (1 << 63) - 1


def new_namespace_shards(node_count: int) -> int:
    """Shards for a new namespace: 16 per node (at most 256), recorded in its marker.

    Each shard a batch touches costs an index update on the server and its
    share of the Python grouping, and a batch of 100 keys touches almost
    every shard of 16 (84 of 256). 16 per node still spreads a namespace
    over the nodes (rendezvous placement) within about 20%.
    """
    return min(MAX_DEFAULT_SHARDS, SHARDS_PER_NODE * max(1, node_count))


class _Piece:
    """The keys of one command: their positions, shards, and Redis key names."""

    def __init__(self, namespace: str, layout: Layout) -> None:
        self.namespace = namespace
        self.layout = layout
        self.shards: list[int] = []
        self.prefixes: list[bytes] = []
        self.counts: list[int] = []
        self.positions: list[int] = []
        self.value_keys: list[bytes] = []

    @property
    def size(self) -> int:
        return len(self.positions)

    @property
    def tag(self) -> bytes:
        return self.layout.tag(self.namespace, self.shards[0])

    def add(self, shard: int, positions: list[int], encoded: list[bytes], prefix: bytes) -> None:
        self.shards.append(shard)
        self.prefixes.append(prefix)
        self.counts.append(len(positions))
        self.positions += positions
        self.value_keys += [prefix + encoded[p] for p in positions]


class RedisBackend(HoldsTransport, Backend):
    """Redis nodes (client-side placement) or a Redis Cluster.

    Parameters
    ----------
    nodes:
        ``["host:port", ...]``; default from ``$MUMMI_REDIS_NODES``, the
        registry file, else ``localhost:6379`` (see :mod:`.nodes`).
    cluster:
        The nodes are startup nodes of a Redis Cluster.
    registry:
        Path of the server registry file written by the launch scripts.
    password, password_file:
        Authentication (else ``$MUMMI_REDIS_PASSWORD``, the secret file).
    shards:
        Shards of each namespace this client creates (default: 16 per node,
        at most 256). A namespace records its count in its marker when it is
        created, and every client reads it from there, so clients with
        different values still agree. Namespaces made before counts were
        recorded (marker ``1``) are read with this value, else 256: the
        count they were written with (checked against where their keys
        are; at most 16,384).
    replica_acks:
        After each write (a batch, or a queue, counter, barrier or signal
        operation under ``coordination="backend"``), every master written to
        must confirm that this many replicas have it (``WAIT`` on the
        connection that wrote), or ``ReplicationError`` is raised: the write
        is then not acknowledged. For a Redis Cluster with replicas, or
        independent nodes that have replicas.
    replica_timeout:
        Seconds each master's ``WAIT`` may block for those confirmations.
    retry_timeout:
        Seconds to keep retrying transient errors (a restarting node, a
        cluster failover) before ``BackendUnavailableError``. Default: 10 s
        for independent nodes; for a cluster, twice its
        ``cluster-node-timeout`` plus 20 s, which outlasts a failover.
    socket_timeout, connect_timeout:
        Per-operation and per-connection time limits, in seconds.
    chunk_size:
        Values larger than this are stored in pieces.
    **redis_options:
        Passed to redis-py (e.g. ``ssl=True``, ``ssl_ca_certs=...``, ``username``).
    """

    kind = "redis"
    capabilities = (Sharded,)

    def __init__(
        self,
        *,
        nodes: Sequence[str] | str | None = None,
        cluster: bool | None = None,
        registry: str | None = None,
        password: str | None = None,
        password_file: str | None = None,
        shards: int | None = None,
        replica_acks: int = 0,
        replica_timeout: float = 1.0,
        retry_timeout: float | None = None,
        socket_timeout: float = 30.0,
        connect_timeout: float = 2.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **redis_options: Any,
    ) -> None:
        self.deployment: Deployment = resolve_deployment(nodes, cluster, registry)
        self._password = resolve_password(password, password_file, self.deployment.registry)
        checked = (("replica_acks", replica_acks, 0), ("chunk_size", chunk_size, 1)) + (
            () if shards is None else (("shards", shards, 1),))
        for name, value, least in checked:
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InvalidArgumentError(f"{name} must be a whole number >= {least}, not {value!r}")
        if shards is not None and shards > MAX_SHARDS:
            raise InvalidArgumentError(f"shards must be at most {MAX_SHARDS}, not {shards!r}")
        for name, seconds in (("replica_timeout", replica_timeout), ("retry_timeout", retry_timeout),
                              ("socket_timeout", socket_timeout), ("connect_timeout", connect_timeout)):
            if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0):
                raise InvalidArgumentError(f"{name} must be a number of seconds >= 0, not {seconds!r}")
        self.replica_acks = replica_acks
        self.replica_timeout = replica_timeout
        self.retry_timeout = retry_timeout
        self.chunk_size = chunk_size
        self._client_options: dict[str, Any] = {
            "password": self._password,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(EqualJitterBackoff(cap=0.5, base=0.01), 2),
            # Each blocked waiter holds a Pub/Sub connection; redis-py's default pool stops at 100.
            "max_connections": 10_000,
            **redis_options,
        }
        self._transport: IndependentNodes | ClusterTransport | None = None
        #: Shards of the namespaces this client creates, and of those whose marker records no count.
        self.new_shards = new_namespace_shards(len(self.deployment.nodes)) if shards is None else shards
        self.legacy_shards = LEGACY_SHARDS if shards is None else shards
        self._layouts: dict[str, Layout] = {}
        try:
            self.transport  # noqa: B018  (validates redis_options now, not at first use)
        except TypeError as exc:
            raise InvalidArgumentError(f"bad option for the redis backend: {exc}") from exc

    # ------------------------------------------------------------ plumbing
    @property
    def transport(self) -> IndependentNodes | ClusterTransport:
        if self._transport is None:
            replicas = (self.replica_acks, max(1, round(self.replica_timeout * 1000)))
            if self.deployment.cluster:
                self._transport = ClusterTransport(self.deployment.nodes, self.retry_timeout, self._client_options, *replicas)
            else:
                budget = _NODES_RETRY_TIMEOUT if self.retry_timeout is None else self.retry_timeout
                self._transport = IndependentNodes(self.deployment.nodes, budget, self._client_options, *replicas,
                                                   verify_shape=True)
        return self._transport

    def describe(self) -> str:
        mode = "cluster" if self.deployment.cluster else f"{len(self.deployment.nodes)} node(s)"
        return f"redis ({mode} from {self.deployment.source})"

    def namespace_identity(self, namespace: str) -> Hashable | None:
        # docstring inherited: the servers (their run_ids: any spelling of an address) and the name
        transport = self.transport
        if isinstance(transport, IndependentNodes):
            return (self.kind, transport.server_ids(), namespace)
        return (self.kind, servers_identity(self.deployment.nodes), namespace)  # a cluster: its nodes' addresses

    def coordinator(self) -> RedisCoordinator:
        # docstring inherited
        return RedisCoordinator(self)

    def check_environment(self) -> bool:
        # docstring inherited
        transport = self.transport
        if isinstance(transport, ClusterTransport):
            with_retries(transport.where, 0, lambda: transport.client.ping(target_nodes="all"))
        else:
            transport.on_each_node(lambda client, _: client.ping())
        return True

    # -------------------------------------------------------- shard counts
    def layout_of(self, namespace: str) -> Layout | None:
        """The layout of an existing namespace, read from its marker once; ``None`` if it does not exist.

        A namespace's shard count is fixed when it is created, so it is
        remembered; that the namespace does not exist is not (another client
        may create it).
        """
        layout = self._layouts.get(namespace)
        if layout is None:
            marker = Layout.marker(namespace)
            value = self.transport.execute([(Layout.tag(namespace, "meta"), ("GET", marker))])[0]
            if value is None:
                return None
            layout = self._layouts[namespace] = self._layout_from_marker(namespace, value)
        return layout

    def _layout_for_write(self, namespace: str) -> Layout:
        """The namespace's layout, creating the namespace (its marker, with this client's count) if needed."""
        layout = self._layouts.get(namespace)
        if layout is None:
            tag, marker = Layout.tag(namespace, "meta"), Layout.marker(namespace)
            _, value = self.transport.execute(
                [(tag, ("SET", marker, MARKER_PREFIX + b"%d" % self.new_shards, "NX")), (tag, ("GET", marker))],
                write=True,
            )
            layout = self._layouts[namespace] = self._layout_from_marker(namespace, value)
        return layout

    def _layout_from_marker(self, namespace: str, value: bytes) -> Layout:
        if value == LEGACY_MARKER:
            return self._legacy_layout(namespace)
        count = value[len(MARKER_PREFIX):]
        if not value.startswith(MARKER_PREFIX) or not count.isdigit() or not 1 <= int(count) <= MAX_SHARDS:
            raise StorageError(
                f"the marker of namespace {namespace!r} ({Layout.marker(namespace)!r}) holds {value[:40]!r}, "
                f"not {MARKER_PREFIX.decode()}<count> with a count of 1 to {MAX_SHARDS}: it was changed outside "
                "mummi_io; restore it or remove it"
            )
        return Layout.of(int(count))

    def _legacy_layout(self, namespace: str) -> Layout:
        """The layout of a namespace whose marker records no count, checked against where its keys are.

        Such a namespace has 256 shards, or the ``shards=`` its writers
        gave. Read with another count, its keys would look missing and new
        ones would go where no other client looks: so one member of every
        index SET that count could name (at least the 256 of the default)
        must sit in the shard that count puts it in.
        """
        layout = Layout.of(self.legacy_shards)
        probed = max(layout.shards, LEGACY_SHARDS)
        wide = Layout.of(probed)
        members = self.transport.execute(
            [(wide.tag(namespace, shard), ("SRANDMEMBER", wide.shard_prefix(namespace, shard)))
             for shard in range(probed)])
        for shard, member in enumerate(members):
            if member is not None and (shard >= layout.shards or crc32(member) % layout.shards != shard):
                raise StorageError(
                    f"namespace {namespace!r} was written before shard counts were recorded, and not with "
                    f"{layout.shards} shards: its key {member[:60]!r} is in shard {shard}. Open it with the count "
                    f"its writers used (shards=256 unless they gave another)"
                )
        return layout

    def _grouped(self, namespace: str, keys: Sequence[str], layout: Layout) -> Iterator[_Piece]:
        """Split keys into commands of shards served together (a node, or one cluster slot).

        Within a piece, positions are grouped by shard in the order of ``shards``.
        """
        encoded = [key.encode("utf-8") for key in keys]
        by_shard = layout.group_by_shard(encoded)
        tags, prefixes = layout.shard_names(namespace)
        group_of = self.transport.group_of
        by_group: dict[Any, list[int]] = {}
        for shard in by_shard:
            by_group.setdefault(group_of(tags[shard]), []).append(shard)
        for shards in by_group.values():
            piece = _Piece(namespace, layout)
            for shard in shards:
                positions = by_shard[shard]
                if len(positions) + piece.size < _KEYS_PER_COMMAND:
                    piece.add(shard, positions, encoded, prefixes[shard])  # the common case: it fits, with room
                    continue
                taken = 0
                while taken < len(positions):
                    part = positions[taken:taken + _KEYS_PER_COMMAND - piece.size]
                    piece.add(shard, part, encoded, prefixes[shard])
                    taken += len(part)
                    if piece.size >= _KEYS_PER_COMMAND:
                        yield piece
                        piece = _Piece(namespace, layout)
            if piece.size:
                yield piece

    def _value_keys_by_group(
        self, namespace: str, keys: Sequence[str], layout: Layout,
    ) -> list[tuple[bytes, list[int], list[bytes]]]:
        """For ``MGET``: ``(tag, positions, value keys)`` per node (or slot), at most 1,000 keys each.

        Unlike :meth:`_grouped`, keys are not ordered by shard (a read needs
        no per-shard counts): on one node, the keys stay in input order.
        """
        encoded = [key.encode("utf-8") for key in keys]
        shards = layout.shards
        shard_numbers = [crc % shards for crc in map(crc32, encoded)]
        tags, prefixes = layout.shard_names(namespace)
        value_keys = [prefixes[shard] + key for shard, key in zip(shard_numbers, encoded)]
        group_of = self.transport.group_of
        groups: dict[Any, tuple[bytes, list[int], list[bytes]]] = {}
        if isinstance(self.transport, IndependentNodes) and len(self.transport.nodes) == 1:
            groups[0] = (tags[0], list(range(len(keys))), value_keys)
        else:
            group_of_shard = [group_of(tag) for tag in tags] if len(keys) > shards else None
            for position, shard in enumerate(shard_numbers):
                group = group_of_shard[shard] if group_of_shard is not None else group_of(tags[shard])
                found = groups.get(group)
                if found is None:
                    groups[group] = (tags[shard], [position], [value_keys[position]])
                else:
                    found[1].append(position)
                    found[2].append(value_keys[position])
        return [(tag, positions[start:start + _KEYS_PER_COMMAND], names[start:start + _KEYS_PER_COMMAND])
                for tag, positions, names in groups.values()
                for start in range(0, len(positions), _KEYS_PER_COMMAND)]

    def _script(self, script: str, piece: _Piece, keys: Sequence[str]) -> Command:
        """An EVAL of one of our group scripts over the keys of ``piece``."""
        return (piece.tag, (
            "EVAL", script, len(piece.prefixes), *piece.prefixes,
            len(piece.shards), *piece.counts, *[keys[p] for p in piece.positions],
        ))

    # ----------------------------------------------------------- primitives
    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        # docstring inherited
        if not items:
            return
        small = [(k, v) for k, v in items if len(v) <= self.chunk_size]
        if len(small) != len(items):
            # A later item may overwrite an earlier one: keep the batch's order.
            for key, value in items:
                if len(value) > self.chunk_size:
                    self._write_chunked(namespace, key, value)
                else:
                    self.write_many(namespace, [(key, value)])
            return
        latest = dict(items)  # last writer wins inside one batch
        keys = list(latest)
        values = list(latest.values())
        commands: list[Command] = []
        for piece in self._grouped(namespace, keys, self._layout_for_write(namespace)):
            pairs: list[Any] = [None] * (2 * piece.size)
            pairs[0::2] = piece.value_keys
            pairs[1::2] = [values[p] for p in piece.positions]
            # One transaction per piece: its values and their index entries appear together. A node
            # runs each piece's EXEC while the next piece is still arriving.
            tag = piece.tag
            commands += [(tag, ("MULTI",)), (tag, ("MSET", *pairs)), self._script(scripts.INDEX, piece, keys),
                         (tag, ("EXEC",))]
        self.transport.execute(commands, write=True)

    def _write_chunked(self, namespace: str, key: str, value: Buffer) -> None:
        """Store a large value in pieces under a new generation, then switch to it atomically."""
        layout = self._layout_for_write(namespace)
        shard = layout.shard_of(key)
        tag = layout.tag(namespace, shard)
        prefix = layout.shard_prefix(namespace, shard)
        value_key = prefix + key.encode("utf-8")
        generation = secrets.token_hex(8).encode("ascii")
        view = memoryview(value).cast("B")
        pieces = range(0, len(view), self.chunk_size)
        for number, start in enumerate(pieces):
            chunk_key = value_key + b"\0" + generation + b"\0" + str(number).encode()
            self.transport.execute([(tag, ("SET", chunk_key, bytes(view[start:start + self.chunk_size])))], write=True)
        entry = generation + b" " + str(len(pieces)).encode()
        shard_keys = [prefix, layout.chunk_table(namespace, shard)]
        self.transport.execute([(tag, ("EVAL", scripts.COMMIT_CHUNKED, 3, *shard_keys, value_key, key, entry))],
                               write=True)

    def read_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        layout = self.layout_of(namespace)
        if layout is None:
            return [None] * len(keys)
        groups = self._value_keys_by_group(namespace, keys, layout)
        replies = self.transport.execute([(tag, ("MGET", *names)) for tag, _, names in groups])
        if len(groups) == 1:  # every key in one command, in input order
            values: list[bytes | None] = replies[0]
        else:
            values = [None] * len(keys)
            for (_, positions, _), reply in zip(groups, replies):
                for position, value in zip(positions, reply):
                    values[position] = value
        absent = [i for i, value in enumerate(values) if value is None]
        if absent:
            for position, value in zip(absent, self._read_value_or_chunks(namespace, [keys[i] for i in absent], layout)):
                values[position] = value
        return values

    def _read_value_or_chunks(self, namespace: str, keys: list[str], layout: Layout) -> list[bytes | None]:
        """Values that MGET did not find: stored in pieces, missing, or switched by a writer meanwhile.

        One script per shard group reads, atomically for each key, either its
        plain value or its chunk table entry, so a writer switching a key
        between plain and chunked between two of our commands can never make
        a key that exists look missing.
        """
        found: list[bytes | None] = [None] * len(keys)
        pending = list(range(len(keys)))
        for _ in range(_READ_ATTEMPTS):
            pieces = list(self._grouped(namespace, [keys[i] for i in pending], layout))
            replies = self.transport.execute([self._script(scripts.VALUE_OR_CHUNKS, piece, [keys[i] for i in pending])
                                              for piece in pieces])
            retry = []
            for piece, reply in zip(pieces, replies):
                for offset, position in enumerate(piece.positions):
                    kind, payload = reply[2 * offset], reply[2 * offset + 1]
                    index = pending[position]
                    if kind == 1:
                        found[index] = payload
                    elif kind == 2:
                        value = self._assemble(namespace, keys[index], payload, layout)
                        if value is None:
                            retry.append(index)  # overwritten while we read its pieces: look again
                        else:
                            found[index] = value
            if not retry:
                return found
            pending = retry
        raise BackendUnavailableError(
            f"{len(pending)} key(s) of {namespace!r} kept changing while being read "
            f"({', '.join(repr(keys[i]) for i in pending[:5])}); retry"
        )

    def _assemble(self, namespace: str, key: str, entry: bytes, layout: Layout) -> bytes | None:
        """The value of a key stored in pieces, or ``None`` if a writer replaced it meanwhile."""
        shard = layout.shard_of(key)
        tag = layout.tag(namespace, shard)
        value_key = layout.shard_prefix(namespace, shard) + key.encode("utf-8")
        generation, count = entry.split(b" ")
        parts = self.transport.execute(
            [(tag, ("GET", value_key + b"\0" + generation + b"\0" + str(n).encode())) for n in range(int(count))]
        )
        if all(part is not None for part in parts):
            return b"".join(parts)
        return None

    def read_ranges_many(
        self, namespace: str, keys: Sequence[str], ranges: Sequence[tuple[int, int | None]],
    ) -> list[bytes | None]:
        # docstring inherited: GETRANGE, with EXISTS in the same transaction (GETRANGE of a missing key is empty)
        layout = self.layout_of(namespace)
        if layout is None:
            return [None] * len(keys)
        commands: list[Command] = []
        for key, (start, stop) in zip(keys, ranges):
            shard = layout.shard_of(key)
            tag, value_key = layout.tag(namespace, shard), layout.shard_prefix(namespace, shard) + key.encode("utf-8")
            # GETRANGE's end is inclusive; an empty slice still asks for one byte, dropped below. Redis takes
            # 64-bit offsets: beyond them a slice means what it means at the limit (no value is that long).
            end = -1 if stop is None else min(max(stop - 1, 0), _INT64_MAX)
            commands += [(tag, ("MULTI",)), (tag, ("EXISTS", value_key)),
                         (tag, ("GETRANGE", value_key, max(min(start, _INT64_MAX), -_INT64_MAX), end)),
                         (tag, ("EXEC",))]
        replies = self.transport.execute(commands)
        values: list[bytes | None] = []
        for number, (start, stop) in enumerate(ranges):
            found, piece = replies[4 * number + 3]
            if found and stop is not None and (stop <= 0 or 0 <= start and stop <= start):
                piece = b""
            values.append(piece if found else None)
        missing = [number for number, value in enumerate(values) if value is None]
        if missing:  # stored in pieces (or missing, or switched by a writer meanwhile): a whole read, then the slice
            for number, value in zip(missing, super().read_ranges_many(
                    namespace, [keys[n] for n in missing], [ranges[n] for n in missing])):
                values[number] = value
        return values

    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        # docstring inherited
        layout = self.layout_of(namespace)
        if layout is None:
            return
        unique = list(dict.fromkeys(keys))
        self.transport.execute(
            [self._script(scripts.DELETE, piece, unique) for piece in self._grouped(namespace, unique, layout)],
            write=True,
        )

    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        layout = self.layout_of(namespace)
        if layout is None:
            return [False] * len(keys)
        if len(keys) == 1:  # the hot single-key case: one SISMEMBER, no grouping
            shard = layout.shard_of(keys[0])
            command = ("SISMEMBER", layout.shard_prefix(namespace, shard), keys[0])
            return [bool(self.transport.execute([(layout.tag(namespace, shard), command)])[0])]
        pieces = list(self._grouped(namespace, keys, layout))
        commands: list[Command] = []
        for piece in pieces:
            members = [keys[p] for p in piece.positions]
            group_command: tuple[Any, ...]
            if len(piece.shards) == 1:
                group_command = ("SMISMEMBER", piece.prefixes[0], *members)
            else:
                group_command = ("EVAL", scripts.EXISTS, len(piece.shards), *piece.prefixes,
                                 len(piece.shards), *piece.counts, *members)
            commands.append((piece.tag, group_command))
        found = [False] * len(keys)
        for piece, replies in zip(pieces, self.transport.execute(commands)):
            for position, reply in zip(piece.positions, replies):
                found[position] = bool(reply)
        return found

    def list_matching(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited
        layout = self.layout_of(namespace)
        if layout is None:
            return
        by_group: dict[Any, list[bytes]] = {}
        for shard in range(layout.shards):
            tag = layout.tag(namespace, shard)
            by_group.setdefault(self.transport.group_of(tag), []).append(layout.shard_prefix(namespace, shard))
        commands: list[Command] = []
        for index_sets in by_group.values():
            tag = index_sets[0][len(PREFIX):index_sets[0].index(b"}")]
            commands.append((tag, ("SUNION", *index_sets)))  # one slot or one node: allowed
        matches = key_matcher(pattern)
        for members in self.transport.execute(commands):
            for member in members:
                key = member.decode("utf-8")
                if matches(key):
                    yield key

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        if namespace in self._layouts:
            return True  # a marker is never removed
        marker = Layout.marker(namespace)
        return bool(self.transport.execute([(Layout.tag(namespace, "meta"), ("EXISTS", marker))])[0])

    def move_many(self, source: str, pairs: Sequence[tuple[str, str]], destination: str) -> None:
        # docstring inherited
        for start in range(0, len(pairs), _MOVE_ROUND):
            super().move_many(source, pairs[start:start + _MOVE_ROUND], destination)

    def keys_by_node(self, namespace: str, keys: Sequence[str]) -> dict[str, list[str]]:
        """The node (``host:port``) holding each key, as ``{node: [keys]}`` (MuMMI's per-server views).

        Independent nodes: the shard's rendezvous owner; a cluster: the
        master serving the shard's slot now. For a namespace that does not
        exist yet: where the keys would be written.
        """
        transport = self.transport
        layout = self.layout_of(namespace) or Layout.of(self.new_shards)
        grouped: dict[str, list[str]] = {}
        for key in keys:
            tag = layout.tag(namespace, layout.shard_of(key))
            if isinstance(transport, ClusterTransport):
                name = transport.client.nodes_manager.get_node_from_slot(key_slot(tag)).name
            else:
                name = transport.nodes[transport.owner_of(tag)].name
            grouped.setdefault(name, []).append(key)
        return grouped

    # ------------------------------------------------------- maintenance
    def rebalance(self) -> int:
        """Move every shard to the node that owns it now; return the number of Redis keys moved.

        Run it after adding nodes (adding a node moves ~1/N of the shards),
        with this backend's node list holding every node, old and new. It
        scans each node (``SCAN``, not ``KEYS``) and moves misplaced keys with
        ``MIGRATE``, node to node, then records the new node list as the
        deployment's shape on every node: clients opened with the old list
        from then on are refused. Clients already open keep the list they
        checked when they started: rebalance while the campaign's workers are
        stopped.

        Raises
        ------
        InvalidArgumentError
            If a node records data placed over a node missing from this list
            (rebalance moves data only between listed nodes; it would be left
            behind, unreachable).

        Raises
        ------
        UnsupportedOperation
            On a Redis Cluster, which rebalances with ``redis-cli --cluster rebalance``.
        """
        transport = self.transport
        if isinstance(transport, ClusterTransport):
            raise UnsupportedOperation("a Redis Cluster rebalances itself: use redis-cli --cluster rebalance")
        nodes = transport.nodes
        listed = {node.name for node in nodes}
        left_out = sorted({name for shape in transport.recorded_shapes() if shape
                           for name in shape.split(",") if name not in listed})
        if left_out:
            raise InvalidArgumentError(
                f"the data is placed over {', '.join(left_out)} too, which this node list lacks: rebalance moves data "
                "only between the nodes it is given, so theirs would be left behind. List every node, old and new"
            )
        moved = 0

        def move_from(client: redis.Redis, node: Node) -> int:
            misplaced: dict[int, list[bytes]] = {}
            for redis_key in client.scan_iter(match=b"mio:{*", count=1000):
                target = owner(nodes, Layout.tag_of(redis_key))
                if nodes[target] != node:
                    misplaced.setdefault(target, []).append(redis_key)
            count = 0
            for target, redis_keys in misplaced.items():
                destination = nodes[target]
                auth = ("AUTH", self._password) if self._password else ()
                for start in range(0, len(redis_keys), 500):
                    batch = redis_keys[start:start + 500]
                    client.execute_command(
                        "MIGRATE", destination.host, destination.port, "", 0, 60000, "REPLACE", *auth, "KEYS", *batch
                    )
                    count += len(batch)
            return count

        for count in transport.on_each_node(move_from):
            moved += count
        transport.record_shape()
        LOGGER.info("rebalance moved %d Redis keys", moved)
        return moved
