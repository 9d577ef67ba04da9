"""Typed objects with metadata and integrity: ``save_object``, ``load_object``, ``object_info``.

A stored object is one value::

    b"MIOOBJ1\\n"  u64 little-endian length of the metadata  metadata (JSON)  payload

The metadata (readable without loading the object: ``object_info`` reads only
the head of the value) holds the serializer, the payload's digest (BLAKE3 by
default; sha256 or xxh3_128 on request) and size,
the creation time, the Python version, the versions of the packages the
serializer depends on, and the object's module and class (with the git
revision of the module's checkout when it lives in one). On load the digest is
checked and the environment compared before anything is deserialized.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import logging
import os
import platform
import queue
import struct
import sys
import threading
import warnings
from importlib import metadata as importlib_metadata
from collections.abc import Mapping
from typing import Any

from ..core.contract import Parts
from ..core.errors import (  # EnvironmentMismatchError: raised here, importable from here as before
    EnvironmentMismatchError, IntegrityError, InvalidArgumentError, PickleRefusedError, UnsupportedObjectError,
)
from .serializers import Serializer, choose, serializer_named

LOGGER = logging.getLogger(__name__)

MAGIC = b"MIOOBJ1\n"
HEAD = struct.Struct("<8sQ")
#: How much of a value ``object_info`` reads first (metadata is usually far smaller).
INFO_PREFIX = 64 * 1024
POLICIES = ("ignore", "warn", "raise", "auto")


class EnvironmentMismatchWarning(UserWarning):
    """Issued by ``load_object(..., env="warn")`` when package versions differ."""


@functools.lru_cache(maxsize=256)
def _version(distribution: str) -> str | None:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def installed_distributions() -> Mapping[str, list[str]]:
    """Which installed distributions provide each top-level module (cached: it reads every distribution)."""
    return importlib_metadata.packages_distributions()


def _installed(source: str) -> bool:
    """Whether a module file lies in an installation directory (site-packages), not in a work tree."""
    parts = os.path.abspath(source).split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts


@functools.lru_cache(maxsize=256)
def _git_revision(directory: str) -> str | None:
    """The commit checked out in the git work tree holding ``directory`` (read from .git, no subprocess)."""
    current = os.path.abspath(directory)
    while True:
        git = os.path.join(current, ".git")
        if os.path.isdir(git):
            try:
                with open(os.path.join(git, "HEAD")) as handle:
                    head = handle.read().strip()
                if not head.startswith("ref: "):
                    return head
                ref = head[5:]
                ref_file = os.path.join(git, ref)
                if os.path.exists(ref_file):
                    with open(ref_file) as handle:
                        return handle.read().strip()
                with open(os.path.join(git, "packed-refs")) as handle:
                    for line in handle:
                        if line.rstrip().endswith(" " + ref):
                            return line.split()[0]
            except OSError:
                return None
            return None
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def environment(serializer: Serializer, obj: Any) -> dict[str, Any]:
    """What the reader's environment should match: Python, packages, the object's module."""
    module_name = type(obj).__module__
    packages = {name: _version(name) for name in serializer.packages}
    top = module_name.split(".")[0]
    for distribution in installed_distributions().get(top, []):
        packages[distribution] = _version(distribution)
    module = sys.modules.get(module_name)
    source = getattr(module, "__file__", None)
    return {
        "python": platform.python_version(),
        "packages": packages,
        "module": module_name,
        "class": type(obj).__qualname__,
        # Installed packages (site-packages, even inside a checkout's venv) have no revision of their own.
        "git_revision": _git_revision(os.path.dirname(source))
        if source and top != "builtins" and not _installed(source) else None,
    }


#: The digest new objects record: BLAKE3 is cryptographic like sha256 and, on every core, several
#: times faster (100 MB: ~27 ms on 2 cores against ~70 ms); objects recording another digest still load.
DEFAULT_DIGEST = "blake3"
DIGESTS = ("blake3", "sha256", "xxh3_128")
#: Payloads from this size are hashed by BLAKE3 on every core (below it, threads cost more than they save).
_THREADED_HASH_BYTES = 1 << 20


def _hasher(digest: str, size: int = 0) -> Any:
    """A hashlib-style hasher for ``digest`` (one of :data:`DIGESTS`)."""
    if digest == "blake3":
        import blake3

        threads = blake3.blake3.AUTO if size >= _THREADED_HASH_BYTES else 1
        return blake3.blake3(max_threads=threads)
    if digest == "sha256":
        return hashlib.sha256()
    if digest == "xxh3_128":
        try:
            import xxhash
        except ImportError:
            raise InvalidArgumentError("digest='xxh3_128' needs the xxhash package: pip install xxhash") from None
        return xxhash.xxh3_128()
    raise InvalidArgumentError(f"digest must be one of {', '.join(map(repr, DIGESTS))}, not {digest!r}")


def encode_object(
    obj: Any, serializer: str | None = None, allow_pickle: bool = False, digest: str = DEFAULT_DIGEST
) -> tuple[Parts, dict[str, Any]]:
    """Serialize ``obj`` into a stored value (head, metadata, payload pieces) and return it with its metadata.

    ``digest`` is the checksum recorded and verified on load: ``blake3`` (the
    default: cryptographic, multi-threaded for large payloads), ``sha256``
    (as MLIO records) or ``xxh3_128`` (non-cryptographic, fastest on one core).
    """
    chosen = choose(obj, serializer, allow_pickle)
    if chosen.unsafe and not allow_pickle:
        raise PickleRefusedError(
            f"the {chosen.name!r} serializer pickles, so loading it later runs code; pass allow_pickle=True "
            "to store it anyway"
        )
    try:
        dumped = chosen.dump(obj)
    except UnsupportedObjectError:
        if not (allow_pickle and serializer is None):
            raise  # nothing was written: it names the type and the opt-in
        chosen = serializer_named("pickle")  # the caller opted in: what "values" cannot store exactly, pickle does
        dumped = chosen.dump(obj)
    return encode_payload(dumped, chosen.name, environment(chosen, obj), digest)


def encode_payload(
    dumped: bytes | bytearray | memoryview | Parts, serializer: str, env: dict[str, Any], digest: str = DEFAULT_DIGEST
) -> tuple[Parts, dict[str, Any]]:
    """Wrap an already serialized payload (of serializer ``serializer``) as a stored object, with its metadata.

    :func:`encode_object` uses it after serializing; importers (MLIO packs)
    use it to carry bytes over without deserializing them.
    """
    payload = dumped if isinstance(dumped, Parts) else Parts((dumped,))
    hasher = _hasher(digest, payload.nbytes)
    for part in payload:
        hasher.update(part)
    meta = {
        "format": 1,
        "serializer": serializer,
        "digest": digest,
        digest: hasher.hexdigest(),
        "size": payload.nbytes,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
    }
    encoded_meta = json.dumps(meta, sort_keys=True).encode("utf-8")
    # Pad with spaces (still JSON) so the payload starts 64-byte aligned: arrays loaded
    # in place are then aligned as np.load's are.
    encoded_meta += b" " * (-(HEAD.size + len(encoded_meta)) % 64)
    return Parts((HEAD.pack(MAGIC, len(encoded_meta)) + encoded_meta, *payload)), meta


def decode_head(blob: bytes | memoryview, where: str) -> tuple[dict[str, Any], int]:
    """Return the metadata and the offset of the payload in a stored object.

    Raises
    ------
    IntegrityError
        If the value is not a stored object (or its head is damaged).
    """
    if len(blob) < HEAD.size:
        raise IntegrityError(f"{where} is not a mummi_io object (too short); was it saved with save_files?")
    magic, length = HEAD.unpack_from(blob)
    if magic != MAGIC or HEAD.size + length > len(blob):
        raise IntegrityError(f"{where} is not a mummi_io object, or its head is damaged")
    try:
        meta = json.loads(bytes(blob[HEAD.size:HEAD.size + length]))
    except ValueError as exc:
        raise IntegrityError(f"{where}: the object's metadata is damaged ({exc})") from exc
    return meta, HEAD.size + length


def check_environment(meta: dict[str, Any], policy: str, unsafe: bool, where: str) -> list[tuple[str, str | None, str | None]]:
    """Compare the recorded environment with this one and apply ``policy``; return the differences."""
    if policy not in POLICIES:
        raise InvalidArgumentError(f"env policy must be one of {POLICIES}, not {policy!r}")
    recorded = meta.get("environment", {})
    differences = [
        (name, version, _version(name))
        for name, version in sorted(recorded.get("packages", {}).items())
        if version != _version(name)
    ]
    python_then = ".".join(str(recorded.get("python") or "").split(".")[:2])  # None: not recorded (imports)
    python_now = ".".join(platform.python_version().split(".")[:2])
    if python_then and python_then != python_now:
        differences.append(("python", python_then, python_now))
    if not differences:
        return differences
    effective = ("raise" if unsafe else "warn") if policy == "auto" else policy
    text = ", ".join(f"{name} {then} -> {now}" for name, then, now in differences)
    message = f"{where} was written in another environment: {text}"
    if effective == "raise":
        raise EnvironmentMismatchError(
            message + "; install the recorded versions, or pass env='warn' (or 'ignore') to load anyway",
            differences,
        )
    if effective == "warn":
        LOGGER.warning("%s", message)
        warnings.warn(message, EnvironmentMismatchWarning, stacklevel=4)
    return differences


#: The longest object head :class:`StreamingDigest` follows (longer ones are checked after the read).
_STREAMED_HEAD_LIMIT = 1 << 20


class StreamingDigest:
    """The digest of a stored object's payload, computed in a thread while the object is still being read.

    Give :meth:`feed` to a streamed read (``io.load_buffer(..., consume=)``):
    it finds the head in the first bytes, then hashes each later piece of the
    payload in a worker thread while the backend reads the next one, so a
    large object costs about its read time, not its read time plus its hash
    time. :meth:`result` gives ``(digest name, hex digest)``, or ``None``
    when the head could not be read (:func:`decode_object` then checks, and
    reports, as usual). Pieces are memoryviews into the final buffer: none is
    copied.
    """

    def __init__(self) -> None:
        self._seen: list[memoryview] = []  # pieces fed before the head was complete
        self._seen_bytes = 0
        self._digest: str | None = None
        self._queue: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._hasher: Any = None
        self._failed = False
        self._error: BaseException | None = None

    def feed(self, piece: memoryview) -> None:
        """Take the next piece of the stored object."""
        if self._failed:
            return
        if self._thread is not None:
            self._queue.put(piece)
            return
        if self._hasher is not None:
            self._hasher.update(piece)  # a small payload: hashed here, a thread would cost more
            return
        self._seen.append(piece)
        self._seen_bytes += piece.nbytes
        if self._seen_bytes < HEAD.size:
            return
        collected = bytearray()
        for seen in self._seen:
            collected += seen[:_STREAMED_HEAD_LIMIT - len(collected)]
        head = bytes(collected)
        magic, length = HEAD.unpack_from(head)
        if magic != MAGIC or HEAD.size + length > _STREAMED_HEAD_LIMIT:
            self._failed = True  # not an object, or a head too large to follow: decode_object says what it is
            return
        if HEAD.size + length > self._seen_bytes:
            return  # the head goes on in the next piece
        try:
            meta = json.loads(head[HEAD.size:HEAD.size + length])
            digest = str(meta.get("digest", "sha256"))
            self._hasher = _hasher(digest, int(meta.get("size", 0)))
        except (ValueError, TypeError, AttributeError, InvalidArgumentError):
            self._failed = True
            return
        self._digest = digest
        if int(meta.get("size", 0)) >= _THREADED_HASH_BYTES:
            self._thread = threading.Thread(target=self._hash_pieces, name="mummi-io-digest", daemon=True)
            self._thread.start()
        skip = HEAD.size + length
        seen_pieces, self._seen = self._seen, []
        for seen in seen_pieces:
            if skip < seen.nbytes:
                self.feed(seen[skip:])
            skip = max(0, skip - seen.nbytes)

    def _hash_pieces(self) -> None:
        try:
            while (piece := self._queue.get()) is not None:
                self._hasher.update(piece)
        except BaseException as exc:  # handed to the reader in result()
            self._error = exc
            while self._queue.get() is not None:
                pass

    def close(self) -> None:
        """Stop the worker (after a failed read too); idempotent."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def result(self) -> tuple[str, str] | None:
        """``(digest name, hex digest)`` of the payload fed, or ``None`` if it could not be followed."""
        self.close()
        if self._error is not None:
            raise self._error
        if self._failed or self._digest is None:
            return None
        return self._digest, self._hasher.hexdigest()


