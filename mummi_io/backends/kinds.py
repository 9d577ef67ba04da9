"""The kinds of backend: names map to classes imported on first use.

A backend with optional dependencies (``redis``) is only imported when asked
for, and a missing dependency becomes an install hint instead of an
``ImportError`` at ``import mummi_io``. Third-party backends register through
:func:`register_backend` or the ``mummi_io.backends`` entry-point group.
Backends are named here by string, never imported: each stands alone.
"""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..core.contract import Backend
from ..core.errors import InvalidArgumentError, UnknownBackendError

#: The backend used when no kind is given and ``MUMMI_IO_BACKEND`` is unset.
DEFAULT_KIND = "simple"

#: Environment variable that picks the backend when no kind is given.
KIND_ENV_VAR = "MUMMI_IO_BACKEND"

ENTRY_POINT_GROUP = "mummi_io.backends"


@dataclass(frozen=True)
class _Entry:
    target: str | type[Backend]  # "module:Class" or the class itself
    install_hint: str | None = None


_REGISTRY: dict[str, _Entry] = {
    "simple": _Entry("mummi_io.backends.simple:SimpleBackend"),
    "taridx": _Entry("mummi_io.backends.taridx:TarIndexBackend"),
    "redis": _Entry("mummi_io.backends.redis:RedisBackend", install_hint="pip install 'mummi_io[redis]'"),
    "mummi-redis": _Entry("mummi_io.backends.redis.mummi_layout:MummiRedisBackend",
                          install_hint="pip install 'mummi_io[redis]'"),
}
_entry_points_loaded = False


def register_backend(
    kind: str, target: str | type[Backend], install_hint: str | None = None, clobber: bool = False
) -> None:
    """Make ``get_io(kind)`` use ``target`` (a Backend subclass or ``"module:Class"``).

    Raises
    ------
    InvalidArgumentError
        If ``kind`` is already registered and ``clobber`` is false.
    """
    if kind in _REGISTRY and not clobber:
        raise InvalidArgumentError(f"backend kind {kind!r} is already registered; pass clobber=True")
    _REGISTRY[kind] = _Entry(target, install_hint)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(point.name, _Entry(point.value))


def get_interfaces() -> list[str]:
    """Return the names of every registered backend kind, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def backend_class(kind: str) -> type[Backend]:
    """Return the Backend class registered for ``kind``, importing it if needed.

    Raises
    ------
    UnknownBackendError
        (a ``ValueError``) listing the known kinds.
    ImportError
        With the install command when an optional dependency is missing.
    """
    _load_entry_points()
    entry = _REGISTRY.get(kind)
    if entry is None:
        raise UnknownBackendError(f"unknown io kind {kind!r}; known kinds: {sorted(_REGISTRY)}")
    if not isinstance(entry.target, str):
        return entry.target
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = entry.install_hint or f"install the package that provides {module_name}"
        raise ImportError(f"the {kind!r} backend needs a missing dependency ({exc}); {hint}") from exc
    return getattr(module, class_name)


def open_backend(kind: str | None = None, **options: Any) -> Backend:
    """A backend of ``kind`` (default: ``$MUMMI_IO_BACKEND``, else ``"simple"``) built with ``options``.

    Raises
    ------
    UnknownBackendError
        (a ``ValueError``) for an unknown kind, listing the known ones.
    InvalidArgumentError
        For an option the backend does not accept, listing the accepted ones.
    """
    if kind is None:
        kind = os.environ.get(KIND_ENV_VAR) or DEFAULT_KIND
    cls = backend_class(kind)
    signature = inspect.signature(cls)
    try:
        signature.bind(**options)
    except TypeError as exc:
        accepted = [name for name in signature.parameters if name not in ("args", "kwargs")]
        raise InvalidArgumentError(
            f"bad options for the {kind!r} backend ({exc}); it accepts: {accepted or 'no options'}"
        ) from exc
    return cls(**options)
