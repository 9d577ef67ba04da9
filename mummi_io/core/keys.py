"""Key, value and argument validation shared by every backend.

The rules live here once, so that a key that is invalid on one backend is
invalid on all of them, and the check happens before any I/O (DESIGN.md,
"Semantics every backend shares").
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Sequence

from .errors import InvalidArgumentError, InvalidKeyError, InvalidNamespaceError, InvalidValueError

#: Longest key component (and longest flat name), in UTF-8 bytes: the file-name limit of POSIX file systems.
MAX_NAME_BYTES = 255
#: Longest key, in UTF-8 bytes, all components and slashes included.
MAX_KEY_BYTES = 1024

#: Names starting with this prefix are reserved for mummi_io's own files
#: (temporary files of atomic writes, indexes). They are never valid keys, so a
#: user key can never collide with, or list, an internal file.
RESERVED_PREFIX = ".mummi_io"

# One component of a key: not "." or "..", not reserved, no "/" or NUL, 1-255 characters.
_COMPONENT = r"(?!\.\.?(?:/|\Z))(?!\.mummi_io)[^/\0]{1,255}"
# An ASCII key that passes every rule below (its total length is checked apart).
_PLAIN_KEY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*\Z")
_PLAIN_NAME = re.compile(rf"{_COMPONENT}\Z")


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid key, else raise :class:`InvalidKeyError`.

    A key is a relative path of ``/``-separated components: a non-empty
    ``str`` of at most 1024 UTF-8 bytes, with no empty component, no ``.`` or
    ``..`` component, no NUL, no leading or trailing ``/``, no component
    longer than 255 UTF-8 bytes or starting with ``.mummi_io``. These rules
    keep every key inside its namespace, on every backend
    (``snapshot.3/subset#000000`` is a key; ``../x`` and ``/etc/x`` are not).
    """
    if key.__class__ is str and len(key) <= MAX_KEY_BYTES and key.isascii() and _PLAIN_KEY.match(key):
        return key  # the common case, checked in one regular expression
    if not isinstance(key, str):
        raise InvalidKeyError(f"key must be a str, not {type(key).__name__} ({key!r})")
    if not key:
        raise InvalidKeyError("key must not be empty")
    if "\0" in key:
        raise InvalidKeyError(f"key {key!r} contains NUL")
    if key.startswith("/"):
        raise InvalidKeyError(f"key {key!r} starts with '/': keys are paths relative to their namespace")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"key {key!r} is not valid Unicode text: {exc}") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key {key[:40]!r}... is {size} UTF-8 bytes; the limit is {MAX_KEY_BYTES}")
    for component in key.split("/"):
        _check_component(key, component)
    return key


