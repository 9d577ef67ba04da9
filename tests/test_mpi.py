"""MPI collectives under a real mpiexec (MPICH from the mpich wheel), 2 and 4 ranks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mpi4py", reason="pip install 'mummi_io[mpi]'")

PROGRAM = Path(__file__).parent / "mpi_programs" / "collectives.py"


def mpiexec() -> str:
    beside_python = Path(sys.executable).parent / "mpiexec"
    found = str(beside_python) if beside_python.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found: pip install mpich (the test extra installs it)")
    return found


def run(ranks: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [mpiexec(), "-n", str(ranks), sys.executable, str(PROGRAM), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("backend", ["simple", "taridx"])
def test_aggregated_write_and_collective_read(tmp_path: Path, ranks: int, backend: str) -> None:
    result = run(ranks, backend, str(tmp_path / "ns"), "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK {40 * ranks}" in result.stdout


@pytest.mark.parametrize("ranks", [2, 4])
def test_on_redis(tmp_path: Path, redis_single, ranks: int) -> None:
    server = redis_single[0]
    options = json.dumps({"nodes": [server.name], "password": server.password})
    result = run(ranks, "redis", f"mpi-{tmp_path.name}", "4", options)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK {40 * ranks}" in result.stdout
