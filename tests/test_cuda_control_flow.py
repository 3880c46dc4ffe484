"""The CuPy backend's control flow, on a CPU, against a NumPy-based stand-in for CuPy.

The stand-in (tests/fake_cupy.py) reproduces what CuPy does that gpunn must cope with:
several devices and a current one, arrays that refuse work on another device,
``array_api_compat.cupy`` ignoring ``device=`` in ``zeros``, ``cupy.random`` drawing only
float32/float64, copies in flight on streams, the compute-type setter. Numbers are
checked on a real GPU by tests/test_gpu.py; here only where things go and in what order.
The stand-in's launch counts are reported (``report_launches``), not held to a budget: it
counts its own operations, not CuPy's launches.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

import fake_cupy
import numpy as np
import pytest

import gpunn as gn

CU_SOURCE = Path(gn.__file__).parent / "backend" / "kernels" / "gpunn_kernels.cu"


@pytest.fixture
def fake(monkeypatch):
    with fake_cupy.installed(monkeypatch) as state:
        yield state


def _device_of(a) -> int:
    assert isinstance(a, fake_cupy.FakeArray), type(a)
    return a._dev


def _data(n=96, classes=3, features=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("init", ["he", "xavier", "xavier_normal", "small"])
def test_weights_initialise_in_every_dtype(fake, dtype, init):
    """cupy.random draws float32/float64 only: other dtypes are drawn in float32."""
    from gpunn.backend.cupy_backend import CupyBackend

    be = CupyBackend(0, dtype=dtype, seed=0)
    layer = gn.Dense(6, 4, activation="relu", init=init).build(be)
    assert layer.params["W"].dtype == np.dtype(dtype)
    assert np.all(np.isfinite(gn.to_numpy(layer.params["W"])))
    assert be.random.bernoulli((3, 4), 0.5).dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("device_data", [True, False], ids=["on-device", "streamed"])
def test_cuda_1_keeps_everything_on_gpu_1(fake, dtype, device_data):
    """Biases, gradients, optimiser state, master weights and accumulators of a model on
    cuda:1 are allocated on GPU 1 (the fake refuses any operation mixing devices)."""
    X, y = _data()
    model = gn.Sequential([gn.Dense(5, 16, activation="relu"), gn.Dropout(0.1),
                           gn.Dense(16, 3, activation="softmax")], device="cuda:1",
                          dtype=dtype, seed=0)
    assert model.device == "cuda:1"
    hist = model.fit(X, y, loss="cross_entropy", optimizer="adam", epochs=2, batch_size=32,
                     validation_data=(X[:20], y[:20]), verbose=0, device_data=device_data,
                     metrics=["accuracy", "f1", "auc"])  # counts made on GPU 1 too
    assert np.all(np.isfinite(hist.history["loss"]))
    arrays = model.parameters() + model.gradients()
    arrays += [v for s in model.optimizer.state for v in s.values()]
    if model._amp is not None:
        arrays += list(model._amp.master) + [model._amp.scale]
    assert arrays and {_device_of(a) for a in arrays} == {1}
    assert _device_of(model.predict(X)) == 1
    assert set(model.evaluate(X, y)) == {"loss", "accuracy", "f1", "auc"}
    model.to("cuda:0")
    assert {_device_of(a) for a in model.parameters() + model.gradients()} == {0}
    model.fit(X, y, loss="cross_entropy", epochs=1, verbose=0)


@pytest.mark.parametrize("shuffle", [False, True])
def test_sparse_rows_stream_through_the_pinned_buffers(fake, shuffle):
    """A SciPy sparse dataset streams to the GPU as dense batches of its rows (read one
    batch ahead into the pinned buffers), and trains as its dense form does."""
    sp = pytest.importorskip("scipy.sparse")
    from gpunn.backend.cupy_backend import CupyBackend
    from gpunn.training.batches import SparseRows

    X = sp.random(100, 6, density=0.3, format="csr", random_state=0, dtype=np.float32)
    y = np.random.default_rng(0).integers(0, 3, 100)
    order = np.random.default_rng(1).permutation(100) if shuffle else None
    be = CupyBackend(0, seed=0)
    got = np.concatenate([gn.to_numpy(xb).copy() for xb, _ in
                          be.batches(SparseRows(X, np.float32), y, order, 16)])
    np.testing.assert_array_equal(got, X.toarray()[np.arange(100) if order is None
                                                   else order])
    nets = [gn.Sequential([gn.Dense(6, 8, activation="tanh"),
                           gn.Dense(8, 3, activation="softmax")], device="cuda:0", seed=0)
            for _ in range(2)]
    for net, data in zip(nets, (X, X.toarray())):
        net.fit(data, y, loss="cross_entropy", epochs=2, batch_size=16, verbose=0, seed=2,
                shuffle=shuffle, device_data=False)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(b), rtol=1e-6)


def test_layers_built_alone_on_cuda_1(fake):
    from gpunn.backend.cupy_backend import CupyBackend

    be = CupyBackend(1, seed=0)
    assert _device_of(be.zeros((3,))) == 1
    layer = gn.Dense(4, 2).build(be)
    assert {_device_of(a) for a in (*layer.params.values(), *layer.grads.values())} == {1}


@pytest.mark.parametrize("stop_after", [None, 1], ids=["all-batches", "stopped-early"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_streaming_waits_for_copies_before_releasing_pinned_buffers(fake, stop_after,
                                                                    shuffle):
    """When the batch generator ends (or is closed early), no host-to-device copy from
    its pinned buffers is still in flight on the side stream."""
    from gpunn.backend.cupy_backend import CupyBackend

    be = CupyBackend(0, seed=0)
    X, y = _data(n=100)
    order = np.random.default_rng(1).permutation(100) if shuffle else None
    before = len(fake.streams)
    gen = be.batches(X, y, order, 16)
    rows, targets = [], []
    for i, (xb, tb) in enumerate(gen):
        rows.append(gn.to_numpy(xb).copy())
        targets.append(gn.to_numpy(tb).copy())
        if stop_after is not None and i + 1 == stop_after:
            gen.close()
            break
    side = [s for s in fake.streams[before:] if s.issued]
    assert len(side) == 1 and side[0].in_flight == 0
    idx = np.arange(100) if order is None else order
    got = np.concatenate(rows)
    np.testing.assert_array_equal(got, X[idx][:len(got)])
    np.testing.assert_array_equal(np.concatenate(targets), y[idx][:len(got)])


def test_set_precision_switches_cupy_at_any_time(fake):
    from gpunn.backend.cupy_backend import CupyBackend

    CupyBackend(0)
    fake.compute_types.clear()
    try:
        gn.set_precision("tf32")
        gn.set_precision("fp32")
    finally:
        gn.set_precision("fp32")
    assert fake.compute_types[:2] == [("float32", 7), ("float32", 1)]


def test_tf32_on_an_older_gpu_warns_and_stays_fp32(monkeypatch):
    with fake_cupy.installed(monkeypatch, capability="75") as state:
        try:
            with pytest.warns(RuntimeWarning, match="compute capability 8.0"):
                gn.set_precision("tf32")
        finally:
            gn.set_precision("fp32")
        assert state.compute_types[0] == ("float32", 1)


def test_tf32_on_cupy_without_the_setter_uses_the_environment(monkeypatch):
    with fake_cupy.installed(monkeypatch, version="12.3.0") as state:
        monkeypatch.setenv("CUPY_TF32", "0")
        try:
            with pytest.warns(RuntimeWarning, match="no run-time TF32 switch"):
                gn.set_precision("tf32")
            import os

            assert os.environ["CUPY_TF32"] == "1"
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gn.set_precision("fp32")
        assert state.compute_types == []


def test_bfloat16_on_cupy_14(fake):
    pytest.importorskip("ml_dtypes", reason="ml_dtypes not installed")
    from gpunn.backend.cupy_backend import CupyBackend

    be = CupyBackend(0, dtype="bfloat16", seed=0)
    assert be.low_precision and be.dtype.name == "bfloat16"
    layer = gn.Dense(6, 4, activation="tanh").build(be)
    assert layer.params["W"].dtype.name == "bfloat16"


def test_bfloat16_refused_on_cupy_13(monkeypatch):
    with fake_cupy.installed(monkeypatch, version="13.6.0"):
        from gpunn.backend.cupy_backend import CupyBackend

        with pytest.raises(ValueError, match=r"CuPy >= 14.*found CuPy 13.6.0"):
            CupyBackend(0, dtype="bfloat16")


# ------------------------------------------------------------------ kernel launchers
def _kernel_params(name: str) -> list[str]:
    """Parameter names of the exported kernel ``name`` in the CUDA source."""
    text = CU_SOURCE.read_text().replace("\\\n", "\n")
    match = re.search(rf'void {name}_##S\(([^)]*)\)', text)
    assert match, name
    return [p.split()[-1].lstrip("*") for p in match.group(1).split(",")]


@pytest.fixture
def launches(fake, monkeypatch):
    """Calls to compiled kernels, recorded instead of run: (name, dtype, args)."""
    return fake_cupy.record_kernels(monkeypatch)


#: One optimiser per update kernel (test_every_update_kernel_is_launch_checked holds this
#: list to the kernels the CuPy backend registers).
UPDATE_KERNEL_CASES = [lambda: gn.optim.Adam(lr=0.01, betas=(0.9, 0.999)),
                       lambda: gn.optim.AdamW(lr=0.003, weight_decay=0.1),
                       lambda: gn.optim.RMSprop(lr=0.01, alpha=0.99, momentum=0.5),
                       lambda: gn.optim.SGD(lr=0.1, momentum=0.9),
                       lambda: gn.optim.Adagrad(lr=0.1, weight_decay=0.01)]


def test_every_update_kernel_is_launch_checked(fake):
    from gpunn.backend.cupy_backend import CupyBackend

    assert set(CupyBackend.fast_updates()) == {make().kind for make in UPDATE_KERNEL_CASES}


@pytest.mark.parametrize("make", UPDATE_KERNEL_CASES)
def test_optimizer_kernels_get_constants_rounded_once(launches, make):
    """Each launch passes as many arguments as the kernel declares, and constants such
    as 1 - beta2 are computed in double, then rounded: float32(1 - 0.999) is 0.001, while
    float32 arithmetic gives 0.00099998713."""
    from gpunn.backend.cupy_backend import CupyBackend

    be = CupyBackend(0, seed=0)
    opt = make()
    p = be.asarray(np.ones(10, np.float32))
    opt.attach([p], be)
    opt.step([p], [be.asarray(np.ones(10, np.float32))])
    (name, dtype, args), = launches
    assert name == opt.kind
    params = _kernel_params(name)
    assert len(args) == len(params), (params, args)
    named = dict(zip(params, args))
    f32 = np.float32
    if name == "adam":
        assert named["one_minus_b1"] == f32(1 - 0.9) and named["one_minus_b2"] == f32(0.001)
        assert named["one_minus_b2"] != f32(1) - f32(0.999)
        assert named["decay"] == f32(1 - opt.lr * opt.weight_decay)
    if name == "rmsprop":
        assert named["one_minus_alpha"] == f32(1 - 0.99)
    assert all(isinstance(a, (np.generic, fake_cupy.FakeArray)) for a in args)
    assert all(a.dtype == f32 for a in args if isinstance(a, np.floating))


# A training step of a 784-128-64-out MLP on the CuPy path calls these of gpunn's kernels:
# bias + activation for each hidden layer, one loss kernel for the whole head (the last
# bias, loss, dL/dz, the last bias gradient and the metric), activation derivative + bias
# gradient for each hidden layer, one optimiser update over the flat buffer; a shuffled
# step adds the gather of its rows and targets. That is control flow, asserted. The
# step's other launches (cuBLAS matmuls, CuPy's own elementwise kernels) are counted by
# the stand-in as it sees them: the totals are reported (``report_launches``), not asserted,
# since the stand-in's count is not CuPy's. (When the fused heads came in the stand-in
# counted 14 per step, 8 of them matmuls, 15 shuffled; 19 for softmax-CE, 32 for sigmoid BCE
# and 21 for MSE before them.)
HIDDEN_KERNELS = {"bias_act_forward": 2, "act_backward_bias": 2}
LOSS_KERNELS = {"cross_entropy": "softmax_xent_labels", "bce": "sigmoid_xent",
                "mse": "squared_error"}
STEP_CASES = ["adam mse", "adam softmax-CE", "sgd sigmoid-BCE"]


def _gpunn_kernels(calls) -> Counter:
    """How often each of gpunn's kernels ran, from ``record_kernels``' list."""
    return Counter(name for name, _, _ in calls)


@pytest.mark.parametrize("case", STEP_CASES)
def test_a_step_runs_each_fused_kernel_once_per_layer(fake, monkeypatch, case,
                                                      report_launches):
    kernels = fake_cupy.record_kernels(monkeypatch)
    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((128, 784)).astype(np.float32), rng.integers(0, 10, 128)
    out, y, loss, opt = {
        "adam softmax-CE": (("softmax", 10), labels, "cross_entropy", "adam"),
        "sgd sigmoid-BCE": (("sigmoid", 1), (labels > 4).astype(float), "bce",
                            gn.optim.SGD(lr=0.1, momentum=0.9)),
        "adam mse": ((None, 1), labels.astype(float), "mse", "adam")}[case]
    model = gn.Sequential([gn.Dense(784, 128, activation="relu"),
                           gn.Dense(128, 64, activation="relu"),
                           gn.Dense(64, out[1], activation=out[0])], device="cuda:0", seed=0)
    model.fit(X, y, loss=loss, optimizer=opt, epochs=1, batch_size=64, verbose=0)
    step = gn.training.step_function(model, X[:64], y[:64])
    step()
    fake.launches = 0
    kernels.clear()
    step()
    ran = _gpunn_kernels(kernels)
    report_launches(fake.launches, f"{sum(ran.values())} of them gpunn's kernels")
    assert ran == {**HIDDEN_KERNELS, LOSS_KERNELS[loss]: 1, model.optimizer.kind: 1}


@pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "shuffled"])
@pytest.mark.parametrize("loss", ["cross_entropy", "bce", "mse"])
def test_a_fit_step_runs_its_loss_kernel_with_its_metric_once(fake, monkeypatch, shuffle,
                                                              loss, report_launches):
    """A step of fit, its loss and metric bookkeeping included: the loss kernel writes
    the step's loss and its metric (accuracy count, or MAE for the squared error) into the
    epoch's buffers, so nothing else runs per step for them; a shuffled step adds the
    gather of its rows and targets (one launch for both). The launches per step are
    reported (shuffled steps were 24 launches for softmax, 40 sigmoid, 27 MSE before the
    fused heads)."""
    kernels = fake_cupy.record_kernels(monkeypatch)
    rng = np.random.default_rng(0)
    out, act, metric = {"cross_entropy": (10, "softmax", "accuracy"),
                        "bce": (1, "sigmoid", "accuracy"), "mse": (1, None, "mae")}[loss]

    def launches(rows):
        X, y = rng.standard_normal((rows, 784)).astype(np.float32), rng.integers(0, out, rows)
        model = gn.Sequential([gn.Dense(784, 128, activation="relu"),
                               gn.Dense(128, 64, activation="relu"),
                               gn.Dense(64, out, activation=act)], device="cuda:0", seed=0)
        kwargs = dict(loss=loss, epochs=1, batch_size=16, verbose=0,
                      shuffle=shuffle, metrics=[metric], on_divergence="off")
        model.fit(X, y, **kwargs)
        fake.launches = 0
        kernels.clear()
        model.fit(X, y, optimizer=model.optimizer, **kwargs)
        return fake.launches, _gpunn_kernels(kernels)

    (many, ran_many), (few, ran_few) = launches(128), launches(64)
    per_step = {name: (ran_many[name] - ran_few[name]) / 4 for name in ran_many | ran_few
                if ran_many[name] != ran_few[name]}
    report_launches((many - few) / 4, f"{sum(per_step.values()):g} of them gpunn's kernels")
    gather = {("gather_labels" if loss == "cross_entropy" else "gather_rows"): 1} if shuffle \
        else {}
    assert per_step == {**HIDDEN_KERNELS, LOSS_KERNELS[loss]: 1, "adam": 1, **gather}


def _syncs_per_epoch(fake, make, loss, y, opt, rows):
    """Host syncs of one fit epoch over ``rows`` rows (batches of 16)."""
    X, _ = _data(n=rows)
    model = make()
    model.fit(X, y[:rows], loss=loss, optimizer=opt(), epochs=1, batch_size=16, verbose=0,
              on_divergence="off")
    before = fake.syncs
    model.fit(X, y[:rows], loss=loss, optimizer=model.optimizer, epochs=1, batch_size=16,
              verbose=0, on_divergence="off")
    return fake.syncs - before


@pytest.mark.parametrize("case", ["clip_norm", "mae", "probabilities", "huber"])
def test_no_host_sync_inside_an_epoch(fake, case):
    """The syncs of an epoch (its one read of the sums) do not grow with its steps, also
    with clip_norm, MAE, Huber or cross-entropy on probabilities (array-api-compat's clip
    and sign index with boolean masks on CuPy, a sync per step)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 160)

    def classifier():
        return gn.Sequential([gn.Dense(5, 8, activation="tanh"), gn.Dense(8, 3),
                              gn.Softmax()], device="cuda:0", seed=0)

    def regressor():
        return gn.Sequential([gn.Dense(5, 8, activation="tanh"), gn.Dense(8, 1)],
                             device="cuda:0", seed=0)

    make, loss, y, opt = {
        "clip_norm": (classifier, "cross_entropy", labels,
                      lambda: gn.optim.Adam(lr=0.01, clip_norm=1.0)),
        "mae": (regressor, "mae", labels.astype(float), lambda: gn.optim.SGD(lr=0.01)),
        "huber": (regressor, "huber", labels.astype(float), lambda: gn.optim.SGD(lr=0.01)),
        "probabilities": (classifier, "cross_entropy", labels,
                          lambda: gn.optim.SGD(lr=0.01)),
    }[case]
    few = _syncs_per_epoch(fake, make, loss, y, opt, 48)
    many = _syncs_per_epoch(fake, make, loss, y, opt, 160)
    assert few == many, (few, many)


