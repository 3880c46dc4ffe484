"""Untrusted model files: a committed corpus of crafted files, and a fuzzer."""

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="hypothesis not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gpunn as gn

CORPUS = Path(__file__).parent / "data" / "bad_models"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_crafted_file_is_refused(name, capsys):
    with pytest.raises(gn.ModelFileError, match=EXPECTED[name].replace("(", r"\(")
                       .replace(")", r"\)")):
        gn.load(CORPUS / name, device="cpu")
    assert "pickle executed" not in capsys.readouterr().out  # nothing was unpickled


def test_huge_declared_size_allocates_nothing():
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(gn.ModelFileError):
        gn.load(CORPUS / "huge_declared_shape.npz", device="cpu")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20  # the file declares 4 TiB


def _valid_bytes() -> bytes:
    model = gn.Sequential([gn.Dense(3, 4, activation="tanh"), gn.Dense(4, 1)], device="cpu",
                          seed=0)
    model.fit(np.ones((4, 3)), np.ones(4), loss="mse", epochs=1, verbose=0)
    return gn.files.dumps(model)


VALID = _valid_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(0, len(VALID)))
def test_fuzzed_bytes_never_escape_as_other_errors(edits, cut):
    data = bytearray(VALID)
    for pos, value in edits:
        data[pos] = value
    data = bytes(data[:cut] if cut < len(VALID) // 2 else data)
    try:
        model = gn.files.loads(data, device="cpu")
    except gn.ModelFileError:
        return
    # A mutation that zip's checksums cannot see (e.g. in padding) must still be a model.
    assert model.count_params() == 3 * 4 + 4 + 4 + 1


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10),
       st.sampled_from(["layers", "dtype", "optimizer", "loss", "preprocessing", "training",
                        "metrics", "extra", "version"]))
