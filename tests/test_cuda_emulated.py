"""gpunn's CUDA kernels, run on the CPU: the GPU parity tests without a GPU.

The CuPy stand-in (tests/fake_cupy.py) plays CuPy, and the kernels of
``gpunn/backend/kernels/gpunn_kernels.cu`` run through a CPU emulator of CUDA's thread
model (tests/cuda_emu/emu.h, compiled with g++): every thread of a block is a fibre, the
threads between two barriers and the blocks of a grid run in shuffled orders. So the
launchers' arguments, grid sizes and shared memory, and the kernels' indexing, barriers
and reductions are checked on every machine; only CUDA's own maths library and memory
model are left to tests/test_gpu.py on a real GPU.
"""

from __future__ import annotations

import fake_cupy
import numpy as np
import pytest
from cuda_emulator import compiler, load

# The parity tests of the GPU suite, collected again here with the emulated backend as
# their ``cuda`` fixture.
from test_gpu import (  # noqa: F401
    test_adam_kernel_tracks_numpy_tightly,
    test_bias_activation_kernels_match_generic,
    test_moons_learned_on_gpu_and_moved_back,
    test_optimizer_kernels_match_generic,
    test_softmax_xent_kernel_matches_generic,
    test_training_step_parity_with_numpy,
)

import gpunn as gn

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++) installed")


def emulate_kernels(monkeypatch):
    """Route gpunn's kernel launches to the emulator (with the stand-in installed)."""
    import gpunn.backend.cupy_kernels as ck

    module = load()

    def function(name, dtype):
        suffix = ck._SUFFIX.get(np.dtype(dtype))
        if suffix is None or not ck.enabled():
            return None
        return module.get_function(f"{name}_{suffix}")

    monkeypatch.setattr(ck, "function", function)
    monkeypatch.setenv("GPUNN_CUDA_KERNELS", "1")
    return module


@pytest.fixture
def cuda(monkeypatch):
    with fake_cupy.installed(monkeypatch):
        emulate_kernels(monkeypatch)
        yield gn.get_backend("cuda", seed=0)


def test_the_emulated_kernels_ran(cuda):
    """The fixture really runs the kernels (not CuPy's generic path)."""
    module = load()
    be = gn.get_backend(cuda, dtype="float64")
    x, W, b = (be.asarray(np.ones(s)) for s in [(3, 2), (2, 4), (4,)])
    z, y = be.bias_activation(x, W, b, gn.activations.get("relu")[0], {})
    assert module.get_function("bias_act_forward_f64").launches >= 1
    np.testing.assert_array_equal(gn.to_numpy(y), np.full((3, 4), 3.0))


RACY = r"""
template <typename T>
__device__ void block_sum(const T* x, T* out, long long n, int barrier) {
    GPUNN_SHARED(T, red);
    T v = T(0);
    for (long long i = threadIdx.x; i < n; i += blockDim.x) v += x[i];
    red[threadIdx.x] = v;
    if (barrier) __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        if (barrier) __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = red[0];
}
template <typename T>
__device__ void divergent(T* out) {
    if (threadIdx.x == 0) __syncthreads();
    out[threadIdx.x] = T(1);
}
#define GPUNN_EXPORT(T, S) \
    extern "C" __global__ void block_sum_##S(const T* x, T* out, long long n, int barrier) { \
        GPUNN_KERNEL_BODY(block_sum<T>(x, out, n, barrier)); \
    } \
    extern "C" __global__ void divergent_##S(T* out) { GPUNN_KERNEL_BODY(divergent<T>(out)); }
GPUNN_EXPORT(double, f64)
"""


def test_the_emulator_catches_a_missing_barrier(tmp_path):
    """A reduction without its barriers gives a wrong sum in the emulator, as it may on a
    GPU, and a barrier inside a branch is an error (it hangs a GPU)."""
    src = tmp_path / "racy.cu"
    src.write_text(RACY)
    module = load(src)
    kernel = module.get_function("block_sum_f64")
    x = np.arange(1000, dtype=np.float64)
    out = np.zeros(1)
    kernel((1,), (64,), (x, out, np.int64(x.size), np.int32(1)), shared_mem=64 * 8)
    assert out[0] == x.sum()
    wrong = 0
    for seed in range(5):
        kernel((1,), (64,), (x, out, np.int64(x.size), np.int32(0)), shared_mem=64 * 8,
               seed=seed)
        wrong += out[0] != x.sum()
    assert wrong > 0
    with pytest.raises(RuntimeError, match="barrier"):
        module.get_function("divergent_f64")((1,), (32,), (np.zeros(32),))


# ---------------------------------------------------------------- the fused step kernels
def _bits_twice(run):
    """``run()`` twice (the emulator shuffles blocks and threads differently each launch):
    the results must be the same bits, as on a GPU whatever the block schedule."""
    first, second = run(), run()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    return first


