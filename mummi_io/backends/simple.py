"""The ``simple`` backend: a namespace is a directory, a key is a file in it.

Why one module of this size: a directory of files needs no index, so the whole
backend is its primitives, each walking directories without following links;
split, the one rule (nothing leads outside the namespace) would be spread
thin.

Easy to view and edit with ordinary tools. A key's ``/``-separated
components are subdirectories (``snapshot.3/subset#000000`` is the file
``subset#000000`` in ``snapshot.3/``), created on save and removed when a
remove or move empties them. Every write goes to a temporary file in the same
directory and is renamed over the key, so a reader never sees a partial file,
also while a writer is killed. Temporary files carry the reserved
``.mummi_io`` prefix and are never listed as keys.

A file cannot also be a directory: a key may not be a value and the prefix of
other keys at once (``a`` and ``a/b``). Such a save raises
``InvalidKeyError`` before anything is written (``keys_can_be_prefixes`` is
false).

Nothing leads outside the namespace: each directory of a key is opened
relative to its parent without following a symbolic link, and each file
operation names one component relative to an open directory (``openat``,
``renameat``, ``unlinkat``). A link inside the namespace is not a key, and a
directory swapped for a link while a call runs is not followed either.
"""

from __future__ import annotations

import contextlib
import functools
import errno
import logging
import os
import stat
from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np

from ..core.contract import Backend, Buffer, slice_span
from ..core.errors import InvalidKeyError, KeyNotFoundError, storage_error
from ..core.fs import atomic_write, fill_buffer, os_error, path_identity, stat_or_none, storage_errors
from ..core.keys import RESERVED_PREFIX, has_glob, key_matcher, literal_prefix

LOGGER = logging.getLogger(__name__)

# O_PATH: a directory is walked through with search permission alone (mode 0300 works, as with paths);
# reading its entries (list) and fsync reopen it readable.
_READABLE_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIRECTORY = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
_DIRECTORY_NOT_A_LINK = _DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK: a FIFO planted in the namespace must not hang a reader (no effect on files).
_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
_NOT_THERE = (FileNotFoundError, NotADirectoryError)
_DIRECTORY_RACE_ATTEMPTS = 10  # how often a save remakes a directory that a concurrent remove pruned


def _prefix_conflict(namespace: str, key: str, why: str) -> InvalidKeyError:
    return InvalidKeyError(
        f"key {key!r} cannot be saved in {namespace!r}: {why}. On the simple backend a key cannot be both a "
        "value and the directory of other keys (a file is not a directory); rename one of them"
    )


class _SourceGone(Exception):
    """A key to move was removed by another process meanwhile."""


class _Tree:
    """The directories of one namespace, opened for one batch, each without following a symbolic link.

    ``parent(key)`` gives an open descriptor of the directory holding the key
    and the key's last component; with ``create`` missing directories are
    made, and a link or a file in the way raises ``InvalidKeyError``; without,
    such a key is simply not there (``None``).
    """

    def __init__(self, namespace: str, *, create: bool) -> None:
        self.namespace = namespace
        self.create = create
        self._open: dict[str, int] = {}  # "" for the namespace, "a/" and "a/b/" for its directories

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()

    def root(self) -> int | None:
        """The namespace directory (which may itself be reached through a link, as the user named it)."""
        if "" not in self._open:
            try:
                self._open[""] = os.open(self.namespace, _DIRECTORY)
            except _NOT_THERE:
                return None
            except OSError as exc:
                raise os_error(f"open namespace {self.namespace!r}", exc) from exc
        return self._open[""]

    def parent(self, key: str, *, probe: bool = False) -> tuple[int, str] | None:
        """``(directory descriptor, last component)`` of ``key``; ``None`` if it cannot be there.

        ``probe``: make nothing, but raise as a save would for a link or a
        file in the way (a missing directory is ``None``: a save makes it).
        """
        fd = self.root()
        if fd is None:
            return None
        parts = key.split("/")
        prefix = ""
        for part in parts[:-1]:
            prefix += part + "/"
            child = self._open.get(prefix)
            if child is None:
                child = self._child(fd, part, key, prefix, probe)
                if child is None:
                    return None
                self._open[prefix] = child
            fd = child
        return fd, parts[-1]

    def _child(self, fd: int, part: str, key: str, prefix: str, probe: bool) -> int | None:
        try:
            return os.open(part, _DIRECTORY_NOT_A_LINK, dir_fd=fd)
        except FileNotFoundError:
            if probe or not self.create:
                return None
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            return self._child(fd, part, key, prefix, probe)  # a link or file made meanwhile is met below
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise os_error(f"open directory {prefix!r} of namespace {self.namespace!r}", exc) from exc
            if not (self.create or probe):
                return None  # a link or a file where a directory of the key would be: the key is not there
            raise self._in_the_way(fd, part, key, prefix) from None

    def _in_the_way(self, fd: int, part: str, key: str, prefix: str) -> InvalidKeyError:
        try:
            mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
        except OSError:
            mode = 0
        if stat.S_ISLNK(mode):
            return InvalidKeyError(
                f"key {key!r} cannot be saved in {self.namespace!r}: {prefix.rstrip('/')!r} is a symbolic link, "
                "and keys never lead outside their namespace; replace the link with a directory"
            )
        return _prefix_conflict(self.namespace, key, f"{prefix.rstrip('/')!r} is a key")

    def forget(self, key: str) -> None:
        """Close the directories of ``key`` (another process may have removed them): reopen on next use."""
        prefix = ""
        for part in key.split("/")[:-1]:
            prefix += part + "/"
            fd = self._open.pop(prefix, None)
            if fd is not None:
                os.close(fd)

    def prune(self, keys: Sequence[str]) -> None:
        """Remove the directories of ``keys`` that are now empty, deepest first (never the namespace)."""
        prefixes = {key[:end + 1] for key in keys for end, char in enumerate(key) if char == "/"}
        for prefix in sorted(prefixes, key=lambda p: (-p.count("/"), p)):
            head, _, name = prefix.rstrip("/").rpartition("/")
            parent = self._open.get(head + "/" if head else "")
            if parent is None:
                continue
            try:
                os.rmdir(name, dir_fd=parent)  # never follows a link; fails on a directory not empty
            except OSError:
                continue
            fd = self._open.pop(prefix, None)
            if fd is not None:
                os.close(fd)

    def descriptors(self) -> list[int]:
        return list(self._open.values())


