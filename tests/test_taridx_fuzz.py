"""Corruption fuzz for taridx: the right value or IntegrityError, never wrong bytes, no intact value lost.

Each trial writes a random history (saves of many sizes and key shapes,
overwrites, removes, renames) into a fresh namespace, keeping a dict of what
it must hold, then damages it one way: bit flips anywhere in the tar, bit
flips in member headers, a cut tar, bit flips in the index, a cut index. Half
the trials then run ``reindex()`` (which may refuse, with IntegrityError, to
apply a loss). A fresh process's view then loads every key ever used, and a
writer writes once more. The outcome of each load is one of:

- the right value;
- IntegrityError (the damage was detected);
- missing, for a key whose member bytes (header or data) were damaged or cut.

Anything else fails the test: wrong bytes (including a deleted key coming
back with its old value), or a value lost although none of its bytes was
touched. Reads must also change no byte of any file. CI runs 150 trials;
``--runslow`` runs 1500.
"""

from __future__ import annotations

import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mummi_io import IntegrityError, get_io

from taridx_helpers import scale, snapshot

KEYS = [f"k{i:02d}" for i in range(24)] + [f"long-{'x' * 110}-{i}" for i in range(3)] + ["é-ü", "日本.npz"]
DAMAGE = ["tar bit flips", "tar header flips", "tar cut", "index bit flips", "index cut"]


@dataclass
class Outcome:
    """Tallies over all trials."""

    trials: int = 0
    right: int = 0
    detected: int = 0
    lost_damaged: int = 0
    silently_wrong: list[str] = field(default_factory=list)
    lost_intact: list[str] = field(default_factory=list)


def _history(rng: random.Random, ns: str) -> dict[str, bytes]:
    model: dict[str, bytes] = {}
    with get_io("taridx") as io:
        for _ in range(rng.randint(8, 30)):
            roll = rng.random()
            if roll < 0.65 or not model:
                keys = rng.sample(KEYS, rng.randint(1, 4))
                values = [rng.randbytes(rng.choice([0, 7, 300, 1500, 5000])) for _ in keys]
                io.save_files(ns, keys, values)
                model.update(zip(keys, values))
            elif roll < 0.85:
                gone = rng.sample(sorted(model), min(len(model), rng.randint(1, 2)))
                io.remove_files(ns, gone)
                for key in gone:
                    del model[key]
            else:
                old = rng.choice(sorted(model))
                new = rng.choice([k for k in KEYS if k != old])
                io.move_keys(ns, [old], [new])
                model[new] = model.pop(old)
    return model


def _member_ranges(ns: str) -> dict[str, tuple[int, int]]:
    """For each live key, the bytes of its current member (first header block to end of data)."""
    with get_io("taridx") as io:
        io.list_keys(ns)  # loads the state
        table = io.backend.sessions(ns).table
        locations = {key.decode(): table.lookup(key)[0] for key in table.slots}
    with tarfile.open(ns) as archive:
        members = {member.offset_data: (member.offset, member.offset_data + member.size) for member in archive}
    return {key: members[data_offset] for key, data_offset in locations.items()}


def _damage(rng: random.Random, ns: str, kind: str) -> tuple[list[int], int | None]:
    """Damage the namespace; return the flipped tar offsets and where the tar was cut (if it was)."""
    tar_size = os.path.getsize(ns)
    index = ns + ".idx"
    if kind in ("tar bit flips", "tar header flips", "index bit flips"):
        path = index if kind.startswith("index") else ns
        size = os.path.getsize(path)
        if kind == "tar header flips":
            with get_io("taridx") as io:
                io.list_keys(ns)
                state = io.backend.sessions(ns)
                headers = [state.table.offsets[s] - 512 for s in state.table.slots.values()]
            offsets = [rng.choice(headers) + rng.randrange(512) for _ in range(rng.randint(1, 2))]
        else:
            offsets = [rng.randrange(size) for _ in range(rng.randint(1, 3))]
        with open(path, "r+b") as handle:
            for offset in offsets:
                handle.seek(offset)
                byte = handle.read(1)
                handle.seek(offset)
                handle.write(bytes([byte[0] ^ (1 << rng.randrange(8))]))
        return (offsets if path == ns else []), None
    if kind == "tar cut":
        cut = rng.randrange(tar_size)
        os.truncate(ns, cut)
        return [], cut
    os.truncate(index, rng.randrange(os.path.getsize(index) + 1))
    return [], None


def _trial(seed: int, parent: Path, outcome: Outcome) -> None:
    rng = random.Random(seed)
    directory = parent / f"trial-{seed}"
    directory.mkdir()
    ns = str(directory / "run.tar")
    model = _history(rng, ns)
    ranges = _member_ranges(ns)
    kind = DAMAGE[seed % len(DAMAGE)]
    flips, cut = _damage(rng, ns, kind)
    reindexed = rng.random() < 0.5
    if reindexed:
        with get_io("taridx") as io:
            try:
                io.reindex(ns)
            except IntegrityError:
                pass  # a loss the caller did not accept: nothing changed

    def touched(key: str) -> bool:
        if key not in ranges:
            return False
        start, end = ranges[key]
        return any(start <= f < end for f in flips) or (cut is not None and end > cut)

    def check(label: str) -> None:
        with get_io("taridx") as fresh:
            for key in [*KEYS, "written-after"]:
                where = f"seed {seed} ({kind}{', reindexed' if reindexed else ''}, {label}): {key!r}"
                try:
                    got = fresh.load_files(ns, key, missing=None)
                except IntegrityError:
                    outcome.detected += 1
                    continue
                expected = model.get(key)
                if got == expected:
                    outcome.right += got is not None
                elif got is None and touched(key):
                    outcome.lost_damaged += 1
                elif got is None:
                    outcome.lost_intact.append(where)
                else:
                    outcome.silently_wrong.append(where)

    before = snapshot(directory)
    check("read")
    assert snapshot(directory) == before, f"seed {seed}: a read changed the files"
    with get_io("taridx") as writer:
        try:
            writer.save_files(ns, "written-after", b"w")
            model["written-after"] = b"w"
        except IntegrityError:
            pass  # refused: the tar lost what its index knows
    check("after a write")
    outcome.trials += 1


@pytest.mark.timeout(300 * scale())
def test_corruption_never_gives_wrong_bytes_nor_loses_intact_values(tmp_path: Path) -> None:
    outcome = Outcome()
    for seed in range(150 * scale()):
        _trial(seed, tmp_path, outcome)
    summary = (f"{outcome.trials} trials: {outcome.right} right, {outcome.detected} IntegrityError, "
               f"{outcome.lost_damaged} lost with their bytes, {len(outcome.silently_wrong)} silently wrong, "
               f"{len(outcome.lost_intact)} intact values lost")
    print(summary)
    assert not outcome.silently_wrong, summary + "\n" + "\n".join(outcome.silently_wrong[:20])
    assert not outcome.lost_intact, summary + "\n" + "\n".join(outcome.lost_intact[:20])
    assert outcome.detected > 0 and outcome.right > 0  # the damage was real, and most values survived it
