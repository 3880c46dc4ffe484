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
  ``prep/<name>``: preprocessing arrays; ``target/mean`` and ``target/scale``: the
  regression targets' standardisation (header ``target_scaling``), one value per output.

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

from ..backend.ops import HALF_DTYPES, beyond_range, dtype_range
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
    if isinstance(path, io.BytesIO):  # model bytes (pickling, dumps/loads)
        head = path.getvalue()[:16]
    else:
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
    loss, metrics, optimizer, preprocessor, target_scaler, extra, training
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
    target_scaler: object = None
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
    with _read(path) as archive:
        header = _header(path, archive)
        _check_extra(path, header["extra"])
        layers = _layers(path, header)  # the constructors' own bounds speak first
        _check_numbers(path, header)
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
        target_arrays = _target_arrays(path, archive, header.get("target_scaling"), layers)
        training = _training(path, header.get("training"))
        known |= set(opt_arrays) | {f"prep/{k}" for k in prep_arrays}
        known |= {f"target/{k}" for k in target_arrays}
        known |= _callback_arrays(path, archive, training)
        unknown = sorted(set(archive.files) - known)
        if unknown:
            _fail(path, f"unexpected arrays {unknown[:5]}")
    nonnegative = _optimizer_class(path, header["optimizer"]).nonnegative_state \
        if opt_arrays else ()
    _check_ranges(path, header["dtype"], tree, params, buffers, opt_arrays, nonnegative)
    parts = ModelParts(layers, header["dtype"], params, buffers, extra=header["extra"],
                       metrics=_metric_names(path, header["metrics"]),
                       training=training)
    parts.loss = _loss(path, header)
    if header.get("optimizer") is not None:
        parts.optimizer = _optimizer(path, header["optimizer"], opt_arrays, params)
        base = (training or {}).get("base_lr")
        if base is not None:
            # The header's lr is the rate a schedule set last; the optimiser's own rate
            # (what a schedule of a later fit starts from) is the training state's.
            parts.optimizer.scheduled_lr = (float(base), parts.optimizer.lr)
    if prep_arrays:
        from ..preprocessing import Standardizer

        parts.preprocessor = Standardizer.from_state(prep_arrays)
        try:  # its arrays and what it derives from them (1/scale) in the model's dtype
            if _model_range(header["dtype"]) is not None:
                parts.preprocessor.check_dtype(header["dtype"], "prep/")
        except ValueError as exc:
            _fail(path, str(exc))
    if target_arrays:
        from ..preprocessing import Standardizer

        parts.target_scaler = Standardizer.from_state(target_arrays)
        try:
            if _model_range(header["dtype"]) is not None:
                parts.target_scaler.check_dtype(header["dtype"], "target/")
        except ValueError as exc:
            _fail(path, str(exc))
    return parts


def _metric_names(path, names) -> list:
    from ..metrics import METRICS

    if not all(isinstance(m, str) and m in METRICS for m in names):
        _fail(path, f"unknown metric names {names!r}; known: {', '.join(METRICS)}")
    return list(names)


