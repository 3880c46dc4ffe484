"""Every code block in README.md runs as written: the Python blocks in order in one
namespace, the command-line blocks on the sample files the project ships. Blocks that
install packages or need Docker/a GPU are listed in NOT_RUN with the reason."""

import importlib.util
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README.read_text(), flags=re.S)
#: Command lines not run here, with why.
NOT_RUN = {"python3 -m venv": "makes a virtual environment (the tests run inside one)",
           ". .venv/bin/activate": "changes the calling shell only",
           "pip install": "installs packages (CI runs the install itself)",
           "docker": "needs a Docker engine",
           "pytest": "is the test suite itself",
           "mpiexec": "launches MPI ranks (tests/test_distributed.py runs them)",
           "mpirun": "launches MPI ranks on a cluster's hosts",
           "srun": "needs a Slurm cluster"}
#: Python blocks needing a package outside the test extra (PyTorch: a large download) run
#: where it is installed; elsewhere they are left out with a warning saying so.
NEEDS = {"import torch": "torch"}


def test_python_blocks_run_in_order(tmp_path, monkeypatch):
    pytest.importorskip("sklearn", reason="the scikit-learn block needs scikit-learn")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPUNN_DEVICE", raising=False)
    namespace = {}
    blocks = [code for lang, code in BLOCKS if lang == "python"]
    assert len(blocks) >= 6
    for i, code in enumerate(blocks):
        missing = [m for key, m in NEEDS.items()
                   if key in code and importlib.util.find_spec(m) is None]
        if missing:
            warnings.warn(f"README python block {i + 1} not run: {', '.join(missing)} is "
                          "not installed", stacklevel=1)
            continue
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            pytest.fail(f"README python block {i + 1} fails: {type(exc).__name__}: {exc}")
    assert (tmp_path / "ckpt" / "best.npz").is_file() and (tmp_path / "model.npz").is_file()


def _commands():
    for lang, code in BLOCKS:
        if lang != "bash":
            continue
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            for part in (p.strip() for p in line.split("&&")):
                if part:
                    yield part


@pytest.mark.slow
def test_command_blocks_run(tmp_path):
    gpunn = shutil.which("gpunn")
    if gpunn is None:
        pytest.skip("the gpunn command is not installed (pip install -e .)")
    # The sample tables (examples/data) and --arch files ship with the project: the
    # commands run on them as a user's checkout has them.
    shutil.copytree(README.parent / "examples", tmp_path / "examples")
    ran = []
    for command in _commands():
        if any(command.startswith(key) for key in NOT_RUN):
            continue
        env = {**os.environ, "GPUNN_DEVICE": "cpu"}
        proc = subprocess.run(command.split(), cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == 0, f"README command {command!r}: {proc.stderr[-500:]}"
        ran.append(command)
    assert "gpunn train" in ran and any(c.startswith("gpunn predict") for c in ran)
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "plots").is_dir()


def test_the_sample_output_is_what_gpunn_train_prints(capsys, monkeypatch):
    """The lines shown under "Two commands" are those of a plain ``gpunn train`` on the
    CPU (timings and speeds aside): a change in what training keeps shows up here."""
    from gpunn import cli

    monkeypatch.setenv("GPUNN_DEVICE", "cpu")
    sample = next(code for lang, code in BLOCKS if lang == "" and "done: " in code)
    assert cli.main(["train", "--quiet"]) == 0
    captured = capsys.readouterr()
    out = (captured.err + captured.out).splitlines()  # --quiet: header lines on stderr
    shown = {line.split(":")[0]: line for line in sample.splitlines() if ":" in line}
    printed = {line.split(":")[0]: line for line in out if ":" in line}
    for key in ("data", "network"):
        assert printed[key] == shown[key], f"README's {key}: line is stale"
    best = re.compile(r"best \S+ [\d.]+ at epoch \d+")
    assert best.search(printed["done"]).group() == best.search(shown["done"]).group(), (
        f"README's done: line is stale; gpunn train prints {printed['done']!r}")


def test_the_onnx_example_takes_float64_data(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    code = next(c for lang, c in BLOCKS if lang == "python" and "to_onnx" in c)
    import numpy as np

    import gpunn as gn

    model = gn.Sequential([gn.Dense(2, 4, activation="tanh"),
                           gn.Dense(4, 1, activation="sigmoid")], device="cpu", seed=0)
    X = np.random.default_rng(0).normal(size=(8, 2))  # float64, as NumPy and pandas give
    namespace = {"model": model, "X": X, "gn": gn}
    exec(compile(code, "README.md ONNX block", "exec"), namespace)
    np.testing.assert_allclose(namespace["onnx_proba"], gn.to_numpy(model.predict(X[:5])),
                               atol=1e-5)
