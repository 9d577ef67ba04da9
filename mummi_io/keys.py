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

#: Longest key, in UTF-8 bytes: the file-name limit of every POSIX file system.
MAX_KEY_BYTES = 255

#: Names starting with this prefix are reserved for mummi_io's own files
#: (temporary files of atomic writes, indexes). They are never valid keys, so a
#: user key can never collide with, or list, an internal file.
RESERVED_PREFIX = ".mummi_io"

# An ASCII key of at most 255 characters that passes every rule below.
_PLAIN_KEY = re.compile(r"(?!\.\.?\Z)(?!\.mummi_io)[^/\0]+\Z")


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid flat key, else raise :class:`InvalidKeyError`.

    A key is a non-empty ``str`` of at most 255 UTF-8 bytes, without ``/`` or
    NUL, other than ``.`` and ``..``, and not starting with ``.mummi_io``.
    These rules keep every key a plain file name inside its namespace.
    """
    if key.__class__ is str and len(key) <= MAX_KEY_BYTES and key.isascii() and _PLAIN_KEY.match(key):
        return key  # the common case, checked in one regular expression
    if not isinstance(key, str):
        raise InvalidKeyError(f"key must be a str, not {type(key).__name__} ({key!r})")
    if not key:
        raise InvalidKeyError("key must not be empty")
    if "/" in key or "\0" in key:
        raise InvalidKeyError(
            f"key {key!r} contains '/' or NUL; keys are flat names, use another namespace "
            "for a hierarchy"
        )
    if key in (".", ".."):
        raise InvalidKeyError(f"key {key!r} is not allowed (it names a directory)")
    if key.startswith(RESERVED_PREFIX):
        raise InvalidKeyError(f"key {key!r} starts with {RESERVED_PREFIX!r}, which is reserved")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"key {key!r} is not valid Unicode text: {exc}") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key {key[:40]!r}... is {size} UTF-8 bytes; the limit is {MAX_KEY_BYTES}")
    return key


def _all_plain(keys: list[object]) -> bool:
    """Whether every key is a plain ASCII key that passes the rules, checked in bulk.

    Joining on ``/`` (which no key may contain) lets C-level string searches
    check a whole batch at once; any doubt falls back to per-key checks,
    which also give the precise error.
    """
    if not keys:
        return True
    try:
        joined = "/" + "/".join(keys) + "/"  # type: ignore[arg-type]
    except TypeError:
        return False
    return (
        joined.isascii()
        and joined.count("/") == len(keys) + 1
        and "\0" not in joined
        and "//" not in joined
        and "/./" not in joined
        and "/../" not in joined
        and "/" + RESERVED_PREFIX not in joined
        and max(map(len, keys)) <= MAX_KEY_BYTES  # type: ignore[arg-type]
    )


def validate_pattern(pattern: object) -> str:
    """Return a glob pattern for ``list_keys`` after checking it is a flat pattern."""
    if not isinstance(pattern, str):
        raise InvalidKeyError(f"key pattern must be a str, not {type(pattern).__name__}")
    if not pattern or "/" in pattern or "\0" in pattern:
        raise InvalidKeyError(f"key pattern {pattern!r} must be non-empty and contain no '/' or NUL")
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
        if _all_plain(key_list):
            return key_list, False
        return [validate_key(k) for k in key_list], False
    raise InvalidKeyError(f"keys must be a str or a list of str, not {type(keys).__name__}")


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


def has_glob(pattern: str) -> bool:
    """Return whether ``pattern`` contains glob wildcards (``*``, ``?`` or ``[``)."""
    return any(c in pattern for c in "*?[")


def key_matcher(pattern: str) -> Callable[[str], bool]:
    """Return a predicate that tells whether a key matches the glob ``pattern``.

    The matching is that of :func:`fnmatch.fnmatchcase`: case-sensitive on every
    platform, and ``*`` also matches keys that start with a dot (unlike a shell).
    """
    if not has_glob(pattern):
        return pattern.__eq__
    regex = re.compile(fnmatch.translate(pattern))
    return lambda key: regex.match(key) is not None
