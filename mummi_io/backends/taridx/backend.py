"""The ``taridx`` backend: a namespace is one POSIX tar plus a sidecar index.

This module is the thin layer of primitives; the work is done by a
:class:`~.session.NamespaceSession` per namespace (read, lock, recover,
commit) and by :mod:`.maintenance` (verify, reindex, compact).

Files of namespace ``run.tar``: ``run.tar`` (the members, see
:mod:`.tarformat`), ``run.tar.idx`` (the index, a cache of the tar, see
:mod:`.index`) and ``run.tar.lock`` (the writers' lock).

- Readers never take the lock and never write (:mod:`.state`): each process
  keeps the tar and index open and the parsed index in memory, and one
  ``stat`` of the index per call tells whether another process appended.
- Writers append under an ``flock`` lock (:mod:`mummi_io.core.flock`): members first (one positioned
  write per batch, ending with the end-of-archive marker), then one index
  append that commits the batch. Before appending, a writer repairs what
  readers worked around (:mod:`.repair`): it rewrites a missing or damaged
  index, and moves the torn tail of an interrupted batch to a side file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Hashable, Iterator, Sequence

from ...core.contract import Backend, Buffer, Locating, Maintainable, StorageReport, slice_span
from ...core.errors import IntegrityError, InvalidNamespaceError, KeyNotFoundError
from ...core.fs import path_identity, stat_or_none
from ...core.keys import key_matcher
from . import maintenance
from .repair import ReindexReport
from .sniff import COMPRESSED_SUFFIXES
from .session import Sessions
from .state import require_regular


@contextlib.contextmanager
def _keys_as_text(namespace: str) -> Iterator[None]:
    """Turn a key of the index that is not UTF-8 (never written by mummi_io) into an ``IntegrityError``."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise IntegrityError(
            f"the index of {namespace!r} lists a key that is not UTF-8 text ({exc.object[exc.start:exc.end]!r} in "
            f"{exc.object[max(0, exc.start - 40):exc.end + 40]!r}): another tool wrote or damaged it. Run "
            "mummi-io reindex --accept-loss on the namespace to rebuild its index from the tar without it"
        ) from exc


