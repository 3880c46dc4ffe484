"""CuPy-only checks: parity of the CUDA path with NumPy on identical weights.

Skipped visibly (with the reason) when no CUDA GPU is usable; CI deselects them with
``-m "not gpu"`` or sees them skipped.
"""

import numpy as np
import pytest

import gpunn as gn
from gpunn.backend import cuda_status

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda():
    status = cuda_status()
    if not status.usable:
        pytest.skip(f"no usable CUDA GPU: {status.reason}")
    return gn.get_backend("cuda", seed=0)


def test_cuda_backend_is_cupy(cuda):
    import cupy

    x = cuda.asarray(np.ones((3, 2), np.float32))
    assert isinstance(x, cupy.ndarray) and cuda.owns(x)
    assert cuda.name == "cuda:0" and "cuda:0" in gn.available_devices()
    assert gn.get_backend("auto").name == "cuda:0"


def test_training_step_parity_with_numpy(cuda):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 10)).astype(np.float32)
    y = rng.integers(0, 4, 64)

    def make(device):
        return gn.Sequential([gn.Dense(10, 32, activation="relu"),
                              gn.Dense(32, 32, activation="gelu"),
                              gn.Dense(32, 4, activation="softmax")], device=device, seed=3)

    cpu, gpu = make("cpu"), make(cuda)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        b[...] = cuda.asarray(gn.to_numpy(a))
    kwargs = dict(loss="cross_entropy", epochs=3, batch_size=16, shuffle=False, verbose=0)
    h_cpu = cpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    h_gpu = gpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    np.testing.assert_allclose(h_gpu.history["loss"], h_cpu.history["loss"], rtol=1e-4)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        np.testing.assert_allclose(gn.to_numpy(b), a, rtol=1e-3, atol=1e-5)


def test_moons_learned_on_gpu_and_moved_back(cuda):
    X, y = gn.data.make_moons(1000, noise=0.15, seed=1)
    model = gn.Sequential([gn.Dense(2, 32, activation="relu"),
                           gn.Dense(32, 1, activation="sigmoid")], device=cuda, seed=0)
    model.fit(X, y, loss="bce", optimizer=gn.optim.Adam(lr=0.01), epochs=30, verbose=0)
    acc = model.evaluate(X, y)["accuracy"]
    assert acc >= 0.97
    model.to("cpu")
    assert model.evaluate(X, y)["accuracy"] == pytest.approx(acc)


# ---------------------------------------------------------------- fused kernel parity
def _kernels_off(monkeypatch):
    monkeypatch.setenv("GPUNN_CUDA_KERNELS", "0")


