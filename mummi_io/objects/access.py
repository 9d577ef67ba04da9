"""Typed objects over any facade: save, load and describe, through the facade's public API only.

These functions are the one implementation; :class:`~mummi_io.objects.ObjectMethods`
offers them as ``io.save_object`` and friends, and groups and packs call them
with whatever facade they hold.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import IntegrityError
from ..facade import Facade
from .store import DEFAULT_DIGEST, INFO_PREFIX, StreamingDigest, decode_head, decode_object, encode_object


def save_object(
    io: Facade, namespace: str, key: str, obj: Any, serializer: str | None = None, allow_pickle: bool = False,
    digest: str = DEFAULT_DIGEST,
) -> dict[str, Any]:
    """Store ``obj`` under ``key`` with the serializer its type calls for; return its metadata."""
    value, meta = encode_object(obj, serializer, allow_pickle, digest)
    io.write_value(namespace, key, value)
    return meta


def load_object(
    io: Facade, namespace: str, key: str, env: str = "auto", allow_pickle: bool = False, verify: bool = True
) -> Any:
    """Load an object stored by :func:`save_object`, after checking its digest and environment."""
    # The object's own digest is the stronger check: the backend may skip its CRC when we verify,
    # and the digest is computed while the object is read.
    where = f"object {key!r} in {namespace!r}"
    if not verify:
        return decode_object(io.load_buffer(namespace, key, backend_check=True), where, env, allow_pickle, False)
    digest = StreamingDigest()
    try:
        blob = io.load_buffer(namespace, key, backend_check=False, consume=digest.feed)
        streamed = digest.result()
    finally:
        digest.close()
    return decode_object(blob, where, env, allow_pickle, verify, streamed)


def object_info(io: Facade, namespace: str, key: str) -> dict[str, Any]:
    """The metadata of a stored object, read without loading (or trusting) the object."""
    head = io.load_head(namespace, key, INFO_PREFIX)
    try:
        return decode_head(head, f"object {key!r} in {namespace!r}")[0]
    except IntegrityError:
        if len(head) < INFO_PREFIX:
            raise
        return decode_head(io.load_files(namespace, key), f"object {key!r} in {namespace!r}")[0]