class TarIndexBackend(Backend):
    """Indexed append-only tar files; see the module docstring and docs/taridx.md.

    Parameters
    ----------
    fsync:
        Flush the tar and the index to disk before a save returns (survives a
        node crash; slower).
    verify:
        Check each value's CRC-32 on read and raise ``IntegrityError`` on a
        mismatch (on by default; costs about a microsecond per KiB).
    lock_timeout:
        Seconds a writer waits for another process's write before
        ``BackendUnavailableError``.
    max_open:
        Namespaces kept open per process (two file descriptors each).
    suffix:
        Appended to a namespace that does not end with it (``""`` keeps names
        as given). Compressed tars (``.tar.gz``...) keep their names.
    """

    kind = "taridx"
    stores_checksums = True
    accepts_parts = True
    capabilities = (Maintainable, Locating)

    def __init__(
        self, *, fsync: bool = False, verify: bool = True, lock_timeout: float = 600.0, max_open: int = 64,
        suffix: str = ".tar",
    ) -> None:
        self.suffix = suffix
        self.fsync = fsync
        self.verify = verify
        self.lock_timeout = lock_timeout
        self.max_open = max_open
        #: The namespaces open in this process: ``sessions(namespace)`` is one's session.
        self.sessions = Sessions(fsync, verify, lock_timeout, max_open)

    def normalize_namespace(self, namespace: str) -> str:
        # docstring inherited: a path, so "ns/" and "./ns" name one archive
        namespace = os.path.normpath(namespace)
        if os.path.basename(namespace) in (".", "..", ""):
            raise InvalidNamespaceError(
                f"a taridx namespace is a tar file, and {namespace!r} names a directory: name the file (e.g. run.tar)"
            )
        if not self.suffix or namespace.endswith(self.suffix) or namespace.endswith(COMPRESSED_SUFFIXES):
            return namespace
        return namespace + self.suffix

    def describe(self) -> str:
        return f"taridx (fsync={self.fsync}, verify={self.verify})"

    def close(self) -> None:
        # docstring inherited
        self.sessions.close()

    # --------------------------------------------------------------- reads
    def read_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        with self.sessions(namespace).reading() as session:
            return session.read_values(keys)  # type: ignore[return-value]  # bytes unless into_buffer

    def read_buffers(self, namespace: str, keys: Sequence[str], verify: bool = True) -> list[Buffer | None]:
        # docstring inherited: preadv into numpy-allocated memory; CRC-32 checked unless verify=False
        with self.sessions(namespace).reading() as session:
            return session.read_values(keys, into_buffer=True, check=verify)

    def read_buffer_streamed(
        self, namespace: str, key: str, consume: Callable[[memoryview], object], verify: bool = True,
    ) -> Buffer | None:
        # docstring inherited: pieces handed over as they are read from the tar
        with self.sessions(namespace).reading() as session:
            location = session.locate(key)
            return None if location is None else session.read(key, location, True, verify, consume)

    def read_ranges_many(
        self, namespace: str, keys: Sequence[str], ranges: Sequence[tuple[int, int | None]],
    ) -> list[bytes | None]:
        # docstring inherited: every range read in one session (one version of each value), see Session.read_slice
        values: list[bytes | None] = []
        with self.sessions(namespace).reading() as session:
            for key, (start, stop) in zip(keys, ranges):
                location = session.locate(key)
                if location is None:
                    values.append(None)
                    continue
                values.append(session.read_slice(key, location, *slice_span(location[1], start, stop)))
        return values

    def stat_many(self, namespace: str, keys: Sequence[str]) -> list[tuple[int, int] | None]:
        # docstring inherited: from the index, without reading values that have a recorded CRC-32
        with self.sessions(namespace).reading() as session:
            found = [session.locate(key) for key in keys]
            return [None if location is None else (location[1], session.checksum(key, location))
                    for key, location in zip(keys, found)]

    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        with self.sessions(namespace).reading() as session:
            slots = session.table.slots
            return [key.encode("utf-8") in slots for key in keys]

    def list_matching(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited
        with self.sessions(namespace).reading() as session, _keys_as_text(namespace):
            names = session.table.key_names()
        matches = key_matcher(pattern)
        return iter(names if pattern == "*" else [name for name in names if matches(name)])

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        info = stat_or_none(namespace, f"look at namespace {namespace!r}")
        if info is not None:
            require_regular(namespace, info.st_mode)
        return info is not None

    def namespace_identity(self, namespace: str) -> Hashable | None:
        # docstring inherited: the tar's device and inode
        return path_identity(namespace)

    def namespace_path(self, namespace: str) -> str | None:
        # docstring inherited
        return os.path.realpath(namespace)

    def child_namespace(self, namespace: str, name: str) -> str:
        # docstring inherited: groups of run.tar live in run.groups/<name>.tar
        base = namespace[:-4] if namespace.endswith(".tar") else namespace
        return os.path.join(base + ".groups", name + ".tar")

    def index_entries(self, namespace: str) -> list[tuple[str, int, int]]:
        """``(key, data offset, size)`` of every live key, sorted by key (MuMMI's ``load_index``)."""
        namespace = self.normalize_namespace(namespace)
        with self.sessions(namespace).reading() as session:
            rows = session.live_entries()
        with _keys_as_text(namespace):
            return sorted((key.decode("utf-8"), offset, size) for key, offset, size, _ in rows)

    # -------------------------------------------------------------- writes
    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        # docstring inherited
        if items:
            with self.sessions(namespace).writing("append to") as session:
                session.commit(items, ())

    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        # docstring inherited
        session = self.sessions(namespace)
        with session.reading():
            if not any(key.encode("utf-8") in session.table.slots for key in keys):
                return  # nothing to delete (and nothing written)
        with session.writing("append to"):
            present = list(dict.fromkeys(key for key in keys if key.encode("utf-8") in session.table.slots))
            if present:
                session.commit((), present)

    def move_many(self, source: str, pairs: Sequence[tuple[str, str]], destination: str) -> None:
        # docstring inherited: within one namespace, one batch that puts the new keys and deletes the old
        if source != destination:
            return super().move_many(source, pairs, destination)
        with self.sessions(source).writing("rename keys in") as session:
            located = [(old, session.locate(old)) for old, _ in pairs]
            missing = [old for old, location in located if location is None]
            if missing:
                raise KeyNotFoundError(source, missing)
            values = [session.read(old, location) for old, location in located]  # type: ignore[arg-type]
            session.commit([(new, value) for (_, new), value in zip(pairs, values)], [old for old, _ in pairs])
        return None

    # --------------------------------------------------------- maintenance
    def storage_report(self, namespace: str) -> StorageReport:
        # docstring inherited: a read-only scan of the whole tar, and values the tar no longer holds
        return maintenance.storage_report(self.sessions(self.normalize_namespace(namespace)))

    def reindex(self, namespace: str, accept_loss: bool = False) -> ReindexReport:
        """Rebuild the index of ``namespace`` from its tar, checked against the old index.

        Values the old index knows that are intact in the tar are kept (also
        when their member header is damaged); damaged ranges are reported and
        left in place; a torn tail is moved to a side file. If the tar has
        lost values the index knew, holds older versions of them, or would
        bring back deleted keys, nothing is changed and ``IntegrityError``
        names them, unless ``accept_loss`` is true: then the tar's state is
        taken and the report lists what was lost.

        Raises
        ------
        StorageNotFoundError
            If the namespace has no tar file.
        IntegrityError
            If the rebuild would lose something and ``accept_loss`` is false.
        """
        return maintenance.reindex(self.sessions(self.normalize_namespace(namespace)), accept_loss)

    def compact(self, namespace: str, accept_loss: bool = False) -> tuple[int, int]:
        """Rewrite ``namespace`` with only its live values; return (bytes before, bytes after).

        Crash-safe: the new tar and index are written beside the old ones and
        renamed into place, tar first; a crash between the renames leaves the
        new tar beside ``run.tar.idx.compact``, which readers use and the next
        writer renames. Compaction never copies damage, nor drops it silently:
        it refuses (``IntegrityError``) if a value is corrupt, and, unless
        ``accept_loss``, if the tar holds damaged ranges or members that are
        not values (``mummi-io verify`` lists them), which the new tar would not.
        """
        return maintenance.compact(self.sessions(self.normalize_namespace(namespace)), accept_loss)
