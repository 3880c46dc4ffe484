"""The arguments of fit, evaluate and predict (gpunn.training.arguments) and of the rest of
the Python API: each bad input raises a clear error naming what was expected and what was
given, before any parameter or optimiser state changes."""

import numpy as np
import pytest
from conftest import mlp, tiny_binary

import gpunn as gn


# ---------------------------------------------------------------------- fit
def _snapshot(model, opt):
    params = [gn.to_numpy(p).copy() for p in model.parameters()]
    state = [{k: gn.to_numpy(v).copy() for k, v in s.items()} for s in opt.state]
    return params, state, opt.t


X = np.random.default_rng(0).standard_normal((20, 2)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int64)
NAN_X = X.copy()
NAN_X[3, 1] = np.nan
INF_Y = Y.astype(np.float32)
INF_Y[0] = np.inf

# (description, fit kwargs overriding the good ones, output width, expected message)
FIT_CASES = [
    ("wrong feature count", {"X": np.ones((20, 3))}, 1, r"expects 2 features.*\(20, 3\)"),
    ("1-D X", {"X": np.ones(20)}, 1, r"X: expected a 2-D array"),
    ("len(X) != len(y)", {"y": Y[:15]}, 1, r"y: expected 20 targets.*\(15,\)"),
    ("NaN in X", {"X": NAN_X}, 1, "X: contains NaN or Inf"),
    ("Inf in y", {"y": INF_Y}, 1, "y: contains NaN or Inf"),
    ("empty X", {"X": np.zeros((0, 2)), "y": np.zeros(0)}, 1, "X: expected at least one"),
    ("label out of range", {"y": np.arange(20) % 4, "loss": "categorical_crossentropy"}, 3,
     r"class labels must lie in \[0, 3\).*from 0 to 3"),
    ("negative label", {"y": np.arange(20) % 3 - 1, "loss": "categorical_crossentropy"}, 3,
     r"class labels must lie in \[0, 3\).*from -1"),
    ("fractional label", {"y": (np.arange(20) % 3) + 0.5, "loss": "cross_entropy"}, 3,
     "class labels must be integers"),
    ("one-hot of wrong width", {"y": np.eye(4)[np.arange(20) % 4], "loss": "cross_entropy"},
     3, r"expected targets of shape \(N,\) or \(N, 3\)"),
    ("binary target outside [0,1]", {"y": Y * 2}, 1, r"binary targets must lie in \[0, 1\]"),
    ("CE on one output", {"loss": "categorical_crossentropy"}, 1, "needs a last layer with"),
    ("unknown loss", {"loss": "hinge"}, 1, "unknown loss 'hinge'; expected one of:.*mse"),
    ("unknown optimizer", {"optimizer": "lbfgs"}, 1, "unknown optimizer 'lbfgs'.*sgd"),
    ("zero epochs", {"epochs": 0}, 1, "epochs: expected a positive integer, got 0"),
    ("float epochs", {"epochs": 2.5}, 1, "epochs: expected a positive integer"),
    ("negative batch size", {"batch_size": -8}, 1, "batch_size: expected a positive integer"),
    ("bad verbose", {"verbose": 5}, 1, "verbose: expected 0, 1 or 2"),
    ("bad validation_data", {"validation_data": X}, 1, "validation_data: expected a pair"),
    ("NaN in validation X", {"validation_data": (NAN_X, Y)}, 1, "val_X: contains NaN"),
    ("unknown metric", {"metrics": ["f2"]}, 1, "unknown metric 'f2'"),
    ("regression metric on a classifier", {"metrics": ["mae"]}, 1,
     r"metrics: 'mae' scores a regression.*binary_crossentropy.*accuracy"),
    ("validation_split with validation_data", {"validation_split": 0.2,
                                               "validation_data": (X, Y)}, 1,
     "validation_split and validation_data: give one"),
    ("validation_split of 1", {"validation_split": 1.0}, 1,
     r"validation_split: expected a fraction in \(0, 1\), got 1.0"),
    ("validation_split leaving no validation row", {"validation_split": 0.01}, 1,
     r"validation_split=0.01 of 20 rows leaves no validation row"),
    ("string X", {"X": [["a", "b"]] * 20}, 1, "X: expected a numeric array"),
]


