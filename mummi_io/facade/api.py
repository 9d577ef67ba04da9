"""The facade: every method of the MuMMI I/O API, written once, over one backend.

Why one module of this size: it is the one class every user calls, one short
method per API call; keeping it whole shows the full API and its shared
validation at a glance.

``get_io(kind)`` returns an :class:`~mummi_io.IO`, this facade plus typed
objects (composed in :mod:`mummi_io.registry`). The facade
validates arguments before any I/O, turns a single key or a list of keys into
one batch call of the backend, and implements npz, checkpoints and signals on
top of the batch primitives, so every backend behaves the same.
"""

from __future__ import annotations

import bisect

import io
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, cast, overload

from ..coordination.api import Barrier, Counter, WorkQueue, wait_signals
from ..coordination.files import FileCoordinator
from ..core.contract import CAPABILITIES, Backend, Buffer, Capability, Maintainable, Parts, StorageReport, joined
from ..core.coordinator import Coordinator
from ..core.errors import InvalidArgumentError, KeyNotFoundError, UnreadableValueError, UnsupportedOperation
from ..core.keys import (
    RESERVED_PREFIX, as_key_list, as_name_list, could_match_a_key, pair_keys_values, validate_key, validate_namespace,
    validate_pattern,
)
from . import checkpoint
from .npz import read_npz, write_npz

LOGGER = logging.getLogger(__name__)


class _Raise:
    """Sentinel default of ``missing``: raise :class:`KeyNotFoundError` for missing keys."""

    def __repr__(self) -> str:
        return "RAISE"


#: Default of the ``missing`` argument: a missing key raises ``KeyNotFoundError``.
RAISE: Any = _Raise()


def _with_suffix(key: str, suffix: str) -> str:
    """``key`` with ``suffix`` appended unless it already ends with it (MuMMI's rule)."""
    return key if key.endswith(suffix) else key + suffix


#: How many normalized namespace names a facade remembers.
_NORMALIZED_KEPT = 4096


