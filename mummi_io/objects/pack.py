"""MLIO-style packs: named slots of objects in one file (an indexed tar), deduplicated and verified.

    with Pack("model.pack") as pack:
        pack.dump("object-1", model)
        "object-1" in pack; pack.load("object-1"); pack.remove("object-1")
        pack.manifest_info.created_at; pack.slots_info["object-1"].serialized_sha256_hash

Identical objects share one stored copy (slots point at a blob named by the
payload's sha256). Any number of handles and processes may use one pack
*file* (a pack on ``simple`` or ``taridx``, the default): each change takes
the pack's lock file, reads the manifest again, applies itself and writes it
back, and every read looks at the current manifest, so no slot is ever lost.
A pack in a Redis namespace has no lock across processes: there, one process
at a time may change it (concurrent changes can lose each other's slots).
A pack may also be given as a file object: one with a
path is used through its path (read-only when the object is), any other
(``BytesIO``) through a private copy that is written back after each change.
``dump(obj, file)`` and ``load(file)`` are the drop-in compatibility
functions (slot ``_default``); :func:`import_mlio_pack` brings MLIO's own
zip packs over.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Iterator
from typing import IO as FileObject
from typing import Any, NamedTuple

import filelock

from ..backends.kinds import open_backend
from ..core.errors import (
    IntegrityError, InvalidArgumentError, KeyNotFoundError, PickleRefusedError, ReadOnlyError, UnsupportedFormatError,
)
from ..core.keys import RESERVED_PREFIX
from ..facade import Facade
from .access import load_object, object_info
from .store import installed_distributions, encode_object, encode_payload

MANIFEST_KEY = RESERVED_PREFIX + ".manifest"
DEFAULT_SLOT = "_default"


class ManifestInfo(NamedTuple):
    created_at: str
    updated_at: str


class SlotInfo(NamedTuple):
    serializer: str
    serialized_sha256_hash: str
    size: int


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _PrivateCopy:
    """The temporary file that stands for a nameless file object, shared by every Pack on that object."""

    def __init__(self, file: FileObject[bytes]) -> None:
        self.directory = tempfile.mkdtemp(prefix="mummi_io-pack-")
        self.path = os.path.join(self.directory, "pack")
        self.lock = threading.RLock()
        file.seek(0)
        with open(self.path, "wb") as copy:
            shutil.copyfileobj(file, copy)
        weakref.finalize(self, shutil.rmtree, self.directory, True)


_PRIVATE_COPIES: weakref.WeakKeyDictionary[Any, _PrivateCopy] = weakref.WeakKeyDictionary()
_PRIVATE_COPIES_GUARD = threading.Lock()


def _private_copy(file: FileObject[bytes]) -> _PrivateCopy:
    """One private copy per file object (two Packs on one BytesIO see each other's slots)."""
    with _PRIVATE_COPIES_GUARD:
        try:
            copy = _PRIVATE_COPIES.get(file)
        except TypeError:  # an object without weak references: a copy of its own
            return _PrivateCopy(file)
        if copy is None:
            copy = _PRIVATE_COPIES[file] = _PrivateCopy(file)
        return copy


def _path_of(file: FileObject[bytes]) -> str | None:
    """The path a file object is open on, if its ``name`` is one and names the very file open."""
    name = getattr(file, "name", None)
    if not isinstance(name, (str, bytes, os.PathLike)):
        return None
    try:
        return os.fsdecode(name) if os.path.samestat(os.fstat(file.fileno()), os.stat(name)) else None
    except (OSError, ValueError, AttributeError):
        return None  # no descriptor (BytesIO), or the name no longer leads to it


class Pack:
    """Slots of objects in one indexed tar file (or any namespace of ``io``).

    ``file`` is a path or a binary file object. ``io`` (optional) is a
    :class:`mummi_io.IO` whose namespace ``file`` names; processes are then
    coordinated by a lock file only when that namespace is a file (``simple``,
    ``taridx``): on ``redis``, change a pack from one process at a time.
    ``load_options`` (``env=``, ``allow_pickle=``...) apply to every ``load``.
    """

    def __init__(self, file: str | os.PathLike[str] | FileObject[bytes], io: Facade | None = None, **load_options: Any) -> None:
        self._file_object: FileObject[bytes] | None = None
        self._copy: _PrivateCopy | None = None
        self.read_only = False
        if isinstance(file, (str, os.PathLike)):
            self.namespace = os.fspath(file)
        else:
            self.read_only = not _writable(file)
            path = _path_of(file)
            if path is None:  # BytesIO and the like: a private copy (shared by its Packs), written back on change
                self._file_object = file
                self._copy = _private_copy(file)
                path = self._copy.path
            self.namespace = path
        self._own_io = io is None
        self.io = io if io is not None else Facade(open_backend("taridx", suffix=""))  # the file name as given
        self.load_options = load_options
        local = self._own_io or self.io.get_type() in ("simple", "taridx")
        if self._copy is not None:
            self._lock: Any = self._copy.lock
        elif local and not self.read_only:
            self._lock = filelock.FileLock(self.namespace + ".pack-lock")
        else:
            self._lock = threading.Lock()
        self._manifest = self._read_manifest()

    # ------------------------------------------------------------- manifest
    def _read_manifest(self) -> dict[str, Any]:
        raw = self.io.load_reserved(self.namespace, MANIFEST_KEY) if self.io.namespace_exists(self.namespace) \
            else None
        if raw:
            try:
                manifest = json.loads(raw)
            except ValueError as exc:
                raise IntegrityError(f"the manifest of pack {self.namespace!r} is damaged: {exc}") from exc
            if not (isinstance(manifest, dict) and isinstance(manifest.get("slots"), dict)
                    and all(isinstance(entry, dict) and {"blob", "serializer", "sha256", "size"} <= entry.keys()
                            for entry in manifest["slots"].values())):
                raise IntegrityError(f"the manifest of pack {self.namespace!r} is damaged (not a map of slots)")
            return manifest
        now = _now()
        return {"created_at": now, "updated_at": now, "slots": {}}

    def _current(self) -> dict[str, Any]:
        """The manifest as it is now (another handle or process may have changed it)."""
        self._manifest = self._read_manifest()
        return self._manifest

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, Any]]:
        """Lock the pack, hand out the current manifest, then write it back (and the file object's copy)."""
        if self.read_only:
            raise ReadOnlyError(f"pack {self.namespace!r} was opened from a read-only file object; open it "
                                "with 'r+b' (or 'w+b') to change it")
        with self._lock:
            manifest = self._current()
            yield manifest
            manifest["updated_at"] = _now()
            self.io.save_reserved(self.namespace, MANIFEST_KEY, json.dumps(manifest, sort_keys=True).encode())
            self._write_back()

    def _write_back(self) -> None:
        if self._file_object is None:
            return
        self._file_object.seek(0)
        self._file_object.truncate()
        with open(self.namespace, "rb") as copy:
            shutil.copyfileobj(copy, self._file_object)
        self._file_object.flush()

    # ---------------------------------------------------------------- slots
    def dump(self, slot: str, obj: Any, serializer: str | None = None, allow_pickle: bool = False) -> SlotInfo:
        """Store ``obj`` in ``slot`` (replacing what was there); identical data is stored once."""
        value, meta = encode_object(obj, serializer, allow_pickle, digest="sha256")  # MLIO's manifests record sha256
        return self._put(slot, value, meta)

    def _put(self, slot: str, value: Any, meta: dict[str, Any]) -> SlotInfo:
        # The serializer is part of the name: equal payload bytes of two serializers are two objects.
        blob_key = f"blob-{meta['serializer']}-{meta['sha256']}"
        with self._changing() as manifest:
            if not self.io.file_exists(self.namespace, blob_key):
                self.io.write_value(self.namespace, blob_key, value)
            previous = manifest["slots"].get(slot)
            manifest["slots"][slot] = {"blob": blob_key, "serializer": meta["serializer"],
                                       "sha256": meta["sha256"], "size": meta["size"]}
            if previous is not None:
                self._drop_if_unused(manifest, previous["blob"])
        return SlotInfo(meta["serializer"], meta["sha256"], meta["size"])

    def load(self, slot: str) -> Any:
        """Verify and load the object in ``slot``."""
        entry = self._current()["slots"].get(slot)
        if entry is None:
            raise KeyNotFoundError(self.namespace, [slot])
        info = object_info(self.io, self.namespace, entry["blob"])
        if (info.get("serializer"), info.get(info.get("digest", "sha256"))) != (entry["serializer"], entry["sha256"]):
            raise IntegrityError(f"slot {slot!r} of pack {self.namespace!r} points at an object that is not the "
                                 "one its manifest records (serializer or sha256 differ)")
        return load_object(self.io, self.namespace, entry["blob"], **self.load_options)

    def remove(self, slot: str) -> None:
        """Remove ``slot`` (and its data, unless another slot shares it)."""
        with self._changing() as manifest:
            entry = manifest["slots"].pop(slot, None)
            if entry is None:
                raise KeyNotFoundError(self.namespace, [slot])
            self._drop_if_unused(manifest, entry["blob"])

    def _drop_if_unused(self, manifest: dict[str, Any], blob_key: str) -> None:
        if all(entry["blob"] != blob_key for entry in manifest["slots"].values()):
            self.io.remove_files(self.namespace, blob_key)

    @property
    def manifest_info(self) -> ManifestInfo:
        manifest = self._current()
        return ManifestInfo(manifest["created_at"], manifest["updated_at"])

    @property
    def slots_info(self) -> dict[str, SlotInfo]:
        return {name: SlotInfo(e["serializer"], e["sha256"], e["size"]) for name, e in self._current()["slots"].items()}

    def __contains__(self, slot: object) -> bool:
        return slot in self._current()["slots"]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._current()["slots"]))

    def __len__(self) -> int:
        return len(self._current()["slots"])

    def close(self) -> None:
        """Release the backend (when the pack opened it); a file object's private copy goes with the object."""
        if self._own_io:
            self.io.close()

    def __enter__(self) -> Pack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _writable(file: FileObject[bytes]) -> bool:
    try:
        return bool(file.writable())
    except (AttributeError, ValueError):
        return False


