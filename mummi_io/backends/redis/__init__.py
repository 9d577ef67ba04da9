"""The ``redis`` backend: namespaces sharded over independent Redis nodes or a Redis Cluster."""

from .backend import RedisBackend

__all__ = ["RedisBackend"]
