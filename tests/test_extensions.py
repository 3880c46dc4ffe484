"""What a new layer or loss costs: one file outside the package (tests/extensions/), which
then trains, passes gradcheck, saves and loads, moves between devices, survives roll-back
and resume, and exports to ONNX or is refused there by name. Blocks of such layers nest.
(The optimiser's case, Lion, is tests/test_extensions_optim.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_backend
from extensions.layernorm import LayerNorm
from extensions.logcosh import LogCosh
from extensions.running_center import RunningCenter

import gpunn as gn
from gpunn import callbacks as cbs


def _net(device="cpu", seed=0):
    """Dense -> LayerNorm -> a residual block holding a LayerNorm -> softmax."""
    return gn.Sequential([
        gn.Dense(2, 16, activation="tanh"), LayerNorm(16),
        gn.Residual([gn.Dense(16, 16, activation="relu"), LayerNorm(16)]),
        gn.Dense(16, 3, activation="softmax")], device=device, seed=seed)


def _centred(device="cpu", seed=0):
    return gn.Sequential([RunningCenter(2), gn.Dense(2, 16, activation="tanh"),
                          gn.Dense(16, 3, activation="softmax")], device=device, seed=seed)


def _host(model):
    return [gn.to_numpy(a).copy() for a in model.store.parameters() + model.store.buffers()]


# ---------------------------------------------------------------------- the tree
def test_parameters_and_buffers_are_named_by_path():
    model = _net()
    names = [p for p, _, _ in model.named_parameters()]
    assert names == ["0.W", "0.b", "1.gamma", "1.beta", "2.0.W", "2.0.b", "2.1.gamma",
                     "2.1.beta", "3.W", "3.b"]
    assert [p for p, _, _ in _centred().named_buffers()] == ["0.running_mean", "0.batches"]
    assert "2.1" in dict(model.walk()) and isinstance(dict(model.walk())["2.1"], LayerNorm)


def test_a_config_round_trip_rebuilds_the_same_tree():
    model = _net()
    spec = [layer.spec() for layer in model.layers]
    again = gn.Sequential([gn.layers.layer_from_spec(s) for s in spec], device="cpu")
    assert [layer.spec() for layer in again.layers] == spec
    assert [p for p, _, _ in again.named_parameters()] == \
        [p for p, _, _ in model.named_parameters()]


def test_clone_is_a_deep_copy():
    model = _centred()
    model.fit(*gn.data.make_spirals(120, seed=0), loss="cross_entropy", epochs=1, verbose=0)
    copy = model.layers[0].clone()
    assert copy.buffers["running_mean"] is not model.layers[0].buffers["running_mean"]
    np.testing.assert_array_equal(copy.buffers["running_mean"],
                                  model.layers[0].buffers["running_mean"])
    block = gn.Residual([gn.Dense(4, 4), LayerNorm(4)])
    gn.Sequential([block], device="cpu", seed=0)
    twin = block.clone()
    assert all(a is not b for (_, a), (_, b) in zip(block.walk(), twin.walk()))
    twin.layers[0].params["W"][...] = 0
    assert np.any(gn.to_numpy(block.layers[0].params["W"]) != 0)


def test_a_residual_block_that_changes_the_shape_is_refused_when_built():
    with pytest.raises(ValueError, match="residual block must keep the shape"):
        gn.Residual([gn.Dense(4, 8)])
    with pytest.raises(ValueError, match="do not chain"):
        gn.Sequential([gn.Dense(2, 4), gn.Residual([gn.Dense(8, 8)])], device="cpu")


def test_an_array_a_layer_does_not_declare_is_refused_when_built():
    class Sloppy(gn.Layer):
        def allocate(self, backend):
            self.add_param("W", np.ones((2, 2)))

        def forward(self, x, training=False):
            return x @ self.params["W"]

    with pytest.raises(TypeError, match=r"add_param\('W'\).*param_shapes\(\) declares"):
        gn.Sequential([Sloppy()], device="cpu")


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("make", [_net, _centred], ids=["layernorm", "buffer"])
@pytest.mark.slow
def test_one_file_layers_train_on_every_backend(make, backend_name):
    backend = make_backend(backend_name)
    X, y = gn.data.make_spirals(600, seed=0)
    model = make(device=backend)
    hist = model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01),
                     epochs=40, batch_size=32, verbose=0, seed=0)
    assert hist.history["accuracy"][-1] > 0.9


def test_the_buffer_follows_training_and_not_the_optimiser():
    X, y = gn.data.make_spirals(300, seed=0)
    model = _centred()
    model.fit(X, y, loss="cross_entropy", epochs=2, batch_size=50, verbose=0)
    center = model.layers[0]
    assert int(gn.to_numpy(center.buffers["batches"])) == 12
    assert np.all(gn.to_numpy(center.buffers["running_mean"]) != 0)
    assert len(model.parameters()) == 4  # buffers are not parameters


@pytest.mark.parametrize("make", [_net, _centred], ids=["layernorm", "buffer"])
def test_gradcheck_checks_the_layers_inside_blocks(make):
    model = make()
    x = np.random.default_rng(0).standard_normal((5, 2))
    result = gn.gradcheck(model, x)
    assert result.ok, result
    assert "2.1.gamma" in result.errors or make is _centred


def test_gradcheck_fails_when_a_layer_inside_a_block_is_wrong():
    class WrongTanh(gn.layers.ActivationLayer):
        def __init__(self, name=None):
            super().__init__("tanh", name=name)

        def backward(self, grad_out):
            return grad_out * (1.0 - self._y)  # should be 1 - y*y

    inner = WrongTanh()
    model = gn.Sequential([gn.Dense(3, 4), gn.Residual([gn.Dense(4, 4), inner]),
                           gn.Dense(4, 2)], device="cpu", seed=0)
    x = np.random.default_rng(0).standard_normal((6, 3))
    result = gn.gradcheck(model, x)
    assert not result.ok
    assert result.errors["1.0.W"] > 1e-4  # the layer before it gets the wrong gradient
    # And the model's own tree was not touched by the check.
    assert model.layers[1].layers[1] is inner


# ---------------------------------------------------------------------- files, devices
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_and_load_keep_parameters_buffers_and_the_tree(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors", reason="safetensors not installed")
    X, y = gn.data.make_spirals(300, seed=0)
    for make in (_net, _centred):
        model = make()
        model.fit(X, y, loss="cross_entropy", epochs=2, verbose=0)
        path = tmp_path / f"{make.__name__}{suffix}"
        model.save(path)
        again = gn.load(path, device="cpu")
        assert [layer.spec() for layer in again.layers] == \
            [layer.spec() for layer in model.layers]
        for a, b in zip(_host(model), _host(again)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(gn.to_numpy(model.predict(X)),
                                      gn.to_numpy(again.predict(X)))


def test_an_unregistered_layer_type_is_refused_before_anything_is_written(tmp_path):
    class Mine(LayerNorm):  # a subclass is another type: it must register too
        pass

    model = gn.Sequential([gn.Dense(2, 4), Mine(4)], device="cpu")
    with pytest.raises(TypeError, match="Mine is not a registered layer type"):
        model.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def test_moving_between_devices_keeps_parameters_and_buffers():
    strict = make_backend("array_api_strict")
    X, y = gn.data.make_spirals(200, seed=0)
    model = _centred()
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)
    before = _host(model)
    model.to(strict)
    assert model.layers[0].buffers["running_mean"].__class__.__module__.startswith(
        "array_api_strict")
    model.fit(X, y, epochs=1, verbose=0, loss="cross_entropy")
    model.to("cpu")
    after = _host(model)
    assert all(a.shape == b.shape for a, b in zip(before, after))
    assert int(after[-1]) == 2 * int(np.ceil(200 / 32))  # batches counted on both


def test_roll_back_puts_buffers_back_with_the_parameters():
    X, _ = gn.data.make_spirals(200, seed=0)
    y = X[:, :1] * 3.0
    model = gn.Sequential([RunningCenter(2), gn.Dense(2, 16, activation="tanh"),
                           gn.Dense(16, 1)], device="cpu", seed=0)
    model.fit(X, y, loss="mse", epochs=1, verbose=0)
    before = _host(model)
    with pytest.raises(gn.TrainingDiverged):
        model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=1e6), epochs=2, verbose=0)
    for a, b in zip(before, _host(model)):
        np.testing.assert_array_equal(a, b)


def test_resume_continues_as_if_uninterrupted(tmp_path):
    X, y = gn.data.make_spirals(300, seed=0)
    kwargs = dict(loss="cross_entropy", batch_size=32, verbose=0)
    straight = _centred(seed=0)
    h1 = straight.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), epochs=4, seed=3, **kwargs)
    first = _centred(seed=0)
    first.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), epochs=2, seed=3,
              callbacks=[cbs.ModelCheckpoint(str(tmp_path / "c-{epoch}.npz"))], **kwargs)
    resumed = _centred(seed=5)
    h2 = resumed.fit(X, y, epochs=4, resume_from=tmp_path / "c-2.npz", **kwargs)
    assert h2.history == h1.history
    for a, b in zip(_host(straight), _host(resumed)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------- ONNX
def test_a_layer_with_to_onnx_exports_and_matches_predict(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    X, y = gn.data.make_spirals(200, seed=0)
    model = _net()
    model.fit(X, y, loss="cross_entropy", epochs=2, verbose=0)
    model.to_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    out = session.run(None, {"input": X.astype(np.float32)})[0]
    np.testing.assert_allclose(out, gn.to_numpy(model.predict(X)), rtol=1e-4, atol=1e-5)


def test_a_layer_without_to_onnx_is_refused_by_name(tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed")
    with pytest.raises(ValueError, match=r"RunningCenter\(\)\) has no ONNX form"):
        _centred().to_onnx(tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- a loss
def _line(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 1))
    y = 3.0 * X[:, 0] + 1.0 + 0.05 * rng.standard_normal(n)
    y[::25] += 30.0  # outliers, which log-cosh weighs linearly
    return X, y


def test_a_one_file_loss_matches_its_definition_weighted_or_not(backend64):
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((6, 2)) * 3, rng.standard_normal((6, 2))
    loss = gn.losses.get("log_cosh")
    assert isinstance(loss, LogCosh) and gn.losses.get("logcosh").name == "log_cosh"
    result = loss.compute(backend64.asarray(pred), backend64.asarray(target), backend64)
    d = pred - target
    np.testing.assert_allclose(float(result.value), np.mean(np.log(np.cosh(d))), rtol=1e-12)
    np.testing.assert_allclose(gn.to_numpy(result.grad), np.tanh(d) / d.size, rtol=1e-12)
    w = np.array([1.0, 0.0, 2.0, 0.0, 1.0, 1.0])
    weighted = loss.compute(backend64.asarray(pred), backend64.asarray(target), backend64,
                            backend64.asarray(w))
    rows = np.mean(np.log(np.cosh(d)), axis=1)
    np.testing.assert_allclose(float(weighted.value), np.sum(w * rows) / w.sum(), rtol=1e-12)


def test_a_one_file_loss_trains_checks_saves_and_continues(tmp_path, backend_name):
    backend = make_backend(backend_name)
    X, y = _line()
    model = gn.Sequential([gn.Dense(1, 16, activation="tanh"), gn.Dense(16, 1)],
                          device=backend, seed=0)
    model.fit(X, y, loss="log_cosh", optimizer=gn.optim.Adam(lr=0.02), epochs=60,
              batch_size=32, verbose=0, seed=0)
    clean = np.ones(len(y), bool)
    clean[::25] = False
    pred = gn.to_numpy(model.predict(X))[:, 0]
    assert np.median(np.abs(pred[clean] - y[clean])) < 0.2  # the outliers did not pull it
    assert gn.gradcheck(model, X[:5], y[:5, None], loss="log_cosh").ok
    if backend_name != "numpy":
        return
    model.save(tmp_path / "m.npz")
    again = gn.load(tmp_path / "m.npz", device="cpu")
    assert isinstance(again.loss, LogCosh)
    h = again.fit(X, y, epochs=1, verbose=0)  # keeps the file's loss and optimiser
    assert isinstance(again.loss, LogCosh) and np.isfinite(h.history["loss"][0])


# ---------------------------------------------------------------------- a user's mistakes
class _Scale(gn.Layer):
    """The README's Scale layer, unregistered: the base of the mistakes below."""

    def __init__(self, features, name=None):
        super().__init__(name)
        self.features = features

    def param_shapes(self):
        return {"s": (self.features,)}

    def allocate(self, backend):
        self.add_param("s", backend.zeros((self.features,)) + 1.0)

    def forward(self, x, training=False):
        self._x = x
        return x * self.params["s"]

    def backward(self, grad_out):
        self.grads["s"] = self.backend.xp.sum(grad_out * self._x, axis=0)
        return grad_out * self.params["s"]

    def get_config(self):
        return {"features": self.features}


