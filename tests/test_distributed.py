"""Data-parallel training (gpunn.distributed): 2 MPI ranks against one process.

The launches run ``mpiexec -n 2 python -m mpi4py`` (tests/mpi_launch.py) and are skipped,
saying why, without mpi4py or mpiexec. The plan's arithmetic (pieces of a batch, shares,
sliced random draws) is also tested in-process with a stand-in world.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunn as gn
from gpunn.distributed import plan as dplan
from gpunn.training import batches

sys.path.insert(0, str(Path(__file__).parent / "distributed"))
import cases  # noqa: E402
import disagree  # noqa: E402
import mpi_launch  # noqa: E402

HERE = Path(__file__).parent / "distributed"


def test_importing_gpunn_imports_no_mpi4py_and_one_process_never_does(tmp_path):
    code = ("import sys, gpunn as gn, numpy as np\n"
            "m = gn.Sequential([gn.Dense(2, 1)], device='cpu', seed=0)\n"
            "m.fit(np.zeros((8, 2)), np.zeros(8), epochs=1, verbose=0)\n"
            "m.save('m.npz')\n"
            "print(gn.distributed.size(), 'mpi4py' in sys.modules)")
    env = {k: v for k, v in mpi_launch.environment().items()
           if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "False"]


@pytest.mark.parametrize("env,expected", [({}, False), ({"PMI_SIZE": "1"}, False),
                                          ({"PMI_SIZE": "4"}, True),
                                          ({"OMPI_COMM_WORLD_SIZE": "2"}, True),
                                          ({"PMIX_RANK": "0"}, True)])
def test_an_mpi_launch_is_read_from_the_environment(monkeypatch, env, expected):
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert gn.distributed.launched() is expected


def test_init_names_a_bad_engine():
    with pytest.raises(ValueError, match="engine: expected one of auto, mpi, nccl, got 'gloo'"):
        gn.distributed.init("gloo")


# ---------------------------------------------------------------------- in-process plan
class FakeWorld:
    """Rank ``rank`` of ``size``: sums are the local values times ``size`` (ranks alike)."""

    distributed = True

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def sum(self, values):
        return np.asarray(values, dtype=np.float64) * self.size

    def any(self, flag):
        return bool(flag)


class SumEngine:
    name = "mpi"

    def __init__(self, size):
        self.size, self.calls = size, []

    def allreduce(self, buf):
        self.calls.append(buf.copy())
        buf *= self.size


@pytest.mark.parametrize("n,batch,size", [(200, 32, 2), (97, 32, 2), (10, 8, 4), (3, 4, 4)])
def test_each_row_of_each_global_batch_goes_to_exactly_one_rank(n, batch, size):
    backend = gn.get_backend("cpu", dtype="float64", seed=0)
    X = np.arange(n, dtype=np.float64).reshape(-1, 1)
    got = [[] for _ in range(-(-n // batch))]
    for rank in range(size):
        plan = dplan.Plan(FakeWorld(rank, size), SumEngine(size))
        backend.random.seed(5)
        data = batches.source(backend, X, batch_size=batch, shuffle=True)
        for k, (xb, _, _, rows) in enumerate(plan.batches(data)):
            got[k] += list(xb[:rows, 0])
            assert plan.share == rows / min(batch, n - k * batch)
        assert sum(len(g) for g in got) <= n
        assert plan.local_rows(n, batch) == sum(
            r for *_, r in plan.batches(batches.source(backend, X, batch_size=batch)))
    backend.random.seed(5)
    perm = gn.to_numpy(backend.random.permutation(n))
    assert [sorted(g) for g in got] == [sorted(perm[k:k + batch].tolist())
                                        for k in range(0, n, batch)]


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("n,batch,size", [(97, 32, 2), (10, 8, 4), (3, 4, 4)])
def test_sample_weights_go_with_their_rows_and_shares_follow_the_weights(n, batch, size,
                                                                          streaming):
    """Each rank's weights are those of its rows (a stand-in row weighs 0) and its share
    of a global batch is its part of the batch's weight sum."""
    backend = gn.get_backend("cpu", dtype="float64", seed=0)
    X = np.arange(n, dtype=np.float64).reshape(-1, 1)
    W = 1.0 + np.arange(n) % 5
    W[::7] = 0.0
    shares = [0.0] * -(-n // batch)
    for rank in range(size):
        plan = dplan.Plan(FakeWorld(rank, size), SumEngine(size))
        backend.random.seed(5)
        data = batches.source(backend, X, None, W, batch, True, streaming)
        for k, (xb, _, wb, rows) in enumerate(plan.batches(data)):
            assert np.array_equal(wb[:rows], W[xb[:rows, 0].astype(int)])
            assert not np.any(wb[rows:])  # a stand-in row counts for nothing
            shares[k] += float(plan.share)
    np.testing.assert_allclose(shares, 1.0, rtol=1e-12)


def test_a_rank_draws_its_rows_of_the_global_batchs_dropout_mask():
    backend = gn.get_backend("cpu", dtype="float64", seed=0)
    plan = dplan.Plan(FakeWorld(1, 2), SumEngine(2))
    sliced = dplan.SlicedRandom(backend.random, plan)
    backend.random.seed(1)
    whole = gn.to_numpy(backend.random.bernoulli((8, 3), 0.5))
    backend.random.seed(1)
    plan.window = (4, 8, 8)
    assert np.array_equal(gn.to_numpy(sliced.bernoulli((4, 3), 0.5)), whole[4:])
    plan.window = None
    assert sliced.bernoulli((4, 3), 0.5).shape == (4, 3)  # outside a step: as it is


def test_gradients_are_scaled_by_the_share_then_summed():
    plan = dplan.Plan(FakeWorld(0, 2), engine := SumEngine(2))
    plan.share = 0.25
    g = np.ones(4)
    plan.reduce_gradients([g], loss=np.float64("nan"))
    assert np.isnan(g[0]) and np.array_equal(g[1:], [0.5] * 3)  # a bad loss poisons all
    assert np.array_equal(engine.calls[0][1:], [0.25] * 3)


# ---------------------------------------------------------------------- agreement
def _terms(**change):
    """fit_terms of a small fit, with ``change`` applied to its FitConfig."""
    import dataclasses

    from gpunn.distributed.agreement import fit_terms
    from gpunn.training.loop import FitConfig

    backend = gn.get_backend("cpu", dtype="float64", seed=0)
    X, y = cases.data(40)
    net = cases.model(0.0)
    data = batches.source(backend, X, np.eye(3)[y], batch_size=8)
    config = dataclasses.replace(FitConfig(2, 8), **change)
    return fit_terms(config, net, gn.losses.get("categorical_crossentropy"),
                     gn.optim.Adam(lr=1e-2), [], [], data, 3)


def _other(value):
    """A value of ``value``'s kind that differs from it (a FitConfig field's)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if value == "raise":
        return "stop"
    if value is None:  # the validation set
        return (np.zeros((4, 5)), np.zeros((4, 3)), False, None)
    raise AssertionError(f"no other value known for {value!r}: teach _other this kind, so "
                         "the agreement of the new FitConfig field is tested")


def _agreed_fields():
    import dataclasses

    from gpunn.training.loop import FitConfig

    return [f for f in dataclasses.fields(FitConfig) if "per_rank" not in f.metadata]


@pytest.mark.parametrize("field", _agreed_fields(), ids=lambda f: f.name)
def test_the_ranks_agree_on_every_setting_of_fit(field):
    """Every FitConfig field (one added later included) is among what the ranks compare,
    and a difference in it is named in the one sentence every rank raises."""
    from gpunn.distributed.agreement import disagreement
    from gpunn.training.loop import FitConfig

    default = FitConfig(2, 8)
    mine, theirs = _terms(), _terms(**{field.name: _other(getattr(default, field.name))})
    name = field.metadata.get("argument", field.name)
    assert mine[name] != theirs[name]
    message = disagreement([(mine, None), (theirs, None)])
    assert message.startswith(f"ranks disagree on {name}: rank 0 has ")


def test_what_the_ranks_need_not_agree_on_says_why():
    import dataclasses

    from gpunn.training.loop import FitConfig

    per_rank = {f.name: f.metadata["per_rank"] for f in dataclasses.fields(FitConfig)
                if "per_rank" in f.metadata}
    assert set(per_rank) == {"verbose", "dist", "resumed"} and all(per_rank.values())


def test_every_argument_of_fit_is_agreed_or_says_why_it_need_not_be():
    import inspect

    from gpunn.distributed.agreement import AGREED_ARGUMENTS, PER_RANK_ARGUMENTS
    from gpunn.training import fit

    arguments = set(inspect.signature(fit).parameters) - {"model"}
    assert set(AGREED_ARGUMENTS) | set(PER_RANK_ARGUMENTS) == arguments
    assert not set(AGREED_ARGUMENTS) & set(PER_RANK_ARGUMENTS)
    assert set(AGREED_ARGUMENTS.values()) <= set(_terms())
    assert all(PER_RANK_ARGUMENTS.values())


def _optimizer_settings():
    for name, cls in sorted(gn.optim.OPTIMIZERS.items()):
        for key in cls().hyper():
            yield pytest.param(cls, key, id=f"{name}-{key}")


def _changed(value):
    if isinstance(value, bool):
        return not value
    if value is None:
        return 0.5
    if isinstance(value, (list, tuple)):
        return type(value)(v * 0.5 for v in value)
    return value * 0.5 if value else 0.25


@pytest.mark.parametrize("cls,key", list(_optimizer_settings()))
def test_the_ranks_agree_on_every_optimizer_setting(cls, key):
    """Each hyper-parameter of each registered optimiser (the learning rate among them)
    changes what the ranks compare: a rank with another value is refused."""
    from gpunn.distributed.agreement import describe

    hyper = cls().hyper()
    try:
        other = cls(**{**hyper, key: _changed(hyper[key])})
    except ValueError:  # valid only beside other non-zero settings (nesterov: momentum)
        hyper = {k: 0.25 if v == 0 and not isinstance(v, bool) else v
                 for k, v in hyper.items()}
        other = cls(**{**hyper, key: _changed(hyper[key])})
    base = cls(**hyper)
    assert describe(base) != describe(other)
    assert describe(base) == describe(cls(**hyper))


def test_a_disagreement_names_the_item_and_each_ranks_value():
    from gpunn.distributed.agreement import disagreement

    a, b = _terms(), _terms(epochs=5)
    assert disagreement([(a, None), (a, None)]) is None
    assert disagreement([(a, None), (b, None), (a, None)]).startswith(
        "ranks disagree on epochs: rank 0 has 2, rank 1 has 5, rank 2 has 2;")
    assert disagreement([(a, None), (None, "epochs: expected a positive integer")]) == \
        "rank 1 of 2 refused fit: epochs: expected a positive integer"


def test_a_model_disagreement_names_the_setting_and_a_preprocessor_is_not_blamed_on_x():
    """Models that differ in one layer's setting or in dtype are refused naming that
    setting and each rank's value (not a cut-off dump of the whole model); a
    preprocessor set on one rank only is named as such, before the X it transforms."""
    from gpunn.distributed.agreement import disagreement, model_terms
    from gpunn.preprocessing import Standardizer

    def net(p=0.1, dtype="float32", prep=False):
        m = gn.Sequential([gn.Dense(2, 4, activation="relu"), gn.Dropout(p),
                           gn.Dense(4, 1)], device="cpu", seed=0, dtype=dtype)
        if prep:
            m.preprocessor = Standardizer().fit(np.arange(8.0).reshape(4, 2))
        return m

    def said(a, b):
        return disagreement([({**model_terms(a), "X": "x"}, None),
                             ({**model_terms(b), "X": "x"}, None)])

    assert said(net(), net()) is None
    assert said(net(), net(p=0.5)).startswith(
        "ranks disagree on model layer 1 (Dropout) p: rank 0 has 0.1, rank 1 has 0.5;")
    assert said(net(), net(dtype="float64")).startswith(
        "ranks disagree on model dtype: rank 0 has 'float32', rank 1 has 'float64';")
    assert said(net(), net(prep=True)).startswith(
        "ranks disagree on preprocessor: rank 0 has None, rank 1 has ")


def test_the_data_fingerprint_sees_a_changed_row_of_a_dataset_it_reads_whole():
    from gpunn.distributed.agreement import fingerprint

    X = np.arange(5000.0).reshape(1000, 5)  # 40 kB: within the sample, every row read
    assert fingerprint(X) == fingerprint(X.copy())
    for row in (0, 500, 999):
        Y = X.copy()
        Y[row, 2] += 1
        assert fingerprint(X) != fingerprint(Y)
    assert fingerprint(X[:999]) != fingerprint(X)  # the row count
    assert fingerprint(X.astype(np.float32)) != fingerprint(X)  # the dtype


# ---------------------------------------------------------------------- launched
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every case of tests/distributed/cases.py trained once on 2 ranks."""
    mpi_launch.mpiexec()
    out = tmp_path_factory.mktemp("ranks")
    proc = mpi_launch.launch([HERE / "train_cases.py", out])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", list(cases.CASES))
def test_two_ranks_at_half_batch_equal_one_process_at_the_whole_batch(two_ranks, name):
    """float64, same data order: SGD with momentum, Adam, a last batch smaller than the
    world (a rank with a weight-0 row), and dropout on (masks drawn for the whole batch)."""
    model, hist = cases.train(name)
    ranks = [np.load(two_ranks / f"{name}-rank{r}.npz") for r in range(2)]
    reference = gn.to_numpy(model.store.flat[0])
    assert np.array_equal(ranks[0]["params"], ranks[1]["params"])  # ranks never drift
    assert np.max(np.abs(ranks[0]["params"] - reference)) < 1e-10
    assert np.allclose(ranks[0]["loss"], hist.history["loss"], rtol=0, atol=1e-10)
    for key in ("f1", "auc", "val_f1", "val_auc"):  # counts summed over the ranks
        assert np.allclose(ranks[0][key], hist.history[key], rtol=0, atol=1e-9), key


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """Every case of tests/distributed/disagree.py on 2 ranks: what each rank raised."""
    mpi_launch.mpiexec()
    out = tmp_path_factory.mktemp("refusals")
    proc = mpi_launch.launch([HERE / "disagree.py", out])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    said = []
    for rank in range(2):
        lines = (out / f"refusals-rank{rank}.txt").read_text().splitlines()
        said.append(dict(line.split(": ", 1) for line in lines))
    return said


@pytest.mark.parametrize("name", list(disagree.CASES))
def test_ranks_that_disagree_are_refused_on_every_rank_before_training(refusals, name):
    """Different epochs, batch size, rows, shards, targets, learning rate, optimiser,
    loss, validation data, shuffling, seed, weights, stopping rule or architecture on one
    rank: every rank raises one sentence naming what differs and each rank's value, with
    nothing changed; a rank whose own checks fail raises its error and the others say so.
    Then the next case starts in step (no rank waits on another)."""
    expected = disagree.CASES[name][2]
    said = [refusals[rank][name] for rank in range(2)]
    refused = [1] if name == "refused" else []
    for rank in range(2):
        text, state = said[rank].split(" | ")
        if rank in refused:
            assert text.startswith("ValueError: epochs:"), text
            continue
        assert text.startswith(f"RanksDisagree: {expected}"), text
        if name == "lr_mid_training":  # refused at epoch 2's start: epoch 1 done alike
            assert "ranks disagree on optimizer" in text and "epoch 2" in text
        else:
            assert "unchanged=True" in state, state
    checksums = [s.split("checksum=")[1] for s in said]
    if name in ("lr_mid_training",):
        assert checksums[0] == checksums[1]


@pytest.fixture(scope="module")
def decisions(tmp_path_factory):
    """tests/distributed/control.py decisions on 2 ranks, after one process wrote a
    2-epoch checkpoint to resume from."""
    mpi_launch.mpiexec()
    out = tmp_path_factory.mktemp("decisions")
    cases.train("adam", epochs=2,
                callbacks=[gn.callbacks.ModelCheckpoint(str(out / "single.npz"))])
    proc = mpi_launch.launch([HERE / "control.py", out, "decisions"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, proc


def _said(out, what):
    """What each rank reported about ``what`` (tests/distributed/control.py)."""
    said = []
    for rank in range(2):
        lines = (out / f"report-rank{rank}.txt").read_text().splitlines()
        said.append([ln.split(": ", 1)[1] for ln in lines if ln.startswith(what + ":")])
    return said


@pytest.mark.slow
def test_a_stop_asked_on_one_rank_stops_every_rank_after_the_same_epoch(decisions):
    r0, r1 = _said(decisions[0], "stop")
    assert r0 == r1 and r0[0].startswith("epochs 2 ")


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_step(decisions):
    # Pressed during epoch 2: both ranks roll back to the end of epoch 1, equal.
    r0, r1 = _said(decisions[0], "interrupt")
    assert r0 == r1 and r0[0].startswith("epochs 1 ")


def test_divergence_is_decided_on_the_reduced_loss_by_every_rank(decisions):
    r0, r1 = _said(decisions[0], "diverged")
    assert r0 == r1 and "at epoch 1, step 4" in r0[0]


def test_a_divergence_rolls_every_rank_back_to_the_same_epoch(decisions):
    """Ranks whose snapshot cadence differs (a GPU's free memory decides it) take the
    shortest: after a divergence in epoch 3 every rank is back at its start, equal."""
    r0, r1 = _said(decisions[0], "rollback")
    assert r0 == r1 and r0[0].startswith("epochs 2 ")


def test_a_single_process_checkpoint_resumes_on_two_ranks_as_if_uninterrupted(decisions):
    out, _ = decisions
    model, _ = cases.train("adam", epochs=4)
    for rank in range(2):
        got = np.load(out / f"resumed-rank{rank}.npy")
        assert np.max(np.abs(got - gn.to_numpy(model.store.flat[0]))) < 1e-10


def test_only_rank_0_prints_and_writes_files(decisions):
    out, proc = decisions
    assert proc.stdout.count("epoch 1/3") == 1
    assert sorted(p.name for p in out.glob("ckpt-*")) == [f"ckpt-0-{e}.npz" for e in (1, 2, 3)]
    assert [p.name for p in out.glob("model-*")] == ["model-0.npz"]


def test_the_cpu_fallback_notice_and_a_summary_are_printed_once_for_the_job(tmp_path):
    """``device="auto"`` without a GPU: rank 0 says so, and prints the model's summary;
    the other ranks stay quiet."""
    mpi_launch.mpiexec()
    script = tmp_path / "auto.py"
    script.write_text("import os\nimport sys\n\n"
                      "os.environ.pop('GPUNN_DEVICE', None)\n"
                      "sys.modules['cupy'] = None  # as on a machine without CuPy\n"
                      "import gpunn as gn\n\n"
                      "gn.Sequential([gn.Dense(2, 1)], device='auto').summary()\n")
    proc = mpi_launch.launch([script])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("DeviceFallbackWarning") == 1, proc.stderr[-2000:]
    assert proc.stdout.count("total parameters: 3") == 1, proc.stdout


@pytest.mark.parametrize("mode,module", [("die", False), ("exit", True), ("caught", False)])
@pytest.mark.slow
def test_a_rank_that_dies_ends_the_job_instead_of_hanging_it(tmp_path, mode, module):
    """An uncaught exception (gpunn's own hook, without ``-m mpi4py``), a rank that exits
    mid-training, or an error leaving fit on one rank that its script catches: the others
    are ended, non-zero, well within the timeout."""
    import time

    started = time.monotonic()
    args = [HERE / "control.py", tmp_path, mode]
    proc = mpi_launch.launch(args if module else [sys.executable, *args], module=module)
    assert proc.returncode != 0
    assert time.monotonic() - started < mpi_launch.TIMEOUT / 2
    if mode != "exit":
        assert "rank 1 fails on purpose" in proc.stderr
        assert "gpunn: rank 1 of 2 failed; aborting the job" in proc.stderr


@pytest.mark.slow
def test_a_rank_that_never_comes_to_fit_ends_the_job_after_the_timeout(tmp_path):
    """Rank 1 ends without calling fit: rank 0 waits GPUNN_DIST_TIMEOUT seconds at the
    start of fit, says what it waited for, and ends the job."""
    import time

    started = time.monotonic()
    proc = mpi_launch.launch([sys.executable, HERE / "control.py", tmp_path, "absent"],
                             module=False, env={"GPUNN_DIST_TIMEOUT": "3"})
    assert proc.returncode != 0
    assert time.monotonic() - started < mpi_launch.TIMEOUT / 2
    assert "gpunn: rank 0 of 2 waited 3 s for the other ranks to start fit" in proc.stderr


def test_a_bad_timeout_is_named():
    from gpunn.distributed import group

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPUNN_DIST_TIMEOUT", "soon")
        with pytest.raises(ValueError, match="GPUNN_DIST_TIMEOUT: expected a positive "
                                             "number of seconds, got 'soon'"):
            group._timeout()


def _table(path, rows=400):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 3))
    lines = ["a,b,c,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{'yes' if a + b > 0 else 'no'}"
                               for a, b, c in X]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_the_command_line_trains_on_two_ranks_reading_and_writing_once(tmp_path):
    pytest.importorskip("pandas", reason="reading CSV files needs pandas (gpunn[data])")
    _table(tmp_path / "t.csv")
    cmd = [sys.executable, "-m", "gpunn.cli", "train", "--data", "t.csv", "--target",
           "label", "--epochs", "2", "--batch-size", "32", "--save", "m.npz"]
    proc = mpi_launch.launch(cmd, module=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("epoch 2/2") == 1 and proc.stdout.count("saved: m.npz") == 1
    assert proc.stdout.count("done: 2 epochs") == 1
    assert proc.stderr.count("note: task: binary") == 1  # rank 0 alone read the table
    assert gn.load(tmp_path / "m.npz").count_params() > 0
    # Predictions under the launcher: one set, from rank 0 (not one per rank).
    proc = mpi_launch.launch([sys.executable, "-m", "gpunn.cli", "predict", "m.npz",
                              "--data", "t.csv"], module=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("label,") and len(lines) == 401


@pytest.mark.slow
def test_a_command_line_mistake_ends_every_rank_with_one_line(tmp_path):
    pytest.importorskip("pandas", reason="reading CSV files needs pandas (gpunn[data])")
    _table(tmp_path / "t.csv")
    cmd = [sys.executable, "-m", "gpunn.cli", "train", "--data", "t.csv", "--target", "nope"]
    proc = mpi_launch.launch(cmd, module=False, cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("gpunn: error: t.csv: no column 'nope'") == 1
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_batch_size_the_ranks_cannot_share_names_the_flag_and_its_default(tmp_path):
    """On 3 ranks the default --batch-size (64) does not split evenly: the refusal names
    the flag (the user typed no batch_size), says it was the default and offers the
    nearest sizes that work, before any data is read."""
    cmd = [sys.executable, "-m", "gpunn.cli", "train", "--dataset", "xor", "--epochs", "1"]
    proc = mpi_launch.launch(cmd, ranks=3, module=False, cwd=tmp_path)
    assert proc.returncode != 0
    assert "gpunn: error: --batch-size 64 (the default) does not split evenly over the 3 " \
           "ranks; pass a multiple of 3, such as 63 or 66" in proc.stderr, proc.stderr
    assert "data:" not in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_info_names_the_distributed_set_up(tmp_path):
    proc = mpi_launch.launch([sys.executable, "-m", "gpunn.cli", "info"], module=False)
    assert proc.returncode == 0, proc.stderr
    for rank in (0, 1):  # rank 0 prints each rank's line; the rest of info once
        assert proc.stdout.count(f"distributed: world size 2, rank {rank} (local {rank} "
                                 "of 2)") == 1
    assert proc.stdout.count("numpy ") == 1


def test_a_model_built_under_a_launcher_joins_the_job_first(monkeypatch):
    """A script unchanged under mpiexec: building the model joins the MPI job before the
    device is resolved, so each rank's "auto" finds its own GPU (init points CUDA at the
    local rank's device)."""
    import gpunn as gn
    from gpunn import distributed

    calls = []
    monkeypatch.setattr(distributed, "launched", lambda: True)
    monkeypatch.setattr(distributed, "init", lambda *a, **k: calls.append("init"))
    gn.Sequential([gn.Dense(2, 1)], device="cpu", seed=0)
    assert calls == ["init"]
    monkeypatch.setattr(distributed, "launched", lambda: False)
    gn.Sequential([gn.Dense(2, 1)], device="cpu", seed=0)
    assert calls == ["init"]


def test_gpunn_under_mpiexec_without_mpi4py_is_one_line(monkeypatch, capsys):
    """``mpiexec -n 2 gpunn train`` with MPICH's wheel but no mpi4py: the error says what to
    install in one line; the failed join is not retried (it was, for the abort, and printed
    a traceback after the line)."""
    from gpunn import cli, distributed

    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setattr(distributed, "launched", lambda: True)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    assert cli.main(["train", "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mpi4py is not installed" in err
    assert 'pip install "gpunn[distributed]"' in err and distributed.joined() is None


def test_the_epoch_sums_of_metrics_of_counts_are_summed_over_ranks_in_shape():
    """Precision, recall, F1 and AUC sum arrays of counts: one exchange carries them
    flattened with the scalars, and each comes back in its shape."""
    plan = dplan.Plan(FakeWorld(0, 2), SumEngine(2))
    counts = np.arange(6, dtype=np.float64).reshape(3, 2)
    total, metric_sums, step_losses, extra, seen = plan.reduce_epoch(
        (np.float64(1.5), [np.float64(2.0), None, counts], np.array([0.5, 1.0]),
         (None, np.float64(3.0)), 7))
    assert total == 3.0 and metric_sums[0] == 4.0 and metric_sums[1] is None
    np.testing.assert_array_equal(metric_sums[2], 2 * counts)
    np.testing.assert_array_equal(step_losses, [1.0, 2.0])
    assert extra == (None, 6.0) and seen == 14
