"""``gpunn predict`` and ``gpunn evaluate`` (gpunn.cli_predict): predictions a user can
join back to their rows (an ID column, ``\\n`` line ends, Parquet), from CSV, Parquet or
.npz rows, for models trained on tables, arrays or built-in sets; scores of a saved model
on labelled rows, with a picture; and the same column decisions from Python."""

import re

import numpy as np
import pytest

import gpunn as gn

pd = pytest.importorskip("pandas", reason='reading tables needs pandas (gpunn[data])')


@pytest.fixture
def table(tmp_path):
    """A small classification table with a text column, and a model trained on it."""
    rng = np.random.default_rng(0)
    n = 240
    colour = rng.choice(["red", "green", "blue"], size=n)
    x = rng.normal(size=n)
    label = np.where((colour == "red") | (x > 0.8), "yes", "no")
    frame = pd.DataFrame({"id": [f"r{i:04d}" for i in range(n)], "colour": colour, "x": x,
                          "label": label})
    frame.to_csv(tmp_path / "t.csv", index=False)
    return frame


def _train(run_cli, tmp_path, *argv):
    code, out, err = run_cli("train", *argv, "--epochs", "15", "--device", "cpu",
                             "--save", tmp_path / "m.npz")
    assert code == 0, err
    return tmp_path / "m.npz"


# ---------------------------------------------------------------------- predict
def test_predictions_carry_the_id_column_and_unix_line_ends(tmp_path, run_cli, table):
    model = _train(run_cli, tmp_path, "--data", tmp_path / "t.csv", "--target", "label",
                   "--drop", "id")
    code, out, err = run_cli("predict", model, "--data", tmp_path / "t.csv", "--id", "id",
                             "--out", tmp_path / "p.csv")
    assert code == 0, err
    raw = (tmp_path / "p.csv").read_bytes()
    assert b"\r" not in raw and raw.startswith(b"id,label,p_yes\nr0000,")
    written = pd.read_csv(tmp_path / "p.csv")
    assert list(written["id"]) == list(table["id"])
    code, out, err = run_cli("predict", model, "--data", tmp_path / "t.csv")  # stdout too
    assert "\r" not in out and out.startswith("label,p_yes\n")


def test_a_parquet_name_gets_a_parquet_file(tmp_path, run_cli, table):
    pytest.importorskip("pyarrow")
    model = _train(run_cli, tmp_path, "--data", tmp_path / "t.csv", "--target", "label",
                   "--drop", "id")
    code, out, err = run_cli("predict", model, "--data", tmp_path / "t.csv", "--id", "id",
                             "--out", tmp_path / "p.parquet")
    assert code == 0, err
    assert (tmp_path / "p.parquet").read_bytes()[:4] == b"PAR1"
    written = pd.read_parquet(tmp_path / "p.parquet")
    assert list(written.columns) == ["id", "label", "p_yes"]
    assert written["p_yes"].dtype == np.float64 and written["id"].iloc[3] == "r0003"


def test_a_missing_id_column_is_one_line(tmp_path, run_cli, table):
    model = _train(run_cli, tmp_path, "--data", tmp_path / "t.csv", "--target", "label",
                   "--drop", "id")
    code, out, err = run_cli("predict", model, "--data", tmp_path / "t.csv", "--id", "key")
    assert code == 2 and err.count("\n") == 1 and "no column 'key'" in err


def test_a_builtin_set_model_predicts_on_a_csv_of_its_features_and_on_an_npz(tmp_path,
                                                                              run_cli):
    datasets = pytest.importorskip("sklearn.datasets")
    iris = datasets.load_iris(as_frame=True)
    frame = iris.frame.copy()
    frame["target"] = np.asarray(iris.target_names)[iris.target]
    frame.to_csv(tmp_path / "iris.csv", index=False)
    np.savez(tmp_path / "iris.npz", X=iris.data.to_numpy(), y=frame["target"].to_numpy(),
             row=np.arange(150))
    model = _train(run_cli, tmp_path, "--dataset", "iris")
    code, out, err = run_cli("predict", model, "--data", tmp_path / "iris.csv")
    assert code == 0, err
    from_csv = pd.read_csv(__import__("io").StringIO(out))
    assert list(from_csv.columns) == ["target", "p_setosa", "p_versicolor", "p_virginica"]
    assert (from_csv["target"] == frame["target"]).mean() > 0.8
    code, out, err = run_cli("predict", model, "--data", tmp_path / "iris.npz", "--id", "row")
    assert code == 0, err
    from_npz = pd.read_csv(__import__("io").StringIO(out))
    assert list(from_npz["row"]) == list(range(150))
    np.testing.assert_allclose(from_npz["p_setosa"], from_csv["p_setosa"], rtol=1e-5)


