"""Writing model files (the format is described in :mod:`gpunn.files.format`): an ``.npz``
(or ``.safetensors``) with a JSON header and host arrays, written atomically (temporary
file, fsync, rename) with the user's umask, and the same bytes in memory for pickling."""

from __future__ import annotations

import io
import json
import os

import numpy as np

from ..atomic import atomic_path
from ..backend.ops import host_array
from . import safetensors_format
from .format import FORMAT, VERSION


def _le(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, order="C")  # (ascontiguousarray would make a 0-d buffer 1-d)
    if a.dtype.kind == "V" and a.dtype.itemsize == 2:
        # bfloat16 (ml_dtypes) is no NumPy dtype a reader without ml_dtypes understands;
        # float32 holds every bfloat16 value exactly, and the header keeps "bfloat16".
        return a.astype(np.float32)
    return a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a


def save(model, path, include_optimizer: bool = True, extra: dict | None = None) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, fsync, rename).

    Parameters
    ----------
    model : Sequential
    path : str or os.PathLike
        ``.npz``, or ``.safetensors`` for the same content in that format (needs the
        safetensors package); ``.npz`` is appended to any other name, as NumPy does.
    include_optimizer : bool
        Store the optimiser's hyper-parameters and state (to resume training).
    extra : dict, optional
        JSON-serialisable data kept in the header (``model.extra`` on load).
    """
    path = os.fspath(path)
    if path.endswith(safetensors_format.SUFFIX):
        safetensors_format.write(path, _arrays(model, include_optimizer, extra))
        return
    if not path.endswith(".npz"):
        path += ".npz"
    _atomic_savez(path, _arrays(model, include_optimizer, extra))


def dumps(model, include_optimizer: bool = True) -> bytes:
    """The bytes :func:`save` would write (for pickling estimators and the like)."""
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays(model, include_optimizer, None))
    return buffer.getvalue()


def _arrays(model, include_optimizer: bool, extra) -> dict:
    arrays: dict[str, np.ndarray] = {}
    layers = [layer.spec() for layer in model.layers]  # a TypeError for unregistered types
    for i, layer in enumerate(model.layers):
        for path, sub in layer.walk(str(i)):
            for key, value in sub.params.items():
                arrays[f"param/{path}/{key}"] = _le(host_array(value))
            for key, value in sub.buffers.items():
                arrays[f"buffer/{path}/{key}"] = _le(host_array(value))
    header = {"format": FORMAT, "version": VERSION, "dtype": model.dtype, "layers": layers,
              "loss": None, "metrics": list(model.metrics), "optimizer": None,
              "preprocessing": None, "extra": dict(extra or model.extra or {})}
    if model.loss is not None:
        header["loss"] = {"name": model.loss.name, "config": model.loss.config()}
    opt = model.optimizer
    if include_optimizer and opt is not None:
        state = opt.state_dict()
        header["optimizer"] = {"kind": state["kind"], "name": type(opt).name,
                               "class": type(opt).__name__, "hyper": state["hyper"],
                               "t": state["t"], "slots": len(state["state"])}
        for j, slot in enumerate(state["state"]):
            for key, value in slot.items():
                arrays[f"optim/{j}/{key}"] = _le(np.asarray(value))
    state = getattr(model, "train_state", None)
    if state is not None:
        training = state.to_json() if hasattr(state, "to_json") else state
        header["training"], kept = _split_callback_arrays(training)
        arrays.update({k: _le(host_array(v)) for k, v in kept.items()})
    if model.preprocessor is not None:
        info, prep = model.preprocessor.state()
        header["preprocessing"] = info
        arrays.update({f"prep/{k}": _le(np.asarray(v)) for k, v in prep.items()})
    arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return arrays


def _split_callback_arrays(training: dict):
    """A training state's callback arrays (a callback's ``"arrays"``: e.g. the weights
    early stopping keeps) as file arrays ``train/<callback>/<i>``, their count left in the
    header."""
    states = training.get("callbacks") or {}
    if not any("arrays" in st for st in states.values()):
        return training, {}
    kept, header = {}, {}
    for key, st in states.items():
        if "arrays" in st:
            values = list(st["arrays"])
            kept.update({f"train/{key}/{i}": v for i, v in enumerate(values)})
            st = {**st, "arrays": len(values)}
        header[key] = st
    return {**training, "callbacks": header}, kept


def _atomic_savez(path: str, arrays: dict) -> None:
    with atomic_path(path, suffix=".npz.tmp") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
