"""Importable classes for the objects tests (stored by import path, so they must live in a module)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Params:
    n: int
    name: str = "x"
    weights: list[float] = field(default_factory=list)


@dataclass
class Experiment:
    params: Params
    tags: tuple[str, ...] = ()


class Counter:
    """A plain class: stored through __getstate__/__setstate__ like pickle does, but as JSON."""

    def __init__(self, start: int) -> None:
        self.count = start
        self.history = [start]

    def __getstate__(self) -> dict:
        return {"count": self.count, "history": self.history}

    def __setstate__(self, state: dict) -> None:
        self.count = state["count"]
        self.history = state["history"]
        self.restored = True


class Opaque:
    """Holds something JSON cannot express: only pickle stores it."""

    def __init__(self) -> None:
        self.function = len
