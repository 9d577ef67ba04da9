"""Checkpoints: human-readable YAML, written atomically, with rotated backups.

Format: a plain YAML document (as MuMMI wrote) preceded by one comment line
``# mummi_io checkpoint sha256=<hex>`` holding the checksum of the YAML text,
and closed by the YAML end marker ``...``. Any YAML reader still reads the
file; mummi_io uses the checksum to tell a damaged file from a good one and
then falls back to the newest valid backup. A file without the comment line
(written by MuMMI or edited by hand) is accepted if it parses to a mapping.

Backups: ``<file>.bak`` is the newest, then ``<file>.bak.1``, ``<file>.bak.2``,
up to ``keep`` backups in all.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import yaml

from ..core.errors import CheckpointError, InvalidArgumentError
from ..core.fs import TEMP_PREFIX, atomic_write, storage_errors

LOGGER = logging.getLogger(__name__)

_HEADER = "# mummi_io checkpoint sha256="
_HEADER_RE = re.compile(rb"\A# mummi_io checkpoint sha256=([0-9a-f]{64})\n")
#: Timestamped backups (``use_tstamp``): ``<file>.bak.YYYYmmdd_HHMMSS``, as MuMMI names them.
_STAMP_FORMAT = "%Y%m%d_%H%M%S"
_STAMP_RE = re.compile(r"\d{8}_\d{6}\Z")


class _CheckpointDumper(yaml.SafeDumper):
    """A safe YAML dumper that also writes numpy scalars and arrays as plain YAML."""


def _plain_numpy(value: np.generic | np.ndarray) -> Any:
    """A numpy value as the plain Python value YAML writes; refused where that would change it."""
    if value.dtype.kind in "mMOV":
        raise InvalidArgumentError(
            f"a numpy {value.dtype} value cannot be stored in a YAML checkpoint exactly (it would come back as "
            "an int or a date); convert it (str(value), value.astype('int64')) or keep it with save_object"
        )
    return value.item() if value.ndim == 0 else value.tolist()


_SCALAR_KEYS = (bool, str, int, float, type(None))  # bool before int: True stays True


def _represent_mapping(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.Node:
    """A dict (or subclass) as a plain mapping with scalar keys; keys that would not load back are refused."""
    converted: dict[Any, Any] = {}
    originals: dict[Any, Any] = {}
    for key, item in value.items():
        plain = key.value if isinstance(key, enum.Enum) else key
        if isinstance(plain, np.generic):
            plain = _plain_numpy(plain)
        if not isinstance(plain, _SCALAR_KEYS):
            raise InvalidArgumentError(
                f"checkpoint key {key!r} is a {type(key).__name__}; YAML keys that load back are str, int, float, "
                "bool or None (a tuple key would come back as a list, which cannot be a key)"
            )
        if plain is not None:  # the plain type itself (an IntEnum's value is an int subclass)
            plain = next(base for base in (bool, str, int, float) if isinstance(plain, base))(plain)
        if plain in converted:
            raise InvalidArgumentError(
                f"checkpoint keys {originals[plain]!r} and {key!r} both become {plain!r} in YAML; one would be lost"
            )
        converted[plain] = item
        originals[plain] = key
    return dumper.represent_dict(converted)


_CheckpointDumper.add_multi_representer(
    np.generic, lambda dumper, value: dumper.represent_data(_plain_numpy(value))  # type: ignore[type-abstract]
)
_CheckpointDumper.add_representer(np.ndarray, lambda dumper, value: dumper.represent_data(_plain_numpy(value)))
_CheckpointDumper.add_representer(
    tuple, lambda dumper, value: dumper.represent_list(list(value))
)
# Subclasses of the plain types (OrderedDict, defaultdict, Counter, IntEnum, a str
# subclass...) and enums are written as the plain value they hold, which loads
# back safely; the safe dumper would refuse them, and yaml.dump would write
# python/object tags that no safe loader reads.
_CheckpointDumper.add_representer(dict, _represent_mapping)
_CheckpointDumper.add_multi_representer(dict, _represent_mapping)
def _as_plain(base: type, method: str) -> Callable[[yaml.SafeDumper, Any], yaml.Node]:
    """A representer writing a subclass of ``base`` as the plain ``base`` value it holds."""
    return lambda dumper, value: getattr(dumper, method)(base(value))


for _base, _represent in ((list, "represent_list"), (str, "represent_str"),
                          (int, "represent_int"), (float, "represent_float")):
    _CheckpointDumper.add_multi_representer(_base, _as_plain(_base, _represent))
_CheckpointDumper.add_multi_representer(enum.Enum, lambda dumper, value: dumper.represent_data(value.value))


class _NumpyAwareSafeLoader(yaml.SafeLoader):
    """The safe loader, plus the tags PyYAML's default dumper writes for numpy values.

    MuMMI wrote its checkpoints with ``yaml.dump``, which stores numpy scalars
    and arrays as ``python/object/apply`` reductions. Only these numpy
    reductions are understood here, built from their raw bytes: no arbitrary
    callable is ever invoked, so a checkpoint still cannot run code.
    """


def _numpy_dtype(loader: yaml.SafeLoader, node: yaml.Node) -> np.dtype:
    fields = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    dtype = np.dtype(str(fields["args"][0]))
    order = fields.get("state", (None, None))[1]
    return dtype.newbyteorder(order) if order in ("<", ">") else dtype


def _numpy_scalar(loader: yaml.SafeLoader, node: yaml.Node) -> np.generic:
    dtype, raw = loader.construct_sequence(node, deep=True)  # type: ignore[arg-type]
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, bytes):
        raise yaml.constructor.ConstructorError(None, None, "not a plain numpy scalar", node.start_mark)
    return np.frombuffer(raw, dtype=dtype, count=1)[0].copy()


def _numpy_array(loader: yaml.SafeLoader, node: yaml.Node) -> np.ndarray:
    fields = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    _, shape, dtype, fortran, raw = fields["state"]
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, bytes):
        raise yaml.constructor.ConstructorError(None, None, "not a plain numpy array", node.start_mark)
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape), order="F" if fortran else "C").copy()


for _module in ("numpy._core.multiarray", "numpy.core.multiarray"):
    _NumpyAwareSafeLoader.add_constructor(f"tag:yaml.org,2002:python/object/apply:{_module}.scalar", _numpy_scalar)
    _NumpyAwareSafeLoader.add_constructor(f"tag:yaml.org,2002:python/object/apply:{_module}._reconstruct",
                                          _numpy_array)
_NumpyAwareSafeLoader.add_constructor("tag:yaml.org,2002:python/object/apply:numpy.dtype", _numpy_dtype)
_NumpyAwareSafeLoader.add_constructor("tag:yaml.org,2002:python/name:numpy.ndarray", lambda loader, node: np.ndarray)
_NumpyAwareSafeLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple",
    lambda loader, node: tuple(loader.construct_sequence(node, deep=True)),  # type: ignore[arg-type]
)


def backup_name(filename: str, index: int = 0) -> str:
    """Name of the ``index``-th newest rotated backup of ``filename``."""
    return f"{filename}.bak" if index == 0 else f"{filename}.bak.{index}"


def _copy_atomically(source: str, target: str) -> None:
    with open(source, "rb") as handle:
        content = handle.read()
    atomic_write(target, content, fsync=True)


def take_backup(filename: str, suffix: str | None = None) -> str | None:
    """Copy ``filename`` to ``filename.bak`` (or ``filename.bak.<suffix>``).

    The copy is atomic and the original stays in place (MuMMI moved it, which
    left no checkpoint at all if the process died before the next write).
    Returns the backup's path, or ``None`` when there is no file to back up.

    Raises
    ------
    StorageError
        If the copy cannot be written.
    """
    if not os.path.isfile(filename):
        return None
    target = backup_name(filename) if suffix is None else f"{filename}.bak.{suffix}"
    with storage_errors(f"back up {filename!r} to {target!r}"):
        _copy_atomically(filename, target)
    LOGGER.info("saved backup %s", target)
    return target


def _render(data: dict[str, Any]) -> bytes:
    body = yaml.dump(
        data, Dumper=_CheckpointDumper, default_flow_style=False, explicit_end=True, sort_keys=True
    ).encode("utf-8")
    return f"{_HEADER}{hashlib.sha256(body).hexdigest()}\n".encode("ascii") + body


def _parse(content: bytes, loader: Any = None) -> dict[str, Any]:
    """Return the checkpoint mapping in ``content`` or raise ``ValueError`` saying why not.

    ``loader`` is a PyYAML loader class the caller chose (MuMMI passes
    ``yaml.FullLoader`` or ``yaml.UnsafeLoader``); by default the safe loader
    that also reads the numpy values MuMMI's checkpoints hold.
    """
    header = _HEADER_RE.match(content)
    if header is None and content.startswith(_HEADER.encode("ascii")[:12]):
        raise ValueError("truncated or damaged: its checksum line is incomplete")
    if header:
        body = content[header.end():]
        if hashlib.sha256(body).hexdigest() != header.group(1).decode("ascii"):
            raise ValueError("checksum mismatch (truncated or corrupted)")
    try:
        try:
            data = yaml.load(content, Loader=loader or _NumpyAwareSafeLoader)
        except yaml.constructor.ConstructorError:
            if loader is None or loader is _NumpyAwareSafeLoader:
                raise
            # The caller's loader (say yaml.SafeLoader) cannot build numpy's tags, which are no damage:
            # read them with ours, which understands those and still runs no code.
            data = yaml.load(content, Loader=_NumpyAwareSafeLoader)
    except (yaml.YAMLError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ValueError(f"holds a {type(data).__name__}, not a non-empty mapping")
    return data


def _is_valid(filename: str) -> bool:
    try:
        with open(filename, "rb") as handle:
            _parse(handle.read())
    except (OSError, ValueError):
        return False
    return True


def save_checkpoint(
    filename: str, data: dict[str, Any], keep: int = 3, use_tstamp: bool = False, cleanup: bool = False,
    keep_checkpoint: int = 2,
) -> str:
    """Write ``data`` to ``filename`` atomically, keeping backups; return the time stamp written.

    The current file becomes ``filename.bak`` (older backups shift to
    ``.bak.1`` ...) unless it is damaged, so a bad file never pushes out a good
    backup; ``keep`` backups are kept. With ``use_tstamp`` (MuMMI's keyword)
    the backup is named ``filename.bak.YYYYmmdd_HHMMSS`` instead and no
    rotation happens; with ``cleanup`` too, only the newest
    ``keep_checkpoint`` timestamped backups are kept (at least one), as in
    MuMMI. A ``ts`` entry with the time of writing is added to the stored
    mapping, as MuMMI did; the caller's dict is not modified. numpy scalars
    and arrays (0-d included) are stored as plain numbers and lists.

    Raises
    ------
    InvalidArgumentError
        If ``data`` is not a dict or ``keep`` is negative.
    StorageError
        If the file cannot be written.
    """
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"checkpoint data must be a dict, not {type(data).__name__}")
    if not isinstance(keep, int) or keep < 0:
        raise InvalidArgumentError(f"keep must be a whole number >= 0, not {keep!r}")
    now = datetime.datetime.now()
    stamped = dict(data)
    stamped["ts"] = now.strftime("%Y-%m-%d %H:%M:%S")
    try:
        content = _render(stamped)
    except yaml.representer.RepresenterError as exc:
        raise InvalidArgumentError(
            f"checkpoint data holds a value YAML cannot store safely ({exc.args[-1]!r}); use "
            "dicts, lists, str, int, float, bool, None and numpy values"
        ) from exc
    try:
        _parse(content)  # never write a checkpoint that would load as "damaged" and roll the campaign back
    except ValueError as exc:
        raise InvalidArgumentError(f"checkpoint data would not load back ({exc}); nothing was written") from exc
    with storage_errors(f"save checkpoint {filename!r}"):
        directory = os.path.dirname(filename)
        if directory:
            os.makedirs(directory, exist_ok=True)
        current_is_valid = os.path.isfile(filename) and _is_valid(filename)
        if os.path.isfile(filename) and not current_is_valid:
            LOGGER.warning("checkpoint %s is damaged; not keeping it as a backup", filename)
        if use_tstamp:
            if current_is_valid:
                _copy_atomically(filename, f"{filename}.bak.{now.strftime(_STAMP_FORMAT)}")
            if cleanup:
                _remove_old_stamped_backups(filename, max(1, keep_checkpoint))
        elif keep > 0 and current_is_valid:
            for index in range(keep - 1, 0, -1):
                older = backup_name(filename, index - 1)
                if os.path.exists(older):
                    os.replace(older, backup_name(filename, index))
            _copy_atomically(filename, backup_name(filename))
        atomic_write(filename, content, fsync=True)
    LOGGER.info("saved checkpoint %s at %s", filename, stamped["ts"])
    return str(stamped["ts"])


def _remove_old_stamped_backups(filename: str, keep: int) -> None:
    """Keep the newest ``keep`` backups named ``filename.bak.YYYYmmdd_HHMMSS``; remove the others."""
    directory = os.path.dirname(filename) or "."
    prefix = os.path.basename(filename) + ".bak."
    stamped = sorted(
        name for name in os.listdir(directory) if name.startswith(prefix) and _STAMP_RE.match(name[len(prefix):])
    )
    for name in stamped[:-keep]:
        LOGGER.debug("removing old checkpoint backup %s", name)
        os.unlink(os.path.join(directory, name))


def _candidates(filename: str) -> list[str]:
    """The checkpoint and every backup of it that exists, newest first.

    The main file comes first (it is written last); then every backup,
    rotated (``.bak``, ``.bak.1``, ...) or named (``take_backup(suffix=...)``),
    newest first by modification time (the rotation order breaks ties). A
    gap in the rotation (``.bak`` missing, ``.bak.1`` present) does not hide
    the backups after it.

    Raises
    ------
    StorageError
        If the directory cannot be listed (a permission problem is not "no checkpoint").
    """
    directory = os.path.dirname(filename) or "."
    base = os.path.basename(filename)
    with storage_errors(f"look for checkpoint {filename!r} and its backups"):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
    found = [filename] if base in names else []
    backups = []
    for name in names:
        if name == base + ".bak":
            rank = 0
        elif name.startswith(base + ".bak.") and not name.startswith(TEMP_PREFIX):
            suffix = name[len(base) + 5:]
            rank = int(suffix) if suffix.isdigit() else 1 << 62
        else:
            continue
        path = os.path.join(directory, name)
        with storage_errors(f"look at checkpoint backup {path!r}"):
            backups.append((-os.stat(path).st_mtime_ns, rank, path))
    return found + [path for _, _, path in sorted(backups)]


def load_checkpoint(filename: str, loader: Any = None) -> dict[str, Any]:
    """Return the newest valid checkpoint among ``filename`` and all its backups.

    ``loader`` is a PyYAML loader class (MuMMI's keyword, e.g.
    ``yaml.FullLoader``); by default a safe loader that also reads the numpy
    values of checkpoints MuMMI wrote with ``yaml.dump``.

    A damaged or missing file (truncated, corrupted, not a mapping) is
    skipped with a warning naming it, and the newest valid backup is loaded
    instead, whatever is missing in between. Only when neither the file nor
    any backup exists is this a fresh start: ``{}`` is returned, as in MuMMI.

    Raises
    ------
    CheckpointError
        If checkpoint files exist but none of them is valid.
    """
    candidates = _candidates(filename)
    if not candidates:
        LOGGER.info("no checkpoint at %s: starting fresh", filename)
        return {}
    problems = []
    for path in candidates:
        try:
            with open(path, "rb") as handle:
                data = _parse(handle.read(), loader)
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
            LOGGER.warning("checkpoint %s is unusable (%s); trying the next backup", path, exc)
            continue
        if path != filename:
            LOGGER.warning("loaded checkpoint from backup %s", path)
        else:
            LOGGER.info("restored checkpoint %s from %s", path, data.get("ts"))
        return data
    raise CheckpointError(
        f"no valid checkpoint for {filename!r}; every file is damaged: " + "; ".join(problems)
        + ". Restore one from another copy, or delete them all to start fresh."
    )
