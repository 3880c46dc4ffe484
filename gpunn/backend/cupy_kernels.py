"""Launchers for the CUDA kernels in ``kernels/gpunn_kernels.cu``.

The source is compiled by CuPy (NVRTC) the first time a kernel is needed on a device and
cached per device; importing this module compiles nothing. Every launcher returns
``None`` where it has no kernel (e.g. float16, softmax), and the caller then uses the
generic path. ``GPUNN_CUDA_KERNELS=0`` turns all of them off (for parity checks and as an
escape hatch).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import cupy
import numpy as np

from .kernel_codes import ACTIVATION_CODES

SOURCE_PATH = Path(__file__).with_name("kernels") / "gpunn_kernels.cu"

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
#: The dtypes the kernels are compiled for (the optimiser updates register these).
UPDATE_DTYPES = tuple(d.name for d in _SUFFIX)
_THREADS = 256
_MAX_BLOCKS = 65535
#: A null pointer argument: 8 zero bytes, passed by value (older CuPy has no None).
_NULL = np.int64(0)


def enabled() -> bool:
    """False when ``GPUNN_CUDA_KERNELS=0`` asks for the generic CuPy path."""
    return os.environ.get("GPUNN_CUDA_KERNELS", "1") != "0"


@functools.cache
def _module(device_id: int):
    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=SOURCE_PATH.read_text(), options=("-std=c++14",))


def function(name: str, dtype):
    """The compiled kernel ``name`` for ``dtype`` on the current device, or ``None``."""
    suffix = _SUFFIX.get(np.dtype(dtype))
    if suffix is None or not enabled():
        return None
    return _function(name, suffix, cupy.cuda.Device().id)


@functools.cache
def _function(name: str, suffix: str, device_id: int):
    """Looked up once per (kernel, dtype, device), not at every launch."""
    return _module(device_id).get_function(f"{name}_{suffix}")


def _blocks(n: int) -> tuple[int]:
    return (max(1, min(_MAX_BLOCKS, (n + _THREADS - 1) // _THREADS)),)


def _scalar(dtype):
    return np.dtype(dtype).type


def can_bias_act(activation: str, dtype) -> bool:
    """True when :func:`bias_act_forward` has a kernel for this activation and dtype."""
    return activation in ACTIVATION_CODES and function("bias_act_forward", dtype) is not None


def bias_act_forward(z, b, activation: str, param: float):
    """In place ``z += b``; returns ``y = f(z)`` (``z`` itself for identity).

    Call only where :func:`can_bias_act` is true; ``z`` and ``b`` must be C-contiguous.
    """
    code = ACTIVATION_CODES[activation]
    kernel = function("bias_act_forward", z.dtype)
    y = z if activation == "identity" else cupy.empty_like(z)
    t = _scalar(z.dtype)
    kernel(_blocks(z.size), (_THREADS,), (z, b, y, np.int64(z.size), np.int64(z.shape[-1]),
                                          np.int32(code), t(param)))
    return y


def act_backward(z, y, g, activation: str, param: float):
    """``g * f'(z)`` in one pass, or None."""
    code = ACTIVATION_CODES.get(activation)
    kernel = function("act_backward", z.dtype) if code is not None else None
    if kernel is None or g.dtype != z.dtype or not all(
            a.flags.c_contiguous for a in (z, y, g)):
        return None
    out = cupy.empty_like(g)
    kernel(_blocks(z.size), (_THREADS,), (z, y, g, out, np.int64(z.size), np.int32(code),
                                          _scalar(z.dtype)(param)))
    return out


@functools.cache
def _counter(device_id: int):
    """The ticket counter of the last-block reductions on one device (see the .cu): zero
    between launches, which all run on the device's current stream one after another."""
    return cupy.zeros((1,), dtype=np.uint32)


_PARTIALS: dict = {}


def _partials(size: int, dtype):
    """A scratch buffer of at least ``size`` elements for per-block partial sums, kept per
    (device, dtype) and grown when a launch needs more."""
    key = (cupy.cuda.Device().id, np.dtype(dtype))
    buf = _PARTIALS.get(key)
    if buf is None or buf.size < size:
        buf = _PARTIALS[key] = cupy.empty((max(size, 1024),), dtype=dtype)
    return buf