def check_contents(where: str, header: dict, arrays: dict, layers: list) -> None:
    """The checks :func:`read` makes of a file's contents (values, not layout), made by a
    writer on what it is about to write: a save never writes what no load accepts.

    Parameters
    ----------
    where : str
        How errors name what is being written (``"cannot save model.npz"``).
    header : dict
        The JSON header.
    arrays : dict of str -> numpy.ndarray
        The archive's arrays by name (``param/0/W``, ``optim/0/v``, ``prep/mean``).
    layers : list of Layer
        The model's layers, whose declarations (``nonnegative``) the arrays must meet.

    Raises
    ------
    ModelFileError
    """
    from ..optim import OPTIMIZERS
    from ..preprocessing import Standardizer

    for name, value in arrays.items():  # what _declared refuses on reading
        if value.dtype.hasobject or value.dtype.kind not in "fiub":
            _fail(where, f"{name} has dtype {value.dtype}; a model file holds real numbers")
    tree = [(p, sub) for i, layer in enumerate(layers) for p, sub in layer.walk(str(i))]
    params = {(p, k): arrays[f"param/{p}/{k}"] for p, sub in tree for k in sub.params}
    buffers = {(p, k): arrays[f"buffer/{p}/{k}"] for p, sub in tree for k in sub.buffers}
    opt_arrays = {k: v for k, v in arrays.items() if k.startswith("optim/")}
    # Each layer rebuilt from its spec as a load rebuilds it: its constructor's checks
    # judge settings changed after it was made (a Dropout p set to 1.5 by hand).
    built = _layers(where, header)
    _loss(where, header)
    _check_extra(where, header["extra"])
    _check_numbers(where, header)
    opt = header.get("optimizer") or {}
    cls = OPTIMIZERS.get(str(opt.get("name")))
    if cls is not None:  # settings changed after the optimiser was made (lr = 0, t = -1)
        try:
            _optimizer_settings(cls, opt)
        except (TypeError, ValueError) as exc:
            _fail(where, f"the optimizer's settings would not load back ({exc}); nothing "
                         "was written")
    _check_ranges(where, header["dtype"], tree, params, buffers, opt_arrays,
                  cls.nonnegative_state if cls is not None else ())
    wanted = _prep_shape(built)
    for key in ("prep/mean", "prep/scale"):
        if key in arrays and wanted is not None and tuple(arrays[key].shape) != wanted:
            _fail(where, f"array {key!r} has shape {tuple(arrays[key].shape)}, the "
                         f"architecture needs {wanted} (one value per input feature)")
    # The feature and the target standardisers: their statistics in the model's dtype.
    for entry, prefix in (("preprocessing", "prep/"), ("target_scaling", "target/")):
        if (header.get(entry) or {}).get("kind") == Standardizer.kind and \
                _model_range(header["dtype"]) is not None:
            try:
                Standardizer(arrays[f"{prefix}mean"], arrays[f"{prefix}scale"]).check_dtype(
                    header["dtype"], prefix)
            except ValueError as exc:
                _fail(where, str(exc))


def _state_dtype(dtype: str) -> str:
    """The dtype a model of ``dtype`` computes its state in: 16-bit models keep float32
    master weights, optimiser state and preprocessing."""
    return "float32" if dtype in HALF_DTYPES else dtype


def _model_range(dtype: str) -> float | None:
    """The largest finite value of a model dtype, or None for a name that is not one
    (the model's constructor says what is wrong with it)."""
    try:
        return dtype_range(dtype)[0]
    except ValueError:
        return None


def _check_array(path, name: str, value, dtype: str, nonnegative: bool = False) -> None:
    """One array of the file, as the model will hold it: finite once cast to ``dtype``,
    and >= 0 where its owner declares so."""
    if _model_range(dtype) is None:
        return
    problem = beyond_range(value, dtype)
    if problem:
        _fail(path, f"{name} {problem}")
    if nonnegative and value.size and float(np.min(value)) < 0:
        _fail(path, f"{name} must be >= 0 (a sum of squares or a variance), but holds "
                    f"{float(np.min(value)):.3g}")


