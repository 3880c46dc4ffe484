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
    test_a_subclassed_loss_keeps_its_own_maths_on_gpu,
    test_activation_and_bias_gradient_in_one_launch,
    test_adam_kernel_tracks_numpy_tightly,
    test_batch_gather_of_inputs_and_targets_in_one_launch,
    test_batchnorm_kernels_match_generic,
    test_bias_activation_kernels_match_generic,
    test_cnn_layers_on_gpu_match_numpy,
    test_fused_fit_on_gpu_matches_cpu,
    test_layernorm_kernels_match_generic,
    test_moons_learned_on_gpu_and_moved_back,
    test_optimizer_kernels_match_generic,
    test_patch_kernels_match_generic,
    test_pool_kernels_match_generic,
    test_sigmoid_loss_kernel_does_the_whole_head,
    test_softmax_loss_kernel_does_the_whole_head,
    test_softmax_xent_kernel_matches_generic,
    test_squared_error_kernel_does_the_whole_head,
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
    monkeypatch.setattr(fake_cupy.STATE, "poison", True)
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


def test_each_fused_operation_launches_its_kernel(cuda):
    """The fused paths the shared tests check run the kernels, not CuPy's generic path."""
    module = load()
    be = gn.get_backend(cuda, dtype="float64")
    rng = np.random.default_rng(0)

    def launched(kernel, run):
        before = module.get_function(f"{kernel}_f64").launches
        run()
        assert module.get_function(f"{kernel}_f64").launches == before + 1, kernel

    x, W, g = (be.asarray(rng.standard_normal(s)) for s in [(9, 4), (4, 3), (9, 3)])
    out = (be.zeros((4, 3)), be.zeros((3,)))
    relu = gn.activations.get("relu")[0]
    launched("act_backward_bias", lambda: be.dense_backward(x, W, g, g, g, relu, {}, True, out))
    z, labels, rows = g + 0, be.asarray(rng.integers(0, 3, 9)), be.asarray(rng.random((9, 3)))
    for kind, kernel, t in [("softmax", "softmax_xent_labels", labels),
                            ("sigmoid", "sigmoid_xent", rows),
                            ("identity", "squared_error", rows)]:
        launched(kernel, lambda k=kind, t=t: be.fused_loss(k, z + 0, t, be.zeros((3,)),
                                                           be.zeros((3,))))
    launched("gather_labels", lambda: be.take_rows((x, labels), be.asarray(np.arange(5))))


def test_each_patch_pooling_and_normalisation_operation_launches_its_kernel(cuda):
    """Convolution patches, pooling, batch and layer normalisation run their kernels (one
    launch each; batch normalisation a reduction and an elementwise kernel, the first
    left out in inference), not CuPy's generic path, in 1-D and 2-D."""
    module = load()
    be = gn.get_backend(cuda, dtype="float64")
    rng = np.random.default_rng(0)

    def launched(kernels, operation, *args):
        """``operation(*args)``, checking it launched each of ``kernels`` (a name or a
        tuple of names) once."""
        kernels = (kernels,) if isinstance(kernels, str) else kernels
        before = [module.get_function(f"{k}_f64").launches for k in kernels]
        out = operation(*args)
        after = [module.get_function(f"{k}_f64").launches for k in kernels]
        assert after == [b + 1 for b in before], kernels
        return out

    gamma, beta = be.asarray(np.ones(3)), be.asarray(np.zeros(3))
    for shape, k in [((2, 3, 8), (3,)), ((2, 3, 6, 5), (2, 3))]:
        x = be.asarray(rng.standard_normal(shape))
        pad, one = (1,) * len(k), (1,) * len(k)
        cols = launched("im2col", be.im2col, x, k, one, pad)
        launched("col2im", be.col2im, cols, shape, k, one, pad)
        for kind in ("max", "avg"):
            y, arg = launched("pool_forward", be.pool_forward, x, kind, k, k)
            launched("pool_backward", be.pool_backward, y, arg, kind, shape, k, k)
        out = launched(("batchnorm_stats", "batchnorm_apply"), be.batchnorm_forward, x, gamma,
                       beta, 1e-5)
        launched("batchnorm_apply", be.batchnorm_forward, x, gamma, beta, 1e-5, out[3],
                 out[4])  # inference: the running statistics, no reduction
        launched(("batchnorm_grad_sums", "batchnorm_backward"), be.batchnorm_backward, x,
                 out[1], gamma, out[2], True)
        scale = be.asarray(np.ones(shape[-1]))
        out = launched("layernorm_forward", be.layernorm_forward, x, scale, scale, 1e-5)
        launched("layernorm_backward", be.layernorm_backward, x, out[1], scale, out[2])


def test_a_cnn_on_the_second_gpu_runs_its_kernels_there(monkeypatch):
    """The patch, pooling and normalisation kernels allocate their outputs on the model's
    device (cuda:1 here, with cuda:0 current): every parameter, gradient and buffer stays
    there (the stand-in refuses work mixing devices), and the kernels did run."""
    from test_gpu import _small_cnn

    with fake_cupy.installed(monkeypatch):
        module = emulate_kernels(monkeypatch)
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((32, 2, 9, 8)), rng.integers(0, 3, 32)
        model = gn.Sequential(_small_cnn(2), device="cuda:1", dtype="float64", seed=0)
        before = module.get_function("im2col_f64").launches
        hist = model.fit(X, y, loss="cross_entropy", epochs=2, batch_size=16, verbose=0)
        assert np.all(np.isfinite(hist.history["loss"]))
        assert module.get_function("im2col_f64").launches > before
        arrays = model.parameters() + model.gradients() + model.store.buffers()
        assert {a._dev for a in arrays} == {1}
        assert model.predict(X)._dev == 1
