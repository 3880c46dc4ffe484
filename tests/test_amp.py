"""16-bit training: float32 master weights and dynamic loss scaling (optimiser wrappers)."""

import numpy as np
import pytest

import gpunn as gn
from gpunn.optim import LossScaleOptimizer, SkipNonFinite
from gpunn.optim.wrappers import masked_step


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def half(request):
    from conftest import make_backend

    return make_backend(request.param, dtype="float16")


def test_float16_model_learns_moons(half):
    X, y = gn.data.make_moons(1000, noise=0.15, seed=1)
    Xtr, Xte, ytr, yte = gn.data.train_test_split(X, y, seed=1)
    model = gn.Sequential([gn.Dense(2, 32, activation="relu"),
                           gn.Dense(32, 32, activation="relu"),
                           gn.Dense(32, 1, activation="sigmoid")], device=half, seed=0)
    hist = model.fit(Xtr, ytr, loss="bce", optimizer=gn.optim.Adam(lr=0.01), epochs=30,
                     verbose=0, seed=0)
    assert all(p.dtype == half.dtype for p in model.parameters())
    assert all(v.dtype == half.xp.float32 for s in model.optimizer.state for v in s.values())
    assert model.loss_scale == 2.0**15  # no overflow on a well-behaved problem
    assert np.isfinite(hist.history["loss"]).all()
    assert model.evaluate(Xte, yte)["accuracy"] >= 0.97
    assert gn.to_numpy(model.predict(Xte)).dtype == np.float16


def test_float16_multiclass_counts_past_2048(half):
    # Accuracy sums above 2048 are not representable in float16: accumulators are float32.
    X, y = gn.data.make_blobs(3000, classes=3, features=4, spread=0.5, seed=0)
    model = gn.Sequential([gn.Dense(4, 16, activation="tanh"),
                           gn.Dense(16, 3, activation="softmax")], device=half, seed=0)
    hist = model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01),
                     epochs=5, batch_size=256, verbose=0)
    assert hist.history["accuracy"][-1] > 0.99
    assert model.evaluate(X, y)["accuracy"] == pytest.approx(
        gn.metrics.accuracy(y, model.predict(X)))


def test_master_weights_keep_updates_float16_would_round_away():
    be = gn.get_backend("cpu", dtype="float16")
    p = be.asarray(np.ones(4, np.float16))
    amp = LossScaleOptimizer(be, [p], init_scale=1.0)
    amp.attach(gn.optim.SGD(lr=1.0))
    g = be.asarray(np.full(4, 1e-4, np.float16))
    for _ in range(100):
        amp.step([p], [g])
    # Each step (1e-4) is below float16's resolution at 1.0 (~4.9e-4): only the float32
    # master accumulates them.
    np.testing.assert_allclose(gn.to_numpy(amp.master[0]), 0.99, rtol=1e-3)
    np.testing.assert_allclose(gn.to_numpy(p), np.float16(0.99), rtol=1e-3)
    pure = np.ones(4, np.float16)
    for _ in range(100):
        pure -= np.float16(1e-4)
    assert np.all(pure == 1.0)


def test_overflow_skips_the_step_and_halves_the_scale():
    be = gn.get_backend("cpu", dtype="float16")
    p = be.asarray(np.ones(3, np.float16))
    amp = LossScaleOptimizer(be, [p], init_scale=2.0**15, growth_interval=3)
    opt = gn.optim.Adam(lr=0.1)
    amp.attach(opt)
    with be.overflow_expected():
        big = amp.loss_gradient(be.asarray(np.full(3, 10.0, np.float16)))  # 10 * 2**15 -> inf
    assert np.isinf(gn.to_numpy(big)).all()
    amp.step([p], [big])
    assert amp.loss_scale == 2.0**14
    np.testing.assert_array_equal(gn.to_numpy(p), 1.0)  # weights untouched
    assert not np.any(gn.to_numpy(opt.state[0]["m"]))  # moments untouched
    small = amp.loss_gradient(be.asarray(np.full(3, 0.5, np.float16)))
    for _ in range(3):
        amp.step([p], [small])
    assert amp.loss_scale == 2.0**15  # grew back after 3 clean steps
    assert np.all(gn.to_numpy(p) < 1.0)


def test_float16_overflowing_gradients_recover_by_rescaling():
    # Targets near 300 give scaled gradients that overflow float16 until the scale drops.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)).astype(np.float32)
    y = (X @ np.array([100.0, -50.0, 80.0]) + 300).astype(np.float32)
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", dtype="float16", seed=0)
    hist = model.fit(X, y, loss="mse", optimizer=gn.optim.Adam(lr=5.0), epochs=150,
                     batch_size=64, verbose=0)
    assert model.loss_scale < 2.0**15
    assert hist.history["loss"][-1] < 1e-4 * hist.history["loss"][0]


def test_float16_with_kernel_l2_is_refused_before_anything_changes():
    model = gn.Sequential([gn.Dense(2, 1, kernel_l2=0.1)], device="cpu", dtype="float16",
                          seed=0)
    before = gn.to_numpy(model.parameters()[0]).copy()
    with pytest.raises(ValueError, match="kernel_l2 is not supported with dtype='float16'"):
        model.fit(np.ones((4, 2)), np.ones(4), loss="mse", epochs=1, verbose=0)
    np.testing.assert_array_equal(gn.to_numpy(model.parameters()[0]), before)
    assert model.optimizer is None


def test_masked_step_equals_step_or_nothing():
    be = gn.get_backend("cpu", dtype="float64")
    rng = np.random.default_rng(0)
    p0, g = rng.standard_normal(5), be.asarray(rng.standard_normal(5))
    for ok in (True, False):
        a, b = be.asarray(p0.copy()), be.asarray(p0.copy())
        oa, ob = gn.optim.Adam(lr=0.1), gn.optim.Adam(lr=0.1)
        oa.attach([a], be)
        ob.attach([b], be)
        masked_step(oa, [a], [g], be.xp.asarray(ok))
        if ok:
            ob.step([b], [g])
        np.testing.assert_allclose(a, b, rtol=1e-12)
        np.testing.assert_allclose(oa.state[0]["m"], ob.state[0]["m"], rtol=1e-12)


def test_skip_non_finite_drops_only_bad_steps(backend):
    p = backend.asarray(np.ones(3, np.float32))
    opt = gn.optim.SGD(lr=0.5)
    opt.attach([p], backend)
    skip = SkipNonFinite(opt)
    skip.step([p], [backend.asarray(np.array([1.0, np.nan, 1.0], np.float32))])
    np.testing.assert_array_equal(gn.to_numpy(p), 1.0)
    skip.step([p], [backend.asarray(np.ones(3, np.float32))],
              finite=backend.xp.asarray(False))
    np.testing.assert_array_equal(gn.to_numpy(p), 1.0)
    skip.step([p], [backend.asarray(np.ones(3, np.float32))])
    np.testing.assert_array_equal(gn.to_numpy(p), 0.5)
    assert opt.t == 3  # skipped steps still count, as in PyTorch's GradScaler
