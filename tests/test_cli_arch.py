"""``gpunn train --arch net.json`` (gpunn.cli_arch): the network comes from a JSON list of
layer dicts, a Reshape to the dataset's sample shape is put first when the network needs
one, and a network that cannot take the data or serve the task is refused before
training, in one line naming the file and the layer. The example files build."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import gpunn as gn

EXAMPLES = Path(__file__).parents[1] / "examples"
#: Each example network, and the flat rows it takes.
NETWORKS = {"mnist1d_logistic.json": 40, "mnist1d_mlp.json": 40, "mnist1d_cnn.json": 40,
            "digits_cnn.json": 64}
TINY_CNN = [{"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3,
             "padding": 1, "activation": "relu"},
            {"type": "maxpool2d", "kernel_size": 2},
            {"type": "flatten"},
            {"type": "dense", "in_features": 64, "out_features": 10, "activation": "softmax"}]


def _file(tmp_path, arch, name="net.json"):
    path = tmp_path / name
    path.write_text(arch if isinstance(arch, str) else json.dumps(arch))
    return path


def _error(err):
    """The one error line (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpunn: error: "), err
    return lines[0]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_example_network_builds(name):
    arch = json.loads((EXAMPLES / name).read_text())
    if name == "digits_cnn.json":  # the command line puts the reshape first
        arch = [{"type": "reshape", "shape": [1, 8, 8]}, *arch]
    model = gn.Sequential.from_architecture(arch, device="cpu", seed=0)
    x = np.random.default_rng(0).normal(size=(3, NETWORKS[name])).astype(np.float32)
    proba = np.asarray(model.predict(x))
    assert proba.shape == (3, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_the_paper_networks_have_the_papers_shapes():
    cnn = gn.Sequential.from_architecture(
        json.loads((EXAMPLES / "mnist1d_cnn.json").read_text()), device="cpu")
    convs = [layer for layer in cnn.layers if isinstance(layer, gn.Conv1D)]
    assert [c.output_shape(None)[0] for c in convs] == [25, 25, 25]
    assert cnn.layers[4].output_shape((25, 5)) == (125,)
    assert cnn.layers[:4][-1].output_shape(cnn.layers[2].output_shape(
        cnn.layers[1].output_shape((1, 40)))) == (25, 5)  # 40 -> 19 -> 10 -> 5
    mlp = gn.Sequential.from_architecture(
        json.loads((EXAMPLES / "mnist1d_mlp.json").read_text()), device="cpu")
    assert [type(layer).__name__ for layer in mlp.layers] == ["Dense", "Residual", "Dense"]


def test_help_documents_arch(run_cli):
    code, out, _ = run_cli("train", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "--arch FILE.json" in out and '"type": "conv1d"' in text
    assert "Example: gpunn train --dataset digits --arch examples/digits_cnn.json" in text


def test_digits_cnn_trains_and_predicts_flat_rows(tmp_path, run_cli):
    pytest.importorskip("sklearn", reason="digits comes with scikit-learn")
    path = tmp_path / "cnn.npz"
    code, out, err = run_cli("train", "--dataset", "digits", "--arch", _file(tmp_path, TINY_CNN),
                             "--epochs", "3", "--device", "cpu", "--save", path)
    assert code == 0, err
    assert "note: " in err and "Reshape((1, 8, 8)) put first, so the model takes the flat " \
        "rows of digits (64 features)" in err
    assert "network: reshape 1x8x8, conv2d 4 k3 relu, maxpool2d 2, flatten, dense 10 " \
        "softmax (690 parameters)" in out
    accuracy = float(out.split("best val_accuracy ")[1].split()[0])
    assert accuracy > 0.5  # chance is 0.1
    model = gn.load(path, device="cpu")
    assert isinstance(model.layers[0], gn.Reshape) and model.layers[0].shape == (1, 8, 8)
    from sklearn.datasets import load_digits

    digits = load_digits()
    proba = np.asarray(model.predict(digits.data[:50].astype(np.float32)))
    assert proba.shape == (50, 10)
    assert np.mean(proba.argmax(axis=1) == digits.target[:50]) > 0.5


@pytest.mark.slow
def test_the_digits_example_trains_above_chance(run_cli):
    pytest.importorskip("sklearn", reason="digits comes with scikit-learn")
    code, out, err = run_cli("train", "--dataset", "digits", "--arch",
                             EXAMPLES / "digits_cnn.json", "--epochs", "2", "--device", "cpu")
    assert code == 0, err
    assert float(out.split("best val_accuracy ")[1].split()[0]) > 0.8


def test_mnist1d_cnn_one_epoch(run_cli):
    pytest.importorskip("mnist1d", reason="the mnist1d package is not installed "
                        "(pip install mnist1d)")
    code, out, err = run_cli("train", "--dataset", "mnist1d", "--arch",
                             EXAMPLES / "mnist1d_cnn.json", "--epochs", "1", "--device", "cpu")
    assert code == 0, err
    assert "note: " not in err  # the network begins with its own reshape
    assert "data: mnist1d (3200 train / 800 validation rows, 40 features, multiclass, " \
        "10 classes)" in out
    assert "network: reshape 1x40, conv1d 25" in out
    assert float(out.split("test accuracy ")[1].split()[0]) > 0.15


def test_a_saved_csv_model_predicts_from_the_command_line(tmp_path, run_cli):
    """A network that reshapes table rows itself: trained, saved, then gpunn predict."""
    pytest.importorskip("pandas", reason="CSV files are read with pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 8))
    y = (X[:, :4].sum(axis=1) > 0).astype(int)
    rows = ["a,b,c,d,e,f,g,h,label"] + [",".join(f"{v:.4f}" for v in x) + f",{'yn'[k]}"
                                        for x, k in zip(X, y)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    arch = [{"type": "reshape", "shape": [1, 8]},
            {"type": "conv1d", "in_channels": 1, "out_channels": 4, "kernel_size": 3,
             "activation": "relu"},
            {"type": "flatten"},
            {"input_dim": 24, "output_dim": 1, "activation": "sigmoid"}]
    model = tmp_path / "m.npz"
    code, out, err = run_cli("train", "--data", tmp_path / "t.csv", "--target", "label",
                             "--arch", _file(tmp_path, arch), "--epochs", "3", "--device",
                             "cpu", "--save", model)
    assert code == 0, err
    code, out, err = run_cli("predict", model, "--data", tmp_path / "t.csv", "--device", "cpu")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "label,p_y" and len(lines) == 241


def test_regression_takes_any_output_activation(run_cli, tmp_path):
    pytest.importorskip("pandas", reason="CSV files are read with pandas")
    rng = np.random.default_rng(0)
    rows = ["a,b,t"] + [f"{a:.3f},{b:.3f},{a * 2 + b + 0.5:.3f}"
                        for a, b in rng.normal(size=(100, 2))]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    arch = [{"type": "dense", "in_features": 2, "out_features": 8, "activation": "tanh"},
            {"type": "dense", "in_features": 8, "out_features": 1}]
    code, out, err = run_cli("train", "--data", tmp_path / "r.csv", "--target", "t", "--arch",
                             _file(tmp_path, arch), "--epochs", "2", "--device", "cpu")
    assert code == 0, err
    assert "network: dense 8 tanh, dense 1 (" in out


DENSE_2_TO_3 = [{"type": "dense", "in_features": 2, "out_features": 3,
                 "activation": "softmax"}]


@pytest.mark.parametrize("arch,flags,match", [
    ('[{"type": "dense",\n  "in_features": 2,,}]', [],
     r"net\.json: not valid JSON: Expecting property name enclosed in double quotes at line "
     r"2 column 20$"),
    ('{"type": "dense"}', [], r"net\.json: expected a JSON list of layer dicts \(e\.g\. "
                             r"\[\{\"type\": \"dense\".*got a JSON dict"),
    ("[]", [], r"net\.json: expected a JSON list of layer dicts .*got an empty list"),
    ([{"type": "conv3d"}], [], r"net\.json: architecture\[0\]: unknown layer type 'conv3d'"),
    ([{"type": "dense", "in_features": 4, "out_features": 3, "activation": "softmax"}], [],
     r"net\.json: layer 0 \(Dense\(4, 3, activation='softmax'\)\) expects 4 features, but "
     r"spirals has 2 features$"),
    ([{"type": "dense", "in_features": 2, "out_features": 5, "activation": "softmax"}], [],
     r"net\.json: the network outputs \(batch, 5\) per sample, but spirals has 3 classes: "
     r"end it with a layer of 3 outputs$"),
    ([{"type": "dense", "in_features": 2, "out_features": 3}], [],
     r"net\.json: the last layer \(Dense\(2, 3\)\) has no activation, but the loss "
     r"categorical_crossentropy \(multiclass\) takes probabilities: give it \"activation\": "
     r"\"softmax\"$"),
    ([{"type": "dense", "in_features": 2, "out_features": 1, "activation": "softmax"}],
     ["--dataset", "moons"],
     r"net\.json: the last layer \(Dense\(2, 1, activation='softmax'\)\) has a softmax "
     r"activation, but the loss binary_crossentropy "
     r"\(binary\) takes probabilities: give it \"activation\": \"sigmoid\""),
    ([{"type": "conv1d", "in_channels": 1, "out_channels": 2, "kernel_size": 2}], [],
     r"net\.json: the network begins with Conv1D\(1, 2, 2\), which takes inputs of shape "
     r"\(batch, 1, \?\), but spirals has flat rows of 2 features and no sample shape; begin "
     r"the network with a reshape"),
    ([{"type": "dense", "in_features": 2, "out_features": 4},
      {"type": "dense", "in_features": 5, "out_features": 3, "activation": "softmax"}], [],
     r"net\.json: layer 1 \(Dense\(5, 3, activation='softmax'\)\) expects 5 features, but "
     r"layer 0 \(Dense\(2, 4\)\) outputs 4$"),
    ([{"type": "reshape", "shape": [1, 3]}, {"type": "flatten"}, *DENSE_2_TO_3], [],
     r"net\.json: layer Reshape\(\(1, 3\)\): cannot reshape inputs of shape \(batch, 2\) "
     r"\(2 values per sample\) to \(1, 3\)"),
    (DENSE_2_TO_3, ["--layers", "8"], r"--arch .*net\.json describes the whole network, so "
                                      r"--layers cannot be given with it"),
    (DENSE_2_TO_3, ["--activation", "tanh"], r"so --activation cannot be given with it"),
])
def test_networks_that_do_not_fit_are_refused_in_one_line(tmp_path, run_cli, arch, flags,
                                                          match):
    args = ["train", "--arch", _file(tmp_path, arch), "--epochs", "1", "--device", "cpu"]
    code, out, err = run_cli(*args, *(flags or ["--dataset", "spirals"]))
    assert code == 2 and "epoch" not in out
    assert _error(err)
    assert re.search(match, _error(err)), _error(err)


@pytest.mark.parametrize("first,match", [
    ({"type": "maxpool1d", "kernel_size": 2},
     r"layer 1 \(MaxPool1D\(2\)\) expects inputs of shape \(batch, \?, \?\), but layer 0 "
     r"\(Reshape\(\(1, 8, 8\)\)\) outputs \(batch, 1, 8, 8\)"),
    ({"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3},
     r"layer 1 \(Conv2D\(3, 4, \(3, 3\)\)\) expects inputs of shape \(batch, 3, \?, \?\), "
     r"but layer 0 \(Reshape\(\(1, 8, 8\)\)\) outputs \(batch, 1, 8, 8\)"),
    ({"type": "conv1d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
     r"layer 1 \(Conv1D\(1, 4, 3\)\) expects inputs of shape \(batch, 1, \?\), but layer 0 "
     r"\(Reshape\(\(1, 8, 8\)\)\) outputs \(batch, 1, 8, 8\)"),
])
def test_convolutions_must_fit_the_sample_shape(tmp_path, run_cli, first, match):
    pytest.importorskip("sklearn", reason="digits comes with scikit-learn")
    arch = [first, {"type": "flatten"},
            {"type": "dense", "in_features": 4, "out_features": 10, "activation": "softmax"}]
    code, _, err = run_cli("train", "--dataset", "digits", "--arch", _file(tmp_path, arch),
                           "--epochs", "1", "--device", "cpu")
    assert code == 2
    error = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(error) == 1 and error[0].startswith("gpunn: error: ")
    assert re.search(match, error[0]), error[0]


def test_a_flatten_that_gives_the_wrong_width_names_the_dense_after_it(tmp_path, run_cli):
    pytest.importorskip("sklearn", reason="digits comes with scikit-learn")
    arch = [*TINY_CNN[:3], {"type": "dense", "in_features": 100, "out_features": 10,
                            "activation": "softmax"}]
    code, _, err = run_cli("train", "--dataset", "digits", "--arch", _file(tmp_path, arch),
                           "--epochs", "1", "--device", "cpu")
    assert code == 2
    assert "net.json: layer 4 (Dense(100, 10, activation='softmax')) expects 100 features, " \
        "but layer 3 (Flatten()) outputs 64" in err


def test_a_missing_file_is_one_line(tmp_path, run_cli):
    code, _, err = run_cli("train", "--arch", tmp_path / "nope.json", "--epochs", "1")
    assert code == 2
    assert _error(err) == f"gpunn: error: {tmp_path / 'nope.json'}: No such file or directory"
