"""Typed objects, packs and groups on every backend (the MLIO and pyiron layers).

- ``io.save_object(ns, key, obj)`` / ``io.load_object(ns, key)`` / ``io.object_info(ns, key)``
  (:class:`ObjectMethods`, mixed into :class:`mummi_io.IO`; the same as functions in :mod:`.access`)
- ``io.group(ns)``: a ``MutableMapping`` with ``create_group``
- :class:`Pack`: MLIO's multi-slot pack; :func:`dump` / :func:`load` for one object
- :func:`save` / :func:`load_path` / :func:`delete`: pyiron's path-based interface
  (also ``mummi_io.save``, ``mummi_io.load``, ``mummi_io.delete``)
- :func:`register_serializer` to add a serializer of your own
"""

from __future__ import annotations

import os
from typing import Any

from ..backends.kinds import open_backend
from ..core.errors import KeyNotFoundError
from ..facade import Facade
from .access import load_object, save_object
from .group import Group
from .methods import ObjectMethods
from .pack import ManifestInfo, Pack, SlotInfo, dump, import_mlio_pack, load
from .serializers import Serializer, register_serializer
from .store import EnvironmentMismatchError, EnvironmentMismatchWarning


def _split(filename: str | os.PathLike[str]) -> tuple[str, str]:
    path = os.fspath(filename)
    return os.path.dirname(path) or ".", os.path.basename(path)


def save(obj: Any, filename: str | os.PathLike[str], backend: str | None = None, **options: Any) -> dict[str, Any]:
    """Store ``obj`` at ``filename`` (namespace: its directory; key: its name); return the metadata."""
    namespace, key = _split(filename)
    with Facade(open_backend(backend)) as io:
        return save_object(io, namespace, key, obj, **options)


def load_path(filename: str | os.PathLike[str], backend: str | None = None, **options: Any) -> Any:
    """Load the object stored at ``filename`` (``env=``, ``allow_pickle=`` as in ``load_object``)."""
    namespace, key = _split(filename)
    with Facade(open_backend(backend)) as io:
        try:
            return load_object(io, namespace, key, **options)
        except KeyNotFoundError as missing:
            if io.get_type() != "taridx" and os.path.isfile(namespace):
                raise KeyNotFoundError(missing.namespace, missing.keys, hint=(
                    f"{namespace!r} is a file, read here with the {io.get_type()} backend (a directory of files): "
                    "for an indexed tar pass backend='taridx' (or set MUMMI_IO_BACKEND=taridx)."
                )) from None
            raise


def delete(filename: str | os.PathLike[str], backend: str | None = None) -> None:
    """Remove the object stored at ``filename`` (a missing one is a no-op)."""
    namespace, key = _split(filename)
    with Facade(open_backend(backend)) as io:
        io.remove_files(namespace, key)


__all__ = [
    "EnvironmentMismatchError", "EnvironmentMismatchWarning", "Group", "ManifestInfo", "ObjectMethods", "Pack", "Serializer", "SlotInfo",
    "delete", "dump", "import_mlio_pack", "load", "load_path", "register_serializer", "save",
]
