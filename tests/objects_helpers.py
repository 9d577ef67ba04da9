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


# ---------------------------------------------------------------- for the round-trip properties
import enum  # noqa: E402
from collections import namedtuple  # noqa: E402


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 3


class Permission(enum.Flag):
    READ = 1
    WRITE = 2


Point = namedtuple("Point", "x y")


class Slotted:
    """State in __slots__ (no __dict__)."""

    __slots__ = ("a", "b")

    def __init__(self, a, b) -> None:
        self.a, self.b = a, b

    def __eq__(self, other) -> bool:
        return type(other) is Slotted and (self.a, self.b) == (other.a, other.b)


class WithNewArgs:
    """A __new__ that needs its argument back (pickle's __getnewargs__)."""

    def __new__(cls, size):
        made = super().__new__(cls)
        made.size = size
        return made

    def __getnewargs__(self):
        return (self.size,)

    def __eq__(self, other) -> bool:
        return type(other) is WithNewArgs and vars(self) == vars(other)


class Tagged(dict):
    """A dict subclass with an attribute."""

    def __eq__(self, other) -> bool:
        return type(other) is Tagged and dict.__eq__(self, other) and vars(self) == vars(other)


class Sequence(list):
    pass


class Name(str):
    pass


@dataclass(frozen=True, slots=True)
class Frozen:
    x: int
    label: str = ""


class WithDel:
    """Has a __del__: never rebuilt from data."""

    def __del__(self) -> None:
        pass


class Blob(bytes):
    """A bytes subclass: bytes.__new__(Blob, 10**12) would allocate a terabyte."""