def test_a_gradient_of_the_wrong_shape_is_an_error_naming_the_layer(backend_name):
    class ScalarGrad(_Scale):
        def backward(self, grad_out):
            self.grads["s"] = self.backend.xp.sum(grad_out * self._x)  # 0-d: it would
            return grad_out * self.params["s"]                         # broadcast

    X, y = gn.data.make_moons(64, seed=0)
    model = gn.Sequential([gn.Dense(2, 4), ScalarGrad(4), gn.Dense(4, 1, activation="sigmoid")],
                          device=make_backend(backend_name), seed=0)
    with pytest.raises(ValueError, match=r"scalargrad_1.*grads\['s'\] of shape \(\); "
                                         r"expected the parameter's shape \(4,\)"):
        model.fit(X, y, loss="bce", epochs=1, verbose=0)


def test_a_loss_gradient_of_the_wrong_shape_is_an_error_naming_the_loss():
    @gn.losses.register("sum_of_squares_wrong_grad")
    class WrongGrad(gn.losses.Loss):
        name = "sum_of_squares_wrong_grad"

        def _value_and_grad(self, xp, pred, target, share=None):
            d = pred - target
            return xp.mean(d * d), xp.sum(d)

    X, y = gn.data.make_moons(64, seed=0)
    model = gn.Sequential([gn.Dense(2, 3), gn.Dense(3, 1)], device="cpu", seed=0)
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"loss 'sum_of_squares_wrong_grad': its gradient "
                                         r"has shape \(\); expected .* \(32, 1\)"):
        model.fit(X, y, loss="sum_of_squares_wrong_grad", epochs=1, verbose=0)
    for p, b in zip(model.parameters(), before):  # checked before the first update
        np.testing.assert_array_equal(gn.to_numpy(p), b)


