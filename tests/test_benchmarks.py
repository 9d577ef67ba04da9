"""The quick benchmark runs end to end (figures are not asserted: timing lives in benchmarks/)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.timeout(1200)  # it takes about 4 minutes on 2 cores: a slow machine has 5x that
def test_quick_benchmark_writes_every_section(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=1150,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert progress[0].startswith("[1/13] small values") and progress[-1].startswith("[13/13] coordination")
    data = json.loads((tmp_path / "results.json").read_text())
    sections = data["sections"]
    assert set(sections) >= {
        "small values", "npz arrays", "objects", "feedback loop", "namespace size", "concurrent writers", "MPI ranks",
        "taridx targets", "redis targets", "coordination", "peers",
    }
    backends = {row["backend"] for row in sections["namespace size"]}
    assert backends == {"simple", "taridx", "redis"}
    ratios = [row["ratio to baseline"] for row in sections["small values"]]
    assert len(ratios) == 6 and all(isinstance(r, float) and r > 0 for r in ratios)
    assert (tmp_path / "namespace_size.png").stat().st_size > 0
    assert (tmp_path / "ratios.png").stat().st_size > 0
    assert (tmp_path / "peers.png").stat().st_size > 0
    def contestants(workload: str) -> set[str]:
        return {row["contestant"] for row in sections["peers"] if row["workload"].startswith(workload)}

    with_zarr = importlib.util.find_spec("zarr") is not None  # zarr 3 needs Python 3.11
    assert contestants("write 2,000 x 1024 B") == {"taridx", "sqlite3", "lmdb", "diskcache"} | (
        {"zarr LocalStore"} if with_zarr else set())
    assert contestants("save one") >= {"np.save / np.load", "h5py"} | (
        {"zarr v3 LocalStore (default codecs)"} if with_zarr else set())
    redis_rows = {row["workload"] for row in sections["redis targets"]}
    assert {"redis-py EXISTS per call (baseline)", "redis load_files, batches of 100",
            "3 nodes: redis load_files, one call"} <= redis_rows
    if with_zarr:
        zarr_rows = {row["workload"].split(": ")[-1] for row in sections["zarr store"]}
        assert zarr_rows == {"zarr LocalStore (baseline)", "MummiStore on taridx", "raw redis-py store (baseline)",
                             "MummiStore on redis"}
    assert "### feedback loop" in (tmp_path / "results.md").read_text()
    waits = {row["wait"]: row for row in sections["coordination"]}
    assert set(waits) == {"redis", "inotify", "backoff", "seed"}
    assert all(isinstance(row["fs calls/s while waiting"], float) for row in waits.values())


def test_the_benchmarks_need_nothing_from_the_test_extra() -> None:
    """`pip install -e ".[bench]"` has no pytest: the benchmarks' imports must not need it."""
    program = (
        "import sys; sys.modules['pytest'] = None; sys.modules['hypothesis'] = None; "  # as if not installed
        f"sys.path.insert(0, {str(BENCHMARKS)!r}); import run, bench_coordination, bench_ecosystem, bench_peers, bench_redis, bench_taridx; "
        "import mummi_io.backends.redis.local_servers; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
