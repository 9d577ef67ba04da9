"""Coordination on Redis: signals, work queues, counters and barriers as keys, waits as Pub/Sub.

Everything of one place lives under one hash tag, so on independent nodes it
is on one node (rendezvous placement, as data shards) and on a cluster in
one slot, and each operation is one Lua script, atomic on the server::

    miocoord:{mc.<sha1(place)>}\\0sig                       HASH   signal -> 1
    miocoord:{...}\\0q\\0<name>\\0pending                   LIST   item ids, oldest first
    miocoord:{...}\\0q\\0<name>\\0items                     HASH   id -> item
    miocoord:{...}\\0q\\0<name>\\0leases                    ZSET   id -> lease expiry (server ms)
    miocoord:{...}\\0q\\0<name>\\0owners                    HASH   id -> lease token
    miocoord:{...}\\0c\\0<name>                             STRING counter
    miocoord:{...}\\0b\\0<name>                             SET    barrier members

Every change also PUBLISHes on a channel named like the topic's key; a
waiter SUBSCRIBEs *before* checking, then blocks in the server's push (no
client polling, no file system). Lease clocks are the server's ``TIME``, so
client clocks do not matter. Coordination keys are not data keys: listing,
sync and ``rebalance`` leave them alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis

from ...core.coordinator import Claim, Coordinator, Notice
from ...core.errors import InvalidArgumentError
from ...core.keys import as_name_list, validate_name
from .transport import TRANSIENT_ERRORS, TransportSource, with_retries


LOGGER = logging.getLogger(__name__)

_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

#: KEYS: signal hash. ARGV: channel, signals... The message names the signals (NUL-separated).
SEND = """
local sent = {}
for i = 2, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], '1')
  sent[#sent + 1] = ARGV[i]
end
redis.call('PUBLISH', ARGV[1], table.concat(sent, '\\0'))
return #sent
"""

#: KEYS: pending, items, seq. ARGV: channel, items...
PUT = """
for i = 2, #ARGV do
  local id = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[2], id, ARGV[i])
  redis.call('RPUSH', KEYS[1], id)
