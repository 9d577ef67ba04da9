"""Every Python block of docs/ecosystem.md runs, in order, from a scratch directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "ecosystem.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_document_has_examples() -> None:
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_each_example_runs(number: int, tmp_path, monkeypatch) -> None:
    pytest.importorskip("zarr", minversion="3", reason="pip install 'mummi_io[zarr]' (Python >= 3.11)")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[number], f"{DOC.name}, example {number + 1}", "exec"), {"__name__": "__doc_example__"})