@pytest.mark.parametrize("name", sorted(gn.activations.ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bias_activation_kernels_match_generic(cuda, name, dtype, monkeypatch):
    be = gn.get_backend(cuda, dtype=dtype)
    rng = np.random.default_rng(0)
    x, W = be.asarray(rng.standard_normal((33, 7))), be.asarray(rng.standard_normal((7, 5)))
    b, g = be.asarray(rng.standard_normal(5)), be.asarray(rng.standard_normal((33, 5)))
    act, params = gn.activations.get(name, **({"alpha": 0.3} if name in (
        "leaky_relu", "elu") else {}))
    z1, y1 = be.bias_activation(x, W, b, act, params)
    d1 = be.activation_backward(act, z1, y1, g, params)
    _kernels_off(monkeypatch)
    z2, y2 = be.bias_activation(x, W, b, act, params)
    d2 = be.activation_backward(act, z2, y2, g, params)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for a, c in [(z1, z2), (y1, y2), (d1, d2)]:
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(c), rtol=tol, atol=tol)


@pytest.mark.parametrize("dense", [False, True], ids=["labels", "one-hot"])
def test_softmax_xent_kernel_matches_generic(cuda, dense, monkeypatch):
    rng = np.random.default_rng(1)
    for rows, cols in [(7, 3), (64, 10), (5, 4096)]:
        z = cuda.asarray(rng.standard_normal((rows, cols)) * 4)
        labels = rng.integers(0, cols, rows)
        target = cuda.asarray(np.eye(cols, dtype=np.float32)[labels] if dense else labels)
        a, c = gn.losses.get("cross_entropy"), gn.losses.get("cross_entropy")
        va = float(a.forward_logits(z, target, cuda))
        monkeypatch.setenv("GPUNN_CUDA_KERNELS", "0")
        vc = float(c.forward_logits(z, target, cuda))
        monkeypatch.delenv("GPUNN_CUDA_KERNELS")
        assert va == pytest.approx(vc, rel=1e-5)
        np.testing.assert_allclose(gn.to_numpy(a.backward()), gn.to_numpy(c.backward()),
                                   atol=1e-7)
        np.testing.assert_allclose(gn.to_numpy(a.output), gn.to_numpy(c.output), atol=1e-6)


def test_optimizer_kernels_match_generic(cuda, monkeypatch):
    """Every fast update the CuPy backend registers, in every dtype it is registered for,
    with every registered optimiser of its rule, against the rule's generic update (which
    runs where the kernels are turned off)."""
    from conftest import optimizers_of_kind

    assert {"sgd", "adam", "rmsprop", "adagrad"} <= set(cuda.fast_updates())
    rng = np.random.default_rng(2)
    for kind, dtypes in sorted(cuda.fast_updates().items()):
        cases = optimizers_of_kind(kind)
        assert cases, f"fast path {kind!r}: no optimiser to test it with"
        for dtype in dtypes:
            be = gn.get_backend(cuda, dtype=dtype)
            assert be.fast_update(kind, be.dtype) is not None
            p0 = rng.standard_normal(1000).astype(dtype)
            grads = [be.asarray(rng.standard_normal(1000).astype(dtype)) for _ in range(3)]
            tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12,
                                                                              atol=1e-13)
            for case, make in cases:
                results = []
                for flag in ("1", "0"):
                    monkeypatch.setenv("GPUNN_CUDA_KERNELS", flag)
                    p, opt = be.asarray(p0.copy()), make()
                    opt.attach([p], be)
                    for g in grads:
                        opt.step([p], [g])
                    results.append(gn.to_numpy(p))
                np.testing.assert_allclose(results[0], results[1], err_msg=case, **tol)


def test_tf32_precision_switch(cuda):
    import cupy

    rng = np.random.default_rng(3)
    a = cupy.asarray(rng.standard_normal((512, 512)), dtype=cupy.float32)
    b = cupy.asarray(rng.standard_normal((512, 512)), dtype=cupy.float32)
    exact = gn.to_numpy(a).astype(np.float64) @ gn.to_numpy(b).astype(np.float64)
    try:
        gn.set_precision("fp32")
        err32 = np.abs(gn.to_numpy(a @ b) - exact).max()
        gn.set_precision("tf32")
        err_tf32 = np.abs(gn.to_numpy(a @ b) - exact).max()
    finally:
        gn.set_precision("fp32")
    assert err32 < 1e-3
    if int(cupy.cuda.Device().compute_capability) >= 80:
        assert err_tf32 > 10 * err32  # tensor cores really ran in TF32


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_training_learns(cuda, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes", reason="ml_dtypes not installed")
        try:
            gn.get_backend(cuda, dtype=dtype)
        except ValueError as exc:
            pytest.skip(str(exc))
    X, y = gn.data.make_spirals(900, classes=3, seed=0)
    model = gn.Sequential([gn.Dense(2, 64, activation="relu"),
                           gn.Dense(64, 64, activation="relu"),
                           gn.Dense(64, 3, activation="softmax")], device=cuda, dtype=dtype,
                          seed=0)
    model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01), epochs=60,
              batch_size=32, verbose=0, seed=0)
    assert model.evaluate(X, y)["accuracy"] >= 0.95
    Xm, ym = gn.data.make_moons(1000, noise=0.15, seed=1)
    moons = gn.Sequential([gn.Dense(2, 32, activation="relu"),
                           gn.Dense(32, 1, activation="sigmoid")], device=cuda, dtype=dtype,
                          seed=0)
    moons.fit(Xm, ym, loss="bce", optimizer=gn.optim.Adam(lr=0.01), epochs=30, verbose=0)
    assert moons.evaluate(Xm, ym)["accuracy"] >= 0.95


