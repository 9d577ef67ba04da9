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

import hashlib
import os
from typing import Any

from .core.errors import (  # the two filer errors: raised here, importable from here as before
    IntegrityError, InvalidArgumentError, KeyNotFoundError, RemoteConflictError, SyncedOverwriteError,
)
from .registry import IO, get_io
from .sync import sync

REGISTRY_NAME = ".mummi_registry"
STATES = ("local", "synced")


class Filer:
    """Objects in a local directory, a remote namespace, and a registry file tying them together."""

    def __init__(
        self, local_dir: str, remote: IO | str | os.PathLike[str], remote_namespace: str | None = None,
        registry_file: str | None = None, remote_type: str | None = None, **load_options: Any,
    ) -> None:
        if isinstance(remote, (str, os.PathLike)):
            # The seed's form: Filer(local_dir, remote_address, remote_type=...), a backend kind here
            if remote_type == "s3":
                raise InvalidArgumentError(
                    "mummi_io has no s3 backend; keep the remote on 'simple' (a shared directory), 'taridx' or "
                    "'redis': Filer(local_dir, remote_address, remote_type='simple')"
                )
            remote_namespace, remote = os.fspath(remote), get_io(remote_type or "simple")
        elif remote_namespace is None:
            raise InvalidArgumentError("Filer(local_dir, remote=<IO>, remote_namespace=<namespace>) needs the namespace")
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
        if save_options.setdefault("digest", "sha256") != "sha256":
            raise InvalidArgumentError("the file registry records each object's sha256: leave digest unset")
        meta = self.local.save_object(self.local_dir, name, obj, **save_options)
        entries[name] = (meta["sha256"], "local")
        self._write(entries)
        if push:
            self.push(name)

    def push(self, name: str, overwrite: bool = False) -> None:
        """Copy ``name`` to the remote (verified) and mark it synced.

        The remote copy is never replaced by other content unless
        ``overwrite``: the first push of a name claims it (an atomic counter
        on the remote), so of two users pushing one name at once, one wins
        and the other gets :class:`RemoteConflictError`.

        Raises
        ------
        RemoteConflictError
            If the remote holds other content under ``name``, or another push
            of it is under way.
        """
        entries = self.entries()
        if name not in entries:
            raise KeyNotFoundError(self.registry_file, [name])
        digest = entries[name][0]
        if not overwrite:
            there = self._remote_digest(name)
            if there is None and self._claim(name).add(1) != 1:
                there = self._remote_digest(name)  # someone else claimed it first: theirs counts
                if there is None:
                    raise RemoteConflictError(
                        f"another push of {name!r} to {self.remote_namespace!r} is under way (or was interrupted); "
                        "retry, or push(name, overwrite=True) if you are sure"
                    )
            if there is not None and there != digest:
                raise RemoteConflictError(
                    f"the remote already holds other content as {name!r} (sha {there[:12]}, yours {digest[:12]}): "
                    "someone else pushed that name; dump yours under another name, or push(name, overwrite=True)"
                )
        sync(self.local, self.local_dir, self.remote, self.remote_namespace, keys=[name])
        entries = self.entries()
        entries[name] = (digest, "synced")
        self._write(entries)

    def _claim(self, name: str) -> Any:
        """The remote counter whose first increment claims ``name`` for one pusher."""
        # Beside the namespace, not in it: on file backends a coordination place is a directory.
        return self.remote.counter(self.remote_namespace + ".filer-claims",
                                   "claim-" + hashlib.sha256(name.encode()).hexdigest()[:32])

    def _remote_digest(self, name: str) -> str | None:
        """The digest the remote copy of ``name`` records (``None`` if the remote has none)."""
        try:
            info = self.remote.object_info(self.remote_namespace, name)
        except KeyNotFoundError:
            return None
        return str(info.get(info.get("digest", "sha256")))

    def push_all(self) -> list[str]:
        """Push every local object; return their names."""
        names = [name for name, (_, state) in self.entries().items() if state == "local"]
        for name in names:
            self.push(name)
        return names

    def pull(self, name: str) -> None:
        """Fetch ``name`` from the remote into the local directory, checked against the registry's digest.

        Raises
        ------
        IntegrityError
            If what the remote holds is not the object the registry records
            (the local copy is then removed again; the remote is untouched).
        """
        entries = self.entries()
        if name not in entries:
            raise KeyNotFoundError(self.registry_file, [name])
        there = self._remote_digest(name)
        if there is None:
            raise KeyNotFoundError(self.remote_namespace, [name])
        if there != entries[name][0]:  # checked before anything is copied: a good local copy stays
            raise IntegrityError(
                f"the remote copy of {name!r} in {self.remote_namespace!r} is not the object the registry "
                f"{self.registry_file!r} records (digest {there[:12]}, recorded {entries[name][0][:12]}): it was "
                "replaced; nothing was copied"
            )
        sync(self.remote, self.remote_namespace, self.local, self.local_dir, keys=[name])
        self._check_local(name)  # and the copy that arrived

    def _check_local(self, name: str) -> None:
        """The local copy of ``name`` must be the object the registry records (same digest)."""
        recorded = self.entries()[name][0]
        info = self.local.object_info(self.local_dir, name)
        found = str(info.get(info.get("digest", "sha256")))
        if found != recorded:
            raise IntegrityError(
                f"{name!r} in {self.local_dir!r} is not the object the registry {self.registry_file!r} records "
                f"(digest {found[:12]}, recorded {recorded[:12]}): the remote copy was replaced or the file changed; "
                "remove it and pull again, or dump it anew"
            )

    def load(self, name: str) -> Any:
        """Load ``name``, pulling it from the remote first if it is not here; checked against the registry."""
        if name not in self.entries():
            raise KeyNotFoundError(self.registry_file, [name])
        if not self.local.file_exists(self.local_dir, name):
            self.pull(name)
        else:
            self._check_local(name)
        return self.local.load_object(self.local_dir, name, **self.load_options)

    def remove(self, name: str, remove_remote: bool = False) -> None:
        """Forget ``name``: its local copy, and with ``remove_remote`` its remote copy too."""
        entries = self.entries()
        if name not in entries:
            raise KeyNotFoundError(self.registry_file, [name])
        self.local.remove_files(self.local_dir, name)
        if remove_remote:
            self.remote.remove_files(self.remote_namespace, name)
            self._claim(name).delete()  # the name may be pushed anew
        del entries[name]
        self._write(entries)

    def remove_locals(self) -> list[str]:
        """Remove every object that was never pushed; return their names."""
        names = [name for name, (_, state) in self.entries().items() if state == "local"]
        for name in names:
            self.remove(name)
        return names
