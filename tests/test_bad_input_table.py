"""Bad inputs across the Python API and the CLI: each gets a clear error naming what was
expected and what was given, before any state changes (model, optimiser, files)."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

import gpunn as gn

rng = np.random.default_rng(0)
X = rng.standard_normal((40, 3)).astype(np.float32)
LABELS = np.arange(40) % 3


def _trained():
    model = gn.Sequential([gn.Dense(3, 8, activation="relu"),
                           gn.Dense(8, 3, activation="softmax")], device="cpu", seed=0)
    opt = gn.optim.Adam(lr=0.01)
    model.fit(X, LABELS, loss="cross_entropy", optimizer=opt, epochs=1, verbose=0)
    return model, opt


def _fit(**override):
    def run(model, opt):
        kwargs = {"X": X, "y": LABELS, "loss": "cross_entropy", "optimizer": opt,
                  "epochs": 1, "verbose": 0}
        kwargs.update(override)
        model.fit(kwargs.pop("X"), kwargs.pop("y"), **kwargs)
    return run


nan_X = X.copy()
nan_X[5, 1] = np.nan

API_CASES = [
    ("X with 4 features", _fit(X=np.ones((40, 4))), r"expects 3 features, got .*\(40, 4\)"),
    ("X 3-D", _fit(X=np.ones((40, 3, 1))), "X: expected a 2-D array"),
    ("X of strings", _fit(X=np.full((40, 3), "a")), "X: expected a numeric array"),
    ("X complex", _fit(X=X.astype(np.complex64)), "X: expected a numeric array"),
    ("y too short", _fit(y=LABELS[:30]), r"y: expected 40 targets .*\(30,\)"),
    ("y 3-D", _fit(y=np.zeros((40, 3, 1))), "y: expected 40 targets"),
    ("label 3 of 3 classes", _fit(y=np.arange(40) % 4), r"labels must lie in \[0, 3\)"),
    ("negative label", _fit(y=LABELS - 1), r"from -1 to 1"),
    ("fractional labels", _fit(y=LABELS + 0.5), "class labels must be integers"),
    ("NaN in X", _fit(X=nan_X), "X: contains NaN or Inf"),
    ("Inf in y", _fit(loss="mse", y=np.r_[np.inf, np.zeros(39)]), "y: contains NaN or Inf"),
    ("empty X", _fit(X=np.zeros((0, 3)), y=np.zeros(0)), "X: expected at least one sample"),
    ("one-hot width", _fit(y=np.eye(4)[np.arange(40) % 4]), r"\(N,\) or \(N, 3\)"),
    ("unknown loss", _fit(loss="hinge"), "unknown loss 'hinge'; expected one of"),
    ("unknown optimizer", _fit(optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
    ("unknown metric", _fit(metrics=["f1"]), "unknown metric 'f1'"),
    ("zero epochs", _fit(epochs=0), "epochs: expected a positive integer, got 0"),
    ("batch size 0", _fit(batch_size=0), "batch_size: expected a positive integer, got 0"),
    ("verbose 7", _fit(verbose=7), "verbose: expected 0, 1 or 2, got 7"),
    ("bad on_divergence", _fit(on_divergence="ignore"), "on_divergence: expected"),
    ("bad device_data", _fit(device_data="gpu"), "device_data: expected None, True or False"),
    ("validation not a pair", _fit(validation_data=(X,)), "validation_data: expected a pair"),
    ("callback not a callback", _fit(callbacks=[len]), r"callbacks\[0\]: expected"),
    ("resume from missing file", _fit(resume_from="/nonexistent/ckpt.npz"), "No such file"),
    ("predict wrong width", lambda m, o: m.predict(np.ones((2, 5))), "expects 3 features"),
    ("evaluate y too long", lambda m, o: m.evaluate(X, np.r_[LABELS, 0]), "expected 40"),
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


CLI_CASES = [
    ("unknown dataset", ["train", "--dataset", "cifar"], "invalid choice"),
    ("negative epochs", ["train", "--epochs", "-3"], "positive"),
    ("bad layers", ["train", "--layers", "64,,x"], "comma-separated sizes"),
    ("val split 1", ["train", "--val-split", "1"], "fraction in [0, 1)"),
    ("unknown device", ["train", "--device", "tpu"], "expected 'auto', 'cpu'"),
    ("target without data", ["train", "--target", "y"], "--target only applies"),
    ("missing CSV", ["train", "--data", "{tmp}/none.csv", "--target", "y"], "no such file"),
    ("ragged CSV", ["train", "--data", "{tmp}/ragged.csv", "--target", "y"],
     "line 3 has 1 fields"),
    ("unknown target", ["train", "--data", "{tmp}/ok.csv", "--target", "z"],
     "no column 'z'; columns are a, b, y"),
    ("predict: missing column", ["predict", "{tmp}/model.npz", "--data", "{tmp}/short.csv"],
     "missing feature column(s) ['b']"),
    ("predict: not a model", ["predict", "{tmp}/ok.csv", "--data", "{tmp}/ok.csv"],
     "not a readable .npz"),
    ("predict: text in a numeric column", ["predict", "{tmp}/model.npz", "--data",
                                           "{tmp}/text.csv"], "was numeric in training"),
]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "ok.csv").write_text("a,b,y\n" + "\n".join(f"{i % 7},{i % 3},{i % 2}"
                                                      for i in range(60)))
    (tmp / "ragged.csv").write_text("a,y\n1,0\n2\n")
    (tmp / "short.csv").write_text("a\n1\n2\n")
    (tmp / "text.csv").write_text("a,b\n1,x\n")
    env = {**os.environ, "GPUNN_DEVICE": "cpu"}
    subprocess.run([sys.executable, "-m", "gpunn", "train", "--data", str(tmp / "ok.csv"),
                    "--target", "y", "--epochs", "1", "--save", str(tmp / "model.npz"),
                    "--quiet"], check=True, env=env, capture_output=True)
    return tmp


@pytest.mark.parametrize("name,args,match", CLI_CASES, ids=[c[0] for c in CLI_CASES])
@pytest.mark.slow
def test_cli_bad_input_changes_nothing(cli_files, name, args, match):
    model_file = cli_files / "model.npz"
    before = hashlib.sha256(model_file.read_bytes()).hexdigest()
    args = [a.format(tmp=cli_files) for a in args]
    if args[0] == "train":
        args += ["--save", str(model_file), "--epochs", "1"]  # must not be overwritten
    out = subprocess.run([sys.executable, "-m", "gpunn", *args], capture_output=True,
                         text=True, env={**os.environ, "GPUNN_DEVICE": "cpu"}, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert match in out.stderr, out.stderr
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == before


def test_the_table_is_large_enough():
    assert len(API_CASES) + len(CLI_CASES) >= 30
