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
from .format import FORMAT, VERSION, check_contents


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
        safetensors_format.write(path, _arrays(model, include_optimizer, extra, path))
        return
    if not path.endswith(".npz"):
        path += ".npz"
    _atomic_savez(path, _arrays(model, include_optimizer, extra, path))


def dumps(model, include_optimizer: bool = True) -> bytes:
    """The bytes :func:`save` would write (for pickling estimators and the like)."""
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays(model, include_optimizer, None))
    return buffer.getvalue()


def _check_declared(path: str, layer) -> None:
    """A layer's arrays must be those its ``param_shapes``/``buffer_shapes`` declare, in
    those shapes: loading reads exactly these, so anything else makes a file no load
    accepts (a parameter replaced by an array of another shape)."""
    for kind, held, declared in (("parameter", layer.params, layer.param_shapes()),
                                 ("buffer", layer.buffers, layer.buffer_shapes())):
        where = (f"cannot save: layer {path} ({layer.name!r}, {type(layer).__name__}): "
                 f"{kind}")
        method = f"{type(layer).__name__}.{'param' if kind == 'parameter' else kind}_shapes()"
        for key, shape in declared.items():
            if key not in held:
                raise ValueError(f"{where} {key!r} is missing ({method} declares it, of "
                                 f"shape {tuple(shape)}); nothing was written")
            given = tuple(getattr(held[key], "shape", ()))
            if given != tuple(shape):
                raise ValueError(f"{where} {key!r} must have the shape {tuple(shape)} that "
                                 f"{method} declares, got {given}; nothing was written")
        for key in held:
            if key not in declared:
                raise ValueError(f"{where} {key!r} is not declared by {method}, so no load "
                                 "could read it back; nothing was written")


def _check_json(value, where: str = "extra") -> None:
    """Raise a ``TypeError`` naming the key unless ``value`` survives the JSON header
    unchanged: strings, finite numbers, True/False/None, lists and string-keyed dicts."""
    if value is None or isinstance(value, (bool, str)):
        return
    if type(value) in (int, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError(f"{where}: {value!r} is not finite, and a model file's JSON "
                            "header has no NaN or Infinity; nothing was written")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}; a model "
                                "file's JSON header keeps string keys only (it would load "
                                "back as a string); nothing was written")
            _check_json(item, f"{where}[{key!r}]")
        return
    hint = " (convert it with .tolist() or float())" if hasattr(value, "tolist") else ""
    raise TypeError(f"{where}: a {type(value).__name__} ({str(value)[:40]}) cannot be stored "
                    f"in a model file's JSON header{hint}; use strings, numbers, lists and "
                    "dicts; nothing was written")


def _check_state(model, state: dict) -> None:
    """The optimiser's state must be that of the model's parameters (or none yet): one
    entry per parameter, in its shape, as loading requires."""
    if not state["state"] or not any(state["state"]):
        return
    named = [(f"{path}.{key}" if path else key, tuple(sub.params[key].shape))
             for i, layer in enumerate(model.layers) for path, sub in layer.walk(str(i))
             for key in sub.params]
    held = [tuple(next(iter(s.values())).shape) if s else None for s in state["state"]]
    if len(held) != len(named):
        raise ValueError(f"cannot save: the optimiser holds state for {len(held)} "
                         f"parameters, the model has {len(named)}; it was used with another "
                         "model (save with include_optimizer=False, or set a new "
                         "optimiser); nothing was written")
    for j, ((name, shape), given) in enumerate(zip(named, held)):
        if given != shape:
            raise ValueError(f"cannot save: the optimiser's state for parameter {j} has "
                             f"shape {given}, but parameter {name} has shape {shape}; it "
                             "was used with another model (save with "
                             "include_optimizer=False, or set a new optimiser); nothing "
                             "was written")


def _arrays(model, include_optimizer: bool, extra, target=None) -> dict:
    # Everything is checked before anything is written (target: the file, for messages).
    arrays: dict[str, np.ndarray] = {}
    layers = [layer.spec() for layer in model.layers]  # a TypeError for unregistered types
    tree = [(path, sub) for i, layer in enumerate(model.layers)
            for path, sub in layer.walk(str(i))]
    for path, sub in tree:
        _check_declared(path, sub)
    extra = dict(extra or model.extra or {})
    _check_json(extra)
    for i, layer in enumerate(model.layers):
        for path, sub in layer.walk(str(i)):
            for key, value in sub.params.items():
                arrays[f"param/{path}/{key}"] = _le(host_array(value))
            for key, value in sub.buffers.items():
                arrays[f"buffer/{path}/{key}"] = _le(host_array(value))
    header = {"format": FORMAT, "version": VERSION, "dtype": model.dtype, "layers": layers,
              "loss": None, "metrics": list(model.metrics), "optimizer": None,
              "preprocessing": None, "extra": extra}
    if model.loss is not None:
        header["loss"] = {"name": model.loss.name, "config": model.loss.config()}
    opt = model.optimizer
    if include_optimizer and opt is not None:
        state = opt.state_dict()
        _check_state(model, state)
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
    scaler = getattr(model, "target_scaler", None)
    if scaler is not None:
        info, target = scaler.state()
        header["target_scaling"] = info
        arrays.update({f"target/{k}": _le(np.asarray(v)) for k, v in target.items()})
    for i, spec in enumerate(layers):  # a user's layer or loss may hold NumPy numbers
        _check_json(spec["config"], f"layer {i} ({spec['type']}) config")
    _check_json(header["loss"], "the loss's config")
    _check_json(header["optimizer"], "the optimiser's settings")
    check_contents(f"cannot save {target}" if target else "cannot save the model", header,
                   arrays, model.layers)
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
