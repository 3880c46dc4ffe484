"""ci/gpu.sh: its control flow on a machine without a GPU (the GPU run itself is manual):
the arguments, the stop at once without gpunn's requirements or a GPU, and the dry run,
which runs the whole sequence on the CPU with tiny sizes."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="bash or timeout not installed")
STEPS = ["environment", "pytest-gpu", "agreement", "bench", "targets", "kernel-cache"]


def _run(*args, env=None, timeout=120):
    base = {k: v for k, v in os.environ.items() if not k.startswith("GPUNN_PROOF_")}
    env = {k: v for k, v in {**base, "PYTHON": sys.executable, **(env or {})}.items()
           if v is not None}  # None: unset
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "ci" / "gpu.sh"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    proc.seconds = time.monotonic() - t0
    return proc


def _steps(out: Path) -> list[tuple[str, str]]:
    """(step, verdict) per line of steps.txt, in order."""
    rows = []
    for line in (out / "steps.txt").read_text().splitlines():
        if not line.startswith("=="):
            name, rest = line.split(maxsplit=1)
            rows.append((name, rest.split(" exit")[0].split(":")[0].strip()))
    return rows


@pytest.mark.parametrize("args", [["bogus"], ["1"], ["2"], ["rest", "x"]])
def test_gpu_script_takes_no_phase(args, tmp_path):
    proc = _run(*args, env={"OUT": str(tmp_path)})
    assert proc.returncode == 2 and "usage: bash ci/gpu.sh [rest] [--dry-run]" in proc.stderr
    if args == ["1"]:
        assert "now one command" in proc.stderr


def test_gpu_script_stops_after_the_environment_without_array_api_compat(tmp_path):
    # A Python that cannot see site-packages stands in for a GPU image without the wheel.
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S -I "$@"\n')
    python.chmod(0o755)
    out = tmp_path / "out"
    proc = _run(env={"PYTHON": str(python), "OUT": str(out)})
    assert proc.returncode == 2
    assert "gpu.sh: array_api_compat does not import" in proc.stderr
    assert "pip download" in proc.stderr
    environment = (out / "environment.txt").read_text()  # written first, all the same
    assert "array-api-compat missing" in environment
    assert [s for s, _ in _steps(out)] == ["environment", "gate"]
    assert not (out / "pytest-gpu.txt").exists()


@pytest.mark.slow
def test_gpu_script_stops_at_once_without_cupy(tmp_path):
    """This machine has no CuPy: a clear message, exit 3, environment.txt already there."""
    pytest.importorskip("array_api_compat")
    if importlib_find("cupy"):
        pytest.skip("CuPy is installed here")
    out = tmp_path / "out"
    proc = _run(env={"OUT": str(out)})
    assert proc.returncode == 3, proc.stderr
    assert "gpu.sh: no usable GPU here: CuPy is not installed" in proc.stderr
    assert "--dry-run" in proc.stderr
    assert (out / "environment.txt").exists()
    assert [s for s, _ in _steps(out)] == ["environment", "gate"]
    assert proc.seconds < 30  # seconds: the environment, the probe


@pytest.mark.slow
def test_gpu_script_stops_at_once_with_cupy_but_no_gpu(tmp_path):
    """CuPy that imports but sees no device (a CPU machine with the wheel)."""
    fake = tmp_path / "fake" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        '__version__ = "13.0.0-fake"\n\n\nclass _Runtime:\n    @staticmethod\n'
        '    def getDeviceCount():\n        return 0\n\n\nclass cuda:\n'
        '    runtime = _Runtime\n')
    out = tmp_path / "out"
    env = {"OUT": str(out), "PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}",
           "CUDA_VISIBLE_DEVICES": None}
    proc = _run(env=env, timeout=180)
    assert proc.returncode == 3, proc.stderr
    assert "gpu.sh: no usable GPU here: no CUDA device found" in proc.stderr
    assert "cupy 13.0.0-fake" in (out / "environment.txt").read_text()


def test_gpu_script_rest_needs_a_gpu_too(tmp_path):
    pytest.importorskip("array_api_compat")
    if importlib_find("cupy"):
        pytest.skip("CuPy is installed here")
    proc = _run("rest", env={"OUT": str(tmp_path)})
    assert proc.returncode == 3 and "no usable GPU here" in proc.stderr
    assert not (tmp_path / "pytest-rest.txt").exists()


def test_gpu_script_keeps_to_its_budget(tmp_path):
    """With no time left every step is skipped and says so; nothing runs."""
    pytest.importorskip("array_api_compat")
    proc = _run("--dry-run", env={"OUT": str(tmp_path), "GPUNN_PROOF_BUDGET": "1"})
    assert proc.returncode == 1
    assert _steps(tmp_path) == [(s, "skipped") for s in STEPS]
    assert not (tmp_path / "bench.json").exists()


@pytest.mark.slow
def test_gpu_script_dry_run_runs_every_step_in_order(tmp_path):
    """The whole sequence on the CPU with tiny sizes: each step's files are written as
    it ends, in the order of value (environment first, the kernel cache last)."""
    pytest.importorskip("array_api_compat")
    out = tmp_path / "out"
    proc = _run(env={"OUT": str(out), "GPUNN_PROOF_DRY": "1"}, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _steps(out) == [(s, "ok") for s in STEPS]
    assert "done in" in (out / "steps.txt").read_text()
    written = [out / f for f in ("environment.txt", "pytest-gpu.xml", "agreement.json",
                                 "bench.json", "gpu-kernel-cache.tar.gz")]
    times = [f.stat().st_mtime for f in written]
    assert times == sorted(times)
    for name in ("pytest-gpu.txt", "agreement.md", "bench.md", "bench.txt"):
        assert (out / name).stat().st_size > 0, name
    assert "dry run on the CPU" in (out / "environment.txt").read_text()
    assert "| micro | cpu | float32 | gpunn |" in (out / "bench.md").read_text()
    assert "| cnn | cpu | float32 | gpunn |" in (out / "bench.md").read_text()
    assert "All agree: yes" in (out / "agreement.md").read_text()
    assert "| cpu/gpu agreement | cpu vs cpu | all checks pass |" in (
        out / "targets.md").read_text()


def test_gpu_script_reruns_only_the_steps_asked_for(tmp_path):
    """GPUNN_PROOF_STEPS: a rerun of what failed; steps.txt keeps every run's lines."""
    pytest.importorskip("array_api_compat")
    env = {"OUT": str(tmp_path), "GPUNN_PROOF_STEPS": "targets,kernel-cache"}
    for _ in range(2):
        proc = _run("--dry-run", env=env)
        assert proc.returncode == 0, proc.stderr
    assert _steps(tmp_path) == [("targets", "ok"), ("kernel-cache", "ok")] * 2
    assert "steps targets,kernel-cache" in (tmp_path / "steps.txt").read_text()
    assert not (tmp_path / "environment.txt").exists()


