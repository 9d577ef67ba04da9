"""The ``taridx`` backend: one indexed, append-only POSIX tar file per namespace."""

from .backend import TarIndexBackend

__all__ = ["TarIndexBackend"]
