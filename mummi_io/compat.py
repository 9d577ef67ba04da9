"""MuMMI's own names and conventions over mummi_io's strict API, so MuMMI code runs unchanged.

``compat.get_io(kind)`` returns an object with the methods, signatures and
conventions of what ``mummi_core.get_io(kind)`` returned::

    missing keys          -> None (one key: None; a list: None if any is missing on simple
                             and taridx, a list with None in place of each missing key on redis)
    saves                 -> True, or False with the error logged at ERROR
    check_environment()   -> a bool
    list_keys()           -> de-duplicated base names, matched as MuMMI's backend did
                             (simple: glob; taridx: pathlib's right-anchored match; redis: Redis glob)
    npz reader            -> MuMMI's: loads pickled object arrays (allow_pickle=True)
    absolute keys         -> accepted when they lie inside the namespace
    redis, per server     -> list_servers_to_keys, load_npz_at_server, rename_files_at_server,
                             remove_files_at_server, bind_global_redis, bind_local_redis
    taridx                -> files_exist, load_index, regenerate_index

``compat.install()`` makes ``mummi_core.get_io`` and
``mummi_core.interfaces.get_io`` (and the ``IO_Simple``/``IO_Tar``/``IO_Redis``
names) return these objects when ``mummi_core`` is importable: a MuMMI
deployment switches with one line, before its other imports.

Everything underneath is the strict API (:func:`mummi_io.get_io`): this
module converts arguments and results, and implements no storage.
"""

from __future__ import annotations

import functools
import importlib
import io as stdio
import logging
import os
import posixpath
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from .core.contract import Locating, Maintainable, Sharded
from .core.errors import InvalidKeyError, MummiIOError
from .core.keys import validate_key
from .facade import checkpoint, signals
from .facade.npz import write_npz
from .facade.npz import read_npz as _strict_read_npz
from .registry import IO
from .registry import get_io as _strict_get_io

LOGGER = logging.getLogger(__name__)

KNOWN_INTERFACES = ["simple", "taridx", "redis"]

#: MuMMI's npz reader: object arrays load (MuMMI's files hold them; pickle runs code, so trust the files).
read_npz = functools.partial(_strict_read_npz, allow_pickle=True)


def get_interfaces() -> list[str]:
    """The backend kinds MuMMI knew."""
    return list(KNOWN_INTERFACES)


def _relative(namespace: str, key: str) -> str:
    """A key given as an absolute path inside the namespace, made relative (MuMMI's RDF writer does this)."""
    key = os.fspath(key)  # MuMMI's os.path.join took pathlib paths too
    if not os.path.isabs(key):
        return key
    root = os.path.abspath(namespace).rstrip("/") + "/"
    if key.startswith(root):
        return key[len(root):]
    raise InvalidKeyError(f"key {key!r} is an absolute path outside namespace {namespace!r}")


def _usable_keys(namespace: str, keys: Sequence[str], action: str) -> dict[int, str]:
    """``{position: key}`` for the keys that can be keys of ``namespace``; the others are logged (MuMMI's way)."""
    usable = {}
    for position, key in enumerate(keys):
        try:
            usable[position] = validate_key(_relative(namespace, key))
        except InvalidKeyError as exc:
            LOGGER.error("Failed to %s %r in %s: %s", action, key, namespace, exc)
    return usable


def _glob_match(pattern: str, candidate: str) -> bool:
    """``glob.glob``'s rule for one path: component by component, no hidden names for a plain ``*``."""
    parts, names = pattern.split("/"), candidate.split("/")
    return len(parts) == len(names) and all(
        fnmatchcase(name, part) and (not name.startswith(".") or part.startswith("."))
        for part, name in zip(parts, names)
    )


