"""Test support shipped with the package: the contract suite every backend must pass.

``BackendContract`` needs pytest and is imported on first use, so that
:mod:`mummi_io.backends.redis.local_servers` (real redis-server processes, which the
benchmarks use too) works without the test dependencies.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BackendContract"]


def __getattr__(name: str) -> Any:
    if name == "BackendContract":
        from .contract import BackendContract

        return BackendContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
