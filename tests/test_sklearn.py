"""gpunn.sklearn as a drop-in for scikit-learn's MLP: scikit-learn's estimator checks, the
same maths (SGD and L-BFGS match scikit-learn to round-off), parameters and errors.
scikit-learn's own MLP tests run against these estimators in test_sklearn_own_tests.py."""

import inspect
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn not installed")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import load_iris, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gpunn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)


@parametrize_with_checks([MLPClassifier(max_iter=60, random_state=0),
                          MLPRegressor(max_iter=60, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("ours,theirs", [(MLPClassifier, sk.MLPClassifier),
                                         (MLPRegressor, sk.MLPRegressor)])
def test_same_constructor_as_scikit_learn(ours, theirs):
    mine = inspect.signature(ours.__init__).parameters
    for name, p in inspect.signature(theirs.__init__).parameters.items():
        assert name in mine, name
        assert mine[name].default == p.default and mine[name].kind == p.kind, name
    assert set(mine) - set(inspect.signature(theirs.__init__).parameters) == {
        "device", "dtype", "dropout"}


def _both(make_kwargs, X, y, fit_kwargs=None):
    fitted = []
    for cls in ((MLPClassifier, sk.MLPClassifier) if y.dtype.kind in "iU" else
                (MLPRegressor, sk.MLPRegressor)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted.append(cls(**make_kwargs).fit(X, y, **(fit_kwargs or {})))
    return fitted


SGD_CASES = [
    ("multiclass", dict(hidden_layer_sizes=(12, 7), solver="sgd", learning_rate_init=0.05,
                        max_iter=40, random_state=3)),
    ("nesterov + alpha", dict(hidden_layer_sizes=(9,), solver="sgd", alpha=0.01,
                              momentum=0.8, max_iter=30, random_state=1, activation="tanh")),
    ("logistic, no shuffle", dict(hidden_layer_sizes=(6,), solver="sgd", shuffle=False,
                                  activation="logistic", max_iter=25, random_state=0)),
    ("early stopping", dict(hidden_layer_sizes=(8,), solver="sgd", early_stopping=True,
                            max_iter=60, random_state=2, learning_rate_init=0.02)),
    ("batch 16, identity", dict(hidden_layer_sizes=(5,), solver="sgd", batch_size=16,
                                activation="identity", max_iter=20, random_state=4)),
]


@pytest.mark.parametrize("name,kwargs", SGD_CASES, ids=[c[0] for c in SGD_CASES])
@pytest.mark.parametrize("task", ["classify", "binary", "regress", "weighted"])
def test_sgd_matches_scikit_learn_to_round_off(name, kwargs, task):
    """Same initial weights (drawn from random_state in scikit-learn's order), same
    shuffles, same split, same loss and penalty: the weights agree to 1e-10 (float64)."""
    X, y, fit_kwargs = X_IRIS, Y_IRIS, None
    if task == "binary":
        y = (Y_IRIS == 1).astype(int)
    if task == "regress":
        y = X_IRIS[:, 0] * 2.0 - X_IRIS[:, 3]
        X = X_IRIS[:, 1:3]
    if task == "weighted":
        fit_kwargs = {"sample_weight": np.random.default_rng(0).uniform(0.2, 3.0, len(y))}
    ours, theirs = _both(kwargs, X, y, fit_kwargs)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    if kwargs.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
        assert ours.best_validation_score_ == theirs.best_validation_score_
    else:
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-10)


def test_lbfgs_and_adam_match_scikit_learn():
    kwargs = dict(hidden_layer_sizes=(10,), random_state=0, max_iter=150)
    ours, theirs = _both(dict(kwargs, solver="lbfgs"), X_IRIS, Y_IRIS)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    # Adam differs only in where epsilon meets the bias correction.
    ours, theirs = _both(dict(kwargs, solver="adam", learning_rate_init=0.01), X_IRIS,
                         Y_IRIS)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)


def test_errors_name_the_public_class():
    with pytest.raises(TypeError, match=r"MLPClassifier.__init__\(\) got an unexpected "
                                        "keyword argument 'epochs'"):
        MLPClassifier(epochs=3)
    with pytest.raises(ValueError, match="MLPRegressor: max_iter must be an integer >= 1, "
                                         "got 0"):
        MLPRegressor(max_iter=0).fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="MLPClassifier: solver must be 'lbfgs', 'sgd' or "
                                         "'adam', got 'newton'"):
        MLPClassifier(solver="newton").fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="dropout needs a stochastic solver"):
        MLPClassifier(solver="lbfgs", dropout=0.2).fit(X_IRIS, Y_IRIS)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


