"""File-system helpers shared by the ``simple`` backend, checkpoints and signals.

One atomic-write routine (temp file in the same directory, then
``os.replace``) and one translation of ``OSError`` into
:class:`~mummi_io.core.errors.StorageError`, so no caller writes them again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator

from .errors import MummiIOError, StorageError, storage_error
from .keys import RESERVED_PREFIX

#: Prefix of the temporary files an atomic write creates; never a valid key.
TEMP_PREFIX = f"{RESERVED_PREFIX}.tmp."


@contextlib.contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into a :class:`StorageError`.

    ``action`` says what was being done ("write key 'a' in '/x'"), so the
    message tells the user what failed and on which path. The error raised
    is the subclass matching the system's error (a ``PermissionError``
    becomes a :class:`~mummi_io.core.errors.StoragePermissionError`, which is
    both).
    """
    try:
        yield
    except MummiIOError:  # ours already (some are OSErrors too: StorageError, ReadOnlyError...)
        raise
    except OSError as exc:
        raise os_error(action, exc) from exc


def os_error(action: str, exc: OSError) -> StorageError:
    """The :class:`StorageError` to raise for ``exc`` met while doing ``action``."""
    where = f" ({exc.filename})" if exc.filename else ""
    if isinstance(exc, PermissionError):
        advice = "Check the permissions of the path and of the directories above it."
    elif isinstance(exc, FileNotFoundError):
        advice = "Check that the path exists."
    else:
        advice = "Check that the path exists, is writable and that the file system has space."
    return storage_error(f"could not {action}: {exc.strerror or exc}{where}. {advice}", exc)


def stat_or_none(path: str, action: str) -> os.stat_result | None:
    """``os.stat(path)``, ``None`` if it does not exist; any other failure raises a StorageError.

    ``os.path.exists`` and friends answer ``False`` for a path they may not
    look at; this says "permission denied" instead.
    """
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise os_error(action, exc) from exc


def path_identity(path: str) -> tuple[str, int, int] | None:
    """``("path", device, inode)`` of what ``path`` leads to (links followed), ``None`` if nothing is there.

    Two spellings of one file or directory (relative and absolute, through a
    symbolic link) have the same identity.
    """
    found = stat_or_none(path, f"look at {path!r}")
    return None if found is None else ("path", found.st_dev, found.st_ino)


#: Pieces in which a value read for a consumer is read: the consumer (a hash) works on one while the next is read.
STREAM_PIECE = 8 << 20


def fill_buffer(fd: int, buffer: memoryview, offset: int,
                consume: Callable[[memoryview], object] | None = None) -> int:
    """Read into ``buffer`` from ``fd`` at ``offset``; return the bytes read (fewer only at end of file).

    With ``consume``, the buffer is filled in pieces of :data:`STREAM_PIECE`
    and each piece is handed to ``consume`` as soon as it is read, so that a
    consumer which releases the GIL (a hash) overlaps with the next read.
    Short reads (Linux reads at most 2 GiB at once) are continued.
    """
    total = buffer.nbytes
    step = STREAM_PIECE if consume is not None else total
    done = 0
    while done < total:
        got = os.preadv(fd, [buffer[done:done + step]], offset + done)
        if got <= 0:
            break
        if consume is not None:
            consume(buffer[done:done + got])
        done += got
    return done


def fsync_directory(directory: str) -> None:
    """Flush a directory entry to disk so a completed rename survives a power loss."""
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview | tuple) -> None:
    """Write every byte of ``data`` (or of each piece of a tuple of pieces) to ``fd``."""
    if isinstance(data, tuple):
        for part in data:
            write_all(fd, part)
        return
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: str, data: bytes | bytearray | memoryview, *, fsync: bool = False,
                 dir_fd: int | None = None) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.

    The bytes go to a uniquely named temporary file in the same directory,
    which is then renamed over ``path``. A crash at any point leaves either the
    old file or the new one, plus at most a hidden temporary file. With
    ``fsync`` the data is flushed before the rename (durable across a power
    loss once the directory is flushed too, see :func:`fsync_directory`).

    With ``dir_fd``, ``path`` is a name inside that open directory, and every
    call is made relative to it (nothing on the way is looked up again).

    Raises ``OSError`` from the system calls; callers wrap it with
    :func:`storage_errors`.
    """
    temp = os.path.join(os.path.dirname(path), TEMP_PREFIX + secrets.token_hex(8))
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666, dir_fd=dir_fd)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):  # the original error is the one to report
            os.unlink(temp, dir_fd=dir_fd)
        raise
