"""``Conv1D`` and ``Conv2D``: PyTorch's ``conv1d``/``conv2d`` as the oracle for the output
and every gradient, central differences always, the patch operations' NumPy fast path
against the generic one, shape inference and errors naming the layer, learning, files,
devices and ONNX."""

from __future__ import annotations

import fake_cupy
import numpy as np
import pytest
from conftest import make_backend
from layer_checks import (
    moves_between_backends,
    onnx_matches_predict,
    save_and_load,
    torch_or_skip,
)

import gpunn as gn
from gpunn.backend import Backend
from gpunn.layers import ANY_SIZE

#: (ndim, input shape, kernel_size, stride, padding): odd sizes, strides that do not divide
#: the input, asymmetric 2-D settings, a 1x1 kernel, a kernel as large as the input and
#: windows that tile it.
CASES = [
    (1, (2, 3, 9), 3, 1, 0),
    (1, (3, 2, 10), 4, 3, 2),
    (1, (1, 1, 5), 5, 1, 0),
    (2, (2, 3, 7, 6), (3, 2), (2, 1), (1, 0)),
    (2, (2, 2, 5, 5), 3, 2, 1),
    (2, (1, 4, 4, 3), 1, 1, 0),
    (2, (2, 1, 6, 7), (2, 3), (3, 2), (0, 2)),
    # Windows tiling the input exactly (NumPy's col2im rearranges instead of adding).
    (1, (2, 3, 9), 3, 3, 0),
    (2, (2, 2, 6, 4), 2, 2, 0),
]


def _layer(nd, shape, k, s, p, activation=None, out_channels=4):
    cls = gn.Conv1D if nd == 1 else gn.Conv2D
    return cls(shape[1], out_channels, k, stride=s, padding=p, activation=activation)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}d-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_output_and_gradients_match_pytorch(case, activation, backend64):
    torch = torch_or_skip()
    F = torch.nn.functional
    nd, shape, k, s, p = case
    layer = _layer(nd, shape, k, s, p, activation).build(backend64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    y = layer.forward(backend64.asarray(x), training=True)
    g = rng.standard_normal(tuple(y.shape))
    gx = layer.backward(backend64.asarray(g))

    xt = torch.tensor(x, requires_grad=True)
    Wt = torch.tensor(gn.to_numpy(layer.params["W"]), requires_grad=True)
    bt = torch.tensor(gn.to_numpy(layer.params["b"]), requires_grad=True)
    conv = F.conv1d if nd == 1 else F.conv2d
    yt = conv(xt, Wt, bt, stride=s, padding=p)
    yt = F.relu(yt) if activation else yt
    yt.backward(torch.tensor(g))
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gn.to_numpy(y), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(gx), xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(layer.grads["W"]), Wt.grad.numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(layer.grads["b"]), bt.grad.numpy(), **tol)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6]], ids=["1d", "2d", "2d-pad"])
def test_gradcheck(case):
    nd, shape, k, s, p = case
    model = gn.Sequential([_layer(nd, shape, k, s, p, "tanh", out_channels=2), gn.Flatten()],
                          device="cpu", seed=0)
    x = np.random.default_rng(1).standard_normal(shape)
    result = gn.gradcheck(model, x)
    assert result.ok, result


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}d-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_patch_operations_match_the_generic_ones(case, dtype):
    """The fast path (strided views) against the standard-only slicing and stacking."""
    nd, shape, k, s, p = case
    be = gn.get_backend("cpu", dtype=dtype)
    k, s, p = (tuple(v) if isinstance(v, tuple) else (v,) * nd for v in (k, s, p))
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    fast, generic = be.im2col(x, k, s, p), Backend.im2col(be, be.asarray(x), k, s, p)
    assert fast.shape == generic.shape and fast.dtype == generic.dtype
    np.testing.assert_array_equal(fast, np.asarray(generic))
    g = rng.standard_normal(fast.shape).astype(dtype)
    fast_g = be.col2im(g, shape, k, s, p)
    generic_g = Backend.col2im(be, be.asarray(g), shape, k, s, p)
    assert fast_g.shape == shape and fast_g.dtype == np.dtype(dtype)
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(fast_g, np.asarray(generic_g), rtol=16 * eps, atol=16 * eps)
    # col2im is im2col's adjoint: <im2col(x), g> == <x, col2im(g)>.
    np.testing.assert_allclose(np.sum(fast.astype(float) * g), np.sum(x * fast_g.astype(float)),
                               rtol=1e-4 if dtype == "float32" else 1e-12)


