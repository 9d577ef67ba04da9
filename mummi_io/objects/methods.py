"""``io.save_object``, ``io.load_object``, ``io.object_info`` and ``io.group``: typed objects as methods.

:class:`ObjectMethods` is mixed into :class:`mummi_io.IO` (in
:mod:`mummi_io.registry`) on top of the facade; it only calls the facade's
public methods, through :mod:`.access`.
"""

from __future__ import annotations

from typing import Any

from ..facade import Facade
from . import access
from .store import DEFAULT_DIGEST
from .group import Group


class ObjectMethods(Facade):
    """Typed objects with integrity checks and environment metadata, and hierarchical groups."""

    def save_object(
        self, namespace: str, key: str, obj: Any, serializer: str | None = None, allow_pickle: bool = False,
        digest: str = DEFAULT_DIGEST,
    ) -> dict[str, Any]:
        """Store any object with the serializer its type calls for; return its metadata.

        See :mod:`mummi_io.objects` for the serializers and the metadata.
        ``digest`` is ``"blake3"`` (the default: cryptographic, and on
        every core for large payloads), ``"sha256"`` (what MLIO records) or
        ``"xxh3_128"`` (non-cryptographic; needs the xxhash package).

        Raises
        ------
        PickleRefusedError
            If only pickle could store it and ``allow_pickle`` is false.
        """
        return access.save_object(self, namespace, key, obj, serializer, allow_pickle, digest)

    def load_object(
        self, namespace: str, key: str, env: str = "auto", allow_pickle: bool = False, verify: bool = True
    ) -> Any:
        """Load an object stored by ``save_object``, after checking its digest and environment.

        ``env`` is the policy for package versions that differ from when it was
        written: ``"ignore"``, ``"warn"``, ``"raise"``, or ``"auto"`` (raise for
        pickle-based serializers, warn otherwise).

        Raises
        ------
        KeyNotFoundError
            If ``key`` does not exist.
        IntegrityError
            If the stored bytes fail their digest (whichever was recorded: blake3, sha256 or xxh3_128).
        EnvironmentMismatchError
            Listing each differing package, under the ``raise`` policy.
        PickleRefusedError
            If it was pickled and ``allow_pickle`` is false.
        """
        return access.load_object(self, namespace, key, env, allow_pickle, verify)

    def object_info(self, namespace: str, key: str) -> dict[str, Any]:
        """The metadata of a stored object, read without loading (or trusting) the object."""
        return access.object_info(self, namespace, key)

    def group(self, namespace: str) -> Group:
        """A dict-like view of ``namespace`` holding objects and nested groups (lazy: listing loads nothing)."""
        return Group(self, namespace)
