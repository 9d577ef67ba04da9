"""The batch builder of taridx's tar members: the fast (numpy) paths give exactly the bytes of the plain one.

``build_members`` lays out many small values as rows of one array and
builds plain ustar headers for a whole batch at once; ``member_header``
builds one header at a time and is the reference. Any difference would be a
tar other tools, or older mummi_io versions, read differently.
"""

from __future__ import annotations

import tarfile
import zlib
from io import BytesIO

from hypothesis import given, settings
from hypothesis import strategies as st

from mummi_io.backends.taridx.scan import MappedTar, scan
from mummi_io.backends.taridx.tarformat import (
    BLOCK, END_OF_ARCHIVE, JOURNAL_NAME, build_members, journal_bytes, member_header, seal_members,
)

_MTIME = 1_700_000_000
_NAMES = st.one_of(
    st.text(st.characters(min_codepoint=ord("a"), max_codepoint=ord("z")), min_size=1, max_size=120),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0/"), min_size=1, max_size=20),
)
_SIZES = st.sampled_from([0, 1, 100, 511, 512, 513, 3000])


def _reference(members: list[tuple[str, bytes]], crcs: list[int], sealed: bool) -> bytes:
    """The batch one member at a time, with member_header."""
    blob = bytearray()
    for number, ((name, value), crc) in enumerate(zip(members, crcs)):
        ends = sealed and number == len(members) - 1
        blob += member_header(name, len(value), _MTIME, crc, ends, len(blob) >> 9) + value + bytes(-len(value) % BLOCK)
    return bytes(blob)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(_NAMES, _SIZES), min_size=1, max_size=30, unique_by=lambda pair: pair[0]),
    st.booleans(), st.booleans(), st.booleans(), st.randoms(use_true_random=False),
)
def test_a_batch_is_the_same_bytes_however_it_is_built(
    shape: list[tuple[str, int]], deletes: bool, sealed: bool, as_views: bool, rng: object,
) -> None:
    items = [(name, rng.randbytes(size)) for name, size in shape]  # type: ignore[attr-defined]
    given_items = [(name, memoryview(value) if as_views else value) for name, value in items]
    deleted = ["gone", "also/gone"] if deletes else []
    crcs = [zlib.crc32(value) for _, value in items]
    chunks, length, placement = build_members(given_items, deleted, _MTIME, crcs if sealed else None)
    blob = bytearray(b"".join(bytes(chunk) for chunk in chunks))
    assert len(blob) == length
    members = items + ([(JOURNAL_NAME, journal_bytes(deleted))] if deleted else [])
    member_crcs = crcs + ([zlib.crc32(journal_bytes(deleted))] if deleted else [])
    unsealed_crcs = ([0] * len(items) + member_crcs[len(items):]) if not sealed else member_crcs
    assert bytes(blob) == _reference(members, unsealed_crcs, sealed)
    assert placement.values == len(items) and placement.sizes == [len(v) for _, v in members]
    for (name, value), data_offset in zip(members, placement.data_offsets):
        assert blob[data_offset:data_offset + len(value)] == value
    if not sealed:
        for offset, header in seal_members(placement, crcs, _MTIME):
            blob[offset:offset + len(header)] = header
        assert bytes(blob) == _reference(members, member_crcs, True)
    # Every tar reader reads it; mummi_io's scan finds one complete batch holding every value.
    with tarfile.open(fileobj=BytesIO(bytes(blob) + END_OF_ARCHIVE)) as archive:
        assert [m.name for m in archive.getmembers()] == [name for name, _ in members]


def test_a_batch_of_small_values_scans_back_as_one_complete_batch(tmp_path: object) -> None:
    items = [(f"sim-{i:05d}.npz", bytes([i % 251]) * (i % 600)) for i in range(2000)]
    chunks, length, _ = build_members(items, [], _MTIME, [zlib.crc32(v) for _, v in items])
    path = f"{tmp_path}/b.tar"
    with open(path, "wb") as handle:
        handle.write(b"".join(bytes(c) for c in chunks) + END_OF_ARCHIVE)
    with open(path, "rb") as handle, MappedTar(handle.fileno(), length + len(END_OF_ARCHIVE)) as source:
        found = scan(source, 0, lambda name: True)
    assert len(found.batches) == 1 and not found.damage
    assert [key for key, *_ in found.batches[0].puts] == [key for key, _ in items]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=5)), max_size=12))
def test_a_freshly_opened_index_lists_and_finds_what_was_written(
    tmp_path_factory: object, batches: list[tuple[bool, list[str]]],
) -> None:
    """Opening defers building the key dict; listing then must still apply overwrites and deletes in order."""
    from mummi_io import get_io

    ns = f"{tmp_path_factory.mktemp('idx')}/t.tar"  # type: ignore[attr-defined]
    model: dict[str, bytes] = {}
    with get_io("taridx") as writer:
        writer.save_files(ns, "seed", b"0")
        model["seed"] = b"0"
        for number, (is_put, keys) in enumerate(batches):
            if is_put:
                values = [f"{key}{number}".encode() for key in keys]
                writer.save_files(ns, keys, values)
                model.update(zip(keys, values))
            else:
                writer.remove_files(ns, keys)
                for key in keys:
                    model.pop(key, None)
    with get_io("taridx") as reader:
        assert reader.list_keys(ns) == sorted(model)
    with get_io("taridx") as reader:
        assert reader.load_files(ns, sorted(model)) == [model[key] for key in sorted(model)]
        assert reader.list_keys(ns) == sorted(model)


def test_a_built_batch_stays_as_built_when_another_is_built_before_it_is_written() -> None:
    """A save from a signal handler (or any nested save in the same thread) runs between building a batch
    and writing it: the first batch's bytes must not change under it (a reused buffer did exactly that)."""
    first, _, _ = build_members([(f"a{i}", b"A" * 100) for i in range(50)], [], _MTIME, [zlib.crc32(b"A" * 100)] * 50)
    before = b"".join(bytes(chunk) for chunk in first)
    build_members([(f"b{i}", b"B" * 100) for i in range(50)], [], _MTIME, [zlib.crc32(b"B" * 100)] * 50)
    assert b"".join(bytes(chunk) for chunk in first) == before
