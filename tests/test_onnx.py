"""ONNX export: the file passes onnx's checker and, run by onnxruntime, gives what
``model.predict`` gives, for every activation and output kind, with and without the stored
standardisation, from Python and from the command line."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunn as gn
from gpunn import cli
from gpunn.files import onnx_export

onnx = pytest.importorskip("onnx", reason='onnx not installed (pip install "gpunn[onnx]")')
ort = pytest.importorskip("onnxruntime",
                          reason='onnxruntime not installed (pip install "gpunn[onnx]")')

#: float32 tolerance for outputs of order 1 after a few layers.
ATOL = 1e-5
#: Non-default hyper-parameters, so that they are proven to reach the graph.
PARAMS = {"leaky_relu": {"alpha": 0.2}, "elu": {"alpha": 0.7}, "linear": {"a": 1.5}}


def _run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": np.asarray(X, dtype=np.float32)})[0]


def _inputs(n=64, features=4, seed=0):
    rng = np.random.default_rng(seed)
    # Wide range and exact zeros: both sides of every kink (relu, step, elu) are used.
    X = rng.normal(0.0, 3.0, size=(n, features)) + 1.0
    X[:4] = 0.0
    return X.astype(np.float32)


def _standardizer(X):
    return gn.preprocessing.Standardizer().fit(X)


@pytest.mark.parametrize("prep", [False, True], ids=["raw", "standardized"])
@pytest.mark.parametrize("name", sorted(gn.activations.ACTIVATIONS))
def test_every_activation_matches_predict(name, prep, tmp_path):
    model = gn.Sequential([gn.Dense(4, 16, activation=name, activation_params=PARAMS.get(name)),
                           gn.ActivationLayer(name, **PARAMS.get(name, {})),
                           gn.Dense(16, 3)], device="cpu", seed=0)
    X = _inputs()
    if prep:
        model.preprocessor = _standardizer(X)
    model.to_onnx(tmp_path / "m.onnx")
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", X), model.predict(X), rtol=0,
                               atol=ATOL)


def _trained(kind, dropout=False):
    rng = np.random.default_rng(1)
    X = rng.normal(2.0, 5.0, size=(120, 4)).astype(np.float32)
    out = {"multiclass": (3, "softmax", "categorical_crossentropy"),
           "binary": (1, "sigmoid", "binary_crossentropy"),
           "regression": (2, None, "mse")}[kind]
    y = {"multiclass": (X[:, 0] > 2).astype(int) + (X[:, 1] > 2).astype(int),
         "binary": (X[:, 0] > X[:, 1]).astype(int),
         "regression": np.stack([X[:, 0] - X[:, 2], X[:, 1] * 0.5], axis=1)}[kind]
    layers = [gn.Dense(4, 12, activation="relu")] + ([gn.Dropout(0.3)] if dropout else [])
    model = gn.Sequential(layers + [gn.Dense(12, out[0], activation=out[1])], device="cpu",
                          seed=0)
    model.preprocessor = _standardizer(X)
    model.fit(X, y, loss=out[2], epochs=3, batch_size=32, verbose=0, seed=0)
    return model, X


@pytest.mark.parametrize("prep", [False, True], ids=["raw", "standardized"])
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_output_kinds_match_predict_with_dropout_left_out(kind, prep, tmp_path):
    model, X = _trained(kind, dropout=True)
    if not prep:
        model.preprocessor = None
    model.to_onnx(tmp_path / "m.onnx")
    got = _run(tmp_path / "m.onnx", X)
    np.testing.assert_allclose(got, model.predict(X), rtol=0, atol=ATOL)
    if kind == "multiclass":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    ops = [n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node]
    assert ops.count("Gemm") == 2 and "Dropout" not in ops
    assert ops[:2] == (["Sub", "Mul"] if prep else ["Gemm", "Relu"])


def test_graph_is_checked_float32_with_a_symbolic_batch_and_the_chosen_opset(tmp_path):
    model, X = _trained("multiclass")
    model.extra = {"classes": ["a", "b", "c"]}
    model.to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert proto.ir_version == 8  # the lowest carrying opset 17: older runtimes load it
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 4]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 3]
    assert {p.key: p.value for p in proto.metadata_props} == {
        "gpunn.extra": '{"classes": ["a", "b", "c"]}'}
    for n in (1, 7, 300):  # any batch size
        Xn = np.resize(X, (n, 4))
        np.testing.assert_allclose(_run(tmp_path / "m.onnx", Xn), model.predict(Xn),
                                   atol=ATOL, rtol=0)


@pytest.mark.parametrize("opset", [13, 21])
def test_other_opsets(opset, tmp_path):
    model, X = _trained("binary")
    model.to_onnx(tmp_path / "m.onnx", opset=opset)
    assert onnx.load(tmp_path / "m.onnx").opset_import[0].version == opset
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", X), model.predict(X), atol=ATOL)


@pytest.mark.parametrize("dtype,atol", [("float64", ATOL), ("float16", 5e-3)])
def test_other_dtypes_are_exported_as_float32(dtype, atol, tmp_path):
    model = gn.Sequential([gn.Dense(4, 16, activation="elu"),
                           gn.Dense(16, 3, activation="softmax")], device="cpu",
                          dtype=dtype, seed=0)
    X = _inputs()
    model.preprocessor = _standardizer(X)
    model.to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.FLOAT}
    # float16 predict rounds each layer to 11 bits; float32 ONNX does not.
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", X),
                               np.asarray(model.predict(X), np.float64), atol=atol, rtol=0)


def test_every_gpunn_activation_has_an_onnx_form():
    assert set(onnx_export.ACTIVATIONS) == set(gn.activations.ACTIVATIONS)


class _Custom(gn.Layer):
    def forward(self, x, training=False):
        return x


def _standardized_wrongly(features):
    model = gn.Sequential([gn.Dense(2, 3)], device="cpu")
    model.preprocessor = gn.preprocessing.Standardizer()
    if features:
        model.preprocessor.fit(np.ones((4, features)))
    return model


class _Scaler:
    kind = "minmax"


def _scaled():
    model = gn.Sequential([gn.Dense(2, 3)], device="cpu")
    model.preprocessor = _Scaler()
    return model


@pytest.mark.parametrize("make,match", [
    (lambda: gn.Sequential([gn.Dense(2, 3), _Custom(name="mine")], device="cpu"),
     r"^to_onnx: layer 'mine' \(_Custom\(\)\) has no ONNX form; gpunn exports Dense"),
    (lambda: gn.Sequential([gn.ReLU()], device="cpu"),
     "^to_onnx: the model has no Dense layer"),
    (lambda: _standardized_wrongly(0), r"Standardizer should be fitted on 2 features, got "
                                       "mean None"),
    (lambda: _standardized_wrongly(5), r"fitted on 2 features, got mean \(5,\)"),
    (_scaled, "^to_onnx: preprocessing _Scaler has no ONNX form; exported: Standardizer"),
])
def test_what_has_no_onnx_form_is_refused_by_name(make, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        make().to_onnx(tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)


def test_an_activation_without_onnx_form_is_refused(monkeypatch, tmp_path):
    table = dict(gn.activations.ACTIVATIONS)
    table["swish"] = gn.activations.Activation("swish", lambda xp, z: z, lambda xp, z, y, g: g)
    monkeypatch.setattr(gn.activations, "ACTIVATIONS", table)
    model = gn.Sequential([gn.Dense(2, 3, activation="swish", name="d")], device="cpu")
    with pytest.raises(ValueError, match=r"^to_onnx: layer 'd' .*activation 'swish' has no "
                                         r"ONNX form; exported: identity"):
        model.to_onnx(tmp_path / "m.onnx")


def test_bad_opset_and_oversized_models_are_refused(monkeypatch, tmp_path):
    model, _ = _trained("binary")
    for bad in (12, 10_000, "17", True):
        with pytest.raises(ValueError, match=r"^opset: expected an integer from 13 to \d+"):
            model.to_onnx(tmp_path / "m.onnx", opset=bad)
    monkeypatch.setattr(onnx_export, "MAX_BYTES", 100)
    with pytest.raises(ValueError, match="exceed the 2 GiB an ONNX file holds"):
        model.to_onnx(tmp_path / "m.onnx")


def test_a_failed_export_leaves_the_previous_file(monkeypatch, tmp_path):
    model, _ = _trained("binary")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")

    def refuse(*args, **kwargs):
        raise onnx.checker.ValidationError("broken")

    monkeypatch.setattr(onnx.checker, "check_model", refuse)
    with pytest.raises(onnx.checker.ValidationError):
        model.to_onnx(path)
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["m.onnx"]


def _csv(tmp_path):
    pytest.importorskip("pandas", reason="reading CSV files needs pandas (gpunn[data])")
    rng = np.random.default_rng(0)
    X = rng.normal(10.0, 4.0, size=(90, 3))
    label = np.array(["lo", "mid", "hi"])[(X[:, 0] > 9).astype(int) + (X[:, 1] > 11)]
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,label\n" + "".join(f"{a:.4f},{b:.4f},{c:.4f},{k}\n"
                                             for (a, b, c), k in zip(X, label)))
    return path, X.astype(np.float32)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_command_line_export_matches_predict(fmt, tmp_path, capsys):
    if fmt == "safetensors":
        pytest.importorskip("safetensors", reason="safetensors not installed")
    csv, X = _csv(tmp_path)
    saved, out = tmp_path / f"m.{fmt}", tmp_path / "m.onnx"
    assert cli.main(["train", "--data", str(csv), "--target", "label", "--epochs", "2",
                     "--save", str(saved), "--quiet", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(saved), "--onnx", str(out)]) == 0
    # The table's columns, in the order the graph takes them (all numeric: as they are).
    assert capsys.readouterr().out == (f"wrote {out}: ONNX opset 17, input 'input' (batch, "
                                       "3) float32, output 'output' (batch, 3)\n"
                                       "input columns, in order: a, b, c\n")
    model = gn.load(saved, device="cpu")
    assert model.preprocessor is not None  # the CLI standardises: the graph must too
    np.testing.assert_allclose(_run(out, X), model.predict(X), atol=ATOL, rtol=0)


@pytest.mark.slow
def test_command_line_export_as_a_user_runs_it(tmp_path):
    model, X = _trained("regression")
    model.save(tmp_path / "m.npz")
    root = str(Path(__file__).parents[1])  # this checkout's gpunn, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "gpunn", "export", "m.npz", "--onnx",
                           "out/m.onnx", "--opset", "18"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(_run(tmp_path / "out" / "m.onnx", X), model.predict(X),
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("argv,match", [
    (["export", "{d}/m.npz", "--onnx", "{d}/m.npz"], "is also an input of this command"),
    (["export", "{d}/none.npz", "--onnx", "{d}/m.onnx"], "none.npz: No such file"),
    # Checked as the flag is read, so the error names the flag.
    (["export", "{d}/m.npz", "--onnx", "{d}/m.onnx", "--opset", "9"],
     "argument --opset: expected an integer from 13 to"),
    (["export", "{d}/m.npz", "--onnx", "{d}/m.onnx", "--opset", "x"],
     "argument --opset: expected an integer"),
    (["export", "{d}/m.npz", "--onnx", "{d}/m.onnx", "--opset", str(2**64)],
     "argument --opset: expected an integer"),
    (["export", "{d}/m.npz"], "the following arguments are required: --onnx"),
])
def test_command_line_mistakes_are_one_line(argv, match, tmp_path, run_cli):
    _trained("binary")[0].save(tmp_path / "m.npz")
    code, _, err = run_cli(*[a.format(d=tmp_path) for a in argv])
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m.onnx").exists()


def test_without_onnx_the_install_line_is_given(monkeypatch, tmp_path, capsys):
    model, _ = _trained("binary")
    model.save(tmp_path / "m.npz")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'^ONNX export needs the onnx package: pip install '
                                          r'"gpunn\[onnx\]"$'):
        model.to_onnx(tmp_path / "m.onnx")
    assert cli.main(["export", str(tmp_path / "m.npz"), "--onnx",
                     str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err == ('gpunn: error: ONNX export needs the onnx package: '
                                       'pip install "gpunn[onnx]"\n')


def test_a_target_scaling_is_undone_in_the_graph(tmp_path):
    X = _inputs()
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) * 1e4 + 2e5
    model = gn.Sequential([gn.Dense(4, 8, activation="tanh"), gn.Dense(8, 1)], device="cpu",
                          seed=0)
    model.preprocessor = _standardizer(X)
    model.target_scaler = gn.preprocessing.Standardizer().fit(y.reshape(-1, 1))
    model.to_onnx(tmp_path / "m.onnx")
    expected = gn.to_numpy(model.predict(X))
    assert abs(float(np.mean(expected)) - 2e5) < 1e5  # in the target's units
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", X), expected, rtol=1e-5, atol=0.05)