@pytest.mark.parametrize("desc,override,out,match", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_rejects_bad_input_without_changing_state(backend, desc, override, out, match):
    model = mlp(2, 4, out, output="sigmoid" if out == 1 else "softmax", device=backend)
    opt = gn.optim.Adam(lr=0.01)
    model.fit(X, Y if out == 1 else Y % out, loss="bce" if out == 1 else "cross_entropy",
              optimizer=opt, epochs=1, verbose=0)
    before = _snapshot(model, opt)
    kwargs = {"X": X, "y": Y, "loss": "bce", "optimizer": opt, "epochs": 1, "verbose": 0}
    kwargs.update(override)
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(kwargs.pop("X"), kwargs.pop("y"), **kwargs)
    after = _snapshot(model, opt)
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    for sa, sb in zip(before[1], after[1]):
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])
    assert before[2] == after[2]


# ---------------------------------------------------------------------- the API, one table
# Bad inputs across the Python API; the command line's half of the table is in
# test_cli_data.py.
rng = np.random.default_rng(0)
X3 = rng.standard_normal((40, 3)).astype(np.float32)
LABELS = np.arange(40) % 3


def _trained():
    model = mlp(3, 8, 3, output="softmax")
    opt = gn.optim.Adam(lr=0.01)
    model.fit(X3, LABELS, loss="cross_entropy", optimizer=opt, epochs=1, verbose=0)
    return model, opt


def _fit(**override):
    def run(model, opt):
        kwargs = {"X": X3, "y": LABELS, "loss": "cross_entropy", "optimizer": opt,
                  "epochs": 1, "verbose": 0}
        kwargs.update(override)
        model.fit(kwargs.pop("X"), kwargs.pop("y"), **kwargs)
    return run


nan_X3 = X3.copy()
nan_X3[5, 1] = np.nan

