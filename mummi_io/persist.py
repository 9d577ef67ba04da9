"""Parameter-based persisting and loading (the persistable layer), over any backend.

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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from typing import Any, ClassVar, Generic, TypeVar

from filelock import FileLock

from .errors import InvalidArgumentError, KeyNotFoundError, MummiIOError
from .facade import IO

LOGGER = logging.getLogger(__name__)

PayloadT = TypeVar("PayloadT")
ParamsT = TypeVar("ParamsT")


class InvalidPayloadError(MummiIOError, ValueError):
    """``_validate_payload`` rejected a payload (raise it from your validator)."""


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise InvalidArgumentError(
        f"parameter value {value!r} ({type(value).__name__}) is not plain data; parameters must be "
        "numbers, strings, booleans, None, lists, dicts or dataclasses of those"
    )


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
        io: IO,
        namespace: str,
        params: ParamsT,
        tracked_persistable_dependencies: list[Persistable[Any, Any]] | None = None,
        serializer: str | None = None,
        allow_pickle: bool = False,
        lock_dir: str | None = None,
    ) -> None:
        if not (dataclasses.is_dataclass(params) and not isinstance(params, type)):
            raise InvalidArgumentError(f"params must be a dataclass instance, not {type(params).__name__}")
        self.io = io
        self.namespace = namespace
        self.params = params
        self.dependencies = list(tracked_persistable_dependencies or [])
        self.serializer = serializer
        self.allow_pickle = allow_pickle
        self.lock_dir = lock_dir
        self.payload: PayloadT | None = None
        self.logger = logging.getLogger(f"{__name__}.{self.name}")

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

    # ----------------------------------------------------------- actions
    def exists(self) -> bool:
        """Whether a payload for these parameters is stored."""
        return bool(self.io.file_exists(self.namespace, self.key))

    def generate(self, persist: bool = True, **untracked_payload_params: Any) -> PayloadT:
        """Generate the payload, validate it, and (by default) persist it with its parameter file."""
        payload = self._generate_payload(**untracked_payload_params)
        self._validate_payload(payload)
        if persist:
            self.io.save_object(self.namespace, self.key, payload, self.serializer, self.allow_pickle)
            self.io.save_files(
                self.namespace, self.params_key, json.dumps(self.params_tree, indent=2, sort_keys=True) + "\n"
            )
            self.logger.info("generated and persisted %s", self.key)
        self.payload = payload
        return payload

    def load(self) -> PayloadT:
        """Load the payload stored for these parameters (no fallback).

        Raises
        ------
        KeyNotFoundError
            If it was never generated with these parameters.
        """
        payload = self.io.load_object(self.namespace, self.key, allow_pickle=self.allow_pickle)
        self._validate_payload(payload)
        self.payload = payload
        return payload

    def load_generate(self, **untracked_payload_params: Any) -> PayloadT:
        """Load the payload, or generate (and persist) it if it was never generated.

        Dependencies are loaded or generated first. Under a file lock, so
        concurrent callers generate once: the others wait, then load.
        """
        try:
            return self.load()
        except KeyNotFoundError:
            pass
        for dependency in self.dependencies:
            if dependency.payload is None:
                dependency.load_generate()
        with FileLock(self._lock_path(), timeout=-1):
            try:
                return self.load()  # another process generated it while we waited
            except KeyNotFoundError:
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