def test_convergence_warning_and_attributes():
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(5\) reached"):
        clf = MLPClassifier(hidden_layer_sizes=(7, 5), max_iter=5, random_state=0).fit(
            X_IRIS, Y_IRIS)
    assert [c.shape for c in clf.coefs_] == [(4, 7), (7, 5), (5, 3)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    assert clf.n_iter_ == 5 and clf.t_ == 5 * 150 and len(clf.loss_curve_) == 5
    assert clf.predict_log_proba(X_IRIS).shape == (150, 3)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X_IRIS)),
                               clf.predict_proba(X_IRIS))


def test_replaced_coefs_are_used():
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_IRIS, Y_IRIS)
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]
    clf.intercepts_ = [clf.intercepts_[0], np.array([0.0, 5.0, 0.0])]
    assert (clf.predict(X_IRIS) == 1).all()


def test_dropout_float32_and_pipelines():
    clf = MLPClassifier(hidden_layer_sizes=(32,), dropout=0.2, dtype="float32",
                        max_iter=300, random_state=0)
    clf.fit(X_IRIS, Y_IRIS)
    assert clf.model_.dtype == "float32" and clf.coefs_[0].dtype == np.float32
    assert clf.score(X_IRIS, Y_IRIS) > 0.93
    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(make_pipeline(StandardScaler(), MLPClassifier(random_state=0,
                                                                           max_iter=300)),
                             X, y, cv=3)
    assert scores.mean() > 0.9


def test_regressor_multi_output_and_pickle():
    X, y = make_regression(200, 5, n_targets=2, noise=0.1, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=400,
                       random_state=0).fit(X, y / 100)
    assert reg.predict(X).shape == (200, 2) and reg.score(X, y / 100) > 0.95
    clone = pickle.loads(pickle.dumps(reg))
    np.testing.assert_allclose(clone.predict(X), reg.predict(X), rtol=1e-12)
    assert clone.model_.device == "cpu" and b"cupy" not in pickle.dumps(reg)
    clone.partial_fit(X, y / 100)  # the optimiser state came back with it
    assert clone._optimizer.optimizer.t == reg._optimizer.optimizer.t + 1


