"""A zarr v3 store over any mummi_io backend: ``zarr.open_array(store=MummiStore(io, namespace))``.

The store's root is a namespace; zarr's keys (``zarr.json``,
``temperature/c/0/1``) are mummi_io's hierarchical keys in it, so an array
written through the store is an ordinary set of keys (``mummi-io ls`` lists
them, ``sync`` copies them). Every call goes through the facade:

- reads of several chunks are one ``load_files`` batch, and byte ranges one
  ``load_ranges`` batch (a ``pread`` on ``simple``/``taridx``, a ``GETRANGE``
  on ``redis``);
- writes of several chunks (``_set_many``) are one ``save_files`` batch, so
  on ``taridx`` one append;
- blocking I/O runs in a worker thread (``asyncio.to_thread``), so zarr's
  event loop keeps other requests moving; zarr's synchronous paths call
  ``get_sync``/``set_sync``/``delete_sync``, the same code without a thread.

A read-only store (``read_only=True``, or :meth:`with_read_only`) refuses
writes and deletes with zarr's own ``ValueError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from ..core.errors import InvalidArgumentError
from ..core.keys import glob_literal
from ..registry import IO



def _span(byte_range: ByteRequest | None) -> tuple[int, int | None]:
    """A zarr byte request as ``(start, stop)`` of a Python slice (``IO.load_ranges``)."""
    if byte_range is None:
        return 0, None
    if isinstance(byte_range, RangeByteRequest):
        return byte_range.start, byte_range.end
    if isinstance(byte_range, OffsetByteRequest):
        return byte_range.offset, None
    if isinstance(byte_range, SuffixByteRequest):
        # value[-0:] would be the whole value: a suffix of 0 bytes starts past the end instead
        return (-byte_range.suffix, None) if byte_range.suffix else (2**63 - 1, None)
    raise TypeError(f"Unexpected byte_range, got {byte_range!r}: give a zarr RangeByteRequest, "
                    "OffsetByteRequest or SuffixByteRequest")


class MummiStore(Store):
    """A zarr v3 store whose root is ``namespace`` of ``io`` (any backend).

    Parameters
    ----------
    io:
        An open :class:`mummi_io.IO` (``mummi_io.get_io("taridx")``...). The
        store pickles with it (a worker process reconnects).
    namespace:
        The namespace that holds the store's keys.
    read_only:
        Refuse writes and deletes.
    """

    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True

    def __init__(self, io: IO, namespace: str, *, read_only: bool = False) -> None:
        if not isinstance(io, IO):
            raise InvalidArgumentError(f"MummiStore needs a mummi_io IO (mummi_io.get_io(...)), not {type(io).__name__}")
        super().__init__(read_only=read_only)
        self.io = io
        self.namespace = io.normalize_namespace(namespace)

    def with_read_only(self, read_only: bool = False) -> MummiStore:
        # docstring inherited
        return type(self)(self.io, self.namespace, read_only=read_only)

    def __str__(self) -> str:
        return f"mummi://{self.io.get_type()}/{self.namespace}"

    def __repr__(self) -> str:
        return f"MummiStore({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        """Whether both stores are one storage (``IO.same_namespace``), in the same mode.

        A file namespace that does not exist yet has no identity: then its
        normalized path (absolute) on the same kind of backend decides.
        """
        if not isinstance(other, MummiStore) or self.read_only != other.read_only:
            return False
        if self.io.same_namespace(self.namespace, other.io, other.namespace):
            return True
        kind = self.io.get_type()
        return kind in ("simple", "taridx") and kind == other.io.get_type() and self.namespace == other.namespace

    __hash__ = None  # type: ignore[assignment]  # equality follows the storage, which can change

    # ------------------------------------------------- the blocking calls, once
    def _read(self, prototype: BufferPrototype, requests: list[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        """One batch: whole values through ``load_files``, else slices through ``load_ranges``."""
        if not requests:
            return []
        keys = [key for key, _ in requests]
        spans = [_span(byte_range) for _, byte_range in requests]
        if all(span == (0, None) for span in spans):
            values = self.io.load_files(self.namespace, keys, missing=None)
        else:
            values = self.io.load_ranges(self.namespace, keys, spans)
        return [None if value is None else prototype.buffer.from_bytes(value) for value in values]

    def _write(self, items: list[tuple[str, Buffer]]) -> None:
        """One ``save_files`` batch (one append on taridx)."""
        self._check_writable()
        for _, value in items:
            if not isinstance(value, Buffer):
                raise TypeError(f"MummiStore.set(): value must be a zarr Buffer, not {type(value).__name__}")
        if items:
            self.io.save_files(self.namespace, [key for key, _ in items],
                               [value.as_numpy_array().data for _, value in items])

    def _delete(self, keys: list[str]) -> None:
        """One ``remove_files`` batch; a missing key is not an error."""
        self._check_writable()
        if keys:
            self.io.remove_files(self.namespace, keys)

    def get_sync(
        self, key: str, *, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """:meth:`get` without the event loop (zarr's synchronous path)."""
        self._is_open = True
        return self._read(prototype or default_buffer_prototype(), [(key, byte_range)])[0]

    def set_sync(self, key: str, value: Buffer) -> None:
        """:meth:`set` without the event loop."""
        self._write([(key, value)])
        self._is_open = True

    def delete_sync(self, key: str) -> None:
        """:meth:`delete` without the event loop."""
        self._delete([key])

    # ------------------------------------------------------------------ reads
    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        # docstring inherited
        if not self._is_open:
            await self._open()
        found = await asyncio.to_thread(self._read, prototype or default_buffer_prototype(), [(key, byte_range)])
        return found[0]

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        # docstring inherited: one batch for all of them
        return await asyncio.to_thread(self._read, prototype, list(key_ranges))

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]],
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        # docstring inherited: one batch instead of one call per key
        listed = list(requests)
        if not listed:
            return
        values = await self.get_partial_values(listed[0][1], [(key, byte_range) for key, _, byte_range in listed])
        for (key, _, _), value in zip(listed, values):
            yield key, value

    async def exists(self, key: str) -> bool:
        # docstring inherited
        return bool(await asyncio.to_thread(self.io.file_exists, self.namespace, key))

    # ----------------------------------------------------------------- writes
    async def set(self, key: str, value: Buffer) -> None:
        # docstring inherited
        await self._set_many([(key, value)])

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        # docstring inherited: one save_files batch (one append on taridx)
        self._check_writable()
        await self._ensure_open()
        await asyncio.to_thread(self._write, list(values))

    async def delete(self, key: str) -> None:
        # docstring inherited: a missing key is not an error
        await asyncio.to_thread(self._delete, [key])

    async def delete_dir(self, prefix: str) -> None:
        # docstring inherited: one remove_files batch
        self._check_writable()
        prefix = prefix.rstrip("/")
        await asyncio.to_thread(self._delete, [key async for key in self.list_prefix(prefix + "/" if prefix else "")])

    # ---------------------------------------------------------------- listing
    async def _keys_below(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self.io.list_keys, self.namespace, glob_literal(prefix) + "*")

    async def list(self) -> AsyncIterator[str]:
        # docstring inherited
        for key in await self._keys_below(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        for key in await self._keys_below(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited: the names directly below ``prefix``, keys and "directories" alike
        prefix = prefix.rstrip("/")
        below = prefix + "/" if prefix else ""
        names = {key[len(below):].split("/", 1)[0] for key in await self._keys_below(below)}
        for name in sorted(names):
            yield name
