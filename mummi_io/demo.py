"""A small MuMMI-style campaign: workers write npz results and signals, a manager archives them.

It exercises the main path of the API end to end on any backend: parallel
``save_npz`` from worker processes, ``send_signal``/``wait_signal``,
``list_keys`` by pattern, bulk ``load_npz``, ``move_keys`` into an archive
namespace, and a checkpoint.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import dataclass

import numpy as np

from .registry import IO

LOGGER = logging.getLogger(__name__)


@dataclass
class DemoSummary:
    """What the demo did, for the command line to report."""

    backend: str
    root: str
    workers: int
    results: int
    archived: int
    mean_rdf: float
    seconds: float


def _worker(io: IO, results_ns: str, signal_dir: str, rank: int, count: int) -> None:
    """One simulation: write ``count`` npz results, then signal that it is done."""
    rng = np.random.default_rng(rank)
    for index in range(count):
        arrays = {
            "rdf": rng.random(200),
            "positions": rng.random((100, 3)).astype(np.float32),
            "step": np.array(index),
        }
        io.save_npz(results_ns, f"sim-{rank:03d}-{index:04d}", arrays)
    io.send_signal(signal_dir, f"worker-{rank:03d}.done")


def run_demo(io: IO, root: str, workers: int = 4, results_per_worker: int = 25) -> DemoSummary:
    """Run the campaign under ``root`` with ``workers`` processes and return a summary.

    Raises
    ------
    SignalTimeoutError
        If a worker does not finish within two minutes.
    """
    started = time.perf_counter()
    results_ns = os.path.join(root, "results")
    archive_ns = os.path.join(root, "archive")
    signal_dir = os.path.join(root, "signals")
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(io, results_ns, signal_dir, rank, results_per_worker))
        for rank in range(workers)
    ]
    for process in processes:
        process.start()
    for rank in range(workers):
        io.wait_signal(signal_dir, f"worker-{rank:03d}.done", timeout=120)
    for process in processes:
        process.join()
    keys = io.list_keys(results_ns, "sim-*.npz")
    results = io.load_npz(results_ns, keys)
    mean_rdf = float(np.mean([result["rdf"].mean() for result in results])) if results else 0.0
    io.move_keys(results_ns, keys, dest_namespace=archive_ns)
    archived = len(io.list_keys(archive_ns, "sim-*.npz"))
    io.save_checkpoint(os.path.join(root, "manager.chk"), {"archived": archived, "mean_rdf": mean_rdf})
    for rank in range(workers):
        io.clear_signal(signal_dir, f"worker-{rank:03d}.done")
    LOGGER.info("demo archived %d results from %d workers", archived, workers)
    return DemoSummary(
        backend=io.get_type(),
        root=root,
        workers=workers,
        results=len(keys),
        archived=archived,
        mean_rdf=mean_rdf,
        seconds=time.perf_counter() - started,
    )
