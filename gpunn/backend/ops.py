"""Array functions any Array API namespace runs: host copies, device contexts, one-hot
encoding, the fused softmax cross-entropy and finiteness checks. The backends and the
losses build on them."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

#: 16-bit dtypes: trained with float32 master weights and float32 loss sums.
HALF_DTYPES = ("float16", "bfloat16")
#: DLPack device types (``DLDeviceType``): host memory, CUDA device memory and CUDA pinned
#: host memory (which NumPy reads in place).
DLPACK_CPU, DLPACK_CUDA, DLPACK_CUDA_HOST = 1, 2, 3


def same_device(a, b) -> bool:
    """True when arrays of backend ``b`` can be used on backend ``a`` without a copy."""
    return type(a) is type(b) and a.xp is b.xp and a.name == b.name


def host_array(a: Any) -> np.ndarray:
    """Copy or view any array (NumPy, CuPy, Array API, nested lists) as a NumPy array.

    Parameters
    ----------
    a : array_like
        Any array object or nested sequence.

    Returns
    -------
    numpy.ndarray
        Host array with the same shape and, where NumPy has it, the same dtype.
    """
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "__dlpack__"):
        refuse_autograd(a)
        if dlpack_device(a)[0] == DLPACK_CUDA:
            return _cuda_to_host(a)
        try:
            return np.from_dlpack(a)  # host memory: a view, not a copy
        except (BufferError, RuntimeError, TypeError, ValueError):
            pass
    return np.asarray(a)


def _cuda_to_host(a) -> np.ndarray:
    # NumPy cannot read device memory; CuPy can take it over without a copy and bring it
    # back. Without CuPy, the producer's own conversion says what to do.
    try:
        import cupy
    except ImportError:
        return np.asarray(a)
    return cupy.from_dlpack(a).get()


def dlpack_device(a) -> tuple[int, int]:
    """``(DLPack device type, device index)`` where ``a``'s memory lives, ``(0, 0)`` for an
    object that does not say (``DLPACK_CPU``: host, ``DLPACK_CUDA``: GPU number index)."""
    try:
        kind, index = a.__dlpack_device__()
        return int(kind), int(index)
    except Exception:  # any object: one that cannot say is not a DLPack array
        return 0, 0


def refuse_autograd(a) -> None:
    """Raise a ``TypeError`` for a tensor attached to an autograd graph (PyTorch's
    ``requires_grad``): gpunn would cut the graph silently, so the caller detaches."""
    if getattr(a, "requires_grad", False) is True:
        raise TypeError("a tensor that requires grad: gpunn cannot pass gradients back to "
                        "its autograd graph; pass x.detach() (or compute it under "
                        "torch.no_grad())")


def from_dlpack(xp, a, device=None):
    """``a``, any DLPack array (PyTorch, JAX, CuPy, NumPy, ...), as an array of ``xp``
    sharing its memory, when that memory is where ``xp`` computes (on ``device`` when
    given).

    Parameters
    ----------
    xp : namespace
    a : object
        Of any shape; not an ``xp`` array already.
    device : object, optional
        ``xp``'s device the result must be on.

    Returns
    -------
    array or None
        None when ``a`` is no DLPack array or lives elsewhere: the caller copies it.

    Raises
    ------
    TypeError
        ``a`` requires grad (see :func:`refuse_autograd`).
    """
    if isinstance(a, np.ndarray) or not hasattr(a, "__dlpack__"):
        return None
    refuse_autograd(a)
    try:
        out = xp.from_dlpack(a)
    except Exception:
        # Libraries raise BufferError, RuntimeError, TypeError or ValueError for memory
        # they cannot take over (another device, an unsupported dtype): copy instead.
        return None
    if device is not None:
        import array_api_compat

        if array_api_compat.device(out) != device:
            return None
    return out


def plain_ndarray(a):
    """NumPy subclasses with other meanings made plain: ``np.matrix`` (where ``*`` is a
    matrix product) becomes an ndarray; a masked array with masked values is refused, one
    without becomes its data. Anything else is returned as it is."""
    if isinstance(a, np.ma.MaskedArray):
        masked = int(np.ma.getmaskarray(a).sum())
        if masked:
            raise ValueError(f"a masked array with {masked} masked value(s): fill them "
                             "(a.filled(value)) or drop those rows first; training would "
                             "otherwise use the hidden values")
        return np.asarray(a.data)
    if isinstance(a, np.matrix):
        return np.asarray(a)
    return a


def array_context(a):
    """A context making ``a``'s device current where the library has such a notion (a CuPy
    array's device is a context manager), else a no-op: CuPy works on the current device,
    so code handed an array of GPU N runs inside this."""
    device = getattr(a, "device", None)
    if hasattr(device, "__enter__") and hasattr(device, "__exit__"):
        return device
    return contextlib.nullcontext()


def softmax_cross_entropy(xp, z, target, share=None):
    """Softmax and cross-entropy from logits, generic (standard-only).

    Parameters
    ----------
    xp : namespace
    z : (N, C) logits
    target : (N,) integer labels, or (N, C) rows that each sum to 1 (one-hot or
        distributions)
    share : (N,), optional
        Each row's weight in the value (sample weights over their sum); default ``1/N``.

    Returns
    -------
    value : 0-d array
        Mean (or ``share``-weighted sum) over rows of ``-sum(target * log softmax(z))``.
    prob : (N, C)
        ``softmax(z)``.
    grad : (N, C)
        ``dvalue/dz = (prob - target) / N`` (times ``N share`` per row).
    """
    if target.ndim == 1:
        target = one_hot(xp, target, z.shape[-1], z.dtype)
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(shifted)
    total = xp.sum(e, axis=-1, keepdims=True)
    prob = e / total  # reusing the exponentials
    if share is None:
        inv_n = 1.0 / z.shape[0]
        value = -xp.sum(target * (shifted - xp.log(total))) * inv_n
        return value, prob, (prob - target) * inv_n
    value = -xp.sum(share * xp.sum(target * (shifted - xp.log(total)), axis=1))
    return value, prob, (prob - target) * xp.reshape(share, (-1, 1))


def one_hot(xp, labels, n_classes: int, dtype):
    """One-hot rows ``(N, n_classes)`` from integer labels ``(N,)``, by comparison (the
    standard has no scatter)."""
    import array_api_compat

    if xp.isdtype(labels.dtype, "real floating"):
        labels = xp.astype(labels, xp.int64)
    classes = xp.arange(n_classes, dtype=labels.dtype, device=array_api_compat.device(labels))
    return xp.astype(xp.reshape(labels, (-1, 1)) == xp.reshape(classes, (1, -1)), dtype)


#: Largest and smallest normal magnitudes of bfloat16 (NumPy has no finfo for it).
_BFLOAT16 = (3.3895313892515355e38, 1.1754943508222875e-38)


def dtype_range(dtype: str) -> tuple[float, float]:
    """``(largest finite, smallest normal)`` magnitude of the floating dtype named
    ``dtype`` (``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"``).

    Raises
    ------
    ValueError
        Not a floating dtype NumPy knows.
    """
    if dtype == "bfloat16":
        return _BFLOAT16
    try:
        info = np.finfo(np.dtype(dtype))
    except TypeError as exc:
        raise ValueError(f"{dtype!r} is not a floating dtype ({exc})") from None
    return float(info.max), float(info.tiny)


def beyond_range(a, dtype: str) -> str | None:
    """What is wrong with casting the host array ``a`` to ``dtype``, or None when every
    value stays finite: "holds values up to 1e+300, beyond float32's range (3.4e+38)", or
    "contains NaN or Inf" when ``a`` itself does. A cast overflows to Inf silently, so
    this looks before the cast, where a finite value is told apart from a NaN or Inf."""
    a = np.asarray(a)
    if a.size == 0 or a.dtype.kind not in "fiu":
        return None
    # The extremes, not max(abs(a)): no temporary copy of a model's largest array (and no
    # overflow of abs on the most negative integer).
    high, low = float(np.max(a)), float(np.min(a))
    if not (np.isfinite(high) and np.isfinite(low)):
        return "contains NaN or Inf"
    biggest, limit = max(abs(high), abs(low)), dtype_range(dtype)[0]
    if biggest > limit:
        return f"holds values up to {biggest:.3g}, beyond {dtype}'s range ({limit:.3g})"
    return None


def require_finite(xp, a, what: str, given=None) -> None:
    """Raise a ``ValueError`` naming ``what`` unless ``a`` is finite (a host read: for
    checks before training or inference).

    Parameters
    ----------
    a : array
        The data as it will be computed with (cast to the model's dtype).
    given : array_like, optional
        The data as the caller gave it, before the cast: a finite value that the cast
        turned into Inf is then reported as out of the dtype's range, not as "NaN or Inf".
    """
    if all_finite(xp, a):
        return
    if given is not None:
        try:
            host = np.asarray(host_array(given))
        except (TypeError, ValueError):
            host = None
        if host is not None and host.dtype.kind in "fiu" and bool(np.all(np.isfinite(host))):
            dtype = str(getattr(a.dtype, "name", a.dtype)).rsplit(".", 1)[-1]
            try:
                problem = beyond_range(host, dtype)
            except ValueError:  # a dtype NumPy does not know: no range to quote
                problem = None
            if problem:
                raise ValueError(f"{what}: {problem}; rescale the data or use a wider "
                                 "dtype")
    raise ValueError(f"{what}: contains NaN or Inf")


def all_finite(xp, a) -> bool:
    """True when ``a`` has no NaN or Inf (a host read: for checks before training)."""
    # A finite sum proves every element finite; an infinite one may just be overflow of
    # large finite values, so only then pay for the element-wise test.
    if getattr(a.dtype, "name", None) in HALF_DTYPES:  # a float16 sum overflows at 65504
        return bool(xp.all(xp.isfinite(a)))
    return bool(xp.isfinite(xp.sum(a))) or bool(xp.all(xp.isfinite(a)))


# array-api-compat's clip and sign index with boolean masks on CuPy, which waits for the
# device; these elementwise forms never do.
def clip(xp, a, low: float, high: float):
    """``a`` limited to ``[low, high]``, elementwise (no host sync on any device)."""
    return xp.minimum(xp.maximum(a, low), high)


def sign(xp, a):
    """-1, 0 or 1 per element in ``a``'s dtype (no host sync on any device)."""
    return xp.astype(a > 0, a.dtype) - xp.astype(a < 0, a.dtype)


def upcast_16bit(xp, pred):
    """16-bit predictions are scored in float32 (a squared error of 300 already overflows
    float16; bfloat16 keeps 3 significant digits); returns the float32 array and a
    function casting the gradient back."""
    dtype = pred.dtype
    if dtype == xp.float32 or dtype == xp.float64 or \
            getattr(dtype, "name", None) not in ("float16", "bfloat16"):
        return pred, _unchanged
    return xp.astype(pred, xp.float32), lambda grad: xp.astype(grad, dtype)


def _unchanged(grad):
    return grad


def match_target(xp, pred, target, name: str):
    """Cast ``target`` to ``pred``'s dtype and shape, accepting ``(N,)`` for ``(N, 1)``."""
    if target.ndim == 1 and pred.ndim == 2 and pred.shape[1] == 1:
        target = xp.reshape(target, (-1, 1))
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"{name}: target shape {tuple(target.shape)} does not match "
                         f"prediction shape {tuple(pred.shape)}")
    return target if target.dtype == pred.dtype else xp.astype(target, pred.dtype)