def test_an_npz_model_predicts_on_an_npz_and_a_wrong_width_is_named(tmp_path, run_cli):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    np.savez(tmp_path / "d.npz", X=X, y=X[:, 0] - X[:, 1])
    model = _train(run_cli, tmp_path, "--data", tmp_path / "d.npz")
    code, out, err = run_cli("predict", model, "--data", tmp_path / "d.npz")
    assert code == 0, err and out.startswith("y\n")
    np.savez(tmp_path / "w.npz", X=X[:, :2])
    code, out, err = run_cli("predict", model, "--data", tmp_path / "w.npz")
    assert code == 2 and "X has 2 columns; the model takes 3" in err


# ---------------------------------------------------------------------- evaluate
def test_evaluate_reports_classes_and_draws_the_confusion_matrix(tmp_path, run_cli, table):
    pytest.importorskip("matplotlib")
    model = _train(run_cli, tmp_path, "--data", tmp_path / "t.csv", "--target", "label",
                   "--drop", "id")
    code, out, err = run_cli("evaluate", model, "--data", tmp_path / "t.csv", "--plot",
                             tmp_path / "cm.png")
    assert code == 0, err
    accuracy = float(re.search(r"accuracy ([\d.]+) \((\d+) of 240 rows\)", out).group(1))
    assert accuracy > 0.8
    assert re.search(r"class +precision +recall +f1 +support", out)
    assert re.search(r"\nno +[\d.]+ +[\d.]+ +[\d.]+ +\d+\n", out)
    assert "confusion matrix (rows: true class, columns: predicted class):" in out
    rows = out.split("columns: predicted class):\n")[1].splitlines()
    counts = [[int(v) for v in line.split()[1:]] for line in rows[1:3]]
    assert sum(map(sum, counts)) == 240 and round(accuracy * 240) == counts[0][0] + counts[1][1]
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_scores_a_regression_in_the_targets_units(tmp_path, run_cli):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1],
                          "price": 1e5 * (X[:, 0] + 0.5 * X[:, 1]) + 4e5})
    frame.to_csv(tmp_path / "r.csv", index=False)
    model = _train(run_cli, tmp_path, "--data", tmp_path / "r.csv", "--target", "price")
    code, out, err = run_cli("evaluate", model, "--data", tmp_path / "r.csv")
    assert code == 0, err
    found = re.search(r"MAE ([\d.e+]+), RMSE ([\d.e+]+), R² ([\d.]+) \(in the target's "
                      r"units\)", out)
    assert found and 100 < float(found.group(1)) < 5e4 and float(found.group(3)) > 0.9


def test_evaluate_errors_are_one_line(tmp_path, run_cli, table):
    model = _train(run_cli, tmp_path, "--data", tmp_path / "t.csv", "--target", "label",
                   "--drop", "id")
    table.drop(columns="label").to_csv(tmp_path / "nolabel.csv", index=False)
    code, out, err = run_cli("evaluate", model, "--data", tmp_path / "nolabel.csv")
    assert code == 2 and err.count("\n") == 1 and "no column 'label'" in err
    table.assign(label="maybe").to_csv(tmp_path / "odd.csv", index=False)
    code, out, err = run_cli("evaluate", model, "--data", tmp_path / "odd.csv")
    assert code == 2 and err.count("\n") == 1 and "['maybe'] are not among" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------- from Python
def test_a_cli_model_predicts_on_a_dataframe_of_raw_columns(tmp_path, run_cli, table):
    model = _train(run_cli, tmp_path, "--data", tmp_path / "t.csv", "--target", "label",
                   "--drop", "id")
    code, out, err = run_cli("predict", model, "--data", tmp_path / "t.csv")
    from_cli = pd.read_csv(__import__("io").StringIO(out))["p_yes"].to_numpy()
    loaded = gn.load(model, device="cpu")
    raw = pd.read_csv(tmp_path / "t.csv")  # text, numbers, the target: as a user has it
    proba = gn.to_numpy(loaded.predict(raw))[:, 0]
    np.testing.assert_allclose(proba, from_cli, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"missing feature column\(s\) \['colour'\]"):
        loaded.predict(raw.drop(columns="colour"))


def test_export_names_the_encoded_inputs_the_graph_takes(tmp_path, run_cli, table):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _train(run_cli, tmp_path, "--data", tmp_path / "t.csv", "--target", "label",
                   "--drop", "id")
    code, out, err = run_cli("export", model, "--onnx", tmp_path / "m.onnx")
    assert code == 0, err
    names = re.search(r"input columns, in order: (.*)\n", out).group(1).split(", ")
    assert sorted(names) == ["colour=blue", "colour=green", "colour=red", "x"]
    assert "the graph takes these encoded, not the table's raw columns" in out
    raw = pd.read_csv(tmp_path / "t.csv")
    encoded = np.stack([(raw["colour"] == n.split("=")[1]).to_numpy(float) if "=" in n
                        else raw[n].to_numpy(float) for n in names], axis=1)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": encoded.astype(np.float32)})[0]
    expected = gn.to_numpy(gn.load(model, device="cpu").predict(raw))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