def test_adam_kernel_tracks_numpy_tightly(cuda):
    """The CUDA Adam gets its constants rounded once from double, like NumPy's."""
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal(4096).astype(np.float32)
    grads = [rng.standard_normal(4096).astype(np.float32) for _ in range(20)]
    out = []
    for be in (gn.get_backend("cpu"), cuda):
        p, opt = be.asarray(p0.copy()), gn.optim.AdamW(lr=0.01, weight_decay=0.1)
        opt.attach([p], be)
        for g in grads:
            opt.step([p], [be.asarray(g)])
        out.append(gn.to_numpy(p))
    np.testing.assert_allclose(out[1], out[0], rtol=2e-6, atol=1e-7)


def test_second_gpu_gets_everything(cuda):
    import cupy

    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("one GPU: cuda:1 not available")
    X, y = gn.data.make_moons(256, seed=0)
    model = gn.Sequential([gn.Dense(2, 16, activation="relu"),
                           gn.Dense(16, 1, activation="sigmoid")], device="cuda:1", seed=0)
    model.fit(X, y, loss="bce", epochs=2, verbose=0)
    arrays = model.parameters() + model.gradients() + [
        v for s in model.optimizer.state for v in s.values()]
    assert {a.device.id for a in arrays} == {1}


# ---------------------------------------------------------------- the fused step kernels
# (also run on the CPU by tests/test_cuda_emulated.py)
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
    be = gn.get_backend(cuda, dtype="float64")
    rng = np.random.default_rng(0)
    rows, cols = shape
    x, W = be.asarray(rng.standard_normal((rows, 5))), be.asarray(rng.standard_normal((5, cols)))
    b, g = be.asarray(rng.standard_normal(cols)), be.asarray(rng.standard_normal(shape))
    act, params = gn.activations.get(name, **({"alpha": 0.3} if name in (
        "leaky_relu", "elu") else {}))
    act = None if name == "identity" else act
    z, y = be.bias_activation(x, W, b, act or gn.activations.IDENTITY, params)
    def fused():
        out = (be.zeros((5, cols)), be.zeros((cols,)))
        return [gn.to_numpy(a).copy() for a in be.dense_backward(
            x, W, z, y, g + 0, act, params, True, out=out)]

    got = _bits_twice(fused)
    generic = gn.backend.base.Backend.dense_backward(be, x, W, z, y, g + 0, act, params, True)
    for a, c in zip(got, generic):
        np.testing.assert_allclose(a, gn.to_numpy(c), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dense", [False, True], ids=["labels", "one-hot"])
@pytest.mark.parametrize("rows, cols", [(1, 2), (37, 10), (300, 3), (5, 700), (20, 300_000)])
def test_softmax_loss_kernel_does_the_whole_head(cuda, dense, rows, cols):
    """One launch adds the bias, and writes probabilities, dL/dz, the loss into its slot,
    the bias gradient and the count of correct labels; the generic path agrees."""
    rng = np.random.default_rng(rows + cols)
    zw = rng.standard_normal((rows, cols)) * 3
    zw[0, :2] = 5.0  # a tie at the top: the first index wins, as argmax says
    labels = rng.integers(0, cols, rows)
    target = np.zeros((rows, cols))
    target[np.arange(rows), labels] = 1.0
    got = _fused_head(cuda, "softmax", zw, target if dense else labels, count=not dense)
    z = zw + got["bias"]
    value, prob, grad = gn.backend.ops.softmax_cross_entropy(np, z, target)
    _check_head(got, value, prob, grad, z,
                None if dense else np.sum(prob.argmax(axis=1) == labels))


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
    """Mean squared error on an identity output: bias, dL/dz, loss, bias gradient and the
    MAE metric's batch sum in one launch; the output is z itself (no copy)."""
    rng = np.random.default_rng(rows + 7 * cols)
    zw, target = rng.standard_normal((rows, cols)), rng.standard_normal((rows, cols))
    got = _fused_head(cuda, "identity", zw, target, count=True)
    z = zw + got["bias"]
    mae_sum = np.sum(np.mean(np.abs(z - target), axis=1))  # what the MAE metric adds up
    _check_head(got, np.mean((z - target) ** 2), z, 2 * (z - target) / z.size, z, mae_sum)


def _fused_head(cuda, kind, zw, target, count):
    """The backend's fused head on ``zw`` (run twice: the same bits), as a dict."""
    be = gn.get_backend(cuda, dtype="float64")
    cols = zw.shape[1]
    bias = np.random.default_rng(cols).standard_normal(cols)

    def run():
        # The metric slot: a count of correct predictions, or the squared error's MAE sum.
        slot = be.zeros((2,), dtype=be.xp.int64 if kind != "identity" else None)[0]
        bias_grad, loss_slot = be.zeros((cols,)), be.zeros((3,))[1]
        z = be.asarray(zw.copy())  # the kernel adds the bias in place
        out = be.fused_loss(kind, z, be.asarray(target), be.asarray(bias), bias_grad,
                            loss_slot, slot if count else None)
        assert out is not None, "the kernel declined"
        value, prob, grad = out
        assert value is loss_slot  # written into the epoch buffer's slot
        out = [gn.to_numpy(a).copy() for a in (value, prob, grad, bias_grad, z)]
        return out + [np.asarray(float(slot) if count else np.nan)]

    names = ("value", "prob", "grad", "bias_grad", "z", "metric")
    return dict(zip(names, _bits_twice(run)), bias=bias)


def _check_head(got, value, prob, grad, z, metric):
    np.testing.assert_allclose(got["value"], value, rtol=1e-13)
    for name, want in [("prob", prob), ("grad", grad), ("bias_grad", grad.sum(axis=0)),
                       ("z", z)]:
        np.testing.assert_allclose(got[name], want, rtol=1e-12, atol=1e-15, err_msg=name)
    if metric is not None:
        np.testing.assert_allclose(got["metric"], metric, rtol=1e-12)


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
    out = None
    for lo in range(0, 50, 16):
        idx = perm[lo:lo + 16]
        previous = out
        out = be.take_rows((X, T), idx, out)
        if previous is not None and int(idx.shape[0]) == 16:
            assert out[0] is previous[0] and out[1] is previous[1]
        for got, a in zip(out, (X, T)):
            np.testing.assert_array_equal(gn.to_numpy(got), gn.to_numpy(a)[gn.to_numpy(idx)])


CASES = {
    "labels": dict(y="labels", metrics=["accuracy"]),
    "one-hot": dict(y="one-hot", metrics=["accuracy"]),
    "L2 penalty": dict(y="labels", metrics=["accuracy"], kernel_l2=1e-3),
    "skip non-finite": dict(y="labels", metrics=["accuracy"], on_divergence="skip"),
    "sigmoid BCE": dict(y="binary", metrics=["accuracy"]),
    "mse": dict(y="regression", metrics=["mae"]),
    # Sample weights: the generic loss heads (no fused kernel), weights gathered with
    # their rows (three arrays, one take each) or streamed beside them (pinned buffers).
    "weighted labels": dict(y="labels", metrics=["accuracy"], weighted=True),
    "weighted mse streamed": dict(y="regression", metrics=["mae", "r2"], weighted=True,
                                  device_data=False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_fit_on_gpu_matches_cpu(cuda, case):
    """Whole fit runs on the GPU (fused head, fused backward, optimiser kernel) and on
    NumPy from the same weights: the same history and weights, in float64."""
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
                  metrics=spec["metrics"], on_divergence=spec.get("on_divergence", "raise"),
                  device_data=spec.get("device_data"))
    if spec.get("weighted"):
        kwargs["sample_weight"] = np.where(np.arange(len(X)) % 5 == 0, 0.0,
                                           1.0 + np.arange(len(X)) % 3)
        kwargs["class_weight"] = "balanced" if loss == "cross_entropy" else None
    h_cpu = cpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    h_gpu = gpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    for key, values in h_cpu.history.items():
        np.testing.assert_allclose(h_gpu.history[key], values, rtol=1e-9, err_msg=key)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        np.testing.assert_allclose(gn.to_numpy(b), gn.to_numpy(a), rtol=1e-9, atol=1e-12)


class _ScaledMSE(gn.losses.MeanSquaredError):
    """A user's variant of a fused loss: the kernel must not replace its maths."""

    def _value_and_grad(self, xp, pred, target):
        value, grad = super()._value_and_grad(xp, pred, target)
        return 3.0 * value, 3.0 * grad


def test_a_subclassed_loss_keeps_its_own_maths_on_gpu(cuda):
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((48, 4)), rng.standard_normal((48, 1))
    hist = []
    for device in ("cpu", cuda):
        model = gn.Sequential([gn.Dense(4, 8, activation="tanh"), gn.Dense(8, 1)],
                              device=device, dtype="float64", seed=2)
        hist.append(model.fit(X, y, loss=_ScaledMSE(), epochs=2, batch_size=16, verbose=0,
                              seed=0).history["loss"])
    np.testing.assert_allclose(hist[1], hist[0], rtol=1e-9)


# ---------------------------------------------------------------- convolution, pooling, norm
# (also run on the CPU by tests/test_cuda_emulated.py)
#: (input shape, kernel, stride, padding): 1-D and 2-D, batch 1 and more, odd sizes,
#: strides that do not divide the input, rectangular kernels and strides, padding on one
#: axis only, a 1x1 kernel, a kernel as large as the input and windows that tile it.
PATCH_CASES = [
    ((1, 1, 5), (5,), (1,), (0,)),
    ((3, 2, 10), (4,), (3,), (2,)),
    ((2, 3, 9), (3,), (3,), (0,)),
    ((2, 1, 40), (5,), (2,), (1,)),
    ((2, 3, 7, 6), (3, 2), (2, 1), (1, 0)),
    ((1, 2, 5, 5), (3, 3), (2, 2), (1, 1)),
    ((2, 1, 6, 7), (2, 3), (3, 2), (0, 2)),
    ((1, 4, 4, 3), (1, 1), (1, 1), (0, 0)),
    ((2, 2, 6, 4), (2, 2), (2, 2), (0, 0)),
    ((3, 2, 9, 11), (3, 5), (1, 3), (2, 1)),
]
PATCH_IDS = [f"{len(c[0]) - 2}d-{i}" for i, c in enumerate(PATCH_CASES)]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12,
                                                                     atol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", PATCH_CASES, ids=PATCH_IDS)
def test_patch_kernels_match_generic(cuda, case, dtype):
    """im2col's kernel copies exactly what the generic slices cut (same layout, zeros in
    the padding); col2im's gather sums what the generic version adds, the same bits on
    every run."""
    from gpunn.backend.base import Backend

    be = gn.get_backend(cuda, dtype=dtype)
    shape, k, s, p = case
    rng = np.random.default_rng(len(shape) + sum(shape))
    x = be.asarray(rng.standard_normal(shape))
    cols = be.im2col(x, k, s, p)
    np.testing.assert_array_equal(gn.to_numpy(cols), gn.to_numpy(Backend.im2col(be, x, k, s,
                                                                                 p)))
    g = be.asarray(rng.standard_normal(tuple(cols.shape)))
    got = _bits_twice(lambda: [gn.to_numpy(be.col2im(g, shape, k, s, p)).copy()])[0]
    assert got.shape == shape
    np.testing.assert_allclose(got, gn.to_numpy(Backend.col2im(be, g, shape, k, s, p)),
                               **_tol(dtype))


#: Pooling windows: PATCH_CASES without padding, where the window fits the input.
POOL_CASES = [(shape, k, s) for shape, k, s, _ in PATCH_CASES
              if all(d >= kk for d, kk in zip(shape[2:], k))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=[f"{len(c[0]) - 2}d-{i}"
                                                  for i, c in enumerate(POOL_CASES)])
def test_pool_kernels_match_generic(cuda, case, kind, dtype):
    """Max pooling writes each window's maximum and where it lies (the first of tied
    maxima, as argmax) in one pass; its backward gathers the gradients of the windows
    whose maximum each value is; average pooling both ways. Small integers make ties."""
    from gpunn.backend.base import Backend

    be = gn.get_backend(cuda, dtype=dtype)
    shape, k, s = case
    rng = np.random.default_rng(sum(shape))
    x = be.asarray(rng.integers(-2, 3, shape).astype(dtype))
    y, arg = be.pool_forward(x, kind, k, s)
    y0, arg0 = Backend.pool_forward(be, x, kind, k, s)
    np.testing.assert_allclose(gn.to_numpy(y), gn.to_numpy(y0), **_tol(dtype))
    if kind == "max":
        np.testing.assert_array_equal(gn.to_numpy(arg), gn.to_numpy(arg0))
    else:
        assert arg is None and arg0 is None
    g = be.asarray(rng.standard_normal(tuple(y.shape)))
    got = _bits_twice(lambda: [gn.to_numpy(be.pool_backward(g, arg, kind, shape, k,
                                                            s)).copy()])[0]
    np.testing.assert_allclose(got, gn.to_numpy(Backend.pool_backward(be, g, arg0, kind,
                                                                      shape, k, s)),
                               **_tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("shape", [(5, 3), (1, 4, 7), (8, 3, 40), (2, 3, 5, 4), (3, 70, 1, 2),
                                   (9, 2, 999), (4, 3, 45, 41)])
def test_batchnorm_kernels_match_generic(cuda, shape, training, dtype):
    """Statistics, normalised values and output, and the three gradients, with batch
    statistics or with given ones, against the generic path. The last two shapes split
    each channel's values into several chunks (merged by the reduction's last block),
    one of them across samples."""
    from gpunn.backend.base import Backend

    be = gn.get_backend(cuda, dtype=dtype)
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    x = be.asarray(rng.standard_normal(shape) * 3 + 1)
    gamma, beta = be.asarray(rng.standard_normal(c)), be.asarray(rng.standard_normal(c))
    stats = () if training else (be.asarray(rng.standard_normal(c)),
                                 be.asarray(rng.random(c) + 0.5))
    got = be.batchnorm_forward(x, gamma, beta, 1e-5, *stats)
    want = Backend.batchnorm_forward(be, x, gamma, beta, 1e-5, *stats)
    for name, a, b in zip(("y", "xhat", "inv", "mean", "var"), got, want):
        assert tuple(a.shape) == tuple(b.shape), name
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(b), err_msg=name,
                                   **_tol(dtype))
    g = be.asarray(rng.standard_normal(shape))
    grads = _bits_twice(lambda: [gn.to_numpy(a).copy() for a in be.batchnorm_backward(
        g, got[1], gamma, got[2], training)])
    want = Backend.batchnorm_backward(be, g, got[1], gamma, got[2], training)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), grads, want):
        np.testing.assert_allclose(a, gn.to_numpy(b), err_msg=name,
                                   **(_tol(dtype) if dtype == "float64" else
                                      dict(rtol=1e-4, atol=1e-5)))


