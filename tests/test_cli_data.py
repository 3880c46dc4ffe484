"""gpunn train / predict / info on users' files, run as a user runs them."""

import gzip
import hashlib
import io
import os
import subprocess
import sys
import urllib.error

import numpy as np
import pytest

import gpunn as gn
from gpunn import cli
from gpunn.data import builtin as datasets


def _gpunn(*args, cwd=None):
    env = {**os.environ, "GPUNN_DEVICE": "cpu"}
    return subprocess.run([sys.executable, "-m", "gpunn", *args], capture_output=True,
                          text=True, env=env, timeout=300, cwd=cwd)


@pytest.fixture
def flowers(tmp_path):
    """A CSV with a categorical target, a numeric target and two informative features."""
    rng = np.random.default_rng(0)
    n = 600
    a, b = rng.normal(size=n), rng.normal(size=n) * 10 + 50
    score = a + (b - 50) / 10
    species = np.where(score > 0.5, "setosa", np.where(score > -0.5, "versicolor",
                                                       "virginica"))
    price = 3 * a - 0.2 * b + rng.normal(size=n) * 0.05
    path = tmp_path / "flowers.csv"
    with open(path, "w") as fh:
        fh.write("sepal,petal,species,price\n")
        for i in range(n):
            fh.write(f"{a[i]:.5f},{b[i]:.5f},{species[i]},{price[i]:.5f}\n")
    return path


