"""The package's layering: every module imports downward, none in a circle.

The graph is read from the source (``ast``), with imports inside functions
counted too, so a circle cannot hide behind a lazy import; and every module
is imported first thing in a fresh interpreter, which fails on a circle
that Python's partially initialised modules would otherwise paper over.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "numba_deconv"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set:
    """The package modules that module ``name`` imports, anywhere in it."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from . import config" imports the module numba_deconv.config.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_the_import_graph_has_no_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    done, path = set(), []

    def visit(name):
        if name in path:
            cycle = path[path.index(name):] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_planning_leaves_import_nothing_of_the_kernels():
    """The checks, geometry and phase arithmetic sit at the bottom: every
    front end and backend imports them, and they import no backend."""
    for leaf in ("numba_deconv._plan", "numba_deconv._params", "numba_deconv._phases",
                 "numba_deconv._compiled", "numba_deconv.config"):
        assert imports_of(leaf) <= {"numba_deconv._params"}, leaf


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith(
    "numba_deconv.cuda.kernels")))
def test_each_module_imports_first_in_a_fresh_process(name):
    """``numba_deconv.cuda.kernels`` is left out: it imports ``numba.cuda``,
    which needs a GPU or the simulator (tests/cuda covers it)."""
    done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                          text=True, cwd=PACKAGE.parent, timeout=120)
    assert done.returncode == 0, done.stderr
