"""The round-trip rule: what save_object accepts, load_object gives back equal and of the same type.

Hypothesis generates nested values of every supported type and checks them on
every backend with a strict comparison (types at every depth, float bits,
dtypes, time zones, defaultdict factories, deque lengths). Anything refused is
refused at save, with nothing written. And the safe loader is attacked with
hand-made payloads (carrying a valid digest) that name code to run.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import fractions
import io as stdio
import math
import os
import pathlib
import pickle
import struct
import threading
import uuid
import zoneinfo
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mummi_io import PickleRefusedError, UnsupportedObjectError
from mummi_io.objects.store import encode_object
from objects_helpers import (
    Color, Frozen, Level, Name, Params, Permission, Point, Sequence, Slotted, Tagged, WithDel, WithNewArgs,
)
from taridx_helpers import scale

@pytest.fixture
def io(io_each_backend):
    return io_each_backend


# --------------------------------------------------------------------------
# A strict comparison: equal, and of the same type at every depth
# --------------------------------------------------------------------------
def same(a: Any, b: Any) -> bool:  # noqa: C901 - one case per kind of value
    if type(a) is not type(b):
        return False
    if isinstance(a, enum.Enum):
        return a is b
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and (
            a.tobytes() == b.tobytes() if not a.dtype.hasobject else all(map(same, a.ravel(), b.ravel())))
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (datetime.datetime, datetime.time)):
        return a == b and a.fold == b.fold and (a.tzinfo is b.tzinfo or a.tzinfo == b.tzinfo)
    if isinstance(a, collections.defaultdict) and a.default_factory is not b.default_factory:
        return False
    if isinstance(a, collections.deque) and a.maxlen != b.maxlen:
        return False
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(same(a[k], b[k]) for k in a) and same_attributes(a, b)
    if isinstance(a, (list, tuple, collections.deque)):
        return len(a) == len(b) and all(map(same, a, b)) and same_attributes(a, b)
    if isinstance(a, (set, frozenset)):
        return a == b
    if isinstance(a, (str, bytes, bytearray, int)) or a is None:
        return a == b and same_attributes(a, b)
    if isinstance(a, (datetime.date, datetime.timedelta, fractions.Fraction, uuid.UUID, pathlib.PurePath)):
        return a == b
    if hasattr(a, "__dict__") or hasattr(type(a), "__slots__"):
        return same_attributes(a, b)
    return a == b


def same_attributes(a: Any, b: Any) -> bool:
    """The instance's own state (``__dict__`` and slots), compared with :func:`same`."""
    slots = [name for klass in type(a).__mro__ for name in getattr(klass, "__slots__", ())]
    if any(hasattr(a, name) != hasattr(b, name) or (hasattr(a, name) and not same(getattr(a, name),
                                                                                   getattr(b, name)))
           for name in slots if name not in ("__dict__", "__weakref__")):
        return False
    if not hasattr(a, "__dict__"):
        return True
    return vars(a).keys() == vars(b).keys() and all(same(vars(a)[k], vars(b)[k]) for k in vars(a))


# --------------------------------------------------------------------------
# Values of every supported type
# --------------------------------------------------------------------------
NUMPY_DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
    "float64", "longdouble", "complex64", "complex128", "datetime64[ns]", "datetime64[D]", "timedelta64[s]", "U3",
    "S3", ">i4", "<f8",
]
ZONES = [None, datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=5, minutes=30), "IST"),
         zoneinfo.ZoneInfo("Europe/Paris")]

