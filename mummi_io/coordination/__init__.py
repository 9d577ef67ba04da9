"""Coordination between jobs: signals, blocking waits, consume-once work queues, counters, barriers.

Get them from an ``IO``: ``io.send_signal``/``io.wait_signals``,
``io.queue(path, name)``, ``io.counter(path, name)``, ``io.barrier(path,
name, parties)``. Where they live is chosen in ``get_io(...,
coordination="files" | "backend")``; see ``docs/coordination.md``.
"""

from ..core.coordinator import Claim, Coordinator, Notice
from .api import Barrier, Counter, Lease, WorkQueue, wait_signals
from .files import FileCoordinator

__all__ = ["Barrier", "Claim", "Coordinator", "Counter", "FileCoordinator", "Lease", "Notice", "WorkQueue",
           "wait_signals"]
