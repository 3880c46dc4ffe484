"""Launching a script on several MPI ranks from a test, or skipping visibly.

``mpiexec -n P python -m mpi4py SCRIPT``: ``-m mpi4py`` aborts the job when a rank raises,
so a failing rank fails the test instead of hanging it. Two CPU cores are enough: the
ranks yield the processor while they wait, and a hard timeout (the launcher's own and the
subprocess's) turns any hang into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: Seconds a whole launch may take before it is killed and the test fails.
TIMEOUT = 120


def mpiexec() -> list[str]:
    """The launcher command (with the flags its MPI needs on a small machine), or a skip
    saying what is missing."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("distributed tests: mpi4py is not installed (pip install -e \".[test]\" "
                    "installs it with the mpich wheel)")
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.exists() else shutil.which("mpiexec")
    if exe is None:
        pytest.skip("distributed tests: no mpiexec (pip install mpich, or a system MPI)")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    # Open MPI refuses more ranks than cores unless told, and refuses root (CI containers).
    return [exe, "--oversubscribe"] if "Open MPI" in version or "OpenRTE" in version \
        else [exe]


def environment(threads: int = 1) -> dict:
    """Environment of the ranks: one BLAS thread each, waiting ranks yielding the CPU."""
    env = {"GPUNN_DEVICE": "cpu", **os.environ, "PYTHONUNBUFFERED": "1",
           "MPIEXEC_TIMEOUT": str(TIMEOUT - 10),         # MPICH's Hydra kills the job then
           "MPIR_CVAR_POLLS_BEFORE_YIELD": "10",          # MPICH: sched_yield while waiting
           "MPIR_CVAR_CH4_PROGRESS_THROTTLE": "1",
           "OMPI_MCA_mpi_yield_when_idle": "1",           # Open MPI equivalents
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    root = str(Path(__file__).parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def launch(args, ranks: int = 2, cwd=None, module: bool = True,
           timeout: int = TIMEOUT, env=None) -> subprocess.CompletedProcess:
    """Run ``args`` (a script and its arguments, or a command when ``module`` is False) on
    ``ranks`` ranks, with ``env`` added to their environment; the completed process
    (never raises on a non-zero exit)."""
    cmd = mpiexec() + ["-n", str(ranks)]
    cmd += [sys.executable, "-m", "mpi4py", *map(str, args)] if module else list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**environment(), **(env or {})}, cwd=cwd)
