"""The model file format: architecture as JSON plus host arrays in one ``.npz`` (or the
same in a ``.safetensors`` file, see :mod:`gpunn.files.safetensors_format`); never pickle.

Reading builds the parts (:class:`ModelParts`) and leaves assembling a model to
:mod:`gpunn.files`; writing is :mod:`gpunn.files.write`, which needs only what a model exposes.

Layout of the archive (NumPy ``.npz``, little-endian arrays):

- ``__gpunn__``: a UTF-8 JSON header (stored as a uint8 array): format version, dtype,
  layer types and configs (a block's config holds its layers' specs), optional optimiser
  hyper-parameters and step count, loss, metrics, preprocessing and free-form ``extra``
  (e.g. class labels from the CLI);
- ``param/<path>/<name>``: parameters, ``buffer/<path>/<name>``: buffers (non-trainable
  state), where ``<path>`` is the layer's position in the tree: ``2`` for the third
  layer, ``2.0`` for the first layer inside it;
- ``optim/<slot>/<name>``: optimiser state, slot ``i`` for parameter ``i``, in its shape;
  ``prep/<name>``: preprocessing arrays.

Loading uses ``allow_pickle=False`` throughout, so a file can never execute code; every
shape and type is checked against the header before anything is built.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..errors import GpunnError
from ..params import flat_layout
from .safetensors_format import SafetensorsArchive, SafetensorsError, is_safetensors

FORMAT = "gpunn-model"
VERSION = 1
#: Largest element count a model file may declare for one array (about 4 GiB of float32).
MAX_ELEMENTS = 2**30
#: Largest JSON header and layer count a model file may declare.
MAX_HEADER_BYTES = 16 * 2**20
MAX_LAYERS = 10_000


class ModelFileError(GpunnError, ValueError):
    """A model file that is not a valid gpunn model (or cannot be read)."""


#: How an .npz archive (a zip file) and a NumPy .npy file begin.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def not_npz(path) -> str | None:
    """Why the file at ``path`` cannot be an .npz archive, judged by its first bytes
    (NumPy's own error calls anything that is not a zip or .npy file "pickled data"), or
    None when it begins as one (or cannot be read: opening it says why)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head.startswith(_ZIP_MAGIC) or head.startswith(_NPY_MAGIC):
        return None
    if not head:
        return "the file is empty"
    if head[:1] == b"\x80":  # pickle protocol 2 and later
        return "a Python pickle, which is never loaded"
    return f"it begins {head!r}, not as a zip archive does"


def _fail(path, what: str):
    where = "model bytes" if isinstance(path, io.BytesIO) else os.fspath(path)
    raise ModelFileError(f"{where}: {what}")


def _read(path):
    if isinstance(path, (str, os.PathLike)):
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise
        except OSError as exc:
            _fail(path, f"cannot be read ({exc})")
        if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
            _fail(path, "not a regular file")
    if is_safetensors(path):
        try:
            return SafetensorsArchive(path)
        except SafetensorsError as exc:
            _fail(path, f"not a readable gpunn .safetensors file ({exc})")
    problem = not_npz(path)
    if problem is not None:
        _fail(path, f"not a readable .npz archive, so not a gpunn model file ({problem})")
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # NumPy's own text suggests loading pickles unsafely: never the advice here.
        reason = "pickled data" if "pickle" in str(exc) else f"{type(exc).__name__}: {exc}"
        _fail(path, f"not a readable .npz archive, so not a gpunn model file ({reason})")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        _fail(path, "not an .npz archive (a single .npy array)")
    names = archive.zip.namelist()
    if len(set(names)) != len(names):
        archive.close()
        _fail(path, "the archive holds the same member twice")
    return archive


def _declared(path, archive, key: str):
    """Shape and dtype an archive member declares, read from its header alone, so that
    absurd sizes and object arrays are refused before anything is allocated."""
    held = None  # bytes stored; the safetensors library checks its own against the shape
    if isinstance(archive, np.lib.npyio.NpzFile):
        shape, dtype, held = _npy_declared(path, archive, key)
    else:
        try:
            shape, dtype = archive.declared(key)
        except SafetensorsError as exc:
            _fail(path, f"array {key!r} {exc}")
    if dtype.hasobject or dtype.kind not in "fiub":
        _fail(path, f"array {key!r} has dtype {dtype}; expected numbers")
    count = 1
    for d in shape:
        count *= int(d)
    if count > MAX_ELEMENTS:
        _fail(path, f"array {key!r} declares {count} elements (limit {MAX_ELEMENTS})")
    if held is not None and count * dtype.itemsize != held:
        _fail(path, f"array {key!r} declares shape {tuple(shape)} of {dtype} but holds "
                    f"{held} bytes")
    return tuple(shape), dtype


def _npy_declared(path, archive, key: str):
    """Shape, dtype and stored data bytes of an ``.npz`` member, from its header."""
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
    return shape, dtype, info.file_size - header_len


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
    if "__gpunn__" in archive.files:
        (size,), _ = _declared(path, archive, "__gpunn__")
        if size > MAX_HEADER_BYTES:
            _fail(path, f"header of {size} bytes (limit {MAX_HEADER_BYTES})")
    raw = _array(path, archive, "__gpunn__")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail(path, "header is not a byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"header is not valid JSON ({exc})")
    except RecursionError:
        _fail(path, "header nests too deeply")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        _fail(path, f"not a gpunn model file (format {header.get('format')!r})"
              if isinstance(header, dict) else "header is not a JSON object")
    if type(header.get("version")) is not int or header.get("version") != VERSION:
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
    params : dict of (layer path, name) -> host array
        The path as in the archive (``"2"``, ``"2.0"``).
    buffers : dict of (layer path, name) -> host array
    loss, metrics, optimizer, preprocessor, extra, training
        As saved (``optimizer`` holds host state; ``training`` is what ``resume_from``
        needs, or None).
    """

    layers: list
    dtype: str
    params: dict
    buffers: dict = field(default_factory=dict)
    loss: object = None
    metrics: list = field(default_factory=list)
    optimizer: object = None
    preprocessor: object = None
    extra: dict = field(default_factory=dict)
    training: dict | None = None

    def put_into(self, model) -> None:
        """Write these parameters and buffers into ``model`` (the same tree), in place."""
        be = model.backend
        layers = dict(model.walk())
        with be.context():
            for store, arrays in (("params", self.params), ("buffers", self.buffers)):
                for (path, key), value in arrays.items():
                    target = getattr(layers[path], store)
                    target[key][...] = be.asarray(value, dtype=target[key].dtype)


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
    except (ModelFileError, FileNotFoundError, MemoryError, ImportError):
        raise  # ImportError: the safetensors package is missing (its message says so)
    except Exception as exc:  # untrusted input: any other failure means a bad file
        _fail(path, f"cannot be loaded ({type(exc).__name__}: {exc})")


def _read_parts(path) -> ModelParts:
    from .. import losses

    with _read(path) as archive:
        header = _header(path, archive)
        layers = _layers(path, header)
        tree = [(p, sub) for i, layer in enumerate(layers) for p, sub in layer.walk(str(i))]
        params = {(p, key): _array(path, archive, f"param/{p}/{key}", shape)
                  for p, sub in tree for key, shape in sub.param_shapes().items()}
        buffers = {(p, key): _array(path, archive, f"buffer/{p}/{key}", shape)
                   for p, sub in tree for key, shape in sub.buffer_shapes().items()}
        known = {f"param/{p}/{k}" for p, k in params} | {"__gpunn__"}
        known |= {f"buffer/{p}/{k}" for p, k in buffers}
        n_params = sum(int(np.prod(v.shape)) for v in params.values())
        # A flat optimiser state has the parameters at aligned offsets (gpunn.params).
        bound = flat_layout([tuple(v.shape) for v in params.values()])[1]
        opt_arrays = _optimizer_arrays(path, archive, header.get("optimizer"), n_params,
                                       bound)
        prep_arrays = _prep_arrays(path, archive, header.get("preprocessing"), layers)
        known |= set(opt_arrays) | {f"prep/{k}" for k in prep_arrays}
        unknown = sorted(set(archive.files) - known)
        if unknown:
            _fail(path, f"unexpected arrays {unknown[:5]}")
    _check_representable(path, header["dtype"], params)
    parts = ModelParts(layers, header["dtype"], params, buffers, extra=header["extra"],
                       metrics=_metric_names(path, header["metrics"]),
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
        from ..preprocessing import Standardizer

        parts.preprocessor = Standardizer.from_state(prep_arrays)
    return parts


def _metric_names(path, names) -> list:
    from ..metrics import METRICS

    if not all(isinstance(m, str) and m in METRICS for m in names):
        _fail(path, f"unknown metric names {names!r}; known: {', '.join(METRICS)}")
    return list(names)


def _check_representable(path, dtype: str, params: dict) -> None:
    """Weights must survive the cast to the model's dtype (a float16 model cannot hold
    1e6)."""
    limit = {"float16": float(np.finfo(np.float16).max), "bfloat16": 3.3895e38}.get(dtype)
    for (p, key), value in params.items():
        if limit is not None and value.size and float(np.max(np.abs(value))) > limit:
            _fail(path, f"param/{p}/{key} holds values beyond {dtype}'s range")


def _layers(path, header) -> list:
    from ..layers import LAYERS, layer_from_spec

    if len(header["layers"]) > MAX_LAYERS:
        _fail(path, f"{len(header['layers'])} layers (limit {MAX_LAYERS})")
    layers = []
    for i, spec in enumerate(header["layers"]):
        if not isinstance(spec, dict) or spec.get("type") not in LAYERS or \
                not isinstance(spec.get("config"), dict):
            _fail(path, f"layer {i}: expected a known type ({', '.join(sorted(LAYERS))}) "
                        f"with a config, got {str(spec)[:80]}")
        try:
            layers.append(layer_from_spec(spec, f"layer {i}"))
        except (TypeError, ValueError) as exc:
            _fail(path, str(exc))
    if not layers:
        _fail(path, "no layers")
    if sum(1 for layer in layers for _ in layer.walk()) > MAX_LAYERS:
        _fail(path, f"more than {MAX_LAYERS} layers in all")
    return layers


def _optimizer_class(path, opt_header):
    """The registered optimiser class a header names: by ``name``, or (files written before
    optimisers were registered by name) by the rule's kind, refined by the class name."""
    from ..optim import OPTIMIZERS

    name = str(opt_header.get("name", opt_header.get("kind")))
    cls = OPTIMIZERS.get(name)
    if "name" not in opt_header and cls is not None:  # AdamW was saved as kind "adam"
        cls = next((c for c in OPTIMIZERS.values() if c.kind == cls.kind and
                    c.__name__ == opt_header.get("class")), cls)
    if cls is None:
        _fail(path, f"optimizer header names {name[:80]!r}, which is not registered (known: "
                    f"{', '.join(sorted(OPTIMIZERS))}); if it is your own, import the "
                    "module that registers it (gpunn.optim.register) before loading")
    return cls


def _optimizer_arrays(path, archive, opt_header, n_params: int, bound: int) -> dict:
    if opt_header is None:
        return {}
    if not isinstance(opt_header, dict) or type(opt_header.get("slots")) is not int or \
            not 0 <= opt_header["slots"] <= n_params:
        _fail(path, "optimizer header is malformed")
    _optimizer_class(path, opt_header)
    names = [name for name in archive.files if name.startswith("optim/")]
    for name in names:  # bounded by the model before anything is read: no zip bombs
        shape, _ = _declared(path, archive, name)
        if int(np.prod(shape)) > bound:
            _fail(path, f"optimizer array {name!r} declares {int(np.prod(shape))} values, "
                        f"more than the model's {n_params} parameters (at most {bound} "
                        "with alignment gaps)")
    return {name: _array(path, archive, name) for name in names}


def _prep_arrays(path, archive, info, layers) -> dict:
    from ..preprocessing import Standardizer

    if info is None:
        return {}
    if info != {"kind": Standardizer.kind}:
        _fail(path, f"unknown preprocessing {info!r}")
    from ..layers.blocks import input_shape_of

    shape = input_shape_of(layers)
    n_in = shape[0] if shape is not None and len(shape) == 1 else None
    arrays = {k: _array(path, archive, f"prep/{k}", (n_in,) if n_in else None)
              for k in ("mean", "scale")}
    if arrays["scale"].dtype.kind not in "fiu" or np.any(arrays["scale"] <= 0):
        _fail(path, "the standardiser's scale must be positive")
    return arrays


def _optimizer(path, opt_header, opt_arrays, params):
    slots = [{} for _ in range(opt_header["slots"])]
    for name, value in opt_arrays.items():
        parts = name.split("/")
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(slots):
            _fail(path, f"optimizer array {name!r} does not match the header")
        slots[int(parts[1])][parts[2]] = value
    cls = _optimizer_class(path, opt_header)
    shapes = [tuple(v.shape) for v in params.values()]
    offsets, total = flat_layout(shapes)
    if len(slots) == 1 and shapes != [(total,)] and slots[0] and all(
            a.shape == (total,) for a in slots[0].values()):
        # A flat state with gpunn.params' alignment gaps (older files): cut once, here.
        slots = [{k: a[o:o + int(np.prod(s))].reshape(s) for k, a in slots[0].items()}
                 for o, s in zip(offsets, shapes)]
    try:
        opt = cls(**opt_header.get("hyper", {}))  # host state, moved by the next fit
        t = opt_header.get("t", 0)
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"step counter {t!r}: expected an integer >= 0")
        opt.load_state_dict({"kind": opt_header["kind"], "hyper": opt_header["hyper"],
                             "t": t, "state": slots})
        held = [tuple(s[opt.state_keys[0]].shape) for s in opt.state if opt.state_keys]
        if opt.state_keys and held != shapes:
            raise ValueError(f"state of shapes {held[:3]}... for parameters of shapes "
                             f"{shapes[:3]}... ({len(held)} entries, {len(shapes)} needed)")
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        _fail(path, f"optimizer state does not fit the model ({exc})")
    return opt


def _training(path, state):
    """The training-progress part of a header (for ``fit(resume_from=...)``), checked."""
    if state is None:
        return None
    def number(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    epoch = state.get("epoch") if isinstance(state, dict) else None
    history = state.get("history") if isinstance(state, dict) else None
    ok = (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0
          and isinstance(history, dict)
          and all(isinstance(k, str) and isinstance(v, list) and len(v) == epoch
                  and all(number(x) or (isinstance(x, float) and x != x) for x in v)
                  for k, v in history.items())
          and (state.get("rng") is None or isinstance(state.get("rng"), dict)))
    if not ok:
        _fail(path, "the training state in the header is malformed")
    return state
