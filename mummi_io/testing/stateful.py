"""A Hypothesis state machine that checks a backend against a plain ``dict``.

Random sequences of saves, loads, range reads, removes, moves (within and across
namespaces), listings, reopenings, a second process's view and crashes are
run against a backend and against a model (one dict per namespace); after
every step the backend must hold exactly what the model holds. This is where
bugs in an append-only index, its reload logic and its repairs surface.

Use: subclass :class:`BackendMachine`, set ``kind``, and override
:meth:`~BackendMachine.make_namespaces` and :meth:`~BackendMachine.crash`
(what a writer killed mid-batch leaves on this backend); add rules for a
backend's own maintenance (taridx: ``reindex``, ``compact``). Then::

    TestSimpleMachine = SimpleMachine.TestCase
"""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ..core.errors import KeyNotFoundError
from ..registry import IO, get_io

#: A small pool, so that saves overwrite, removes hit and moves collide.
KEYS = st.sampled_from(["a", "b", "d.npz", "日本", ".hidden", "x" * 120])
VALUES = st.one_of(st.binary(max_size=64), st.binary(min_size=500, max_size=4000))
#: Byte ranges as Python slices: from the start, from the end, past the end, empty.
RANGES = st.tuples(st.integers(-5000, 5000), st.none() | st.integers(0, 5000))
PATTERNS = st.sampled_from(["*", "a*", "?", "*.npz", "[abc]", "x*", "*e*"])


class BackendMachine(RuleBasedStateMachine):
    """Random operations on a backend, checked against a dict after every step."""

    kind: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.namespaces = self.make_namespaces()
        self.model: dict[str, dict[str, bytes]] = {ns: {} for ns in self.namespaces}
        self.io = self.open()

    # ------------------------------------------------------- for subclasses
    def make_namespaces(self) -> list[str]:
        """Two fresh, empty, distinct namespaces for one run."""
        raise NotImplementedError

    def open(self) -> IO:
        """A new handle on the backend (a new process would open the same way)."""
        return get_io(self.kind, **self.options)

    def crash(self, namespace: str, items: list[tuple[str, bytes]]) -> None:
        """Leave what a writer killed while saving ``items`` leaves; no key may change."""
        raise NotImplementedError

    def teardown(self) -> None:
        self.io.close()

    # ----------------------------------------------------------------- rules
    @rule(which=st.integers(0, 1), items=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=5))
    def save(self, which: int, items: list[tuple[str, bytes]]) -> None:
        ns = self.namespaces[which]
        self.io.save_files(ns, [k for k, _ in items], [v for _, v in items])
        self.model[ns].update(items)

    @rule(which=st.integers(0, 1), keys=st.lists(KEYS, max_size=4))
    def load(self, which: int, keys: list[str]) -> None:
        ns = self.namespaces[which]
        assert self.io.load_files(ns, keys, missing=None) == [self.model[ns].get(k) for k in keys]
        missing = [k for k in keys if k not in self.model[ns]]
        if missing:
            try:
                self.io.load_files(ns, keys)
            except KeyNotFoundError as error:
                assert error.keys == missing
            else:
                raise AssertionError(f"loading missing keys {missing} did not raise")

    @rule(which=st.integers(0, 1), reads=st.lists(st.tuples(KEYS, RANGES), max_size=4))
    def load_ranges(self, which: int, reads: list[tuple[str, tuple[int, int | None]]]) -> None:
        ns = self.namespaces[which]
        expected = [None if k not in self.model[ns] else self.model[ns][k][slice(*span)] for k, span in reads]
        assert self.io.load_ranges(ns, [k for k, _ in reads], [span for _, span in reads]) == expected

    @rule(which=st.integers(0, 1), keys=st.lists(KEYS, max_size=3))
    def remove(self, which: int, keys: list[str]) -> None:
        ns = self.namespaces[which]
        self.io.remove_files(ns, keys)
        for key in keys:
            self.model[ns].pop(key, None)

    @rule(source=st.integers(0, 1), destination=st.integers(0, 1), old=KEYS, new=KEYS)
    def move(self, source: int, destination: int, old: str, new: str) -> None:
        src, dst = self.namespaces[source], self.namespaces[destination]
        if old not in self.model[src]:
            try:
                self.io.move_keys(src, [old], [new], dest_namespace=dst)
            except KeyNotFoundError:
                return
            raise AssertionError(f"moving missing key {old!r} did not raise")
        self.io.move_keys(src, [old], [new], dest_namespace=dst)
        value = self.model[src].pop(old)
        self.model[dst][new] = value

    @rule(which=st.integers(0, 1), pattern=PATTERNS)
    def list_keys(self, which: int, pattern: str) -> None:
        import fnmatch

        ns = self.namespaces[which]
        expected = sorted(k for k in self.model[ns] if fnmatch.fnmatchcase(k, pattern))
        assert self.io.list_keys(ns, pattern) == expected

    @rule(which=st.integers(0, 1), keys=st.lists(KEYS, max_size=4))
    def exists(self, which: int, keys: list[str]) -> None:
        ns = self.namespaces[which]
        assert self.io.file_exists(ns, keys) == [k in self.model[ns] for k in keys]

    @rule()
    def reopen(self) -> None:
        self.io.close()
        self.io = self.open()

    @rule(which=st.integers(0, 1))
    def another_process_reads(self, which: int) -> None:
        ns = self.namespaces[which]
        with self.open() as other:
            keys = sorted(self.model[ns])
            assert other.list_keys(ns) == keys
            assert other.load_files(ns, keys) == [self.model[ns][k] for k in keys]

    @rule(which=st.integers(0, 1), items=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=4))
    def crash_mid_batch(self, which: int, items: list[tuple[str, bytes]]) -> None:
        self.crash(self.namespaces[which], items)

    # ------------------------------------------------------------- invariant
    @invariant()
    def holds_what_the_model_holds(self) -> None:
        for ns, expected in self.model.items():
            keys = sorted(expected)
            assert self.io.list_keys(ns) == keys, f"keys of {ns}"
            assert self.io.load_files(ns, keys) == [expected[k] for k in keys], f"values of {ns}"