def _check_ranges(path, dtype: str, tree, params: dict, buffers: dict, opt_arrays: dict,
                  nonnegative_state=()) -> None:
    """Every array after the cast to the dtype it will have, and the constraints its owner
    declares: a layer's :attr:`~gpunn.layers.Layer.nonnegative` arrays, an optimiser's
    :attr:`~gpunn.optim.Optimizer.nonnegative_state`. A value finite in the file but not in
    the model (float64 1e300 in a float32 model) would load and predict NaN."""
    layers = dict(tree)

    def by_name(p):  # "2.0" -> "sequential_2.dense_0": how users know their layers
        parts = p.split(".")
        return ".".join(str(layers[".".join(parts[:i + 1])].name or part)[:40]
                        for i, part in enumerate(parts))

    for kind, arrays in (("param", params), ("buffer", buffers)):
        for (p, key), value in arrays.items():
            if kind == "buffer" and value.dtype.kind != "f":
                continue  # an integer buffer (a counter) keeps its own dtype
            layer = layers[p]
            _check_array(path, f"{kind}/{by_name(p)}/{key} (archive member "
                               f"{kind}/{p}/{key})", value, dtype,
                         key in getattr(layer, "nonnegative", ()))
    positive = set(nonnegative_state)
    for name, value in opt_arrays.items():
        key = name.rsplit("/", 1)[-1]
        _check_array(path, f"{name} (optimizer state {key!r})", value, _state_dtype(dtype),
                     key in positive)


def _check_numbers(path, header) -> None:
    """Every real number of the layers' configs, the optimiser's settings and the loss's
    config must be finite in the dtype it is computed in (a BatchNorm eps of 1e39 is Inf
    in float32), and one that is not 0 must not become 0 there (an eps of 1e-50).
    Integers are sizes and counts, which the constructors bound."""
    def walk(value, where, dtype, limit):
        cast = "float32" if dtype == "bfloat16" else dtype  # (bfloat16: float32's range)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where} {k!r}" if where.endswith("config") else f"{where}.{k}",
                     dtype, limit)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]", dtype, limit)
        elif isinstance(value, float) and not math.isfinite(value):
            _fail(path, f"{where} is {value!r}; expected a finite number")
        elif isinstance(value, float) and not abs(value) <= limit:
            _fail(path, f"{where} is {value!r}, beyond {dtype}'s range ({limit:.3g})")
        elif isinstance(value, float) and value and np.asarray(value, cast).item() == 0:
            _fail(path, f"{where} is {value!r}, which is 0 in {dtype} (an eps of 0 divides "
                        "by zero)")

    parts = [(spec.get("config"), f"layer {i} ({str(spec.get('type'))[:40]}) config",
              header["dtype"]) for i, spec in enumerate(header["layers"])
             if isinstance(spec, dict)]
    if isinstance(header.get("optimizer"), dict):
        parts.append((header["optimizer"].get("hyper"), "optimizer config",
                      _state_dtype(header["dtype"])))
    if isinstance(header.get("loss"), dict):
        parts.append((header["loss"].get("config"), "loss config", header["dtype"]))
    for value, where, dtype in parts:
        limit = _model_range(dtype)
        if limit is not None:
            walk(value, where, dtype, limit)


def _check_extra(path, extra: dict) -> None:
    """The parts of ``extra`` gpunn reads itself: class labels must be unique (a label
    held twice makes every row predicted as its second position wear the first's)."""
    classes = extra.get("classes")
    if not isinstance(classes, list):
        return
    seen = set()
    for label in classes:
        key = (type(label).__name__, json.dumps(label, sort_keys=True))
        if key in seen:
            _fail(path, f"extra 'classes' holds {label!r} twice; class labels must be "
                        "unique")
        seen.add(key)


def _loss(path, header):
    """The loss a header names, built by its constructor (which checks its config), or
    None."""
    from .. import losses

    if not isinstance(header.get("loss"), dict):
        return None
    try:
        return losses.get(header["loss"].get("name"), **dict(header["loss"].get("config")
                                                             or {}))
    except (TypeError, ValueError) as exc:
        _fail(path, f"invalid loss ({exc})")


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


def _prep_shape(layers) -> tuple | None:
    """The shape the standardiser's arrays must have: one value per input feature of a
    network of flat inputs; None where the layers do not say."""
    from ..layers.blocks import input_shape_of

    shape = input_shape_of(layers)
    return (shape[0],) if shape is not None and len(shape) == 1 else None