def _fsync_directory(fd: int) -> None:
    """Flush a directory held as an O_PATH descriptor (which cannot be fsynced itself)."""
    readable = os.open(".", _READABLE_DIRECTORY, dir_fd=fd)
    try:
        os.fsync(readable)
    finally:
        os.close(readable)


def _regular(fd: int, name: str, key: str, namespace: str) -> bool:
    """Whether ``name`` in directory ``fd`` is a regular file (a link, directory or FIFO is no key)."""
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except _NOT_THERE:
        return False
    except OSError as exc:
        raise os_error(f"look for key {key!r} in namespace {namespace!r}", exc) from exc


class SimpleBackend(Backend):
    """A directory of files, written atomically.

    Parameters
    ----------
    fsync:
        Flush each value and the directory to disk before a save returns, so
        saved data survives a power loss or node crash (slower; off by default,
        as in MuMMI, where a killed process is the usual failure).
    """

    kind = "simple"
    accepts_parts = True
    keys_can_be_prefixes = False

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync

    def normalize_namespace(self, namespace: str) -> str:
        # docstring inherited: "ns/", "./ns" and "ns/sub/.." are one directory, so one namespace
        return os.path.normpath(namespace)

    # ---------------------------------------------------------------- writes
    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        # docstring inherited
        self._make_directory(namespace)
        keys = [key for key, _ in items]
        with _Tree(namespace, create=True) as tree:
            self._check_places(tree, keys)
            used = set()
            for key, value in items:
                with storage_errors(f"write key {key!r} in namespace {namespace!r}"):
                    used.add(self._place(tree, key, functools.partial(_write_at, value, self.fsync)))
            if self.fsync and items:
                with storage_errors(f"flush namespace directory {namespace!r}"):
                    for fd in used:
                        _fsync_directory(fd)

    @staticmethod
    def _check_places(tree: _Tree, keys: Sequence[str]) -> None:
        """Refuse, before writing, nested keys below a key or a link (``a/b`` where ``a`` is a key or in the batch).

        One ``open`` per distinct directory of the batch. A key that is itself
        a directory of keys is met by its rename instead (no check per key).

        Raises
        ------
        InvalidKeyError
            Naming the key and the key (or link) it collides with.
        """
        if not any("/" in key for key in keys):
            return  # flat keys: a directory in the way is met by the rename (see _place)
        in_batch = set(keys)
        for key in keys:
            parts = key.split("/")
            for depth in range(1, len(parts)):
                prefix = "/".join(parts[:depth])
                if prefix in in_batch:
                    raise _prefix_conflict(tree.namespace, key, f"{prefix!r} is also saved in this batch")
            tree.parent(key, probe=True)

    @staticmethod
    def _place(tree: _Tree, key: str, put: Callable[[int, str], None]) -> int:
        """Open (making) the directories of ``key`` and run ``put(directory_fd, name)``, despite pruners.

        Another process that empties a directory removes it; if that happens
        while we hold it open, the directory is opened (made) again, a few
        times. Returns the directory's descriptor (for fsync).
        """
        for attempt in range(_DIRECTORY_RACE_ATTEMPTS):
            try:
                found = tree.parent(key)  # create=True: made, or raised; None only if the namespace is gone
                if found is None:
                    raise FileNotFoundError(errno.ENOENT, "the namespace directory was removed meanwhile",
                                            tree.namespace)
                fd, name = found
                put(fd, name)
                return fd
            except IsADirectoryError:
                raise _prefix_conflict(tree.namespace, key,
                                       "a directory is in its place (keys below it, or left empty)") from None
            except FileNotFoundError:
                # Linux refuses new entries in a removed directory: another process pruned it.
                if attempt == _DIRECTORY_RACE_ATTEMPTS - 1 or "/" not in key:
                    raise
                tree.forget(key)
        raise AssertionError("unreachable")

    @staticmethod
    def _make_directory(namespace: str) -> None:
        """Create the namespace directory; a file in its place is named as such."""
        found = stat_or_none(namespace, f"look at namespace {namespace!r}")
        if found is not None and not stat.S_ISDIR(found.st_mode):
            raise storage_error(
                f"namespace {namespace!r} is a file, not a directory; the simple backend keeps a namespace "
                "in a directory (use taridx for a tar file)",
                NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), namespace),
            )
        with storage_errors(f"create namespace directory {namespace!r}"):
            os.makedirs(namespace, exist_ok=True)

    # ----------------------------------------------------------------- reads
    @staticmethod
    def _open_key(tree: _Tree, key: str) -> int | None:
        """A descriptor of the key's regular file, never through a link; ``None`` if it is not a key."""
        found = tree.parent(key)
        if found is None:
            return None
        directory, name = found
        try:
            fd = os.open(name, _READ, dir_fd=directory)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # the key itself is a symbolic link
            raise os_error(f"read key {key!r} in namespace {tree.namespace!r}", exc) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None  # a directory, FIFO or device is not a key
        return fd

    def _read_each(self, namespace: str, keys: Sequence[str],
                   read: Callable[[int, int], Buffer | None]) -> list[Buffer | None]:
        """Each key's value as ``read(fd, position)`` gives it (position in ``keys``), ``None`` where missing."""
        values: list[Buffer | None] = []
        with _Tree(namespace, create=False) as tree:
            for position, key in enumerate(keys):
                fd = self._open_key(tree, key)
                if fd is None:
                    values.append(None)
                    continue
                try:
                    values.append(read(fd, position))
                except OSError as exc:
                    raise os_error(f"read key {key!r} in namespace {namespace!r}", exc) from exc
                finally:
                    os.close(fd)
        return values

    def read_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        return self._read_each(namespace, keys, lambda fd, _: _read_all(fd))  # type: ignore[return-value]

    def read_buffers(self, namespace: str, keys: Sequence[str], verify: bool = True) -> list[Buffer | None]:
        # docstring inherited: read straight into numpy-allocated memory (far fewer page faults)
        return self._read_each(namespace, keys, lambda fd, _: _read_into_numpy(fd))

    def read_buffer_streamed(
        self, namespace: str, key: str, consume: Callable[[memoryview], object], verify: bool = True,
    ) -> Buffer | None:
        # docstring inherited: pieces handed over as they are read from the file
        return self._read_each(namespace, [key], lambda fd, _: _read_into_numpy(fd, consume))[0]

    def read_ranges_many(
        self, namespace: str, keys: Sequence[str], ranges: Sequence[tuple[int, int | None]],
    ) -> list[bytes | None]:
        # docstring inherited: a pread of the slice
        def read_slice(fd: int, position: int) -> bytes:
            offset, length = slice_span(os.fstat(fd).st_size, *ranges[position])
            buffer = bytearray(length)
            return bytes(buffer[:fill_buffer(fd, memoryview(buffer), offset, None)])

        return self._read_each(namespace, keys, read_slice)  # type: ignore[return-value]

    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        answers = []
        with _Tree(namespace, create=False) as tree:
            for key in keys:
                found = tree.parent(key)
                answers.append(found is not None and _regular(*found, key, namespace))
        return answers

    def list_matching(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited: walks only below the pattern's literal directory ("run/" for "run/*.npz")
        if not has_glob(pattern):
            # One stat instead of a directory scan: the common "does it exist" listing.
            if pattern.startswith("/") or "\0" in pattern:
                return iter([])
            return iter([pattern] if self.exists_many(namespace, [pattern])[0] else [])
        matches = key_matcher(pattern)
        start = literal_prefix(pattern)
        found: list[str] = []
        with _Tree(namespace, create=False) as tree:
            top = tree.parent(start + "x") if start else (tree.root(), "")
            if top is None or top[0] is None:
                return iter([])
            try:
                readable = os.open(".", _READABLE_DIRECTORY, dir_fd=top[0])
            except OSError as exc:
                raise os_error(f"list namespace {namespace!r}", exc) from exc
            self._walk(readable, start, matches, found, namespace)
        return iter(found)

    def _walk(self, fd: int, relative: str, matches: Callable[[str], bool], found: list[str], namespace: str) -> None:
        """Add the matching keys below directory ``fd``; subdirectories are opened without following links."""
        try:
            with os.scandir(fd) as entries:
                children = []
                for entry in entries:
                    name = entry.name
                    if name.startswith(RESERVED_PREFIX):
                        continue
                    key = relative + name
                    if entry.is_dir(follow_symlinks=False):
                        children.append(name)
                    elif entry.is_file(follow_symlinks=False) and matches(key):
                        found.append(key)
            for name in children:
                try:
                    child = os.open(name, _READABLE_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # removed (or swapped for a link) meanwhile
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        continue
                    raise os_error(f"list namespace {namespace!r}", exc) from exc
                self._walk(child, relative + name + "/", matches, found, namespace)
        except OSError as exc:
            raise os_error(f"list namespace {namespace!r}", exc) from exc
        finally:
            os.close(fd)

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        found = stat_or_none(namespace, f"look at namespace {namespace!r}")
        return found is not None and stat.S_ISDIR(found.st_mode)

    def namespace_identity(self, namespace: str) -> Hashable | None:
        # docstring inherited: the directory's device and inode
        return path_identity(namespace)

    def namespace_path(self, namespace: str) -> str | None:
        # docstring inherited
        return os.path.realpath(namespace)

    # --------------------------------------------------------- removes, moves
    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        # docstring inherited
        with _Tree(namespace, create=False) as tree:
            removed = []
            for key in keys:
                found = tree.parent(key)
                if found is None or not _regular(*found, key, namespace):
                    continue  # not a key: absent, a directory, a link (or below one)
                directory, name = found
                try:
                    os.unlink(name, dir_fd=directory)  # a link swapped in meanwhile: the link goes, not its target
                except _NOT_THERE:
                    continue
                except OSError as exc:
                    with storage_errors(f"remove key {key!r} in namespace {namespace!r}"):
                        raise exc
                removed.append(key)
            tree.prune([key for key in removed if "/" in key])

    def move_many(self, source: str, pairs: Sequence[tuple[str, str]], destination: str) -> None:
        # docstring inherited
        self._make_directory(destination)
        missing: list[str] = []
        cross_device: list[tuple[str, str]] = []
        used = set()
        with _Tree(source, create=False) as origin, _Tree(destination, create=True) as target:
            self._check_places(target, [new for _, new in pairs])
            moved = []
            for old, new in pairs:
                found = origin.parent(old)
                if found is None or not _regular(*found, old, source):
                    missing.append(old)  # absent, or not a key (a directory, a symbolic link)
                    continue
                try:
                    used.add(self._place(target, new, functools.partial(_rename, found)))
                except _SourceGone:
                    missing.append(old)  # removed by another process meanwhile
                    continue
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        with storage_errors(f"move key {old!r} from {source!r} to {destination!r}"):
                            raise
                    cross_device.append((old, new))
                    continue
                moved.append(old)
            origin.prune([key for key in moved if "/" in key])
            if self.fsync and moved:
                with storage_errors(f"flush namespace directories of {destination!r} and {source!r}"):
                    for fd in used | set(origin.descriptors()):
                        _fsync_directory(fd)
        if cross_device:
            # Namespaces on different file systems: fall back to copy and delete.
            super().move_many(source, cross_device, destination)
        if missing:
            raise KeyNotFoundError(source, missing)


def _rename(source: tuple[int, str], directory: int, name: str) -> None:
    """Rename ``source`` (directory descriptor, name) to ``name`` in ``directory``; the source gone is no retry."""
    try:
        os.replace(source[1], name, src_dir_fd=source[0], dst_dir_fd=directory)
    except FileNotFoundError:
        try:
            os.stat(source[1], dir_fd=source[0], follow_symlinks=False)
        except FileNotFoundError:
            raise _SourceGone from None
        raise  # the destination directory was pruned meanwhile: _place makes it again


def _read_all(fd: int) -> bytes:
    with open(fd, "rb", buffering=0, closefd=False) as handle:
        return handle.read()


def _write_at(value: Buffer, fsync: bool, fd: int, name: str) -> None:
    """Write ``value`` as ``name`` in the open directory ``fd`` (atomically)."""
    atomic_write(name, value, fsync=fsync, dir_fd=fd)


def _read_into_numpy(fd: int, consume: Callable[[memoryview], object] | None = None) -> memoryview | None:
    buffer = np.empty(os.fstat(fd).st_size, dtype=np.uint8).data
    return buffer[:fill_buffer(fd, buffer, 0, consume)]
