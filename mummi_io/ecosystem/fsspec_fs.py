"""An fsspec file system over every backend: ``fsspec.open("mummi://taridx/campaign/analysis!/table.csv")``.

The URL form, defined here once::

    mummi://<kind>/<namespace>!/<key>

- ``<kind>``: ``simple``, ``taridx`` or ``redis`` (any kind ``get_io`` knows);
- ``<namespace>``: as given to ``get_io(kind)``'s calls: a path for
  ``simple``/``taridx`` (relative to the working directory, or absolute with
  its leading ``/``: ``mummi://taridx//scratch/run!/x``), any name for
  ``redis``. It must not contain ``!/``;
- ``!/`` separates the namespace from the key (as a ``jar:`` URL does);
- ``<key>``: a mummi_io key (``/``-separated components); ``!/`` alone, or
  ``!/dir``, is a directory: the keys below it;
- backend options (Redis ``nodes``, ``password``, ``cluster``...) are fsspec
  storage options, passed to ``get_io`` (``fsspec.open(url, nodes=[...])``,
  ``pd.read_csv(url, storage_options={...})``), else the environment
  (``MUMMI_REDIS_NODES``, the registry file...).

Directories are the key prefixes that exist (as on object stores): ``mkdir``
does nothing, and a directory disappears with its last key. A file opened for
writing is saved when it is closed, whole and atomically (``save_files``).
"""

from __future__ import annotations

import posixpath
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from ..core.errors import InvalidArgumentError, UnknownBackendError
from ..core.keys import glob_literal
from ..registry import IO, get_interfaces, get_io

#: Between the namespace and the key in a ``mummi://`` URL.
SEPARATOR = "!/"
#: Storage options that are fsspec's own (caching, event loops), not the backend's.
FSSPEC_OPTIONS = frozenset({"asynchronous", "loop", "skip_instance_cache", "use_listings_cache",
                            "listings_expiry_time", "max_paths"})



