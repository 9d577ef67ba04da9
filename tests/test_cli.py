"""The mummi-io command, driven as a user would: a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mummi_io.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_demo_runs_a_campaign(tmp_path: Path) -> None:
    result = run("demo", "--workers", "2", "--results", "5", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "archived 10 results" in result.stdout
    assert len(list((tmp_path / "archive").glob("sim-*.npz"))) == 10
    assert list((tmp_path / "results").iterdir()) == []
    assert (tmp_path / "manager.chk").is_file()


def test_unknown_backend_exits_1_with_message(tmp_path: Path) -> None:
    result = run("demo", "--backend", "nosuch", "--dir", str(tmp_path))
    assert result.returncode == 1
    assert "unknown io kind 'nosuch'" in result.stderr


def test_help_and_version() -> None:
    assert "demo" in run("--help").stdout
    assert run("--version").stdout.startswith("mummi-io ")
    assert run("no-such-command").returncode == 2
