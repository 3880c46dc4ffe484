"""ci/gpu.sh: its control flow on a machine without a GPU (the GPU run itself is manual)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")


def _run(*args, env=None):
    return subprocess.run(["bash", str(ROOT / "ci" / "gpu.sh"), *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_gpu_script_needs_a_phase():
    proc = _run()
    assert proc.returncode == 2 and "usage: bash ci/gpu.sh 1|2" in proc.stderr


def test_gpu_script_stops_at_once_without_array_api_compat(tmp_path):
    # A Python that cannot see site-packages stands in for a GPU image without the wheel.
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S -I "$@"\n')
    python.chmod(0o755)
    proc = _run("1", env={"PYTHON": str(python), "OUT": str(tmp_path / "out")})
    assert proc.returncode == 2
    assert "gpu.sh:" in proc.stderr
    assert not (tmp_path / "out" / "environment.txt").exists()  # nothing ran
