"""Exact round trips of Python values without running code from the data: the ``values`` serializer.

Why one module of this size: what may be saved and what may be loaded are two
halves of one allow-list; they must change together, so they live together.

The encoding is pickle's (protocol 5, so plain data is written and read at C
speed), but what a stored value may refer to is decided here, on both sides:

- **saving** goes through a pickler whose ``reducer_override`` sees every
  object that is not plain data, and every class or function the encoding
  would name. Plain data, numpy values, the standard library's value types
  and instances of importable classes (rebuilt as pickle does: ``__new__``,
  then ``__setstate__`` or the instance's ``__dict__`` and slots) are encoded;
  anything else raises :class:`~mummi_io.core.errors.UnsupportedObjectError`
  before a byte is written, so what was saved is what loads.
- **loading** goes through an unpickler whose ``find_class`` returns only the
  constructors of those value types and this module's rebuild functions.
  Stored data can name a class to rebuild, never a function to call; the
  rebuild refuses classes of the standard library (outside the value types),
  classes with a C ``__new__`` other than the built-in types', and classes
  with a ``__del__``, the known ways to turn "make an object" into "run code".
  A class is called with stored arguments only if it defines ``__reduce__``
  itself (it asked to be rebuilt that way, as pickle would).
"""

from __future__ import annotations

import argparse
import collections
import copyreg
import datetime
import decimal
import enum
import fractions
import functools
import inspect
import io
import pathlib
import pickle
import sys
import types
import uuid
import warnings
import zoneinfo
from typing import Any

import numpy as np

from ..core.errors import PickleRefusedError, UnsupportedObjectError

PROTOCOL = 5

#: The value types whose own reduction the pickler keeps: it names only these classes (and timezone /
#: timedelta inside a datetime), each of which only builds a value from what the payload holds. The
#: built-in containers are written with pickle's own opcodes, so none of them is ever named: no stored
#: value can call ``bytearray(10**12)`` or ``list(range(...))``.
_VALUE_TYPES: tuple[type, ...] = (
    complex, slice,
    datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone,
    decimal.Decimal, uuid.UUID,
    pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.PosixPath, pathlib.WindowsPath,
    collections.OrderedDict, collections.Counter, collections.deque,
)
_PLAIN_STDLIB_CLASSES: frozenset[type] = frozenset({argparse.Namespace, types.SimpleNamespace})
#: What a ``defaultdict`` may use to make missing values (by name): types that build an empty value.
_DEFAULT_FACTORIES: dict[str, Any] = {
    "none": None, "list": list, "dict": dict, "set": set, "frozenset": frozenset, "tuple": tuple, "int": int,
    "float": float, "complex": complex, "str": str, "bytes": bytes, "bytearray": bytearray, "bool": bool,
    "OrderedDict": collections.OrderedDict, "Counter": collections.Counter, "deque": collections.deque,
}
_FACTORY_NAMES = {id(factory): name for name, factory in _DEFAULT_FACTORIES.items()}
#: The C ``__new__`` of these built-in types only allocates: subclasses using them are rebuilt.
_PLAIN_NEW = frozenset(
    cls.__new__ for cls in (object, tuple, list, dict, set, frozenset, int, float, complex, str, bytes, bytearray)
)
_STDLIB = frozenset(sys.stdlib_module_names)


def _name(obj: Any) -> tuple[str, str]:
    return obj.__module__, obj.__qualname__


