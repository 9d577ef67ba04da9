"""Helpers for the taridx tests: what a killed writer leaves, and what a read must not change."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mummi_io.backends.taridx import index as idx
from mummi_io.backends.taridx.tarformat import build_members


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``directory``: its sha256 and mtime (what a read must not change)."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            found[str(path.relative_to(directory))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        else:
            found[str(path.relative_to(directory)) + "/"] = ("dir", 0)
    return found


def committed_end(ns: str) -> int:
    """Where the tar's committed members end, according to its index."""
    table = idx.IndexTable()
    data = Path(ns + ".idx").read_bytes()
    idx.apply_records(table, memoryview(data)[idx.FILE_HEADER.size:], idx.FILE_HEADER.size)
    return table.tar_end


def append_torn_batch(ns: str, keys: list[str], keep: float, seed: int = 0) -> bytes:
    """Write the first ``keep`` (< 1) of a batch's bytes where the next batch goes: what a killed writer leaves.

    A writer first moves any earlier torn tail aside (that is how it finds the
    place to write): here the earlier tail, never acknowledged, is dropped.
    """
    values = [(k, bytes([(seed + i) % 251]) * (1000 + 700 * i)) for i, k in enumerate(keys)]
    chunks, length, _ = build_members(values, [], 0, [0] * len(keys))
    torn = b"".join(bytes(c) for c in chunks)[: min(length - 1, int(length * keep))]
    end = committed_end(ns)
    os.truncate(ns, end)
    with open(ns, "r+b") as handle:
        handle.seek(end)
        handle.write(torn)
    return torn


def append_torn_index_record(ns: str) -> None:
    """Append the first bytes of an index record (a writer killed while committing)."""
    record = idx.encode_put([b"never"], [0], [1], [0], 0, commit=True)
    with open(ns + ".idx", "ab") as handle:
        handle.write(record[: len(record) // 2])


def scale() -> int:
    """How much bigger to make the property and fuzz tests: 10 with --runslow or MUMMI_IO_SLOW=1."""
    return 10 if os.environ.get("MUMMI_IO_SLOW") == "1" else 1