numpy_scalars = st.sampled_from(NUMPY_DTYPES).flatmap(lambda name: hnp.from_dtype(np.dtype(name)))
numpy_arrays = st.sampled_from(NUMPY_DTYPES).flatmap(
    lambda name: hnp.arrays(np.dtype(name), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
hashable_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=8),
    st.complex_numbers(allow_nan=False), st.fractions(), st.uuids(), st.dates(), st.timedeltas(),
    st.sampled_from(list(Color) + list(Level) + [Permission.READ | Permission.WRITE]),
)
leaves = st.one_of(
    hashable_leaves, st.floats(), st.integers(min_value=-2**200, max_value=2**200), st.complex_numbers(),
    st.builds(bytearray, st.binary(max_size=16)), st.decimals(places=None), numpy_scalars, numpy_arrays,
    st.datetimes(timezones=st.sampled_from(ZONES)), st.times(timezones=st.sampled_from(ZONES[:3])),
    st.builds(pathlib.PurePosixPath, st.text(max_size=10)), st.builds(pathlib.Path, st.text(max_size=10)),
    st.builds(Name, st.text(max_size=5)), st.builds(Frozen, st.integers(), st.text(max_size=4)),
    st.builds(Params, st.integers(), st.text(max_size=4), st.lists(st.floats(allow_nan=False), max_size=3)),
)


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.one_of(hashable_leaves, st.tuples(hashable_leaves, hashable_leaves))
    return st.one_of(
        st.lists(children, max_size=4), st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4), st.sets(hashable_leaves, max_size=4),
        st.frozensets(hashable_leaves, max_size=4),
        st.builds(Point, children, children),
        st.builds(collections.OrderedDict, st.dictionaries(st.text(max_size=4), children, max_size=3)),
        st.builds(collections.Counter, st.dictionaries(st.text(max_size=4), st.integers(), max_size=3)),
        st.builds(lambda items: collections.defaultdict(list, items),
                  st.dictionaries(st.integers(), children, max_size=3)),
        st.builds(collections.deque, st.lists(children, max_size=3), st.one_of(st.none(), st.integers(3, 5))),
        st.builds(Slotted, children, children), st.builds(WithNewArgs, children),
        st.builds(lambda items, note: _tagged(items, note), st.dictionaries(st.text(max_size=3), children, max_size=3),
                  children),
        st.builds(Sequence, st.lists(children, max_size=3)),
        hnp.arrays(np.dtype(object), hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), elements=children),
    )


def _tagged(items: dict, note: Any) -> Tagged:
    made = Tagged(items)
    made.note = note
    return made


nested_values = st.recursive(leaves, _containers, max_leaves=12)


@settings(max_examples=60 * scale(), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])
@given(value=nested_values)
def test_every_accepted_value_loads_back_equal_and_of_the_same_type(io, tmp_path, value) -> None:
    namespace = str(tmp_path / "values")
    io.save_object(namespace, "v", value)
    back = io.load_object(namespace, "v")
    assert same(value, back), (value, back)


@settings(max_examples=30 * scale(), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=nested_values)
def test_with_the_opt_in_pickle_round_trips_too(io, tmp_path, value) -> None:
    namespace = str(tmp_path / "pickled")
    io.save_object(namespace, "v", value, serializer="pickle", allow_pickle=True)
    assert same(value, io.load_object(namespace, "v", allow_pickle=True))


def test_the_values_the_issue_names_come_back_exactly(io, tmp_path) -> None:
    """numpy scalars were zeroed, stdlib types unloadable or of another type: each one, explicitly."""
    values = {
        "int64": np.int64(3), "bool_": np.True_, "float32": np.float32(2.5),
        "datetime64": np.datetime64("2026-11-23T10:00:00.123456789"), "timedelta64": np.timedelta64(7, "ms"),
        "complex": np.complex128(1 - 2j), "datetime": datetime.datetime(2026, 11, 23, 10, 0, tzinfo=ZONES[3]),
        "date": datetime.date(2026, 11, 23), "timedelta": datetime.timedelta(hours=1),
        "decimal": decimal.Decimal("2.50"), "fraction": fractions.Fraction(2, 3), "path": pathlib.Path("/p/run"),
        "uuid": uuid.UUID(int=7), "namedtuple": Point(1, 2), "counter": collections.Counter("aab"),
        "ordered": collections.OrderedDict(b=1, a=2), "bytearray": bytearray(b"xy"), "zero_d": np.array(5.0),
        "in_list": [np.float64(1.5), np.int8(-1)], "slots": Slotted(1, [2]), "newargs": WithNewArgs(4),
        "enum": Level.HIGH, "object_array": np.array([1, "a", None], dtype=object),
    }
    namespace = str(tmp_path / "named")
    for name, value in values.items():
        meta = io.save_object(namespace, name, value)
        assert meta["serializer"] in ("values", "npy"), name
        back = io.load_object(namespace, name)
        assert same(value, back), (name, value, back)