def _tiles(rows: int, cols: int) -> tuple[int, int]:
    """Grid of the (32, 8)-thread kernels: 32-column tiles by row chunks of at least 64
    rows, about 1024 blocks at most in all."""
    tiles = (cols + 31) // 32
    chunks = max(1, min((rows + 63) // 64, 1024 // max(1, tiles)))
    return min(tiles, _MAX_BLOCKS), chunks


def act_backward_bias(z, y, g, activation: str, param: float, db):
    """``g * f'(z)`` and its column sums in one launch, or None where there is no kernel.

    Parameters
    ----------
    z, y, g : (rows, cols)
        Pre-activation, activation and ``dL/dy``.
    activation : str
        ``"identity"`` for no derivative: then ``g`` itself is returned and only the sums
        are computed.
    db : (cols,)
        Written with ``sum over rows of g * f'(z)``, the bias gradient.

    Returns
    -------
    (rows, cols) ``dL/dz``, or None.
    """
    if activation == "identity":
        # Nothing to differentiate: a caller may keep neither z nor y (the kernel then
        # reads g in their place and only sums it).
        z, y = (g if z is None else z), (g if y is None else y)
    code = ACTIVATION_CODES.get(activation)
    kernel = function("act_backward_bias", z.dtype) if code is not None else None
    if kernel is None or not (g.dtype == z.dtype == y.dtype == db.dtype) or g.ndim != 2 or \
            not all(a.flags.c_contiguous for a in (z, y, g, db)):
        return None
    rows, cols = g.shape
    out = g if activation == "identity" else cupy.empty_like(g)
    tiles, chunks = _tiles(rows, cols)
    kernel((tiles, chunks), (32, 8),
           (z, y, g, out, db, _partials(chunks * cols, z.dtype), _counter(cupy.cuda.Device().id),
            np.int64(rows), np.int64(cols), np.int32(code), _scalar(z.dtype)(param)),
           shared_mem=32 * 8 * z.dtype.itemsize + 8)
    return out


def _or_null(a):
    return _NULL if a is None else a


def softmax_xent(z, target, bias=None, bias_grad=None, loss_out=None, metric_out=None):
    """Softmax cross-entropy from logits, with what a training step needs of it.

    Parameters
    ----------
    z : (N, C)
        Logits; with ``bias``, ``x @ W`` of the last layer, and the bias is added in place.
    target : (N,) integer labels or (N, C) rows
    bias : (C,), optional
    bias_grad : (C,), optional
        Written with the bias gradient (column sums of the returned gradient).
    loss_out : 0-d array, optional
        Where the loss goes (a slot of the epoch's buffer); a new 0-d array otherwise.
    metric_out : 0-d int64 array, optional
        Written with the number of rows whose first largest probability is the label
        (labels only).

    Returns
    -------
    (value, prob, grad) or None
        ``value`` is ``loss_out``: the mean over rows of the cross-entropy.
    """
    rows, cols = z.shape
    dense = target.ndim == 2
    kernel = function("softmax_xent_dense" if dense else "softmax_xent_labels", z.dtype)
    extras = [a for a in (bias, bias_grad, loss_out) if a is not None]
    if kernel is None or not z.flags.c_contiguous or any(
            a.dtype != z.dtype or not a.flags.c_contiguous for a in extras) or (
            metric_out is not None and (dense or metric_out.dtype != np.int64)):
        return None
    target = cupy.ascontiguousarray(target, dtype=z.dtype if dense else cupy.int64)
    prob, grad = cupy.empty_like(z), cupy.empty_like(z)
    value = loss_out if loss_out is not None else cupy.empty((), dtype=z.dtype)
    threads = 32
    while threads < min(cols, _THREADS):
        threads *= 2
    # A block per row up to 256, fewer for wide rows: the partial sums hold a row of
    # column sums per block (at most ~4M values, 16 MiB in float32).
    blocks = max(1, min(rows, 256, (1 << 22) // (cols + 2)))
    t = _scalar(z.dtype)
    common = (prob, grad, value, _or_null(bias_grad))
    tail = (_partials(blocks * (cols + 2), z.dtype), _counter(cupy.cuda.Device().id),
            np.int64(rows), np.int64(cols), t(1.0 / rows))
    args = (z, _or_null(bias), target) + common + (
        () if dense else (_or_null(metric_out),)) + tail
    kernel((blocks,), (threads,), args, shared_mem=threads * (z.dtype.itemsize + 8) + 8)
    return value, prob, grad


def sigmoid_xent(z, target, bias=None, bias_grad=None, loss_out=None, metric_out=None):
    """Sigmoid binary cross-entropy from logits, with a step's extras (as
    :func:`softmax_xent`): mean over all elements; ``metric_out`` (0-d int64) counts the
    elements with ``(p >= 1/2) == (t >= 1/2)``. :func:`squared_error` is the same call for
    the mean squared error: its output is ``z`` itself, and ``metric_out`` (0-d, z's
    dtype) gets the sum over rows of the mean absolute error over outputs (the MAE
    metric's batch sum).

    Parameters
    ----------
    z, target : (N, K)
    bias, bias_grad : (K,), optional
    loss_out, metric_out : 0-d arrays, optional

    Returns
    -------
    (value, prob, grad) or None
    """
    return _elementwise_loss("sigmoid_xent", z, target, bias, bias_grad, loss_out,
                             metric_out, np.int64)


def squared_error(z, target, bias=None, bias_grad=None, loss_out=None, metric_out=None):
    """See :func:`sigmoid_xent`."""
    return _elementwise_loss("squared_error", z, target, bias, bias_grad, loss_out,
                             metric_out, z.dtype)


def _elementwise_loss(name, z, target, bias, bias_grad, loss_out, metric_out, metric_dtype):
    kernel = function(name, z.dtype)
    extras = [a for a in (target, bias, bias_grad, loss_out) if a is not None]
    if kernel is None or z.ndim != 2 or target.shape != z.shape or not z.flags.c_contiguous \
            or any(a.dtype != z.dtype or not a.flags.c_contiguous for a in extras) or (
            metric_out is not None and metric_out.dtype != metric_dtype):
        return None
    rows, cols = z.shape
    prob = z if name == "squared_error" else cupy.empty_like(z)
    grad = cupy.empty_like(z)
    value = loss_out if loss_out is not None else cupy.empty((), dtype=z.dtype)
    tiles, chunks = _tiles(rows, cols)
    t = _scalar(z.dtype)
    partials = _partials(chunks * cols + 2 * tiles * chunks, z.dtype)
    kernel((tiles, chunks), (32, 8),
           (z, _or_null(bias), target, prob, grad, value, _or_null(bias_grad),
            _or_null(metric_out), partials, _counter(cupy.cuda.Device().id), np.int64(rows),
            np.int64(cols), t(1.0 / z.size)), shared_mem=32 * 8 * z.dtype.itemsize + 8)
    return value, prob, grad


def gather_batch(X, T, idx, out=None):
    """``(X[idx], T[idx])`` in one launch, or None where there is no kernel.

    Parameters
    ----------
    X : (N, features)
    T : (N,) int64 labels or (N, outputs) of X's dtype
    idx : (k,) int64
        Row indices, all in ``[0, N)`` (a slice of a permutation).
    out : (xbuf, tbuf), optional
        The previous batch's buffers, written again when they have ``k`` rows.

    Returns
    -------
    (xb, tb) or None
    """
    labels = T.ndim == 1 and T.dtype == np.int64
    kernel = function("gather_labels" if labels else "gather_rows", X.dtype)
    if kernel is None or X.ndim != 2 or idx.ndim != 1 or idx.dtype != np.int64 or not (
            labels or (T.ndim == 2 and T.dtype == X.dtype)) or not all(
            a.flags.c_contiguous for a in (X, T, idx)):
        return None
    k = int(idx.shape[0])
    shapes = [(k,) + tuple(X.shape[1:]), (k,) + tuple(T.shape[1:])]
    if out is None or any(tuple(b.shape) != s or b.dtype != a.dtype
                          for b, s, a in zip(out, shapes, (X, T))):
        out = (cupy.empty(shapes[0], X.dtype), cupy.empty(shapes[1], T.dtype))
    xcols, tcols = int(X.shape[1]), 1 if labels else int(T.shape[1])
    args = (X, T, idx, out[0], out[1], np.int64(k), np.int64(xcols))
    kernel(_blocks(k * (xcols + tcols)), (_THREADS,), args if labels else args + (
        np.int64(tcols),))
    return out


def _flat_ok(p, g, *state) -> bool:
    """Whether the fused update kernels can run: contiguous arrays of one dtype."""
    return (enabled() and _SUFFIX.get(np.dtype(p.dtype)) is not None and all(
        a.flags.c_contiguous and a.dtype == p.dtype for a in (p, g, *state) if a is not None))


def _launch(name, p, args) -> bool:
    kernel = function(name, p.dtype)
    if kernel is None:
        return False
    kernel(_blocks(p.size), (_THREADS,), args)
    return True


# Optimiser updates (CupyBackend registers them for their rules' kinds): True when the
# fused kernel ran. Every constant comes from the step's named tuple (computed in double,
# gpunn.backend.hyper) and is rounded once to the array's dtype, as the NumPy path does,
# so both devices use the same values.
def sgd(p, g, velocity, hp) -> bool:
    if not _flat_ok(p, g, velocity):
        return False
    t = _scalar(p.dtype)
    vel = velocity if velocity is not None else p  # not touched when momentum == 0
    return _launch("sgd", p, (p, g, vel, np.int64(p.size), t(hp.lr), t(hp.momentum),
                              t(hp.weight_decay), np.int32(bool(hp.nesterov))))


def adam(p, g, m, v, hp) -> bool:
    if not _flat_ok(p, g, m, v):
        return False
    t = _scalar(p.dtype)
    return _launch("adam", p, (p, g, m, v, np.int64(p.size), t(hp.one_minus_b1),
                               t(hp.one_minus_b2), t(hp.eps_hat), t(hp.step_size),
                               t(hp.weight_decay), t(hp.decay), np.int32(bool(hp.decoupled))))


def rmsprop(p, g, square_avg, velocity, hp) -> bool:
    if not _flat_ok(p, g, square_avg, velocity):
        return False
    t = _scalar(p.dtype)
    vel = velocity if velocity is not None else p  # not touched when momentum == 0
    return _launch("rmsprop", p, (p, g, square_avg, vel, np.int64(p.size), t(hp.lr),
                                  t(hp.alpha), t(hp.one_minus_alpha), t(hp.eps),
                                  t(hp.momentum), t(hp.weight_decay)))


def adagrad(p, g, sum_sq, hp) -> bool:
    if not _flat_ok(p, g, sum_sq):
        return False
    t = _scalar(p.dtype)
    return _launch("adagrad", p, (p, g, sum_sq, np.int64(p.size), t(hp.lr), t(hp.eps),
                                  t(hp.weight_decay)))


# Convolution patches, pooling, batch and layer normalisation. Images are taken as planes of
# height h and width w; a 1-D signal is a plane of height 1 (kernel, stride 1, padding 0).
def _planar(spatial, kernel, stride, padding):
    """``(h, w), (kh, kw), (sh, sw), (ph, pw)`` for one or two spatial axes, or None."""
    if len(spatial) not in (1, 2) or not len(spatial) == len(kernel) == len(stride) == \
            len(padding):
        return None
    lead = 2 - len(spatial)
    return tuple(tuple(int(v) for v in (fill,) * lead + tuple(values))
                 for values, fill in ((spatial, 1), (kernel, 1), (stride, 1), (padding, 0)))


def _window_sizes(hw, k, s, p) -> tuple[int, int]:
    return tuple((d + 2 * q - kk) // ss + 1 for d, kk, ss, q in zip(hw, k, s, p))


def _i32(*values):
    return tuple(np.int32(v) for v in values)


def im2col(x, kernel, stride, padding):
    """Patches of ``x (N, C, *spatial)`` (one or two spatial axes) as ``(N, C * K, L)``
    columns, the layout of ``Backend.im2col``, in one launch; None where there is no
    kernel (dtype, more spatial axes)."""
    plane = _planar(tuple(x.shape[2:]), kernel, stride, padding)
    fn = function("im2col", x.dtype) if plane is not None and x.ndim >= 3 else None
    if fn is None:
        return None
    (h, w), (kh, kw), (sh, sw), (ph, pw) = plane
    oh, ow = _window_sizes((h, w), (kh, kw), (sh, sw), (ph, pw))
    n, c = int(x.shape[0]), int(x.shape[1])
    x = cupy.ascontiguousarray(x)
    cols = cupy.empty((n, c * kh * kw, oh * ow), dtype=x.dtype)
    fn(_blocks(cols.size), (_THREADS,), (x, cols, np.int64(n), np.int64(c), np.int64(h),
                                         np.int64(w)) + _i32(kh, kw, sh, sw, ph, pw)
       + (np.int64(oh), np.int64(ow)))
    return cols


def col2im(cols, shape, kernel, stride, padding):
    """The adjoint of :func:`im2col`: ``cols (N, C * K, L)`` summed back into ``(N, C,
    *spatial)`` = ``shape``, one thread per input value gathering the entries that read it
    (deterministic, no atomics); None where there is no kernel."""
    plane = _planar(tuple(shape[2:]), kernel, stride, padding)
    fn = function("col2im", cols.dtype) if plane is not None and cols.ndim == 3 else None
    if fn is None:
        return None
    (h, w), (kh, kw), (sh, sw), (ph, pw) = plane
    oh, ow = _window_sizes((h, w), (kh, kw), (sh, sw), (ph, pw))
    n, c = int(shape[0]), int(shape[1])
    if tuple(cols.shape) != (n, c * kh * kw, oh * ow):
        return None
    cols = cupy.ascontiguousarray(cols)
    gx = cupy.empty(tuple(int(d) for d in shape), dtype=cols.dtype)
    fn(_blocks(gx.size), (_THREADS,), (cols, gx, np.int64(n), np.int64(c), np.int64(h),
                                       np.int64(w)) + _i32(kh, kw, sh, sw, ph, pw)
       + (np.int64(oh), np.int64(ow)))
    return gx


_POOL_KINDS = {"max": 0, "avg": 1}


def pool_forward(x, kind, kernel, stride):
    """Max (with each window's arg-max) or mean pooling of ``x (N, C, *spatial)`` in one
    launch: ``(y (N, C, *out), arg (N * C, L) int64 or None)``, or None where there is
    no kernel."""
    plane = _planar(tuple(x.shape[2:]), kernel, stride, (0,) * len(kernel))
    fn = function("pool_forward", x.dtype) if plane is not None and kind in _POOL_KINDS \
        else None
    if fn is None:
        return None
    (h, w), (kh, kw), (sh, sw), _ = plane
    oh, ow = _window_sizes((h, w), (kh, kw), (sh, sw), (0, 0))
    n, c = int(x.shape[0]), int(x.shape[1])
    out = tuple((int(d) - k) // s + 1 for d, k, s in zip(x.shape[2:], kernel, stride))
    x = cupy.ascontiguousarray(x)
    y = cupy.empty((n, c) + out, dtype=x.dtype)
    arg = cupy.empty((n * c, oh * ow), dtype=np.int64) if kind == "max" else None
    fn(_blocks(y.size), (_THREADS,), (x, y, _or_null(arg), np.int64(n * c), np.int64(h),
                                      np.int64(w)) + _i32(kh, kw, sh, sw)
       + (np.int64(oh), np.int64(ow), np.int32(_POOL_KINDS[kind])))
    return y, arg


def pool_backward(grad, arg, kind, shape, kernel, stride):
    """The input gradient of :func:`pool_forward`, ``(N, C, *spatial)`` = ``shape``, one
    thread per input value gathering the windows it feeds (deterministic); None where
    there is no kernel."""
    plane = _planar(tuple(shape[2:]), kernel, stride, (0,) * len(kernel))
    fn = function("pool_backward", grad.dtype) if plane is not None and \
        kind in _POOL_KINDS else None
    if fn is None or (kind == "max" and (arg is None or arg.dtype != np.int64)):
        return None
    (h, w), (kh, kw), (sh, sw), _ = plane
    oh, ow = _window_sizes((h, w), (kh, kw), (sh, sw), (0, 0))
    planes = int(shape[0]) * int(shape[1])
    if grad.size != planes * oh * ow or (arg is not None and arg.size != grad.size):
        return None
    grad = cupy.ascontiguousarray(grad)
    arg = cupy.ascontiguousarray(arg) if kind == "max" else None
    gx = cupy.empty(tuple(int(d) for d in shape), dtype=grad.dtype)
    fn(_blocks(gx.size), (_THREADS,), (grad, _or_null(arg), gx, np.int64(planes),
                                       np.int64(h), np.int64(w)) + _i32(kh, kw, sh, sw)
       + (np.int64(oh), np.int64(ow), np.int32(_POOL_KINDS[kind])))
    return gx


def _channel_grid(n: int, c: int, s: int) -> tuple[int, int]:
    """Grid of the per-channel reductions: (chunks, channels), chunks of at least 4096
    values of a channel, about 2048 blocks in all at most (at least one per channel)."""
    chunks = max(1, min(-(-(n * s) // 4096), 2048 // max(c, 1)))
    return chunks, c


def _bn_layout(x):
    """``(n, c, s)`` of ``x (N, C, *spatial)``: s values per sample and channel."""
    s = 1
    for d in x.shape[2:]:
        s *= int(d)
    return int(x.shape[0]), int(x.shape[1]), s


def batchnorm_forward(x, gamma, beta, eps, mean=None, var=None):
    """Batch normalisation: ``(y, xhat, inv, mean, var)`` as
    ``Backend.batchnorm_forward``, or None where there is no kernel (dtypes that differ,
    more than two spatial axes).

    Training (``mean`` None): a per-channel reduction kernel (the batch's mean and biased
    variance, chunks of each channel merged in order) and an elementwise kernel;
    inference: the elementwise kernel alone."""
    stats_fn = function("batchnorm_stats", x.dtype) if 2 <= x.ndim <= 4 else None
    apply_fn = function("batchnorm_apply", x.dtype)
    given = [a for a in (mean, var) if a is not None]
    if stats_fn is None or apply_fn is None or (mean is None) != (var is None) or any(
            a.dtype != x.dtype for a in [gamma, beta] + given) or x.shape[1] > _MAX_BLOCKS:
        return None
    n, c, s = _bn_layout(x)
    t = _scalar(x.dtype)
    x = cupy.ascontiguousarray(x)
    gamma, beta = cupy.ascontiguousarray(gamma), cupy.ascontiguousarray(beta)
    stats = cupy.empty((3, c), dtype=x.dtype)  # mean, var, inv
    if given:
        mean, var = (cupy.ascontiguousarray(a) for a in given)
    else:
        mean, var = stats[0], stats[1]
        grid = _channel_grid(n, c, s)
        stats_fn(grid, (_THREADS,),
                 (x, mean, var, stats[2], _partials(3 * grid[0] * c, x.dtype),
                  _counter(cupy.cuda.Device().id), np.int64(n), np.int64(c), np.int64(s),
                  t(eps)), shared_mem=_THREADS * x.dtype.itemsize + 8)
    y, xhat = cupy.empty_like(x), cupy.empty_like(x)
    apply_fn(_blocks(x.size), (_THREADS,), (x, gamma, beta, mean, var, y, xhat, stats[2],
                                            np.int64(n), np.int64(c), np.int64(s), t(eps)))
    return y, xhat, stats[2], mean, var


def batchnorm_backward(grad, xhat, gamma, inv, batch_stats):
    """``(dx, dgamma, dbeta)`` of :func:`batchnorm_forward` as
    ``Backend.batchnorm_backward``: a per-channel reduction kernel (the sums) and an
    elementwise kernel (the input gradient); None where there is no kernel."""
    sums_fn = function("batchnorm_grad_sums", grad.dtype) if 2 <= grad.ndim <= 4 else None
    dx_fn = function("batchnorm_backward", grad.dtype)
    if sums_fn is None or dx_fn is None or tuple(xhat.shape) != tuple(grad.shape) or any(
            a.dtype != grad.dtype for a in (xhat, gamma, inv)) or grad.shape[1] > _MAX_BLOCKS:
        return None
    n, c, s = _bn_layout(grad)
    grad, xhat = cupy.ascontiguousarray(grad), cupy.ascontiguousarray(xhat)
    gamma, inv = cupy.ascontiguousarray(gamma), cupy.ascontiguousarray(inv)
    sums = cupy.empty((2, c), dtype=grad.dtype)  # dgamma, dbeta
    grid = _channel_grid(n, c, s)
    sums_fn(grid, (_THREADS,),
            (grad, xhat, sums[0], sums[1], _partials(2 * grid[0] * c, grad.dtype),
             _counter(cupy.cuda.Device().id), np.int64(n), np.int64(c), np.int64(s)),
            shared_mem=_THREADS * grad.dtype.itemsize + 8)
    dx = cupy.empty_like(grad)
    dx_fn(_blocks(dx.size), (_THREADS,), (grad, xhat, gamma, inv, sums[0], sums[1], dx,
                                          np.int64(n), np.int64(c), np.int64(s),
                                          np.int32(bool(batch_stats))))
    return dx, sums[0], sums[1]


def _row_blocks(rows: int) -> tuple[int]:
    """One block per row up to a few thousand (the kernels loop over the rest)."""
    return (max(1, min(rows, 4096)),)


def layernorm_forward(x, gamma, beta, eps):
    """Layer normalisation over the last ``gamma.ndim`` axes in one launch: ``(y, xhat,
    inv)`` as ``Backend.layernorm_forward``, or None where there is no kernel."""
    fn = function("layernorm_forward", x.dtype)
    k = gamma.ndim
    if fn is None or x.ndim <= k or tuple(x.shape[x.ndim - k:]) != tuple(gamma.shape) or \
            tuple(beta.shape) != tuple(gamma.shape) or \
            any(a.dtype != x.dtype for a in (gamma, beta)):
        return None
    cols = int(gamma.size)
    rows = int(x.size) // max(cols, 1)
    x = cupy.ascontiguousarray(x)
    gamma, beta = cupy.ascontiguousarray(gamma), cupy.ascontiguousarray(beta)
    y, xhat = cupy.empty_like(x), cupy.empty_like(x)
    inv = cupy.empty(tuple(x.shape[:x.ndim - k]) + (1,) * k, dtype=x.dtype)
    fn(_row_blocks(rows), (_THREADS,), (x, gamma, beta, y, xhat, inv, np.int64(rows),
                                        np.int64(cols), _scalar(x.dtype)(eps)),
       shared_mem=_THREADS * x.dtype.itemsize)
    return y, xhat, inv


def layernorm_backward(grad, xhat, gamma, inv):
    """``(dx, dgamma, dbeta)`` of :func:`layernorm_forward`: the input gradient in one
    launch, gamma's and beta's (sums over the rows) by CuPy; None where there is no
    kernel."""
    fn = function("layernorm_backward", grad.dtype)
    k = gamma.ndim
    if fn is None or grad.ndim <= k or tuple(xhat.shape) != tuple(grad.shape) or \
            tuple(grad.shape[grad.ndim - k:]) != tuple(gamma.shape) or \
            any(a.dtype != grad.dtype for a in (xhat, gamma, inv)):
        return None
    cols = int(gamma.size)
    rows = int(grad.size) // max(cols, 1)
    if int(inv.size) != rows:
        return None
    grad, xhat = cupy.ascontiguousarray(grad), cupy.ascontiguousarray(xhat)
    gamma, inv = cupy.ascontiguousarray(gamma), cupy.ascontiguousarray(inv)
    dx = cupy.empty_like(grad)
    fn(_row_blocks(rows), (_THREADS,), (grad, xhat, gamma, inv, dx, np.int64(rows),
                                        np.int64(cols)),
       shared_mem=_THREADS * grad.dtype.itemsize)
    g2, h2 = grad.reshape(rows, cols), xhat.reshape(rows, cols)
    dgamma = cupy.sum(g2 * h2, axis=0).reshape(gamma.shape)
    dbeta = cupy.sum(g2, axis=0).reshape(gamma.shape)
    return dx, dgamma, dbeta
