"""Every script in examples/ runs as a user runs it: a subprocess in an empty folder, here
with ``GPUNN_EXAMPLE_QUICK=1`` (fewer epochs or rows). Scripts are found by listing the
folder, so a new one is tested without being named here. Each must exit with 0 and report
how well it learned: every accuracy it prints clears 0.8 and every R² 0.5 (the examples'
classes are balanced, so chance is 0.5 or below). A script whose imports are not installed
(scikit-learn, say) is skipped with the reason.
"""

import ast
import gzip
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))
FIGURES = {"accuracy": (re.compile(r"accuracy:? (\d+\.\d+)"), 0.8),
           "R²": (re.compile(r"R²:? (-?\d+\.\d+)"), 0.5)}
#: Scripts that may end without a figure, with why.
NO_FIGURE = {"mnist.py": "without its IDX files (the test's cache is empty) it says so and "
                         "stops; test_mnist_trains_on_idx_files gives it files"}


def _run(script: Path, cwd: Path, *args: str):
    # The checkout's gpunn, not whichever one is installed; a cache that holds nothing.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "GPUNN_EXAMPLE_QUICK": "1",
           "GPUNN_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def _figures(stdout: str) -> list:
    return [(name, float(value)) for name, (pattern, _) in FIGURES.items()
            for value in pattern.findall(stdout)]


def _missing_imports(script: Path) -> list:
    """Top-level modules the script imports that are not installed."""
    names = set()
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_there_are_examples_and_the_readme_lists_each():
    assert SCRIPTS, "examples/ holds no scripts"
    readme = (ROOT / "README.md").read_text()
    unlisted = [s.name for s in SCRIPTS if f"examples/{s.name}" not in readme]
    assert not unlisted, f"README.md's Examples section does not name {unlisted}"
    # The networks for gpunn train --arch (tests/test_cli_arch.py builds and trains them).
    networks = sorted((ROOT / "examples").glob("*.json"))
    assert networks and not [n.name for n in networks if f"`{n.name}`" not in readme]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
@pytest.mark.slow
def test_example_runs_and_learns(script, tmp_path):
    missing = _missing_imports(script)
    if missing:
        pytest.skip(f"{script.name} needs {', '.join(missing)} (not installed)")
    assert ast.get_docstring(ast.parse(script.read_text())), \
        f"{script.name}: no module docstring saying what it shows and how to run it"
    proc = _run(script, tmp_path)
    assert proc.returncode == 0, f"{script.name} exited {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
    figures = _figures(proc.stdout)
    assert figures or script.name in NO_FIGURE, \
        f"{script.name} printed no accuracy or R²:\n{proc.stdout}"
    for name, value in figures:
        assert value > FIGURES[name][1], f"{script.name}: {name} {value}\n{proc.stdout}"


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_mnist_without_files_says_so_in_one_line(tmp_path):
    proc = _run(ROOT / "examples" / "mnist.py", tmp_path, "--data-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stdout.startswith(f"MNIST not found in {tmp_path}")
    assert "--data-dir" in proc.stdout and not list(tmp_path.rglob("*.gz"))  # no download


@pytest.mark.slow
def test_mnist_trains_on_idx_files(tmp_path):
    # Stand-in digits: class k is a bright band at rows 2k+4..2k+5 over dim noise.
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 1000), ("t10k", 200)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for k in range(10):
            images[labels == k, 2 * k + 4:2 * k + 6, 4:24] = 255
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    proc = _run(ROOT / "examples" / "mnist.py", tmp_path, "--data-dir", str(tmp_path),
                "--epochs", "5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(re.findall(r"^epoch \d/5 ", proc.stdout, flags=re.M)) == 5
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("test accuracy:") and "on 200 images" in last
    assert float(last.split()[2]) > 0.8
