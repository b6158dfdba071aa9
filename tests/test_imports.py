"""The dependency direction of ``shared/ARCHITECTURE.md``: CLI -> jobs -> components, ``export`` at the bottom.

Every module of the ``toolkit`` and ``export`` packages is parsed (ast) for the project modules it imports,
module level and inside functions alike, and imported for real (importlib). The graph must have no cycle, no
library module may import a CLI module (``*.cli``: only CLI modules import each other, e.g. export runs
parity), ``export`` never imports ``toolkit``, neither ``export`` nor ``toolkit`` imports ``experiments`` (the
research recipes; the ``veil`` registry names their commands by string, and ``import toolkit`` loads none of
them), and a project import sits at the top of the file (a local
import is only for a heavy optional runtime, which no project module is, except the one module that wraps
an optional extra: the Ray Serve deployment).
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit import cli as toolkit_cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "export", "experiments")
# A measurement harness: each fresh worker imports only the runtime it measures, inside the functions that
# take the memory baseline around it (toolkit/bench/worker.py explains why).
LOCAL_IMPORTS_ALLOWED = {"toolkit.bench.worker"}
# One import, not a whole module: `veil serve --engine ray` imports the Ray Serve deployment only when asked,
# because Ray is an optional extra (`pip install '.[ray]'`, ~500 MB) that ray_app imports at its top.
LOCAL_IMPORT_EDGES_ALLOWED = {("toolkit.serve.cli", "toolkit.serve.ray_app")}


def project_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = project_modules()


def imported_modules(path: Path) -> list[tuple[str, bool, int]]:
    """(project module imported, whether the import is inside a function, line) for every import."""
    tree = ast.parse(path.read_text())
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from toolkit.bench import report` imports the module toolkit.bench.report
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                while name not in MODULES and "." in name:
                    name = name.rsplit(".", 1)[0]
                found.append((name, id(node) in local, node.lineno))
    return found


GRAPH = {mod: imported_modules(path) for mod, path in MODULES.items()}


# A script that drives `veil` commands in-process, as a user would type them (a command line of its own).
DRIVERS = {"experiments.run_bench"}


def is_cli(module: str) -> bool:
    return module.endswith(".cli") or module in DRIVERS


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walker_sees_the_modules_and_their_imports():
    assert {"toolkit.cli", "toolkit.exporting.manifest", "export.executorch_backend"} <= set(MODULES)
    assert ("toolkit.exporting.manifest", False) in {(m, local) for m, local, _ in GRAPH["toolkit.parity.check"]}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    graph = {mod: {m for m, _, _ in edges if m != mod} for mod, edges in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_library_modules_never_import_a_cli_module():
    bad = [f"{mod} imports {m} (line {line})" for mod, edges in GRAPH.items() if not is_cli(mod)
           for m, _, line in edges if is_cli(m)]
    assert not bad, bad


def test_export_never_imports_toolkit():
    bad = [f"{mod} imports {m}" for mod, edges in GRAPH.items() if mod.split(".")[0] == "export"
           for m, _, _ in edges if m.split(".")[0] == "toolkit"]
    assert not bad, bad


def test_project_imports_are_at_the_top_of_the_file():
    bad = [f"{mod}:{line} imports {m} inside a function" for mod, edges in GRAPH.items()
           if mod not in LOCAL_IMPORTS_ALLOWED for m, local, line in edges
           if local and (mod, m) not in LOCAL_IMPORT_EDGES_ALLOWED]
    assert not bad, bad


def test_the_product_never_imports_the_lab():
    bad = [f"{mod} imports {m} (line {line})" for mod, edges in GRAPH.items() if mod.split(".")[0] != "experiments"
           for m, _, line in edges if m.split(".")[0] == "experiments"]
    assert not bad, bad


def test_importing_the_toolkit_loads_nothing_of_the_lab():
    """In a fresh interpreter: ``import toolkit`` and the command registry load no module of ``experiments``."""
    code = ("import sys, toolkit, toolkit.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'experiments'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    assert set(toolkit_cli.COMMANDS.values()) & {"experiments.cli"}  # the registry does name the lab's commands


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_tests_read_one_corpus_the_same_on_every_machine():
    """Every test reads conftest's `corpus` (built with a fixed seed); none switches to data/corpus when a developer
    has built it, and no test module defines a corpus fixture of its own."""
    bad = []
    for path in sorted(p for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_imports.py"):
        text = path.read_text()
        if "DEFAULT_CORPUS" in text or '"data" / "corpus"' in text or "def corpus(" in text:
            bad.append(path.name)
    assert not bad, bad
