"""Serializers chosen by the type of the object, and the registry users extend.

A serializer turns an object into bytes and back, names the packages whose
versions matter for reading those bytes again, and says whether loading runs
code from the data (pickle does: such serializers load only when the caller
opts in with ``allow_pickle=True``).
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import pickle
from typing import Any, cast

import numpy as np

from ..core.contract import Parts
from ..core.errors import InvalidArgumentError, UnsupportedObjectError
from . import values


class Serializer:
    """Base class: override ``name``, ``accepts``, ``dump`` and ``load``."""

    #: Stored in the metadata; how the registry finds the serializer again.
    name: str = ""
    #: Distributions whose versions are recorded and compared on load.
    packages: tuple[str, ...] = ()
    #: Loading runs code from the data (pickle): refused unless the caller opts in.
    unsafe: bool = False
    #: Chosen by type when no serializer is named; the others only when named (or to load what they wrote).
    auto: bool = True

    def accepts(self, obj: Any) -> bool:
        raise NotImplementedError

    def dump(self, obj: Any) -> bytes | bytearray | memoryview | Parts:
        """The payload: bytes, or :class:`~mummi_io.core.contract.Parts` to avoid copying large buffers."""
        raise NotImplementedError

    def load(self, payload: memoryview) -> Any:
        raise NotImplementedError


class BytesSerializer(Serializer):
    name = "bytes"

    def accepts(self, obj: Any) -> bool:
        return type(obj) is bytes  # a bytearray is stored by "values", so it loads as a bytearray

    def dump(self, obj: Any) -> bytes | bytearray:
        return obj

    def load(self, payload: memoryview) -> bytes:
        return bytes(payload)


class StrSerializer(Serializer):
    name = "str"

    def accepts(self, obj: Any) -> bool:
        return type(obj) is str  # exactly: numpy's str_ or a subclass must load as what it was

    def dump(self, obj: Any) -> bytes:
        return obj.encode("utf-8")

    def load(self, payload: memoryview) -> str:
        return bytes(payload).decode("utf-8")


class NpySerializer(Serializer):
    """numpy arrays as ``.npy``: written without a copy, loaded as a zero-copy read-only view."""

    name = "npy"
    packages = ("numpy",)

    def accepts(self, obj: Any) -> bool:
        # Exactly ndarray (subclasses would load as ndarray), with a dtype .npy describes whole.
        return type(obj) is np.ndarray and values.npy_describes_exactly(obj.dtype)

    def dump(self, obj: Any) -> Parts:
        # Copies only an array that is not C-contiguous (np.ascontiguousarray would make a 0-d array 1-d).
        array = obj if obj.flags.c_contiguous else obj.copy(order="C")
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, np.lib.format.header_data_from_array_1_0(array))
        # The array's own memory, as bytes (the buffer protocol refuses datetime64 dtypes).
        return Parts((header.getvalue(), memoryview(array.reshape(-1).view(np.uint8))))

    def load(self, payload: memoryview) -> np.ndarray:
        stream = io.BytesIO(payload[:4096])
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
        offset = stream.tell()
        array = np.frombuffer(payload, dtype=dtype, offset=offset, count=int(np.prod(shape, dtype=np.int64)))
        return array.reshape(shape, order="F" if fortran else "C")


class NpzSerializer(Serializer):
    """A dict of arrays as an ``.npz`` archive (no pickled object arrays)."""

    name = "npz"
    packages = ("numpy",)

    def accepts(self, obj: Any) -> bool:
        return (
            type(obj) is dict and bool(obj) and "file" not in obj  # np.savez's own parameter
            and all(type(k) is str and type(v) is np.ndarray and values.npy_describes_exactly(v.dtype)
                    for k, v in obj.items())
        )

    def dump(self, obj: Any) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **obj)
        return buffer.getvalue()

    def load(self, payload: memoryview) -> dict[str, np.ndarray]:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}


# ------------------------------------------------------------ JSON family
def _import(path: str) -> Any:
    module, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _path_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: Any) -> Any:
    """JSON-able form of ``value``: dataclasses and tuples tagged so they come back as they were.

    Types are matched exactly: a subclass (numpy's float64, an IntEnum, an
    OrderedDict) would come back as its base type, so it is not JSON data.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [_encode(v) for v in value]
    if type(value) is tuple:
        return {"__tuple__": [_encode(v) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        if any(k.startswith("__") and k.endswith("__") for k in value):
            raise TypeError("dict keys like '__name__' are reserved")
        return {k: _encode(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__dataclass__": _path_of(type(value)), "fields": fields}
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        if "__dataclass__" in value:
            cls = _import(value["__dataclass__"])
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                raise TypeError(f"{value['__dataclass__']} is not a dataclass; refusing to call it")
            fields = {k: _decode(v) for k, v in value["fields"].items()}
            init = {f.name for f in dataclasses.fields(cls) if f.init}
            obj = cls(**{k: v for k, v in fields.items() if k in init})
            for name in set(fields) - init:
                object.__setattr__(obj, name, fields[name])
            return obj
        return {k: _decode(v) for k, v in value.items()}
    return value


class JsonSerializer(Serializer):
    """Plain data (None, bool, numbers, str, lists, tuples, dicts with str keys) as readable JSON, when named."""

    name = "json"
    auto = False  # "values" stores the same data faster; JSON is for payloads people read

    def accepts(self, obj: Any) -> bool:
        try:
            _encode(obj)
        except TypeError:
            return False
        return not (dataclasses.is_dataclass(obj) and not isinstance(obj, type))

    def dump(self, obj: Any) -> bytes:
        return json.dumps(_encode(obj), ensure_ascii=False).encode("utf-8")

    def load(self, payload: memoryview) -> Any:
        return _decode(json.loads(bytes(payload)))


class DataclassSerializer(JsonSerializer):
    """Dataclasses as readable JSON plus their import path, recursively (never pickle)."""

    name = "dataclass"
    auto = False

    def accepts(self, obj: Any) -> bool:
        if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
            return False
        try:
            _encode(obj)
        except TypeError:
            return False
        return True


class StateSerializer(Serializer):
    """Objects stored by earlier versions as their ``__getstate__`` in JSON; loads only.

    It rebuilt numpy scalars, ``__slots__`` classes and classes with their own
    reduction wrongly, so new objects go to ``values``; what it wrote still loads.
    """

    name = "state"
    auto = False

    def accepts(self, obj: Any) -> bool:
        return False

    @staticmethod
    def _state(obj: Any) -> Any:
        getstate = getattr(obj, "__getstate__", None)
        state = getstate() if getstate is not None else obj.__dict__
        return _encode(state)

    def dump(self, obj: Any) -> bytes:
        record = {"class": _path_of(type(obj)), "state": self._state(obj)}
        return json.dumps(record, ensure_ascii=False).encode("utf-8")

    def load(self, payload: memoryview) -> Any:
        record = json.loads(bytes(payload))
        cls = _import(record["class"])
        if not isinstance(cls, type):
            raise TypeError(f"{record['class']} is not a class; refusing to call it")
        obj = cast(Any, cls).__new__(cls)
        state = _decode(record["state"])
        if hasattr(obj, "__setstate__") and type(obj).__setstate__ is not object.__dict__.get("__setstate__"):
            obj.__setstate__(state)
        else:
            obj.__dict__.update(state)
        return obj


class JoblibSerializer(Serializer):
    """Models of scikit-learn (and anything joblib handles well). joblib pickles: opt-in to load."""

    name = "joblib"
    packages = ("joblib", "scikit-learn")
    unsafe = True

    def accepts(self, obj: Any) -> bool:
        if not type(obj).__module__.startswith("sklearn"):
            return False
        try:
            import joblib  # noqa: F401
        except ImportError:
            return False
        return True

    def dump(self, obj: Any) -> bytes:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(obj, buffer)
        return buffer.getvalue()

    def load(self, payload: memoryview) -> Any:
        import joblib

        return joblib.load(io.BytesIO(payload))


class PickleSerializer(Serializer):
    """Anything pickle can store: only on request, and loading needs ``allow_pickle=True``."""

    name = "pickle"
    unsafe = True
    auto = False

    def accepts(self, obj: Any) -> bool:
        return True  # whatever pickle takes (it raises for the rest)

    def dump(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise UnsupportedObjectError(
                f"pickle cannot store this {type(obj).__qualname__} ({exc}); serializer='cloudpickle' stores "
                "lambdas and classes defined in a function (pip install cloudpickle)", type_name=type(obj).__qualname__,
            ) from None

    def load(self, payload: memoryview) -> Any:
        return pickle.loads(payload)


class ValuesSerializer(Serializer):
    """Python values, loaded back equal and of the same type, never running code from the data.

    See :mod:`mummi_io.objects.values` for what it stores and how loading stays safe.
    """

    name = "values"
    packages = ("numpy",)

    def accepts(self, obj: Any) -> bool:
        return True  # the last resort: dump raises UnsupportedObjectError for what it cannot store exactly

    def dump(self, obj: Any) -> bytes:
        return values.dumps(obj)

    def load(self, payload: memoryview) -> Any:
        return values.loads(payload)


class CloudpickleSerializer(PickleSerializer):
    """Like pickle, for lambdas and interactively defined classes (needs cloudpickle)."""

    name = "cloudpickle"
    packages = ("cloudpickle",)

    def dump(self, obj: Any) -> bytes:
        import cloudpickle

        return cloudpickle.dumps(obj)


#: Tried in order; the first automatic one that accepts the object is used.
_REGISTRY: list[Serializer] = [
    NpySerializer(), NpzSerializer(), BytesSerializer(), StrSerializer(), JoblibSerializer(), ValuesSerializer(),
    DataclassSerializer(), JsonSerializer(), StateSerializer(), PickleSerializer(), CloudpickleSerializer(),
]


def register_serializer(serializer: Serializer, first: bool = True) -> None:
    """Add a serializer (tried before the built-ins unless ``first=False``); replaces one of the same name."""
    if not serializer.name:
        raise InvalidArgumentError("a serializer needs a name")
    _REGISTRY[:] = [s for s in _REGISTRY if s.name != serializer.name]
    if first:
        _REGISTRY.insert(0, serializer)
    else:
        _REGISTRY.append(serializer)


def serializer_named(name: str) -> Serializer:
    for serializer in _REGISTRY:
        if serializer.name == name:
            return serializer
    raise InvalidArgumentError(f"no serializer named {name!r}; known: {[s.name for s in _REGISTRY]}")


def choose(obj: Any, name: str | None = None, allow_pickle: bool = False) -> Serializer:
    """The serializer for ``obj``: the one named (if it stores ``obj`` exactly), else the first that accepts it.

    Raises
    ------
    UnsupportedObjectError
        If the named serializer would not give ``obj`` back equal and of the same type.
    """
    if name is not None:
        serializer = serializer_named(name)
        if not serializer.accepts(obj):
            raise UnsupportedObjectError(
                f"the {name!r} serializer cannot store a {type(obj).__module__}.{type(obj).__qualname__} so that "
                "it loads back equal and of the same type; leave serializer= out to let mummi_io choose",
                type_name=f"{type(obj).__module__}.{type(obj).__qualname__}",
            )
        return serializer
    for serializer in _REGISTRY:
        if serializer.auto and serializer.accepts(obj):
            return serializer
    return serializer_named("pickle" if allow_pickle else "values")