def _small_cnn(ndim):
    """Convolutions (strided, padded, rectangular), batch and layer normalisation and
    both poolings (and a residual block in 2-D), for inputs ``(batch, 1, 24)`` or
    ``(batch, 2, 9, 8)``."""
    if ndim == 1:
        return [gn.Conv1D(1, 4, 5, stride=2, padding=1, activation="relu"), gn.BatchNorm(4),
                gn.MaxPool1D(2), gn.Conv1D(4, 3, 3, padding=1), gn.AvgPool1D(2, stride=1),
                gn.LayerNorm((3, 4)), gn.Flatten(), gn.Dense(12, 3, activation="softmax")]
    return [gn.Conv2D(2, 4, (3, 2), stride=(1, 2), padding=(1, 0), activation="relu"),
            gn.BatchNorm(4), gn.Residual([gn.Conv2D(4, 4, 3, padding=1, activation="tanh"),
                                          gn.BatchNorm(4)]),
            gn.MaxPool2D((3, 2), stride=(2, 1)), gn.Conv2D(4, 3, 2),
            gn.AvgPool2D(2), gn.Flatten(), gn.LayerNorm(3),
            gn.Dense(3, 3, activation="softmax")]


@pytest.mark.parametrize("ndim", [1, 2])
def test_cnn_layers_on_gpu_match_numpy(cuda, ndim):
    """Convolutions, batch and layer normalisation and both poolings trained by fit on the
    GPU and on NumPy from the same weights, in float64: the same history and weights, and the
    same predictions in inference (running statistics)."""
    rng = np.random.default_rng(ndim)
    X = rng.standard_normal((40, 1, 24) if ndim == 1 else (40, 2, 9, 8))
    y = rng.integers(0, 3, len(X))
    cpu = gn.Sequential(_small_cnn(ndim), device="cpu", dtype="float64", seed=1)
    gpu = gn.Sequential(_small_cnn(ndim), device=cuda, dtype="float64", seed=1)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        b[...] = gpu.backend.asarray(gn.to_numpy(a))
    kwargs = dict(loss="cross_entropy", epochs=2, batch_size=16, verbose=0, seed=0,
                  metrics=["accuracy"])
    h_cpu = cpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    h_gpu = gpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    for key, values in h_cpu.history.items():
        np.testing.assert_allclose(h_gpu.history[key], values, rtol=1e-9, err_msg=key)
    for a, b in zip(cpu.parameters() + cpu.store.buffers(),
                    gpu.parameters() + gpu.store.buffers()):
        np.testing.assert_allclose(gn.to_numpy(b), gn.to_numpy(a), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gn.to_numpy(gpu.predict(X)), gn.to_numpy(cpu.predict(X)),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,k", [((5, 6), 1), ((1, 3, 300), 1), ((2, 3, 4, 5), 2),
                                     ((3, 7), 1)])
