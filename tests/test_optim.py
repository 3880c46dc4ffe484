"""Optimiser update rules against hand-computed steps, state handling and validation."""

import math

import numpy as np
import pytest
from conftest import optimizers_of_kind, parity_tolerance

import gpunn as gn
from gpunn.backend.numpy_backend import NumpyBackend


def _run(backend, opt, p0, grads):
    p = backend.asarray(np.array(p0, dtype=np.float64))
    for g in grads:
        opt.step([p], [backend.asarray(np.array(g, dtype=np.float64))])
    return gn.to_numpy(p)


P0, G1, G2 = [1.0, -2.0], [0.5, 0.25], [-1.0, 0.5]


def _hand_sgd(lr, mu=0.0, nesterov=False, wd=0.0):
    p, v = np.array(P0), np.zeros(2)
    for g in (np.array(G1), np.array(G2)):
        g = g + wd * p
        if mu:
            v = mu * v + g
            g = g + mu * v if nesterov else v
        p = p - lr * g
    return p


def _hand_adam(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    p, m, v = np.array(P0), np.zeros(2), np.zeros(2)
    for t, g in enumerate((np.array(G1), np.array(G2)), start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return p


def _hand_rmsprop(lr, alpha=0.99, eps=1e-8, mu=0.0, wd=0.0):
    p, s, buf = np.array(P0), np.zeros(2), np.zeros(2)
    for g in (np.array(G1), np.array(G2)):
        g = g + wd * p
        s = alpha * s + (1 - alpha) * g * g
        step = g / (np.sqrt(s) + eps)
        if mu:
            buf = mu * buf + step
            step = buf
        p = p - lr * step
    return p


def _hand_adagrad(lr, lr_decay=0.0, eps=1e-10, init=0.0, wd=0.0):
    p, s = np.array(P0), np.full(2, init)
    for t, g in enumerate((np.array(G1), np.array(G2)), start=1):
        g = g + wd * p
        s = s + g * g
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
    return p


CASES = [
    (lambda: gn.optim.SGD(lr=0.1), _hand_sgd(0.1)),
    (lambda: gn.optim.SGD(lr=0.1, momentum=0.9), _hand_sgd(0.1, 0.9)),
    (lambda: gn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True), _hand_sgd(0.1, 0.9, True)),
    (lambda: gn.optim.SGD(lr=0.1, weight_decay=0.01), _hand_sgd(0.1, wd=0.01)),
    (lambda: gn.optim.Adam(lr=0.01), _hand_adam(0.01)),
    (lambda: gn.optim.Adam(lr=0.01, weight_decay=0.1), _hand_adam(0.01, wd=0.1)),
    (lambda: gn.optim.AdamW(lr=0.01, weight_decay=0.1),
     _hand_adam(0.01, wd=0.1, decoupled=True)),
    (lambda: gn.optim.RMSprop(lr=0.01), _hand_rmsprop(0.01)),
    (lambda: gn.optim.RMSprop(lr=0.01, momentum=0.5, weight_decay=0.1),
     _hand_rmsprop(0.01, mu=0.5, wd=0.1)),
    (lambda: gn.optim.Adagrad(lr=0.1), _hand_adagrad(0.1)),
    (lambda: gn.optim.Adagrad(lr=0.1, lr_decay=0.5, initial_accumulator_value=0.2,
                              weight_decay=0.05),
     _hand_adagrad(0.1, lr_decay=0.5, init=0.2, wd=0.05)),
]


@pytest.mark.parametrize("index", range(len(CASES)))
def test_update_rule_matches_hand_computation(backend64, index):
    make, expected = CASES[index]
    np.testing.assert_allclose(_run(backend64, make(), P0, [G1, G2]), expected, rtol=1e-12)


def test_first_adam_step_is_lr_sized():
    # With bias correction the first step is lr * sign(g) (up to eps).
    be = gn.get_backend("cpu", dtype="float64")
    p = _run(be, gn.optim.Adam(lr=0.01), P0, [G1])
    np.testing.assert_allclose(p, np.array(P0) - 0.01 * np.sign(G1), rtol=1e-9)


def test_update_is_in_place(backend):
    p = backend.asarray(np.ones((3, 2), np.float32))
    opt = gn.optim.Adam(lr=0.1)
    opt.step([p], [backend.asarray(np.ones((3, 2), np.float32))])
    assert np.all(gn.to_numpy(p) < 1.0)  # the caller's array changed
    assert p.dtype == backend.dtype  # no silent float64


@pytest.mark.parametrize("make", [lambda: gn.optim.SGD(lr=0.1, momentum=0.9),
                                  lambda: gn.optim.Adam(lr=0.01),
                                  lambda: gn.optim.RMSprop(lr=0.01, momentum=0.3)])
def test_state_dict_round_trip(make):
    be = gn.get_backend("cpu", dtype="float64")
    opt = make()
    p = be.asarray(np.array(P0))
    opt.step([p], [be.asarray(np.array(G1))])
    state = opt.state_dict()
    assert state["t"] == 1 and all(isinstance(v, np.ndarray) for s in state["state"]
                                    for v in s.values())
    restored = make()
    restored.load_state_dict(state)
    restored.attach([p], be)
    q = p.copy()
    opt.step([p], [be.asarray(np.array(G2))])
    restored.step([q], [be.asarray(np.array(G2))])
    np.testing.assert_array_equal(p, q)
    with pytest.raises(ValueError, match="expected a state of kind"):
        gn.optim.RMSprop().load_state_dict(gn.optim.SGD().state_dict())


def test_parameter_list_change_is_an_error():
    be = gn.get_backend("cpu")
    opt = gn.optim.Adam()
    opt.step([be.zeros((2,))], [be.zeros((2,))])
    with pytest.raises(ValueError, match="parameter list changed"):
        opt.step([be.zeros((3,))], [be.zeros((3,))])


@pytest.mark.parametrize("make,match", [
    (lambda: gn.optim.SGD(lr=0), r"SGD lr: expected a number in \(0"),
    (lambda: gn.optim.Adam(lr=-1e-3), "Adam lr"),
    (lambda: gn.optim.SGD(lr=0.1, momentum=1.5), "SGD momentum"),
    (lambda: gn.optim.SGD(lr=0.1, nesterov=True), "nesterov: needs momentum"),
    (lambda: gn.optim.Adam(betas=(0.9,)), "betas"),
    (lambda: gn.optim.Adam(eps=0), "eps"),
    (lambda: gn.optim.RMSprop(weight_decay=-1), "weight_decay"),
    (lambda: gn.optim.get("lbfgs"), "unknown optimizer 'lbfgs'.*adam"),
    (lambda: gn.optim.SGD(lr=float("nan")), "lr"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _fast_and_generic(make, p0, grads, fast_be=None):
    """Two optimisers from ``make`` stepping copies of ``p0`` through ``grads``: one on
    ``fast_be`` (the NumPy backend: its registered fast updates), one on the generic
    backend over the same namespace (no fast paths: the rule's own update)."""
    from gpunn.backend import Backend

    fast_be = fast_be or NumpyBackend(dtype=p0.dtype.name)
    generic_be = Backend(fast_be.xp, device="cpu", dtype=fast_be.dtype_name, name="generic")
    assert generic_be.fast_updates() == {}
    runs = []
    for be in (fast_be, generic_be):
        opt, p = make(), p0.copy()
        opt.attach([p], be)
        for g in grads:
            opt.step([p], [g.copy()])
        runs.append((opt, p))
    return runs


#: Every fast update the NumPy backend registers, in every dtype it is registered for,
#: with every registered optimiser of that rule (conftest.optimizers_of_kind).
FAST_CASES = [pytest.param(kind, dtype, make, id=f"{case}-{dtype}")
              for kind, dtypes in sorted(NumpyBackend.fast_updates().items())
              for dtype in dtypes for case, make in optimizers_of_kind(kind)]


def test_every_numpy_fast_update_has_parity_cases():
    kinds = NumpyBackend.fast_updates()
    assert {"sgd", "adam", "rmsprop", "adagrad"} <= set(kinds)
    for kind in kinds:
        assert optimizers_of_kind(kind), f"fast path {kind!r}: no optimiser to test it with"


@pytest.mark.parametrize("kind,dtype,make", FAST_CASES)
def test_numpy_fast_updates_match_generic(kind, dtype, make):
    """Parity: each NumPy fast path (in place, Numba) against its rule's generic update."""
    rng = np.random.default_rng(len(FAST_CASES))
    p0 = rng.standard_normal((17, 5)).astype(dtype)
    grads = [rng.standard_normal((17, 5)).astype(dtype) for _ in range(4)]
    # float16 Adam's eps (1e-8) rounds to 0: a gradient whose square underflows gives an
    # infinite step, on both paths alike (16-bit training updates float32 master weights).
    with np.errstate(divide="ignore", invalid="ignore"):
        (fast_opt, pf), (generic_opt, pg) = _fast_and_generic(make, p0, grads)
    assert fast_opt.kind == kind and pf.dtype == np.dtype(dtype)
    assert NumpyBackend(dtype=dtype).fast_update(kind, pf.dtype) is not None
    tol = parity_tolerance(dtype)
    np.testing.assert_allclose(pf, pg, **tol)
    for a, b in zip(fast_opt.state, generic_opt.state):
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], **tol)
    assert dtype == "float16" or math.isfinite(float(pf.sum()))


def test_a_subclass_with_its_own_maths_gets_no_fast_path():
    """A subclass replacing ``update`` under its parent's kind runs its own maths: a fused
    kernel of the parent's rule must not run in its place."""

    class HalfSGD(gn.optim.SGD):
        def update(self, xp, p, g, state, hp):
            p[...] = p - 0.5 * hp.lr * g

    be = NumpyBackend()
    p = np.ones(3, np.float32)
    HalfSGD(lr=0.1).step([p], [np.ones(3, np.float32)])
    np.testing.assert_allclose(p, 0.95)
    assert be.fast_update("sgd", p.dtype) is not None  # there is one, and it was not used


def test_adagrad_learns_and_round_trips(tmp_path):
    """Adagrad, added in the optimiser module (and one CUDA kernel): fit, state_dict and
    the model file keep its accumulator."""
    X, y = gn.data.make_moons(400, noise=0.1, seed=0)
    model = gn.Sequential([gn.Dense(2, 16, activation="tanh"),
                           gn.Dense(16, 1, activation="sigmoid")], device="cpu", seed=0)
    model.fit(X, y, loss="bce", optimizer=gn.optim.get("adagrad", lr=0.2), epochs=40,
              verbose=0)
    assert model.evaluate(X, y)["accuracy"] >= 0.95
    model.save(tmp_path / "m.npz")
    loaded = gn.load(tmp_path / "m.npz", device="cpu")
    assert isinstance(loaded.optimizer, gn.optim.Adagrad) and loaded.optimizer.t > 0
    saved, back = model.optimizer.state_dict()["state"], loaded.optimizer.state_dict()["state"]
    assert len(saved) == len(back) == 4
    for a, b, p in zip(saved, back, model.parameters()):
        assert a["sum_sq"].shape == tuple(p.shape)
        np.testing.assert_array_equal(b["sum_sq"], a["sum_sq"])


@pytest.mark.parametrize("make", [lambda: gn.optim.Adam(lr=0.01),
                                  lambda: gn.optim.Adam(lr=0.01, weight_decay=0.1),
                                  lambda: gn.optim.AdamW(lr=0.01, weight_decay=0.1)],
                         ids=["adam", "adam-l2", "adamw"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["1", "serial", "parallel"])
def test_numba_adam_matches_numpy(make, dtype, kernel, monkeypatch):
    """Parity of the optional Numba fast path (the default choice, and each kernel
    forced) with the NumPy one (same float arithmetic, one pass): bitwise equal here,
    checked to 1 ulp-scale tolerance."""
    pytest.importorskip("numba", reason="numba not installed (pip install gpunn[numba])")
    from gpunn.backend import numba_kernels

    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(1000).astype(dtype)
    grads = [rng.standard_normal(1000).astype(dtype) for _ in range(5)]
    results = []
    for flag in (kernel, "0"):
        monkeypatch.setenv("GPUNN_NUMBA", flag)
        assert numba_kernels.enabled() == (flag != "0")
        be, p, opt = NumpyBackend(dtype=np.dtype(dtype).name), p0.copy(), make()
        opt.attach([p], be)
        for g in grads:
            opt.step([p], [g])
        results.append((p, opt.state[0]["m"], opt.state[0]["v"]))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_numba_kernel_policy(monkeypatch):
    """Which Adam kernel runs for which size: GPUNN_NUMBA's values, and the default's
    size rule (serial everywhere as measured on two cores; parallel from PARALLEL_FROM
    when a machine's measurements set it)."""
    from gpunn.backend import numba_kernels

    for value, expected in (("0", "0"), ("1", "1"), ("", "1"), ("yes", "1"),
                            ("serial", "serial"), (" Parallel ", "parallel")):
        monkeypatch.setenv("GPUNN_NUMBA", value)
        assert numba_kernels.setting() == expected
    monkeypatch.delenv("GPUNN_NUMBA")
    assert numba_kernels.setting() == "1"
    assert numba_kernels.PARALLEL_FROM is None
    for size in (1, 354, 101_770, 1_863_690, 1 << 28):
        assert numba_kernels.kernel_for(size) == "adam_serial"
        assert numba_kernels.kernel_for(size, "serial") == "adam_serial"
        assert numba_kernels.kernel_for(size, "parallel") == "adam"
    monkeypatch.setattr(numba_kernels, "PARALLEL_FROM", 1000)
    assert numba_kernels.kernel_for(999) == "adam_serial"
    assert numba_kernels.kernel_for(1000) == "adam"
    assert numba_kernels.kernel_for(1000, "serial") == "adam_serial"


def test_numpy_backend_reads_gpunn_numba_once(monkeypatch):
    """The backend reads GPUNN_NUMBA at its first Adam step and keeps that choice."""
    pytest.importorskip("numba", reason="numba not installed (pip install gpunn[numba])")
    from gpunn.backend import numba_kernels

    calls = []
    monkeypatch.setattr(numba_kernels, "adam",
                        lambda p, g, m, v, hp, how="1": calls.append(how) or False)
    monkeypatch.setenv("GPUNN_NUMBA", "serial")
    be, p, opt = NumpyBackend(), np.ones(10, np.float32), gn.optim.Adam(lr=0.1)
    opt.attach([p], be)
    opt.step([p], [np.ones(10, np.float32)])
    monkeypatch.setenv("GPUNN_NUMBA", "parallel")
    opt.step([p], [np.ones(10, np.float32)])
    assert calls == ["serial", "serial"]
    assert np.all(p < 1)  # the kernel declined: NumPy's update ran


def _subnormal_count(a) -> int:
    a = np.asarray(a)
    return int(np.count_nonzero((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))


@pytest.mark.parametrize("make", [lambda: gn.optim.Adam(lr=0.01),
                                  lambda: gn.optim.SGD(lr=0.01, momentum=0.9),
                                  lambda: gn.optim.RMSprop(lr=0.01, alpha=0.9, momentum=0.5)],
                         ids=["adam", "sgd-momentum", "rmsprop"])
@pytest.mark.parametrize("numba", ["1", "0"])
def test_state_of_dead_units_leaves_no_subnormals(make, numba, monkeypatch):
    """Moments whose gradient stays zero (dead units) decay towards zero; in float32 they
    would stick in the subnormal range, where the CPU's multiply and divide run tens of
    times slower. They are flushed to zero, and the parameters are those of the maths
    without the flush (the generic Array API update)."""

    monkeypatch.setenv("GPUNN_NUMBA", numba)
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(200).astype(np.float32)
    live = rng.standard_normal((2000, 200)).astype(np.float32)
    live[:, 100:] = 0  # half the units die after the first step
    live[0, 100:] = 1e3
    (fast, pf), (generic, pg) = _fast_and_generic(make, p0, live)
    # Without the flush the generic state is full of subnormals: the case is exercised.
    assert sum(_subnormal_count(a) for a in generic.state[0].values()) > 50
    assert sum(_subnormal_count(a) for a in fast.state[0].values()) == 0
    np.testing.assert_allclose(pf, pg, rtol=1e-5, atol=1e-6)


def test_register_names_an_optimizer_for_get_and_checks_its_arguments():
    class Halving(gn.optim.Optimizer):
        def __init__(self, lr=0.5):
            super().__init__(lr)

        def step_constants(self):
            return self.lr

        def update(self, xp, p, g, state, hp):
            p[...] = p - hp * g

    try:
        assert gn.optim.register("halving")(Halving) is Halving
        assert Halving.kind == "halving" and Halving.name == "halving"  # kind from the name
        opt = gn.optim.get("Halving", lr=0.25)  # names are case-insensitive
        p = np.ones(2, np.float32)
        opt.step([p], [np.ones(2, np.float32)])
        np.testing.assert_array_equal(p, 0.75)
        gn.optim.register("halving")(Halving)  # the same class again (a reload): allowed
        with pytest.raises(ValueError, match="'halving'.*already belongs to .*Halving"):
            gn.optim.register("halving")(type("Halving2", (Halving,), {}))
    finally:
        gn.optim.OPTIMIZERS.pop("halving", None)
    assert gn.optim.AdamW.kind == "adam" and gn.optim.AdamW.name == "adamw"  # a variant
    with pytest.raises(ValueError, match="lower-case name such as 'lion', got 'Lion'"):
        gn.optim.register("Lion")
    with pytest.raises(TypeError, match="expected a subclass of gpunn.optim.Optimizer"):
        gn.optim.register("thing")(dict)


# ---------------------------------------------------------------------- gradient clipping
def test_clip_norm_bounds_the_global_gradient_norm(backend64):
    g = [backend64.asarray(np.full((3, 4), 2.0)), backend64.asarray(np.full(5, -2.0))]
    norm = np.sqrt(4.0 * 17)
    for clip, factor in [(1.0, 1.0 / norm), (100.0, 1.0)]:
        p = [backend64.zeros((3, 4)), backend64.zeros((5,))]
        opt = gn.optim.SGD(lr=1.0, clip_norm=clip)
        opt.step(p, g)
        np.testing.assert_allclose(gn.to_numpy(p[0]), -2.0 * factor, rtol=1e-5)
        np.testing.assert_allclose(float(opt.last_grad_norm), norm, rtol=1e-9)
    with pytest.raises(ValueError, match="clip_norm"):
        gn.optim.Adam(clip_norm=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # diverging runs overflow
def test_clipping_tames_a_learning_rate_that_diverges(regression, regressor):
    X, y = regression
    kwargs = dict(loss="mse", epochs=5, batch_size=32, verbose=0)
    with pytest.raises(gn.TrainingDiverged):
        regressor().fit(X, y, optimizer=gn.optim.SGD(lr=0.05), **kwargs)
    hist = regressor().fit(X, y, optimizer=gn.optim.SGD(lr=0.05, clip_norm=1.0), **kwargs)
    assert np.isfinite(hist.history["loss"]).all()


def test_optimizers_declare_their_nonnegative_state():
    assert gn.optim.Adam.nonnegative_state == ("v",)
    assert set(gn.optim.RMSprop.nonnegative_state) == {"square_avg"}
    assert gn.optim.Adagrad.nonnegative_state == ("sum_sq",)
    assert gn.optim.SGD.nonnegative_state == ()