@pytest.mark.parametrize("name", sorted(gn.activations.ACTIVATIONS))
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (300, 70)])
def test_activation_and_bias_gradient_in_one_launch(cuda, name, shape):
    """dense_backward's fused kernel against the generic path: dL/dz, the bias gradient
    (column sums over row chunks and column tiles), the weight and input gradients."""
    import gpunn.backend.cupy_kernels as ck

    be = gn.get_backend(cuda, dtype="float64")
    rng = np.random.default_rng(0)
    rows, cols = shape
    x, W = be.asarray(rng.standard_normal((rows, 5))), be.asarray(rng.standard_normal((5, cols)))
    b, g = be.asarray(rng.standard_normal(cols)), be.asarray(rng.standard_normal(shape))
    act, params = gn.activations.get(name, **({"alpha": 0.3} if name in (
        "leaky_relu", "elu") else {}))
    act = None if name == "identity" else act
    z, y = be.bias_activation(x, W, b, act or gn.activations.IDENTITY, params)
    launches = load().get_function("act_backward_bias_f64").launches

    def fused():
        out = (be.zeros((5, cols)), be.zeros((cols,)))
        return [gn.to_numpy(a).copy() for a in be.dense_backward(
            x, W, z, y, g + 0, act, params, True, out=out)]

    got = _bits_twice(fused)
    if name != "softmax":  # no kernel for softmax's derivative: the generic path ran
        assert load().get_function("act_backward_bias_f64").launches == launches + 2
    generic = gn.backend.base.Backend.dense_backward(be, x, W, z, y, g + 0, act, params, True)
    for a, c in zip(got, generic):
        np.testing.assert_allclose(a, gn.to_numpy(c), rtol=1e-12, atol=1e-12)
    assert ck  # the launcher module is the one the fixture routed


@pytest.mark.parametrize("dense", [False, True], ids=["labels", "one-hot"])
@pytest.mark.parametrize("rows, cols", [(1, 2), (37, 10), (300, 3), (5, 700)])
def test_softmax_loss_kernel_does_the_whole_head(cuda, dense, rows, cols):
    """One launch adds the bias, and writes probabilities, dL/dz, the loss into its slot,
    the bias gradient and the count of correct labels; the generic path agrees."""
    rng = np.random.default_rng(rows + cols)
    zw = rng.standard_normal((rows, cols)) * 3
    zw[0, :2] = 5.0  # a tie at the top: the first index wins, as argmax says
    labels = rng.integers(0, cols, rows)
    target = np.eye(cols)[labels]
    got = _fused_head(cuda, "softmax", zw, target if dense else labels, count=not dense)
    z = zw + got["bias"]
    value, prob, grad = gn.backend.ops.softmax_cross_entropy(np, z, target)
    _check_head(got, value, prob, grad, z, np.sum(prob.argmax(axis=1) == labels))


@pytest.mark.parametrize("rows, cols", [(1, 1), (37, 1), (300, 3), (700, 40)])
def test_sigmoid_loss_kernel_does_the_whole_head(cuda, rows, cols):
    """The same for sigmoid binary cross-entropy (elementwise, mean over all elements):
    bias, probabilities, dL/dz, loss, bias gradient, and the count of elements on the
    right side of 1/2."""
    rng = np.random.default_rng(rows * cols)
    zw = rng.standard_normal((rows, cols)) * 3
    zw[0, 0] = -60.0  # exp(60) would overflow a naive log(1 + exp(-z))
    target = (rng.random((rows, cols)) > 0.5).astype(float)
    target[-1, -1] = 0.3  # soft targets are allowed
    got = _fused_head(cuda, "sigmoid", zw, target, count=True)
    z = zw + got["bias"]
    p = 1 / (1 + np.exp(-z))
    value = np.mean(np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z))))
    _check_head(got, value, p, (p - target) / z.size, z, np.sum((p >= 0.5) == (target >= 0.5)))


@pytest.mark.parametrize("rows, cols", [(1, 1), (300, 3), (70, 40)])
def test_squared_error_kernel_does_the_whole_head(cuda, rows, cols):
    """Mean squared error on an identity output: bias, dL/dz, loss and bias gradient in one
    launch; the output is z itself (no copy)."""
    rng = np.random.default_rng(rows + 7 * cols)
    zw, target = rng.standard_normal((rows, cols)), rng.standard_normal((rows, cols))
    got = _fused_head(cuda, "identity", zw, target, count=False)
    z = zw + got["bias"]
    _check_head(got, np.mean((z - target) ** 2), z, 2 * (z - target) / z.size, z, None)


