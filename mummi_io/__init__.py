"""mummi_io: key-value I/O for HPC campaigns with switchable backends.

>>> import mummi_io
>>> io = mummi_io.get_io("simple")            # or "taridx", "redis"
>>> io.save_files("/tmp/ns", ["a", "b"], ["1", b"2"])
>>> io.load_files("/tmp/ns", ["a", "b"])
[b'1', b'2']

Start with :func:`get_io` and the :class:`IO` it returns; the README has the
whole API, the backends and the command line, and ``docs/design.md`` the
layers (``core``, ``coordination``, ``backends``, ``facade``, ``objects``...).
"""

from __future__ import annotations

from .core.contract import Backend, StorageReport
from .core.errors import (
    BackendUnavailableError,
    CheckpointError,
    IntegrityError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidNamespaceError,
    InvalidValueError,
    KeyNotFoundError,
    LeaseLostError,
    ReentrantCallError,
    MummiIOError,
    NamespaceNotFoundError,
    PayloadNotFoundError,
    InvalidPayloadError,
    PickleRefusedError,
    UnsupportedObjectError,
    ReadOnlyError,
    SignalTimeoutError,
    ReplicationError,
    StorageError,
    StorageExistsError,
    StorageIsADirectoryError,
    StorageNotADirectoryError,
    StorageNotFoundError,
    StoragePermissionError,
    UnknownBackendError,
    UnreadableValueError,
    UnsupportedFormatError,
    UnsupportedOperation,
    WaitTimeoutError,
)
from .facade import RAISE
from .facade.checkpoint import load_checkpoint, save_checkpoint, take_backup
from .facade.npz import read_npz, write_npz
from .facade.signals import clear_signal, send_signal, test_signal, wait_signal
from .objects import EnvironmentMismatchError, Pack, delete, register_serializer, save
from .objects import load_path as load
from .registry import IO, get_interfaces, get_io, register_backend

__version__ = "0.1.0"

__all__ = [
    "IO",
    "RAISE",
    "clear_signal",
    "delete",
    "get_interfaces",
    "get_io",
    "load",
    "load_checkpoint",
    "read_npz",
    "register_backend",
    "register_serializer",
    "save",
    "save_checkpoint",
    "send_signal",
    "take_backup",
    "test_signal",
    "wait_signal",
    "write_npz",
    "Backend",
    "BackendUnavailableError",
    "CheckpointError",
    "EnvironmentMismatchError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "InvalidValueError",
    "KeyNotFoundError",
    "LeaseLostError",
    "ReentrantCallError",
    "MummiIOError",
    "Pack",
    "NamespaceNotFoundError",
    "PayloadNotFoundError",
    "InvalidPayloadError",
    "PickleRefusedError",
    "UnsupportedObjectError",
    "ReadOnlyError",
    "ReplicationError",
    "SignalTimeoutError",
    "StorageError",
    "StorageExistsError",
    "StorageIsADirectoryError",
    "StorageNotADirectoryError",
    "StorageNotFoundError",
    "StoragePermissionError",
    "StorageReport",
    "UnknownBackendError",
    "UnreadableValueError",
    "UnsupportedFormatError",
    "UnsupportedOperation",
    "WaitTimeoutError",
    "__version__",
]
