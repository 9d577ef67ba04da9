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

import logging
import re
import zlib
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import redis

from ...core.contract import Backend, Buffer, Enumerable
from ...core.errors import InvalidArgumentError
from ...core.keys import key_matcher
from .layout import PREFIX as LAYOUT_PREFIX
from .nodes import Node, mummi_server_list, read_registry
from .transport import HoldsTransport, IndependentNodes

LOGGER = logging.getLogger(__name__)

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
    capabilities = (Enumerable,)

    def __init__(self, *, servers: str | Sequence[str] | None = None, password: str | None = None,
                 retry_timeout: float = 10.0, socket_timeout: float = 30.0) -> None:
        self.nodes = self._resolve(servers)
        self._options = {"password": password, "socket_timeout": socket_timeout}
        self.retry_timeout = retry_timeout
        self._transport: IndependentNodes | None = None
        self.unusable: list[str] = []  # MuMMI names met while listing that no key or namespace can hold
        self._reported: set[bytes] = set()

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

    def namespace_identity(self, namespace: str) -> Hashable | None:
        # docstring inherited: the servers (their run_ids: any spelling of an address) and the name
        return (self.kind, self.transport.server_ids(), namespace)

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
        # docstring inherited: the new value is SET on its home server before any other copy is deleted,
        # so a failure in between leaves the old value readable, never no value
        latest = {self._name(namespace, key): bytes(value) for key, value in items}
        homes: dict[int, list[tuple[Any, ...]]] = {}
        others: dict[int, list[tuple[Any, ...]]] = {}
        for name, value in latest.items():
            home = self._home(name)
            homes.setdefault(home, []).append(("SET", name, value))
            for index in range(len(self.nodes)):
                if index != home:
                    others.setdefault(index, []).append(("DEL", name))
        for step in (homes, others):
            for index, commands in step.items():
                self._pipeline(self.transport.clients[index], commands)

    def _pipeline(self, client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        from .transport import run_on_connection, with_retries

        return with_retries("server", self.retry_timeout,
                            lambda: run_on_connection(client, list(commands), 0, 0)[0]) if commands else []

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

    def _keys_of(self, namespace: str) -> Iterator[str]:
        """The keys of ``namespace`` on every server, once each; names no reader could use are logged and left.

        Left: names that are not UTF-8, hold NUL, or hold ``::`` again after the
        namespace (``a::b::c`` could be key ``b::c`` of ``a`` or ``c`` of ``a::b``).
        """
        prefix = namespace.encode("utf-8") + _SEPARATOR
        seen = set()
        for name in self._scan(_escape(prefix) + b"*"):
            rest = name[len(prefix):]
            if rest in seen:
                continue
            seen.add(rest)
            why = _unusable(rest)
            if why:
                self._leave(name, f"the key {why}")
                continue
            yield rest.decode("utf-8")

    def _leave(self, name: bytes, why: str) -> None:
        """Note (once) a MuMMI name that mummi_io cannot hold, for the caller's report."""
        if name not in self._reported:
            self._reported.add(name)
            self.unusable.append(f"{name!r}: {why}")
            LOGGER.warning("MuMMI key %r is left alone: %s", name, why)

    def list_matching(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited: SCAN of every server, never KEYS
        matches = key_matcher(pattern)
        return (key for key in self._keys_of(namespace) if matches(key))

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        return next(self._scan(_escape(namespace.encode("utf-8") + _SEPARATOR) + b"*"), None) is not None

    def namespaces(self) -> list[str]:
        """Every namespace holding keys on the servers (a SCAN of each), sorted.

        mummi_io's own keys (``mio:{...}``) and names that are not UTF-8 or hold
        NUL are not MuMMI's; they are left out (the latter logged and listed in
        ``unusable``).
        """
        found = set()
        for name in self._scan(b"*::*"):
            if name.startswith(LAYOUT_PREFIX):  # mummi_io's own layout on a shared server
                continue
            namespace, _, _ = name.partition(_SEPARATOR)
            why = _unusable(namespace)
            if why:
                self._leave(name, f"the namespace {why}")
                continue
            found.add(namespace.decode("utf-8"))
        return sorted(found)


def _unusable(part: bytes) -> str:
    """Why a part of a MuMMI name cannot be used as a namespace or key ("" if it can)."""
    if b"\0" in part:
        return "holds a NUL byte"
    if _SEPARATOR in part or part.startswith(b":"):
        return "holds '::' again (or ':::'), so where the namespace ends is ambiguous"
    try:
        part.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8"
    return ""
