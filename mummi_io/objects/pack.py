"""MLIO-style packs: named slots of objects in one file (an indexed tar), deduplicated and verified.

    with Pack("model.pack") as pack:
        pack.dump("object-1", model)
        "object-1" in pack; pack.load("object-1"); pack.remove("object-1")
        pack.manifest_info.created_at; pack.slots_info["object-1"].serialized_sha256_hash

Identical objects share one stored copy (slots point at a blob named by the
payload's sha256). ``dump(obj, file)`` and ``load(file)`` are the drop-in
compatibility functions (slot ``_default``).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from typing import IO as FileObject
from typing import Any, NamedTuple

from ..errors import KeyNotFoundError
from ..keys import RESERVED_PREFIX
from .store import encode_object

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


class Pack:
    """Slots of objects in one indexed tar file (or any namespace of ``io``)."""

    def __init__(self, file: str | os.PathLike[str] | FileObject[bytes], io: Any = None, **load_options: Any) -> None:
        from ..registry import get_io

        self._own_io = io is None
        self.io = io if io is not None else get_io("taridx", suffix="")  # the file name as given
        self.namespace = os.fspath(file) if isinstance(file, (str, os.PathLike)) else os.fspath(file.name)
        self.load_options = load_options
        raw = self.io.backend.read_many(self._ns, [MANIFEST_KEY])[0]
        now = _now()
        self._manifest: dict[str, Any] = json.loads(raw) if raw else {"created_at": now, "updated_at": now, "slots": {}}

    @property
    def _ns(self) -> str:
        return self.io._namespace(self.namespace)

    def _save_manifest(self) -> None:
        self._manifest["updated_at"] = _now()
        self.io.backend.write_many(self._ns, [(MANIFEST_KEY, json.dumps(self._manifest, sort_keys=True).encode())])

    def dump(self, slot: str, obj: Any, serializer: str | None = None, allow_pickle: bool = False) -> SlotInfo:
        """Store ``obj`` in ``slot`` (replacing what was there); identical data is stored once."""
        value, meta = encode_object(obj, serializer, allow_pickle)
        blob_key = f"blob-{meta['sha256']}"
        if not self.io.file_exists(self.namespace, blob_key):
            self.io.write_value(self.namespace, blob_key, value)
        previous = self._manifest["slots"].get(slot)
        self._manifest["slots"][slot] = {"blob": blob_key, "serializer": meta["serializer"],
                                         "sha256": meta["sha256"], "size": meta["size"]}
        self._save_manifest()
        if previous is not None:
            self._drop_if_unused(previous["blob"])
        return self.slots_info[slot]

    def load(self, slot: str) -> Any:
        """Verify and load the object in ``slot``."""
        entry = self._manifest["slots"].get(slot)
        if entry is None:
            raise KeyNotFoundError(self._ns, [slot])
        return self.io.load_object(self.namespace, entry["blob"], **self.load_options)

    def remove(self, slot: str) -> None:
        """Remove ``slot`` (and its data, unless another slot shares it)."""
        entry = self._manifest["slots"].pop(slot, None)
        if entry is None:
            raise KeyNotFoundError(self._ns, [slot])
        self._save_manifest()
        self._drop_if_unused(entry["blob"])

    def _drop_if_unused(self, blob_key: str) -> None:
        if all(entry["blob"] != blob_key for entry in self._manifest["slots"].values()):
            self.io.remove_files(self.namespace, blob_key)

    @property
    def manifest_info(self) -> ManifestInfo:
        return ManifestInfo(self._manifest["created_at"], self._manifest["updated_at"])

    @property
    def slots_info(self) -> dict[str, SlotInfo]:
        return {name: SlotInfo(e["serializer"], e["sha256"], e["size"]) for name, e in self._manifest["slots"].items()}

    def __contains__(self, slot: object) -> bool:
        return slot in self._manifest["slots"]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._manifest["slots"]))

    def __len__(self) -> int:
        return len(self._manifest["slots"])

    def __enter__(self) -> Pack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._own_io:
            self.io.close()


def dump(obj: Any, file: str | os.PathLike[str] | FileObject[bytes], **options: Any) -> None:
    """Drop-in for ``pickle.dump``: store ``obj`` in the pack's default slot."""
    with Pack(file) as pack:
        pack.dump(DEFAULT_SLOT, obj, **options)


def load(file: str | os.PathLike[str] | FileObject[bytes], **load_options: Any) -> Any:
    """Drop-in for ``pickle.load``: the object in the pack's default slot."""
    with Pack(file, **load_options) as pack:
        return pack.load(DEFAULT_SLOT)
