"""The ``taridx`` backend: the contract suite plus format, concurrency, crash and integrity tests."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from mummi_io.facade import IO
from mummi_io.testing import BackendContract


def _tar_path(namespace: str) -> str:
    return namespace if namespace.endswith(".tar") else namespace + ".tar"


class TestTaridxContract(BackendContract):
    kind = "taridx"

    def raw_get(self, io: IO, namespace: str, key: str) -> bytes | None:
        """Read the last member named ``key`` with the standard library's tarfile."""
        path = _tar_path(namespace)
        if not os.path.exists(path):
            return None
        with tarfile.open(path) as archive:
            found = None
            deleted = False
            for member in archive:
                if member.name == key:
                    found, deleted = member, False
                elif member.name == ".mummi_io.journal":
                    import json

                    if key in json.loads(archive.extractfile(member).read())["delete"]:
                        deleted = True
            if found is None or deleted:
                return None
            return archive.extractfile(found).read()

    def raw_put(self, io: IO, namespace: str, key: str, value: bytes) -> None:
        """Append a member with plain tarfile (no index update), then ask for a reindex."""
        import io as _io

        path = _tar_path(namespace)
        with tarfile.open(path, "a") as archive:
            info = tarfile.TarInfo(key)
            info.size = len(value)
            archive.addfile(info, _io.BytesIO(value))
        io.backend.reindex(path)