def test_roll_back_snapshots_stay_on_the_gpu_when_they_fit(fake, monkeypatch):
    """A snapshot that fits in a fifth of the free memory is a device copy: taking it
    costs no host synchronisation (an epoch with snapshots syncs as often as one without);
    on a full GPU it goes to the host."""
    from gpunn.training.recovery import Snapshot

    X, y = _data(n=64)

    def model():
        return gn.Sequential([gn.Dense(5, 8, activation="tanh"), gn.Dense(8, 3),
                              gn.Softmax()], device="cuda:0", seed=0)

    def syncs(on_divergence):
        m = model()
        m.fit(X, y, loss="cross_entropy", epochs=1, batch_size=16, verbose=0)
        before = fake.syncs
        m.fit(X, y, loss="cross_entropy", optimizer=m.optimizer, epochs=1, batch_size=16,
              verbose=0, on_divergence=on_divergence)
        return fake.syncs - before, m

    with_snapshots, m = syncs("raise")
    assert with_snapshots == syncs("off")[0]
    snap = Snapshot(m, m.optimizer, 1)
    assert snap.on_device and all(isinstance(p, fake_cupy.FakeArray) for p in snap.params)
    monkeypatch.setattr(m.backend, "fits_on_device", lambda nbytes: False)
    snap = Snapshot(m, m.optimizer, 1)
    assert not snap.on_device and all(type(p) is np.ndarray for p in snap.params)