class MummiIO:
    """What ``mummi_core.get_io(kind)`` returned, over a strict :class:`mummi_io.IO`.

    Picklable (MuMMI hands its methods to ``multiprocessing.Pool``): the
    connection to the storage is opened again in the process that needs it.
    """

    def __init__(self, kind: str, **options: Any) -> None:
        if kind not in KNOWN_INTERFACES:
            raise ValueError(f"Invalid IO interface requested ({kind})")
        self._kind = kind
        self._options = options
        self._io: IO | None = None

    def __repr__(self) -> str:
        return f"<mummi_io.compat {self._kind}>"

    def __getstate__(self) -> dict[str, Any]:
        return {"_kind": self._kind, "_options": self._options, "_io": None}

    @property
    def io(self) -> IO:
        """The strict API underneath."""
        if self._io is None:
            self._io = _strict_get_io(self._kind, **self._options)
        return self._io

    # ------------------------------------------------------------------ info
    def get_type(self) -> str:
        return self._kind

    def check_environment(self) -> bool:
        """``True`` if the backend can work here; never raises (MuMMI's convention)."""
        if self._kind == "redis":
            return self.bind_local_redis()
        return True

    # ------------------------------------------------------------ existence
    def file_exists(self, namespace: str, key: str) -> bool:
        return self.files_exist(namespace, [key])[0]

    def files_exist(self, namespace: str, keys: Sequence[str]) -> list[bool]:
        """Whether each key holds a value; a key that cannot be one is logged and ``False``."""
        answers = [False] * len(keys)
        valid = _usable_keys(namespace, keys, "check")
        try:
            found = self.io.file_exists(namespace, list(valid.values())) if valid else []
        except MummiIOError as exc:
            LOGGER.error("Failed to check whether files exist in %s: %s", namespace, exc)
            return answers
        for position, exists in zip(valid, found):
            answers[position] = bool(exists)
        return answers

    def namespace_exists(self, namespace: str) -> bool:
        try:
            return self.io.namespace_exists(namespace)
        except MummiIOError as exc:
            LOGGER.error("Failed to check namespace %s: %s", namespace, exc)
            return False

    def list_keys(self, namespace: str, keypattern: str) -> list[str]:
        """Base names of the keys matching ``keypattern``, de-duplicated, as MuMMI's backend matched them."""
        try:
            if self._kind == "redis":  # Redis's glob on the whole key
                found = self.io.list_keys(namespace, keypattern)
            elif self._kind == "taridx":  # pathlib's match: right-anchored, component by component
                found = [k for k in self.io.list_keys(namespace) if PurePosixPath(k).match(keypattern)]
            else:  # glob.glob: entries (values or directories) at the pattern's depth
                depth = keypattern.count("/") + 1
                entries = {"/".join(k.split("/")[:depth]) for k in self.io.list_keys(namespace)
                           if k.count("/") + 1 >= depth}
                found = [entry for entry in entries if _glob_match(keypattern, entry)]
        except MummiIOError as exc:
            LOGGER.error("Failed to list keys of %s: %s", namespace, exc)
            return []
        return sorted({posixpath.basename(key) for key in found})

    # ------------------------------------------------------------ save/load
    def load_files(self, namespace: str, filenames: str | list[str]) -> Any:
        """Bytes of each key; ``None`` for what is missing (see the module docstring)."""
        if isinstance(filenames, (str, os.PathLike)):
            return self._load(namespace, [filenames])[0]
        if isinstance(filenames, list):
            values = self._load(namespace, filenames)
            if self._kind != "redis" and any(value is None for value in values):
                return None  # MuMMI's simple and taridx: all of them, or nothing
            return values
        raise ValueError(f"Incorrect arguments (keys={type(filenames)}). Need a filename or a list of filenames")

    def _load(self, namespace: str, keys: list[str]) -> list[bytes | None]:
        """Values of ``keys``; a key that cannot be one (outside the namespace, ``..``) is logged and ``None``."""
        values: list[bytes | None] = [None] * len(keys)
        valid = _usable_keys(namespace, keys, "load")
        found = self.io.load_files(namespace, list(valid.values()), missing=None) if valid else []
        for position, value in zip(valid, found):
            values[position] = value
        return values

    def save_files(self, namespace: str, keys: str | list[str], data: Any) -> bool:
        """Store values; ``True``, or ``False`` with the error logged (MuMMI's convention)."""
        try:
            if isinstance(keys, list) != isinstance(data, list) or (isinstance(keys, list) and len(keys) != len(data)):
                raise ValueError("keys and data must both be one value, or lists of the same length")
            if isinstance(keys, list):
                self.io.save_files(namespace, [validate_key(_relative(namespace, k)) for k in keys], data)
            else:
                self.io.save_files(namespace, validate_key(_relative(namespace, keys)), data)
            return True
        except (MummiIOError, ValueError, TypeError) as exc:
            LOGGER.error("Failed to save files: %s", exc)
            return False

    def remove_files(self, namespace: str, keys: str | list[str]) -> None:
        """Remove keys; one that cannot be a key of the namespace is logged and left (MuMMI's way)."""
        names = [keys] if isinstance(keys, (str, os.PathLike)) else list(keys)
        usable = _usable_keys(namespace, names, "remove")
        if usable:
            self.io.remove_files(namespace, list(usable.values()))

    def move_key(self, namespace: str, key: str, prefix: str = "done", suffix: str = ".npz") -> None:
        usable = _usable_keys(namespace, [key], "move")
        if usable:
            self.io.move_key(namespace, usable[0], prefix, suffix)

    # ------------------------------------------------------------------ npz
    def load_npz(self, namespace: str, keys: str | list[str], reader_func: Callable[[Any], Any] = read_npz) -> Any:
        """``reader_func`` of each ``key.npz``; ``None`` where :meth:`load_files` gives ``None``."""
        names = [keys] if isinstance(keys, str) else keys
        if not isinstance(names, list):
            raise ValueError(f"Incorrect arguments (keys={type(keys)}). Need a filename or a list of filenames")
        blobs = self.load_files(namespace, [_npz(k) for k in names])
        if blobs is None:
            return None
        objects = [None if blob is None else reader_func(stdio.BytesIO(blob)) for blob in blobs]
        return objects[0] if isinstance(keys, str) else objects

    def save_npz(self, namespace: str, keys: str | list[str], data: Any,
                 writer_func: Callable[[Any, Any], Any] = write_npz) -> bool:
        """Serialize with ``writer_func`` (its errors propagate, as in MuMMI) and save; ``True``/``False``."""
        names = [keys] if isinstance(keys, str) else keys
        objects = [data] if isinstance(keys, str) else data
        blobs = []
        for obj in objects:
            buffer = stdio.BytesIO()
            written = writer_func(buffer, obj)
            blobs.append((written if written is not None else buffer).getvalue())
        return self.save_files(namespace, [_npz(k) for k in names], blobs)

    # ----------------------------------------------------- checkpoints, signals
    @staticmethod
    def take_backup(filename: str, suffix: str | None = None) -> None:
        checkpoint.take_backup(filename, suffix)

    @staticmethod
    def save_checkpoint(filename: str, data: dict, use_tstamp: bool = False, cleanup: bool = False,
                        keep_checkpoint: int = 2) -> None:
        """Write a checkpoint; as MuMMI did, the time stamp is also put into ``data['ts']``."""
        data["ts"] = checkpoint.save_checkpoint(filename, data, use_tstamp=use_tstamp, cleanup=cleanup,
                                                keep_checkpoint=keep_checkpoint)

    @staticmethod
    def load_checkpoint(filename: str, loader: Any = None) -> dict:
        return checkpoint.load_checkpoint(filename, loader)

    @staticmethod
    def send_signal(path: str, key: str) -> None:
        signals.send_signal(path, key)

    @staticmethod
    def test_signal(path: str, key: str) -> bool:
        return bool(signals.test_signal(path, key))

    # ----------------------------------------------------------------- taridx
    def load_index(self, namespace: str, idx_start: int = 0, idx_end: int = -1) -> np.ndarray | None:
        """``[[key, offset, size], ...]`` as strings, unique and sorted by key; ``None`` if there is no namespace."""
        if not self.namespace_exists(namespace):
            LOGGER.error("Missing index of %s", namespace)
            return None
        locating = self.io.capability(Locating)
        if locating is not None:
            rows = locating.index_entries(self.io.normalize_namespace(namespace))
        else:
            keys = self.io.list_keys(namespace)
            rows = [(s["key"], 0, s["size"]) for s in self.io.stat_keys(namespace, keys) if s is not None]
        rows = rows[idx_start:None if idx_end == -1 else idx_end]
        return np.array([[key, str(offset), str(size)] for key, offset, size in rows], dtype=str).reshape(-1, 3)

    def regenerate_index(self, filename: str) -> None:
        if os.path.exists(filename) and self.io.capability(Maintainable) is not None:
            self.io.reindex(filename)

    # ------------------------------------------------------- redis, per server
    def _redis(self) -> Sharded:
        sharded = self.io.capability(Sharded)
        if sharded is None:
            raise AttributeError(f"the per-server methods belong to the redis interface, not {self._kind}")
        return sharded

    def list_servers_to_keys(self, namespace: str, keypattern: str) -> dict[str, list[str]]:
        """``{server: [keys]}``: where each key matching ``keypattern`` lives; ``{}`` on error."""
        try:
            backend = self._redis()
            grouped = backend.keys_by_node(namespace, self.io.list_keys(namespace, keypattern))
        except (MummiIOError, AttributeError) as exc:
            LOGGER.error("Failed to list keys: %s", exc)
            return {}
        hosts = [name.rpartition(":")[0] for name in grouped]
        label = {name: host if hosts.count(host) == 1 else name for name, host in zip(grouped, hosts)}
        return {label[name]: keys for name, keys in grouped.items()}

    def load_npz_at_server(self, namespace: str, keys: list[str], hostname: str,
                           reader_func: Callable[[Any], Any] = read_npz) -> dict[str, Any]:
        """``{key: reader_func(value)}`` for the keys found (the server is only a label: placement is known)."""
        values = self._load(namespace, list(keys))
        return {key: reader_func(stdio.BytesIO(value)) for key, value in zip(keys, values) if value is not None}

    def rename_files_at_server(self, old_namespace: str, new_namespace: str, keys: list[str], server: str) -> None:
        """Move the keys that exist from ``old_namespace`` to ``new_namespace`` (errors logged, as in MuMMI)."""
        try:
            present = [k for k, found in zip(keys, self.io.file_exists(old_namespace, list(keys))) if found]
            if present:
                self.io.move_keys(old_namespace, present, dest_namespace=new_namespace)
            LOGGER.info("Renamed %d out of %d keys from %s to %s", len(present), len(keys), old_namespace, new_namespace)
        except MummiIOError as exc:
            LOGGER.error("Failed to rename keys in %s at %s: %s", old_namespace, server, exc)

    def remove_files_at_server(self, namespace: str, keys: list[str], server: str) -> None:
        try:
            self.io.remove_files(namespace, list(keys))
        except MummiIOError as exc:
            LOGGER.error("Failed to delete keys in %s at %s: %s", namespace, server, exc)

    remove_keys_at_server = remove_files_at_server

    @staticmethod
    def bind_global_redis(hostname: str, port: int | str) -> None:
        """Add a node to the server list MuMMI reads (``$MUMMI_ROOT/redis/all_servers.txt``), under its lock."""
        from .backends.redis.nodes import Node, update_registry

        update_registry(server_list_path(), add=[Node(hostname, int(port))])

    @staticmethod
    def bind_local_redis() -> bool:
        """``True`` when a server list names nodes (writes go to each key's node: no local binding)."""
        path = server_list_path()
        try:
            from .backends.redis.nodes import read_registry

            return os.path.isfile(path) and bool(read_registry(path)[0])
        except MummiIOError as exc:
            LOGGER.error("Failed to read the server list %s: %s", path, exc)
            return False


