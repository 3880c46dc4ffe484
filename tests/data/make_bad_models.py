"""Regenerate the corpus of crafted model files in tests/data/bad_models/.

Run from the repository root: ``python tests/data/make_bad_models.py``. Each file is a
small gpunn model file damaged in one way; ``expected.json`` maps it to the message
``gpunn.load`` must raise with ``ModelFileError``. The files are committed so that the
test reads exactly these bytes, whatever the current writer produces.
"""

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

import gpunn as gn

HERE = Path(__file__).parent / "bad_models"


def good_arrays():
    model = gn.Sequential([gn.Dense(3, 4, activation="relu"), gn.Dense(4, 2, "softmax")],
                          device="cpu", seed=0)
    model.fit(np.ones((8, 3), np.float32), np.arange(8) % 2, loss="cross_entropy",
              epochs=1, verbose=0)
    with np.load(io.BytesIO(gn.files.dumps(model)), allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def header(arrays):
    return json.loads(arrays["__gpunn__"].tobytes())


def with_header(arrays, edit):
    h = header(arrays)
    edit(h)
    arrays = dict(arrays)
    arrays["__gpunn__"] = np.frombuffer(json.dumps(h).encode(), np.uint8)
    return arrays


def npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def huge_member(arrays, key, shape):
    """An archive whose member ``key`` declares ``shape`` but holds 16 bytes."""
    raw = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(npz_bytes(arrays))) as src, \
            zipfile.ZipFile(raw, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == key + ".npy":
                head = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"
                head = head.ljust(118) + "\n"
                data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode() \
                    + b"\0" * 16
            dst.writestr(item.filename, data)
    return raw.getvalue()


class Boom:
    def __reduce__(self):  # what a malicious pickle would run
        return (print, ("pickle executed",))


def pickled_member(arrays):
    raw = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(npz_bytes(arrays))) as src, \
            zipfile.ZipFile(raw, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "param/0/W.npy":
                buf = io.BytesIO()
                np.save(buf, np.array([Boom()], dtype=object), allow_pickle=True)
                data = buf.getvalue()
            dst.writestr(item.filename, data)
    return raw.getvalue()


def main():
    good = good_arrays()
    cases = {
        "pickled_object_array.npz": (pickled_member(good), "dtype object"),
        "whole_file_pickle.npz": (pickle.dumps(Boom()), "not a readable .npz"),
        "huge_declared_shape.npz": (huge_member(good, "param/0/W", (2**20, 2**20)),
                                    "declares 1099511627776 elements"),
        "shape_larger_than_data.npz": (huge_member(good, "param/0/b", (8,)),
                                       "declares shape (8,) of float32 but holds 16 bytes"),
        "truncated.npz": (npz_bytes(good)[:300], "not a readable .npz"),
        "wrong_weight_shape.npz": (npz_bytes({**good, "param/0/W": np.zeros((4, 3), "f4")}),
                                   "the architecture needs (3, 4)"),
        "unknown_array.npz": (npz_bytes({**good, "extra/evil": np.zeros(2)}),
                              "unexpected arrays"),
        "header_not_json.npz": (npz_bytes({**good, "__gpunn__": np.frombuffer(b"[1,", "u1")}),
                                "not valid JSON"),
        "header_wrong_types.npz": (npz_bytes(with_header(
            good, lambda h: h.update(layers={"Dense": 1}))), "'layers' should be a list"),
        "layer_type_import_path.npz": (npz_bytes(with_header(
            good, lambda h: h["layers"][0].update(type="os.system"))), "known type"),
        "layer_config_strings.npz": (npz_bytes(with_header(
            good, lambda h: h["layers"][0]["config"].update(in_features="3"))),
            "invalid config"),
        "optimizer_kind_unknown.npz": (npz_bytes(with_header(
            good, lambda h: h["optimizer"].update(kind="lbfgs"))), "optimizer header"),
        "optimizer_state_wrong_size.npz": (npz_bytes({**good, "optim/0/m": np.zeros(3, "f4")}),
                                           "optimizer state does not fit"),
        "training_state_malformed.npz": (npz_bytes(with_header(
            good, lambda h: h.update(training={"epoch": "three"}))), "training state"),
        "nan_weights.npz": (npz_bytes({**good, "param/1/b": np.full(2, np.nan, "f4")}),
                            "NaN or Inf"),
        "text_array.npz": (npz_bytes({**good, "param/0/b": np.array(["a"] * 4)}),
                                "expected numbers"),
    }
    HERE.mkdir(exist_ok=True)
    expected = {}
    for name, (data, message) in cases.items():
        (HERE / name).write_bytes(data)
        expected[name] = message
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
