"""Pooling layers: PyTorch's ``max_pool``/``avg_pool``/``adaptive_avg_pool`` as the
oracle, central differences (max pooling on inputs without ties), shape inference and
errors naming the layer, a CNN that learns, files, devices and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
from layer_checks import (
    moves_between_backends,
    onnx_matches_predict,
    save_and_load,
    torch_or_skip,
)

import gpunn as gn
from gpunn.layers import ANY_SIZE

#: (class name, torch function name, input shape, kernel_size, stride)
CASES = [
    ("MaxPool1D", "max_pool1d", (2, 3, 9), 3, 2),
    ("MaxPool1D", "max_pool1d", (1, 2, 8), 2, None),
    ("AvgPool1D", "avg_pool1d", (2, 3, 9), 3, 2),
    ("AvgPool1D", "avg_pool1d", (2, 2, 7), 2, None),
    ("MaxPool2D", "max_pool2d", (2, 3, 7, 6), (3, 2), (2, 1)),
    ("MaxPool2D", "max_pool2d", (2, 2, 8, 8), 2, None),
    ("AvgPool2D", "avg_pool2d", (2, 3, 7, 6), (3, 2), (2, 1)),
    ("AvgPool2D", "avg_pool2d", (1, 2, 5, 7), 2, None),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def _distinct(shape, seed=0):
    """Values without ties (a permutation, scaled): max pooling is differentiable there."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) / 10.0 - 1.0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_output_and_input_gradient_match_pytorch(case, backend64):
    torch = torch_or_skip()
    name, fn, shape, k, s = case
    layer = getattr(gn, name)(k, s).build(backend64)
    x = _distinct(shape)
    y = layer.forward(backend64.asarray(x), training=True)
    g = np.random.default_rng(1).standard_normal(tuple(y.shape))
    gx = layer.backward(backend64.asarray(g))
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn.functional, fn)(xt, k, s)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(gn.to_numpy(y), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gn.to_numpy(gx), xt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5)])
def test_global_average_pooling_matches_pytorch(shape, backend64):
    torch = torch_or_skip()
    layer = gn.GlobalAvgPool().build(backend64)
    x = np.random.default_rng(0).standard_normal(shape)
    y = layer.forward(backend64.asarray(x), training=True)
    g = np.random.default_rng(1).standard_normal((2, 3))
    gx = layer.backward(backend64.asarray(g))
    xt = torch.tensor(x, requires_grad=True)
    pool = torch.nn.functional.adaptive_avg_pool1d if len(shape) == 3 else \
        torch.nn.functional.adaptive_avg_pool2d
    yt = pool(xt, 1).flatten(1)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(gn.to_numpy(y), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gn.to_numpy(gx), xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4], CASES[6]],
                         ids=[IDS[0], IDS[2], IDS[4], IDS[6]])
def test_gradcheck(case):
    name, _, shape, k, s = case
    # A convolution first, so the parameters before the pool are checked too.
    conv = (gn.Conv1D if len(shape) == 3 else gn.Conv2D)(shape[1], 2, 1)
    model = gn.Sequential([conv, getattr(gn, name)(k, s), gn.Flatten()], device="cpu", seed=0)
    result = gn.gradcheck(model, _distinct(shape, seed=3))
    assert result.ok, result
    assert gn.gradcheck(gn.Sequential([gn.Conv2D(2, 3, 1), gn.GlobalAvgPool()], device="cpu"),
                        _distinct((2, 2, 3, 4))).ok