# --------------------------------------------------------------------------
# Refused at save, with nothing written
# --------------------------------------------------------------------------
def _local_class() -> Any:
    class Local:
        pass

    return Local()


REFUSED = {
    "lambda": lambda: 1,
    "class as a value": int,
    "local class": _local_class(),
    "lock": threading.Lock(),
    "open file": None,  # made in the test
    "generator": (i for i in range(3)),
    "range": range(3),
    "module": os,
    "__del__": WithDel(),
    "non-builtin defaultdict factory": collections.defaultdict(lambda: 0),
    "nested lambda": {"ok": [1, 2, {"deep": lambda: 2}]},
    "masked array": np.ma.masked_array([1, 2], mask=[0, 1]),
}


@pytest.mark.parametrize("label", list(REFUSED))
def test_what_cannot_come_back_exactly_is_refused_at_save_naming_the_type(io, tmp_path, label) -> None:
    value = REFUSED[label] if label != "open file" else open(os.devnull, "rb")  # noqa: SIM115
    namespace = str(tmp_path / "refused")
    with pytest.raises(UnsupportedObjectError, match="allow_pickle=True") as raised:
        io.save_object(namespace, "v", value)
    assert raised.value.type_name
    assert io.file_exists(namespace, "v") is False and io.list_keys(namespace) == []
    if label == "open file":
        value.close()


def test_with_the_opt_in_pickle_stores_what_values_refuses(io, tmp_path) -> None:
    namespace = str(tmp_path / "opt-in")
    meta = io.save_object(namespace, "r", range(3), allow_pickle=True)
    assert meta["serializer"] == "pickle"
    assert io.load_object(namespace, "r", allow_pickle=True) == range(3)
    with pytest.raises(PickleRefusedError):
        io.load_object(namespace, "r")
    assert io.save_object(namespace, "plain", {"a": 1}, allow_pickle=True)["serializer"] == "values"


def test_a_named_serializer_that_would_change_the_value_refuses_it(io, tmp_path) -> None:
    with pytest.raises(UnsupportedObjectError, match="'json' serializer cannot store"):
        io.save_object(str(tmp_path / "n"), "v", {"x": np.float64(1.5)}, serializer="json")
    with pytest.raises(UnsupportedObjectError):
        io.save_object(str(tmp_path / "n"), "v", collections.OrderedDict(a=1), serializer="json")