def test_fuzzed_header_fields_give_model_file_errors(value, field):
    with np.load(io.BytesIO(VALID), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(arrays["__gpunn__"].tobytes())
    header[field] = value
    arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        gn.files.loads(buffer.getvalue(), device="cpu")
    except gn.ModelFileError:
        pass


# ---------------------------------------------------------------------- hostile values
def _arrays_and_header(data=None):
    with np.load(io.BytesIO(data or VALID), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return arrays, json.loads(arrays["__gpunn__"].tobytes())


def _pack(arrays, header, compress=False) -> bytes:
    arrays = dict(arrays)
    arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _with_preprocessing(scale):
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    model.preprocessor = gn.preprocessing.Standardizer().fit(np.random.default_rng(0)
                                                             .standard_normal((8, 3)))
    arrays, header = _arrays_and_header(gn.files.dumps(model))
    arrays["prep/scale"] = np.asarray(scale, np.float64)
    return _pack(arrays, header)


def _edit_header(**changes):
    arrays, header = _arrays_and_header()
    for key, value in changes.items():
        target = header
        *path, last = key.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    return _pack(arrays, header)


def _bomb() -> bytes:
    """An optimiser slot of 10^8 zeros: about 400 KB compressed, 400 MB unpacked."""
    arrays, header = _arrays_and_header()
    arrays["optim/0/m"] = np.zeros(10**8, np.float32)
    return _pack(arrays, header, compress=True)


def _float16_with(value) -> bytes:
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", dtype="float16", seed=0)
    arrays, header = _arrays_and_header(gn.files.dumps(model))
    arrays["param/0/W"] = np.full((3, 1), value, np.float64)
    return _pack(arrays, header)


def _deeply_nested() -> bytes:
    arrays, header = _arrays_and_header()
    text = json.dumps(header)[:-1] + ', "extra2": ' + "[" * 100_000 + "]" * 100_000 + "}"
    arrays["__gpunn__"] = np.frombuffer(text.encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _duplicate_member() -> bytes:
    import warnings
    import zipfile

    buffer = io.BytesIO(VALID)
    with zipfile.ZipFile(buffer, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate, as it should
        zf.writestr("param/0/W.npy", zf.read("param/0/W.npy"))
    return buffer.getvalue()


HOSTILE = {
    "scale zero": (lambda: _with_preprocessing([1.0, 0.0, 1.0]), "scale must be positive"),
    "scale negative": (lambda: _with_preprocessing([1.0, -2.0, 1.0]), "must be positive"),
    "scale NaN": (lambda: _with_preprocessing([1.0, np.nan, 1.0]), "NaN or Inf"),
    "activation alpha NaN": (lambda: _edit_header(
        layers=[{"type": "Dense", "name": "a", "config": {
            "in_features": 3, "out_features": 4, "activation": "leaky_relu",
            "activation_params": {"alpha": float("nan")}}},
            {"type": "Dense", "name": "b", "config": {"in_features": 4, "out_features": 1}}]),
        "finite"),
    "activation alpha absurd": (lambda: _edit_header(
        layers=[{"type": "Dense", "name": "a", "config": {
            "in_features": 3, "out_features": 4, "activation": "elu",
            "activation_params": {"alpha": 1e300}}},
            {"type": "Dense", "name": "b", "config": {"in_features": 4, "out_features": 1}}]),
        "magnitude"),
    "float16 weight 1e6": (lambda: _float16_with(1e6), "beyond float16's range"),
    "optimiser state bomb": (_bomb, "more than the model's 21 parameters"),
    "100k layers": (lambda: _edit_header(layers=[{"type": "Dropout", "config": {}}]
                                         * 100_001), "100001 layers"),
    "a 35 MB header": (lambda: _edit_header(layers=[{"type": "Dropout", "config": {}}]
                                            * 1_000_001), r"header of 350\d{5} bytes \(limit"),
    "deeply nested extra": (_deeply_nested, "nests too deeply"),
    "negative step counter": (lambda: _edit_header(optimizer__t=-5), "step counter -5"),
    "duplicate member": (_duplicate_member, "same member twice"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.slow
def test_hostile_values_are_model_file_errors(name):
    import tracemalloc

    make, match = HOSTILE[name]
    data = make()
    tracemalloc.start()
    with pytest.raises(gn.ModelFileError, match=match):
        gn.files.loads(data, device="cpu")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200 * 2**20  # bounded by what the declared model needs, not the file


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    with pytest.raises(gn.ModelFileError, match="not a regular file"):
        gn.load(fifo, device="cpu")


def test_saved_files_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        model = gn.Sequential([gn.Dense(2, 1)], device="cpu", seed=0)
        model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o644


# ---------------------------------------------------------------------- values of the wrong range
# Finite in the file is not enough: every array must be finite once cast to the model's
# dtype, so must what is derived from it (a standardiser's 1/scale), declared constraints
# must hold (second moments, running variances), and config numbers must fit the dtype.
def _range_model() -> bytes:
    X = np.random.default_rng(0).standard_normal((16, 3))
    model = gn.Sequential([gn.Dense(3, 4, activation="tanh"), gn.BatchNorm(4),
                           gn.Dense(4, 1)], device="cpu", seed=0)
    model.preprocessor = gn.preprocessing.Standardizer().fit(X)
    model.fit(X, X[:, 0], loss="mse", optimizer=gn.optim.Adam(), epochs=1, verbose=0)
    return gn.files.dumps(model)


RANGE_VALID = _range_model()


def _set(name, value):
    def edit(arrays, header):
        arrays[name] = np.full(arrays[name].shape, value, np.float64) \
            if np.ndim(value) == 0 else np.asarray(value, np.float64)
    return edit


def _config(layer, key, value):
    def edit(arrays, header):
        header["layers"][layer]["config"][key] = value
    return edit


def _extra(key, value):
    def edit(arrays, header):
        header["extra"][key] = value
    return edit


OUT_OF_RANGE = {
    "W 1e300": (_set("param/0/W", 1e300),
                r"param/dense_0/W \(archive member param/0/W\) holds values up to "
                r"1e\+300, beyond float32's range \(3.4e\+38\)"),
    "bias -1e39": (_set("param/0/b", -1e39), r"param/dense_0/b.*float32's range"),
    "scale 1e-45": (_set("prep/scale", [1.0, 1e-45, 1.0]), "prep/scale"),
    "scale 1e-300": (_set("prep/scale", [1.0, 1e-300, 1.0]), "prep/scale"),
    "scale 1e300": (_set("prep/scale", [1.0, 1e300, 1.0]), "prep/scale"),
    "mean 1e300": (_set("prep/mean", [0.0, 1e300, 0.0]), r"prep/mean.*float32's range"),
    "Adam m 1e300": (_set("optim/0/m", 1e300), r"optim/0/m.*float32's range"),
    "Adam v 1e300": (_set("optim/0/v", 1e300), r"optim/0/v.*float32's range"),
    "Adam v negative": (_set("optim/0/v", -1.0), r"optim/0/v.*>= 0"),
    "running_var negative": (_set("buffer/1/running_var", -1.0),
                             r"buffer/batchnorm_1/running_var.*>= 0"),
    "running_mean 1e39": (_set("buffer/1/running_mean", 1e39),
                          "buffer/batchnorm_1/running_mean"),
    "kernel_l2 1e300": (_config(0, "kernel_l2", 1e300), "kernel_l2"),
    "kernel_l2 1e30": (_config(0, "kernel_l2", 1e30), "kernel_l2"),
    "BatchNorm eps 1e39": (_config(1, "eps", 1e39), "eps"),
    "BatchNorm eps 1e-50": (_config(1, "eps", 1e-50), r"'eps' is 1e-50.*0 in float32"),
    "duplicate classes": (_extra("classes", ["a", "b", "a"]), "'a' twice"),
}


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE))
def test_values_out_of_the_models_range_are_refused(name, suffix, tmp_path):
    from gpunn.files import safetensors_format

    edit, match = OUT_OF_RANGE[name]
    arrays, header = _arrays_and_header(RANGE_VALID)
    edit(arrays, header)
    path = tmp_path / f"m{suffix}"
    if suffix == ".npz":
        path.write_bytes(_pack(arrays, header))
    else:
        pytest.importorskip("safetensors", reason="safetensors not installed")
        arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        safetensors_format.write(str(path), arrays)
    with pytest.raises(gn.ModelFileError, match=match) as info:
        gn.load(path, device="cpu")
    assert str(path) in str(info.value)


def test_the_unedited_range_model_loads_and_predicts():
    model = gn.files.loads(RANGE_VALID, device="cpu")
    assert np.all(np.isfinite(gn.to_numpy(model.predict(np.ones((2, 3))))))



def test_the_loader_reads_constraints_from_the_optimizer_and_layer(monkeypatch):
    """No table in the loader: what an optimiser or a layer declares is what is checked."""
    X = np.random.default_rng(0).standard_normal((8, 3))
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    model.fit(X, X[:, 0], loss="mse", optimizer=gn.optim.SGD(momentum=0.9), epochs=1,
              verbose=0)
    arrays, header = _arrays_and_header(gn.files.dumps(model))
    arrays["optim/0/velocity"] = -np.abs(arrays["optim/0/velocity"]) - 1.0
    arrays["param/0/b"] = np.full_like(arrays["param/0/b"], -1.0)
    data = _pack(arrays, header)
    gn.files.loads(data, device="cpu")  # SGD's velocity may be negative
    monkeypatch.setattr(gn.optim.SGD, "nonnegative_state", ("velocity",))
    with pytest.raises(gn.ModelFileError, match=r"optim/0/velocity.*>= 0"):
        gn.files.loads(data, device="cpu")
    monkeypatch.setattr(gn.optim.SGD, "nonnegative_state", ())
    monkeypatch.setattr(gn.Dense, "nonnegative", ("b",))
    with pytest.raises(gn.ModelFileError, match=r"param/0/b.*>= 0"):
        gn.files.loads(data, device="cpu")
