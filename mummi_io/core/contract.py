"""The backend contract: six batch primitives on bytes, optional overrides, declared capabilities.

A backend is the only thing that differs between ``simple``, ``taridx`` and
``redis``; everything a user calls (single-or-list handling, validation, npz,
checkpoints, signals, logging) is written once in :class:`mummi_io.facade.Facade`.

What a new backend implements
-----------------------------
- **Required, six methods:** ``write_many``, ``read_many``, ``delete_many``,
  ``exists_many``, ``list_matching``, ``namespace_exists``; and the class
  attribute ``kind``. That is a working backend: the contract suite
  (:class:`mummi_io.testing.BackendContract`) passes on it.
- **Optional overrides**, each with a default built on the six: for speed
  (``move_many``, ``stat_many``, ``read_buffers``, ``read_ranges_many``), for
  where namespaces live (``normalize_namespace``, ``child_namespace``), and for
  operations (``check_environment``, ``storage_report``, ``coordinator``,
  ``close``, ``describe``). Flags say what the storage can hold
  (``accepts_parts``, ``keys_can_be_prefixes``, ``stores_checksums``).
- **Capabilities**, declared in ``capabilities`` and asked for with
  :meth:`Backend.capability` (never by ``isinstance`` outside the backend):
  :class:`Maintainable` (reindex, compact), :class:`Locating` (byte ranges of
  values in one file), :class:`Sharded` (which server holds a key),
  :class:`Enumerable` (lists its namespaces).

The facade has already validated every key, namespace and value when a
primitive is called, so primitives must not validate again. Keys are
relative paths of ``/``-separated components (see :mod:`mummi_io.core.keys`);
values are bytes-like. A new backend is one module plus a subclass of
:class:`mummi_io.testing.BackendContract` in the tests.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, cast, runtime_checkable

from .coordinator import Coordinator
from .errors import KeyNotFoundError

#: A bytes-like value, as handed to :meth:`Backend.write_many`.
Buffer = bytes | bytearray | memoryview


class Parts(tuple):
    """A value given as consecutive pieces, so a large value is written without joining it first.

    Only passed to backends whose ``accepts_parts`` is true; others get the
    joined bytes (see :func:`joined`).
    """

    @property
    def nbytes(self) -> int:
        return sum(memoryview(part).nbytes for part in self)


def slice_span(size: int, start: int, stop: int | None) -> tuple[int, int]:
    """``(offset, length)`` of ``value[start:stop]`` in a value of ``size`` bytes (Python's clamping)."""
    first, end, _ = slice(start, stop).indices(size)
    return first, max(0, end - first)


def joined(value: Buffer | Parts) -> Buffer:
    """``value`` as one bytes-like object."""
    return b"".join(value) if isinstance(value, Parts) else value


@dataclass
class StorageReport:
    """A backend's report on a namespace's storage (see :meth:`Backend.storage_report`).

    ``damage``: problems, one line each (damaged ranges, values the storage
    no longer holds); ``notes``: facts worth knowing that lose nothing (an
    interrupted write the next writer clears, members that are not values);
    ``unchecked``: how many values have no checksum stored when written, so
    a read can only show they are readable.
    """

    damage: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unchecked: int = 0


@runtime_checkable
class Maintainable(Protocol):
    """Storage that keeps an index beside its values, and can rebuild it and reclaim space (``taridx``)."""

    def reindex(self, namespace: str, accept_loss: bool = False) -> Any:
        """Rebuild the index of ``namespace`` from the values' storage; return a report with ``lines()``."""

    def compact(self, namespace: str, accept_loss: bool = False) -> tuple[int, int]:
        """Rewrite ``namespace`` with only its live values; return (bytes before, bytes after).

        Refuses (``IntegrityError``) to drop damage it cannot copy, unless ``accept_loss``.
        """


@runtime_checkable
class Locating(Protocol):
    """Values at known byte ranges of one file (``taridx``): MuMMI's index arrays read them."""

    def index_entries(self, namespace: str) -> list[tuple[str, int, int]]:
        """``(key, offset, size)`` of every value of ``namespace``, sorted by key."""


@runtime_checkable
class Sharded(Protocol):
    """Values spread over servers (``redis``): MuMMI's per-server queries read them."""

    def keys_by_node(self, namespace: str, keys: Sequence[str]) -> dict[str, list[str]]:
        """``{server: [keys]}``: where each of ``keys`` lives."""


@runtime_checkable
class Enumerable(Protocol):
    """Storage that can list its namespaces (MuMMI's Redis layout, which ``import-mummi-redis`` walks)."""

    #: Stored names found while listing that are not valid namespaces or keys, each with the reason.
    unusable: list[str]

    def namespaces(self) -> list[str]:
        """Every namespace that holds a key, sorted."""


#: A capability protocol, for :meth:`Backend.capability`.
Capability = TypeVar("Capability")

#: Every capability a backend may declare.
CAPABILITIES: tuple[type, ...] = (Maintainable, Locating, Sharded, Enumerable)


class Backend(ABC):
    """Abstract storage backend working on batches of keys in one namespace."""

    #: The name ``get_io`` knows this backend by (``"simple"``, ...).
    kind: ClassVar[str]

    #: Whether ``write_many`` takes :class:`Parts` values (written without a join).
    accepts_parts: ClassVar[bool] = False

    #: Whether a key may be a value and the prefix of other keys at once
    #: (``a`` and ``a/b``). A directory of files cannot (a file is not a
    #: directory); a tar or Redis can. Where it cannot, such a save raises
    #: ``InvalidKeyError`` before anything is written.
    keys_can_be_prefixes: ClassVar[bool] = True

    #: Whether reads check each value against a checksum stored when it was
    #: written (so ``verify`` can find corruption, not just unreadable keys).
    stores_checksums: ClassVar[bool] = False

    #: The optional capabilities this backend provides (:class:`Maintainable`,
    #: :class:`Locating`, :class:`Sharded`, :class:`Enumerable`); callers ask with :meth:`capability`.
    capabilities: ClassVar[tuple[type, ...]] = ()

    def capability(self, wanted: type[Capability]) -> Capability | None:
        """This backend as a ``wanted`` capability if it declares it, else ``None``."""
        return cast(Capability, self) if wanted in self.capabilities else None

    def normalize_namespace(self, namespace: str) -> str:
        """Return the canonical form of a (validated) namespace.

        The default keeps it as given; ``taridx`` appends ``.tar``.
        """
        return namespace

    def check_environment(self) -> bool:
        """Return ``True`` when the backend can work; raise with a fix otherwise.

        Raises
        ------
        BackendUnavailableError
            When a server or file the backend needs cannot be reached.
        """
        return True

    @abstractmethod
    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        """Store every ``(key, value)`` pair, each atomically; later pairs win.

        Raises
        ------
        StorageError, BackendUnavailableError
            When the storage refuses the write.
        """

    @abstractmethod
    def read_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        """Return the value of each key in order, ``None`` where a key is missing."""

    @abstractmethod
    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        """Delete each key; a missing key (or namespace) is silently skipped."""

    @abstractmethod
    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        """Return whether each key exists, in order."""

    @abstractmethod
    def list_matching(self, namespace: str, pattern: str) -> Iterable[str]:
        """Yield each key of ``namespace`` matching the glob ``pattern`` once, in any order.

        An absent namespace yields nothing. Use :func:`mummi_io.core.keys.key_matcher`
        for the glob semantics so every backend matches the same way.
        """

    @abstractmethod
    def namespace_exists(self, namespace: str) -> bool:
        """Return whether the namespace exists (holds or has held keys)."""

    def move_many(self, source: str, pairs: Sequence[tuple[str, str]], destination: str) -> None:
        """Rename ``source/old`` to ``destination/new`` for each pair.

        The default reads, writes, then deletes; backends override it with a
        native rename. Sources, destinations and their overlap have been
        checked by the facade.

        Note for implementers: the default is not atomic per key (a crash
        between write and delete leaves both copies) and costs a full read and
        write of every value.

        Raises
        ------
        KeyNotFoundError
            If a source key does not exist.
        """
        olds = [old for old, _ in pairs]
        values = self.read_many(source, olds)
        missing = [old for old, value in zip(olds, values) if value is None]
        if missing:
            raise KeyNotFoundError(source, missing)
        self.write_many(destination, [(new, value) for (_, new), value in zip(pairs, values) if value is not None])
        stale = [old for old, new in pairs if (source, old) != (destination, new)]
        self.delete_many(source, stale)

    def stat_many(self, namespace: str, keys: Sequence[str]) -> list[tuple[int, int] | None]:
        """Return ``(size, crc32)`` of each value, ``None`` where a key is missing.

        The default reads the values; a backend that stores checksums (taridx)
        answers from its index without reading data.
        """
        return [None if value is None else (len(value), zlib.crc32(value)) for value in self.read_many(namespace, keys)]

    def read_buffers(self, namespace: str, keys: Sequence[str], verify: bool = True) -> list[Buffer | None]:
        """Return each value as a (possibly writable) buffer, ``None`` where missing.

        For large values the caller wraps without copying (``save_object``'s
        arrays). ``verify=False`` lets a backend skip its own checksum when the
        caller verifies a stronger one. The default returns ``read_many``'s bytes.
        """
        return list(self.read_many(namespace, keys))

    def read_buffer_streamed(
        self, namespace: str, key: str, consume: Callable[[memoryview], object], verify: bool = True,
    ) -> Buffer | None:
        """Like :meth:`read_buffers` for one key, also handing consecutive pieces of the value to ``consume``.

        The pieces cover the value once, in order, each as soon as it is
        read: ``load_object`` hashes a large value while the rest of it is
        still being read. The default reads the whole value, then hands it
        over in one piece.
        """
        value = self.read_buffers(namespace, [key], verify)[0]
        if value is not None:
            consume(memoryview(value))
        return value

    def read_prefix_many(self, namespace: str, keys: Sequence[str], size: int) -> list[bytes | None]:
        """Return the first ``size`` bytes of each value (``None`` where missing): a range from 0."""
        return self.read_ranges_many(namespace, keys, [(0, size)] * len(keys))

    def read_ranges_many(
        self, namespace: str, keys: Sequence[str], ranges: Sequence[tuple[int, int | None]],
    ) -> list[bytes | None]:
        """Return ``value[start:stop]`` of each key, ``(start, stop)`` in Python slice terms (``None`` where missing).

        ``start`` may be negative (counted from the end, a suffix); ``stop``
        is ``None`` (to the end) or at least 0. The default reads whole
        values, verified as usual; backends that can read a slice in place
        (a ``pread``, a ``GETRANGE``) override it, and then a slice that is
        not the whole value is not checked against the value's checksum.
        """
        return [None if value is None else bytes(value[start:stop])
                for value, (start, stop) in zip(self.read_many(namespace, keys), ranges)]

    def storage_report(self, namespace: str) -> StorageReport:
        """What the namespace's storage itself shows, beyond its values (``mummi-io verify`` prints it).

        Read-only. The default has nothing to report.
        """
        return StorageReport()

    def child_namespace(self, namespace: str, name: str) -> str:
        """The namespace of group ``name`` inside ``namespace`` (see ``IO.group``)."""
        return f"{namespace.rstrip('/')}/{name}"

    def namespace_identity(self, namespace: str) -> Hashable | None:
        """What makes ``namespace`` one storage: equal for two spellings of it, also across ``IO`` objects.

        ``None`` when it does not exist. Moves and syncs compare it, so a key
        is never copied onto itself and then removed. The default is the
        class and the name; file backends return the device and inode (so
        ``run``, ``/abs/run`` and a link to it are one), redis its nodes.
        """
        return (type(self).__qualname__, namespace)

    def namespace_path(self, namespace: str) -> str | None:
        """Where ``namespace`` lives on the file system (links resolved), ``None`` when not in files.

        Moves and syncs refuse a namespace stored inside another one (a tar
        inside the directory being archived, ``run`` and ``run/sub``), where
        a key of one is a file of the other.
        """
        return None

    def coordinator(self) -> Coordinator | None:
        """Where jobs coordinate with ``get_io(..., coordination="backend")``; ``None``: in files.

        ``redis`` returns its own (signals, queues and counters as Redis keys).
        """
        return None

    def close(self) -> None:
        """Release connections and handles; the backend may be reopened lazily."""

    def describe(self) -> str:
        """A short human description for logs and error messages."""
        return self.kind
