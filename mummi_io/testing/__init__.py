"""Test support shipped with the package: the contract suite every backend must pass."""

from .contract import BackendContract

__all__ = ["BackendContract"]
