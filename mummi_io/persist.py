"""Parameter-based persisting and loading (the persistable layer), over any backend.

Why one module of this size: the seed's two constructor forms, the parameter
tree and its hash, and the lock-then-generate protocol are one contract a
reader checks together; split, each part would be meaningless alone.

Declare an artifact by subclassing :class:`Persistable` with a dataclass of
parameters and a ``_generate_payload`` method::

    @dataclass
    class PointsParams:
        n: int
        random_state: int = 100

    class Points(Persistable[np.ndarray, PointsParams]):
        def _generate_payload(self, **untracked):
            return np.random.default_rng(self.params.random_state).random(self.params.n)

    points = Points(io, "artifacts", PointsParams(n=100))
    points.load_generate()          # generates once; later runs (any process, any machine) load

The storage key is ``<payload name>-<hash>``, the hash a sha256 of the
canonical JSON of the *parameter tree*: the artifact's own parameters and,
recursively, those of the tracked upstream artifacts. The same parameters
give the same key everywhere; any change, own or upstream, gives a new key.
Beside the payload, ``<key>.params.json`` holds the readable parameter tree.
Two processes calling ``load_generate`` at once: one generates, the other
waits on a file lock and then loads.

The persistable seed's own form works too, so its code runs with only the
import changed: ``Points(data_dir, params, tracked_persistable_dependencies,
payload_name=..., payload_io=..., verbose=..., logger=...)`` keeps payloads in
the directory ``data_dir`` (the simple backend), with a log file
``<data_dir>/<payload_name>.log``; ``PersistableParams``, ``FileIO`` /
``PickleFileIO`` (a ``payload_io`` that pickles, as the seed's default did),
the lazy ``payload``, ``persist``, ``validate_payload``, ``reset_payload``,
``_post_load`` and ``load(warn_if_validation_fails=True)`` behave as there,
and a payload never generated raises :class:`PayloadNotFoundError`, which is
both the seed's ``FileNotFoundError`` and mummi_io's ``KeyNotFoundError``.
Without a ``payload_io`` payloads are stored with ``save_object`` (no pickle).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import os
import pathlib
import pickle
import re
import tempfile
from typing import Any, ClassVar, Generic, TypeVar

from filelock import FileLock

from .core.errors import InvalidArgumentError, InvalidPayloadError, KeyNotFoundError, PayloadNotFoundError
from .registry import IO, get_io

LOGGER = logging.getLogger(__name__)

PayloadT = TypeVar("PayloadT")
ParamsT = TypeVar("ParamsT")


def _canonical(value: Any) -> Any:
    """The parameter value as JSON data that tells apart what Python tells apart.

    Types JSON would merge are tagged: a tuple is not the list with the same
    items, ``Path("a")`` not ``"a"``, an enum member not its name (and its
    value counts), ``{1: x}`` not ``{"1": x}``. Plain data (numbers, strings,
    lists, dicts with string keys, dataclasses) is written as itself, so its
    keys never change.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        if all(type(k) is str for k in value):
            return {k: _canonical(v) for k, v in value.items()}
        return {"__items__": sorted(([_canonical(k), _canonical(v)] for k, v in value.items()),
                                    key=lambda item: json.dumps(item, sort_keys=True))}
    if type(value) is tuple:
        return {"__tuple__": [_canonical(v) for v in value]}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, enum.Enum):
        cls = type(value)
        return {"__enum__": f"{cls.__module__}.{cls.__qualname__}", "name": value.name,
                "value": _canonical(value.value)}
    if isinstance(value, pathlib.PurePath):
        return {"__path__": str(value)}
    if value is None or type(value) in (bool, int, float, str):
        return value
    raise InvalidArgumentError(
        f"parameter value {value!r} ({type(value).__name__}) is not plain data; parameters must be "
        "numbers, strings, booleans, None, paths, enums, lists, tuples, dicts or dataclasses of those"
    )