@pytest.mark.parametrize("order_rows", [96, 40, 7], ids=["all", "part", "less-than-a-batch"])
def test_streamed_batches_follow_an_order_shorter_than_the_data(fake, order_rows):
    """A rank streams only its rows (an order shorter than the host arrays): the pinned
    double buffer stages that many rows and no more, on CuPy as on the generic backend."""
    from gpunn.backend.base import Backend
    from gpunn.backend.cupy_backend import CupyBackend

    X, y = _data()
    order = np.random.default_rng(1).permutation(96)[:order_rows]
    for be in (CupyBackend(0, dtype="float32", seed=0),
               Backend(gn.get_backend("cpu").xp, dtype="float32")):
        got = [(gn.to_numpy(x), gn.to_numpy(t)) for x, t in be.batches(X, y, order, 32)]
        assert [len(x) for x, _ in got] == [min(32, order_rows - lo)
                                          for lo in range(0, order_rows, 32)]
        np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), X[order])
        np.testing.assert_array_equal(np.concatenate([t for _, t in got]), y[order])


# ------------------------------------------------------------------ convolutional layers
#: A step of this CNN calls these of gpunn's kernels: the patches of both convolutions
#: (im2col) and the second one's input gradient (col2im: the first layer needs none), each
#: pooling both ways, layer normalisation both ways, batch normalisation both ways (a
#: per-channel reduction and an elementwise kernel each); its matmuls are cuBLAS's.
CNN_KERNELS = {"im2col": 2, "col2im": 1, "pool_forward": 2, "pool_backward": 2,
               "batchnorm_stats": 1, "batchnorm_apply": 1, "batchnorm_grad_sums": 1,
               "batchnorm_backward": 1, "layernorm_forward": 1, "layernorm_backward": 1}


