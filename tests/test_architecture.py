"""The shape of the code: what may import what.

No import cycle among gpunn's modules, imports inside functions included; the backend
package imports nothing from the layers above it. (What a new layer, loss or optimiser
costs is shown by the extension tests, tests/test_extensions.py: each is one file.)
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

PACKAGE = Path(os.environ.get("GPUNN_ARCH_ROOT", Path(__file__).parents[1])) / "gpunn"
MODULE_LINES, FUNCTION_LINES, CLASS_METHODS = 400, 60, 25
EXCEPTIONS: dict[str, str] = {}  # "path:name" -> why it may exceed a limit


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_modules())


def _code_lines(node) -> int:
    """Lines of a function or class body, less its docstring."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
            isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _imports(name: str, path: Path) -> set[str]:
    """gpunn modules ``name`` imports anywhere in its file (lazy imports included)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # "from pkg import sub" imports the submodule when there is one.
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_no_import_cycles():
    """Depth-first search for a back edge; reports the cycle found."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("lower,upper", [
    ("gpunn.backend", ("gpunn.layers", "gpunn.losses", "gpunn.optim", "gpunn.model",
                       "gpunn.training", "gpunn.activations", "gpunn.callbacks")),
    ("gpunn.layers", ("gpunn.model", "gpunn.training", "gpunn.optim", "gpunn.losses")),
    ("gpunn.losses", ("gpunn.model", "gpunn.training", "gpunn.layers", "gpunn.optim")),
    ("gpunn.optim", ("gpunn.model", "gpunn.training", "gpunn.layers", "gpunn.losses")),
    ("gpunn.training", ("gpunn.model", "gpunn.files.load")),
    ("gpunn.files.format", ("gpunn.model", "gpunn.files.load", "gpunn.training")),
])
def test_lower_layers_never_import_upper_ones(lower, upper):
    bad = sorted(f"{m} -> {t}" for m, targets in GRAPH.items()
                 if m == lower or m.startswith(lower + ".")
                 for t in targets if any(t == u or t.startswith(u + ".") for u in upper))
    assert not bad, bad


def test_the_graph_is_read():
    # The checks above must not pass by reading nothing.
    assert "gpunn.training" in GRAPH["gpunn.model"]
    assert "gpunn.backend.hyper" in GRAPH["gpunn.optim.rules"]
    assert "gpunn.layers" in GRAPH["gpunn.gradcheck"]  # a lazy import
    assert len(MODULES) > 30
