"""MLIO-style packs: named slots of objects in one file (an indexed tar), deduplicated and verified.

    with Pack("model.pack") as pack:
        pack.dump("object-1", model)
        "object-1" in pack; pack.load("object-1"); pack.remove("object-1")
        pack.manifest_info.created_at; pack.slots_info["object-1"].serialized_sha256_hash

Identical objects share one stored copy (slots point at a blob named by the
payload's sha256). Any number of handles and processes may use one pack
file: each change takes the pack's lock, reads the manifest again, applies
itself and writes it back, and every read looks at the current manifest, so
no slot is ever lost. A pack may also be given as a file object: one with a
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
import zipfile
from collections.abc import Iterator
from typing import IO as FileObject
from typing import Any, NamedTuple

import filelock

from ..errors import IntegrityError, KeyNotFoundError, PickleRefusedError, ReadOnlyError, UnsupportedFormatError
from ..keys import RESERVED_PREFIX
from .store import _distributions, encode_object, encode_payload

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
    coordinated by a lock file only when that namespace is a local file.
    ``load_options`` (``env=``, ``allow_pickle=``...) apply to every ``load``.
    """

    def __init__(self, file: str | os.PathLike[str] | FileObject[bytes], io: Any = None, **load_options: Any) -> None:
        from ..registry import get_io

        self._file_object: FileObject[bytes] | None = None
        self._scratch: str | None = None
        self.read_only = False
        if isinstance(file, (str, os.PathLike)):
            self.namespace = os.fspath(file)
        else:
            self.read_only = not _writable(file)
            path = _path_of(file)
            if path is None:  # BytesIO and the like: work on a private copy, written back after each change
                self._file_object = file
                self._scratch = tempfile.mkdtemp(prefix="mummi_io-pack-")
                path = os.path.join(self._scratch, "pack")
                file.seek(0)
                with open(path, "wb") as copy:
                    shutil.copyfileobj(file, copy)
            self.namespace = path
        self._own_io = io is None
        self.io = io if io is not None else get_io("taridx", suffix="")  # the file name as given
        self.load_options = load_options
        local = self._own_io or self.io.get_type() in ("simple", "taridx")
        self._lock: Any = filelock.FileLock(self.namespace + ".pack-lock") if local and not self.read_only \
            else threading.Lock()
        self._manifest = self._read_manifest()

    # ------------------------------------------------------------- manifest
    @property
    def _ns(self) -> str:
        return self.io._namespace(self.namespace)

    def _read_manifest(self) -> dict[str, Any]:
        raw = self.io.backend.read_many(self._ns, [MANIFEST_KEY])[0] if self.io.namespace_exists(self.namespace) \
            else None
        if raw:
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise IntegrityError(f"the manifest of pack {self.namespace!r} is damaged: {exc}") from exc
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
            self.io.backend.write_many(self._ns, [(MANIFEST_KEY, json.dumps(manifest, sort_keys=True).encode())])
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
        value, meta = encode_object(obj, serializer, allow_pickle)
        return self._put(slot, value, meta)

    def _put(self, slot: str, value: Any, meta: dict[str, Any]) -> SlotInfo:
        blob_key = f"blob-{meta['sha256']}"
        with self._changing() as manifest:
            if not self.io.file_exists(self.namespace, blob_key):
                self.io.write_value(self.namespace, blob_key, value)
            previous = manifest["slots"].get(slot)
            manifest["slots"][slot] = {"blob": blob_key, "serializer": meta["serializer"],
                                       "sha256": meta["sha256"], "size": meta["size"]}
            if previous is not None:
                self._drop_if_unused(manifest, previous["blob"])
        return self.slots_info[slot]

    def load(self, slot: str) -> Any:
        """Verify and load the object in ``slot``."""
        entry = self._current()["slots"].get(slot)
        if entry is None:
            raise KeyNotFoundError(self._ns, [slot])
        return self.io.load_object(self.namespace, entry["blob"], **self.load_options)

    def remove(self, slot: str) -> None:
        """Remove ``slot`` (and its data, unless another slot shares it)."""
        with self._changing() as manifest:
            entry = manifest["slots"].pop(slot, None)
            if entry is None:
                raise KeyNotFoundError(self._ns, [slot])
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
        """Release the backend (when the pack opened it) and the private copy of a file object."""
        if self._own_io:
            self.io.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

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
                     allow_pickle: bool = False) -> dict[str, SlotInfo]:
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
        for slot, (serializer, payload, packages) in slots.items():
            value, meta = encode_payload(payload, serializer, {"python": None, "packages": packages,
                                                               "module": "mlio", "class": slot,
                                                               "git_revision": None})
            pack._put(slot, value, meta)
        return {slot: pack.slots_info[slot] for slot in slots}
    finally:
        if pack is not destination:
            pack.close()


def _read_mlio(source: str | os.PathLike[str] | FileObject[bytes]) -> dict[str, tuple[str, bytes, dict[str, Any]]]:
    """``{slot: (mummi_io serializer, payload, packages)}`` of an MLIO pack, every payload verified."""
    try:
        with zipfile.ZipFile(source) as archive:  # a name appearing twice: the last entry counts, as in MLIO
            try:
                manifest = json.loads(archive.read("manifest.json"))
            except KeyError:
                raise UnsupportedFormatError(f"{source!r} is a zip without manifest.json: not an MLIO pack") from None
            if not isinstance(manifest, dict) or manifest.get("version") != 2:
                raise UnsupportedFormatError(f"{source!r} is not an MLIO pack of version 2 (the one MLIO writes)")
            dependencies = manifest.get("dependencies", {})
            found = {}
            for slot, entry in manifest.get("slots", {}).items():
                kind = entry.get("serializer")
                if kind not in MLIO_SERIALIZERS:
                    raise UnsupportedFormatError(f"MLIO slot {slot!r} uses the {kind!r} serializer, which mummi_io "
                                                 "does not read; load it with MLIO and save it with mummi_io")
                digest = str(entry.get("serialized_sha256_hash", ""))
                payload = archive.read(f"{digest}.slot")
                if hashlib.sha256(payload).hexdigest() != digest:
                    raise IntegrityError(f"MLIO slot {slot!r} fails its sha256: the pack is damaged; nothing was "
                                         "imported")
                packages = {}
                for dependency in entry.get("dependencies", []):
                    described = dependencies.get(dependency, {})
                    spec = str(described.get("version_specs", ""))
                    # MLIO wrote "~=<the version installed then>" of a module: mummi_io records that version,
                    # under the distribution that provides the module (sklearn: scikit-learn).
                    module = str(described.get("module_name", dependency))
                    packages[_distributions().get(module, [module])[0]] = spec.removeprefix("~=") or None
                found[slot] = (MLIO_SERIALIZERS[kind], payload, packages)
            return found
    except (zipfile.BadZipFile, ValueError, KeyError) as exc:
        if isinstance(exc, UnsupportedFormatError):
            raise
        raise UnsupportedFormatError(f"{source!r} is not a readable MLIO pack ({exc})") from exc
