"""A committable registry of large files kept on a remote backend (the ds_model_filer workflow).

    filer = Filer("models", remote=get_io("redis"), remote_namespace="team-models")
    filer.dump(model, "my_model", push=True)    # stored locally and on the remote
    filer.show_files()                          # 'my_model (synced)'
    model = filer.load("my_model")              # from the local copy, else pulled first

The registry is a small text file (``<local_dir>/.mummi_registry`` by
default) meant to be committed to git: one line per object, ``name``, its
sha256 and its state, ``local`` (not pushed yet) or ``synced`` (on the
remote). The objects themselves are stored with ``save_object`` in the local
directory (the simple backend) and copied to the remote on push.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import InvalidArgumentError, KeyNotFoundError, MummiIOError
from .facade import IO
from .registry import get_io
from .sync import sync

REGISTRY_NAME = ".mummi_registry"
STATES = ("local", "synced")


class SyncedOverwriteError(MummiIOError):
    """A synced object cannot be overwritten; remove it with remove_remote=True first."""


class Filer:
    """Objects in a local directory, a remote namespace, and a registry file tying them together."""

    def __init__(
        self, local_dir: str, remote: IO, remote_namespace: str, registry_file: str | None = None,
        **load_options: Any,
    ) -> None:
        self.local_dir = local_dir
        self.local = get_io("simple")
        self.remote = remote
        self.remote_namespace = remote_namespace
        self.registry_file = registry_file or os.path.join(local_dir, REGISTRY_NAME)
        self.load_options = load_options

    # ------------------------------------------------------------ registry
    def entries(self) -> dict[str, tuple[str, str]]:
        """``name -> (sha256, state)`` from the registry file."""
        if not os.path.exists(self.registry_file):
            return {}
        found = {}
        with open(self.registry_file) as handle:
            for number, line in enumerate(handle, 1):
                words = line.split()
                if not words or words[0].startswith("#"):
                    continue
                if len(words) != 3 or words[2] not in STATES:
                    raise InvalidArgumentError(f"{self.registry_file}:{number}: expected 'name sha256 state'")
                found[words[0]] = (words[1], words[2])
        return found

    def _write(self, entries: dict[str, tuple[str, str]]) -> None:
        lines = ["# mummi_io file registry: name sha256 state (commit this file)"]
        lines += [f"{name} {digest} {state}" for name, (digest, state) in sorted(entries.items())]
        os.makedirs(os.path.dirname(self.registry_file) or ".", exist_ok=True)
        temporary = self.registry_file + ".tmp"
        with open(temporary, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(temporary, self.registry_file)

    def show_files(self) -> str:
        """One line per object, ``name (state)``; ``[no files exist]`` when empty."""
        entries = self.entries()
        if not entries:
            return "[no files exist]"
        return "\n".join(f"{name} ({state})" for name, (_, state) in sorted(entries.items()))

    # ------------------------------------------------------------- actions
    def dump(self, obj: Any, name: str, push: bool = False, overwrite: bool = False, **save_options: Any) -> None:
        """Store ``obj`` as ``name`` locally (and on the remote with ``push``).

        Raises
        ------
        SyncedOverwriteError
            If ``name`` is synced: remove it with ``remove_remote=True`` first.
        InvalidArgumentError
            If ``name`` exists locally and ``overwrite`` is false.
        """
        entries = self.entries()
        if name in entries:
            if entries[name][1] == "synced":
                raise SyncedOverwriteError(
                    f"{name!r} is synced to the remote; to replace it, remove(name, remove_remote=True) first"
                )
            if not overwrite:
                raise InvalidArgumentError(f"{name!r} exists locally; pass overwrite=True to replace it")
        meta = self.local.save_object(self.local_dir, name, obj, **save_options)
        entries[name] = (meta[meta.get("digest", "sha256")], "local")
        self._write(entries)
        if push:
            self.push(name)

    def push(self, name: str) -> None:
        """Copy ``name`` to the remote (verified) and mark it synced."""
        entries = self.entries()
        if name not in entries:
            raise KeyNotFoundError(self.registry_file, [name])
        sync(self.local, self.local_dir, self.remote, self.remote_namespace, keys=[name])
        entries[name] = (entries[name][0], "synced")
        self._write(entries)

    def push_all(self) -> list[str]:
        """Push every local object; return their names."""
        names = [name for name, (_, state) in self.entries().items() if state == "local"]
        for name in names:
            self.push(name)
        return names

    def pull(self, name: str) -> None:
        """Fetch ``name`` from the remote into the local directory."""
        if name not in self.entries():
            raise KeyNotFoundError(self.registry_file, [name])
        sync(self.remote, self.remote_namespace, self.local, self.local_dir, keys=[name])
        if not self.local.file_exists(self.local_dir, name):
            raise KeyNotFoundError(self.remote_namespace, [name])

    def load(self, name: str) -> Any:
        """Load ``name``, pulling it from the remote first if it is not here."""
        if name not in self.entries():
            raise KeyNotFoundError(self.registry_file, [name])
        if not self.local.file_exists(self.local_dir, name):
            self.pull(name)
        return self.local.load_object(self.local_dir, name, **self.load_options)

    def remove(self, name: str, remove_remote: bool = False) -> None:
        """Forget ``name``: its local copy, and with ``remove_remote`` its remote copy too."""
        entries = self.entries()
        if name not in entries:
            raise KeyNotFoundError(self.registry_file, [name])
        self.local.remove_files(self.local_dir, name)
        if remove_remote:
            self.remote.remove_files(self.remote_namespace, name)
        del entries[name]
        self._write(entries)

    def remove_locals(self) -> list[str]:
        """Remove every object that was never pushed; return their names."""
        names = [name for name, (_, state) in self.entries().items() if state == "local"]
        for name in names:
            self.remove(name)
        return names
