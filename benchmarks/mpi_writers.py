"""Run under mpiexec by run.py: every rank writes PER_RANK 1 KiB values, directly or aggregated.

    mpiexec -n N python mpi_writers.py BACKEND NAMESPACE direct|aggregated PER_RANK OPTIONS_JSON

Rank 0 prints the wall time (seconds) of the write phase, barrier to barrier.
"""

from __future__ import annotations

import json
import sys
import time

from mpi4py import MPI

import mummi_io
from mummi_io.mpi import aggregated_save

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
kind, namespace, mode, per_rank = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
io = mummi_io.get_io(kind, **json.loads(sys.argv[5]))
keys = [f"r{rank:04d}-{i:06d}" for i in range(per_rank)]
values = [bytes([rank % 256]) * 1024] * per_rank

comm.Barrier()
started = time.perf_counter()
if mode == "aggregated":
    aggregated_save(io, comm, namespace, keys, values, group_size=comm.Get_size())
else:
    for start in range(0, per_rank, 10):  # the usual pattern: each rank saves as results come
        io.save_files(namespace, keys[start:start + 10], values[start:start + 10])
comm.Barrier()
if rank == 0:
    print(f"{time.perf_counter() - started:.6f}")
