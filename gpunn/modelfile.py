"""The model file format: architecture as JSON plus host arrays in one ``.npz``; never pickle.

Writing needs only what a model exposes (layers, backend, loss, optimizer, ...); reading
builds the parts (:class:`ModelParts`) and leaves assembling a model to :mod:`gpunn.io`.

Layout of the archive (NumPy ``.npz``, little-endian arrays):

- ``__gpunn__``: a UTF-8 JSON header (stored as a uint8 array): format version, dtype,
  layer types and configs, optional optimiser hyper-parameters and step count, loss,
  metrics, preprocessing and free-form ``extra`` (e.g. class labels from the CLI);
- ``param/<layer>/<name>``: parameters;
- ``optim/<slot>/<name>``: optimiser state; ``prep/<name>``: preprocessing arrays.

Loading uses ``allow_pickle=False`` throughout, so a file can never execute code; every
shape and type is checked against the header before anything is built.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .backend.ops import host_array
from .errors import GpunnError
from .layers import ActivationLayer

FORMAT = "gpunn-model"
VERSION = 1
#: Largest element count a model file may declare for one array (about 4 GiB of float32).
MAX_ELEMENTS = 2**30


class ModelFileError(GpunnError, ValueError):
    """A model file that is not a valid gpunn model (or cannot be read)."""


def _le(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
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
        ``.npz`` is appended when missing, as NumPy does.
    include_optimizer : bool
        Store the optimiser's hyper-parameters and state (to resume training).
    extra : dict, optional
        JSON-serialisable data kept in the header (``model.extra`` on load).
    """
    path = os.fspath(path)
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
    layers = []
    for i, layer in enumerate(model.layers):
        kind = "ActivationLayer" if isinstance(layer, ActivationLayer) else type(layer).__name__
        layers.append({"type": kind, "name": layer.name, "config": layer.config()})
        for key, value in layer.params.items():
            arrays[f"param/{i}/{key}"] = _le(host_array(value))
    header = {"format": FORMAT, "version": VERSION, "dtype": model.dtype, "layers": layers,
              "loss": None, "metrics": list(model.metrics), "optimizer": None,
              "preprocessing": None, "extra": dict(extra or model.extra or {})}
    if model.loss is not None:
        header["loss"] = {"name": model.loss.name, "config": model.loss.config()}
    opt = model.optimizer
    if include_optimizer and opt is not None:
        state = opt.state_dict()
        header["optimizer"] = {"kind": state["kind"], "class": type(opt).__name__,
                               "hyper": state["hyper"], "t": state["t"],
                               "slots": len(state["state"])}
        for j, slot in enumerate(state["state"]):
            for key, value in slot.items():
                arrays[f"optim/{j}/{key}"] = _le(np.asarray(value))
    state = getattr(model, "train_state", None)
    if state is not None:
        header["training"] = state.to_json() if hasattr(state, "to_json") else state
    if model.preprocessor is not None:
        info, prep = model.preprocessor.state()
        header["preprocessing"] = info
        arrays.update({f"prep/{k}": _le(np.asarray(v)) for k, v in prep.items()})
    arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    return arrays


