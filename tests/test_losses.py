"""Losses (gpunn.losses): values and gradients against float64 references, weights, the
fused output heads against the unfused path, and the targets each loss takes."""

import numpy as np
import pytest

import gpunn as gn
from gpunn.gradcheck import numerical_gradient


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _cases(rng):
    """(loss kwargs, pred, target, float64 reference value function) tuples."""
    reg_pred, reg_t = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    prob = rng.uniform(0.05, 0.95, (6, 1))
    bin_t = rng.integers(0, 2, (6, 1)).astype(float)
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    onehot = np.eye(4)[labels]
    return {
        "mse": ({}, reg_pred, reg_t, lambda p, t: np.mean((p - t) ** 2)),
        "mae": ({}, reg_pred, reg_t, lambda p, t: np.mean(np.abs(p - t))),
        # delta 0.7 puts some residuals inside the quadratic band and some beyond it.
        "huber": ({"delta": 0.7}, reg_pred, reg_t, lambda p, t: np.mean(np.where(
            np.abs(p - t) <= 0.7, 0.5 * (p - t) ** 2, 0.7 * (np.abs(p - t) - 0.35)))),
        "bce": ({}, prob, bin_t,
                lambda p, t: -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))),
        "bce_logits": ({"from_logits": True}, rng.standard_normal((6, 2)),
                       rng.integers(0, 2, (6, 2)).astype(float),
                       lambda z, t: -np.mean(t * np.log(_sigmoid(z))
                                             + (1 - t) * np.log(1 - _sigmoid(z)))),
        "ce": ({}, _softmax(logits), onehot,
               lambda p, t: -np.sum(t * np.log(p)) / len(p)),
        "ce_logits": ({"from_logits": True}, logits, onehot,
                      lambda z, t: -np.sum(t * np.log(_softmax(z))) / len(z)),
    }


NAMES = {"mse": "mse", "mae": "mae", "huber": "huber", "bce": "binary_crossentropy",
         "bce_logits": "binary_crossentropy", "ce": "categorical_crossentropy",
         "ce_logits": "cross_entropy"}


@pytest.mark.parametrize("case", sorted(NAMES))
def test_value_and_gradient(backend64, case, rng):
    kwargs, pred, target, ref = _cases(rng)[case]
    loss = gn.losses.get(NAMES[case], **kwargs)
    value = loss.forward(backend64.asarray(pred), backend64.asarray(target))
    assert tuple(value.shape) == ()
    np.testing.assert_allclose(float(value), ref(pred, target), rtol=1e-10)
    grad = gn.to_numpy(loss.backward())
    np.testing.assert_allclose(grad, numerical_gradient(lambda p: ref(p, target), pred),
                               rtol=1e-5, atol=1e-9)


def _row_losses(ref, pred, target):
    """Each row's loss as the unweighted loss defines it (its value on that row alone)."""
    return np.array([ref(pred[i:i + 1], target[i:i + 1]) for i in range(len(pred))])


@pytest.mark.parametrize("case", sorted(NAMES))
def test_weighted_value_and_gradient(backend64, case, rng):
    """sum(w_i l_i) / sum(w_i), scikit-learn's weighting, with its exact gradient; also
    through the logits form where the loss has one."""
    kwargs, pred, target, ref = _cases(rng)[case]
    w = np.array([0.0, 2.0, 0.5, 1.0, 0.0, 3.0])

    def weighted(p):
        return np.sum(w * _row_losses(ref, p, target)) / w.sum()

    loss = gn.losses.get(NAMES[case], **kwargs)
    result = loss.compute(backend64.asarray(pred), backend64.asarray(target),
                          weight=backend64.asarray(w))
    np.testing.assert_allclose(float(result.value), weighted(pred), rtol=1e-10)
    np.testing.assert_allclose(gn.to_numpy(result.grad),
                               gn.to_numpy(numerical_gradient(weighted, pred)),
                               rtol=1e-5, atol=1e-9)
    assert loss.output is None  # compute keeps nothing
    if case in ("bce_logits", "ce_logits"):  # the same through the logits form
        fused = gn.losses.get(NAMES[case]).compute_logits(
            backend64.asarray(pred), backend64.asarray(target), weight=backend64.asarray(w))
        np.testing.assert_allclose(float(fused.value), weighted(pred), rtol=1e-10)
        np.testing.assert_allclose(gn.to_numpy(fused.grad), gn.to_numpy(result.grad),
                                   atol=1e-12)


