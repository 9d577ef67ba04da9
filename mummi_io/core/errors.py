"""The one exception hierarchy of mummi_io.

Every failure the library reports is a :class:`MummiIOError`. Each subclass
also derives from the built-in exception a caller would naturally catch
(``KeyError`` for a missing key, ``ValueError`` for a bad key, ...), so code
written against the built-ins keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable


class MummiIOError(Exception):
    """Base class of every error raised by mummi_io."""

    def __str__(self) -> str:
        # KeyError and OSError format their arguments oddly; we always want the
        # plain message that the raiser wrote.
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidKeyError(MummiIOError, ValueError):
    """A key is not a valid flat name (raised before any I/O happens)."""


class InvalidNamespaceError(MummiIOError, ValueError):
    """A namespace is empty, of the wrong type, or unusable by the backend."""


class InvalidArgumentError(MummiIOError, ValueError):
    """Arguments do not fit together (e.g. keys and values of different lengths)."""


class InvalidValueError(MummiIOError, TypeError):
    """A value is not ``bytes``, ``bytearray``, ``memoryview`` or ``str``."""


class UsageError(InvalidArgumentError):
    """A command line whose ``-o NAME=VALUE`` options the backend does not take (``mummi-io`` exit code 2)."""


class UnknownBackendError(MummiIOError, ValueError):
    """``get_io`` was asked for a backend kind that is not registered."""


class KeyNotFoundError(MummiIOError, KeyError):
    """One or more keys do not exist in a namespace.

    Attributes
    ----------
    namespace:
        The namespace that was searched.
    keys:
        Every missing key, in the order they were requested.
    """

    def __init__(self, namespace: str, keys: Iterable[str], hint: str = "") -> None:
        self.namespace = namespace
        self.keys = list(keys)
        shown = ", ".join(repr(k) for k in self.keys[:20])
        more = f" and {len(self.keys) - 20} more" if len(self.keys) > 20 else ""
        super().__init__(
            f"{len(self.keys)} key(s) not found in namespace {namespace!r}: {shown}{more}. "
            + (hint + " " if hint else "")
            + "Check the key names with list_keys(), or pass missing=None to get None "
            "for missing keys instead of this error."
        )


class NamespaceNotFoundError(MummiIOError, LookupError):
    """A command was pointed at a namespace that does not exist (a typo, usually): nothing was changed."""


class PayloadNotFoundError(KeyNotFoundError, FileNotFoundError):
    """A persistable's payload was never generated with these parameters.

    A ``KeyNotFoundError`` (mummi_io) and a ``FileNotFoundError`` (what the
    persistable seed raised, and what its users catch).
    """


class InvalidPayloadError(MummiIOError, ValueError):
    """``_validate_payload`` rejected a payload (raise it from your validator)."""


class PickleRefusedError(MummiIOError, ValueError):
    """Stored data needs pickle to load, and the caller did not opt in (pickle runs code)."""


class UnsupportedObjectError(PickleRefusedError, TypeError):
    """An object cannot be saved so that it loads back equal and of the same type without pickle.

    Raised by ``save_object`` before a byte is written; ``type_name`` names the
    offending type (which may be nested deep inside the object).
    """

    def __init__(self, message: str, type_name: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name


class BackendUnavailableError(MummiIOError, ConnectionError):
    """A server or file the backend needs cannot be reached or opened."""


class StorageError(MummiIOError, OSError):
    """The storage refused an operation (permissions, disk full, not a directory...).

    Raised as the subclass matching the system's error, which is also the
    matching built-in (:class:`StoragePermissionError` is a
    ``PermissionError``...); ``errno``, ``strerror`` and ``filename`` are
    those of the system's error.
    """


class StoragePermissionError(StorageError, PermissionError):
    """The storage refused access to a file or directory (permissions)."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """A file or directory the operation needs does not exist (not a missing *key*: see KeyNotFoundError)."""


class StorageExistsError(StorageError, FileExistsError):
    """A file or directory is in the way."""


class StorageNotADirectoryError(StorageError, NotADirectoryError):
    """A path component that must be a directory is a file."""


class StorageIsADirectoryError(StorageError, IsADirectoryError):
    """A path that must be a file is a directory."""


#: The StorageError subclass for each built-in OSError subclass.
STORAGE_ERRORS: dict[type[OSError], type[StorageError]] = {
    PermissionError: StoragePermissionError,
    FileNotFoundError: StorageNotFoundError,
    FileExistsError: StorageExistsError,
    NotADirectoryError: StorageNotADirectoryError,
    IsADirectoryError: StorageIsADirectoryError,
}


def storage_error(message: str, cause: OSError | None = None) -> StorageError:
    """A :class:`StorageError` of the subclass matching ``cause``, carrying its errno and file name."""
    kind = StorageError
    if cause is not None:
        for builtin, subclass in STORAGE_ERRORS.items():
            if isinstance(cause, builtin):
                kind = subclass
                break
    error = kind(message)
    if cause is not None:
        error.errno, error.strerror, error.filename = cause.errno, cause.strerror, cause.filename
    return error


class IntegrityError(MummiIOError):
    """Stored bytes do not match their recorded checksum, or a file is corrupt.

    ``keys`` lists the keys concerned, when the error is about values.
    """

    def __init__(self, message: str, keys: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.keys = list(keys)


class UnreadableValueError(IntegrityError, ValueError):
    """A stored value cannot be decoded as what it should be (a garbage npz, a damaged object)."""


class UnsupportedFormatError(MummiIOError, ValueError):
    """A file is not in a format the backend can use (a zip, or a text file, where a tar is expected).

    Nothing was written to it.
    """


class ReadOnlyError(MummiIOError, PermissionError):
    """A write was attempted on a namespace that can only be read (a compressed tar)."""


class ReplicationError(MummiIOError):
    """A write reached its Redis master, but fewer replicas than ``replica_acks`` confirmed it in time.

    The write is *not acknowledged*: a failover now could lose it. ``acks``
    maps each master (host:port) to the replicas that confirmed.
    """

    def __init__(self, message: str, acks: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.acks = dict(acks or {})


class UnsupportedOperation(MummiIOError, NotImplementedError):
    """The backend does not offer this optional capability."""


class CheckpointError(MummiIOError):
    """No valid checkpoint could be loaded (the file and every backup are corrupt)."""


class WaitTimeoutError(MummiIOError, TimeoutError):
    """A wait (for signals, a counter, a barrier) ran out of time."""


class SignalTimeoutError(WaitTimeoutError):
    """A wait for signals ran out of time; ``missing`` lists the signals that did not arrive."""

    def __init__(self, message: str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])


class ReentrantCallError(MummiIOError, RuntimeError):
    """A signal handler (or another callback) used a namespace while its own thread was writing or opening it.

    Raised in the handler, before it changes anything. If the handler lets
    it through, it also stops the interrupted operation, as Ctrl-C would
    (what it had committed stays, the rest is not written).
    """


class LeaseLostError(MummiIOError):
    """A work-queue lease expired (the item went back to the queue) before it was acked or extended."""


class EnvironmentMismatchError(MummiIOError):
    """The object was written with other package versions than this environment has.

    ``differences`` lists ``(package, version when written, version now)``.
    """

    def __init__(self, message: str, differences: list[tuple[str, str | None, str | None]]) -> None:
        super().__init__(message)
        self.differences = differences


class SyncedOverwriteError(MummiIOError):
    """A synced object cannot be overwritten; remove it with remove_remote=True first."""


class RemoteConflictError(MummiIOError):
    """The remote holds other content under the name being pushed (or another push of it is under way)."""


class CollectiveError(MummiIOError):
    """An MPI collective failed on at least one rank (the message names each rank and why)."""
