"""Model files in the safetensors format: round trips, the untrusted-file checks of the .npz
format, atomic writes, and files PyTorch reads."""

import json
import os
import struct
import sys

import numpy as np
import pytest

import gpunn as gn
from gpunn import cli

pytest.importorskip("safetensors", reason="safetensors not installed (gpunn[safetensors])")
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402


def _model(dtype="float32"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    model = gn.Sequential([gn.Dense(3, 8, activation="tanh"), gn.Dropout(0.2),
                           gn.ActivationLayer("leaky_relu", alpha=0.2),
                           gn.Dense(8, 2, activation="softmax")],
                          device="cpu", dtype=dtype, seed=0)
    model.preprocessor = gn.preprocessing.Standardizer().fit(X)
    model.extra = {"classes": ["no", "yes"]}
    model.fit(X, y, loss="categorical_crossentropy", epochs=2, batch_size=8, verbose=0)
    return model, X, y


def _split(path):
    """(header dict, data bytes) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header, data) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, X, _ = _model()
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    model.save(path)
    return model, X, path


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_round_trip_predicts_identically(tmp_path, dtype):
    model, X, y = _model(dtype)
    model.save(tmp_path / "m.safetensors")
    model.save(tmp_path / "m.npz")
    back = gn.load(tmp_path / "m.safetensors", device="cpu")
    assert back.dtype == dtype and back.extra == model.extra
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    np.testing.assert_array_equal(back.preprocessor.scale, model.preprocessor.scale)
    for a, b in zip(back.optimizer.state_dict()["state"], model.optimizer.state_dict()["state"]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # The same names and header as the .npz: one format in two containers.
    with np.load(tmp_path / "m.npz") as npz, safe_open(str(tmp_path / "m.safetensors"),
                                                          framework="numpy") as st:
        assert set(npz.files) == set(st.keys()) | {"__gpunn__"}
        assert json.loads(st.metadata()["__gpunn__"]) == json.loads(
            npz["__gpunn__"].tobytes())


def test_training_resumes_from_a_safetensors_file_as_from_an_npz(tmp_path):
    histories = []
    for name in ("m.npz", "m.safetensors"):
        model, X, y = _model()
        model.save(tmp_path / name)
        again = _model()[0]
        hist = again.fit(X, y, loss="categorical_crossentropy", epochs=4, batch_size=8,
                         verbose=0, resume_from=str(tmp_path / name))
        histories.append(hist.history)
    assert histories[0] == histories[1]


def test_pytorch_reads_the_weights(saved):
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    from safetensors.torch import load_file

    model, _, path = saved
    tensors = load_file(str(path))
    W = model.layers[0].params["W"]
    assert tensors["param/0/W"].dtype == torch.float32
    np.testing.assert_array_equal(tensors["param/0/W"].numpy(), W)
    np.testing.assert_array_equal(tensors["prep/mean"].numpy(), model.preprocessor.mean)
    with safe_open(str(path), framework="pt") as fh:
        assert json.loads(fh.metadata()["__gpunn__"])["format"] == "gpunn-model"


def test_writes_are_atomic(tmp_path, monkeypatch, saved):
    import safetensors.numpy

    model, _, _ = saved
    path = tmp_path / "m.safetensors"
    model.save(path)
    before = path.read_bytes()

    def dies_half_way(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.safetensors"]


def _crafted(saved, tmp_path, edit):
    """A copy of the saved file with ``edit(header, data) -> bytes`` applied."""
    header, data = _split(saved[2])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(edit(header, data))
    return bad


def _retyped(header, data, name, dtype, itemsize):
    entry = header[name]
    lo, hi = entry["data_offsets"]
    count = (hi - lo) // 4
    new = np.zeros(count * itemsize, np.uint8).tobytes()
    shift = len(new) - (hi - lo)
    entry["dtype"] = dtype
    entry["data_offsets"] = [lo, lo + len(new)]
    for other in header.values():
        if isinstance(other, dict) and "data_offsets" in other and \
                other["data_offsets"][0] >= hi:
            other["data_offsets"] = [o + shift for o in other["data_offsets"]]
    return _join(header, data[:lo] + new + data[hi:])


def _with_value(header, data, name, value):
    lo, _ = header[name]["data_offsets"]
    raw = {"F32": np.float32, "F64": np.float64}[header[name]["dtype"]](value).tobytes()
    return _join(header, data[:lo] + raw + data[lo + len(raw):])


def _metadata(header, data, text):
    header["__metadata__"]["__gpunn__"] = text
    return _join(header, data)


HOSTILE = {
    "truncated": (lambda h, d: _join(h, d)[:-7], "not a readable gpunn .safetensors"),
    "header_lies_about_shape": (
        lambda h, d: (h["param/0/W"].update(shape=[3, 9]), _join(h, d))[1],
        "invalid shape, data type, or offset"),
    "consistent_lie_about_shape": (
        lambda h, d: (h["param/0/W"].update(shape=[8, 3]), _join(h, d))[1],
        r"array 'param/0/W' has shape \(8, 3\), the architecture needs \(3, 8\)"),
    "nan_weight": (lambda h, d: _with_value(h, d, "param/3/b", np.nan),
                   "array 'param/3/b' contains NaN or Inf"),
    "inf_standardizer": (lambda h, d: _with_value(h, d, "prep/scale", np.inf),
                         "'prep/scale' contains NaN or Inf"),
    "bfloat16_weights": (lambda h, d: _retyped(h, d, "param/0/W", "BF16", 2),
                         "array 'param/0/W' has dtype BF16; expected one of F64, F32"),
    "float8_bias": (lambda h, d: _retyped(h, d, "param/0/b", "F8_E4M3", 1),
                    "has dtype F8_E4M3"),
    "missing_tensor": (lambda h, d: (h.pop("param/3/b"), _join(h, d))[1],
                       "not a readable gpunn .safetensors"),  # the bytes are uncovered
    "metadata_not_json": (lambda h, d: _metadata(h, d, "{'format': gpunn"),
                          "header is not valid JSON"),
    "metadata_not_a_model": (lambda h, d: _metadata(h, d, json.dumps({"format": "pt"})),
                             "not a gpunn model file"),
    "metadata_hostile_layer": (
        lambda h, d: _metadata(h, d, h["__metadata__"]["__gpunn__"].replace(
            '"type": "Dense"', '"type": "os.system"', 1)), "layer 0: expected a known type"),
    "metadata_value_not_a_string": (
        lambda h, d: (h["__metadata__"].update(__gpunn__=7), _join(h, d))[1],
        "not a readable gpunn .safetensors"),
    "no_gpunn_metadata": (lambda h, d: (h.pop("__metadata__"), _join(h, d))[1],
                          "no '__gpunn__' metadata entry"),
    "extra_metadata": (lambda h, d: (h["__metadata__"].update(run="x"), _join(h, d))[1],
                       r"unexpected entries \['run'\]"),
    "huge_header_length": (lambda h, d: struct.pack("<Q", 2**62) + _join(h, d)[8:],
                           "not a readable gpunn .safetensors"),
    "an_npz_renamed": (lambda h, d: b"PK\x03\x04" + b"\0" * 60,
                       "not a readable gpunn .safetensors"),
    "empty": (lambda h, d: b"", "not a readable gpunn .safetensors"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_are_model_file_errors(name, saved, tmp_path):
    edit, match = HOSTILE[name]
    bad = _crafted(saved, tmp_path, edit)
    with pytest.raises(gn.ModelFileError, match=match) as info:
        gn.load(bad, device="cpu")
    assert str(info.value).startswith(f"{bad}: ") and "\n" not in str(info.value)


def test_an_extra_tensor_is_refused(saved, tmp_path):
    tensors = {}
    with safe_open(str(saved[2]), framework="numpy") as fh:
        meta = fh.metadata()
        for key in fh.keys():
            tensors[key] = fh.get_tensor(key)
    tensors["param/9/W"] = np.ones((2, 2), np.float32)
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata=meta)
    with pytest.raises(gn.ModelFileError, match=r"unexpected arrays \['param/9/W'\]"):
        gn.load(tmp_path / "x.safetensors", device="cpu")


def test_fuzzed_bytes_never_escape_as_other_errors(saved, tmp_path):
    rng = np.random.default_rng(0)
    valid = saved[2].read_bytes()
    bad = tmp_path / "fuzz.safetensors"
    for _ in range(300):
        data = bytearray(valid)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            data[pos] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[:int(rng.integers(0, len(data)))]
        bad.write_bytes(bytes(data))
        try:
            model = gn.load(bad, device="cpu")
        except gn.ModelFileError:
            continue
        assert model.count_params() == saved[0].count_params()  # a change in data bytes


def test_missing_library_is_a_one_line_install_hint(saved, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ImportError, match=r'pip install "gpunn\[safetensors\]"'):
        saved[0].save(tmp_path / "m.safetensors")
    with pytest.raises(ImportError, match=r'pip install "gpunn\[safetensors\]"'):
        gn.load(saved[2], device="cpu")
    assert cli.main(["predict", str(saved[2]), "--data", str(saved[2])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpunn: error: ") and 'gpunn[safetensors]' in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_command_line_saves_predicts_and_refuses_hostile_files(tmp_path, capsys, saved):
    pytest.importorskip("pandas", reason="reading CSV files needs pandas (gpunn[data])")
    csv = tmp_path / "f.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i % 7},{i % 3},{'x' if i % 2 else 'y'}\n"
                                         for i in range(30)))
    model = tmp_path / "m.safetensors"
    assert cli.main(["train", "--data", str(csv), "--target", "label", "--epochs", "1",
                     "--save", str(model), "--quiet", "--device", "cpu"]) == 0
    assert f"saved: {model}" in capsys.readouterr().out
    assert cli.main(["predict", str(model), "--data", str(csv), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("label,p_y")  # binary: P(y)
    bad = _crafted(saved, tmp_path, HOSTILE["bfloat16_weights"][0])
    assert cli.main(["predict", str(bad), "--data", str(csv), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gpunn: error: {bad}: array 'param/0/W' has dtype BF16")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
