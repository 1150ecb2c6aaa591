"""The import rules of the layout: hsscp is the library, workers the deployment built on it.

- ``workers`` imports ``hsscp``; ``hsscp`` reaches ``workers`` only lazily, from the two
  entry points that start the multiprocess server.
- No import cycles among the modules (imports made only for type checking aside).
- The sans-IO core loads neither pydicom nor asyncio nor anything of ``workers``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hsscp", "workers")

# (module, function) pairs of hsscp allowed to import workers, lazily.
LAZY_ENTRY_POINTS = {("hsscp.server", "make_server"), ("hsscp.cli", "_run_storescp")}

SANS_IO = (
    "hsscp.engine",
    "hsscp.pdu",
    "hsscp.items",
    "hsscp.reader",
    "hsscp.fsm",
    "hsscp.dimse",
    "hsscp.command_set",
    "hsscp.dimse_status",
    "hsscp.dataset_walk",
    "hsscp.completion",
    "hsscp.indications",
    "hsscp.errors",
    "hsscp.proxy_protocol",
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """The first-party modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert not node.level, f"{module}: relative import (the project imports absolutely)"
        base = node.module or ""
        names = [base]
        # ``from package import submodule`` loads the submodule too.
        names += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
    return [name for name in names if name.split(".")[0] in PACKAGES and name in MODULES]


def _imports(module: str) -> tuple[set[str], list[tuple[str, str]]]:
    """(modules imported at import time, [(function, module) imported inside functions])."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    eager: set[str] = set()
    lazy: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in _targets(child, module):
                    if function is None:
                        eager.add(target)
                    else:
                        lazy.append((function, target))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, function or child.name)
            else:
                visit(child, function)

    visit(tree, None)
    return eager, lazy


GRAPH = {module: _imports(module) for module in MODULES}


def test_the_library_imports_workers_only_from_its_two_entry_points() -> None:
    eager = sorted(
        (module, target)
        for module, (targets, _) in GRAPH.items()
        if module.startswith("hsscp")
        for target in targets
        if target.startswith("workers")
    )
    assert eager == [], "hsscp modules importing workers at import time"
    lazy = {
        (module, function)
        for module, (_, imports) in GRAPH.items()
        if module.startswith("hsscp")
        for function, target in imports
        if target.startswith("workers")
    }
    assert lazy <= LAZY_ENTRY_POINTS, f"lazy imports of workers outside the entry points: {lazy - LAZY_ENTRY_POINTS}"


def test_there_are_no_import_cycles() -> None:
    edges = {module: {t for t in targets if t != module} for module, (targets, _) in GRAPH.items()}
    # A package's __init__ is loaded before any of its modules: that is no cycle.
    for module in edges:
        edges[module] -= {p for p in PACKAGES if module.startswith(p + ".")}
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def walk(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append([*visiting[visiting.index(module) :], module])
            return
        visiting.append(module)
        for target in sorted(edges[module]):
            walk(target)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        walk(module)
    assert cycles == []


def test_the_rules_see_real_imports() -> None:
    """The checks above would pass vacuously on a parser that found nothing."""
    eager, lazy = GRAPH["hsscp.engine"]
    assert {"hsscp.fsm", "hsscp.dimse", "hsscp.reader"} <= eager
    assert any(target == "workers.multiprocess_server" for _, target in GRAPH["hsscp.server"][1])
    assert any(target.startswith("hsscp") for target in GRAPH["workers.worker_main"][0])


@pytest.mark.parametrize("module", SANS_IO)
def test_the_sans_io_core_loads_no_pydicom_asyncio_or_workers(module: str) -> None:
    code = (
        f"import sys; import {module}; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydicom', 'asyncio', 'uvloop', 'workers')); "
        "print(' '.join(heavy))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert loaded == []