def _check_component(key: str, component: str) -> None:
    if not component:
        raise InvalidKeyError(f"key {key!r} has an empty component (a leading, trailing or double '/')")
    if component in (".", ".."):
        raise InvalidKeyError(f"key {key!r} has a {component!r} component, which names a directory")
    if component.startswith(RESERVED_PREFIX):
        raise InvalidKeyError(f"key {key!r} has a component starting with {RESERVED_PREFIX!r}, which is reserved")
    size = len(component.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise InvalidKeyError(f"a component of key {key[:40]!r}... is {size} UTF-8 bytes; the limit is {MAX_NAME_BYTES}")


def validate_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a valid flat name (one key component), else raise :class:`InvalidKeyError`.

    Signals, queues, counters, barriers and groups have flat names: each is a
    single file name.
    """
    if name.__class__ is str and len(name) <= MAX_NAME_BYTES and name.isascii() and _PLAIN_NAME.match(name):
        return name
    if not isinstance(name, str):
        raise InvalidKeyError(f"{what} must be a str, not {type(name).__name__} ({name!r})")
    if "/" in name:
        raise InvalidKeyError(f"{what} {name!r} contains '/': it must be a single name")
    validate_key(name)
    return name


def all_plain_keys(keys: Sequence[object]) -> bool:
    """Whether every key is a plain ASCII key of at most 255 characters that passes the rules, in bulk.

    Joining on NUL (which no key may contain) lets C-level string searches
    check a whole batch at once; any doubt falls back to per-key checks,
    which also give the precise error.
    """
    if not keys:
        return True
    try:
        joined = "\0" + "\0".join(keys) + "\0"  # type: ignore[arg-type]
    except TypeError:
        return False
    if not joined.isascii() or joined.count("\0") != len(keys) + 1 or max(map(len, keys)) > MAX_NAME_BYTES:  # type: ignore[arg-type]
        return False
    return not any(bad in joined for bad in _BAD_IN_JOINED)


# What cannot appear in NUL-joined valid keys: empty keys or components, "." and ".." components,
# leading or trailing "/", reserved components.
_BAD_IN_JOINED = tuple(
    f"{left}{middle}{right}" for middle in (".", "..") for left in ("\0", "/") for right in ("\0", "/")
) + ("\0\0", "\0/", "/\0", "//", "\0" + RESERVED_PREFIX, "/" + RESERVED_PREFIX)


def validate_pattern(pattern: object) -> str:
    """Return a glob pattern for ``list_keys``: a non-empty ``str`` without NUL.

    Patterns match whole keys, as :func:`key_matcher` says (``*`` matches
    ``/`` too).
    """
    if not isinstance(pattern, str):
        raise InvalidKeyError(f"key pattern must be a str, not {type(pattern).__name__}")
    if not pattern or "\0" in pattern:
        raise InvalidKeyError(f"key pattern {pattern!r} must be non-empty and contain no NUL")
    return pattern


def validate_namespace(namespace: object) -> str:
    """Return the namespace as a ``str`` (paths accepted) or raise :class:`InvalidNamespaceError`."""
    if isinstance(namespace, os.PathLike):
        namespace = os.fspath(namespace)
    if not isinstance(namespace, str):
        raise InvalidNamespaceError(
            f"namespace must be a str or path, not {type(namespace).__name__} ({namespace!r})"
        )
    if not namespace or "\0" in namespace:
        raise InvalidNamespaceError(f"namespace {namespace!r} must be non-empty and contain no NUL")
    return namespace


def to_bytes(key: str, value: object) -> bytes | bytearray | memoryview:
    """Return ``value`` as a bytes-like object; ``str`` is encoded as UTF-8.

    Raises :class:`InvalidValueError` (a ``TypeError``) naming the key for any
    other type, so a stray ``None`` or ``dict`` never reaches storage.
    """
    if isinstance(value, (bytes, bytearray)):
        return value
    if isinstance(value, memoryview):
        return _flat_bytes(key, value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidValueError(
        f"value for key {key!r} is a {type(value).__name__}; save_files takes bytes, bytearray, "
        "memoryview or str (use save_npz for arrays)"
    )


def _flat_bytes(key: str, view: memoryview) -> memoryview | bytes:
    """A memoryview as one flat run of bytes, checked before anything is written.

    A C-contiguous view is cast without copying; any other (a strided slice,
    a Fortran-ordered array) is copied in C order. A released view is refused.
    """
    try:
        if view.nbytes == 0:
            return b""
        if view.c_contiguous:
            return view if view.ndim == 1 and view.format in ("B", "b", "c") else view.cast("B")
        return view.tobytes()
    except ValueError as exc:
        raise InvalidValueError(f"value for key {key!r} is an unusable memoryview ({exc})") from exc


def as_key_list(keys: object) -> tuple[list[str], bool]:
    """Normalize a single key or a sequence of keys.

    Returns the validated list and whether a single key was given, so the
    caller can return a single result the way the MuMMI API does.
    """
    if isinstance(keys, str):
        return [validate_key(keys)], True
    if isinstance(keys, Sequence) and not isinstance(keys, (bytes, bytearray)):
        key_list = list(keys)
        if all_plain_keys(key_list):
            return key_list, False
        return [validate_key(k) for k in key_list], False
    raise InvalidKeyError(f"keys must be a str or a list of str, not {type(keys).__name__}")


def as_name_list(names: object, what: str = "name") -> tuple[list[str], bool]:
    """Like :func:`as_key_list`, for flat names (signals): one name or a list of names."""
    if isinstance(names, str):
        return [validate_name(names, what)], True
    if isinstance(names, Sequence) and not isinstance(names, (bytes, bytearray)):
        return [validate_name(n, what) for n in names], False
    raise InvalidKeyError(f"{what}s must be a str or a list of str, not {type(names).__name__}")


def pair_keys_values(keys: object, data: object) -> list[tuple[str, bytes | bytearray | memoryview]]:
    """Validate keys and values for a save and pair them up, in order."""
    key_list, single = as_key_list(keys)
    if single:
        return [(key_list[0], to_bytes(key_list[0], data))]
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes, bytearray)):
        raise InvalidArgumentError(
            f"{len(key_list)} keys were given, so data must be a list of as many values, "
            f"not a {type(data).__name__}"
        )
    if len(data) != len(key_list):
        raise InvalidArgumentError(f"{len(key_list)} keys but {len(data)} values; give one value per key")
    if all(value.__class__ is bytes for value in data):
        return list(zip(key_list, data))
    return [(k, to_bytes(k, v)) for k, v in zip(key_list, data)]


def could_match_a_key(pattern: str) -> bool:
    """Whether ``pattern`` could match a valid key: its literal directory part must be a valid key path.

    A pattern such as ``../x*`` or ``/etc/pass*`` matches no key; a backend
    that walks directories must never be asked to look there.
    """
    head = literal_prefix(pattern) if has_glob(pattern) else pattern
    if not head.strip("/"):
        return not pattern.startswith("/")
    try:
        validate_key(head.rstrip("/") if has_glob(pattern) else head)
    except InvalidKeyError:
        return False
    return True


def literal_prefix(pattern: str) -> str:
    """The directory part of ``pattern`` before its first wildcard (``"a/b/"`` for ``"a/b/c*"``; ``""`` if none)."""
    cut = min((pattern.find(c) for c in "*?[" if c in pattern), default=len(pattern))
    head = pattern[:cut]
    return head[:head.rfind("/") + 1]


def glob_literal(text: str) -> str:
    """``text`` as a ``list_keys`` pattern that matches only itself (``*``, ``?`` and ``[`` bracketed)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def has_glob(pattern: str) -> bool:
    """Return whether ``pattern`` contains glob wildcards (``*``, ``?`` or ``[``)."""
    return any(c in pattern for c in "*?[")


def key_matcher(pattern: str) -> Callable[[str], bool]:
    """Return a predicate that tells whether a key matches the glob ``pattern``.

    The matching is that of :func:`fnmatch.fnmatchcase` on the whole key:
    case-sensitive on every platform, ``*`` also matches keys that start with
    a dot (unlike a shell), and ``*`` and ``?`` match ``/`` too (as Redis
    does): ``snapshot.*`` matches ``snapshot.3/subset#000000``, and ``*``
    matches every key.
    """
    if not has_glob(pattern):
        return pattern.__eq__
    regex = re.compile(fnmatch.translate(pattern))
    return lambda key: regex.match(key) is not None
