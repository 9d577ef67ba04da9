"""MuMMI's own Redis key layout, as a backend: ``get_io("mummi-redis")``.

A MuMMI deployment stores the value of ``key`` in namespace ``ns`` as the
Redis string ``ns::key`` on one of its servers (the one the writer had
bound), listed in ``$MUMMI_ROOT/redis/all_servers.txt``; readers look on
every server. This backend reads and writes that layout, so a running
campaign's data can be copied into mummi_io's layout (``mummi-io
import-mummi-redis``, or ``mummi-io cp -b mummi-redis``) and back
(``--to-backend mummi-redis``), verified and resumable like any ``sync``.

It is a bridge, not a place to keep data: no index (listing SCANs every
server, never ``KEYS``), no atomic batches, no chunking of large values. A
write puts a key on one server, chosen by a stable hash, and removes copies
of it from the others, so a MuMMI reader (which takes the first server that
has the key) finds the new value.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import redis

from ...abc import Backend, Buffer
from ...errors import InvalidArgumentError
from ...keys import key_matcher
from .nodes import Node, mummi_server_list, read_registry
from .transport import HoldsTransport, IndependentNodes

_SEPARATOR = b"::"
_SCAN_COUNT = 1000
_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def _escape(text: bytes) -> bytes:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return _GLOB_SPECIAL.sub(rb"\\\1", text)


class MummiRedisBackend(HoldsTransport, Backend):
    """MuMMI's ``namespace::key`` strings on a list of Redis servers.

    Parameters
    ----------
    servers:
        MuMMI's server list file (``host port`` lines), or ``"host:port,..."``;
        default ``$MUMMI_ROOT/redis/all_servers.txt``.
    password:
        For servers that need one (MuMMI's ran without).
    retry_timeout:
        Seconds to keep retrying a server that does not answer.
    """

    kind = "mummi-redis"

    def __init__(self, *, servers: str | Sequence[str] | None = None, password: str | None = None,
                 retry_timeout: float = 10.0, socket_timeout: float = 30.0) -> None:
        self.nodes = self._resolve(servers)
        self._options = {"password": password, "socket_timeout": socket_timeout}
        self.retry_timeout = retry_timeout
        self._transport: IndependentNodes | None = None

    @staticmethod
    def _resolve(servers: str | Sequence[str] | None) -> list[Node]:
        if servers is None:
            servers = mummi_server_list()
            if servers is None:
                raise InvalidArgumentError("mummi-redis needs servers= (MuMMI's all_servers.txt) or $MUMMI_ROOT")
        if isinstance(servers, str) and ":" not in servers:
            found, _ = read_registry(servers)  # MuMMI's all_servers.txt has the registry's format
            if not found:
                raise InvalidArgumentError(f"the server list {servers!r} names no server")
            return found
        specs = servers.split(",") if isinstance(servers, str) else list(servers)
        return [Node.parse(spec.strip()) for spec in specs if str(spec).strip()]

    @property
    def transport(self) -> IndependentNodes:
        if self._transport is None:
            self._transport = IndependentNodes(self.nodes, self.retry_timeout, self._options)
        return self._transport

    def describe(self) -> str:
        return f"mummi-redis ({len(self.nodes)} server(s), MuMMI's layout)"

    # ------------------------------------------------------------- helpers
    @staticmethod
    def _name(namespace: str, key: str) -> bytes:
        return namespace.encode("utf-8") + _SEPARATOR + key.encode("utf-8")

    def _home(self, name: bytes) -> int:
        """The server a key is written to: a stable hash, the same from every client."""
        return zlib.crc32(name) % len(self.nodes)

    def _on_each(self, commands: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
        """Run the same commands on every server; one list of results per server, in server order."""
        def run(client: redis.Redis, _: Node) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return pipe.execute()

        return self.transport.on_each_node(run)

    def _scan(self, match: bytes) -> Iterator[bytes]:
        for found in self.transport.on_each_node(
            lambda client, _: list(client.scan_iter(match=match, count=_SCAN_COUNT))
        ):
            yield from found

    # ---------------------------------------------------------- primitives
    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        # docstring inherited
        latest = {self._name(namespace, key): bytes(value) for key, value in items}
        per_node: dict[int, list[tuple[Any, ...]]] = {index: [] for index in range(len(self.nodes))}
        for name, value in latest.items():
            home = self._home(name)
            for index, commands in per_node.items():
                commands.append(("SET", name, value) if index == home else ("DEL", name))
        for index, commands in per_node.items():
            client = self.transport.clients[index]
            self._pipeline(client, commands)

    def _pipeline(self, client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        from .transport import run_on_connection, with_retries

        return with_retries("server", self.retry_timeout,
                            lambda: run_on_connection(client, list(commands), False, 0, 0)[0]) if commands else []

    def read_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited: the first server (in list order) that has the key, as MuMMI read
        if not keys:
            return []
        names = [self._name(namespace, key) for key in keys]
        values: list[bytes | None] = [None] * len(keys)
        for replies in self._on_each([("MGET", *names)]):
            for position, value in enumerate(replies[0]):
                if values[position] is None and value is not None:
                    values[position] = value
        return values

    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        # docstring inherited
        if keys:
            self._on_each([("DEL", *[self._name(namespace, key) for key in keys])])

    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        return [value is not None for value in self.read_many(namespace, keys)]

    def list(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited: SCAN of every server, never KEYS
        prefix = namespace.encode("utf-8") + _SEPARATOR
        matches = key_matcher(pattern)
        seen = set()
        for name in self._scan(_escape(prefix) + b"*"):
            key = name[len(prefix):].decode("utf-8", "surrogateescape")
            if key not in seen and matches(key):
                seen.add(key)
                yield key

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        return next(self._scan(_escape(namespace.encode("utf-8") + _SEPARATOR) + b"*"), None) is not None

    def namespaces(self) -> list[str]:
        """Every namespace holding keys on the servers (a SCAN of each), sorted."""
        found = set()
        for name in self._scan(b"*::*"):
            namespace, separator, _ = name.partition(_SEPARATOR)
            if separator:
                found.add(namespace.decode("utf-8", "surrogateescape"))
        return sorted(found)
