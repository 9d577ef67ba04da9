"""An index with valid checksums that lists names mummi_io never writes (another tool's, or an attacker's).

Such a name is not UTF-8, or breaks the key rules (``../etc/passwd``, an
empty name). Listing must raise a mummi_io error or list it (loading it
then raises ``InvalidKeyError``); compaction must refuse rather than write
it into the tar as a member; ``reindex`` must leave it out, and only when
the loss is accepted, since it changes what the namespace holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mummi_io import IntegrityError, get_io
from mummi_io.backends.taridx import index as idx
from mummi_io.backends.taridx.repair import write_index

_VALUES = {"a": b"A" * 10, "b": b"B" * 700, "c": b"C"}
_FOREIGN = [b"\xff\xfe", b"ok/\xc3", b"", b"../etc/passwd", b"/etc/passwd", b"a//b", b"x/./y", b"..", b"d/.mummi_io_x"]


def _namespace_whose_index_renames_b(tmp_path: Path, name: bytes) -> str:
    """A namespace of a, b, c whose index (checksums valid) lists b's value under ``name``."""
    ns = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(ns, list(_VALUES), list(_VALUES.values()))
        rows = io.backend.sessions(ns).table.live_entries()
        tar_end = io.backend.sessions(ns).table.tar_end
    table = idx.IndexTable(tar_end=tar_end)
    for key, offset, size, crc in rows:
        table.put([name if key == b"b" else key], [offset], [size], [crc])
    write_index(ns + ".idx", table)
    return ns


@pytest.mark.parametrize("name", _FOREIGN, ids=repr)
def test_a_foreign_name_in_the_index_is_never_written_nor_kept(tmp_path: Path, name: bytes) -> None:
    ns = _namespace_whose_index_renames_b(tmp_path, name)
    tar_before = Path(ns).read_bytes()
    with get_io("taridx") as io:
        try:
            listed = io.list_keys(ns)
        except IntegrityError as exc:  # not UTF-8: no str could name it
            assert "reindex" in str(exc)
        else:
            assert sorted(listed) == sorted(["a", "c", name.decode()])
        assert io.load_files(ns, ["a", "c"]) == [_VALUES["a"], _VALUES["c"]]

        with pytest.raises(IntegrityError, match="not keys.*reindex"):
            io.compact(ns)
        assert Path(ns).read_bytes() == tar_before

        with pytest.raises(IntegrityError, match="would lose data"):
            io.reindex(ns)
        assert Path(ns).read_bytes() == tar_before
        report = io.reindex(ns, accept_loss=True)
        assert report.not_keys == [name.decode("utf-8", "surrogateescape")]
        # The index was not mummi_io's, so its "deletion" of b is not trusted: b comes back from the tar.
        assert report.resurrected == ["b"]
        assert io.list_keys(ns) == sorted(_VALUES)
        assert io.load_files(ns, sorted(_VALUES)) == [_VALUES[k] for k in sorted(_VALUES)]
        io.compact(ns)
    with get_io("taridx") as fresh:
        assert fresh.list_keys(ns) == sorted(_VALUES)
        assert fresh.load_files(ns, sorted(_VALUES)) == [_VALUES[k] for k in sorted(_VALUES)]


def test_index_entries_of_a_name_that_is_not_utf8_is_an_integrity_error(tmp_path: Path) -> None:
    ns = _namespace_whose_index_renames_b(tmp_path, b"\xff\xfe")
    with get_io("taridx") as io, pytest.raises(IntegrityError, match="not UTF-8.*reindex"):
        io.backend.index_entries(ns)


def test_reserved_names_in_the_index_are_keys(tmp_path: Path) -> None:
    """What mummi_io itself writes under the reserved prefix (a pack's manifest) compacts and reindexes as before."""
    ns = _namespace_whose_index_renames_b(tmp_path, b".mummi_io_pack/manifest")
    with get_io("taridx") as io:
        report = io.reindex(ns)
        assert report.not_keys == [] and report.losses == []
        io.compact(ns)
        assert io.list_keys(ns) == ["a", "c"]
