"""The package type-checks (`mypy`) and its layers hold (import-linter), both configured in setup.cfg."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_mypy_finds_nothing(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "setup.cfg"), "--cache-dir", str(tmp_path / "cache"),
         str(REPO / "mummi_io")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_the_layers_hold() -> None:
    """The import-linter contracts in setup.cfg (the floor, backends below the facade, the CLI on top...)."""
    command = Path(sys.executable).with_name("lint-imports")  # import-linter's command, beside this Python
    result = subprocess.run([str(command), "--config", str(REPO / "setup.cfg")], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_exception_lives_in_errors_py() -> None:
    """One hierarchy, one module: a public exception class defined elsewhere is a finding. (Warnings are not
    errors; a private class such as simple's _SourceGone is control flow that never leaves its module.)"""
    import ast

    import mummi_io.core.errors as errors

    ours = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, BaseException)}
    elsewhere = []
    for path in sorted((REPO / "mummi_io").rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {getattr(base, "id", getattr(base, "attr", "")) for base in node.bases}
                if bases & (ours | {"Exception", "BaseException", "ValueError", "OSError", "KeyError"}):
                    elsewhere.append(f"{path.relative_to(REPO)}: {node.name}")
    assert elsewhere == []


def test_no_import_cycles() -> None:
    """No module imports, directly or through others, a module that imports it back (deferred imports included)."""
    import grimp

    graph = grimp.build_graph("mummi_io")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} <-> {imported}")
    assert cycles == []


def test_only_the_facade_touches_a_backend() -> None:
    """Above the facade, code asks the facade (``io.capability``, ``io.reindex``...), never ``io.backend``;
    outside the backends nothing tests a backend's type (``isinstance``/``hasattr`` on a backend)."""
    import ast

    found = []
    for path in sorted((REPO / "mummi_io").rglob("*.py")):
        part = path.relative_to(REPO / "mummi_io").parts[0]
        if part in ("backends", "facade", "core", "testing"):  # testing: the contract suite checks backends' flags
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "backend" \
                    and ast.unparse(node.value) not in ("args", "summary"):  # a CLI option, the demo's report: names
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: .backend")
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("isinstance", "hasattr") and node.args:
                if "backend" in ast.unparse(node.args[0]).lower():
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_objects_use_only_the_public_api() -> None:
    """Groups and packs are a layer above the facade: no reaching into io.backend or the facade's private names."""
    import ast

    found = []
    for path in sorted((REPO / "mummi_io" / "objects").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "io":
                if node.attr == "backend" or node.attr.startswith("_"):
                    found.append(f"{path.name}:{node.lineno}: io.{node.attr}")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "io":
                if node.attr == "backend" or node.attr.startswith("_"):
                    found.append(f"{path.name}:{node.lineno}: io.{node.attr}")
    assert found == []


def test_a_long_module_says_why_it_is_long() -> None:
    """Small modules with one job each: a module over 400 lines states, at its top, why it is one module."""
    import ast

    unexplained = []
    for path in sorted((REPO / "mummi_io").rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 400 and "Why one module" not in (ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert unexplained == []