def dump(obj: Any, file: str | os.PathLike[str] | FileObject[bytes], **options: Any) -> None:
    """Drop-in for ``pickle.dump``: store ``obj`` in the pack's default slot."""
    with Pack(file) as pack:
        pack.dump(DEFAULT_SLOT, obj, **options)


def load(file: str | os.PathLike[str] | FileObject[bytes], **load_options: Any) -> Any:
    """Drop-in for ``pickle.load``: the object in the pack's default slot."""
    with Pack(file, **load_options) as pack:
        return pack.load(DEFAULT_SLOT)


# --------------------------------------------------------------------------
# MLIO's own packs
# --------------------------------------------------------------------------
#: MLIO's serializer types and the mummi_io serializer that reads the same bytes.
MLIO_SERIALIZERS = {"default": "pickle", "generic-ml-models": "joblib"}


def import_mlio_pack(source: str | os.PathLike[str] | FileObject[bytes], destination: str | os.PathLike[str] | Pack,
                     allow_pickle: bool = False, overwrite: bool = False) -> dict[str, SlotInfo]:
    """Bring every slot of an MLIO pack (a zip with ``manifest.json``) into a mummi_io pack.

    The MLIO file is only read. Each slot's bytes are checked against the
    sha256 its manifest records and copied as they are, nothing is
    deserialized: MLIO's ``default`` slots (pickle) and ``generic-ml-models``
    slots (joblib) become mummi_io objects of the ``pickle`` and ``joblib``
    serializers, which load with ``allow_pickle=True``, as before. Both pickle,
    so the import itself needs ``allow_pickle=True``, as saving them would.

    Raises
    ------
    PickleRefusedError
        Without ``allow_pickle``, naming the slots; nothing is written.
    UnsupportedFormatError
        If ``source`` is not an MLIO pack (version 2), or holds a slot of a
        serializer mummi_io does not read (gensim's).
    InvalidArgumentError
        If the destination already has slots of those names (``overwrite=True``
        replaces them); nothing is written.
    IntegrityError
        If a slot's bytes do not match their recorded sha256; nothing is written.
    """
    slots = _read_mlio(source)
    if not allow_pickle:
        raise PickleRefusedError(
            f"the MLIO pack's slots {sorted(slots)} are pickled (MLIO's serializers pickle); pass "
            "allow_pickle=True to import them (they will load with allow_pickle=True, as before)"
        )
    pack = destination if isinstance(destination, Pack) else Pack(destination)
    try:
        taken = sorted(set(slots) & set(pack)) if not overwrite else []
        if taken:
            raise InvalidArgumentError(f"pack {pack.namespace!r} already has the slots {taken}; import into another "
                                       "pack, or pass overwrite=True to replace them")
        with zipfile.ZipFile(source) as archive:
            for slot, (serializer, member, packages) in slots.items():
                payload = archive.read(member)  # one slot in memory at a time; verified again as it is stored
                if hashlib.sha256(payload).hexdigest() != member.split(".")[0]:
                    raise IntegrityError(f"MLIO slot {slot!r} changed while it was imported")
                value, meta = encode_payload(payload, serializer, {"python": None, "packages": packages,
                                                                   "module": "mlio", "class": slot,
                                                                   "git_revision": None}, digest="sha256")
                pack._put(slot, value, meta)
        return {slot: pack.slots_info[slot] for slot in slots}
    finally:
        if pack is not destination:
            pack.close()


