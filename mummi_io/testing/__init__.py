"""Test support shipped with the package: the contract suite every backend must pass (needs pytest).

Real redis-server processes for tests and benchmarks are started by
:mod:`mummi_io.backends.redis.local_servers`, which needs no test dependency.
"""

from .contract import BackendContract

__all__ = ["BackendContract"]