@pytest.mark.gpu
def test_gpu_fit_matches_cpu():
    pytest.importorskip("cupy", reason="CuPy is not installed")
    from gpunn.backend import available_devices

    if not any(d.startswith("cuda") for d in available_devices()):
        pytest.skip("no usable CUDA device")
    kwargs = dict(hidden_layer_sizes=(16,), solver="sgd", max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu = MLPClassifier(**kwargs).fit(X_IRIS, Y_IRIS)
        gpu = MLPClassifier(**kwargs, device="cuda").fit(X_IRIS, Y_IRIS)
    for a, b in zip(cpu.coefs_, gpu.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("params,message", [
    ({"hidden_layer_sizes": (n for n in [5])}, "MLPClassifier: hidden_layer_sizes must be"),
    ({"random_state": "a"}, "MLPClassifier: random_state must be"),
    ({"random_state": -1}, "MLPClassifier: random_state must be"),
])
def test_hostile_parameters_refused_naming_the_class(params, message):
    """A generator would be consumed by the first fit (clone and refit then see nothing);
    scikit-learn refuses both."""
    with pytest.raises(ValueError, match=message):
        MLPClassifier(max_iter=5, **params).fit(X_IRIS, Y_IRIS)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_negative_sample_weight_is_refused(Est):
    """A negative weight turns the loss of its samples into a gain to maximise without
    bound: scikit-learn's MLP trains on silently, gpunn refuses."""
    sw = np.ones(len(X_IRIS))
    sw[3] = -1.0
    with pytest.raises(ValueError, match=f"{Est.__name__}: sample_weight must be >= 0, "
                       "got -1.0 at index 3"):
        Est(max_iter=5).fit(X_IRIS, Y_IRIS, sample_weight=sw)


# ---------------------------------------------------------------------- the core loop
def test_a_diverging_fit_is_rolled_back_then_raises_scikit_learns_error():
    """sgd at learning_rate_init=1 on unscaled data: the loss becomes NaN. scikit-learn
    trains on and raises at the end; gpunn's loop notices at the epoch's end, puts the
    network back at the start of that epoch (attributes with it) and raises the same
    ValueError, saying where. What is left equals scikit-learn after those epochs."""
    import re

    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    kwargs = dict(hidden_layer_sizes=(50,), activation="identity", solver="sgd",
                  learning_rate_init=1.0, max_iter=20, random_state=0)
    est = MLPRegressor(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in matmul
        with pytest.raises(ValueError, match=r"MLPRegressor: Solver produced non-finite "
                           r"parameter weights\. .*The loss became NaN or infinite at "
                           r"epoch \d+, step 1; the network is back at its weights from "
                           r"the start of epoch \d+") as caught:
            est.fit(X, y)
    back = int(re.search(r"start of epoch (\d+)", str(caught.value)).group(1))
    assert est.n_iter_ == back - 1 == len(est.loss_curve_) and est.t_ == 150 * est.n_iter_
    assert all(np.isfinite(a).all() for a in est.coefs_ + est.intercepts_)
    if est.n_iter_:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            theirs = sk.MLPRegressor(**dict(kwargs, max_iter=est.n_iter_)).fit(X, y)
        for a, b in zip(est.coefs_ + est.intercepts_, theirs.coefs_ + theirs.intercepts_):
            np.testing.assert_allclose(a, b, rtol=1e-10)
        np.testing.assert_allclose(est.loss_curve_, theirs.loss_curve_, rtol=1e-10)


def test_ctrl_c_keeps_the_last_whole_epoch(monkeypatch):
    """Ctrl-C mid-epoch: the loop stops after the step, puts the network back at the end
    of its last whole epoch, and the estimator's attributes follow; scikit-learn's
    warning is given. The result equals a fit of that many epochs (and scikit-learn's)."""
    import os
    import signal

    from gpunn.sklearn import _losses

    handler = signal.getsignal(signal.SIGINT)
    calls = []
    original = _losses.ScikitLearnLoss.compute_logits

    def pressed_in_epoch_3(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2 * 60 + 7:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    # Epochs of 60 steps: long enough that the loop keeps a snapshot of every epoch
    # (it spaces them out when one costs over 5% of an epoch).
    X, y = np.tile(X_IRIS, (8, 1)), np.tile(Y_IRIS, 8)
    monkeypatch.setattr(_losses.ScikitLearnLoss, "compute_logits", pressed_in_epoch_3)
    kwargs = dict(hidden_layer_sizes=(8,), solver="sgd", batch_size=20, alpha=0.01,
                  learning_rate_init=0.05, max_iter=50, random_state=0)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        clf = MLPClassifier(**kwargs).fit(X, y)
    assert len(calls) == 2 * 60 + 7  # stopped after the step
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2 and clf.t_ == 2 * 1200
    assert clf._optimizer.optimizer.t == 2 * 60
    assert signal.getsignal(signal.SIGINT) is handler  # put back as it was
    monkeypatch.undo()
    again = MLPClassifier(**dict(kwargs, max_iter=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        again.fit(X, y)
        theirs = sk.MLPClassifier(**dict(kwargs, max_iter=2)).fit(X, y)
    for a, b, c in zip(clf.coefs_, again.coefs_, theirs.coefs_):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10)
    assert clf.loss_curve_ == again.loss_curve_


@pytest.mark.parametrize("streamed", [False, True], ids=["on-device", "streamed"])
def test_on_the_cuda_stand_in_as_on_the_cpu_without_a_sync_per_step(monkeypatch,
                                                                     streamed):
    """The estimator on CuPy (the NumPy-based stand-in: control flow, not numbers),
    with the data on the device or streamed from host memory: the weights are the CPU's,
    and the host waits no more often for many steps an epoch than for a few."""
    import fake_cupy

    w = np.random.default_rng(0).uniform(0.2, 3.0, len(Y_IRIS))
    kwargs = dict(hidden_layer_sizes=(7,), solver="sgd", alpha=0.01, max_iter=3,
                  random_state=0)
    warnings.simplefilter("ignore", ConvergenceWarning)
    cpu = MLPClassifier(batch_size=16, **kwargs).fit(X_IRIS, Y_IRIS, sample_weight=w)
    with fake_cupy.installed(monkeypatch) as fake:
        from gpunn.backend.cupy_backend import CupyBackend

        if streamed:
            monkeypatch.setattr(CupyBackend, "fits_on_device", lambda self, nbytes: False)
        syncs, gpu = [], {}
        for batch in (75, 16, 8):
            before = fake.syncs
            gpu[batch] = MLPClassifier(batch_size=batch, device="cuda:0", **kwargs).fit(
                X_IRIS, Y_IRIS, sample_weight=w)
            syncs.append(fake.syncs - before)
    for a, b in zip(cpu.coefs_, gpu[16].coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    if not streamed:  # (streaming waits for each pinned buffer's copy: the core's design)
        # 6, 30 and 57 steps in 3 epochs; the roll-back snapshots, taken as often as
        # their cost allows (timed), may differ by one an epoch.
        assert max(syncs) - min(syncs) <= 3, syncs


@pytest.mark.slow
def test_two_ranks_train_as_one_process(tmp_path):
    """Under mpiexec the estimators train data-parallel in the core loop: 2 ranks at half
    of each batch give one process's weights (weighted rows, L2, a last batch of one row,
    early stopping on a split drawn alike), and unseeded ranks draw rank 0's."""
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    sys.path.insert(0, str(here / "distributed"))
    sys.path.insert(0, str(here))
    import mpi_launch
    import sklearn_cases

    mpi_launch.mpiexec()
    proc = mpi_launch.launch([here / "distributed" / "sklearn_cases.py", tmp_path])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name in sklearn_cases.CASES:
        r0, r1 = (np.load(tmp_path / f"{name}-rank{r}.npz") for r in range(2))
        assert np.array_equal(r0["params"], r1["params"]), name  # ranks never drift
        if name == "sgd-unseeded":
            continue
        est = sklearn_cases.train(name)
        one = np.concatenate([np.ravel(a) for a in est.coefs_ + est.intercepts_])
        np.testing.assert_allclose(r0["params"], one, rtol=0, atol=1e-10)
        np.testing.assert_allclose(r0["loss"], est.loss_curve_, rtol=1e-10)
        assert int(r0["n_iter"]) == est.n_iter_
        np.testing.assert_array_equal(r0["scores"], est.validation_scores_ or [])


def test_without_scikit_learn_the_import_says_what_to_install(monkeypatch):
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "gpunn.sklearn" or
                 m.startswith("gpunn.sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed
    with pytest.raises(ImportError, match=r'gpunn.sklearn needs scikit-learn: pip install '
                                          r'"gpunn\[sklearn\]"'):
        importlib.import_module("gpunn.sklearn")


# ---------------------------------------------------------------------- sparse input
def _sparse_problem(rows, features, per_row, seed=0):
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, features, size=(rows, per_row))
    X = sp.csr_matrix((rng.normal(size=rows * per_row), cols.ravel(),
                       np.arange(0, rows * per_row + 1, per_row)), shape=(rows, features))
    y = (np.asarray(X[:, : features // 2].sum(axis=1)).ravel() > 0).astype(int)
    return X, y


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_input_trains_as_its_dense_form(solver, early_stopping, fmt):
    X, y = _sparse_problem(300, 40, 3)
    X = X.asformat(fmt)
    kw = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=5, random_state=0,
              batch_size=32, early_stopping=early_stopping, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sw = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
        sparse = MLPClassifier(**kw).fit(X, y, sample_weight=sw)
        dense = MLPClassifier(**kw).fit(X.toarray(), y, sample_weight=sw)
    for a, b in zip(sparse.coefs_ + sparse.intercepts_, dense.coefs_ + dense.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X.toarray()),
                               rtol=1e-10)
    reg = MLPRegressor(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.partial_fit(X, y.astype(float)) if not early_stopping else reg.fit(X, y * 1.0)
    assert reg.predict(X).shape == (300,)


def test_sparse_input_never_densifies_the_whole_matrix():
    """Training and prediction hold a batch's rows dense, never all of them: a matrix
    whose dense form (3.2 GB here) would not fit trains in tens of megabytes."""
    import tracemalloc

    X, y = _sparse_problem(40_000, 10_000, 1)
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, batch_size=200,
                        random_state=0)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        p = est.predict_proba(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert p.shape == (40_000, 2) and np.isfinite(p).all()
    assert peak < 400 * 2**20, f"peak {peak / 2**20:.0f} MiB"