# --------------------------------------------------------------------------
# The safe loader, attacked: payloads that name code, with a valid digest
# --------------------------------------------------------------------------
def _store_payload(io, namespace: str, payload: bytes) -> None:
    """Store ``payload`` as a 'values' object whose digest matches, as an attacker with write access could."""
    value, _ = encode_object({"placeholder": True}, digest="sha256")
    head, *_ = value
    import hashlib
    import json

    from mummi_io.objects.store import HEAD, MAGIC

    _, length = HEAD.unpack_from(head)
    meta = json.loads(bytes(head[HEAD.size:HEAD.size + length]))
    meta.update(sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    encoded = json.dumps(meta).encode()
    io.save_files(namespace, "evil", HEAD.pack(MAGIC, len(encoded)) + encoded + payload)


class _Call:
    """Pickles as a call of ``function(*arguments)``: what an attacker would write."""

    def __init__(self, function: Any, *arguments: Any) -> None:
        self.function, self.arguments = function, arguments

    def __reduce__(self) -> Any:
        return self.function, self.arguments


class _Raw(bytes):
    """A payload written by hand, opcode by opcode."""


def _rebuild(path: str, state: Any = None, args: tuple = ()) -> Any:
    from mummi_io.objects import values

    return _Call(values._object, path, args, None, state, None, None)


ATTACKS = {
    "os.system": lambda marker: _Call(os.system, f"touch {marker}"),
    "eval": lambda marker: _Call(eval, f"open({str(marker)!r}, 'w')"),
    "getattr chain": lambda marker: _Raw(b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(Vtouch "
                                         + str(marker).encode() + b"\ntR."),
    "subprocess.Popen via the rebuild": lambda marker: _rebuild("subprocess:Popen", {"args": ["touch", str(marker)]}),
    "tempfile closer (deletes in __del__)": lambda marker: _rebuild(
        "tempfile:_TemporaryFileCloser", {"name": str(marker), "delete": True}),
    "a function by path": lambda marker: _rebuild("os:system"),
    "bytearray bomb": lambda marker: _Call(bytearray, 10**12),
    "bytes subclass bomb": lambda marker: _rebuild("objects_helpers:Blob", None, (10**12,)),
    "builtins.range": lambda marker: _Call(list, _Call(range, 10**12)),
    "numpy.memmap via __new__ arguments (truncates a file)": lambda marker: _Call(
        __import__("mummi_io.objects.values", fromlist=["_new_object"])._new_object, "numpy:memmap",
        (str(marker), "uint8", "w+", 0, (4,)), None, False),
    "numpy.memmap called (its reduce is numpy's, in C)": lambda marker: _Call(
        __import__("mummi_io.objects.values", fromlist=["_new_object"])._new_object, "numpy:memmap",
        (str(marker), "uint8", "w+", 0, (4,)), None, True),
    "a __main__ module imported (unittest runs tests)": lambda marker: _Call(
        __import__("mummi_io.objects.values", fromlist=["_new_object"])._new_object, "unittest.__main__:X",
        (), None, False),
    "a standard-library module with import side effects": lambda marker: _Call(
        __import__("mummi_io.objects.values", fromlist=["_enum"])._enum, "antigravity:X", "A", None),
    "Fraction from a string (hours of CPU)": lambda marker: _Raw(
        b"cfractions\nFraction\n(V1e10000000\ntR."),
    "a class called with arguments it never asked for": lambda marker: _Call(
        __import__("mummi_io.objects.values", fromlist=["_object"])._object, "objects_helpers:Params",
        (1, str(marker)), None, None, None, None, True),
}


@pytest.mark.parametrize("label", list(ATTACKS))
def test_the_safe_loader_never_runs_what_a_payload_names(io, tmp_path, label) -> None:
    marker = tmp_path / "pwned"
    if label.startswith(("tempfile", "numpy.memmap")):
        marker.write_text("a file the payload wants deleted")
    attack = ATTACKS[label](marker)
    payload = bytes(attack) if isinstance(attack, _Raw) else pickle.dumps(attack, protocol=5)
    namespace = str(tmp_path / "attacked")
    _store_payload(io, namespace, payload)
    with pytest.raises(PickleRefusedError):
        io.load_object(namespace, "evil")
    import gc

    gc.collect()
    assert (marker.exists() and marker.read_text() == "a file the payload wants deleted") or (
        not label.startswith(("tempfile", "numpy.memmap")) and not marker.exists())


def test_load_of_a_stored_value_refuses_without_touching_anything_else(io, tmp_path) -> None:
    """A payload naming a class this process cannot import is an error that says which, not a crash."""
    namespace = str(tmp_path / "gone")
    _store_payload(io, namespace, pickle.dumps(_rebuild("no_such_module_here:Thing", {}), protocol=5))
    with pytest.raises(PickleRefusedError, match="no_such_module_here"):
        io.load_object(namespace, "evil")


def test_plain_data_is_the_same_pickle_stream_and_loads_without_a_global() -> None:
    """Plain nested data names no global at all: its encoding is pickle's own (the speed comes from that)."""
    from mummi_io.objects import values

    data = {"a": [1, 2.5, "x", None, True], "b": {"c": (1, 2)}, "s": {1, 2}, "f": frozenset({3}), "y": b"z"}
    encoded = values.dumps(data)
    assert encoded == pickle.dumps(data, protocol=5)
    assert pickle.loads(encoded) == data == values.loads(stdio.BytesIO(encoded).getvalue())


def test_shared_and_self_references_come_back_shared(io, tmp_path) -> None:
    """pickle's memo: an object met twice is one object again, also one that refers to itself."""
    from objects_helpers import Params, Slotted

    looped = Params(1, "x", [])
    looped.weights.append(looped)
    slotted = Slotted(None, None)
    slotted.a = slotted
    shared = Params(2)
    namespace = str(tmp_path / "refs")
    io.save_object(namespace, "all", {"looped": looped, "slotted": slotted, "both": [shared, shared]})
    back = io.load_object(namespace, "all")
    assert back["looped"].weights[0] is back["looped"] and back["slotted"].a is back["slotted"]
    assert back["both"][0] is back["both"][1] and back["both"][0] == shared


def _refused_at_save() -> dict[str, Any]:
    from objects_helpers import Real, Tags

    tokyo = zoneinfo.ZoneInfo.from_file(open("/usr/share/zoneinfo/UTC", "rb"), key="Asia/Tokyo") \
        if os.path.exists("/usr/share/zoneinfo/UTC") else zoneinfo.ZoneInfo.no_cache("UTC")
    return {
        "ZoneInfo.no_cache": datetime.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo.no_cache("Europe/Paris")),
        "ZoneInfo.from_file under another key": datetime.datetime(2020, 1, 1, tzinfo=tokyo),
        "a set subclass": Tags({1, 2}),
        "a numpy scalar subclass": Real(1.5),
        "a numpy str_ ending in NUL": np.str_("a\x00"),
        "a numpy bytes_ ending in NUL": np.bytes_(b"ab\x00"),
        "a record scalar": np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])[0],
        "a dtype with metadata": np.zeros(2, dtype=np.dtype("f8", metadata={"unit": "eV"})),
        "an aligned struct dtype": np.dtype([("a", "u1"), ("b", "f8")], align=True),
    }