def test_layernorm_kernels_match_generic(cuda, shape, k, dtype):
    """Layer normalisation's statistics, normalised values and output (one launch) and
    its gradients (the input's in one launch) against the generic path."""
    from gpunn.backend.base import Backend

    be = gn.get_backend(cuda, dtype=dtype)
    rng = np.random.default_rng(sum(shape))
    x = be.asarray(rng.standard_normal(shape) * 2 - 1)
    gamma = be.asarray(rng.standard_normal(shape[len(shape) - k:]))
    beta = be.asarray(rng.standard_normal(shape[len(shape) - k:]))
    got = be.layernorm_forward(x, gamma, beta, 1e-5)
    want = Backend.layernorm_forward(be, x, gamma, beta, 1e-5)
    for name, a, b in zip(("y", "xhat", "inv"), got, want):
        assert tuple(a.shape) == tuple(b.shape), name
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(b), err_msg=name,
                                   **_tol(dtype))
    g = be.asarray(rng.standard_normal(shape))
    grads = _bits_twice(lambda: [gn.to_numpy(a).copy() for a in be.layernorm_backward(
        g, got[1], gamma, got[2])])
    want = Backend.layernorm_backward(be, g, got[1], gamma, got[2])
    for name, a, b in zip(("dx", "dgamma", "dbeta"), grads, want):
        np.testing.assert_allclose(a, gn.to_numpy(b), err_msg=name,
                                   **(_tol(dtype) if dtype == "float64" else
                                      dict(rtol=1e-4, atol=1e-5)))
