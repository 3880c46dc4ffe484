"""The CUDA sources compile with nvcc and agree with their Python launchers.

This runs without a GPU (nvcc only emits PTX); it is skipped where nvcc is missing.
The kernels' results are checked against the generic path by the gpu-marked parity tests.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gpunn.backend.kernel_codes import ACTIVATION_CODES

SOURCE = Path(__file__).parents[1] / "gpunn" / "backend" / "kernels" / "gpunn_kernels.cu"
KERNELS = ["bias_act_forward", "act_backward", "act_backward_bias", "softmax_xent_labels",
           "softmax_xent_dense", "sigmoid_xent", "squared_error", "gather_labels",
           "gather_rows", "im2col", "col2im", "pool_forward", "pool_backward",
           "batchnorm_stats", "batchnorm_apply", "batchnorm_grad_sums", "batchnorm_backward",
           "layernorm_forward",
           "layernorm_backward", "adam", "sgd", "rmsprop", "adagrad"]


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.slow
def test_compiles_with_nvcc(tmp_path, arch):
    nvcc = shutil.which("nvcc") or (shutil.which("/usr/local/cuda/bin/nvcc"))
    if nvcc is None:
        pytest.skip("nvcc not installed")
    ptx = tmp_path / "k.ptx"
    proc = subprocess.run([nvcc, "--ptx", f"-arch={arch}", "-std=c++14", "-Werror",
                           "all-warnings", "-o", str(ptx), str(SOURCE)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    entries = set(re.findall(r"\.entry\s+(\w+)", ptx.read_text()))
    assert entries == {f"{k}_{s}" for k in KERNELS for s in ("f32", "f64")}


def test_activation_codes_match_source():
    defines = dict(re.findall(r"#define GPUNN_([A-Z_]+) (\d+)", SOURCE.read_text()))
    assert {k.lower(): int(v) for k, v in defines.items()} == ACTIVATION_CODES


def test_every_activation_but_softmax_has_a_kernel():
    from gpunn.activations import ACTIVATIONS

    assert set(ACTIVATIONS) - set(ACTIVATION_CODES) == {"softmax"}


def _exported() -> set:
    text = SOURCE.read_text().replace("\\\n", "\n")
    return set(re.findall(r'extern "C" __global__ void (\w+)_##S\(', text))


def test_every_exported_kernel_is_listed_and_has_a_launcher():
    """The kernels the source exports are this file's list (what nvcc must emit), and each
    is named by a launcher in gpunn/backend/cupy_kernels.py: no kernel compiled for
    nothing, none launched by a name the source lacks."""
    launchers = (Path(__file__).parents[1] / "gpunn" / "backend" /
                 "cupy_kernels.py").read_text()
    named = set(re.findall(r'"(\w+)"', launchers))
    assert _exported() == set(KERNELS)
    assert set(KERNELS) <= named, set(KERNELS) - named
    called = set(re.findall(r'(?:function|_launch)\("(\w+)"', launchers))
    assert called <= _exported(), called - _exported()
