"""How namespaces and keys map to Redis keys, shards and nodes.

A namespace is split into ``shards`` by ``crc32(key) % shards``; the count
is chosen when the namespace is created and recorded in its marker. Every Redis key of one shard carries the same hash tag
``{<namespace hash>.<shard>}``, so in a Redis Cluster a shard lives in one
slot (a value and its index entry can change in one atomic script), and over
independent nodes a shard is placed on one node by rendezvous hashing of the
tag (adding a node moves only ~1/N of the shards). Redis keys, for a
namespace ``ns`` and a shard prefix ``P = b"mio:{<h>.<s>}:" + ns + b"\\0"``:

- ``P`` : a SET of the shard's keys (the index that makes listing cost
  O(keys in the namespace), never a ``KEYS``/``SCAN`` of the database);
- ``P + key`` : the value;
- ``P + b"\\0chunks"`` : a HASH key -> ``"<generation> <count>"`` for values
  larger than ``chunk_size``, stored as ``P + key + b"\\0<generation>\\0<i>"``;
- ``b"mio:{<h>.meta}:" + ns`` : the namespace's marker: it exists, with
  ``shards=<count>`` shards (``1`` for a namespace made before counts were
  recorded, which has the client's configured count, 256 by default).

Keys contain no NUL and namespaces contain no NUL, so these never collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

from ...core.crc import crc32
from .nodes import Node

PREFIX = b"mio:{"
CHUNK_TABLE_SUFFIX = b"\0chunks"
#: A namespace marker's value: this prefix and the shard count, or the legacy ``1``.
MARKER_PREFIX = b"shards="
LEGACY_MARKER = b"1"


@lru_cache(maxsize=4096)
def _namespace_hash(namespace: str) -> bytes:
    return hashlib.sha1(namespace.encode("utf-8")).hexdigest()[:16].encode("ascii")


@lru_cache(maxsize=256)
def _shard_names(namespace: str, shards: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The hash tag and the index SET name (the value-key prefix) of each shard of ``namespace``.

    Made once per namespace: a batch of 100 keys touches about 84 of 256 shards.
    """
    base = _namespace_hash(namespace) + b"."
    tags = tuple(base + b"%d" % shard for shard in range(shards))
    suffix = b"}:" + namespace.encode("utf-8") + b"\0"
    return tags, tuple(PREFIX + tag + suffix for tag in tags)


class Layout:
    """Redis key names for a fixed number of shards per namespace."""

    def __init__(self, shards: int) -> None:
        self.shards = shards

    @staticmethod
    @lru_cache(maxsize=64)
    def of(shards: int) -> Layout:
        """The (shared) layout for ``shards`` shards."""
        return Layout(shards)

    def shard_of(self, key: str) -> int:
        return crc32(key.encode("utf-8")) % self.shards

    def group_by_shard(self, encoded_keys: Sequence[bytes]) -> dict[int, list[int]]:
        """Positions of the (UTF-8 encoded) keys grouped by shard, in input order within a shard."""
        shards = self.shards
        groups: dict[int, list[int]] = {}
        for position, shard in enumerate(map(crc32, encoded_keys)):
            shard %= shards
            bucket = groups.get(shard)
            if bucket is None:
                groups[shard] = [position]
            else:
                bucket.append(position)
        return groups

    @staticmethod
    def tag(namespace: str, shard: int | str) -> bytes:
        return _namespace_hash(namespace) + b"." + str(shard).encode("ascii")

    def shard_names(self, namespace: str) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """The tag and the prefix of every shard of ``namespace``, by shard number."""
        return _shard_names(namespace, self.shards)

    def shard_prefix(self, namespace: str, shard: int) -> bytes:
        """The index SET's name, and the prefix of every value key of the shard."""
        return _shard_names(namespace, self.shards)[1][shard]

    def chunk_table(self, namespace: str, shard: int) -> bytes:
        return self.shard_prefix(namespace, shard) + CHUNK_TABLE_SUFFIX

    @staticmethod
    def marker(namespace: str) -> bytes:
        return PREFIX + Layout.tag(namespace, "meta") + b"}:" + namespace.encode("utf-8")

    @staticmethod
    def tag_of(redis_key: bytes) -> bytes:
        """The hash tag of one of our Redis keys (for rebalancing)."""
        return redis_key[len(PREFIX):redis_key.index(b"}")]


@lru_cache(maxsize=1 << 16)
def _score(node_name: str, tag: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(node_name.encode() + b"\0" + tag, digest_size=8).digest(), "big")


def owner(nodes: Sequence[Node], tag: bytes) -> int:
    """Index of the node that owns ``tag`` by rendezvous (highest random weight) hashing."""
    best, best_score = 0, -1
    for index, node in enumerate(nodes):
        score = _score(node.name, tag)
        if score > best_score:
            best, best_score = index, score
    return best