end
redis.call('PUBLISH', ARGV[1], #ARGV - 1)
return #ARGV - 1
"""

#: KEYS: pending, items, leases, owners. ARGV: channel, lease ms, token.
#: Returns {1, id, item}, or {0, ms until the next lease expires (-1: none)}.
CLAIM = _NOW_MS + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('LPUSH', KEYS[1], id)
end
if #expired > 1 then redis.call('PUBLISH', ARGV[1], #expired) end
local id = redis.call('LPOP', KEYS[1])
if not id then
  local nearest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if nearest[2] then return {0, tonumber(nearest[2]) - now} end
  return {0, -1}
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), id)
redis.call('HSET', KEYS[4], id, ARGV[3])
return {1, id, redis.call('HGET', KEYS[2], id)}
"""

#: KEYS: pending, items, leases, owners. ARGV: channel, id, token, action (ack|release|extend), lease ms.
FINISH = _NOW_MS + """
if redis.call('HGET', KEYS[4], ARGV[2]) ~= ARGV[3] then return 0 end
if ARGV[4] == 'extend' then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[2])
  return 1
end
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
if ARGV[4] == 'ack' then
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('LPUSH', KEYS[1], ARGV[2])
  redis.call('PUBLISH', ARGV[1], 1)
end
return 1
"""

#: KEYS: counter. ARGV: channel, amount.
ADD = """
local value = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[1], value)
return value
"""

#: KEYS: barrier set. ARGV: channel, member.
ARRIVE = """
redis.call('SADD', KEYS[1], ARGV[2])
local count = redis.call('SCARD', KEYS[1])
redis.call('PUBLISH', ARGV[1], count)
return count
"""

_QUEUE_PARTS = (b"pending", b"items", b"leases", b"owners", b"seq")


class _PubSubNotice(Notice):
    """A subscription to one channel; ``wait`` blocks in the server's push."""

    def __init__(self, coordinator: RedisCoordinator, tag: bytes, channel: bytes, keys: Sequence[str] | None) -> None:
        self.coordinator = coordinator
        self.keys = None if keys is None else frozenset(key.encode("utf-8") for key in keys)
        self.tag = tag
        self.channel = channel
        self.pubsub: Any = None
        self._open()

    def _open(self) -> None:
        transport = self.coordinator.source.transport

        def subscribe() -> Any:
            pubsub = transport.pubsub_for(self.tag)
            try:
                pubsub.subscribe(self.channel)
                # The confirmation says the server now forwards every publish; only then may the caller check.
                end = time.monotonic() + 10.0
                while time.monotonic() < end:
                    message = pubsub.get_message(timeout=end - time.monotonic())
                    if message is not None and message["type"] in ("subscribe", b"subscribe"):
                        return pubsub
                raise redis.exceptions.TimeoutError("no confirmation of SUBSCRIBE within 10 s")
            except BaseException:
                pubsub.close()
                raise

        self.pubsub = with_retries(f"subscribe on {self.coordinator.where}", transport.retry_timeout,
                                   subscribe, getattr(transport, "_refresh_topology", None))

    def _relevant(self, message: dict[str, Any] | None) -> bool:
        if message is None or message.get("type") != "message":
            return False
        data = message.get("data")
        return self.keys is None or not isinstance(data, bytes) or not self.keys.isdisjoint(data.split(b"\0"))

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        try:
            while True:  # until a publish that matters, or the time is up
                message = self.pubsub.get_message(timeout=max(0.0, end - time.monotonic()))
                if message is None or self._relevant(message):
                    break
            while message is not None:  # coalesce a burst of publishes into one re-check
                message = self.pubsub.get_message(timeout=0)
        except TRANSIENT_ERRORS as exc:
            LOGGER.warning("lost the subscription on %s (%s); subscribing again", self.coordinator.where, exc)
            self.close()
            self._open()  # the caller re-checks after this return, so nothing published meanwhile is missed

    def close(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(Exception):  # a broken connection is being thrown away
                self.pubsub.close()
            self.pubsub = None


class RedisCoordinator(Coordinator):
    """Coordination primitives on a Redis deployment (see the module docstring).

    It is given the transport's source (the redis backend), not the backend's
    operations: the coordinator's keys and channels are its own.
    """

    def __init__(self, source: TransportSource) -> None:
        self.source = source
        self.where = source.describe()

    def __repr__(self) -> str:
        return f"RedisCoordinator({self.where!r})"

    # ------------------------------------------------------------ naming
    @staticmethod
    def _tag(place: str) -> bytes:
        return b"{mc." + hashlib.sha1(place.encode("utf-8")).hexdigest()[:16].encode() + b"}"

    def _key(self, place: str, topic: str) -> tuple[bytes, bytes]:
        """The hash tag of ``place`` and the key (also the channel) of ``topic``."""
        tag = self._tag(place)
        base = b"miocoord:" + tag
        if topic == "signals":
            return tag, base + b"\0sig"
        kind, _, name = topic.partition(":")
        letter = {"queue": b"q", "counter": b"c", "barrier": b"b"}.get(kind)
        if letter is None or not name:
            raise InvalidArgumentError(f"unknown coordination topic {topic!r}")
        return tag, base + b"\0" + letter + b"\0" + validate_name(name).encode("utf-8")

    def _queue_keys(self, place: str, queue: str) -> tuple[bytes, bytes, list[bytes]]:
        tag, channel = self._key(place, "queue:" + queue)
        return tag, channel, [channel + b"\0" + part for part in _QUEUE_PARTS]

    def _run(self, tag: bytes, *command: Any) -> Any:
        """Run a command that changes state (a replica must confirm it under ``replica_acks``)."""
        return self.source.transport.execute([(tag, command)], write=True)[0]

    def _read(self, tag: bytes, *command: Any) -> Any:
        return self.source.transport.execute([(tag, command)])[0]

    # ------------------------------------------------------------- signals
    def send(self, place: str, keys: Sequence[str]) -> None:
        keys, _ = as_name_list(keys, "signal")  # the facade checked already; direct callers are checked here
        tag, key = self._key(place, "signals")
        self._run(tag, "EVAL", SEND, 1, key, key, *keys)
        LOGGER.info("sent %d signal(s) at %s on %s", len(keys), place, self.where)

    def present(self, place: str, keys: Sequence[str]) -> list[bool]:
        keys, _ = as_name_list(keys, "signal")  # the facade checked already; direct callers are checked here
        tag, key = self._key(place, "signals")
        return [value is not None for value in self._read(tag, "HMGET", key, *keys)]

    def clear(self, place: str, keys: Sequence[str]) -> None:
        keys, _ = as_name_list(keys, "signal")  # the facade checked already; direct callers are checked here
        tag, key = self._key(place, "signals")
        self._run(tag, "HDEL", key, *keys)

    # -------------------------------------------------------------- queues
    def put(self, place: str, queue: str, items: Sequence[str]) -> None:
        tag, channel, keys = self._queue_keys(place, queue)
        self._run(tag, "EVAL", PUT, 3, keys[0], keys[1], keys[4], channel, *items)

    def claim(self, place: str, queue: str, lease: float) -> tuple[Claim | None, float | None]:
        tag, channel, keys = self._queue_keys(place, queue)
        token = secrets.token_hex(8)
        reply = self._run(tag, "EVAL", CLAIM, 4, *keys[:4], channel, round(lease * 1000), token)
        if reply[0] == 1:
            item_id = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            return Claim(item_id, token, reply[2].decode("utf-8")), None
        return None, (None if reply[1] < 0 else reply[1] / 1000)

    def _finish(self, place: str, queue: str, claim: Claim, action: str, lease: float = 0.0) -> bool:
        tag, channel, keys = self._queue_keys(place, queue)
        return self._run(tag, "EVAL", FINISH, 4, *keys[:4], channel, claim.item_id, claim.token, action,
                         round(lease * 1000)) == 1

    def ack(self, place: str, queue: str, claim: Claim) -> bool:
        return self._finish(place, queue, claim, "ack")

    def release(self, place: str, queue: str, claim: Claim) -> bool:
        return self._finish(place, queue, claim, "release")

    def extend(self, place: str, queue: str, claim: Claim, lease: float) -> bool:
        return self._finish(place, queue, claim, "extend", lease)

    def queue_sizes(self, place: str, queue: str) -> tuple[int, int]:
        tag, _, keys = self._queue_keys(place, queue)
        pending, leased = self.source.transport.execute([(tag, ("LLEN", keys[0])), (tag, ("ZCARD", keys[2]))])
        return int(pending), int(leased)

    # ------------------------------------------------- counters and barriers
    def add(self, place: str, counter: str, amount: int) -> int:
        tag, key = self._key(place, "counter:" + counter)
        return int(self._run(tag, "EVAL", ADD, 1, key, key, amount))

    def value(self, place: str, counter: str) -> int:
        tag, key = self._key(place, "counter:" + counter)
        return int(self._read(tag, "GET", key) or 0)

    def arrive(self, place: str, barrier: str, member: str) -> int:
        tag, key = self._key(place, "barrier:" + barrier)
        return int(self._run(tag, "EVAL", ARRIVE, 1, key, key, member))

    def arrived(self, place: str, barrier: str) -> int:
        tag, key = self._key(place, "barrier:" + barrier)
        return int(self._read(tag, "SCARD", key))

    def delete(self, place: str, topic: str) -> None:
        if topic == "signals":
            raise InvalidArgumentError("signals are lowered with clear_signal, not deleted as a topic")
        if topic.startswith("queue:"):
            tag, _, keys = self._queue_keys(place, topic.partition(":")[2])
        else:
            tag, key = self._key(place, topic)
            keys = [key]
        self._run(tag, "DEL", *keys)  # one slot: the keys share the place's hash tag

    # -------------------------------------------------------------- waiting
    @contextlib.contextmanager
    def notices(self, place: str, topic: str, keys: Sequence[str] | None = None) -> Iterator[Notice]:
        tag, channel = self._key(place, topic)
        notice = _PubSubNotice(self, tag, channel, keys)
        try:
            yield notice
        finally:
            notice.close()