def test_saving_an_unregistered_base_layer_is_refused(tmp_path):
    model = gn.Sequential([gn.Dense(2, 4), _Scale(4), gn.Dense(4, 1)], device="cpu")
    with pytest.raises(TypeError, match="_Scale is not a registered layer type"):
        model.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def test_gradcheck_keys_are_unique_in_nested_models_and_skips_index_inputs():
    net = gn.Sequential([gn.Dense(2, 4, activation="tanh"),
                         gn.Block([gn.Sequential([gn.Dense(4, 4, activation="tanh")]),
                                   gn.Dense(4, 4)]),
                         gn.Dense(4, 1)], device="cpu", seed=0)
    result = gn.gradcheck(net, np.random.default_rng(0).standard_normal((5, 2)))
    assert result.ok
    assert {"dense_0.W", "1.0.0.W", "1.1.W", "dense_2.W", "input"} <= set(result.errors)
    emb = gn.Sequential([gn.Embedding(5, 3), gn.Flatten(), gn.Dense(6, 1)], device="cpu",
                        seed=0)
    result = gn.gradcheck(emb, np.array([[0, 1], [4, 2], [3, 3]]))
    assert result.ok and "input" not in result.errors


def test_an_incomplete_optimiser_is_refused_when_registered():
    class NoConstants(gn.optim.Optimizer):
        def update(self, xp, p, g, state, hp):
            p[...] = p - self.lr * g

    with pytest.raises(TypeError, match="must define step_constants"):
        gn.optim.register("no_constants")(NoConstants)
    assert "no_constants" not in gn.optim.OPTIMIZERS