def _npz(key: str) -> str:
    return key if os.path.splitext(key)[1] == ".npz" else key + ".npz"


def server_list_path() -> str:
    """The server list: ``$MUMMI_REDIS_REGISTRY``, else MuMMI's ``$MUMMI_ROOT/redis/all_servers.txt``, else mummi_io's."""
    from .backends.redis.nodes import REGISTRY_ENV, default_registry_path, mummi_server_list

    return os.environ.get(REGISTRY_ENV) or mummi_server_list() or default_registry_path()


@functools.lru_cache(maxsize=None)
def get_io(kind: str) -> MummiIO:
    """MuMMI's ``get_io``: the interface for ``kind`` (one per process), its environment checked."""
    interface = MummiIO(kind)
    interface.check_environment()
    return interface


def install() -> bool:
    """Make ``mummi_core`` hand out these interfaces; ``False`` if ``mummi_core`` is not importable.

    Call it before importing MuMMI's application modules (some build their
    interfaces when imported).
    """
    try:
        core = importlib.import_module("mummi_core")
        interfaces = importlib.import_module("mummi_core.interfaces")
    except ImportError:
        return False
    # Import every backend module first, then patch: a module that fails to import (pytaridx missing,
    # or anything its import runs) is left out whole, and never leaves MuMMI half patched.
    backends = []
    for name, attribute, kind in (("simple", "IO_Simple", "simple"), ("tar", "IO_Tar", "taridx"),
                                  ("redis", "IO_Redis", "redis")):
        try:
            backends.append((importlib.import_module(f"mummi_core.interfaces.{name}"), attribute, kind))
        except Exception as exc:  # noqa: BLE001 - MuMMI's module, not ours: whatever its import raises
            LOGGER.warning("mummi_core.interfaces.%s cannot be imported (%s: %s); it is left unpatched, and "
                           "get_io(%r) gives mummi_io's interface", name, type(exc).__name__, exc, kind)
    for module in (core, interfaces):
        module.get_io = get_io  # type: ignore[attr-defined]
        module.get_interfaces = get_interfaces  # type: ignore[attr-defined]
    for module, attribute, kind in backends:
        setattr(module, attribute, get_io(kind))
    LOGGER.info("mummi_core now uses mummi_io (compat)")
    return True
