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


class Reduced:
    """Rebuilt by calling the class with arguments (its own __reduce__), as pyiron's users write."""

    def __init__(self, species: str, size: int) -> None:
        self.species, self.size = species, size
        self.cache = {"derived": size * 2}  # rebuilt by __init__, not stored

    def __reduce__(self):
        return (Reduced, (self.species, self.size))

    def __eq__(self, other) -> bool:
        return type(other) is Reduced and (self.species, self.size, self.cache) == (other.species, other.size,
                                                                                    other.cache)


class WithNewArgsEx:
    """Keyword arguments for __new__ (pickle's __getnewargs_ex__)."""

    def __new__(cls, *, unit: str):
        made = super().__new__(cls)
        made.unit = unit
        return made

    def __getnewargs_ex__(self):
        return (), {"unit": self.unit}

    def __eq__(self, other) -> bool:
        return type(other) is WithNewArgsEx and other.unit == self.unit


class CustomState:
    """__getstate__/__setstate__ that transform the state."""

    def __init__(self, values: list) -> None:
        self.values = values
        self.total = sum(values)

    def __getstate__(self):
        return {"values": self.values}

    def __setstate__(self, state) -> None:
        self.values = state["values"]
        self.total = sum(self.values)

    def __eq__(self, other) -> bool:
        return type(other) is CustomState and (self.values, self.total) == (other.values, other.total)


class Tags(set):
    """A set subclass: set.__reduce__ calls the class with its items, which only classes asking for it get."""


class Real(__import__("numpy").float64):
    """A numpy scalar subclass."""


class Labelled(Point):
    """A namedtuple subclass whose instances carry attributes of their own."""