def test_max_pooling_sends_a_tied_window_gradient_to_its_first_maximum():
    layer = gn.MaxPool2D(2).build(gn.get_backend("cpu", dtype="float64"))
    x = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])
    layer.forward(x, training=True)
    np.testing.assert_array_equal(layer.backward(np.array([[[[5.0]]]])),
                                  [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_shapes_are_inferred_and_stride_defaults_to_the_kernel():
    pool = gn.MaxPool2D((3, 2))
    assert pool.stride == (3, 2)
    assert pool.input_shape() == (ANY_SIZE, ANY_SIZE, ANY_SIZE)
    assert pool.output_shape((4, 7, 6)) == (4, 2, 3)
    assert gn.AvgPool1D(3, stride=2).output_shape((5, 9)) == (5, 4)
    assert gn.MaxPool2D(2).output_shape((4, ANY_SIZE, 8)) == (4, ANY_SIZE, 4)
    assert gn.GlobalAvgPool().output_shape((6, 3, 3)) == (6,)
    assert gn.GlobalAvgPool().output_shape(None) == (ANY_SIZE,)
    model = gn.Sequential([gn.Conv2D(1, 4, 3), gn.MaxPool2D(2), gn.Flatten(),
                           gn.Dense(144, 2)], device="cpu")
    assert model.output_shape((1, 14, 14)) == (2,)
    assert model.layers[2].output_shape(model.layers[1].output_shape((4, 12, 12))) == (144,)
    with pytest.raises(ValueError, match=r"Dense\(144, 2\)\): expects inputs of shape "
                                         r"\(batch, 144\), the layer before it gives "
                                         r"\(batch, 196\)"):
        model.output_shape((1, 16, 16))


def test_inputs_that_do_not_fit_are_refused_naming_the_layer():
    with pytest.raises(ValueError, match=r"MaxPool2D\(\(3, 3\)\): an input of shape \(batch, 1, 2, "
                                         r"8\) is too small for the kernel: its height is 2"):
        gn.Sequential([gn.Reshape((1, 2, 8)), gn.MaxPool2D(3)], device="cpu")
    with pytest.raises(ValueError, match=r"\(AvgPool1D\(2\)\) expects inputs of shape \(batch, "
                                         r"\?, \?\), but layer 0 .* outputs \(batch, 2, 2, 2\)"):
        gn.Sequential([gn.Reshape((2, 2, 2)), gn.AvgPool1D(2)], device="cpu")
    with pytest.raises(ValueError, match=r"AvgPool1D\(2\): expects inputs of shape \(batch, "
                                         r"channels, length\), the layer before it gives "
                                         r"\(batch, 2, 2, 2\)"):
        gn.AvgPool1D(2).output_shape((2, 2, 2))
    layer = gn.MaxPool1D(4, name="p").build(gn.get_backend("cpu"))
    with pytest.raises(ValueError, match=r"layer 'p' .*expected input of shape \(batch, "
                                         r"channels, length\), got ndarray of shape \(3, 4\)"):
        layer.forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"layer 'p' .*too small for the kernel: its length "
                                         r"is 3, less than the kernel's 4"):
        layer.forward(np.zeros((3, 1, 3)))
    with pytest.raises(ValueError, match=r"GlobalAvgPool\(\): expected input of shape "
                                         r"\(batch, channels, \*spatial\)"):
        gn.GlobalAvgPool().build(gn.get_backend("cpu")).forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="MaxPool2D stride: expected a positive integer"):
        gn.MaxPool2D(2, stride=0)
    with pytest.raises(ValueError, match="AvgPool1D kernel_size"):
        gn.AvgPool1D((2, 2))


def _digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn not installed")
    digits = datasets.load_digits()
    return (digits.data / 16.0).reshape(-1, 1, 8, 8), digits.target


@pytest.mark.slow
def test_a_cnn_with_pooling_learns_digits():
    X, y = _digits()
    model = gn.Sequential([gn.Conv2D(1, 16, 3, padding=1, activation="relu"),
                           gn.MaxPool2D(2),
                           gn.Conv2D(16, 16, 3, padding=1, activation="relu"),
                           gn.AvgPool2D(2), gn.Flatten(),
                           gn.Dense(16 * 2 * 2, 10, activation="softmax")], device="cpu", seed=0)
    model.fit(X[:1400], y[:1400], loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01),
              epochs=10, batch_size=32, verbose=0, seed=0)
    assert model.evaluate(X[1400:], y[1400:], metrics=["accuracy"])["accuracy"] > 0.9


def test_files_devices_and_onnx(tmp_path):
    X, y = _digits()
    X, y = X[:96], y[:96]
    model = gn.Sequential([gn.Conv2D(1, 4, 3, padding=1, activation="relu"),
                           gn.MaxPool2D(2), gn.AvgPool2D(2, stride=1), gn.Conv2D(4, 4, 1),
                           gn.GlobalAvgPool(), gn.Dense(4, 10, activation="softmax")],
                          device="cpu", seed=0)
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    save_and_load(model, X, tmp_path)
    moves_between_backends(model, X, y, loss="cross_entropy")
    onnx_matches_predict(model, X, tmp_path)
    signals = np.random.default_rng(0).standard_normal((5, 2, 11))
    one_d = gn.Sequential([gn.Conv1D(2, 3, 2), gn.MaxPool1D(3, stride=2), gn.AvgPool1D(2)],
                          device="cpu", seed=0)
    assert onnx_matches_predict(one_d, signals, tmp_path).shape == (5, 3, 2)
    save_and_load(one_d, signals, tmp_path, "one_d.npz")