API_CASES = [
    ("X with 4 features", _fit(X=np.ones((40, 4))), r"expects 3 features, got .*\(40, 4\)"),
    ("X 3-D", _fit(X=np.ones((40, 3, 1))), "X: expected a 2-D array"),
    ("X of strings", _fit(X=np.full((40, 3), "a")), "X: expected a numeric array"),
    ("X complex", _fit(X=X3.astype(np.complex64)), "X: expected a numeric array"),
    ("y too short", _fit(y=LABELS[:30]), r"y: expected 40 targets .*\(30,\)"),
    ("y 3-D", _fit(y=np.zeros((40, 3, 1))), "y: expected 40 targets"),
    ("label 3 of 3 classes", _fit(y=np.arange(40) % 4), r"labels must lie in \[0, 3\)"),
    ("negative label", _fit(y=LABELS - 1), r"from -1 to 1"),
    ("fractional labels", _fit(y=LABELS + 0.5), "class labels must be integers"),
    ("NaN in X", _fit(X=nan_X3), "X: contains NaN or Inf"),
    ("Inf in y", _fit(loss="mse", y=np.r_[np.inf, np.zeros(39)]), "y: contains NaN or Inf"),
    ("empty X", _fit(X=np.zeros((0, 3)), y=np.zeros(0)), "X: expected at least one sample"),
    ("one-hot width", _fit(y=np.eye(4)[np.arange(40) % 4]), r"\(N,\) or \(N, 3\)"),
    ("unknown loss", _fit(loss="hinge"), "unknown loss 'hinge'; expected one of"),
    ("unknown optimizer", _fit(optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
    ("unknown metric", _fit(metrics=["f2"]), "unknown metric 'f2'"),
    ("zero epochs", _fit(epochs=0), "epochs: expected a positive integer, got 0"),
    ("batch size 0", _fit(batch_size=0), "batch_size: expected a positive integer, got 0"),
    ("verbose 7", _fit(verbose=7), "verbose: expected 0, 1 or 2, got 7"),
    ("bad on_divergence", _fit(on_divergence="ignore"), "on_divergence: expected"),
    ("bad device_data", _fit(device_data="gpu"), "device_data: expected None, True or False"),
    ("validation not a pair", _fit(validation_data=(X3,)), "validation_data: expected a pair"),
    ("callback not a callback", _fit(callbacks=[len]), r"callbacks\[0\]: expected"),
    ("resume from missing file", _fit(resume_from="/nonexistent/ckpt.npz"), "No such file"),
    ("predict wrong width", lambda m, o: m.predict(np.ones((2, 5))), "expects 3 features"),
    ("evaluate y too long", lambda m, o: m.evaluate(X3, np.r_[LABELS, 0]), "expected 40"),
    ("to() unknown device", lambda m, o: m.to("tpu"), "expected 'auto', 'cpu', 'cuda'"),
    ("to() CUDA without GPU", lambda m, o: m.to("cuda:7"), "cuda"),
    ("set_precision fp8", lambda m, o: gn.set_precision("fp8"), "precision: expected"),
    ("optimizer state of another kind", lambda m, o: o.load_state_dict(
        gn.optim.SGD().state_dict()), "expected a state of kind 'adam'"),
]


@pytest.mark.parametrize("name,action,match", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input_changes_nothing(name, action, match):
    from gpunn.backend import cuda_status

    if name == "to() CUDA without GPU" and cuda_status().usable:
        pytest.skip("a GPU is usable here")
    model, opt = _trained()
    params = [gn.to_numpy(p).copy() for p in model.parameters()]
    state = [{k: gn.to_numpy(v).copy() for k, v in s.items()} for s in opt.state]
    t, device = opt.t, model.device
    with pytest.raises((ValueError, TypeError, OSError, gn.GpunnError), match=match):
        action(model, opt)
    assert model.device == device and opt.t == t
    for p, saved in zip(model.parameters(), params):
        np.testing.assert_array_equal(gn.to_numpy(p), saved)
    for s, saved in zip(opt.state, state):
        for k in saved:
            np.testing.assert_array_equal(gn.to_numpy(s[k]), saved[k])


# ---------------------------------------------------------------------- evaluate and predict
X2, Y2 = tiny_binary()


def test_predict_and_evaluate_errors():
    model = mlp(2, 4, 1, output="sigmoid")
    with pytest.raises(ValueError, match="expects 2 features"):
        model.predict(np.ones((3, 5)))
    with pytest.raises(ValueError, match="no loss given and the model has not been fit"):
        model.evaluate(X, Y)
    with pytest.raises(ValueError, match="unknown loss"):
        model.evaluate(X, Y, loss="nope")


def test_matrix_input_is_a_plain_array(binary_classifier):
    model = binary_classifier()
    np.testing.assert_allclose(gn.to_numpy(model.predict(np.asmatrix(X2))),
                               gn.to_numpy(model.predict(X2)))


# ---------------------------------------------------------------------- other arguments
def _with(value):
    bad = X2.copy()
    bad[3, 1] = value
    return bad


@pytest.mark.parametrize("call,error,match", [
    (lambda m: m.fit(X2, Y2, loss="bce", seed=-1, verbose=0), ValueError, "seed: expected"),
    (lambda m: m.fit(X2, Y2, loss="bce", seed=2.5, verbose=0), ValueError, "seed: expected"),
    (lambda m: m.fit(X2, Y2, loss="bce", shuffle="no", verbose=0), ValueError,
     "shuffle: expected True or False"),
    (lambda m: gn.Dense(2, 2, kernel_l2=float("nan")), ValueError, "kernel_l2"),
    (lambda m: m.predict(_with(np.nan)), ValueError, "X: contains NaN"),
    (lambda m: m.predict(_with(-np.inf)), ValueError, "X: contains NaN or Inf"),
    (lambda m: m.evaluate(_with(np.nan), Y2, loss="bce"), ValueError, "X: contains NaN"),
    (lambda m: m.fit(np.ma.masked_array(X2, mask=np.isnan(_with(np.nan))), Y2, loss="bce",
                     verbose=0), TypeError, "1 masked value"),
    (lambda m: m.fit([[0.0, 1.0], [1.0]], [0, 1], loss="bce", verbose=0), TypeError,
     "X: expected a numeric array"),
    (lambda m: (m.forward(X2, training=True), m.backward(np.ones((8, 2))))[1], ValueError,
     r"backward: expected a gradient of the last forward's output shape \(8, 1\)"),
    (lambda m: m.backward(np.ones((8, 1))), RuntimeError, "call forward"),
])
def test_api_arguments_are_checked_before_anything_changes(call, error, match,
                                                           binary_classifier):
    model = binary_classifier()
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(error, match=match):
        call(model)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(gn.to_numpy(p), b)


def test_a_parameter_replaced_with_the_wrong_shape_is_named(binary_classifier):
    model = binary_classifier()
    model.layers[0].params["W"] = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"parameter 'W' must have shape \(2, 4\), got an "
                                         r"array of shape \(3, 4\)"):
        model.fit(X2, Y2, loss="bce", epochs=1, verbose=0)


@pytest.mark.parametrize("make", [
    lambda: gn.losses.get("bce", from_logits="False"),
    lambda: gn.optim.SGD(momentum=0.9, nesterov="no"),
    lambda: gn.optim.Adam(decoupled="no"),
    lambda: gn.callbacks.ModelCheckpoint("a.npz", save_best_only="False"),
    lambda: gn.callbacks.EarlyStopping(restore_best_weights="yes"),
])
def test_flags_must_be_booleans(make):
    with pytest.raises(ValueError, match="expected True or False"):
        make()


def test_accuracy_on_a_regression_is_refused_naming_the_metric():
    model = mlp(2, 4, 1)
    with pytest.raises(ValueError, match=r"metrics: 'accuracy' scores a classifier.*"
                                         r"loss 'mse'.*mae"):
        model.fit(X, X[:, 0], loss="mse", metrics=["accuracy"], epochs=1, verbose=0)


def test_mae_on_a_softmax_classifier_names_the_metric_not_a_reshape():
    model = mlp(2, 4, 3, output="softmax")
    with pytest.raises(ValueError, match=r"metrics: 'mae' scores a regression"):
        model.fit(X, Y, loss="cross_entropy", metrics=["accuracy", "mae"], epochs=1,
                  verbose=0)


def test_validation_split_holds_out_the_last_rows_before_shuffling():
    # Keras' rule: the last fraction of the rows, as given, is the validation set.
    rng = np.random.default_rng(3)
    Xr = rng.standard_normal((50, 2)).astype(np.float32)
    yr = (Xr[:, 0] > 0).astype(np.float32)
    split = mlp(2, 4, 1, output="sigmoid")
    given = mlp(2, 4, 1, output="sigmoid")
    h1 = split.fit(Xr, yr, loss="bce", epochs=2, seed=0, verbose=0, validation_split=0.2)
    h2 = given.fit(Xr[:40], yr[:40], loss="bce", epochs=2, seed=0, verbose=0,
                   validation_data=(Xr[40:], yr[40:]))
    assert h1.history.keys() == h2.history.keys() and "val_loss" in h1.history
    for key in h1.history:
        np.testing.assert_allclose(h1.history[key], h2.history[key], rtol=1e-6)


def test_validation_split_splits_sample_weights_and_weighs_classes_on_training_rows():
    rng = np.random.default_rng(4)
    Xr = rng.standard_normal((30, 2)).astype(np.float32)
    yr = (Xr[:, 0] > 0).astype(np.float32)
    w = rng.uniform(0.5, 2, 30)
    a, b = mlp(2, 4, 1, output="sigmoid"), mlp(2, 4, 1, output="sigmoid")
    h1 = a.fit(Xr, yr, loss="bce", epochs=2, seed=0, verbose=0, validation_split=0.3,
               sample_weight=w)
    h2 = b.fit(Xr[:21], yr[:21], loss="bce", epochs=2, seed=0, verbose=0,
               sample_weight=w[:21], validation_data=(Xr[21:], yr[21:], w[21:]))
    for key in h1.history:
        np.testing.assert_allclose(h1.history[key], h2.history[key], rtol=1e-6)


def test_a_custom_loss_says_its_kind_through_classification():
    class Squared(gn.losses.Loss):
        name = "squared"

        def _value_and_grad(self, xp, pred, target, share=None):
            d = pred - xp.reshape(target, pred.shape)
            return xp.mean(d * d), 2 * d / d.size

    model = mlp(2, 4, 1, output="sigmoid")
    with pytest.raises(ValueError, match=r"Squared.classification = False says which"):
        model.fit(X, Y, loss=Squared(), metrics=["accuracy"], epochs=1, verbose=0)
    Squared.classification = True
    model.fit(X, Y, loss=Squared(), metrics=["accuracy", "f1"], epochs=1, verbose=0)