def test_the_generic_patches_run_on_array_api_strict():
    strict = make_backend("array_api_strict", dtype="float64")
    be = gn.get_backend("cpu", dtype="float64")
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 5))
    args = ((3, 2), (2, 2), (1, 1))
    cols = strict.im2col(strict.asarray(x), *args)
    np.testing.assert_array_equal(gn.to_numpy(cols), be.im2col(x, *args))
    back = strict.col2im(cols, x.shape, *args)
    np.testing.assert_allclose(gn.to_numpy(back), be.col2im(gn.to_numpy(cols), x.shape, *args))


def test_weights_are_laid_out_and_initialised_like_pytorch():
    layer = gn.Conv2D(3, 16, (3, 5), activation="relu").build(gn.get_backend("cpu", seed=0))
    assert layer.param_shapes() == {"W": (16, 3, 3, 5), "b": (16,)}
    W = gn.to_numpy(layer.params["W"])
    assert W.shape == (16, 3, 3, 5) and not np.any(gn.to_numpy(layer.params["b"]))
    assert layer.init == "he" and abs(W.std() - np.sqrt(2 / 45)) < 0.02  # fan_in 3*3*5
    xavier = gn.Conv1D(4, 8, 3).build(gn.get_backend("cpu", seed=0))
    limit = np.sqrt(6 / (4 * 3 + 8 * 3))
    assert xavier.init == "xavier" and np.abs(gn.to_numpy(xavier.params["W"])).max() <= limit


def test_output_shapes_are_inferred():
    conv = gn.Conv2D(3, 8, (3, 2), stride=(2, 1), padding=(1, 0))
    assert conv.input_shape() == (3, ANY_SIZE, ANY_SIZE)
    assert conv.output_shape((3, 7, 6)) == (8, 4, 5)
    assert conv.output_shape((3, ANY_SIZE, 6)) == (8, ANY_SIZE, 5)
    assert gn.Conv1D(2, 5, 4, stride=3, padding=2).output_shape((2, 10)) == (5, 4)
    model = gn.Sequential([gn.Reshape((1, 40)), gn.Conv1D(1, 4, 5, stride=5), gn.Flatten(),
                           gn.Dense(32, 2)], device="cpu")
    assert model.layers[2].output_shape((4, 8)) == (32,)
    assert model.output_dim == 2


def test_inputs_that_do_not_fit_are_refused_naming_the_layer():
    with pytest.raises(ValueError, match=r"Conv2D\(1, 4, \(3, 3\)\): an input of shape "
                                         r"\(batch, 1, 2, 8\) is too small for the kernel"):
        gn.Sequential([gn.Reshape((1, 2, 8)), gn.Conv2D(1, 4, 3)], device="cpu")
    with pytest.raises(ValueError, match=r"Conv2D\(3, 4, \(3, 3\)\)\) expects inputs of shape "
                                         r"\(batch, 3, \?, \?\), but layer 0 .* outputs "
                                         r"\(batch, 1, 4, 4\)"):
        gn.Sequential([gn.Reshape((1, 4, 4)), gn.Conv2D(3, 4, 3)], device="cpu")
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, 3, height, "
                                         r"width\), the layer before it gives \(batch, 1, 4, 4\)"):
        gn.Conv2D(3, 4, 3).output_shape((1, 4, 4))
    model = gn.Sequential([gn.Conv1D(2, 3, 4, name="c"), gn.Flatten()], device="cpu")
    with pytest.raises(ValueError, match=r"layer 'c' .*: an input of shape \(5, 2, 3\) is too "
                                         r"small for the kernel: its length is 3, less than "
                                         r"the kernel's 4"):
        model.forward(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"X: the first layer layer 'c' .* expects samples of "
                                         r"shape \(2, \?\)"):
        model.predict(np.zeros((5, 3, 8)))
    layer = model.layers[0]
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 2, length\), got"):
        layer.forward(layer.backend.asarray(np.zeros((5, 3, 8))))
    assert layer._cache is None  # nothing kept from a refused batch


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel_size=0), "Conv2D kernel_size: expected a positive integer or a sequence of 2"),
    (dict(kernel_size=(3, 3, 3)), "Conv2D kernel_size"),
    (dict(kernel_size=3, stride=(1, 0)), "Conv2D stride"),
    (dict(kernel_size=3, padding=-1), r"Conv2D padding: expected an integer >= 0"),
    (dict(kernel_size=3, activation="nope"), "unknown activation"),
    (dict(kernel_size=3, init="nope"), "unknown initialiser"),
])
def test_bad_settings_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gn.Conv2D(1, 2, **kwargs)
    with pytest.raises(ValueError, match="Conv1D in_channels"):
        gn.Conv1D(0, 2, 3)


