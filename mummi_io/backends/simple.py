"""The ``simple`` backend: a namespace is a directory, a key is a file in it.

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
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from .._fs import atomic_write, fsync_directory, os_error, stat_or_none, storage_errors
from ..abc import Backend, Buffer
from ..errors import InvalidKeyError, KeyNotFoundError, storage_error
from ..keys import RESERVED_PREFIX, has_glob, key_matcher, literal_prefix

LOGGER = logging.getLogger(__name__)

# A key that is not a regular file in the namespace directory: absent, a
# subdirectory, or a namespace path that is itself a file.
_NOT_A_KEY = (FileNotFoundError, IsADirectoryError, NotADirectoryError)
_DIRECTORY_RACE_ATTEMPTS = 10  # how often a save remakes a directory that a concurrent remove pruned


def _first_directory_where(namespace: str, key: str, test: Callable[[int], bool]) -> str:
    """The first directory of ``key`` whose ``lstat`` mode passes ``test`` ("" if none; the walk stops at a gap)."""
    parts = key.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        try:
            if test(os.lstat(os.path.join(namespace, prefix)).st_mode):
                return prefix
        except (FileNotFoundError, NotADirectoryError):
            return ""
        except OSError as exc:
            raise os_error(f"look at {prefix!r} in namespace {namespace!r}", exc) from exc
    return ""


def _linked_directory(namespace: str, key: str) -> str:
    """The first directory of ``key`` inside the namespace that is a symbolic link ("" if none)."""
    return _first_directory_where(namespace, key, stat.S_ISLNK)


def _file_among_directories(namespace: str, key: str) -> str:
    """The first directory of ``key`` that is something other than a directory ("" if none is)."""
    return _first_directory_where(namespace, key, lambda mode: not stat.S_ISDIR(mode))


def _prefix_conflict(namespace: str, key: str, why: str) -> InvalidKeyError:
    return InvalidKeyError(
        f"key {key!r} cannot be saved in {namespace!r}: {why}. On the simple backend a key cannot be both a "
        "value and the directory of other keys (a file is not a directory); rename one of them"
    )


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

    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        # docstring inherited
        self._make_directory(namespace)
        self._check_places(namespace, [key for key, _ in items])
        directories = set()
        for key, value in items:
            path = os.path.join(namespace, key)
            with storage_errors(f"write key {key!r} in namespace {namespace!r}"):
                self._in_own_directory(namespace, key, lambda: atomic_write(path, value, fsync=self.fsync))
            directories.add(os.path.dirname(path))
        if self.fsync and items:
            with storage_errors(f"flush namespace directory {namespace!r}"):
                for directory in directories:
                    fsync_directory(directory)

    @staticmethod
    def _check_places(namespace: str, keys: Sequence[str]) -> None:
        """Refuse, before writing, nested keys below a key (``a/b`` where ``a`` is a key or in the batch).

        One ``stat`` per distinct directory of the batch. A key that is itself
        a directory of keys is met by its rename instead (no ``stat`` per key).

        Raises
        ------
        InvalidKeyError
            Naming the key and the key it collides with.
        """
        if not any("/" in key for key in keys):
            return  # flat keys: a directory in the way is met by the rename (see write_many)
        in_batch = set(keys)
        checked: set[str] = set()
        for key in keys:
            parts = key.split("/")
            for depth in range(1, len(parts)):
                prefix = "/".join(parts[:depth])
                if prefix in in_batch:
                    raise _prefix_conflict(namespace, key, f"{prefix!r} is also saved in this batch")
                if prefix in checked:
                    continue
                checked.add(prefix)
                try:
                    found: os.stat_result | None = os.lstat(os.path.join(namespace, prefix))
                except (FileNotFoundError, NotADirectoryError):
                    found = None
                except OSError as exc:
                    raise os_error(f"look for key {prefix!r} in namespace {namespace!r}", exc) from exc
                if found is not None and stat.S_ISLNK(found.st_mode):
                    raise InvalidKeyError(
                        f"key {key!r} cannot be saved in {namespace!r}: {prefix!r} is a symbolic link, and keys never "
                        "lead outside their namespace; replace the link with a directory"
                    )
                if found is not None and not stat.S_ISDIR(found.st_mode):
                    raise _prefix_conflict(namespace, key, f"{prefix!r} is a key")

    @staticmethod
    def _in_own_directory(namespace: str, key: str, place: Callable[[], None]) -> None:
        """Make the directories of ``key`` and run ``place`` (which puts the file there), despite pruners.

        Another process that empties a directory removes it; if that happens
        between our ``makedirs`` and ``place``, the directory is made again
        (a few times; a namespace under that much churn then raises).
        """
        path = os.path.join(namespace, key)
        for attempt in range(_DIRECTORY_RACE_ATTEMPTS):
            try:
                if "/" in key:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                place()
                return
            except IsADirectoryError:
                raise _prefix_conflict(namespace, key, "a directory is in its place (keys below it, or left empty)") from None
            except (FileExistsError, NotADirectoryError):
                if "/" not in key:
                    raise
                blocking = _file_among_directories(namespace, key)
                if blocking:
                    raise _prefix_conflict(namespace, key, f"{blocking!r} is a key (saved by another process)") from None
                if attempt == _DIRECTORY_RACE_ATTEMPTS - 1:
                    raise  # not a key in the way: a directory made and pruned again and again meanwhile
            except FileNotFoundError:
                if attempt == _DIRECTORY_RACE_ATTEMPTS - 1 or "/" not in key:
                    raise

    @staticmethod
    def _prune(namespace: str, key: str) -> None:
        """Remove the directories of ``key`` that are now empty, up to (not including) the namespace."""
        parts = key.split("/")[:-1]
        while parts:
            try:
                os.rmdir(os.path.join(namespace, *parts))
            except OSError:
                return  # not empty (or already gone): stop there
            parts.pop()

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

    def read_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        return [self._read(namespace, key) for key in keys]

    @staticmethod
    def _open(namespace: str, key: str) -> int | None:
        """A descriptor of the key's file, never through a symbolic link; ``None`` if it is not a key.

        A symbolic link inside the namespace (as the key, or as one of its
        directories) is not followed: a key never leads outside its namespace.
        """
        if "/" in key and _linked_directory(namespace, key):
            return None
        try:
            # O_NONBLOCK: a FIFO planted in the namespace must not hang the reader (no effect on files)
            fd = os.open(os.path.join(namespace, key), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except _NOT_A_KEY:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # the key itself is a symbolic link
            raise os_error(f"read key {key!r} in namespace {namespace!r}", exc) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None  # a directory, FIFO or device is not a key
        return fd

    @classmethod
    def _read(cls, namespace: str, key: str) -> bytes | None:
        fd = cls._open(namespace, key)
        if fd is None:
            return None
        with open(fd, "rb", buffering=0, closefd=True) as handle:
            return handle.read()

    def read_buffers(self, namespace: str, keys: Sequence[str], verify: bool = True) -> list[Buffer | None]:
        # docstring inherited: read straight into numpy-allocated memory (far fewer page faults)
        buffers: list[Buffer | None] = []
        for key in keys:
            fd = self._open(namespace, key)
            if fd is None:
                buffers.append(None)
                continue
            with open(fd, "rb", buffering=0, closefd=True) as handle:
                buffer = np.empty(os.fstat(fd).st_size, dtype=np.uint8)
                got = handle.readinto(buffer)
                buffers.append(memoryview(buffer)[:got] if got is not None else None)
        return buffers

    def read_prefix_many(self, namespace: str, keys: Sequence[str], size: int) -> list[bytes | None]:
        # docstring inherited
        heads: list[bytes | None] = []
        for key in keys:
            fd = self._open(namespace, key)
            if fd is None:
                heads.append(None)
                continue
            with open(fd, "rb", buffering=0, closefd=True) as handle:
                heads.append(handle.read(size))
        return heads

    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        # docstring inherited
        for key in keys:
            if not self._is_file(namespace, key):
                continue  # not a key: absent, a directory, a link (or below one), which keys never go through
            try:
                os.unlink(os.path.join(namespace, key))
            except _NOT_A_KEY:
                continue
            except OSError as exc:
                with storage_errors(f"remove key {key!r} in namespace {namespace!r}"):
                    raise exc
            if "/" in key:
                self._prune(namespace, key)

    @staticmethod
    def _is_file(namespace: str, key: str) -> bool:
        """Whether ``key`` is a file of the namespace (not a symbolic link); a path we may not look at raises."""
        if "/" in key and _linked_directory(namespace, key):
            return False
        path = os.path.join(namespace, key)
        try:
            found = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise os_error(f"look for key {key!r} in namespace {namespace!r}", exc) from exc
        return stat.S_ISREG(found.st_mode)

    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        return [self._is_file(namespace, key) for key in keys]

    def list(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited: walks only below the pattern's literal directory ("run/" for "run/*.npz")
        if not has_glob(pattern):
            # One stat instead of a directory scan: the common "does it exist" listing.
            if pattern.startswith("/") or "\0" in pattern:
                return iter([])
            return iter([pattern] if self._is_file(namespace, pattern) else [])
        matches = key_matcher(pattern)
        start = literal_prefix(pattern)
        if start and _linked_directory(namespace, start + "x"):
            return iter([])  # the pattern's directory is (inside) a symbolic link: not the namespace's
        found: list[str] = []
        pending = [start]
        while pending:
            relative = pending.pop()
            try:
                with os.scandir(os.path.join(namespace, relative) if relative else namespace) as entries:
                    for entry in entries:
                        name = entry.name
                        if name.startswith(RESERVED_PREFIX):
                            continue
                        key = relative + name
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(key + "/")
                        elif matches(key) and entry.is_file(follow_symlinks=False):
                            found.append(key)
            except _NOT_A_KEY:
                continue
            except OSError as exc:
                raise os_error(f"list namespace {namespace!r}", exc) from exc
        return iter(found)

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        found = stat_or_none(namespace, f"look at namespace {namespace!r}")
        return found is not None and stat.S_ISDIR(found.st_mode)

    def move_many(self, source: str, pairs: Sequence[tuple[str, str]], destination: str) -> None:
        # docstring inherited
        self._make_directory(destination)
        self._check_places(destination, [new for _, new in pairs])
        missing = []
        cross_device = []
        for old, new in pairs:
            origin = os.path.join(source, old)
            target = os.path.join(destination, new)
            if not self._is_file(source, old):
                missing.append(old)  # absent, or not a key (a directory, a symbolic link)
                continue
            try:
                self._in_own_directory(destination, new, lambda: os.replace(origin, target))
            except FileNotFoundError:
                missing.append(old)  # removed by another process meanwhile
                continue
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    with storage_errors(f"move key {old!r} from {source!r} to {destination!r}"):
                        raise
                cross_device.append((old, new))
                continue
            if "/" in old:
                self._prune(source, old)
        if cross_device:
            # Namespaces on different file systems: fall back to copy and delete.
            super().move_many(source, cross_device, destination)
        if self.fsync and pairs:
            with storage_errors(f"flush namespace directory {destination!r}"):
                fsync_directory(destination)
                if source != destination:
                    fsync_directory(source)
        if missing:
            raise KeyNotFoundError(source, missing)