def _readable(value: Any) -> Any:
    """The seed's ``to_dict`` form: paths as strings, enums by name (for people, not for keys)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _readable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _readable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_readable(v) for v in value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return value


class PersistableParams:
    """Base of parameter dataclasses, as in the persistable seed (``@dataclass class P(PersistableParams)``)."""

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain data (paths as strings, enums by name), as the seed gives them."""
        return _readable(self)

    def get_str_repr(self) -> str:
        return str(self.to_dict())

    def get_md5_hash(self) -> str:
        return hashlib.md5(str(self).encode(), usedforsecurity=False).hexdigest()


class FileIO(Generic[PayloadT]):
    """How a seed-style ``payload_io`` persists and loads a payload at a path (override ``_save``/``_load``)."""

    def load(self, filepath: pathlib.Path, **kwargs: Any) -> PayloadT:
        return self._load(pathlib.Path(filepath), **kwargs)

    def save(self, payload: PayloadT, filepath: pathlib.Path, create_folder: bool = True, **kwargs: Any) -> None:
        filepath = pathlib.Path(filepath)
        if create_folder:
            filepath.parent.mkdir(parents=True, exist_ok=True)
        self._save(payload, filepath, **kwargs)

    def _load(self, filepath: pathlib.Path, **kwargs: Any) -> PayloadT:
        raise NotImplementedError(f"{type(self).__name__}._load")

    def _save(self, payload: PayloadT, filepath: pathlib.Path, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__}._save")


class PickleFileIO(FileIO[PayloadT]):
    """The seed's default payload IO: pickle (loading runs code from the file; use it for your own files only)."""

    def _load(self, filepath: pathlib.Path, **kwargs: Any) -> PayloadT:
        with filepath.open("rb") as handle:
            return pickle.load(handle, **kwargs)  # noqa: S301 - the caller chose pickle

    def _save(self, payload: PayloadT, filepath: pathlib.Path, **kwargs: Any) -> None:
        temporary = filepath.with_name(filepath.name + ".tmp")
        with temporary.open("wb") as handle:
            pickle.dump(payload, handle, **kwargs)
        os.replace(temporary, filepath)  # a killed save leaves the old file, never half of one


def _snake_case(name: str) -> str:
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()