def test_all_zero_weights_count_for_nothing(backend):
    for name, pred, target in [("mse", [[1.0], [2.0]], [0.0, 0.0]),
                               ("cross_entropy", [[1.0, -1.0], [0.5, 0.0]], [1, 0])]:
        loss = gn.losses.get(name)
        value, grad, _ = loss.compute_logits(backend.asarray(pred), backend.asarray(target),
                                             weight=backend.zeros((2,)))
        assert float(value) == 0.0 and not np.any(gn.to_numpy(grad))
    with pytest.raises(ValueError, match=r"mse: weight: expected shape \(2,\)"):
        gn.losses.get("mse").compute(backend.asarray([[1.0], [2.0]]),
                                     backend.asarray([0.0, 0.0]), weight=backend.zeros((3,)))


def test_labels_equal_one_hot(backend):
    loss = gn.losses.get("categorical_crossentropy")
    probs = backend.asarray(_softmax(np.random.default_rng(0).standard_normal((5, 3))))
    labels = np.array([0, 2, 1, 1, 0])
    a = float(loss.forward(probs, backend.asarray(labels)))
    b = float(loss.forward(probs, backend.asarray(np.eye(3, dtype=np.float32)[labels])))
    assert a == pytest.approx(b, rel=1e-6)


def test_binary_targets_shape_n(backend):
    loss = gn.losses.get("bce")
    p = backend.asarray([[0.2], [0.9]])
    assert float(loss.forward(p, backend.asarray([0.0, 1.0]))) == pytest.approx(
        -(np.log(0.8) + np.log(0.9)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="target shape"):
        loss.forward(p, backend.asarray([[0.0, 1.0]]))


@pytest.mark.parametrize("name,activation", [("categorical_crossentropy", "softmax"),
                                             ("binary_crossentropy", "sigmoid")])
def test_fused_path_matches_unfused(backend64, name, activation, rng):
    """forward_logits + dL/dz equals activation then loss then chain rule."""
    width = 3 if activation == "softmax" else 1
    z = backend64.asarray(rng.standard_normal((8, width)) * 3)
    target = backend64.asarray(np.eye(3)[rng.integers(0, 3, 8)] if width == 3
                               else rng.integers(0, 2, (8, 1)).astype(float))
    act = gn.ActivationLayer(activation).build(backend64)
    fused, plain = gn.losses.get(name), gn.losses.get(name)
    value_fused = float(fused.forward_logits(z, target))
    value_plain = float(plain.forward(act.forward(z), target))
    assert value_fused == pytest.approx(value_plain, rel=1e-9)
    np.testing.assert_allclose(gn.to_numpy(fused.backward()),
                               gn.to_numpy(act.backward(plain.backward())), atol=1e-9)
    np.testing.assert_allclose(gn.to_numpy(fused.output), gn.to_numpy(act.forward(z)))


def test_fused_cross_entropy_is_stable(backend):
    loss = gn.losses.get("categorical_crossentropy")
    z = backend.asarray([[1000.0, -1000.0, 0.0], [-5e4, 5e4, 0.0]])
    value = float(loss.forward_logits(z, backend.asarray([1, 0])))
    assert np.isfinite(value) and value == pytest.approx((2000 + 1e5) / 2, rel=1e-5)
    assert np.all(np.isfinite(gn.to_numpy(loss.backward())))
    bce = gn.losses.get("bce", from_logits=True)
    v = float(bce.forward(backend.asarray([[800.0], [-800.0]]), backend.asarray([0.0, 1.0])))
    assert v == pytest.approx(800.0, rel=1e-6)


def test_16_bit_logits_meet_float32_soft_targets_unrounded():
    """The cross-entropies score 16-bit logits in float32 with the targets as given: a soft
    target of 0.1 is not first rounded to float16 (0.0999755859375)."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 3)).astype(np.float16)
    soft = np.full((6, 3), 0.1, np.float32)
    soft[:, 0] = 0.8
    for loss in (gn.losses.get("bce"), gn.losses.get("cross_entropy")):
        want = float(loss.forward_logits(z.astype(np.float32), soft))
        assert float(loss.forward_logits(z, soft)) == want, loss.name


def test_unknown_loss_lists_choices():
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*mse"):
        gn.losses.get("hinge")
    with pytest.raises(RuntimeError, match="before forward"):
        gn.losses.get("mse").backward()


def test_huber_is_a_complete_loss(tmp_path, rng):
    """Huber, added in gpunn/losses/ alone: name lookup, validation, default metric, training
    and the model-file round trip."""
    assert gn.losses.get("huber").delta == 1.0
    with pytest.raises(ValueError, match="Huber delta: expected a positive number"):
        gn.losses.get("huber", delta=0)
    X, y = gn.data.make_linear(400, coef=(1.0, -2.0, 0.5), seed=1)
    y = y.copy()
    y[::40] += 50.0  # outliers: Huber's gradient stays bounded
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    hist = model.fit(X, y, loss=gn.losses.Huber(delta=0.5),
                     optimizer=gn.optim.Adam(lr=0.05), epochs=40, verbose=0)
    assert set(hist.history) == {"loss", "mae"}  # the default regression metric
    W = gn.to_numpy(model.parameters()[0]).ravel()
    np.testing.assert_allclose(W, [1.0, -2.0, 0.5], atol=0.1)  # outliers barely pull
    model.save(tmp_path / "huber.npz")
    loaded = gn.load(tmp_path / "huber.npz", device="cpu")
    assert isinstance(loaded.loss, gn.losses.Huber) and loaded.loss.delta == 0.5
    assert loaded.evaluate(X, y)["loss"] == pytest.approx(model.evaluate(X, y)["loss"])


# ---------------------------------------------------------------------- targets the loss can take
X4 = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
ONE_HOT = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]


@pytest.mark.parametrize("loss,y,match", [
    ("cross_entropy", ONE_HOT * 2, "row sums from 2 to 2"),
    ("cross_entropy", np.clip(ONE_HOT + np.eye(3)[[1, 2, 0, 1, 2, 0]], 0, 1),
     "row sums from 2 to 2"),
    ("cross_entropy", ONE_HOT - 0.5, "non-negative"),
    ("cross_entropy", np.zeros((6, 3), np.float32), "row sums from 0 to 0"),
    ("cross_entropy", np.full((6, 3), 0.5, np.float32), "row sums from 1.5"),
    (gn.losses.CategoricalCrossEntropy(from_logits=True), ONE_HOT * 3, "row sums from 3"),
    ("bce", np.array([0, 1, 2, 0, 1, 0.5]), r"binary targets must lie in \[0, 1\]"),
    ("bce", np.array([0, 1, -1, 0, 1, 0.5]), r"binary targets must lie in \[0, 1\]"),
    (gn.losses.BinaryCrossEntropy(from_logits=True), np.array([0, 1, 3, 0, 1, 0]),
     r"binary targets must lie in \[0, 1\]"),
], ids=["scaled", "multi-hot", "negative", "all-zero", "uniform-over", "logits-scaled",
        "bce-2", "bce-neg", "bce-logits-3"])
def test_targets_that_do_not_fit_the_loss_are_refused_before_training(loss, y, match):
    out = 1 if "bce" in str(loss) or isinstance(loss, gn.losses.BinaryCrossEntropy) else 3
    act = "sigmoid" if out == 1 else "softmax"
    model = gn.Sequential([gn.Dense(2, out, activation=act)], device="cpu", seed=0)
    before = [gn.to_numpy(p).copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        model.fit(X4, y, loss=loss, epochs=1, verbose=0)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(gn.to_numpy(p), b)
    assert model.optimizer is None


def test_probability_rows_and_labels_still_train():
    soft = np.full((6, 3), 0.1, np.float32) + 0.7 * ONE_HOT  # label smoothing: rows sum to 1
    for y in (soft, ONE_HOT, np.array([0, 1, 2, 0, 1, 2])):
        model = gn.Sequential([gn.Dense(2, 3, activation="softmax")], device="cpu", seed=0)
        hist = model.fit(X4, y, loss="cross_entropy", epochs=2, verbose=0)
        assert np.all(np.asarray(hist.history["loss"]) > 0)
