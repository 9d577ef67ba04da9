"""The ``simple`` backend: a namespace is a directory, a key is a file in it.

Easy to view and edit with ordinary tools. Every write goes to a temporary
file in the same directory and is renamed over the key, so a reader never
sees a partial file, also while a writer is killed. Temporary files carry the
reserved ``.mummi_io`` prefix and are never listed as keys.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator, Sequence

import numpy as np

from .._fs import atomic_write, fsync_directory, os_error, stat_or_none, storage_errors
from ..abc import Backend, Buffer
from ..errors import KeyNotFoundError, storage_error
from ..keys import RESERVED_PREFIX, has_glob, key_matcher

LOGGER = logging.getLogger(__name__)

# A key that is not a regular file in the namespace directory: absent, a
# subdirectory, or a namespace path that is itself a file.
_NOT_A_KEY = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


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

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync

    def write_many(self, namespace: str, items: Sequence[tuple[str, Buffer]]) -> None:
        # docstring inherited
        self._make_directory(namespace)
        for key, value in items:
            with storage_errors(f"write key {key!r} in namespace {namespace!r}"):
                atomic_write(os.path.join(namespace, key), value, fsync=self.fsync)
        if self.fsync and items:
            with storage_errors(f"flush namespace directory {namespace!r}"):
                fsync_directory(namespace)

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
    def _read(namespace: str, key: str) -> bytes | None:
        try:
            with open(os.path.join(namespace, key), "rb", buffering=0) as handle:
                return handle.read()
        except _NOT_A_KEY:
            return None
        except OSError as exc:
            with storage_errors(f"read key {key!r} in namespace {namespace!r}"):
                raise exc

    def read_buffers(self, namespace: str, keys: Sequence[str], verify: bool = True) -> list[Buffer | None]:
        # docstring inherited: read straight into numpy-allocated memory (far fewer page faults)
        buffers: list[Buffer | None] = []
        for key in keys:
            try:
                with open(os.path.join(namespace, key), "rb", buffering=0) as handle:
                    size = os.fstat(handle.fileno()).st_size
                    buffer = np.empty(size, dtype=np.uint8)
                    got = handle.readinto(buffer)
                    buffers.append(memoryview(buffer)[:got] if got is not None else None)
            except _NOT_A_KEY:
                buffers.append(None)
            except OSError as exc:
                raise os_error(f"read key {key!r} in namespace {namespace!r}", exc) from exc
        return buffers

    def read_prefix_many(self, namespace: str, keys: Sequence[str], size: int) -> list[bytes | None]:
        # docstring inherited
        heads: list[bytes | None] = []
        for key in keys:
            try:
                with open(os.path.join(namespace, key), "rb", buffering=0) as handle:
                    heads.append(handle.read(size))
            except _NOT_A_KEY:
                heads.append(None)
            except OSError as exc:
                raise os_error(f"read key {key!r} in namespace {namespace!r}", exc) from exc
        return heads

    def delete_many(self, namespace: str, keys: Sequence[str]) -> None:
        # docstring inherited
        for key in keys:
            try:
                os.unlink(os.path.join(namespace, key))
            except _NOT_A_KEY:
                continue
            except OSError as exc:
                with storage_errors(f"remove key {key!r} in namespace {namespace!r}"):
                    raise exc

    @staticmethod
    def _is_file(namespace: str, key: str) -> bool:
        """Whether ``key`` is a file of the namespace; a path we may not look at raises, not ``False``."""
        found = stat_or_none(os.path.join(namespace, key), f"look for key {key!r} in namespace {namespace!r}")
        return found is not None and stat.S_ISREG(found.st_mode)

    def exists_many(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        return [self._is_file(namespace, key) for key in keys]

    def list(self, namespace: str, pattern: str) -> Iterator[str]:
        # docstring inherited
        if not has_glob(pattern):
            # One stat instead of a directory scan: the common "does it exist" listing.
            return iter([pattern] if self._is_file(namespace, pattern) else [])
        matches = key_matcher(pattern)
        try:
            with os.scandir(namespace) as entries:
                return iter([
                    entry.name for entry in entries
                    if not entry.name.startswith(RESERVED_PREFIX) and matches(entry.name) and entry.is_file()
                ])
        except _NOT_A_KEY:
            return iter([])
        except OSError as exc:
            raise os_error(f"list namespace {namespace!r}", exc) from exc

    def namespace_exists(self, namespace: str) -> bool:
        # docstring inherited
        found = stat_or_none(namespace, f"look at namespace {namespace!r}")
        return found is not None and stat.S_ISDIR(found.st_mode)

    def move_many(self, source: str, pairs: Sequence[tuple[str, str]], destination: str) -> None:
        # docstring inherited
        self._make_directory(destination)
        missing = []
        cross_device = []
        for old, new in pairs:
            try:
                os.replace(os.path.join(source, old), os.path.join(destination, new))
            except FileNotFoundError:
                missing.append(old)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    with storage_errors(f"move key {old!r} from {source!r} to {destination!r}"):
                        raise
                cross_device.append((old, new))
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