@pytest.mark.slow
def test_train_save_predict_on_a_csv(tmp_path, flowers):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (gpunn[plot])")
    model_path = tmp_path / "model.npz"
    out = _gpunn("train", "--data", str(flowers), "--target", "species", "--epochs", "40",
                 "--save", str(model_path), "--plot", str(tmp_path / "plots"))
    assert out.returncode == 0, out.stderr
    assert "data: flowers.csv (480 train / 120 validation rows, 3 features, multiclass, " \
           "3 classes)" in out.stdout
    best = float(out.stdout.split("best val_accuracy ")[1].split()[0])
    assert best >= 0.9
    assert (tmp_path / "plots" / "history.png").stat().st_size > 1000
    model = gn.load(model_path)
    assert model.extra["classes"] == ["setosa", "versicolor", "virginica"]
    assert model.extra["feature_names"] == ["sepal", "petal", "price"]
    preds = tmp_path / "preds.csv"
    out = _gpunn("predict", str(model_path), "--data", str(flowers), "--out", str(preds))
    assert out.returncode == 0, out.stderr
    lines = preds.read_text().splitlines()
    assert lines[0] == "species,p_setosa,p_versicolor,p_virginica" and len(lines) == 601
    truth = [line.split(",")[2] for line in flowers.read_text().splitlines()[1:]]
    guessed = [line.split(",")[0] for line in lines[1:]]
    assert np.mean(np.array(truth) == np.array(guessed)) >= 0.9
    probs = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_regression_and_binary_tasks(tmp_path, flowers):
    # species is text: it becomes three one-hot features.
    out = _gpunn("train", "--data", str(flowers), "--target", "price", "--epochs", "60",
                 "--layers", "16", "--save", str(tmp_path / "r.npz"), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "5 features, regression" in out.stderr and "best val_mae" in out.stdout
    assert float(out.stdout.split("best val_mae ")[1].split()[0]) < 0.3
    assert gn.load(tmp_path / "r.npz").extra["feature_names"] == [
        "sepal", "petal", "species=setosa", "species=versicolor", "species=virginica"]
    out = _gpunn("predict", str(tmp_path / "r.npz"), "--data", str(flowers))
    assert out.returncode == 0 and out.stdout.splitlines()[0] == "price"
    preds = np.array([float(v) for v in out.stdout.splitlines()[1:]])
    truth = np.array([float(r.split(",")[3]) for r in flowers.read_text().splitlines()[1:]])
    assert np.abs(preds - truth).mean() < 0.3
    binary = tmp_path / "binary.csv"
    binary.write_text("x,label\n" + "\n".join(f"{v},{'yes' if v > 0 else 'no'}"
                                              for v in np.linspace(-2, 2, 200)))
    out = _gpunn("train", "--data", str(binary), "--target", "label", "--epochs", "30",
                 "--save", str(tmp_path / "b.npz"), "--quiet")
    assert out.returncode == 0 and "binary" in out.stderr, out.stderr
    out = _gpunn("predict", str(tmp_path / "b.npz"), "--data", str(binary))
    assert out.stdout.splitlines()[0] == "label,p_yes"
    assert out.stdout.splitlines()[-1].startswith("yes,")


@pytest.mark.slow
def test_task_override_and_npz_input(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = _gpunn("train", "--data", str(tmp_path / "d.npz"), "--epochs", "2", "--quiet")
    assert out.returncode == 0 and "multiclass, 3 classes" in out.stderr, out.stderr
    out = _gpunn("train", "--data", str(tmp_path / "d.npz"), "--task", "regression",
                 "--epochs", "2", "--quiet")
    assert out.returncode == 0 and "regression" in out.stderr, out.stderr


@pytest.mark.parametrize("content,args,match", [
    ("", ["--target", "y"], "empty file"),
    ("a,b\n", ["--target", "b"], "header only"),
    ("a,b\n1,2\n3\n", ["--target", "b"], "line 3 has 1 fields, the header has 2"),
    ("a,b\n1,2\n", ["--target", "c"], "no column 'c'; columns are a, b"),
    ("a,a\n1,2\n", ["--target", "a"], "duplicate column names"),
    ("a,b\n1,1\n,0\n", ["--target", "b"], "missing values in column(s) 'a' in 1 row (data "
                                          "row 2); pass --impute"),
    ("a,b\n1,2\n", [], "--target: name the column to predict"),
    ("a,b\n1,1\n2,1\n", ["--target", "b"], "at least 2 classes"),
    ("a,b\n1,1\n2,2\n3,3\n", ["--target", "b", "--task", "binary"], "exactly 2 classes"),
])
def test_bad_csv_files(tmp_path, content, args, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    out = _gpunn("train", "--data", str(path), *args, "--epochs", "1")
    assert out.returncode == 2 and match in out.stderr, out.stderr


@pytest.mark.parametrize("args,match", [
    (["train", "--data", "nope.csv", "--target", "y"], "nope.csv: no such file"),
    (["train", "--data", "x.parquet", "--target", "y"], "x.parquet: no such file"),
    (["train", "--data", "x.xlsx", "--target", "y"], "unsupported file type '.xlsx'"),
    (["train", "--target", "y"], "--target only applies with --data"),
    (["train", "--layers", "12,x"], "comma-separated sizes"),
    (["train", "--val-split", "1.5"], "fraction in [0, 1)"),
    (["train", "--lr", "-1"], "positive"),
    (["train", "--activation", "swish"], "invalid choice"),
    (["predict", "missing.npz", "--data", "x.csv"], "No such file"),
])
def test_bad_arguments(args, match):
    out = _gpunn(*args)
    assert out.returncode == 2 and match in out.stderr, out.stderr


def test_cli_says_why_a_separator_is_refused(tmp_path):
    out = _gpunn("train", "--data", tmp_path / "d.csv", "--target", "y", "--sep", "::")
    assert out.returncode == 2
    assert "argument --sep: expected one character (or 'tab'), got '::'" in out.stderr


@pytest.mark.slow
def test_builtin_sklearn_datasets():
    pytest.importorskip("sklearn", reason="scikit-learn not installed")
    out = _gpunn("train", "--dataset", "iris", "--epochs", "60", "--batch-size", "16",
                 "--quiet")
    assert out.returncode == 0, out.stderr
    assert "iris (120 train / 30 validation rows, 4 features, multiclass, 3 classes)" \
        in out.stderr
    assert float(out.stdout.split("best val_accuracy ")[1].split()[0]) >= 0.9


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                     for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.slow
def test_mnist_from_local_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    # Images that encode their label so a small net can learn them.
    images = rng.integers(0, 40, (300, 28, 28))
    for i, k in enumerate(labels):
        images[i, k * 2:k * 2 + 3, :] = 250
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images[:240])
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels[:240])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images[240:])  # unzipped works too
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[240:])
    out = _gpunn("train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "15",
                 "--layers", "32", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "784 features, multiclass, 10 classes" in out.stderr
    assert float(out.stdout.split("test accuracy ")[1].split()[0]) >= 0.9


def test_image_datasets_know_their_sample_shape(tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn not installed")
    digits = datasets.load_builtin("digits")
    assert digits.sample_shape == (1, 8, 8) and digits.X.shape == (1797, 64)
    assert datasets.load_builtin("iris").sample_shape is None
    assert datasets.load_builtin("moons").sample_shape is None
    labels = np.arange(20) % 10
    for kind in ("train", "t10k"):
        _write_idx(tmp_path / f"{kind}-images-idx3-ubyte", np.zeros((20, 28, 28)))
        _write_idx(tmp_path / f"{kind}-labels-idx1-ubyte", labels)
    mnist = datasets.load_mnist("mnist", data_dir=tmp_path)
    assert mnist.sample_shape == (1, 28, 28) and mnist.X.shape == (20, 784)


def test_mnist1d_is_generated_with_its_own_seed():
    pytest.importorskip("mnist1d", reason="the mnist1d package is not installed "
                        "(pip install mnist1d)")
    # The package seeds NumPy's legacy global generator; ours must come back unchanged.
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    data = datasets.load_builtin("mnist1d", seed=7)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert data.X.shape == (4000, 40) and data.X_test.shape == (1000, 40)
    assert data.X.dtype == np.float32 and data.y.dtype == np.int64
    assert data.sample_shape == (1, 40) and data.task == "multiclass"
    assert data.classes == [str(d) for d in range(10)] and set(data.y) == set(range(10))
    again = datasets.load_builtin("mnist1d", seed=0)  # the paper's data, any seed
    np.testing.assert_array_equal(data.X, again.X)
    np.testing.assert_array_equal(data.y_test, again.y_test)
    data.X[:] = 0  # each call has its own arrays
    assert again.X.any()


def test_mnist1d_without_the_package_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    datasets._mnist1d_arrays.cache_clear()
    assert cli.main(["train", "--dataset", "mnist1d", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("gpunn: error: dataset 'mnist1d'")
    assert "pip install mnist1d (or gpunn[mnist1d])" in err


def test_corrupt_idx_file(tmp_path):
    (tmp_path / "bad.idx").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(datasets.DatasetError, match=r"declares shape \(9,\) \(9 bytes\) but 2"):
        datasets.read_idx(tmp_path / "bad.idx")


def test_download_offline_and_checksum_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPUNN_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    assert cli.main(["train", "--dataset", "fashion-mnist", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "could not download train-images-idx3-ubyte.gz" in err and "--data-dir" in err

    class Fake(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda *a, **k: Fake(b"evil"))
    assert cli.main(["train", "--dataset", "mnist", "--epochs", "1"]) == 2
    assert "SHA-256 mismatch" in capsys.readouterr().err
    assert not list((tmp_path / "cache" / "mnist").glob("*.gz"))  # nothing kept


def test_info_command():
    out = _gpunn("info")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].startswith("gpunn ") and any(x.startswith("numpy ") for x in lines)
    assert "  cpu: usable (NumPy)" in lines and any(x.startswith("  cuda: ") for x in lines)


# ---------------------------------------------------------------------- predict's files
def test_predict_never_overwrites_its_inputs(tmp_path, run_cli):
    csv = tmp_path / "f.csv"
    rows = ["a,b,label"] + [f"{i % 7},{i % 3},{'x' if i % 2 else 'y'}" for i in range(30)]
    csv.write_text("\n".join(rows) + "\n")
    model = tmp_path / "m.npz"
    assert run_cli("train", "--data", str(csv), "--target", "label", "--epochs", "1",
                   "--save", str(model), "--quiet")[0] == 0
    for out in (csv, model):
        before = out.read_bytes()
        code, _, err = run_cli("predict", str(model), "--data", str(csv), "--out", str(out))
        assert code == 2 and "is also an input" in err and out.read_bytes() == before
    code, _, err = run_cli("predict", str(model), "--data", str(csv), "--out",
                           str(tmp_path / "p.csv"))
    assert code == 0 and (tmp_path / "p.csv").read_text().startswith("label,")


def test_malformed_npz_and_crafted_model_extras_are_one_line_errors(tmp_path, run_cli):
    import io
    import json

    bad = tmp_path / "scalar_y.npz"
    np.savez(bad, X=np.zeros((5, 2)), y=np.float64(3.0))
    code, _, err = run_cli("train", "--data", str(bad), "--epochs", "1")
    assert code == 2 and "1-D or 2-D" in err and len(err.strip().splitlines()) == 1

    csv = tmp_path / "f.csv"
    csv.write_text("a,label\n" + "".join(f"{i % 7},{'x' if i % 2 else 'y'}\n" for i in range(20)))
    model = tmp_path / "m.npz"
    assert run_cli("train", "--data", str(csv), "--target", "label", "--epochs", "1",
                   "--save", str(model), "--quiet")[0] == 0
    for field, value in [("columns", [{"name": 3}]), ("columns", "a"), ("classes", {"x": 1}),
                         ("task", "ranking"), ("target", ["t"]), ("classes", None)]:
        with np.load(model, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        header = json.loads(arrays["__gpunn__"].tobytes())
        header["extra"][field] = value
        arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        crafted = tmp_path / "crafted.npz"
        crafted.write_bytes(buffer.getvalue())
        code, _, err = run_cli("predict", str(crafted), "--data", str(csv))
        assert code == 2 and "malformed" in err and len(err.strip().splitlines()) == 1, (
            field, value, err)


@pytest.mark.slow
def test_plots_for_2d_data(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (gpunn[plot])")
    out = _gpunn("train", "--dataset", "moons", "--epochs", "3", "--plot", str(tmp_path),
                 "--quiet")
    assert out.returncode == 0, out.stderr
    for name in ("history.png", "decision_boundary.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- bad input changes nothing
# Bad inputs to train and predict: each is one line, exit 2, and the model file is left
# as it was. The Python API's half of the table is in test_training_arguments.py.
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
    from test_training_arguments import API_CASES  # the Python API's half of the table

    assert len(API_CASES) + len(CLI_CASES) >= 30


def test_predict_refuses_to_label_non_finite_outputs(tmp_path, run_cli):
    """Weights within float32's range can still overflow in the forward pass: a NaN
    probability must never be written out as the first class."""
    import io
    import json

    csv = tmp_path / "f.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i % 7},{i % 3},{'xyz'[i % 3]}\n"
                                           for i in range(30)))
    model = tmp_path / "m.npz"
    assert run_cli("train", "--data", str(csv), "--target", "label", "--epochs", "1",
                   "--save", str(model), "--quiet")[0] == 0
    with np.load(model, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    name = next(k for k in arrays if k.startswith("param/") and k.endswith("/W"))
    arrays[name] = np.full(arrays[name].shape, 3e38, arrays[name].dtype)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    crafted = tmp_path / "overflow.npz"
    crafted.write_bytes(buffer.getvalue())
    assert json.loads(arrays["__gpunn__"].tobytes())["dtype"] == "float32"
    code, out, err = run_cli("predict", str(crafted), "--data", str(csv))
    assert code == 2 and "NaN or infinite" in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_a_german_spreadsheet_through_train_and_predict(tmp_path):
    """scikit-learn's wine data as a German spreadsheet writes it: one note for the file's
    convention, no column turned into categories or left out, and predict reading the
    prices and proline of a new file the same way."""
    from test_data_tables import german_wine

    path = tmp_path / "wine.csv"
    german_wine(path)
    model = tmp_path / "m.npz"
    run = _gpunn("train", "--data", path, "--target", "cultivar", "--epochs", "40",
                 "--save", model, "--seed", "0")
    assert run.returncode == 0, run.stderr
    notes = [line for line in run.stderr.splitlines() if line.startswith("note:")]
    assert notes[0] == ("note: numbers in this file are read with decimal mark ',' (column "
                        "'alcohol' holds '14,23'), thousands separator '.', in every column")
    assert not any("one-hot" in n or "left out" in n for n in notes), notes
    out = tmp_path / "p.csv"
    run = _gpunn("predict", model, "--data", path, "--out", out)
    assert run.returncode == 0, run.stderr
    import pandas as pd

    truth = pd.read_csv(path, sep=";")["cultivar"].astype(str)
    predicted = pd.read_csv(out).iloc[:, 0].astype(str)
    assert (predicted == truth).mean() > 0.9


def test_reading_flags_from_the_command_line(tmp_path):
    """--date-format, --na-values and a gzipped file, through train and predict as a user
    types them; --help describes each."""
    rows = ["day;price;rate;y"]
    for i in range(120):
        price = "unknown" if i == 7 else f"{1000 + 13 * i:,}".replace(",", ".") + ",50 €"
        rows.append(f"2019{8 + i % 3:02d}{i % 28 + 1:02d};{price};{i % 40},5%;{i % 2}")
    path = tmp_path / "sales.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    model = tmp_path / "m.npz"
    run = _gpunn("train", "--data", path, "--target", "y", "--epochs", "2", "--save", model,
                 "--date-format", "%Y%m%d", "--na-values", "unknown", "--impute", "median")
    assert run.returncode == 0, run.stderr
    for said in ("decimal mark ','", "thousands separator '.'",
                 "column 'day': dates written as '%Y%m%d' (--date-format)",
                 "currency '€' dropped", "percentages read as fractions",
                 "'price': 1 missing value(s) filled with the median"):
        assert said in run.stderr, (said, run.stderr)
    new = tmp_path / "new.csv.gz"
    with gzip.open(new, "wt", encoding="utf-8") as fh:
        fh.write("day;price;rate\n20190901;1.234,50 €;3,5%\n20190902;unknown;1%\n")
    out = tmp_path / "p.csv"
    run = _gpunn("predict", model, "--data", new, "--out", out)
    assert run.returncode == 0 and "filled as in training" in run.stderr, run.stderr
    assert len(out.read_text().splitlines()) == 3
    helped = _gpunn("train", "--help").stdout
    for flag in ("--date-format", "--na-values", "--decimal", "--thousands"):
        assert flag in helped
