"""The MuMMI I/O API, written once over the backend contract.

- :mod:`.api`: :class:`Facade`, every method of the API over one backend
  (validation, single-or-list handling, batching, npz, signals, coordination).
- :mod:`.npz`, :mod:`.checkpoint`, :mod:`.signals`: the formats and file-level
  helpers the API uses, also usable on their own.

The facade knows the backend contract, never a backend, and nothing of the
layers above it (typed objects, persist, sync): checked by import-linter.
"""

from .api import RAISE, Facade

__all__ = ["RAISE", "Facade"]