def _fused_head(cuda, kind, zw, target, count):
    """The backend's fused head on ``zw`` (run twice: the same bits), as a dict."""
    from gpunn.backend.base import StepFusion

    be = gn.get_backend(cuda, dtype="float64")
    cols = zw.shape[1]
    bias = np.random.default_rng(cols).standard_normal(cols)

    def run():
        fusion = StepFusion(bias=be.asarray(bias), bias_grad=be.zeros((cols,)),
                            loss=be.zeros((3,))[1], correct=be.zeros(
                                (2,), dtype=be.xp.int64)[0] if count else None)
        z = be.asarray(zw.copy())  # the kernel adds the bias in place
        value, prob, grad = be.fused_loss(kind, z, be.asarray(target), fusion)
        assert fusion.loss_done and fusion.bias_grad_done and value is fusion.loss
        assert fusion.correct_done == count
        out = [gn.to_numpy(a).copy() for a in (value, prob, grad, fusion.bias_grad, z)]
        return out + [np.asarray(int(fusion.correct) if count else -1)]

    names = ("value", "prob", "grad", "bias_grad", "z", "correct")
    return dict(zip(names, _bits_twice(run)), bias=bias)


def _check_head(got, value, prob, grad, z, correct):
    np.testing.assert_allclose(got["value"], value, rtol=1e-13)
    for name, want in [("prob", prob), ("grad", grad), ("bias_grad", grad.sum(axis=0)),
                       ("z", z)]:
        np.testing.assert_allclose(got[name], want, rtol=1e-12, atol=1e-15, err_msg=name)
    assert got["correct"] in (-1, correct)


@pytest.mark.parametrize("targets", ["labels", "rows"])
def test_batch_gather_of_inputs_and_targets_in_one_launch(cuda, targets):
    """take_rows((X, T), idx) gathers both with one kernel, into the previous batch's
    buffers when the size allows (a short last batch gets new ones)."""
    be = gn.get_backend(cuda, dtype="float32")
    rng = np.random.default_rng(4)
    X = be.asarray(rng.standard_normal((50, 7)).astype(np.float32))
    T = be.asarray(rng.integers(0, 5, 50) if targets == "labels"
                   else rng.standard_normal((50, 3)).astype(np.float32))
    perm = be.asarray(rng.permutation(50))
    kernel = load().get_function(("gather_labels" if targets == "labels" else "gather_rows")
                                 + "_f32")
    before, out = kernel.launches, None
    for lo in range(0, 50, 16):
        idx = perm[lo:lo + 16]
        previous = out
        out = be.take_rows((X, T), idx, out)
        if previous is not None and int(idx.shape[0]) == 16:
            assert out[0] is previous[0] and out[1] is previous[1]
        for got, a in zip(out, (X, T)):
            np.testing.assert_array_equal(gn.to_numpy(got), gn.to_numpy(a)[gn.to_numpy(idx)])
    assert kernel.launches == before + 4


CASES = {
    "labels": dict(y="labels", metrics=["accuracy"]),
    "one-hot": dict(y="one-hot", metrics=["accuracy"]),
    "L2 penalty": dict(y="labels", metrics=["accuracy"], kernel_l2=1e-3),
    "skip non-finite": dict(y="labels", metrics=["accuracy"], on_divergence="skip"),
    "sigmoid BCE": dict(y="binary", metrics=["accuracy"]),
    "mse": dict(y="regression", metrics=["mae"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_on_emulated_gpu_matches_cpu(cuda, case):
    """Whole fit runs on the emulated GPU (fused head, fused backward, optimiser kernel)
    and on NumPy from the same weights: the same history and weights, in float64."""
    spec = CASES[case]
    rng = np.random.default_rng(3)
    X = rng.standard_normal((90, 6))
    labels = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    out, loss, y = {"labels": (3, "cross_entropy", labels),
                    "one-hot": (3, "cross_entropy", np.eye(3)[labels]),
                    "binary": (1, "bce", (labels > 0).astype(float)),
                    "regression": (1, "mse", X[:, :1] * 2 - X[:, 1:2])}[spec["y"]]
    act = {"cross_entropy": "softmax", "bce": "sigmoid", "mse": "identity"}[loss]

    def make(device):
        return gn.Sequential([gn.Dense(6, 16, activation="tanh"),
                              gn.Dense(16, 8, activation="relu",
                                       kernel_l2=spec.get("kernel_l2", 0.0)),
                              gn.Dense(8, out, activation=act)],
                             device=device, dtype="float64", seed=1)

    cpu, gpu = make("cpu"), make(cuda)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        b[...] = gpu.backend.asarray(gn.to_numpy(a))
    kwargs = dict(loss=loss, epochs=3, batch_size=16, verbose=0, seed=0,
                  metrics=spec["metrics"], on_divergence=spec.get("on_divergence", "raise"))
    h_cpu = cpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    h_gpu = gpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    for key, values in h_cpu.history.items():
        np.testing.assert_allclose(h_gpu.history[key], values, rtol=1e-9, err_msg=key)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        np.testing.assert_allclose(gn.to_numpy(b), gn.to_numpy(a), rtol=1e-9, atol=1e-12)