@pytest.mark.slow
def test_gpu_script_time_guards_end_a_step_and_go_on(tmp_path):
    """Each step runs under `timeout`: one over its cap is ended, recorded as timed out,
    and the next step still runs; the run says it failed."""
    pytest.importorskip("array_api_compat")
    # Two steps that always take longer than a second (pytest's start alone does); the
    # agreement between them, uncapped, still runs (on a quiet machine it can end within
    # a second, so a cap of 1 s would not be sure to cut it).
    caps = {f"GPUNN_PROOF_CAP_{s}": "1" for s in ("TESTS", "BENCH")}
    proc = _run("--dry-run", env={"OUT": str(tmp_path), **caps}, timeout=200)
    assert proc.returncode == 1
    steps = _steps(tmp_path)
    assert [s for s, _ in steps] == STEPS
    verdicts = dict(steps)
    assert [verdicts[s] for s in ("pytest-gpu", "bench")] == ["timed out"] * 2
    assert verdicts["agreement"] == verdicts["targets"] == verdicts["kernel-cache"] == "ok"
    assert "| benchmark |  | no rows measured |" in (tmp_path / "targets.md").read_text()
    assert proc.seconds < 2 * (1 + 5) + 90  # each capped step: 1 s and 5 s to die at most


def importlib_find(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
