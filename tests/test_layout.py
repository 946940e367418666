"""The package's shape (docs/architecture.md, "Wings"): the import-linter contract in
pyproject.toml holds and catches a wrong-way import, no import circle anywhere (imports inside
functions count), few top-level modules, no oversized module, no build artefact in git, and the
ruff configuration passes."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "medasr"
MAX_TOP_LEVEL = 8  # modules beside the wings (__init__ and __main__ not counted)
MAX_LINES = 550


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert path, f"{name} is not installed: pip install -e '.[test]'"
    return path


def _lint_imports(package_root: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run([_tool("lint-imports"), "--config", str(config), "--no-cache"], capture_output=True,
                          text=True, env=env, cwd=package_root, check=False)  # fmt: skip


def test_the_layered_contract_holds():
    proc = _lint_imports(PACKAGE.parent, REPO / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(("module", "upward"), [
    ("pipeline/engine.py", "from medasr.cli import main"),  # the library must never import the CLI
    ("audio/vad.py", "from medasr.pipeline import scheduler"),  # a lower wing importing a higher one
    ("pipeline/segmenter.py", "from medasr.synth import sentences"),  # synthesis off the transcription path
])  # fmt: skip
def test_the_contract_catches_a_wrong_way_import_inside_a_function(tmp_path, module, upward):
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "medasr", ignore=shutil.ignore_patterns("assets", "__pycache__"))
    target = copy / "medasr" / module
    target.write_text(target.read_text() + f"\n\ndef _hidden():\n    {upward}\n")
    proc = _lint_imports(copy, REPO / "pyproject.toml")
    assert proc.returncode != 0, proc.stdout
    assert "BROKEN" in proc.stdout


def _module_graph() -> dict[str, set[str]]:
    """medasr module -> the medasr modules it imports anywhere in its body."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}
        graph[name] = {m for t in targets if t.startswith("medasr") and (m := known(t)) and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_anywhere():
    graph = _module_graph()
    assert "medasr.pipeline.engine" in graph and graph["medasr.pipeline.decoder"]  # the walk sees the package
    assert _cycles(graph) == []


def test_the_cycle_check_sees_imports_inside_functions():
    graph = _module_graph()
    assert "medasr.transcribe" in graph["medasr.scoring.evaluate"]  # imported inside evaluate() only
    graph["medasr.model.checkpoint"] = graph["medasr.model.checkpoint"] | {"medasr.model.convert"}  # as before the split
    assert _cycles(graph) == [["medasr.model.aligner", "medasr.model.checkpoint", "medasr.model.convert"]]


def test_few_top_level_modules_and_none_oversized():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= MAX_TOP_LEVEL, top
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_build_artefact_is_tracked():
    git = shutil.which("git")
    assert git, "git is needed to list the tracked files"
    tracked = subprocess.run([git, "ls-files", "*.whl", "*.tar.gz", "*.egg"], capture_output=True, text=True,
                             cwd=REPO, check=True).stdout.split()  # fmt: skip
    assert tracked == []


def test_ruff_passes():
    proc = subprocess.run([_tool("ruff"), "check", "src", "tests", "benchmarks", "scripts"], capture_output=True,
                          text=True, cwd=REPO, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