def _atomic_savez(path: str, arrays: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".gpunn-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _fail(path, what: str):
    where = "model bytes" if isinstance(path, io.BytesIO) else os.fspath(path)
    raise ModelFileError(f"{where}: {what}")


def _read(path):
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        _fail(path, f"not a readable .npz archive ({type(exc).__name__}: {exc})")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        _fail(path, "not an .npz archive (a single .npy array)")
    return archive


def _declared(path, archive, key: str):
    """Shape and dtype an archive member declares, read from its header alone, so that
    absurd sizes and object arrays are refused before anything is allocated."""
    try:
        info = archive.zip.getinfo(key + ".npy")
        with archive.zip.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(fh)
            header_len = fh.tell()
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        _fail(path, f"array {key!r} has an unreadable header ({type(exc).__name__}: {exc})")
    if dtype.hasobject or dtype.kind not in "fiub":
        _fail(path, f"array {key!r} has dtype {dtype}; expected numbers")
    count = 1
    for d in shape:
        count *= int(d)
    if count > MAX_ELEMENTS:
        _fail(path, f"array {key!r} declares {count} elements (limit {MAX_ELEMENTS})")
    if count * dtype.itemsize != info.file_size - header_len:
        _fail(path, f"array {key!r} declares shape {tuple(shape)} of {dtype} but holds "
                    f"{info.file_size - header_len} bytes")
    return tuple(shape), dtype


def _array(path, archive, key: str, shape=None) -> np.ndarray:
    if key not in archive.files:
        _fail(path, f"missing array {key!r}")
    declared, _ = _declared(path, archive, key)
    if shape is not None and declared != tuple(shape):
        _fail(path, f"array {key!r} has shape {declared}, the architecture needs "
                    f"{tuple(shape)}")
    try:
        a = archive[key]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        _fail(path, f"array {key!r} is unreadable ({type(exc).__name__}: {exc})")
    if a.dtype.kind not in "fiub":
        _fail(path, f"array {key!r} has dtype {a.dtype}; expected numbers")
    if a.size > MAX_ELEMENTS:
        _fail(path, f"array {key!r} declares {a.size} elements (limit {MAX_ELEMENTS})")
    if shape is not None and tuple(a.shape) != tuple(shape):
        _fail(path, f"array {key!r} has shape {tuple(a.shape)}, the architecture needs "
                    f"{tuple(shape)}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        _fail(path, f"array {key!r} contains NaN or Inf")
    return a


def read_header(path) -> dict:
    """The JSON header of a model file (validated for type, not content)."""
    with _read(path) as archive:
        return _header(path, archive)


def _header(path, archive) -> dict:
    raw = _array(path, archive, "__gpunn__")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail(path, "header is not a byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"header is not valid JSON ({exc})")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        _fail(path, f"not a gpunn model file (format {header.get('format')!r})"
              if isinstance(header, dict) else "header is not a JSON object")
    if header.get("version") != VERSION:
        _fail(path, f"unsupported format version {header.get('version')!r} (this gpunn "
                    f"reads {VERSION})")
    expected = {"layers": list, "metrics": list, "extra": dict, "dtype": str}
    for key, kind in expected.items():
        if not isinstance(header.get(key), kind):
            _fail(path, f"header field {key!r} should be a {kind.__name__}, got "
                        f"{type(header.get(key)).__name__}")
    return header


@dataclass
class ModelParts:
    """What a model file holds, checked and built, before it becomes a model.

    Attributes
    ----------
    layers : list of Layer
        Built from their configs, not yet on a device.
    dtype : str
    params : dict of (layer index, name) -> host array
    loss, metrics, optimizer, preprocessor, extra, training
        As saved (``optimizer`` holds host state; ``training`` is what ``resume_from``
        needs, or None).
    """

    layers: list
    dtype: str
    params: dict
    loss: object = None
    metrics: list = field(default_factory=list)
    optimizer: object = None
    preprocessor: object = None
    extra: dict = field(default_factory=dict)
    training: dict | None = None


def read(path) -> ModelParts:
    """Read and check a model file, building its parts (no device involved).

    Raises
    ------
    ModelFileError
        Anything but a valid gpunn model file; nothing is unpickled or executed.
    FileNotFoundError
    """
    try:
        return _read_parts(path)
    except (ModelFileError, FileNotFoundError, MemoryError):
        raise
    except Exception as exc:  # untrusted input: any other failure means a bad file
        _fail(path, f"cannot be loaded ({type(exc).__name__}: {exc})")


def _read_parts(path) -> ModelParts:
    from . import losses

    with _read(path) as archive:
        header = _header(path, archive)
        layers = _layers(path, header)
        params = {(i, key): _array(path, archive, f"param/{i}/{key}", shape)
                  for i, layer in enumerate(layers)
                  for key, shape in layer.param_shapes().items()}
        known = {f"param/{i}/{k}" for i, k in params} | {"__gpunn__"}
        opt_arrays = _optimizer_arrays(path, archive, header.get("optimizer"))
        prep_arrays = _prep_arrays(path, archive, header.get("preprocessing"), layers)
        known |= set(opt_arrays) | {f"prep/{k}" for k in prep_arrays}
        unknown = sorted(set(archive.files) - known)
        if unknown:
            _fail(path, f"unexpected arrays {unknown[:5]}")
    parts = ModelParts(layers, header["dtype"], params, extra=header["extra"],
                       metrics=[m for m in header["metrics"] if isinstance(m, str)],
                       training=_training(path, header.get("training")))
    if isinstance(header.get("loss"), dict):
        try:
            parts.loss = losses.get(header["loss"].get("name"),
                                    **dict(header["loss"].get("config") or {}))
        except (TypeError, ValueError) as exc:
            _fail(path, f"invalid loss ({exc})")
    if header.get("optimizer") is not None:
        parts.optimizer = _optimizer(path, header["optimizer"], opt_arrays, params)
    if prep_arrays:
        from .preprocessing import Standardizer

        parts.preprocessor = Standardizer.from_state(prep_arrays)
    return parts


def _layers(path, header) -> list:
    from .layers import LAYERS

    layers = []
    for i, spec in enumerate(header["layers"]):
        if not isinstance(spec, dict) or spec.get("type") not in LAYERS or \
                not isinstance(spec.get("config"), dict):
            _fail(path, f"layer {i}: expected a known type ({', '.join(LAYERS)}) with "
                        f"a config, got {str(spec)[:80]}")
        try:
            layer = LAYERS[spec["type"]](**spec["config"])
        except (TypeError, ValueError) as exc:
            _fail(path, f"layer {i} ({spec['type']}): invalid config ({exc})")
        layer.name = spec.get("name") if isinstance(spec.get("name"), str) else None
        layers.append(layer)
    if not layers:
        _fail(path, "no layers")
    return layers


def _optimizer_arrays(path, archive, opt_header) -> dict:
    from . import optim

    if opt_header is None:
        return {}
    if not isinstance(opt_header, dict) or opt_header.get("kind") not in \
            optim.OPTIMIZERS or not isinstance(opt_header.get("slots"), int):
        _fail(path, "optimizer header is malformed")
    return {name: _array(path, archive, name) for name in archive.files
            if name.startswith("optim/")}


def _prep_arrays(path, archive, info, layers) -> dict:
    from .preprocessing import Standardizer

    if info is None:
        return {}
    if info != {"kind": Standardizer.kind}:
        _fail(path, f"unknown preprocessing {info!r}")
    n_in = layers[0].in_features
    return {k: _array(path, archive, f"prep/{k}", (n_in,) if n_in else None)
            for k in ("mean", "scale")}


def _optimizer(path, opt_header, opt_arrays, params):
    from . import optim

    slots = [{} for _ in range(opt_header["slots"])]
    for name, value in opt_arrays.items():
        parts = name.split("/")
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(slots):
            _fail(path, f"optimizer array {name!r} does not match the header")
        slots[int(parts[1])][parts[2]] = value
    cls = getattr(optim, str(opt_header.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
        cls = optim.OPTIMIZERS[opt_header["kind"]]
    try:
        opt = cls(**opt_header.get("hyper", {}))
        # Host state; the next fit moves it (and re-cuts it for the model's layout).
        opt.load_state_dict({"kind": opt_header["kind"], "hyper": opt_header["hyper"],
                             "t": int(opt_header.get("t", 0)), "state": slots})
        total = sum(int(np.prod(v.shape)) for v in params.values())
        key = opt._state_keys[0] if opt._state_keys else None
        if key and sum(int(s[key].size) for s in opt.state) != total:
            raise ValueError(f"state covers {sum(int(s[key].size) for s in opt.state)} "
                             f"values, the model has {total} parameters")
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        _fail(path, f"optimizer state does not fit the model ({exc})")
    return opt


def _training(path, state):
    """The training-progress part of a header (for ``fit(resume_from=...)``), checked."""
    if state is None:
        return None
    ok = (isinstance(state, dict) and isinstance(state.get("epoch"), int)
          and state["epoch"] >= 0 and isinstance(state.get("history"), dict)
          and all(isinstance(k, str) and isinstance(v, list)
                  and all(isinstance(x, (int, float)) for x in v)
                  for k, v in state["history"].items())
          and len({len(v) for v in state["history"].values()}) <= 1
          and (state.get("rng") is None or isinstance(state.get("rng"), dict)))
    if not ok:
        _fail(path, "the training state in the header is malformed")
    return state
