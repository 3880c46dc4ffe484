"""What the ranks of one ``fit`` must hold alike, agreed in one exchange before it starts.

Data-parallel training is only right when every rank runs the same loop on the same
data: the same epochs and steps (or one rank waits for ever in a collective the others
never reach), the same rows (every rank holds the whole dataset and takes its piece of
each global batch, so ranks given different rows or shards train on neither) and the same
optimiser and loss (or the replicas drift apart, silently). So ``fit`` starts with an
agreement: each rank describes, as a few small values, everything that must be equal
(:func:`fit_terms`: the settings of its :class:`gpunn.training.loop.FitConfig`, the model's
layers and parameter shapes, the loss, the optimiser's hyper-parameters, the metrics, the
callbacks, the shapes, dtypes and a strided sample of the data), and :func:`agree`
compares them across ranks in one exchange. If anything differs, or a rank's own checks
refused the call, every rank raises, naming the first item that differs and each rank's
value, before anything has changed.

A value is described by :func:`describe`: plain values as they are, arrays by shape, dtype
and a fingerprint of a strided sample of their rows (cheap: at most
:data:`SAMPLE_BYTES` leave the device).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pickle

import numpy as np

from ..backend.ops import host_array
from ..errors import RanksDisagree

#: Bytes of an array that its fingerprint reads at most: every row of a small dataset,
#: evenly strided rows of a large one (the last row included, at least 16 rows).
SAMPLE_BYTES = 4 * 2**20


#: Each argument of ``fit`` and the term of :func:`fit_terms` that carries it (a test
#: checks that every argument is here or in :data:`PER_RANK_ARGUMENTS`).
AGREED_ARGUMENTS = {
    "X": "X", "y": "y", "loss": "loss", "optimizer": "optimizer", "epochs": "epochs",
    "batch_size": "batch_size", "validation_data": "validation_data",
    "shuffle": "shuffle", "seed": "seed", "metrics": "metrics", "callbacks": "callbacks",
    "on_divergence": "on_divergence", "resume_from": "checkpoint",
    "sample_weight": "sample_weight", "class_weight": "sample_weight",
    "batch_source": "batch source",
    # The held-out rows are the validation set's, agreed with it.
    "validation_split": "validation_data",
}
#: The arguments of ``fit`` that may differ between ranks, and why.
PER_RANK_ARGUMENTS = {
    "verbose": "output only: ranks other than 0 print nothing",
    "device_data": "where a rank keeps the rows (device or host memory) changes no value",
}


# ------------------------------------------------------------------ describing values
def fingerprint(a) -> str:
    """A short hash of array ``a``'s shape, dtype and a strided sample of its rows (the
    same bytes on every rank holding the same array on the same kind of device): at most
    :data:`SAMPLE_BYTES` leave the device."""
    shape = tuple(int(s) for s in a.shape)
    n = shape[0] if shape else 0
    if n:
        row = max(1, math.prod(shape[1:]) * _itemsize(a))
        step = -(-n // max(16, SAMPLE_BYTES // row))
        sample = [host_array(a[::step, ...]), host_array(a[n - 1:, ...])]
    else:
        sample = [host_array(a)]
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((shape, str(a.dtype).rsplit(".", 1)[-1])).encode())
    for part in sample:
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def _itemsize(a) -> int:
    """Bytes per element of ``a`` (any namespace's array; 8 where none can tell)."""
    size = getattr(a, "itemsize", None)
    if size is not None:
        return int(size)
    try:
        return np.dtype(str(a.dtype).rsplit(".", 1)[-1]).itemsize
    except TypeError:
        return 8


def describe(value):
    """``value`` as a small comparable (and printable) Python value.

    Plain values stay; sequences and dicts are described item by item; arrays become
    ``"array (shape) dtype #fingerprint"``; optimisers their class and hyper-parameters;
    losses, callbacks and other objects with a ``config()`` their class and config;
    anything else its class name (functions their qualified name)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (float, np.floating, np.integer, np.bool_)):
        return value.item() if hasattr(value, "item") else value
    if isinstance(value, (list, tuple)):
        return tuple(describe(v) for v in value)
    if isinstance(value, dict):
        return tuple((str(k), describe(v)) for k, v in value.items())
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        shape = tuple(int(s) for s in value.shape)
        return f"array {shape} {value.dtype} #{fingerprint(value)}"
    kind = _qualified(value)
    for method in ("hyper", "config"):
        fn = getattr(value, method, None)
        if callable(fn):
            try:
                return (kind, describe(fn()))
            except TypeError:  # a config() that needs arguments: the class says enough
                break
    return kind


def _qualified(value) -> str:
    cls = value if isinstance(value, type) or callable(value) and hasattr(
        value, "__qualname__") else type(value)
    return f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', cls)}"


def model_terms(model) -> dict:
    """What must match of the model: device kind and dtype, layers (class and config),
    parameter shapes (the values need not: rank 0's are broadcast) and the preprocessor
    (its statistics transform every rank's X).

    The model is described as named items (``device``, ``dtype``, ``layer 2 (Dropout)``)
    so that a disagreement names the setting that differs (``model layer 2 (Dropout)
    p``), not the whole model; the preprocessor comes before the data, which a
    preprocessor set on one rank only would otherwise be blamed on."""
    layers = []
    for i, layer in enumerate(model.layers):
        try:
            config = describe(layer.get_config())
        except TypeError:  # a block holding an unregistered layer: its class says enough
            config = None
        layers.append((f"layer {i} ({type(layer).__name__})", (_qualified(layer), config)))
    prep = getattr(model, "preprocessor", None)
    state = getattr(prep, "state", None)
    return {"model": (("device", model.backend.library), ("dtype", str(model.dtype)),
                      *layers),
            "parameter shapes": tuple(tuple(int(s) for s in p.shape)
                                      for p in model.parameters()),
            "preprocessor": None if prep is None else (
                _qualified(prep), describe(state()[1]) if callable(state) else None)}


def fit_terms(config, model, loss, optimizer, metrics, callbacks, data, seed,
              resume=None) -> dict:
    """Everything the ranks of one ``fit`` must hold alike, as ``{name: small value}``.

    Parameters
    ----------
    config : FitConfig
        Each of its fields is agreed (named by its metadata's ``argument``, else its
        own name) unless its metadata says ``per_rank`` (with why): a field added later
        is agreed without a change here.
    model, loss, optimizer, metrics
        As ``fit`` resolved them.
    callbacks : list of Callback
        Those every rank runs (not the rank-0-only ones); their classes and configs.
    data : gpunn.training.batches.Batches
        The training rows, targets and weights (every rank holds them all).
    seed : int or None
    resume : gpunn.files.format.ModelParts, optional
        The checkpoint every rank read to resume from: its optimiser state is restored on
        each rank (not sent from rank 0), so it must be the same (its epoch is
        ``config.start``).
    """
    terms = {}
    for field in dataclasses.fields(config):
        if "per_rank" in field.metadata:
            continue
        value = getattr(config, field.name)
        if field.name == "val":
            value = None if value is None else (value[0], value[1], value[3])
        terms[field.metadata.get("argument", field.name)] = describe(value)
    terms.update(model_terms(model))
    terms["loss"] = describe(loss)
    terms["optimizer"] = describe(optimizer)
    terms["metrics"] = tuple(getattr(m, "name", _qualified(m)) for m in metrics)
    terms["callbacks"] = describe(list(callbacks))
    terms["batch source"] = _qualified(data)  # the kind of order (batch_source=)
    terms["X"] = describe(data.X)
    terms["y"] = describe(data.T)
    terms["sample_weight"] = describe(data.W)
    terms["seed"] = seed
    terms["checkpoint"] = None if resume is None else describe(
        (resume.optimizer.t, resume.optimizer.state))
    return terms


# ------------------------------------------------------------------ agreeing
def digest(terms: dict | None) -> bytes:
    """16 bytes standing for ``terms`` (None: this rank refused)."""
    return hashlib.blake2b(pickle.dumps(terms, protocol=4), digest_size=16).digest()


def disagreement(every: list, what: str = "fit") -> str | None:
    """The sentence every rank raises, from each rank's ``(terms, refusal)``: the first
    rank that refused (``refusal`` its one-line error), else the first item whose value
    differs (narrowed to the setting inside it that differs), with each rank's value;
    None when all agree."""
    for rank, (_, refusal) in enumerate(every):
        if refusal is not None:
            return f"rank {rank} of {len(every)} refused {what}: {refusal}"
    keys = list(every[0][0])
    for terms, _ in every[1:]:
        keys += [k for k in terms if k not in keys]
    for key in keys:
        values = [terms.get(key, "<missing>") for terms, _ in every]
        if any(v != values[0] for v in values[1:]):
            name, values = _narrow(key, values)
            shown = ", ".join(f"rank {r} has {_short(v)}" for r, v in enumerate(values))
            if what != "fit":  # changed during training (by a callback)
                return (f"ranks disagree on {name} at the start of {what}: {shown}; a "
                        f"callback changed it differently on the ranks, whose models "
                        f"would drift apart")
            return (f"ranks disagree on {name}: {shown}; every rank must call fit with the "
                    f"same settings and the whole of the same data (each rank takes its "
                    f"piece of every global batch itself)")
    return None


def _narrow(name: str, values: list):
    """``(name, values)`` of the first setting that differs inside described values of
    one kind (``("pkg.Adam", (("lr", 0.01), ...))`` -> ``"optimizer lr"``)."""
    first = values[0]
    if not all(isinstance(v, tuple) and len(v) == len(first) for v in values):
        return name, values
    if len(first) == 2 and isinstance(first[0], str) and all(v[0] == first[0]
                                                              for v in values):
        return _narrow(name, [v[1] for v in values])  # one kind: what its config says
    pairs = all(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                for v in values for item in v)
    if pairs and all([k for k, _ in v] == [k for k, _ in first] for v in values):
        for i, (key, _) in enumerate(first):
            inner = [v[i][1] for v in values]
            if any(x != inner[0] for x in inner[1:]):
                return _narrow(f"{name} {key}", inner)
    return name, values


def _short(value, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def agree(world, terms: dict | None, refusal: BaseException | None = None,
          what: str = "fit") -> None:
    """Compare ``terms`` across the ranks of ``world``: one fixed-size exchange of their
    digests (guarded by the world's timeout, so no rank waits for ever on one that never
    comes), and only when they differ a second one of the terms themselves.

    Parameters
    ----------
    world : World
    terms : dict or None
        What this rank holds (:func:`fit_terms`); None with ``refusal``.
    refusal : Exception, optional
        This rank's own checks failed: the other ranks are told, and this rank returns
        for its caller to raise its own error.
    what : str
        What is starting, for the messages (``"fit"``, ``"epoch 3"``).

    Raises
    ------
    RanksDisagree
        On every rank without a refusal of its own, when any rank refused or the ranks'
        terms differ.
    """
    if not world.distributed:
        return
    mine = digest(None if refusal is not None else terms)
    flags = np.frombuffer(mine, dtype=np.uint8).copy()
    flags = np.concatenate([flags, [1 if refusal is not None else 0]]).astype(np.uint8)
    every = world.allgather_bytes(flags, f"start {what}")
    if not every[:, -1].any() and (every == every[0]).all():
        return
    # Every rank has arrived (the digests came from all): the details may travel unguarded.
    line = None if refusal is None else " ".join(str(refusal).split()) or \
        type(refusal).__name__
    message = disagreement(world.control.allgather((terms, line)), what)
    if refusal is not None:
        return
    raise RanksDisagree(message)