def _cnn():
    return [gn.Conv2D(1, 4, 3, padding=1, activation="relu"), gn.BatchNorm(4),
            gn.MaxPool2D(2), gn.Conv2D(4, 4, (2, 3)),
            gn.AvgPool2D((1, 2)), gn.Flatten(), gn.LayerNorm(8),
            gn.Dense(8, 3, activation="softmax")]


def test_a_cnn_step_runs_the_patch_pooling_and_normalisation_kernels(fake, monkeypatch,
                                                                      report_launches):
    """Each convolution cuts its patches with one kernel, each pooling and normalisation
    layer runs one kernel each way, with as many arguments as the kernels declare."""
    kernels = fake_cupy.record_kernels(monkeypatch)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 1, 6, 8)).astype(np.float32), rng.integers(0, 3, 32)
    model = gn.Sequential(_cnn(), device="cuda:0", seed=0)
    assert model.output_shape((1, 6, 8)) == (3,)
    model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=16, verbose=0,
              on_divergence="off")  # recorded kernels leave garbage
    step = gn.training.step_function(model, X[:16], y[:16])
    step()
    fake.launches = 0
    kernels.clear()
    step()
    ran = _gpunn_kernels(kernels)
    report_launches(fake.launches, f"{sum(ran.values())} of them gpunn's kernels")
    assert {k: v for k, v in ran.items() if k in CNN_KERNELS} == CNN_KERNELS
    for name, dtype, args in kernels:
        assert len(args) == len(_kernel_params(name)), name
        assert dtype == np.float32