def _read_mlio(source: str | os.PathLike[str] | FileObject[bytes]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """``{slot: (mummi_io serializer, zip member, packages)}`` of an MLIO pack, every member's sha256 checked.

    The members are hashed as they stream (never held whole), so a damaged
    pack imports nothing and memory stays at one chunk.
    """
    def wrong(why: str) -> UnsupportedFormatError:
        return UnsupportedFormatError(f"{source!r} is not a readable MLIO pack: {why}")

    try:
        with zipfile.ZipFile(source) as archive:  # a name appearing twice: the last entry counts, as in MLIO
            try:
                manifest = json.loads(archive.read("manifest.json"))
            except KeyError:
                raise UnsupportedFormatError(f"{source!r} is a zip without manifest.json: not an MLIO pack") from None
            if not isinstance(manifest, dict) or manifest.get("version") != 2:
                raise UnsupportedFormatError(f"{source!r} is not an MLIO pack of version 2 (the one MLIO writes)")
            dependencies, entries = manifest.get("dependencies", {}), manifest.get("slots", {})
            if not isinstance(dependencies, dict) or not isinstance(entries, dict):
                raise wrong("its manifest's 'slots' and 'dependencies' must be maps")
            found = {}
            for slot, entry in entries.items():
                if not isinstance(entry, dict) or not isinstance(entry.get("dependencies", []), list):
                    raise wrong(f"slot {slot!r} is not described by a map")
                kind = entry.get("serializer")
                if kind not in MLIO_SERIALIZERS:
                    raise UnsupportedFormatError(f"MLIO slot {slot!r} uses the {kind!r} serializer, which mummi_io "
                                                 "does not read; load it with MLIO and save it with mummi_io")
                digest = str(entry.get("serialized_sha256_hash", ""))
                member = f"{digest}.slot"
                hasher = hashlib.sha256()
                with archive.open(member) as stream:
                    for chunk in iter(lambda: stream.read(1 << 20), b""):
                        hasher.update(chunk)
                if hasher.hexdigest() != digest:
                    raise IntegrityError(f"MLIO slot {slot!r} fails its sha256: the pack is damaged; nothing was "
                                         "imported")
                packages = {}
                for dependency in entry.get("dependencies", []):
                    described = dependencies.get(dependency, {})
                    if not isinstance(described, dict):
                        raise wrong(f"dependency {dependency!r} is not described by a map")
                    spec = str(described.get("version_specs", ""))
                    # MLIO wrote "~=<the version installed then>" of a module: mummi_io records that version,
                    # under the distribution that provides the module (sklearn: scikit-learn).
                    module = str(described.get("module_name", dependency))
                    packages[installed_distributions().get(module, [module])[0]] = spec.removeprefix("~=") or None
                found[str(slot)] = (MLIO_SERIALIZERS[kind], member, packages)
            return found
    except (zipfile.BadZipFile, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, UnsupportedFormatError):
            raise
        raise wrong(str(exc)) from exc
