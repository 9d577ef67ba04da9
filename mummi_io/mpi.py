"""MPI collectives over any backend: aggregated writes and scattered reads.

Thousands of ranks each writing a few small files is the metadata storm that
parallel file systems handle worst. ``aggregated_save`` funnels the ranks'
key/values to a few aggregator ranks (one per ``group_size`` ranks), which
write them in large batches; ``collective_load`` lists once and scatters the
keys so each rank loads its share. Both are collective: every rank of the
communicator must call them, and a failure on any rank raises on every rank,
so no rank believes its data stored when it was not.

Needs ``mpi4py`` (``pip install "mummi_io[mpi]"``, which brings MPICH's wheel).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .core.errors import CollectiveError, InvalidArgumentError, MummiIOError  # CollectiveError: importable from here too
from .core.keys import pair_keys_values
from .registry import IO

if TYPE_CHECKING:
    from mpi4py import MPI

#: Ranks per aggregator by default.
GROUP_SIZE = 8


def _raise_if_any(comm: MPI.Comm, error: str | None) -> None:
    errors = comm.allgather(error)
    failed = [f"rank {rank}: {text}" for rank, text in enumerate(errors) if text is not None]
    if failed:
        raise CollectiveError("; ".join(failed))


def aggregated_save(
    io: IO, comm: MPI.Comm, namespace: str, keys: Sequence[str], values: Sequence[Any], group_size: int = GROUP_SIZE
) -> int:
    """Collectively store every rank's ``keys``/``values``, written by one aggregator per group.

    Ranks ``0..group_size-1`` form the first group, and so on; the first rank
    of each group gathers the group's items and saves them in one
    ``save_files`` call. Returns the number of keys this rank wrote (0 on
    non-aggregators). When it returns on any rank, every rank's data is stored.

    Raises
    ------
    CollectiveError
        On every rank, if any rank passed invalid keys or values, or a write failed.
    """
    if group_size < 1:
        raise InvalidArgumentError("group_size must be at least 1")
    error = None
    items: list[tuple[str, Any]] = []
    try:
        items = [(key, bytes(value)) for key, value in pair_keys_values(list(keys), list(values))]
    except MummiIOError as exc:
        error = str(exc)
    _raise_if_any(comm, error)
    rank = comm.Get_rank()
    group = comm.Split(color=rank // group_size, key=rank)
    try:
        gathered = group.gather(items, root=0)
    finally:
        is_aggregator = group.Get_rank() == 0
        group.Free()
    written = 0
    if is_aggregator:
        batch = [item for part in gathered or [] for item in part]
        try:
            io.save_files(namespace, [k for k, _ in batch], [v for _, v in batch])
            written = len(batch)
        except MummiIOError as exc:
            error = str(exc)
    _raise_if_any(comm, error)
    return written


def collective_load(
    io: IO, comm: MPI.Comm, namespace: str, keys: Sequence[str] | None = None, pattern: str = "*", root: int = 0
) -> tuple[list[str], list[bytes]]:
    """Collectively load ``keys`` (default: those matching ``pattern``), each rank a contiguous share.

    The root lists (or takes) the keys once and scatters them; each rank loads
    its share and gets ``(its keys, their values)``.

    Raises
    ------
    CollectiveError
        On every rank, if listing or any rank's load failed (a missing key included).
    """
    size = comm.Get_size()
    shares: list[list[str]] | None = None
    error = None
    if comm.Get_rank() == root:
        try:
            everything = list(keys) if keys is not None else io.list_keys(namespace, pattern)
            per_rank, extra = divmod(len(everything), size)
            shares, start = [], 0
            for rank in range(size):
                stop = start + per_rank + (1 if rank < extra else 0)
                shares.append(everything[start:stop])
                start = stop
        except MummiIOError as exc:
            error = str(exc)
    _raise_if_any(comm, error)
    mine: list[str] = comm.scatter(shares, root=root)
    values: list[bytes] = []
    try:
        values = io.load_files(namespace, mine) if mine else []
    except MummiIOError as exc:
        error = str(exc)
    _raise_if_any(comm, error)
    return mine, values