def decode_object(
    blob: bytes | bytearray | memoryview, where: str, env: str = "auto", allow_pickle: bool = False, verify: bool = True,
    streamed: tuple[str, str] | None = None,
) -> Any:
    """Check and deserialize a stored object (the inverse of :func:`encode_object`).

    ``streamed`` is a :class:`StreamingDigest`'s result for ``blob``: the
    digest is then not computed again.
    """
    view = memoryview(blob)
    meta, offset = decode_head(view, where)
    payload = view[offset:]
    digest = meta.get("digest", "sha256")
    if verify:
        if streamed is not None and streamed[0] == digest:
            computed = streamed[1]
        else:
            hasher = _hasher(digest, payload.nbytes)
            hasher.update(payload)
            computed = hasher.hexdigest()
        if computed != meta.get(digest):
            raise IntegrityError(f"{where} fails its {digest} check: the stored bytes were changed or damaged")
    serializer = serializer_named(meta.get("serializer", ""))
    if serializer.unsafe and not allow_pickle:
        raise PickleRefusedError(
            f"{where} was stored with the {serializer.name!r} serializer, and loading it runs code from the "
            "data; if you trust it, pass allow_pickle=True"
        )
    check_environment(meta, env, serializer.unsafe, where)
    return serializer.load(payload)