def _signals(n=300, seed=0):
    """Three classes of 1-D signals: a rising edge, a falling edge, a bump; noisy."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.linspace(-1, 1, 24)
    base = np.stack([np.tanh(6 * t), -np.tanh(6 * t), np.exp(-20 * t * t)])
    shift = rng.integers(-4, 5, n)
    X = np.stack([np.roll(base[c], s) for c, s in zip(y, shift)])
    return (X + 0.3 * rng.standard_normal(X.shape))[:, None, :], y


def test_a_small_conv1d_net_learns_shifted_shapes():
    X, y = _signals()
    model = gn.Sequential([gn.Conv1D(1, 6, 5, activation="relu"),
                           gn.Conv1D(6, 6, 3, stride=2, padding=1, activation="relu"),
                           gn.Flatten(), gn.Dense(6 * 10, 3, activation="softmax")],
                          device="cpu", seed=0)
    hist = model.fit(X[:240], y[:240], loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01),
                     epochs=15, batch_size=32, verbose=0, seed=0)
    assert hist.history["accuracy"][-1] > 0.95
    assert model.evaluate(X[240:], y[240:], metrics=["accuracy"])["accuracy"] > 0.9


@pytest.mark.slow
def test_a_tiny_cnn_learns_digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn not installed")
    digits = datasets.load_digits()
    X, y = (digits.data / 16.0).reshape(-1, 1, 8, 8), digits.target
    model = gn.Sequential([gn.Conv2D(1, 8, 3, padding=1, activation="relu"),
                           gn.Conv2D(8, 8, 3, stride=2, activation="relu"), gn.Flatten(),
                           gn.Dense(8 * 3 * 3, 10, activation="softmax")], device="cpu", seed=0)
    model.fit(X[:1400], y[:1400], loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01),
              epochs=15, batch_size=32, verbose=0, seed=0)
    assert model.evaluate(X[1400:], y[1400:], metrics=["accuracy"])["accuracy"] > 0.9


def test_files_devices_and_onnx(tmp_path):
    X, y = _signals(80)
    model = gn.Sequential([gn.Conv1D(1, 3, 5, stride=2, padding=2, activation="relu"),
                           gn.Conv1D(3, 2, 3, activation="softmax"), gn.Flatten(),
                           gn.Dense(20, 3, activation="softmax")], device="cpu", seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=2, verbose=0)
    save_and_load(model, X, tmp_path)
    moves_between_backends(model, X, y, loss="cross_entropy")
    onnx_matches_predict(model, X, tmp_path)
    X2 = np.random.default_rng(0).standard_normal((4, 2, 7, 6))
    model2 = gn.Sequential([gn.Conv2D(2, 3, (3, 2), stride=(2, 1), padding=(1, 0),
                                      activation="tanh")], device="cpu", seed=0)
    out = onnx_matches_predict(model2, X2, tmp_path)
    assert out.shape == (4, 3, 4, 5)
    again = save_and_load(model2, X2, tmp_path, "c2.npz")
    assert again.layers[0].get_config()["kernel_size"] == [3, 2]


@pytest.mark.parametrize("device", ["cpu", "generic"])
def test_the_first_layer_skips_its_input_gradient(monkeypatch, device):
    """fit never computes the gradient of the data: a first convolution asks its backend
    for no input gradient, and the generic backend then never calls col2im."""
    backend = make_backend("numpy") if device == "cpu" else Backend(
        make_backend("numpy").xp, device="cpu", seed=0)
    model = gn.Sequential([gn.Conv2D(1, 2, 3), gn.Conv2D(2, 1, 1), gn.Flatten(),
                           gn.Dense(4, 1)], device=backend)
    X = np.random.default_rng(0).standard_normal((6, 1, 4, 4))
    asked, conv_backward, col2im = [], backend.conv_backward, backend.col2im

    def record(cache, W, *args, **kwargs):
        asked.append((int(W.shape[1]), args[-1]))
        return conv_backward(cache, W, *args, **kwargs)

    def counted(cols, shape, *args):
        assert shape[1] != 1, "col2im called for the model's input"
        return col2im(cols, shape, *args)

    monkeypatch.setattr(backend, "conv_backward", record)
    monkeypatch.setattr(backend, "col2im", counted)
    hist = model.fit(X, X[:, 0, 0, 0], loss="mse", epochs=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    assert set(asked) == {(2, True), (1, False)}  # (in_channels, need_input_grad)


def test_a_training_step_holds_at_most_twice_its_activations_and_patches():
    """NumPy's convolution reuses its patch and padding buffers: one forward and backward
    pass of a LeNet-style network allocates (traced) at most twice what its activations
    (each layer's output) and patch matrices need."""
    import tracemalloc

    layers = [gn.Conv2D(1, 6, 5, padding=2, activation="relu"), gn.MaxPool2D(2),
              gn.Conv2D(6, 16, 5, activation="relu"), gn.MaxPool2D(2), gn.Flatten(),
              gn.Dense(400, 84, activation="relu"), gn.Dense(84, 10, activation="softmax")]
    model = gn.Sequential(layers, device="cpu", seed=0)
    n = 32
    X = np.random.default_rng(0).standard_normal((n, 1, 28, 28)).astype(np.float32)
    need, shape = 0, (1, 28, 28)
    for layer in model.layers:
        out = layer.output_shape(shape)
        need += n * int(np.prod(out)) * 4
        if isinstance(layer, gn.Conv2D):
            need += n * int(np.prod(out[1:])) * layer.in_channels * 25 * 4
        shape = out
    grad = np.full((n, 10), 0.01, np.float32)
    model.backward(model.forward(X, training=True) * 0 + grad)  # warm: buffers exist
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model.backward(model.forward(X, training=True) * 0 + grad)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak <= 2 * need, (peak, need)


def test_a_cnn_trains_on_the_cupy_stand_in_and_stays_on_its_device(monkeypatch):
    """The generic patches, pooling and normalisation on the CuPy stand-in's cuda:1: every
    array is allocated there (the stand-in refuses work mixing devices)."""
    with fake_cupy.installed(monkeypatch):
        X, y = _signals(64)
        model = gn.Sequential([gn.Conv1D(1, 4, 3, padding=1), gn.BatchNorm(4), gn.ReLU(),
                               gn.MaxPool1D(2), gn.AvgPool1D(2), gn.Conv1D(4, 2, 1),
                               gn.GlobalAvgPool(), gn.Dense(2, 3, activation="softmax")],
                              device="cuda:1", seed=0)
        hist = model.fit(X, y, loss="cross_entropy", epochs=2, batch_size=16, verbose=0)
        assert np.all(np.isfinite(hist.history["loss"]))
        arrays = model.parameters() + model.gradients() + model.store.buffers()
        assert {a._dev for a in arrays} == {1}
        assert model.predict(X)._dev == 1
