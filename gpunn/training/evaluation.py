"""Scoring checked, placed data in inference mode (``evaluate`` and fit's validation),
and the device accumulators the training loop shares with it."""

from __future__ import annotations

import contextlib

import numpy as np

from ..distributed import plan as _plan
from ..errors import DeviceMemoryError
from ..metrics import host_value
from . import batches as _batches


def evaluate_arrays(model, X, T, streaming, loss, metrics, batch_size,
                    dist=_plan.LOCAL, prepared=None, W=None) -> dict:
    """Loss and metrics of checked, placed data, in inference mode (host floats), weighted
    by ``W`` when given; over several ranks each evaluates its share of the rows and the
    sums are added. ``prepared``: what :func:`prepare_metrics` returned for ``T`` and
    ``W`` (computed when None)."""
    backend = model.backend
    xp = backend.xp
    logits = model.takes_logits(loss)
    n = int(X.shape[0]) if W is None else float(namespace_of(W).sum(W))
    total = accumulator(backend)
    sums = [accumulator(backend) for _ in metrics]
    reg = model.regularization()
    if prepared is None:
        # The whole target (R² needs its variance).
        prepared = prepare_metrics(metrics, T, W)
    X, T, W = dist.rows_of(X, T, W)
    with inference_memory(model, batch_size, "evaluating"):
        for xb, tb, wb in _batches.iterate(backend, X, T, batch_size, False, streaming, W):
            out = model.forward_batch(xb, training=False, logits=logits)
            value, _, output = (loss.compute_logits(out, tb, backend, weight=wb) if logits
                                else loss.compute(out, tb, backend, wb))
            weight = xb.shape[0] if wb is None else cast_like(xp, xp.sum(wb), total)
            total = total + cast_like(xp, value, total) * weight
            for i, m in enumerate(metrics):
                sums[i] = sums[i] + cast_like(xp, m.batch(xp, output, tb, wb), total)
    model.forget()
    # One exchange of every sum, counts flattened (and shaped back after).
    host = [np.asarray(host_value(s)) for s in sums]
    flat = dist.sum_floats([float(total)] + [float(v) for h in host for v in h.ravel()])
    total, at, sums = flat[0], 1, []
    for h in host:
        part = np.asarray(flat[at:at + h.size], dtype=np.float64).reshape(h.shape)
        sums.append(float(part) if part.ndim == 0 else part)
        at += h.size
    result = {"loss": total / n + (float(reg) if reg is not None else 0.0)}
    result.update({m.name: m.result(s, n, p) for m, s, p in zip(metrics, sums, prepared)})
    return result


@contextlib.contextmanager
def inference_memory(model, batch_size: int, doing: str):
    """Out of memory while evaluating or predicting: memory released, then a
    :class:`gpunn.DeviceMemoryError` naming the batch size (parameters are untouched)."""
    try:
        yield
    except MemoryError as exc:
        model.forget()
        model.backend.release_memory()
        raise DeviceMemoryError(f"out of memory on {model.device} while {doing} with "
                                f"batch_size={batch_size}: lower batch_size; memory was "
                                "released and the model is unchanged") from exc


def accumulator(backend):
    """A 0-d device zero to sum losses and metrics into; float32 for 16-bit models
    (float16 cannot count past 2048, bfloat16 past 256)."""
    return backend.zeros((), dtype=backend.xp.float32 if backend.low_precision else None)


def prepare_metrics(metrics, T, W=None) -> list:
    """What each metric needs of a dataset's whole target and sample weights (or None)
    (``Metric.prepare``), owned by the phase that scores that dataset; computed in the
    namespace that holds ``T``: the device's, or NumPy's when the dataset streams from
    host memory."""
    xp = namespace_of(T)
    return [m.prepare(xp, T, W) for m in metrics]


def cast_like(xp, value, like):
    """``value`` in the dtype of the accumulator ``like`` (a no-op unless 16-bit)."""
    return value if value.dtype == like.dtype else xp.astype(value, like.dtype)


def namespace_of(a):
    import array_api_compat

    return array_api_compat.array_namespace(a)
