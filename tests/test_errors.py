"""One error model: every OS error is a StorageError that is also the matching built-in, never False/[].

Permission checks need a process the permissions apply to: when the tests
run as root, the calls run in a child started by ``setpriv`` without the
capabilities that let root ignore file permissions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mummi_io import get_io

_PROBE = textwrap.dedent("""
    import json, sys
    import mummi_io
    kind, namespace = sys.argv[1], sys.argv[2]
    io = mummi_io.get_io(kind)
    calls = {
        "namespace_exists": lambda: io.namespace_exists(namespace),
        "file_exists": lambda: io.file_exists(namespace, "k"),
        "list_keys": lambda: io.list_keys(namespace),
        "load_files": lambda: io.load_files(namespace, "k"),
        "save_files": lambda: io.save_files(namespace, "new", b"v"),
    }
    out = {}
    for name, call in calls.items():
        try:
            out[name] = {"returned": repr(call())}
        except Exception as exc:
            out[name] = {"raised": [c.__name__ for c in type(exc).__mro__], "message": str(exc)}
    print(json.dumps(out))
""")


def _unprivileged(*args: str) -> dict:
    """Run the probe in a process that file permissions apply to; return what each call did."""
    command = [sys.executable, "-c", _PROBE, *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("running as root needs setpriv (util-linux) to drop the capabilities that bypass permissions")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", ["simple", "taridx"])
def test_a_namespace_we_may_not_read_raises_instead_of_looking_empty(tmp_path: Path, kind: str) -> None:
    namespace = str(tmp_path / "locked" / "ns")
    with get_io(kind) as io:
        io.save_files(namespace, "k", b"v")
    os.chmod(tmp_path / "locked", 0o000)
    try:
        found = _unprivileged(kind, namespace)
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    for name, outcome in found.items():
        assert "raised" in outcome, f"{name} answered {outcome} for a namespace it may not look at"
        assert {"StoragePermissionError", "StorageError", "PermissionError", "MummiIOError"} <= set(outcome["raised"])
        assert "locked" in outcome["message"] and "ermission" in outcome["message"]


def test_an_unreadable_tar_raises_permission_error(tmp_path: Path) -> None:
    namespace = str(tmp_path / "run.tar")
    with get_io("taridx") as io:
        io.save_files(namespace, "k", b"v")
    os.chmod(namespace, 0o000)
    os.chmod(namespace + ".idx", 0o000)
    found = _unprivileged("taridx", namespace)
    assert "StoragePermissionError" in found["load_files"]["raised"]
    assert "StoragePermissionError" in found["list_keys"]["raised"]


def test_an_unlistable_simple_directory_raises(tmp_path: Path) -> None:
    namespace = tmp_path / "ns"
    with get_io("simple") as io:
        io.save_files(str(namespace), "k", b"v")
    os.chmod(namespace, 0o300)  # may enter and write, may not list
    try:
        found = _unprivileged("simple", str(namespace))
    finally:
        os.chmod(namespace, 0o755)
    assert "StoragePermissionError" in found["list_keys"]["raised"]
    assert found["file_exists"] == {"returned": "True"}  # a stat of the key itself is allowed