def test_patches_pooling_and_normalisation_fall_back_without_a_kernel(fake, monkeypatch):
    """No kernel for float16 (patches, pooling, batch and layer normalisation) or for three
    spatial axes: nothing is launched and CuPy's generic expressions give the generic
    results; an arg-max of another integer type leaves the pooling backward to the
    generic path."""
    from gpunn.backend.base import Backend
    from gpunn.backend.cupy_backend import CupyBackend

    kernels = fake_cupy.record_kernels(monkeypatch)
    rng = np.random.default_rng(1)

    def same(got, want):
        for a, b in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(gn.to_numpy(a), gn.to_numpy(b))

    half = CupyBackend(0, dtype="float16", seed=0)
    x = half.asarray(rng.standard_normal((2, 3, 6, 5)))
    k, s, p = (2, 3), (2, 1), (1, 0)
    cols = half.im2col(x, k, s, p)
    same(cols, Backend.im2col(half, x, k, s, p))
    same(half.col2im(cols, x.shape, k, s, p), Backend.col2im(half, cols, x.shape, k, s, p))
    for kind in ("max", "avg"):
        y, arg = half.pool_forward(x, kind, k, s)
        same((y, arg), Backend.pool_forward(half, x, kind, k, s))
        same(half.pool_backward(y, arg, kind, x.shape, k, s),
             Backend.pool_backward(half, y, arg, kind, x.shape, k, s))
    gamma, beta = half.asarray(np.ones(3)), half.asarray(np.zeros(3))
    out = half.batchnorm_forward(x, gamma, beta, 1e-5)
    same(out, Backend.batchnorm_forward(half, x, gamma, beta, 1e-5))
    same(half.batchnorm_backward(x, out[1], gamma, out[2], True),
         Backend.batchnorm_backward(half, x, out[1], gamma, out[2], True))
    scale = half.asarray(np.ones(5))
    out = half.layernorm_forward(x, scale, scale, 1e-5)
    same(out, Backend.layernorm_forward(half, x, scale, scale, 1e-5))
    same(half.layernorm_backward(x, out[1], scale, out[2]),
         Backend.layernorm_backward(half, x, out[1], scale, out[2]))
    be = CupyBackend(0, dtype="float64", seed=0)
    x3 = be.asarray(rng.standard_normal((1, 2, 4, 3, 3)))
    same(be.im2col(x3, (2, 2, 2), (1, 1, 1), (0, 1, 0)),
         Backend.im2col(be, x3, (2, 2, 2), (1, 1, 1), (0, 1, 0)))
    assert kernels == []
    # An arg-max of int32 (not what the kernel writes): the generic pooling backward, whose
    # window gradients still go back through the col2im kernel.
    x2 = be.asarray(rng.standard_normal((2, 3, 6, 5)))
    y, arg = Backend.pool_forward(be, x2, "max", k, s)
    kernels.clear()
    gx = be.pool_backward(y, be.xp.astype(arg, be.xp.int32), "max", x2.shape, k, s)
    assert tuple(gx.shape) == tuple(x2.shape)
    assert [name for name, _, _ in kernels] == ["col2im"]


