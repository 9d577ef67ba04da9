"""Hierarchical groups: a namespace as a ``MutableMapping`` of objects and sub-groups (pyiron's interface)."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

from ..core.errors import IntegrityError, InvalidArgumentError, KeyNotFoundError
from ..core.keys import RESERVED_PREFIX, validate_name
from ..facade import Facade
from .access import load_object, object_info, save_object

#: Where a group records its sub-groups (a reserved key: never listed, never a user key).
GROUPS_KEY = RESERVED_PREFIX + ".groups"


class Group(MutableMapping[str, Any]):
    """``group["k"] = obj`` stores with ``save_object``; ``group["k"]`` loads; ``del`` removes.

    Iteration and ``len`` list names without loading anything. Sub-groups
    (``create_group``) live in child namespaces of the backend (a
    subdirectory for simple, ``run.groups/<name>.tar`` for taridx,
    ``ns/name`` for redis). ``load_options`` (``env``, ``allow_pickle``) apply
    to every load. The list of sub-groups is read and rewritten without a
    lock: create groups from one process at a time.
    """

    def __init__(self, io: Facade, namespace: str, **load_options: Any) -> None:
        self.io = io
        self.namespace = namespace
        self.load_options = load_options

    def __repr__(self) -> str:
        return f"<mummi_io.objects.Group {self.namespace!r} on {self.io.get_type()}>"

    def groups(self) -> list[str]:
        """Names of the sub-groups, sorted."""
        raw = self.io.load_reserved(self.namespace, GROUPS_KEY)
        if not raw:
            return []
        try:
            names = json.loads(raw)
        except ValueError as exc:
            raise IntegrityError(f"the list of sub-groups of {self.namespace!r} is damaged: {exc}") from exc
        if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
            raise IntegrityError(f"the list of sub-groups of {self.namespace!r} is damaged (not a list of names)")
        return names

    def _child(self, name: str) -> Group:
        return Group(self.io, self.io.child_namespace(self.namespace, name), **self.load_options)

    def create_group(self, name: str) -> Group:
        """Create (or open) the sub-group ``name`` and return it."""
        validate_name(name, "group or object name")
        names = self.groups()
        if name not in names:
            if self.io.file_exists(self.namespace, name):
                raise InvalidArgumentError(f"{name!r} already holds an object in {self.namespace!r}")
            self.io.save_reserved(self.namespace, GROUPS_KEY, json.dumps(sorted(names + [name])).encode())
        return self._child(name)

    def info(self, key: str) -> dict[str, Any]:
        """Metadata of a stored object, without loading it."""
        return object_info(self.io, self.namespace, key)

    def __getitem__(self, key: str) -> Any:
        if key in self.groups():
            return self._child(key)
        return load_object(self.io, self.namespace, key, **self.load_options)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.groups():
            raise InvalidArgumentError(f"{key!r} is a group of {self.namespace!r}; delete it first")
        save_object(self.io, self.namespace, key, value)

    def __delitem__(self, key: str) -> None:
        names = self.groups()
        if key in names:
            self._child(key).clear()
            self.io.save_reserved(self.namespace, GROUPS_KEY, json.dumps([n for n in names if n != key]).encode())
        elif self.io.file_exists(self.namespace, key):
            self.io.remove_files(self.namespace, key)
        else:
            raise KeyNotFoundError(self.namespace, [key])

    def _objects(self) -> list[str]:
        """The names of the group's objects: its flat keys (a sub-group's keys may sit below it)."""
        return [key for key in self.io.list_keys(self.namespace) if "/" not in key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._objects() + self.groups()))

    def __len__(self) -> int:
        return len(self._objects()) + len(self.groups())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self.groups() or self.io.file_exists(self.namespace, key))
