"""What every built-in layer must survive, as functions the per-layer test files call on a
small model holding the layer: a model-file round trip, moves between the NumPy and
array_api_strict backends, and an ONNX export that matches ``predict``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_backend

import gpunn as gn


def host_arrays(model) -> list:
    """Copies of every parameter and buffer, on the host."""
    return [gn.to_numpy(a).copy() for a in model.store.parameters() + model.store.buffers()]


def save_and_load(model, X, tmp_path, name: str = "m.npz"):
    """Save to npz, load back: the same tree, arrays and predictions. Returns the copy."""
    path = tmp_path / name
    model.save(path)
    again = gn.load(path, device="cpu")
    assert [layer.spec() for layer in again.layers] == [layer.spec() for layer in model.layers]
    for a, b in zip(host_arrays(model), host_arrays(again), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(gn.to_numpy(model.predict(X)), gn.to_numpy(again.predict(X)))
    return again


def moves_between_backends(model, X, y=None, loss=None):
    """``model.to`` array_api_strict and back keeps every array and the predictions, and
    (with ``y``) the model trains there."""
    strict = make_backend("array_api_strict")
    before, expected = host_arrays(model), gn.to_numpy(model.predict(X))
    model.to(strict)
    assert all(type(a).__module__.startswith("array_api_strict")
               for a in model.store.parameters() + model.store.buffers())
    np.testing.assert_allclose(gn.to_numpy(model.predict(X)), expected, rtol=1e-5, atol=1e-6)
    model.to("cpu")
    for a, b in zip(before, host_arrays(model), strict=True):
        np.testing.assert_array_equal(a, b)
    if y is not None:
        model.to(strict)
        hist = model.fit(X, y, loss=loss, epochs=1, batch_size=16, verbose=0)
        assert np.isfinite(hist.history["loss"][-1])
        model.to("cpu")


def onnx_matches_predict(model, X, tmp_path, rtol=1e-4, atol=1e-5):
    """The ONNX export run by onnxruntime gives what ``predict`` gives."""
    pytest.importorskip("onnx", reason="onnx not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    path = tmp_path / "m.onnx"
    model.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.asarray(X, dtype=np.float32)})[0]
    np.testing.assert_allclose(out, gn.to_numpy(model.predict(X)), rtol=rtol, atol=atol)
    return out


def torch_or_skip():
    """PyTorch, the oracle for layer maths, or a visible skip."""
    return pytest.importorskip("torch", reason="PyTorch (the oracle for layer maths) is "
                               "not installed")