@pytest.mark.parametrize("streamed", [False, True], ids=["on-device", "streamed"])
def test_a_seed_gives_the_same_model_and_batch_order_on_either_device(fake, streamed):
    """Weights and the shuffle come from the host generator on the GPU too, so the same seed
    trains the same network on either device (the stand-in's numbers are NumPy's: equal
    histories mean equal initial weights and equal batches)."""
    X, y = _data(90)

    def fit(device):
        model = gn.Sequential([gn.Dense(5, 8, activation="tanh"),
                               gn.Dense(8, 3, activation="softmax")], device=device,
                              dtype="float64", seed=7)
        first = gn.to_numpy(model.parameters()[0]).copy()
        hist = model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01),
                         epochs=3, batch_size=16, verbose=0, seed=0,
                         device_data=False if streamed else None)
        return first, hist.history["loss"]

    (w_cpu, h_cpu), (w_gpu, h_gpu) = fit("cpu"), fit("cuda:0")
    np.testing.assert_array_equal(w_gpu, w_cpu)
    np.testing.assert_allclose(h_gpu, h_cpu, rtol=1e-12)


def test_a_checkpoints_generators_state_resumes_the_batch_order_on_the_gpu(fake):
    """The GPU generator exports the host state that orders batches, and restoring it on
    either device continues the same order."""
    from gpunn.backend.cupy_backend import CupyBackend

    gpu, cpu = CupyBackend(0, dtype="float64", seed=3), gn.get_backend("cpu", seed=3)
    gpu.random.permutation(10), cpu.random.permutation(10)
    state = gpu.random.state()
    assert state == cpu.random.state()
    following = gn.to_numpy(gpu.random.permutation(10))
    resumed = gn.get_backend("cpu", seed=99)
    resumed.random.set_state(state)
    np.testing.assert_array_equal(gn.to_numpy(resumed.random.permutation(10)), following)
    gpu.random.set_state(state)
    np.testing.assert_array_equal(gn.to_numpy(gpu.random.permutation(10)), following)
