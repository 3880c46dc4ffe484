"""``Flatten`` and ``Reshape``: per-sample shapes, their inference along a model, errors
that name the layer, gradients, files, devices and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
from layer_checks import moves_between_backends, onnx_matches_predict, save_and_load

import gpunn as gn
from gpunn.layers import ANY_SIZE


def _model(device="cpu", seed=0):
    """(N, 12) -> Reshape (3, 4) -> Flatten -> Dense -> 3 classes."""
    return gn.Sequential([gn.Dense(12, 12, activation="tanh"), gn.Reshape((3, 4)),
                          gn.Flatten(), gn.Dense(12, 3, activation="softmax")],
                         device=device, seed=seed)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12))
    return X, (X[:, :4].sum(axis=1) > 0).astype(int) + (X[:, 4] > 1)


def test_forward_and_backward_are_reshapes(backend):
    x = backend.asarray(np.arange(24.0).reshape(2, 3, 4))
    flat = gn.Flatten().build(backend)
    y = flat.forward(x)
    assert tuple(y.shape) == (2, 12)
    np.testing.assert_array_equal(gn.to_numpy(y), np.arange(24.0).reshape(2, 12))
    assert tuple(flat.backward(y).shape) == (2, 3, 4)
    reshape = gn.Reshape((2, -1)).build(backend)
    z = reshape.forward(y)
    assert tuple(z.shape) == (2, 2, 6)
    np.testing.assert_array_equal(gn.to_numpy(reshape.backward(z)), gn.to_numpy(y))


def test_shapes_are_inferred_along_the_model():
    model = gn.Sequential([gn.Reshape((1, 40)), gn.Flatten(), gn.Dense(40, 2)], device="cpu")
    assert model.layers[0].output_shape((40,)) == (1, 40)
    assert model.layers[0].output_shape((4, 10)) == (1, 40)
    assert model.layers[1].output_shape((1, 40)) == (40,)
    assert gn.Reshape((-1, 4)).output_shape((2, 6)) == (3, 4)
    assert gn.Flatten().output_shape((2, ANY_SIZE)) == (ANY_SIZE,)
    assert gn.Reshape((-1, 4)).output_shape(None) == (ANY_SIZE, 4)
    assert model.output_shape((40,)) == (2,)
    assert "(batch, 1, 40)" in model.summary(print_fn=None)


def test_sizes_that_do_not_match_name_the_layer():
    with pytest.raises(ValueError, match=r"Reshape\(\(3, 4\)\).*cannot reshape inputs of "
                                         r"shape \(batch, 10\).*10 values.*12 values"):
        gn.Sequential([gn.Dense(3, 10), gn.Reshape((3, 4))], device="cpu")
    with pytest.raises(ValueError, match=r"not a multiple of 4"):
        gn.Sequential([gn.Dense(3, 10), gn.Reshape((-1, 4))], device="cpu")
    layer = gn.Reshape((1, 40), name="to_channels").build(gn.get_backend("cpu"))
    with pytest.raises(ValueError, match=r"'to_channels'.*input of shape \(5, 39\)"):
        layer.forward(np.zeros((5, 39)))
    assert layer._shape is None  # refused before anything was kept


@pytest.mark.parametrize("bad", [(), (0, 4), (-1, -1), (2.5,), "3", (True,), None])
def test_bad_target_shapes_are_refused(bad):
    with pytest.raises(ValueError, match="Reshape shape: expected a per-sample shape"):
        gn.Reshape(bad)


def test_a_flat_input_reshaped_trains_and_passes_gradcheck():
    X, y = _data()
    model = _model()
    hist = model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.02),
                     epochs=30, batch_size=16, verbose=0, seed=0)
    assert hist.history["accuracy"][-1] > 0.9
    assert gn.gradcheck(model, X[:4]).ok


def test_files_devices_and_onnx(tmp_path):
    X, y = _data()
    model = _model()
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    save_and_load(model, X, tmp_path)
    moves_between_backends(model, X, y, loss="cross_entropy")
    onnx_matches_predict(model, X, tmp_path)


def test_onnx_keeps_a_reshaped_output(tmp_path):
    model = gn.Sequential([gn.Dense(6, 6), gn.Reshape((2, 3))], device="cpu", seed=0)
    out = onnx_matches_predict(model, np.random.default_rng(0).standard_normal((5, 6)),
                               tmp_path)
    assert out.shape == (5, 2, 3)
