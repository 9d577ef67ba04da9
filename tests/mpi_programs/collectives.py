"""Run under mpiexec by tests/test_mpi.py: aggregated writes and a scattered read.

    mpiexec -n N python collectives.py BACKEND NAMESPACE [GROUP_SIZE] [OPTIONS_JSON]

Rank 0 prints "OK <keys>" when every check passed on every rank.
"""

from __future__ import annotations

import json
import sys

from mpi4py import MPI

import mummi_io
from mummi_io.mpi import CollectiveError, aggregated_save, collective_load

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
backend, namespace = sys.argv[1], sys.argv[2]
group_size = int(sys.argv[3]) if len(sys.argv) > 3 else 2
options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
io = mummi_io.get_io(backend, **options)

per_rank = 40
keys = [f"rank{rank:03d}-{i:03d}.npz" for i in range(per_rank)]
values = [f"{rank}:{i}".encode() * (1 + i) for i in range(per_rank)]
written = aggregated_save(io, comm, namespace, keys, values, group_size=group_size)
assert (written > 0) == (rank % group_size == 0), (rank, written)
assert comm.allreduce(written) == per_rank * size

mine, loaded = collective_load(io, comm, namespace, pattern="rank*.npz")
for key, value in zip(mine, loaded):
    owner, index = int(key[4:7]), int(key[8:11])
    assert value == f"{owner}:{index}".encode() * (1 + index), key
assert comm.allreduce(len(mine)) == per_rank * size
assert abs(len(mine) - per_rank) <= 1 or size == 1

# A bad key on one rank fails the collective on every rank, and nothing is written.
bad_keys = ["../escape"] if rank == size - 1 else [f"fine-{rank}"]
try:
    aggregated_save(io, comm, namespace, bad_keys, [b"x"], group_size=group_size)
    raise SystemExit("expected a CollectiveError")
except CollectiveError as exc:
    assert f"rank {size - 1}" in str(exc), str(exc)
assert not io.file_exists(namespace, f"fine-{rank}")

# A missing key fails the collective read on every rank.
try:
    collective_load(io, comm, namespace, keys=keys + ["missing-key"])
    raise SystemExit("expected a CollectiveError")
except CollectiveError as exc:
    assert "missing-key" in str(exc)

comm.Barrier()
if rank == 0:
    print(f"OK {per_rank * size}")