class Facade:
    """The MuMMI I/O API over one backend (``get_io`` returns it with typed objects added).

    It only knows the backend contract, never a backend. Methods that take ``keys`` accept a single key (and then return a single
    result) or a list of keys (and return a list in the same order). An
    ``IO`` can be pickled to hand it to worker processes, and used as a
    context manager that closes the backend.
    """

    def __init__(self, backend: Backend, coordination: str | Coordinator = "files") -> None:
        self.backend = backend
        self._normalized: dict[str, str] = {}
        if isinstance(coordination, Coordinator):
            self.coordinator = coordination
        elif coordination == "files":
            self.coordinator = FileCoordinator()
        elif coordination == "backend":
            self.coordinator = backend.coordinator() or FileCoordinator()
        else:
            raise InvalidArgumentError(
                f"coordination must be 'files', 'backend' or a Coordinator, not {coordination!r}"
            )

    def __repr__(self) -> str:
        return f"<mummi_io.IO {self.backend.describe()}>"

    def __enter__(self) -> Facade:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the backend's connections and open files."""
        self.backend.close()

    def normalize_namespace(self, namespace: str) -> str:
        """``namespace`` validated, as the backend names it (taridx: ``run`` is ``run.tar``).

        Normalizing is a function of the string alone, so the answers for
        ``str`` namespaces are remembered: a call such as ``file_exists``
        costs a few microseconds, and this was a fifth of them.
        """
        if namespace.__class__ is str:
            known = self._normalized.get(namespace)
            if known is not None:
                return known
        normalized = self.backend.normalize_namespace(validate_namespace(namespace))
        if namespace.__class__ is str:
            if len(self._normalized) >= _NORMALIZED_KEPT:
                self._normalized.clear()
            self._normalized[namespace] = normalized
        return normalized

    _namespace = normalize_namespace

    # ------------------------------------------------------------------ info
    def get_type(self) -> str:
        """Return the backend kind (``"simple"``, ``"taridx"``, ``"redis"``... see ``mummi_io.get_interfaces()``)."""
        return self.backend.kind

    def check_environment(self) -> bool:
        """Return ``True`` if the backend can work here.

        Raises
        ------
        BackendUnavailableError
            Naming what is missing (a server, a file) when it cannot.
        """
        return self.backend.check_environment()

    # ------------------------------------------------------- reserved keys
    # The layers above the facade (groups, packs) keep their own records in reserved keys
    # (RESERVED_PREFIX...): never listed, never a user key; these are the public way to them.
    @staticmethod
    def _reserved(name: str) -> str:
        if not isinstance(name, str) or not name.startswith(RESERVED_PREFIX) or "/" in name:
            raise InvalidArgumentError(f"a reserved name starts with {RESERVED_PREFIX!r} and has no '/': {name!r}")
        return name

    def load_reserved(self, namespace: str, name: str) -> bytes | None:
        """For layers built on the facade: the bytes of the reserved record ``name`` (``None`` when there is none)."""
        ns = self._namespace(namespace)
        value = self.backend.read_many(ns, [self._reserved(name)])[0]
        return None if value is None else bytes(value)

    def save_reserved(self, namespace: str, name: str, data: bytes) -> None:
        """For layers built on the facade: store the reserved record ``name`` (their own bookkeeping, never listed)."""
        self.backend.write_many(self._namespace(namespace), [(self._reserved(name), bytes(data))])

    def child_namespace(self, namespace: str, name: str) -> str:
        """For layers built on the facade: the namespace of group ``name`` inside ``namespace`` (see ``group``)."""
        return self.backend.child_namespace(self._namespace(namespace), validate_key(name))

    # ------------------------------------------------------------ existence
    @overload
    def file_exists(self, namespace: str, key: str) -> bool: ...  # type: ignore[overload-overlap]  # str is a Sequence[str]
    @overload
    def file_exists(self, namespace: str, key: Sequence[str]) -> list[bool]: ...

    def file_exists(self, namespace: str, key: str | Sequence[str]) -> bool | list[bool]:
        """Return whether ``key`` exists in ``namespace`` (a list of bools for a list of keys).

        Never raises for an absent key or namespace.

        Raises
        ------
        InvalidKeyError, InvalidNamespaceError
            For malformed arguments.
        """
        ns = self._namespace(namespace)
        key_list, single = as_key_list(key)
        found = self.backend.exists_many(ns, key_list)
        return found[0] if single else found

    def namespace_exists(self, namespace: str) -> bool:
        """Return whether ``namespace`` exists; never raises for an absent one."""
        return self.backend.namespace_exists(self._namespace(namespace))

    def list_keys(self, namespace: str, keypattern: str = "*") -> list[str]:
        """Return the keys of ``namespace`` matching the glob ``keypattern``, sorted.

        ``*`` matches every key (also those starting with a dot); an absent
        namespace gives ``[]``.

        Raises
        ------
        InvalidKeyError
            If the pattern is empty or contains NUL.
        """
        ns = self._namespace(namespace)
        pattern = validate_pattern(keypattern)
        if not could_match_a_key(pattern):
            return []  # its literal part names no valid key ("../x*", "/etc/*"): nothing to look at
        keys = sorted(self.backend.list_matching(ns, pattern))
        if pattern[0] in "*?[.":  # a pattern that could match mummi_io's own (reserved) keys
            # Sorted, the reserved keys are one run: cut it out without looking at every key.
            first = bisect.bisect_left(keys, RESERVED_PREFIX)
            end = bisect.bisect_left(keys, RESERVED_PREFIX + "\U0010ffff", first)
            while end < len(keys) and keys[end].startswith(RESERVED_PREFIX):
                end += 1  # (a key with U+10FFFF right after the prefix)
            del keys[first:end]
        return keys

    # ------------------------------------------------------------ save/load
    def save_files(self, namespace: str, keys: str | Sequence[str], data: Any) -> None:
        """Store ``data`` under ``keys``: one value for one key, or a list of values for a list.

        Values are ``bytes``, ``bytearray``, ``memoryview`` or ``str`` (stored
        as UTF-8). Each value is replaced atomically (last writer wins); the
        whole batch is validated before anything is written.

        Raises
        ------
        InvalidKeyError, InvalidNamespaceError, InvalidArgumentError
            For malformed keys, namespaces, or keys and data of different lengths.
        InvalidValueError
            (a ``TypeError``) naming the key whose value has an unsupported type.
        StorageError, BackendUnavailableError
            If the storage refuses the write.
        """
        ns = self._namespace(namespace)
        items = pair_keys_values(keys, data)
        self.backend.write_many(ns, items)
        LOGGER.debug("saved %d key(s) to %s", len(items), ns)

    def load_files(self, namespace: str, keys: str | Sequence[str], missing: Any = RAISE) -> Any:
        """Return the value (``bytes``) of each key, in the order of ``keys``.

        Parameters
        ----------
        missing:
            What to return for a missing key. By default a missing key raises;
            pass ``missing=None`` (or any value) to get that value in its place.

        Raises
        ------
        KeyNotFoundError
            (a ``KeyError``) naming the namespace and every missing key.
        """
        ns = self._namespace(namespace)
        key_list, single = as_key_list(keys)
        values = self.backend.read_many(ns, key_list)
        if missing is RAISE:
            absent = [key for key, value in zip(key_list, values) if value is None]
            if absent:
                raise KeyNotFoundError(ns, absent)
        else:
            values = [missing if value is None else value for value in values]
        LOGGER.debug("loaded %d key(s) from %s", len(key_list), ns)
        return values[0] if single else values

    def remove_files(self, namespace: str, keys: str | Sequence[str]) -> None:
        """Remove ``keys`` from ``namespace``; a key that does not exist is a no-op."""
        ns = self._namespace(namespace)
        key_list, _ = as_key_list(keys)
        self.backend.delete_many(ns, key_list)
        LOGGER.debug("removed %d key(s) from %s", len(key_list), ns)

    def storage_report(self, namespace: str) -> StorageReport:
        """What the namespace's storage itself shows beyond its values (``mummi-io verify`` prints it).

        taridx reports damaged ranges of its tar (skipped by readers, left in
        place), values its tar no longer holds (``damage``), an interrupted
        write the next writer clears and members that are not values
        (``notes``), and values written without a checksum (``unchecked``).
        It only reads.
        """
        return self.backend.storage_report(self._namespace(namespace))

    @property
    def stores_checksums(self) -> bool:
        """Whether reads check each value against a checksum stored when it was written."""
        return self.backend.stores_checksums

    @property
    def keys_can_be_prefixes(self) -> bool:
        """Whether a key may be a value and the prefix of other keys at once (``a`` and ``a/b``)."""
        return self.backend.keys_can_be_prefixes

    def same_namespace(self, namespace: str, other: Facade, other_namespace: str) -> bool:
        """Whether ``namespace`` here and ``other_namespace`` of ``other`` are one storage (however spelled).

        Moves and syncs ask, so that a key is never copied onto itself and then removed.
        """
        mine = self.backend.namespace_identity(self._namespace(namespace))
        return mine is not None and mine == other.backend.namespace_identity(other._namespace(other_namespace))

    def nested_namespace(self, namespace: str, other: Facade, other_namespace: str) -> bool:
        """Whether one of the two namespaces is stored inside the other (``run`` and ``run/archive.tar``).

        Then a key of one is a file of the other: copying, mirroring or moving
        between them would overwrite or remove the storage itself.
        """
        mine = self.backend.namespace_path(self._namespace(namespace))
        theirs = other.backend.namespace_path(other._namespace(other_namespace))
        if mine is None or theirs is None or mine == theirs:
            return False
        return theirs.startswith(mine.rstrip(os.sep) + os.sep) or mine.startswith(theirs.rstrip(os.sep) + os.sep)

    def capability(self, wanted: type[Capability]) -> Capability | None:
        """The backend as the optional capability ``wanted`` (see :mod:`mummi_io.core.contract`), or ``None``.

        Raises
        ------
        InvalidArgumentError
            If ``wanted`` is not a capability (a typo such as the string ``"Maintainable"``).
        """
        if wanted not in CAPABILITIES:
            raise InvalidArgumentError(
                f"{wanted!r} is not a capability; ask for one of {', '.join(c.__name__ for c in CAPABILITIES)} "
                "(from mummi_io.core.contract)"
            )
        return self.backend.capability(wanted)

    def _maintainable(self, action: str) -> Maintainable:
        maintainer = self.backend.capability(Maintainable)
        if maintainer is None:
            raise UnsupportedOperation(
                f"{action} works on a backend's own index and appended storage; {self.get_type()} keeps none "
                "(the taridx backend does)"
            )
        return maintainer

    def reindex(self, namespace: str, accept_loss: bool = False) -> Any:
        """Rebuild the index of ``namespace`` from its stored values; return the backend's report.

        Raises
        ------
        UnsupportedOperation
            On a backend that keeps no index (only ``taridx`` does).
        IntegrityError
            If the rebuilt index would lose values, unless ``accept_loss``.
        """
        return self._maintainable("reindex").reindex(self._namespace(namespace), accept_loss=accept_loss)

    def compact(self, namespace: str, accept_loss: bool = False) -> tuple[int, int]:
        """Rewrite ``namespace`` with only its live values; return (bytes before, bytes after).

        Raises
        ------
        UnsupportedOperation
            On a backend that does not append (only ``taridx`` does).
        IntegrityError
            If the storage holds damage compaction would drop, unless ``accept_loss``.
        """
        return self._maintainable("compact").compact(self._namespace(namespace), accept_loss=accept_loss)

    def stat_keys(self, namespace: str, keys: str | Sequence[str]) -> Any:
        """Return ``{"key", "size", "crc32"}`` for each key (``None`` where it is missing).

        taridx answers from its index; other backends read the values.
        """
        ns = self._namespace(namespace)
        key_list, single = as_key_list(keys)
        stats = [
            None if found is None else {"key": key, "size": found[0], "crc32": f"{found[1]:08x}"}
            for key, found in zip(key_list, self.backend.stat_many(ns, key_list))
        ]
        return stats[0] if single else stats

    # ----------------------------------------------------------------- move
    def move_keys(
        self,
        namespace: str,
        keys: str | Sequence[str],
        new_keys: str | Sequence[str] | None = None,
        dest_namespace: str | None = None,
    ) -> None:
        """Rename ``keys`` to ``new_keys``, optionally into another namespace.

        ``new_keys`` defaults to the same names (a move between namespaces);
        ``dest_namespace`` defaults to ``namespace``. A destination key that
        exists is overwritten. Nothing is moved if any source key is missing.

        Raises
        ------
        KeyNotFoundError
            Naming every source key that does not exist.
        InvalidArgumentError
            If the lists differ in length, repeat a key, or chain renames.
        """
        source = self._namespace(namespace)
        destination = source if dest_namespace is None else self._namespace(dest_namespace)
        spelled_apart = destination != source and self.backend.namespace_path(source) is not None  # files only
        if spelled_apart and self.same_namespace(source, self, destination):
            destination = source  # one storage spelled two ways (a relative path, a link): a rename in place
        elif spelled_apart and self.nested_namespace(source, self, destination):
            raise InvalidArgumentError(
                f"{destination!r} is stored inside {source!r} (or the other way round), so their keys overlap; "
                "move the keys within the outer namespace instead (e.g. key 'a' to 'sub/a')"
            )
        old_list, _ = as_key_list(keys)
        new_list = old_list if new_keys is None else as_key_list(new_keys)[0]
        if len(old_list) != len(new_list):
            raise InvalidArgumentError(f"{len(old_list)} keys but {len(new_list)} new keys")
        if len(set(old_list)) != len(old_list) or len(set(new_list)) != len(new_list):
            raise InvalidArgumentError("a key appears twice among the keys or the new keys to move")
        pairs = [(old, new) for old, new in zip(old_list, new_list) if (source, old) != (destination, new)]
        if source == destination and set(old for old, _ in pairs) & set(new for _, new in pairs):
            raise InvalidArgumentError(
                "a new key is also a key being moved in the same namespace (a chain of renames); "
                "split it into separate move_keys calls"
            )
        exists = self.backend.exists_many(source, old_list)
        absent = [key for key, found in zip(old_list, exists) if not found]
        if absent:
            raise KeyNotFoundError(source, absent)
        if pairs:
            self.backend.move_many(source, pairs, destination)
        LOGGER.debug("moved %d key(s) from %s to %s", len(pairs), source, destination)

    def move_key(
        self, namespace: str, key: str | Sequence[str], prefix: str = "done", suffix: str = ".npz"
    ) -> str | list[str]:
        """Rename ``key + suffix`` to ``prefix-key`` in ``namespace`` (MuMMI's rule).

        ``suffix`` is appended only if ``key`` does not already end with it, so
        ``move_key(ns, "a")`` renames ``a.npz`` to ``done-a`` and
        ``move_key(ns, "a.npz")`` renames ``a.npz`` to ``done-a.npz``. Returns
        the new key (or list of new keys).

        Raises
        ------
        KeyNotFoundError
            If ``key + suffix`` does not exist.
        """
        key_list, single = as_key_list(key)
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise InvalidArgumentError("prefix and suffix must be str")
        olds = [validate_key(_with_suffix(k, suffix)) for k in key_list]
        news = [validate_key(f"{prefix}-{k}") for k in key_list]
        self.move_keys(namespace, olds, news)
        return news[0] if single else news

    # ------------------------------------------------------------------ npz
    def save_npz(
        self,
        namespace: str,
        keys: str | Sequence[str],
        data: Any,
        writer_func: Callable[[io.BytesIO, Any], Any] = write_npz,
    ) -> None:
        """Serialize ``data`` with ``writer_func(fileobj, data)`` and save it under ``key.npz``.

        ``.npz`` is appended to each key that does not end with it. The default
        writer is ``numpy.savez_compressed`` of a dict of arrays; a custom
        writer writes into the file object it is given (and may return it).
        For a list of keys, ``data`` is a list with one object per key.
        """
        key_list, single = as_key_list(keys)
        objects = [data] if single else data
        if not isinstance(objects, Sequence) or len(objects) != len(key_list):
            raise InvalidArgumentError(f"{len(key_list)} keys need a list of {len(key_list)} objects")
        blobs = []
        for obj in objects:
            buffer = io.BytesIO()
            written = writer_func(buffer, obj)
            blobs.append((written if written is not None else buffer).getvalue())
        self.save_files(namespace, [_with_suffix(k, ".npz") for k in key_list], blobs)

    def load_npz(
        self,
        namespace: str,
        keys: str | Sequence[str],
        reader_func: Callable[[io.BytesIO], Any] = read_npz,
        missing: Any = RAISE,
    ) -> Any:
        """Load ``key.npz`` and return ``reader_func(fileobj)`` for each key.

        The default reader returns a dict of arrays and refuses pickled object
        arrays (pickle runs code): opt in with
        ``reader_func=functools.partial(mummi_io.read_npz, allow_pickle=True)``.

        Raises
        ------
        KeyNotFoundError
            For missing keys, unless ``missing`` is given (see ``load_files``).
        PickleRefusedError
            If the default reader meets pickled data.
        UnreadableValueError
            (a ``ValueError``) naming the key, if the default reader meets bytes that are not an npz.
        """
        key_list, single = as_key_list(keys)
        absent = object()
        blobs = self.load_files(
            namespace,
            [_with_suffix(k, ".npz") for k in key_list],
            missing=RAISE if missing is RAISE else absent,
        )
        objects = []
        for key, blob in zip(key_list, blobs):
            if blob is absent:
                objects.append(missing)
                continue
            try:
                objects.append(reader_func(io.BytesIO(blob)))
            except UnreadableValueError as exc:
                raise UnreadableValueError(f"key {_with_suffix(key, '.npz')!r} in namespace {namespace!r}: {exc}",
                                           [_with_suffix(key, ".npz")]) from exc
        return objects[0] if single else objects

    # ------------------------------------------------------- values as buffers
    # What layers above (typed objects) need beyond bytes: writing pieces without a join,
    # reading a value without a copy, reading only a value's head.
    def write_value(self, namespace: str, key: str, value: Parts) -> None:
        """For layers built on the facade: store a value given in pieces, joined only where the backend needs it."""
        ns = self._namespace(namespace)
        # A backend that accepts_parts takes the pieces as the value (see Backend.accepts_parts).
        payload = cast(Buffer, value) if self.backend.accepts_parts else joined(value)
        self.backend.write_many(ns, [(validate_key(key), payload)])

    def load_buffer(self, namespace: str, key: str, backend_check: bool = True,
                    consume: Callable[[memoryview], object] | None = None) -> Buffer:
        """For layers built on the facade: the value of ``key`` as a buffer (possibly writable, not copied).

        ``backend_check=False`` lets the backend skip its own checksum, for a
        caller that checks a stronger one (``load_object``'s digest).
        ``consume`` is handed consecutive pieces of the value as they are
        read (all of it, once, in order), so that hashing overlaps reading.

        Raises
        ------
        KeyNotFoundError
            If ``key`` does not exist.
        """
        ns = self._namespace(namespace)
        if consume is not None:
            found = self.backend.read_buffer_streamed(ns, validate_key(key), consume, verify=backend_check)
            if found is None:
                raise KeyNotFoundError(ns, [key])
            return found
        blob = self.backend.read_buffers(ns, [validate_key(key)], verify=backend_check)[0]
        if blob is None:
            raise KeyNotFoundError(ns, [key])
        return blob

    def load_head(self, namespace: str, key: str, size: int) -> bytes:
        """For layers built on the facade: the first ``size`` bytes of ``key``'s value, read without the rest.

        Raises
        ------
        KeyNotFoundError
            If ``key`` does not exist.
        """
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgumentError(f"size is a number of bytes (an int >= 0), not {size!r}")
        ns = self._namespace(namespace)
        head = self.backend.read_prefix_many(ns, [validate_key(key)], size)[0]
        if head is None:
            raise KeyNotFoundError(ns, [key])
        return head

    def load_ranges(
        self, namespace: str, keys: Sequence[str], ranges: Sequence[tuple[int, int | None]],
    ) -> list[bytes | None]:
        """For layers built on the facade (the zarr store): ``value[start:stop]`` of each key, ``None`` where missing.

        Each range is ``(start, stop)`` in Python slice terms: ``start`` an
        int (negative counts from the end), ``stop`` ``None`` (to the end) or
        an int >= 0. Backends that can read a slice in place do (a ``pread``,
        a ``GETRANGE``). On ``taridx`` a slice of a value up to 256 KiB is cut
        from the whole, checked value; a larger one is read in place once the
        member header confirms the key, size and CRC-32 (its bytes are not
        checksummed: the CRC covers the whole value).
        """
        checked = [validate_key(key) for key in keys]
        if len(ranges) != len(checked):
            raise InvalidArgumentError(f"{len(checked)} key(s) but {len(ranges)} range(s): give one range per key")
        for span in ranges:
            start, stop = span if isinstance(span, tuple) and len(span) == 2 else (None, None)
            if not _is_count(start, negative=True) or not (stop is None or _is_count(stop)):
                raise InvalidArgumentError(f"a range is (start, stop): start an int, stop None or an int >= 0; not {span!r}")
        return self.backend.read_ranges_many(self._namespace(namespace), checked, list(ranges))

    # ------------------------------------------------------------ checkpoints
    # These act on the file system whatever the backend, as in MuMMI.
    take_backup = staticmethod(checkpoint.take_backup)
    save_checkpoint = staticmethod(checkpoint.save_checkpoint)
    load_checkpoint = staticmethod(checkpoint.load_checkpoint)

    # ----------------------------------------------------------- coordination
    # Signals, queues, counters and barriers live where ``coordination`` says:
    # files under ``path`` (the default, the seed's meaning) or the backend
    # (``get_io("redis", coordination="backend")``: Redis keys, no file system).
    def _place(self, path: object) -> str:
        return validate_namespace(path)

    def send_signal(self, path: str, key: str | Sequence[str]) -> None:
        """Raise the signal ``key`` (or several) at ``path`` and wake whoever waits for it."""
        key_list, _ = as_name_list(key, "signal")
        self.coordinator.send(self._place(path), key_list)

    @overload
    def test_signal(self, path: str, key: str) -> bool: ...  # type: ignore[overload-overlap]  # str is a Sequence[str]
    @overload
    def test_signal(self, path: str, key: Sequence[str]) -> list[bool]: ...

    def test_signal(self, path: str, key: str | Sequence[str]) -> bool | list[bool]:
        """Whether the signal ``key`` is raised at ``path`` (``""``: ``False``, as in MuMMI)."""
        if isinstance(key, str) and key == "":
            return False
        key_list, single = as_name_list(key, "signal")
        raised = self.coordinator.present(self._place(path), key_list)
        return raised[0] if single else raised

    def clear_signal(self, path: str, key: str | Sequence[str]) -> None:
        """Lower the signal(s); one that is not raised is skipped."""
        key_list, _ = as_name_list(key, "signal")
        self.coordinator.clear(self._place(path), key_list)

    def wait_signal(self, path: str, key: str, timeout: float | None = None) -> bool:
        """Block until the signal ``key`` is raised at ``path``; return ``True``.

        Raises :class:`~mummi_io.core.errors.SignalTimeoutError` after ``timeout`` seconds (``None``: wait forever).
        """
        wait_signals(self.coordinator, self._place(path), [key], timeout)
        return True

    def wait_signals(
        self, path: str, keys: Sequence[str], timeout: float | None = None, mode: str = "all"
    ) -> list[str]:
        """Block until all (``mode="all"``) or any (``"any"``) of ``keys`` are raised; return those raised.

        On Redis the wait blocks in the server (Pub/Sub); on files it is woken
        by inotify on a local file system and polls with bounded backoff
        elsewhere. Raises :class:`~mummi_io.core.errors.SignalTimeoutError` naming the missing keys.
        """
        return wait_signals(self.coordinator, self._place(path), keys, timeout, mode)

    def queue(self, path: str, name: str, lease: float = 60.0) -> WorkQueue:
        """The consume-once work queue ``name`` at ``path``; items are leased for ``lease`` seconds."""
        return WorkQueue(self.coordinator, self._place(path), name, lease)

    def counter(self, path: str, name: str) -> Counter:
        """The shared counter ``name`` at ``path``."""
        return Counter(self.coordinator, self._place(path), name)

    def barrier(self, path: str, name: str, parties: int) -> Barrier:
        """The barrier ``name`` at ``path`` for ``parties`` jobs."""
        return Barrier(self.coordinator, self._place(path), name, parties)


def _is_count(value: object, negative: bool = False) -> bool:
    """Whether ``value`` is an int (not a bool), and not negative unless allowed."""
    return isinstance(value, int) and not isinstance(value, bool) and (negative or value >= 0)
