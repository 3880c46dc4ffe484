"""``BatchNorm`` and ``LayerNorm``: PyTorch as the oracle (outputs in both modes, every
gradient, BatchNorm's running statistics after a few steps), central differences in both
modes, shapes and errors naming the layer, learning, buffers through files, devices,
roll-back and resume, and ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from layer_checks import (
    host_arrays,
    moves_between_backends,
    onnx_matches_predict,
    save_and_load,
    torch_or_skip,
)

import gpunn as gn
from gpunn import callbacks as cbs
from gpunn.gradcheck import numerical_gradient

DISTRIBUTED = Path(__file__).parent / "distributed"
sys.path.insert(0, str(DISTRIBUTED))
import batchnorm_cases  # noqa: E402
import mpi_launch  # noqa: E402

SHAPES = [(6, 3), (4, 3, 5), (3, 3, 4, 2)]
IDS = ["NC", "NCL", "NCHW"]


def _randomised(layer, seed=0):
    """gamma and beta away from their 1/0 start, so their gradients matter."""
    rng = np.random.default_rng(seed)
    for key in ("gamma", "beta"):
        p = layer.params[key]
        p[...] = layer.backend.asarray(rng.uniform(0.5, 1.5, tuple(p.shape)) if key == "gamma"
                                       else rng.standard_normal(tuple(p.shape)))
    return layer


# ---------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_batchnorm_matches_pytorch_in_training_and_inference(shape, backend64):
    torch = torch_or_skip()
    C = shape[1]
    layer = _randomised(gn.BatchNorm(C, momentum=0.2, eps=1e-3).build(backend64))
    ref = (torch.nn.BatchNorm1d if len(shape) < 4 else torch.nn.BatchNorm2d)(
        C, momentum=0.2, eps=1e-3).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(gn.to_numpy(layer.params["gamma"])))
        ref.bias.copy_(torch.tensor(gn.to_numpy(layer.params["beta"])))
    rng = np.random.default_rng(1)
    tol = dict(rtol=1e-10, atol=1e-12)
    for _ in range(3):  # a few training steps: the running statistics follow
        x = rng.standard_normal(shape) * 2 + 0.5
        g = rng.standard_normal(shape)
        y = layer.forward(backend64.asarray(x), training=True)
        gx = layer.backward(backend64.asarray(g))
        xt = torch.tensor(x, requires_grad=True)
        ref.train()
        ref.zero_grad()
        yt = ref(xt)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(gn.to_numpy(y), yt.detach().numpy(), **tol)
        np.testing.assert_allclose(gn.to_numpy(gx), xt.grad.numpy(), **tol)
        np.testing.assert_allclose(gn.to_numpy(layer.grads["gamma"]), ref.weight.grad.numpy(),
                                   **tol)
        np.testing.assert_allclose(gn.to_numpy(layer.grads["beta"]), ref.bias.grad.numpy(),
                                   **tol)
    np.testing.assert_allclose(gn.to_numpy(layer.buffers["running_mean"]),
                               ref.running_mean.numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(layer.buffers["running_var"]),
                               ref.running_var.numpy(), **tol)
    # Inference: the running statistics, and gradients through them as constants.
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    y = layer.forward(backend64.asarray(x), training=False)
    gx = layer.backward(backend64.asarray(g))
    ref.eval()
    ref.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(gn.to_numpy(y), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(gx), xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(layer.grads["gamma"]), ref.weight.grad.numpy(), **tol)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_batchnorm_gradients_by_central_differences_in_both_modes(shape):
    be = gn.get_backend("cpu", dtype="float64")
    layer = _randomised(gn.BatchNorm(shape[1]).build(be))
    layer.buffers["running_mean"][...] = 0.3
    layer.buffers["running_var"][...] = 2.0
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(shape), rng.standard_normal(shape)
    for training in (True, False):
        saved = [b.copy() for b in layer.buffers.values()]

        def loss(x_, training=training):
            return float(np.sum(layer.forward(x_, training) * w))

        numeric = numerical_gradient(loss, x)
        layer.forward(x, training)
        analytic = layer.backward(w)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
        for b, s in zip(layer.buffers.values(), saved):
            b[...] = s  # the differences' forwards moved the running statistics
    model = gn.Sequential([gn.Conv2D(2, 3, 1), gn.BatchNorm(3), gn.Flatten()], device="cpu")
    assert gn.gradcheck(model, rng.standard_normal((3, 2, 2, 2))).ok  # inference mode


def test_batchnorm_keeps_running_statistics_as_buffers():
    layer = gn.BatchNorm(4)
    assert layer.param_shapes() == {"gamma": (4,), "beta": (4,)}
    assert layer.buffer_shapes() == {"running_mean": (4,), "running_var": (4,)}
    model = gn.Sequential([gn.Dense(2, 4), layer, gn.Dense(4, 1)], device="cpu", seed=0)
    assert [p for p, _, _ in model.named_buffers()] == ["1.running_mean", "1.running_var"]
    assert len(model.parameters()) == 6  # buffers are not stepped
    X = np.random.default_rng(0).standard_normal((64, 2)) * 3 + 1
    model.fit(X, X[:, 0] - X[:, 1], loss="mse", epochs=2, batch_size=16, verbose=0)
    mean = gn.to_numpy(layer.buffers["running_mean"])
    assert np.all(mean != 0) and np.all(gn.to_numpy(layer.buffers["running_var"]) != 1)
    # Inference uses them: a single row is predicted (a batch of one could not be normalised
    # by its own statistics) and does not move them.
    model.predict(X[:1])
    np.testing.assert_array_equal(gn.to_numpy(layer.buffers["running_mean"]), mean)


def test_batchnorm_errors_name_the_layer_before_anything_changes():
    layer = gn.BatchNorm(3, name="bn").build(gn.get_backend("cpu"))
    with pytest.raises(ValueError, match=r"layer 'bn' .*expected input of shape \(batch, 3, "
                                         r"\*spatial\).*got ndarray of shape \(5, 4\)"):
        layer.forward(np.zeros((5, 4), np.float32), training=True)
    with pytest.raises(ValueError, match=r"layer 'bn' .*more than one value per channel"):
        layer.forward(np.zeros((1, 3), np.float32), training=True)
    assert np.all(layer.buffers["running_var"] == 1) and layer._xhat is None
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): expects inputs of shape "
                                         r"\(batch, 3\), .* the layer before it gives "
                                         r"\(batch, 4\)"):
        gn.Sequential([gn.Dense(2, 4), gn.BatchNorm(3)], device="cpu")
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, 3\), \(batch, 3, "
                                         r"length\) or \(batch, 3, height, width\), the layer "
                                         r"before it gives \(batch, 2, 5\)"):
        gn.BatchNorm(3).output_shape((2, 5))
    for kwargs, match in [(dict(momentum=1.5), "BatchNorm momentum: expected a number in"),
                          (dict(eps=0), "BatchNorm eps: expected a positive number"),
                          (dict(num_features=0), "BatchNorm num_features")]:
        with pytest.raises(ValueError, match=match):
            gn.BatchNorm(**{"num_features": 3, **kwargs})


@pytest.mark.slow
def test_a_cnn_with_batchnorm_learns_digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn not installed")
    digits = datasets.load_digits()
    X, y = (digits.data / 16.0).reshape(-1, 1, 8, 8), digits.target
    model = gn.Sequential([gn.Conv2D(1, 8, 3, padding=1), gn.BatchNorm(8), gn.ReLU(),
                           gn.MaxPool2D(2), gn.Flatten(), gn.Dense(8 * 16, 32),
                           gn.BatchNorm(32), gn.ReLU(),
                           gn.Dense(32, 10, activation="softmax")], device="cpu", seed=0)
    model.fit(X[:1400], y[:1400], loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01),
              epochs=8, batch_size=32, verbose=0, seed=0)
    assert model.evaluate(X[1400:], y[1400:], metrics=["accuracy"])["accuracy"] > 0.9


def _bn_model(seed=0):
    return gn.Sequential([gn.Dense(2, 8), gn.BatchNorm(8), gn.Tanh(),
                          gn.Dense(8, 3, activation="softmax")], device="cpu", seed=seed)


def test_batchnorm_files_devices_roll_back_resume_and_onnx(tmp_path):
    X, y = gn.data.make_spirals(200, seed=0)
    model = _bn_model()
    model.fit(X, y, loss="cross_entropy", epochs=2, verbose=0)
    save_and_load(model, X, tmp_path)
    moves_between_backends(model, X, y, loss="cross_entropy")
    onnx_matches_predict(model, X, tmp_path)
    regression = gn.Sequential([gn.Dense(2, 8), gn.BatchNorm(8), gn.Tanh(), gn.Dense(8, 1)],
                               device="cpu", seed=0)
    regression.fit(X, X[:, :1] * 3.0, loss="mse", epochs=1, verbose=0)
    before = host_arrays(regression)  # a diverging run puts the running statistics back too
    with pytest.raises(gn.TrainingDiverged):
        regression.fit(X, X[:, :1] * 3.0, loss="mse", optimizer=gn.optim.SGD(lr=1e6),
                       epochs=2, verbose=0)
    for a, b in zip(before, host_arrays(regression), strict=True):
        np.testing.assert_array_equal(a, b)
    kwargs = dict(loss="cross_entropy", batch_size=32, verbose=0)
    straight = _bn_model()
    straight.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), epochs=4, seed=3, **kwargs)
    first = _bn_model()
    first.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), epochs=2, seed=3,
              callbacks=[cbs.ModelCheckpoint(str(tmp_path / "c-{epoch}.npz"))], **kwargs)
    resumed = _bn_model(seed=5)
    resumed.fit(X, y, epochs=4, resume_from=tmp_path / "c-2.npz", **kwargs)
    for a, b in zip(host_arrays(straight), host_arrays(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_onnx_on_images(tmp_path):
    model = gn.Sequential([gn.Conv2D(2, 3, 3), gn.BatchNorm(3), gn.ReLU()], device="cpu")
    X = np.random.default_rng(0).standard_normal((8, 2, 5, 6))
    layer = model.layers[1]
    layer.buffers["running_mean"][...] = [0.1, -0.2, 0.3]
    layer.buffers["running_var"][...] = [0.5, 2.0, 1.5]
    assert onnx_matches_predict(model, X, tmp_path).shape == (8, 3, 3, 4)


# ---------------------------------------------------------------------- LayerNorm
@pytest.mark.parametrize("shape,normalized", [((5, 6), 6), ((3, 4, 5), 5),
                                              ((3, 4, 5), (4, 5)), ((2, 3, 2, 4), (2, 4))])
def test_layernorm_matches_pytorch(shape, normalized, backend64):
    torch = torch_or_skip()
    layer = _randomised(gn.LayerNorm(normalized, eps=1e-4).build(backend64))
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    y = layer.forward(backend64.asarray(x), training=True)
    gx = layer.backward(backend64.asarray(g))
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(gn.to_numpy(layer.params["gamma"]), requires_grad=True)
    bt = torch.tensor(gn.to_numpy(layer.params["beta"]), requires_grad=True)
    ns = (normalized,) if isinstance(normalized, int) else normalized
    yt = torch.nn.functional.layer_norm(xt, ns, wt, bt, eps=1e-4)
    yt.backward(torch.tensor(g))
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gn.to_numpy(y), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(gx), xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(layer.grads["gamma"]), wt.grad.numpy(), **tol)
    np.testing.assert_allclose(gn.to_numpy(layer.grads["beta"]), bt.grad.numpy(), **tol)
    same = layer.forward(backend64.asarray(x), training=False)  # no mode difference
    np.testing.assert_array_equal(gn.to_numpy(same), gn.to_numpy(y))


def test_layernorm_gradcheck_shapes_and_errors():
    rng = np.random.default_rng(4)
    model = gn.Sequential([gn.Conv1D(2, 3, 2), gn.LayerNorm((3, 4)), gn.Flatten(),
                           gn.Dense(12, 2)], device="cpu", seed=0)
    _randomised(model.layers[1])
    assert gn.gradcheck(model, rng.standard_normal((3, 2, 5))).ok
    assert gn.LayerNorm((3, 4)).output_shape((3, 4)) == (3, 4)
    assert gn.LayerNorm(4).param_shapes() == {"gamma": (4,), "beta": (4,)}
    with pytest.raises(ValueError, match=r"LayerNorm\(\(3, 4\)\): expects inputs whose "
                                         r"last axes are \(3, 4\), the layer before it gives "
                                         r"\(batch, 4, 3\)"):
        gn.LayerNorm((3, 4)).output_shape((4, 3))
    with pytest.raises(ValueError, match="do not chain|expects inputs whose last axes"):
        gn.Sequential([gn.Dense(2, 5), gn.LayerNorm(4)], device="cpu")
    layer = gn.LayerNorm(4, name="ln").build(gn.get_backend("cpu"))
    with pytest.raises(ValueError, match=r"layer 'ln' .*expected input of shape \(batch, "
                                         r"\.\.\., 4\), got ndarray of shape \(2, 5\)"):
        layer.forward(np.zeros((2, 5), np.float32))
    for bad in (0, (), (2, -1), "4", 2.0):
        with pytest.raises(ValueError, match="LayerNorm normalized_shape"):
            gn.LayerNorm(bad)
    with pytest.raises(ValueError, match="LayerNorm eps"):
        gn.LayerNorm(4, eps=-1.0)


def test_layernorm_trains_saves_moves_and_exports(tmp_path):
    X, y = gn.data.make_spirals(300, seed=0)
    model = gn.Sequential([gn.Dense(2, 16, activation="tanh"), gn.LayerNorm(16),
                           gn.Dense(16, 16, activation="relu"), gn.LayerNorm(16),
                           gn.Dense(16, 3, activation="softmax")], device="cpu", seed=0)
    hist = model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01), epochs=40,
                     batch_size=32, verbose=0, seed=0)
    assert hist.history["accuracy"][-1] > 0.9
    save_and_load(model, X, tmp_path)
    moves_between_backends(model, X, y, loss="cross_entropy")
    onnx_matches_predict(model, X, tmp_path)
    pytest.importorskip("onnx", reason="onnx not installed")
    with pytest.raises(ValueError, match=r"to_onnx: layer 'layernorm_1' \(LayerNorm\(16\)\) "
                                         r"needs LayerNormalization, an operator of opset 17"):
        model.to_onnx(tmp_path / "old.onnx", opset=13)
    assert not (tmp_path / "old.onnx").exists()
    images = gn.Sequential([gn.Conv2D(1, 2, 3), gn.LayerNorm((2, 3, 3))], device="cpu")
    _randomised(images.layers[1])
    onnx_matches_predict(images, np.random.default_rng(0).standard_normal((4, 1, 5, 5)),
                         tmp_path)


# ---------------------------------------------------------------------- several ranks
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """tests/distributed/batchnorm_cases.py trained on 2 MPI ranks (skipped, saying why,
    without mpi4py or mpiexec)."""
    mpi_launch.mpiexec()
    out = tmp_path_factory.mktemp("bn-ranks")
    proc = mpi_launch.launch([DISTRIBUTED / "batchnorm_cases.py", out])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sync", "sync-tail", "sync-weighted"])
def test_two_ranks_at_half_batch_normalise_as_one_process_at_the_whole_batch(two_ranks, name):
    """Statistics summed over the ranks: parameters, running statistics and losses equal
    one process's (float64), the ranks equal each other; a rank running a weight-0
    stand-in row (tail) and sample weights included."""
    model, hist = batchnorm_cases.train(name)
    ranks = [np.load(two_ranks / f"{name}-rank{r}.npz") for r in range(2)]
    assert np.array_equal(ranks[0]["arrays"], ranks[1]["arrays"])
    np.testing.assert_allclose(ranks[0]["arrays"], batchnorm_cases.arrays(model), rtol=0,
                               atol=1e-10)
    np.testing.assert_allclose(ranks[0]["loss"], hist.history["loss"], rtol=0, atol=1e-10)


@pytest.mark.slow
def test_unsynchronised_ranks_keep_running_statistics_of_their_own_rows(two_ranks):
    ranks = [np.load(two_ranks / f"local-rank{r}.npz") for r in range(2)]
    assert not np.allclose(ranks[0]["arrays"], ranks[1]["arrays"])
    assert gn.BatchNorm(3, sync=False).get_config()["sync"] is False
    assert "sync" not in gn.BatchNorm(3).get_config()
    with pytest.raises(ValueError, match="BatchNorm sync: expected True or False"):
        gn.BatchNorm(3, sync="yes")