def _described(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _refuse(obj: Any, why: str) -> UnsupportedObjectError:
    cls = obj if isinstance(obj, type) else type(obj)
    return UnsupportedObjectError(
        f"a {_described(cls)} cannot be stored so that it loads back exactly without pickle: {why}. Store a "
        "value of a supported type (docs/objects.md lists them), register a serializer, or pass "
        "allow_pickle=True (pickle; loading it will then also need allow_pickle=True)",
        type_name=_described(cls),
    )


# --------------------------------------------------------------------------
# Rebuild functions: the only callables besides the value types a stored value may name
# --------------------------------------------------------------------------
def _resolve(path: str) -> Any:
    """The object at ``module:qualname``, importing only what is safe to import for data.

    A package's ``__main__`` is never imported (importing one runs a
    program); the running script's ``__main__`` is only looked up. A
    standard-library module is imported only if this process already did
    (some run code when imported: ``this``, ``antigravity``); anything an
    import raises, ``SystemExit`` included, is a refusal.
    """
    module_name, _, qualname = path.partition(":")
    parts = module_name.split(".")
    if not module_name or not qualname or any(not part.isidentifier() for part in parts) \
            or ("__main__" in parts and module_name != "__main__"):
        # A package's __main__ is a program: importing it runs it. The running script (__main__ itself)
        # is already imported; its classes are looked up there, as pickle does.
        raise PickleRefusedError(f"the stored value names {path!r}, which is never imported for data")
    if module_name not in sys.modules:
        if parts[0] in _STDLIB:
            raise PickleRefusedError(
                f"the stored value needs {module_name!r}, a standard-library module this process has not imported; "
                f"import {module_name} first if you expect it"
            )
        try:
            __import__(module_name)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - an import may raise anything (Ctrl-C stays Ctrl-C)
            raise PickleRefusedError(f"the stored value needs {module_name!r}, which cannot be imported here "
                                     f"({type(exc).__name__}: {exc})") from None
    target: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            hint = (" (a class defined in the script that saved it: load it from that script, or define the "
                    "class in a module)") if module_name == "__main__" else ""
            raise PickleRefusedError(f"the stored value needs {path!r}, which does not exist here{hint}")
    return target


def _class_at(path: str) -> type:
    """The class stored as ``module:qualname``, imported, and checked to be one we rebuild."""
    target = _resolve(path)
    if not isinstance(target, type):
        raise PickleRefusedError(f"{path!r} is not a class; a stored value only ever names classes to rebuild")
    problem = _unrebuildable(target)
    if problem:
        raise PickleRefusedError(f"the stored value names the class {path!r}, which is never rebuilt: {problem}")
    return target


def _unrebuildable(cls: type) -> str:
    """Why instances of ``cls`` are not rebuilt from data ("" if they are)."""
    if cls.__module__.split(".")[0] in _STDLIB and cls not in _PLAIN_STDLIB_CLASSES:
        return "a standard-library class that is not one of the supported value types"
    if any("__del__" in vars(klass) for klass in cls.__mro__[:-1]):
        return "it has a __del__, which would run on data nobody checked"
    if issubclass(cls, (np.ndarray, np.generic)):
        return "a numpy array or scalar subclass (memmap, recarray, matrix...): numpy values are stored as such"
    new = cls.__new__
    if isinstance(new, types.BuiltinFunctionType) and new not in _PLAIN_NEW:
        return "its __new__ is compiled code other than a built-in type's"
    return ""


def _defines(cls: type, names: tuple[str, ...], builtin_bases: bool) -> bool:
    """Whether a class of ``cls``'s MRO defines one of ``names`` in Python (or in a built-in type, if allowed)."""
    for klass in cls.__mro__:
        for name in names:
            found = vars(klass).get(name)
            if found is None:
                continue
            if isinstance(found, (types.FunctionType, classmethod, staticmethod)):
                return True
            if builtin_bases and klass.__module__ == "builtins":
                return True
    return False


def _reduces_itself(cls: type) -> bool:
    """Whether ``cls`` asks, in Python, to be rebuilt by being called (its own ``__reduce__``)."""
    return _defines(cls, ("__reduce__", "__reduce_ex__"), builtin_bases=False)


def _asks_for_new_args(cls: type) -> bool:
    """Whether ``cls.__new__`` is meant to get arguments back (``__getnewargs__``, or a built-in value base)."""
    return _defines(cls, ("__getnewargs__", "__getnewargs_ex__"), builtin_bases=True)


def _set_state(obj: Any, state: Any) -> None:
    """Apply a reduction's state as pickle's BUILD does."""
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        obj.__dict__.update(state)
    if slots:
        for name, value in slots.items():
            setattr(obj, name, value)


def _object(path: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None, state: Any, listitems: list[Any] | None,
            dictitems: list[tuple[Any, Any]] | None, call: bool = False) -> Any:
    """An instance rebuilt in one call (what the first 'values' objects stored; new ones use _new_object)."""
    obj = _new_object(path, args, kwargs, call)
    if listitems:
        extend = getattr(obj, "extend", None)
        if extend is not None:
            extend(listitems)
        else:
            for item in listitems:
                obj.append(item)
    for key, value in dictitems or ():
        obj[key] = value
    if state is not None:
        _set_state(obj, state)
    return obj


def _new_object(path: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None, call: bool) -> Any:
    """A bare instance of an importable class (pickle then applies its items and state, BUILD included).

    Returned before its state is read, as pickle does, so an object that
    refers to itself (directly or through others) comes back intact.
    """
    cls = _class_at(path)
    if issubclass(cls, (bytes, bytearray)) and args and not isinstance(args[0], (bytes, bytearray)):
        raise PickleRefusedError(f"a stored {path!r} would be made from {type(args[0]).__name__}, not bytes")
    if call and args and not _reduces_itself(cls):
        raise PickleRefusedError(f"a stored value would call {path!r} with arguments, but the class does not "
                                 "define __reduce__ (only a class that asks to be rebuilt that way is)")
    if not call and (args or kwargs) and not _asks_for_new_args(cls):
        raise PickleRefusedError(f"a stored value would pass arguments to {path!r}.__new__, but the class does not "
                                 "define __getnewargs__ (only a class that asks for them gets them)")
    try:
        return cls(*args) if call else cls.__new__(cls, *args, **(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - the class's own code refused the stored data
        raise PickleRefusedError(f"the stored {path!r} could not be rebuilt here ({type(exc).__name__}: {exc})") \
            from exc


def _namedtuple(path: str, values: tuple[Any, ...]) -> Any:
    cls = _class_at(path)
    if not (issubclass(cls, tuple) and hasattr(cls, "_make")):
        raise PickleRefusedError(f"{path!r} is not a namedtuple class")
    return cls._make(values)


def _enum(path: str, name: str | None, value: Any) -> enum.Enum:
    cls = _resolve(path)
    if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
        raise PickleRefusedError(f"{path!r} is not an enum")
    try:
        return cls[name] if name is not None else cls(value)  # a lookup: no code of the data's choosing
    except (KeyError, ValueError) as exc:
        raise PickleRefusedError(f"the stored {path!r} member {name or value!r} does not exist here ({exc})") from None


def _fraction(numerator: int, denominator: int) -> fractions.Fraction:
    """A Fraction from its two integers (never from a string: '1e10000000' would compute for hours)."""
    if type(numerator) is not int or type(denominator) is not int:
        raise PickleRefusedError("a stored Fraction is made of two integers")
    return fractions.Fraction(numerator, denominator)


def _dtype(descr: Any) -> np.dtype:
    dtype = np.lib.format.descr_to_dtype(descr)
    if dtype.hasobject:
        raise PickleRefusedError("a stored numpy dtype holds Python objects")
    return dtype


def _array(descr: Any, shape: tuple[int, ...], raw: bytes | bytearray) -> np.ndarray:
    dtype = _dtype(descr)
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise PickleRefusedError("a stored numpy array has an invalid shape")
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize != len(raw):
        raise PickleRefusedError("a stored numpy array's size does not match its shape")
    if not count:
        return np.empty(shape, dtype)
    writable = raw if isinstance(raw, bytearray) else bytearray(raw)  # arrays load writable, as np.load's
    return np.frombuffer(writable, dtype=dtype, count=count).reshape(shape)


def _object_array(shape: tuple[int, ...], items: list[Any]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for position, item in enumerate(items):
        array[position] = item
    return array.reshape(shape)


def _scalar(descr: Any, raw: bytes) -> np.generic:
    dtype = _dtype(descr)
    if len(raw) != dtype.itemsize:
        raise PickleRefusedError("a stored numpy scalar's size does not match its dtype")
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


def _zoneinfo(key: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(key)


def _defaultdict(factory: str, items: list[tuple[Any, Any]]) -> collections.defaultdict:
    if factory not in _DEFAULT_FACTORIES:
        raise PickleRefusedError(f"a stored defaultdict names the factory {factory!r}, which is not a built-in type")
    made: collections.defaultdict = collections.defaultdict(_DEFAULT_FACTORIES[factory])
    for key, value in items:
        made[key] = value
    return made


_REBUILDERS = (_new_object, _object, _namedtuple, _enum, _dtype, _array, _object_array, _scalar, _zoneinfo,
               _defaultdict, _fraction)
#: copyreg's markers of a ``__reduce_ex__`` that wants ``cls.__new__`` (not in typeshed's copyreg).
_NEWOBJ = getattr(copyreg, "__newobj__")
_NEWOBJ_EX = getattr(copyreg, "__newobj_ex__")

_ALLOWED: dict[tuple[str, str], Any] = {
    **{_name(cls): cls for cls in _VALUE_TYPES},
    **{_name(function): function for function in _REBUILDERS},
}


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------
def _path(cls: type) -> str:
    """``module:qualname`` of a class that importing by that path gives back; refused otherwise."""
    if "<locals>" in cls.__qualname__:
        raise _refuse(cls, "its class is defined inside a function, so no other process can import it")
    target: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        target = getattr(target, part, None)
    if target is not cls:
        raise _refuse(cls, f"importing {cls.__module__}.{cls.__qualname__} does not give this class back")
    return f"{cls.__module__}:{cls.__qualname__}"


def npy_describes_exactly(dtype: np.dtype) -> bool:
    """Whether ``.npy``'s description of ``dtype`` gives it back whole (no object fields, alignment, metadata)."""
    if dtype.hasobject or dtype.metadata or (dtype.fields and any(f[0].metadata for f in dtype.fields.values())):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns when a description drops metadata: refused above
        rebuilt = np.lib.format.descr_to_dtype(np.lib.format.dtype_to_descr(dtype))
    return rebuilt == dtype and rebuilt.isalignedstruct == dtype.isalignedstruct


def _descr(dtype: np.dtype, obj: Any) -> Any:
    """The dtype as ``.npy`` describes it; refused where that description would lose something."""
    if not npy_describes_exactly(dtype):
        raise _refuse(obj, f"its numpy dtype {dtype!r} has object fields, alignment or metadata that .npy's "
                           "description drops")
    return np.lib.format.dtype_to_descr(dtype)


def _new_needs_arguments(cls: type) -> bool:
    """Whether ``cls.__new__`` (written in Python) has a required parameter besides the class."""
    new = cls.__new__
    if not isinstance(new, types.FunctionType):
        return False
    try:
        parameters = list(inspect.signature(new).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in parameters)


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple) and hasattr(cls, "_make")


class _ValuePickler(pickle.Pickler):
    """pickle's C pickler, told what each non-plain object becomes (or that it is refused)."""

    def reducer_override(self, obj: Any) -> Any:  # noqa: C901 - one dispatch on the kind of object
        cls = type(obj)
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            if _ALLOWED.get((str(getattr(obj, "__module__", "")), str(getattr(obj, "__qualname__", "")))) is obj:
                return NotImplemented  # a value type's constructor, or one of the rebuild functions
            raise _refuse(obj, "a class or function as a value: the stored data would name code to run")
        if cls is np.ndarray:
            if obj.dtype.hasobject:
                if obj.dtype != object:
                    raise _refuse(obj, "a structured numpy dtype with object fields")
                return _object_array, (obj.shape, obj.ravel().tolist())
            contiguous = obj if obj.flags.c_contiguous else obj.copy(order="C")
            raw = contiguous.reshape(-1).view(np.uint8)  # bytes: the buffer protocol refuses datetime64
            return _array, (_descr(obj.dtype, obj), obj.shape,
                            pickle.PickleBuffer(raw) if raw.flags.writeable else raw.tobytes())
        if isinstance(obj, np.generic):
            held = np.asarray(obj)  # an empty str_/bytes_ has a zero-size dtype; its array has room for one
            descr, raw = _descr(held.dtype, obj), held.tobytes()
            back = _scalar(descr, raw)
            if type(back) is not cls or (held.dtype.kind in "SU" and back != obj):
                raise _refuse(obj, "numpy does not give this scalar back from its bytes (a scalar subclass, a "
                                   "record, or a string ending in NUL)")
            return _scalar, (descr, raw)
        if isinstance(obj, np.dtype):
            return _dtype, (_descr(obj, obj),)
        if isinstance(obj, enum.Enum):
            named = obj._name_ is not None and cls.__members__.get(obj._name_) is obj
            return _enum, (_path(cls), obj._name_ if named else None, None if named else obj._value_)
        if cls is bytearray or cls is pickle.PickleBuffer:
            return NotImplemented  # pickle's own opcodes, no global named
        if cls is zoneinfo.ZoneInfo:
            if obj.key is None or zoneinfo.ZoneInfo(obj.key) is not obj:
                raise _refuse(obj, "a ZoneInfo made from a file or outside the cache (ZoneInfo.from_file, "
                                   "no_cache) is not the zone its key names")
            return _zoneinfo, (obj.key,)
        if cls is fractions.Fraction:
            return _fraction, (obj.numerator, obj.denominator)
        if cls is collections.defaultdict:
            factory = _FACTORY_NAMES.get(id(obj.default_factory))
            if factory is None:
                raise _refuse(obj, "its default_factory is not a built-in type (it would be code to store)")
            return _defaultdict, (factory, list(obj.items()))
        if cls in _ALLOWED_TYPES:
            if cls is datetime.datetime or cls is datetime.time:
                if obj.tzinfo is not None and type(obj.tzinfo) not in (datetime.timezone, zoneinfo.ZoneInfo):
                    raise _refuse(obj.tzinfo, "a tzinfo other than datetime.timezone or zoneinfo.ZoneInfo")
            return NotImplemented  # its own reduction names only the value types
        if _is_namedtuple(cls) and not getattr(obj, "__dict__", None):
            return _namedtuple, (_path(cls), tuple(obj))  # with attributes of its own: rebuilt as any instance
        return self._reduce_instance(obj, cls)

    @staticmethod
    def _reduce_instance(obj: Any, cls: type) -> Any:
        path = _path(cls)
        problem = _unrebuildable(cls)
        if problem:
            raise _refuse(obj, problem)
        try:
            reduced = obj.__reduce_ex__(PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - whatever the class raises: it cannot be stored
            raise _refuse(obj, f"it cannot be reduced to data ({type(exc).__name__}: {exc})") from None
        if isinstance(reduced, str) or not isinstance(reduced, tuple) or len(reduced) < 2:
            raise _refuse(obj, "it is stored by name (a module-level object), not by value")
        function, arguments, state, listitems, dictitems = (tuple(reduced) + (None,) * 5)[:5]
        kwargs = None
        call = False
        if function is _NEWOBJ or function is _NEWOBJ_EX:
            if function is _NEWOBJ:
                args = tuple(arguments[1:])
            else:
                _, args, kwargs = arguments
                args = tuple(args)
            if (args or kwargs) and not _asks_for_new_args(cls):
                raise _refuse(obj, "its reduction passes arguments to __new__ without __getnewargs__")
            if not (args or kwargs) and _new_needs_arguments(cls):
                raise _refuse(obj, "its __new__ needs arguments, and it defines no __getnewargs__ to give them")
        elif function is cls and (not arguments or _reduces_itself(cls)):
            args, call = tuple(arguments), True  # the class's own __reduce__: rebuilt by calling it, as pickle does
        else:
            raise _refuse(obj, f"its __reduce__ returns {function!r}; only the object's own class is ever called")
        # pickle's own 5-tuple: the bare object first (memoized), then its items and state (BUILD), so
        # references back to the object resolve; its __setstate__, or the __dict__ and slots, as pickle does.
        return _new_object, (path, args, kwargs, call), state, listitems, dictitems


_ALLOWED_TYPES = frozenset(_VALUE_TYPES)


def dumps(obj: Any) -> bytes:
    """Encode ``obj``; :class:`UnsupportedObjectError` for anything that would not load back exactly and safely."""
    buffer = io.BytesIO()
    try:
        _ValuePickler(buffer, protocol=PROTOCOL).dump(obj)
    except UnsupportedObjectError:
        raise
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise UnsupportedObjectError(
            f"this value cannot be stored without pickle ({type(exc).__name__}: {exc}); pass allow_pickle=True "
            "(pickle; loading it will then also need allow_pickle=True)", type_name=type(obj).__qualname__,
        ) from None
    return buffer.getvalue()


class _ValueUnpickler(pickle.Unpickler):
    """pickle's C unpickler that resolves only the value types and the rebuild functions."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise PickleRefusedError(
                f"the stored value names {module}.{name}, which the safe loader never calls; if you trust the "
                "data, load it with allow_pickle=True"
            )
        return found


def loads(payload: bytes | memoryview) -> Any:
    """Decode a value written by :func:`dumps`, calling nothing but what the module docstring lists."""
    return _ValueUnpickler(io.BytesIO(payload)).load()


@functools.lru_cache(maxsize=None)
def allowed_globals() -> frozenset[str]:
    """The globals a stored value may name, as ``module.name`` (for the docs and the tests)."""
    return frozenset(f"{module}.{name}" for module, name in _ALLOWED)