class Persistable(Generic[PayloadT, ParamsT]):
    """An artifact generated from parameters, persisted under a key derived from them.

    Parameters
    ----------
    io, namespace:
        Where payloads and parameter files go (any backend).
    params:
        A dataclass instance: what defines the payload.
    tracked_persistable_dependencies:
        Upstream artifacts whose parameters are part of this one's identity
        (and which ``load_generate`` loads or generates first).
    serializer, allow_pickle:
        Passed to ``save_object``/``load_object`` (pickle only on request).
    lock_dir:
        Directory of the lock files that stop two processes generating the
        same artifact at once (default: the namespace's directory for file
        backends, the system temporary directory for redis: give a shared
        directory when processes run on several machines).
    """

    #: Name of the payload (default: the class name); the prefix of its key.
    payload_name: ClassVar[str | None] = None

    def __init__(
        self,
        io: IO | str | os.PathLike[str] | None = None,
        namespace: Any = None,
        params: Any = None,
        tracked_persistable_dependencies: list[Persistable[Any, Any]] | None = None,
        serializer: str | None = None,
        allow_pickle: bool = False,
        lock_dir: str | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        payload_name: str | None = None,
        payload_io: FileIO[Any] | None = None,
        payload_file_suffix: str = ".persistable",
        verbose: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.seed_form = data_dir is not None or isinstance(io, (str, os.PathLike))
        if self.seed_form:
            # The seed's (data_dir, params, tracked_persistable_dependencies, *, payload_name, payload_io, ...)
            if data_dir is None:  # positional: (data_dir, params[, tracked_persistable_dependencies])
                data_dir = io if isinstance(io, (str, os.PathLike)) else None
                if namespace is not None:
                    if params is not None and tracked_persistable_dependencies is None:
                        tracked_persistable_dependencies = params  # the third positional argument
                    params = namespace
            elif params is None:
                params = namespace
            if data_dir is None:
                raise InvalidArgumentError("Persistable needs a data_dir, or an IO and a namespace")
            os.makedirs(data_dir, exist_ok=True)
            io, namespace = get_io("simple"), os.fspath(data_dir)
        if not isinstance(io, IO) or namespace is None:
            raise InvalidArgumentError("Persistable(io, namespace, params) or Persistable(data_dir, params, ...)")
        if not (dataclasses.is_dataclass(params) and not isinstance(params, type)):
            raise InvalidArgumentError(f"params must be a dataclass instance, not {type(params).__name__}")
        self.io = io
        self.namespace = namespace
        self.data_dir = pathlib.Path(namespace) if self.seed_form else None
        self.params = params
        self.dependencies = list(tracked_persistable_dependencies or [])
        self.serializer = serializer
        self.allow_pickle = allow_pickle
        self.lock_dir = lock_dir
        if payload_name is not None:
            self.payload_name = payload_name  # type: ignore[misc]
        elif self.seed_form and type(self).payload_name is None:
            self.payload_name = _snake_case(type(self).__name__)  # type: ignore[misc]
        self.payload_io = payload_io
        self.payload_file_suffix = payload_file_suffix
        self._payload: PayloadT | None = None
        self.logger = logger or self._make_logger(verbose)

    @property
    def tracked_persistable_dependencies(self) -> list[Persistable[Any, Any]]:
        return self.dependencies

    def _make_logger(self, verbose: bool) -> logging.Logger:
        """The payload's logger; in the seed's form it also writes ``<data_dir>/<payload_name>.log``."""
        logger = logging.getLogger(f"{__name__}.{self.name}")
        if self.seed_form:
            # One logger per payload and data directory: each directory's log file gets its own lines only.
            place = hashlib.sha256(os.path.abspath(self.namespace).encode()).hexdigest()[:12]
            logger = logging.getLogger(f"{__name__}.{self.name}.{place}")
            # As the seed: everything to <data_dir>/<payload_name>.log; on the console WARNING, or INFO
            # with verbose=True (this logger's own console handler: the seed's users asked for it).
            logger.setLevel(logging.DEBUG)
            log_file = os.path.abspath(os.path.join(self.namespace, f"{self.name}.log"))
            formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            if not any(getattr(handler, "baseFilename", None) == log_file for handler in logger.handlers):
                handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
                handler.setLevel(logging.DEBUG)
                handler.setFormatter(formatter)
                logger.addHandler(handler)
            console = next((h for h in logger.handlers if getattr(h, "_mummi_io_console", False)), None)
            if verbose and console is None:
                console = logging.StreamHandler()
                console._mummi_io_console = True  # type: ignore[attr-defined]
                console.setFormatter(formatter)
                logger.addHandler(console)
            if console is not None:
                console.setLevel(logging.INFO if verbose else logging.WARNING)
            logger.info("---- NEW PERSISTABLE SESSION ---- (%s); parameters %s", self.namespace, self.params)
        return logger

    @property
    def payload(self) -> PayloadT:
        """The payload; loaded (or generated) on first use, as in the seed."""
        if self._payload is None:
            self.load_generate()
        return self._payload  # type: ignore[return-value]

    @payload.setter
    def payload(self, value: PayloadT | None) -> None:
        self._payload = value

    def reset_payload(self) -> None:
        """Forget the payload held in memory (the stored one stays)."""
        self._payload = None

    # ------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self.payload_name or type(self).__name__

    @property
    def params_tree(self) -> dict[str, Any]:
        """This artifact's parameters and, recursively, its tracked dependencies'."""
        return {
            "name": self.name,
            "params": _canonical(self.params),
            "dependencies": [dependency.params_tree for dependency in self.dependencies],
        }

    @property
    def key(self) -> str:
        """``<name>-<first 24 hex digits of the sha256 of the canonical parameter tree>``."""
        canonical = json.dumps(self.params_tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return f"{self.name}-{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:24]}"

    @property
    def params_key(self) -> str:
        return f"{self.key}.params.json"

    # -------------------------------------------------------- to override
    def _generate_payload(self, **untracked_payload_params: Any) -> PayloadT:
        """Compute the payload from ``self.params`` (and the dependencies' payloads)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _generate_payload")

    def _validate_payload(self, payload: PayloadT) -> None:
        """Raise :class:`InvalidPayloadError` (or ``TypeError``) if the payload is not acceptable."""

    def _post_load(self) -> None:
        """Run after a load: rebuild what was not worth persisting (override; nothing by default)."""

    def validate_payload(self, payload: PayloadT | None = None) -> None:
        """Validate ``payload`` (default: the one held), with ``_validate_payload``."""
        if payload is None:
            if self._payload is None:
                raise InvalidPayloadError("there is no payload to validate: generate or load it first")
            payload = self._payload
        self._validate_payload(payload)

    # ----------------------------------------------------------- actions
    def _payload_path(self) -> pathlib.Path:
        return pathlib.Path(self.namespace) / f"{self.key}{self.payload_file_suffix}"

    def exists(self) -> bool:
        """Whether a payload for these parameters is stored."""
        if self.payload_io is not None:
            return self._payload_path().exists()
        return bool(self.io.file_exists(self.namespace, self.key))

    def generate(self, persist: bool = True, **untracked_payload_params: Any) -> PayloadT:
        """Generate the payload, validate it, and (by default) persist it with its parameter file."""
        self.logger.info("generating the %s payload", self.name)
        payload = self._generate_payload(**untracked_payload_params)
        self._validate_payload(payload)
        self._payload = payload
        if persist:
            self.persist()
        return payload

    def persist(self) -> None:
        """Store the payload held in memory and its parameter file."""
        if self._payload is None:
            raise InvalidPayloadError("there is no payload to persist: generate it first")
        if self.payload_io is not None:
            self.payload_io.save(self._payload, filepath=self._payload_path())
        else:
            self.io.save_object(self.namespace, self.key, self._payload, self.serializer, self.allow_pickle)
        self.io.save_files(
            self.namespace, self.params_key, json.dumps(self.params_tree, indent=2, sort_keys=True) + "\n"
        )
        self.logger.info("persisted %s", self.key)

    def load(self, warn_if_validation_fails: bool | None = None, **untracked_payload_params: Any) -> PayloadT:
        """Load the payload stored for these parameters (no fallback).

        A payload that fails ``_validate_payload`` raises; with
        ``warn_if_validation_fails`` (the default in the seed's form) it is
        logged as a warning and kept, as the seed does.

        Raises
        ------
        PayloadNotFoundError
            If it was never generated with these parameters (a ``KeyError``
            and, as in the seed, a ``FileNotFoundError``).
        """
        self.logger.info("loading the %s payload", self.name)
        try:
            if self.payload_io is not None:
                payload = self.payload_io.load(self._payload_path())
            else:
                payload = self.io.load_object(self.namespace, self.key, allow_pickle=self.allow_pickle)
        except (KeyNotFoundError, FileNotFoundError):
            raise PayloadNotFoundError(self.namespace, [self.key]) from None
        try:
            self._validate_payload(payload)
        except Exception as exc:
            if not (self.seed_form if warn_if_validation_fails is None else warn_if_validation_fails):
                raise
            self.logger.warning("the loaded %s payload is invalid (it may need to be regenerated): %s", self.name, exc)
        self._payload = payload
        self._post_load()
        return payload

    def load_generate(self, **untracked_payload_params: Any) -> PayloadT:
        """Load the payload, or generate (and persist) it if it was never generated.

        Dependencies are loaded or generated first. Under a file lock, so
        concurrent callers generate once: the others wait, then load.
        """
        try:
            return self.load()
        except PayloadNotFoundError:
            pass
        for dependency in self.dependencies:
            if dependency._payload is None:
                dependency.load_generate()
        with FileLock(self._lock_path(), timeout=-1):
            try:
                return self.load()  # another process generated it while we waited
            except PayloadNotFoundError:
                return self.generate(**untracked_payload_params)

    def _lock_path(self) -> str:
        directory = self.lock_dir
        if directory is None:
            kind = self.io.get_type()
            if kind == "simple":
                directory = self.namespace
            elif kind == "taridx":
                directory = os.path.dirname(os.path.abspath(self.namespace))
            else:
                directory = tempfile.gettempdir()
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, f".mummi_io.generate.{self.key}.lock")
