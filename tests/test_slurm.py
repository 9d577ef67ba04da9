"""The launch scripts under a real (single-node) Slurm: nodes start through srun steps of an allocation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slurm_cluster import INSTALL_HINT, missing_programs, start_slurm
from test_launch_scripts import SCRIPTS, free_base_port, running_servers

pytest.importorskip("redis")


@pytest.fixture(scope="module")
def slurm():
    if missing_programs():
        pytest.fail(f"{INSTALL_HINT}; missing: {', '.join(missing_programs())}")
    cluster = start_slurm()
    yield cluster
    cluster.stop()


def in_allocation(slurm, program: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a bash program inside ``salloc -N1`` (an interactive allocation, as a job script would)."""
    environment = {**slurm.environment, "MUMMI_IO_PYTHON": sys.executable}
    return subprocess.run(["salloc", "--nodes=1", "--time=10", "bash", "-c", program], capture_output=True,
                          text=True, timeout=timeout, env=environment)


def test_nodes_start_through_srun_serve_and_stop(slurm, tmp_path: Path) -> None:
    directory = tmp_path / "deploy"
    base = free_base_port(2)
    client = (
        "import mummi_io; io = mummi_io.get_io('redis'); "
        "io.save_files('campaign', ['a', 'b/c'], [b'1', b'2']); "
        "print(io.load_files('campaign', ['a', 'b/c']), len(io.backend.deployment.nodes))"
    )
    program = f"""
        set -e
        echo "job $SLURM_JOB_ID"
        bash {SCRIPTS / 'start_all_redis_nodes.sh'} 2 --bind 127.0.0.1 --port {base} --dir {directory}
        squeue --steps --noheader --jobs "$SLURM_JOB_ID" --format '%i %j'
        MUMMI_REDIS_DIR={directory} {sys.executable} -c "{client}"
        bash {SCRIPTS / 'stop_all_redis_nodes.sh'} --dir {directory}
        wait
        echo "all steps done"
    """
    result = in_allocation(slurm, program)
    assert result.returncode == 0, result.stdout + result.stderr + slurm.logs()
    lines = result.stdout.splitlines()
    job = lines[0].split()[1]
    steps = [line for line in lines if line.startswith(f"{job}.") and "start_redis_node.sh" in line]
    assert len(steps) == 2, result.stdout  # one srun step per node, running the node script
    assert "2 Redis node(s) ready (slurm)" in result.stderr
    assert "[b'1', b'2'] 2" in lines
    assert lines[-1] == "all steps done"
    assert (directory / f"launch-{slurm.node}-{base}.log").exists()  # srun's --output, named by the Slurm node
    assert running_servers(base, 2) == []
    assert [l for l in (directory / "registry").read_text().splitlines() if not l.startswith("#")] == []


def test_a_node_that_fails_under_srun_is_reported_and_the_others_stopped(slurm, tmp_path: Path) -> None:
    import socket

    directory = tmp_path / "deploy"
    base = free_base_port(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 1))
        squatter.listen()
        program = f"""
            bash {SCRIPTS / 'start_all_redis_nodes.sh'} 2 --bind 127.0.0.1 --port {base} --dir {directory}
            echo "start returned $?"
            squeue --steps --noheader --jobs "$SLURM_JOB_ID" --format '%i %j' | grep -c start_redis_node || true
        """
        result = in_allocation(slurm, program)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "start returned 1" in result.stdout
    assert f"Redis node 127.0.0.1:{base + 1} did not start" in result.stderr
    assert "Address already in use" in result.stderr
    assert result.stdout.splitlines()[-1] == "0"  # no node step left running
    assert running_servers(base, 2) == []