class MummiFileSystem(AbstractFileSystem):
    """fsspec's file system interface over mummi_io namespaces (protocol ``mummi``).

    ``storage_options`` are the backend options ``get_io(kind, **options)``
    takes; one file system serves every kind and namespace its URLs name.
    """

    protocol = "mummi"
    root_marker = ""
    cachable = True

    def __init__(self, **backend_options: Any) -> None:
        super().__init__(**backend_options)
        self.backend_options = {name: value for name, value in backend_options.items() if name not in FSSPEC_OPTIONS}
        self._ios: dict[str, IO] = {}

    # ----------------------------------------------------------------- paths
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("mummi://"):
            path = path[len("mummi://"):]
        return path.rstrip("/")  # the namespace itself is "<kind>/<namespace>!"

    def io_for(self, kind: str) -> IO:
        """The ``IO`` of ``kind`` with this file system's backend options (opened once)."""
        found = self._ios.get(kind)
        if found is None:
            if kind not in get_interfaces():
                raise UnknownBackendError(
                    f"{kind!r} in a mummi:// URL is not a backend; the URL form is "
                    f"mummi://<kind>/<namespace>!/<key> with kind one of {', '.join(get_interfaces())}"
                )
            found = self._ios[kind] = get_io(kind, **self.backend_options)
        return found

    def split(self, path: str) -> tuple[IO, str, str]:
        """``(io, namespace, key)`` of a ``mummi://<kind>/<namespace>!/<key>`` path; the key may be ``""``."""
        stripped = self._strip_protocol(path)
        kind, slash, rest = stripped.partition("/")
        if rest.endswith("!") and SEPARATOR not in rest:
            rest += "/"  # the namespace itself, as fsspec names a parent: "<kind>/<namespace>!"
        namespace, separator, key = rest.partition(SEPARATOR)
        if not slash or not separator or not namespace:
            raise InvalidArgumentError(
                f"{path!r} is not a mummi:// path: the form is mummi://<kind>/<namespace>!/<key> "
                "(e.g. mummi://taridx/campaign/analysis!/table.csv)"
            )
        return self.io_for(kind), namespace, key.strip("/")

    @staticmethod
    def _join(path: str, key: str) -> str:
        """The path of ``key`` in the namespace of ``path`` (protocol stripped)."""
        # "<kind>/<ns>!/<key>" -> "<kind>/<ns>"; the root "<kind>/<ns>!" -> "<kind>/<ns>" (a name may end in "!")
        head = path.partition(SEPARATOR)[0] if SEPARATOR in path else path.removesuffix("!")
        return f"{head}{SEPARATOR}{key}"

    # --------------------------------------------------------------- listing
    def _file_entries(self, path: str, io: IO, namespace: str, keys: list[str]) -> list[dict[str, Any]]:
        stats = io.stat_keys(namespace, keys) if keys else []
        return [{"name": self._join(path, key), "size": stat["size"], "type": "file"}
                for key, stat in zip(keys, stats) if stat is not None]

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The keys and directories directly below ``path``; ``FileNotFoundError`` if there are none."""
        stripped = self._strip_protocol(path)
        io, namespace, key = self.split(stripped)
        below = f"{key}/" if key else ""
        keys = io.list_keys(namespace, glob_literal(below) + "*")
        files: list[str] = []
        directories: set[str] = set()
        for found in keys:
            name, slash, _ = found[len(below):].partition("/")
            if slash:
                directories.add(below + name)
            else:
                files.append(found)
        if not keys:
            if key and io.file_exists(namespace, key):
                return [self.info(stripped)] if detail else [self._join(stripped, key)]
            if key or not io.namespace_exists(namespace):
                raise FileNotFoundError(path)
        if not detail:  # names only: no value is read for its size
            return sorted(self._join(stripped, name) for name in [*directories, *files])
        entries = [{"name": self._join(stripped, name), "size": 0, "type": "directory"} for name in sorted(directories)]
        entries += self._file_entries(stripped, io, namespace, files)
        entries.sort(key=lambda entry: str(entry["name"]))
        return entries

    def walk(self, path: str, maxdepth: int | None = None, topdown: bool = True, on_error: Any = "omit",
             **kwargs: Any) -> Any:
        """fsspec's ``walk`` (and so ``find``, ``du``, ``glob``, a mapper's keys), where only a missing path is empty.

        fsspec omits a path whose listing raises any ``OSError``; a backend
        that cannot answer (a Redis node down, a refused password) raises a
        ``ConnectionError``, an ``OSError`` too, and would then look empty.
        Here only ``FileNotFoundError`` follows ``on_error``; anything else raises.
        """
        def handle(error: OSError) -> None:
            if not isinstance(error, FileNotFoundError) or on_error == "raise":
                raise error
            if callable(on_error):
                on_error(error)

        return super().walk(path, maxdepth=maxdepth, topdown=topdown, on_error=handle, **kwargs)

    def isfile(self, path: str) -> bool:
        """Whether ``path`` is a key (one ``file_exists``: no value is read)."""
        io, namespace, key = self.split(path)
        return bool(key) and io.file_exists(namespace, key)

    def isdir(self, path: str) -> bool:
        """Whether ``path`` is the namespace (and it exists) or a prefix of keys."""
        io, namespace, key = self.split(path)
        if not key:
            return io.namespace_exists(namespace)
        return bool(io.list_keys(namespace, glob_literal(key + "/") + "*"))

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Whether ``path`` is a key or a directory, reading no value.

        A backend that cannot answer (a Redis node down, a damaged index)
        raises its error: fsspec's default would report ``False``, and a
        caller would take an unreadable key for an absent one.
        """
        return self.isfile(path) or self.isdir(path)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """A key's size, or a directory (a prefix of keys, or the namespace itself)."""
        stripped = self._strip_protocol(path)
        io, namespace, key = self.split(stripped)
        if key:
            stat = io.stat_keys(namespace, key)
            if stat is not None:
                return {"name": stripped, "size": stat["size"], "type": "file"}
            if io.list_keys(namespace, glob_literal(key + "/") + "*"):
                return {"name": stripped, "size": 0, "type": "directory"}
        elif io.namespace_exists(namespace):
            return {"name": stripped, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    # ----------------------------------------------------------------- bytes
    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """The value of a key, or ``value[start:end]`` (a ``pread``/``GETRANGE`` where the backend has one)."""
        io, namespace, key = self.split(path)
        if not key:
            raise IsADirectoryError(path)
        if start is None and end is None:
            found = io.load_files(namespace, [key], missing=None)[0]
        else:
            found = io.load_ranges(namespace, [key], [(start or 0, end)])[0] if end is None or end >= 0 else \
                self._slice_of(io, namespace, key, start, end)
        if found is None:
            raise FileNotFoundError(path)
        return found

    @staticmethod
    def _slice_of(io: IO, namespace: str, key: str, start: int | None, end: int) -> bytes | None:
        """``value[start:end]`` with a negative ``end`` (fsspec allows it; ``load_ranges`` does not)."""
        value = io.load_files(namespace, [key], missing=None)[0]
        return None if value is None else value[start:end]

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Store ``value`` as the key (atomically, as every ``save_files``)."""
        io, namespace, key = self.split(path)
        if not key:
            raise IsADirectoryError(path)
        if mode == "create" and io.file_exists(namespace, key):
            raise FileExistsError(path)
        io.save_files(namespace, key, value)

    def rm_file(self, path: str) -> None:
        io, namespace, key = self.split(path)
        if not key or not io.file_exists(namespace, key):
            raise FileNotFoundError(path)
        io.remove_files(namespace, key)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Remove keys (a directory's keys with ``recursive``), one ``remove_files`` batch per namespace.

        A directory without ``recursive`` raises ``IsADirectoryError``, and
        nothing is removed: it is never skipped in silence.
        """
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        by_namespace: dict[tuple[str, str], list[str]] = {}
        for found in paths:
            io, namespace, key = self.split(found)
            if key and io.file_exists(namespace, key):
                by_namespace.setdefault((found.partition("/")[0], namespace), []).append(key)
            elif not recursive:
                if not self.isdir(found):
                    raise FileNotFoundError(found)
                raise IsADirectoryError(f"{found!r} is a directory: give recursive=True to remove the keys below it")
        for (kind, namespace), keys in by_namespace.items():
            self.io_for(kind).remove_files(namespace, keys)

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:
        """Move a key, or a directory's keys with ``recursive``, with ``move_keys``.

        ``move_keys`` knows when source and destination are one storage
        however they are spelled (``run`` and ``./run``), so a key moved
        onto itself stays. fsspec's default (copy, then remove the source)
        would remove it.
        """
        if isinstance(path1, list) or isinstance(path2, list):
            raise InvalidArgumentError("mv moves one path (a key or a directory); call it once per path")
        source_io, source_namespace, source_key = self.split(path1)
        target_io, target_namespace, target_key = self.split(path2)
        if source_io is not target_io:  # another backend: a copy, checked, then the removal
            super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
            return
        if source_key and source_io.file_exists(source_namespace, source_key):
            if self.isdir(path2):
                target_key = posixpath.join(target_key, posixpath.basename(source_key))
            pairs = [(source_key, target_key)]
        elif not recursive:
            if not self.isdir(path1):
                raise FileNotFoundError(path1)
            raise IsADirectoryError(f"{path1!r} is a directory: give recursive=True to move its keys")
        else:
            if source_io.same_namespace(source_namespace, target_io, target_namespace) and (
                    target_key == source_key or target_key.startswith(f"{source_key}/") or not source_key):
                if target_key == source_key:
                    return  # a directory moved onto itself stays where it is
                raise InvalidArgumentError(f"cannot move {path1!r} into itself ({path2!r})")
            if source_key and self.isdir(path2):  # into an existing directory, as fsspec's copy does
                target_key = posixpath.join(target_key, posixpath.basename(source_key))
            below = f"{source_key}/" if source_key else ""
            pairs = [(key, posixpath.join(target_key, key[len(below):]) if target_key else key[len(below):])
                     for key in source_io.list_keys(source_namespace, glob_literal(below) + "*")]
            if not pairs:
                raise FileNotFoundError(path1)
        source_io.move_keys(source_namespace, [old for old, _ in pairs], [new for _, new in pairs],
                            dest_namespace=target_namespace)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.pipe_file(path2, self.cat_file(path1))

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to do: a directory exists while keys below it do."""
        self.split(path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.mkdir(path)

    def rmdir(self, path: str) -> None:
        """Nothing to do for an empty directory (it does not exist); refused for one that holds keys."""
        if self.exists(path) and self.ls(path, detail=False):
            raise OSError(f"directory {path!r} is not empty")

    # ------------------------------------------------------------------ open
    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if mode not in ("rb", "wb", "xb"):
            raise ValueError(f"mode {mode!r} is not supported: a mummi:// file is read ('rb') or written whole "
                             "('wb', 'xb'); an append is a load and a save")
        if mode == "xb" and self.exists(path):
            raise FileExistsError(path)
        return _KeyFile(self, path, "rb" if mode == "rb" else "wb", block_size=block_size or "default",
                        autocommit=autocommit, cache_options=cache_options, **kwargs)


class _KeyFile(AbstractBufferedFile):
    """A key read in ranges (``load_ranges``) or written whole when closed (``save_files``).

    Inside ``with fs.transaction:`` a file is saved when the transaction
    ends without an exception, and not at all otherwise.

    A ``with`` block left by an exception discards what was written: the key
    keeps its previous value (fsspec's default would store the partial data).
    """

    fs: MummiFileSystem

    def __exit__(self, kind: Any, *args: Any) -> None:
        if kind is not None and self.mode != "rb":
            self.closed = True  # nothing is saved
            return
        self.close()

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)

    _pending: bytes | None = None

    def _upload_chunk(self, final: bool = False) -> bool:
        if not final:
            return False  # keep everything: the key is written once, whole
        if self.autocommit:
            self.fs.pipe_file(self.path, self.buffer.getvalue())
        else:  # inside fs.transaction: saved by commit() when the transaction ends well
            self._pending = self.buffer.getvalue()
        return True

    def commit(self) -> None:
        """Save what a file written inside ``fs.transaction`` holds (the transaction ended without error)."""
        if self._pending is not None:
            self.fs.pipe_file(self.path, self._pending)
            self._pending = None

    def discard(self) -> None:
        """Drop what a file written inside ``fs.transaction`` holds (the transaction failed)."""
        self._pending = None

    def _initiate_upload(self) -> None:
        self.fs.split(self.path)  # a bad path fails before anything is buffered


__all__ = ["SEPARATOR", "MummiFileSystem"]