@pytest.mark.parametrize("label", list(_refused_at_save()))
def test_values_that_would_come_back_different_are_refused_at_save(io, tmp_path, label) -> None:
    value = _refused_at_save()[label]
    namespace = str(tmp_path / "inexact")
    with pytest.raises(UnsupportedObjectError):
        io.save_object(namespace, "v", value)
    assert io.list_keys(namespace) == []


def test_a_namedtuple_with_attributes_of_its_own_keeps_them(io, tmp_path) -> None:
    from objects_helpers import Labelled

    value = Labelled(1, 2)
    value.note = "kept"
    io.save_object(str(tmp_path / "nt"), "v", value)
    back = io.load_object(str(tmp_path / "nt"), "v")
    assert type(back) is Labelled and back == (1, 2) and back.note == "kept"


SCRIPT = """
import sys, mummi_io
from dataclasses import dataclass

@dataclass
class Params:
    n: int

class NeedsArguments:
    def __new__(cls, x):
        return super().__new__(cls)

    def __init__(self, x):
        self.x = x

io = mummi_io.get_io("simple")
if sys.argv[2] == "save":
    io.save_object(sys.argv[1], "p", Params(3))
    assert io.load_object(sys.argv[1], "p") == Params(3)  # the script that defines it loads it
    try:
        io.save_object(sys.argv[1], "n", NeedsArguments(1))
    except mummi_io.UnsupportedObjectError as exc:
        print("refused:", exc)
else:
    io.load_object(sys.argv[1], "p")
"""


def test_a_class_defined_in_a_script_round_trips_in_that_script_and_says_why_elsewhere(tmp_path) -> None:
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    saved = subprocess.run([sys.executable, str(script), str(tmp_path / "ns"), "save"], capture_output=True,
                           text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    assert "refused:" in saved.stdout and "__getnewargs__" in saved.stdout
    other = tmp_path / "other.py"
    other.write_text(SCRIPT.replace('sys.argv[2] == "save"', "False").replace("class Params", "class Renamed"))
    elsewhere = subprocess.run([sys.executable, str(other), str(tmp_path / "ns"), "load"], capture_output=True,
                               text=True, timeout=120)
    assert elsewhere.returncode != 0 and "PickleRefusedError" in elsewhere.stderr
    assert "define the class in a module" in elsewhere.stderr


def test_installed_packages_record_no_git_revision(io, tmp_path) -> None:
    """numpy in a virtualenv inside a checkout is not at the checkout's revision."""
    meta = io.save_object(str(tmp_path / "rev"), "a", {"x": np.float64(1.0)})
    assert meta["environment"]["git_revision"] is None