def _prep_arrays(path, archive, info, layers) -> dict:
    from ..preprocessing import Standardizer

    if info is None:
        return {}
    if info != {"kind": Standardizer.kind}:
        _fail(path, f"unknown preprocessing {info!r}")
    arrays = {k: _array(path, archive, f"prep/{k}", _prep_shape(layers))
              for k in ("mean", "scale")}
    if arrays["scale"].dtype.kind not in "fiu" or np.any(arrays["scale"] <= 0):
        _fail(path, "the standardiser's scale must be positive")
    return arrays


def _target_arrays(path, archive, info, layers) -> dict:
    """The regression targets' standardisation: one mean and one positive scale per
    output of the network."""
    from ..preprocessing import Standardizer

    if info is None:
        return {}
    if info != {"kind": Standardizer.kind}:
        _fail(path, f"unknown target scaling {info!r}")
    from ..layers.blocks import input_shape_of

    shape = input_shape_of(layers)
    for layer in layers:
        shape = layer.output_shape(shape) if shape is not None else None
    n_out = shape[-1] if shape else None
    arrays = {k: _array(path, archive, f"target/{k}", (n_out,) if n_out else None)
              for k in ("mean", "scale")}
    if arrays["mean"].ndim != 1 or arrays["scale"].shape != arrays["mean"].shape:
        _fail(path, "the target scaling's mean and scale must be 1-D, one value per output")
    if arrays["scale"].dtype.kind not in "fiu" or np.any(arrays["scale"] <= 0):
        _fail(path, "the target scaling's scale must be positive")
    return arrays


def _optimizer_settings(cls, opt_header):
    """The optimiser a header's settings make (its constructor checks each, as a user's
    call does) and its step counter; a ``ValueError`` or ``TypeError`` for one that no
    load accepts."""
    opt = cls(**opt_header.get("hyper", {}))  # host state, moved by the next fit
    t = opt_header.get("t", 0)
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError(f"step counter {t!r}: expected an integer >= 0")
    return opt, t


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
        opt, t = _optimizer_settings(cls, opt_header)
        opt.load_state_dict({"kind": opt_header["kind"], "hyper": opt_header["hyper"],
                             "t": t, "state": slots})
        held = [tuple(s[opt.state_keys[0]].shape) for s in opt.state if opt.state_keys]
        # No state before the first step: the next fit allocates it for the model.
        if opt.state_keys and held != shapes and (held or t):
            raise ValueError(f"state of shapes {held[:3]}... for parameters of shapes "
                             f"{shapes[:3]}... ({len(held)} entries, {len(shapes)} needed)")
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        _fail(path, f"optimizer state does not fit the model ({exc})")
    return opt


#: The most arrays one callback's state may hold (a guard against crafted headers).
MAX_CALLBACK_ARRAYS = 100_000


def _callback_arrays(path, archive, training) -> set:
    """Read the arrays a callback's state declares (``"arrays": n`` -> ``train/<key>/<i>``)
    into that state, in place; the names read."""
    names = set()
    for key, st in ((training or {}).get("callbacks") or {}).items():
        if "arrays" not in st:
            continue
        n = st["arrays"]
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_CALLBACK_ARRAYS:
            _fail(path, f"the training state of {key!r} declares {n!r} arrays")
        st["arrays"] = [_array(path, archive, f"train/{key}/{i}") for i in range(n)]
        names |= {f"train/{key}/{i}" for i in range(n)}
    return names


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
          and (state.get("rng") is None or isinstance(state.get("rng"), dict))
          # the optimiser's own rate and the callbacks' states (files before them lack both)
          and (state.get("base_lr") is None or (number(state["base_lr"])
                                                and state["base_lr"] > 0))
          and isinstance(state.get("callbacks", {}), dict)
          and all(isinstance(k, str) and isinstance(v, dict)
                  for k, v in state.get("callbacks", {}).items()))
    if not ok:
        _fail(path, "the training state in the header is malformed")
    return state
