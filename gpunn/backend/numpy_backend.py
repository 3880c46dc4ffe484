"""NumPy (CPU) backend: the generic maths plus in-place fast paths."""

from __future__ import annotations

import itertools
import math

import array_api_compat.numpy as cnp
import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from . import numba_kernels, numpy_kernels
from .base import Backend
from .fastpath import fast_update_for
from .ops import plain_ndarray

#: The dtypes the in-place optimiser updates run in (any NumPy float type).
_FLOATS = ("float16", "float32", "float64")


class NumpyBackend(Backend):
    """CPU backend on NumPy through ``array_api_compat.numpy``.

    Parameters
    ----------
    dtype : str, default "float32"
    seed : int, optional
    """

    library = "numpy"
    supports_views = True

    def __init__(self, dtype: str = "float32", seed: int | None = None):
        super().__init__(cnp, device="cpu", dtype=dtype, seed=seed, name="cpu")
        self._scratch_buffers: dict = {}
        # GPUNN_NUMBA (numba_kernels.setting) when Numba is usable, else "0"; read at the
        # first fused pass (numba_setting).
        self._numba = None

    def describe(self) -> str:
        return f"cpu (NumPy {np.__version__}, {self.dtype_name})"

    def overflow_expected(self):
        return np.errstate(over="ignore", invalid="ignore")

    def owns(self, a) -> bool:
        return isinstance(a, np.ndarray)

    def asarray(self, a, dtype=None):
        if isinstance(dtype, str):
            dtype = np.dtype(dtype)
        a = plain_ndarray(a)
        if isinstance(a, np.ndarray):
            if a.dtype.kind not in "biuf":
                raise TypeError(f"cannot convert an array of dtype {a.dtype} to a real "
                                "numeric array")
            if dtype is None and a.dtype.kind == "f" and a.dtype != self.dtype:
                dtype = self.dtype
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        return super().asarray(a, dtype)

    def take_rows(self, X, idx, out=None):
        if type(X) is tuple and len(X) == 2:  # inputs and targets: no generic mapping
            xo, to = (None, None) if out is None else out
            return self.take_rows(X[0], idx, xo), self.take_rows(X[1], idx, to)
        if isinstance(X, tuple):
            return super().take_rows(X, idx, out)
        if out is not None and out.shape[0] == idx.shape[0] and out.dtype == X.dtype:
            # mode="raise" (the default) gathers into a hidden buffer and copies it into
            # out: 3x slower for a 4096x784 batch. The indices are a permutation's slice,
            # in range by construction, so "clip" never clips and writes out directly.
            return X.take(idx, axis=0, out=out, mode="clip")
        return X.take(idx, axis=0)

    def dense_backward(self, x, W, z, y, grad, activation, params, need_input_grad,
                       out=None, bias_done=False):
        # Write into the gradient arrays (views of the model's flat gradient buffer): no
        # fresh, page-faulted allocation per step and no copy into the flat buffer.
        if out is None:
            return super().dense_backward(x, W, z, y, grad, activation, params,
                                          need_input_grad, out, bias_done)
        gW, gb = out
        fused = None
        if activation is not None and activation.name == "relu" and not bias_done and \
                self.numba_setting() != "0":
            fused = numba_kernels.relu_backward_bias(grad, y, gb)
        if fused is not None:
            grad = fused
        else:
            if activation is not None:
                grad = self.activation_backward(activation, z, y, grad, params)
            if not bias_done:
                np.add.reduce(grad, axis=0, out=gb)  # the ufunc method: no np.sum dispatch
        np.matmul(x.T, grad, out=gW)
        return gW, gb, (np.matmul(grad, W.T) if need_input_grad else None)

    def activation_backward(self, activation, z, y, grad, params):
        name = activation.name
        if name == "relu":
            return grad * (y > 0)
        if name == "tanh":
            return grad * (1 - y * y)
        if name == "sigmoid":
            return grad * (y * (1 - y))
        return activation.backward(self.xp, z, y, grad, **params)

    def softmax_cross_entropy(self, z, target):
        if target.ndim != 1 or z.dtype not in (np.float32, np.float64):
            return super().softmax_cross_entropy(z, target)
        if self.numba_setting() != "0":
            fused = numba_kernels.softmax_xent_labels(z, target)
            if fused is not None:
                return fused
        # Labels pick their logit directly: no one-hot matrix, one exp, reductions through
        # ufunc methods.
        rows = np.arange(z.shape[0])
        shifted = z - np.maximum.reduce(z, axis=1, keepdims=True)
        prob = np.exp(shifted)
        total = np.add.reduce(prob, axis=1, keepdims=True)
        inv_n = z.dtype.type(1.0 / z.shape[0])
        value = np.add.reduce(np.log(total[:, 0]) - shifted[rows, target]) * inv_n
        prob /= total
        grad = prob * inv_n
        grad[rows, target] -= inv_n
        return value, prob, grad

    def bias_activation(self, x, W, b, activation, params):
        z = np.matmul(x, W)
        name = activation.name
        if (name == "relu" or name == "identity") and self.numba_setting() != "0" and \
                numba_kernels.bias_relu(z, b, name == "relu"):
            return z, z  # ReLU's backward needs only y (see below): z is y
        _add_to_rows(z, b)
        if name == "identity":
            return z, z
        # Activations whose backward needs only y (or the sign of z, which y shares) are
        # applied in place: one array per layer instead of two. z is then y.
        if name == "relu":
            np.maximum(z, 0, out=z)
        elif name == "tanh":
            np.tanh(z, out=z)
        elif name == "sigmoid":
            # sigmoid(z) = (1 + tanh(z / 2)) / 2: overflow-free, in place.
            z *= 0.5
            np.tanh(z, out=z)
            z += 1
            z *= 0.5
        else:
            return z, activation.forward(self.xp, z, **params)
        return z, z

    def conv_forward(self, x, W, b, stride, padding, activation, params, cache=None):
        if x.dtype not in (np.float32, np.float64) or W.dtype != x.dtype:
            return super().conv_forward(x, W, b, stride, padding, activation, params, cache)
        # Patches as rows (N * L, K * C), channels last: the convolution is then one Dense
        # layer over all positions of all samples (one GEMM, not a small product per
        # sample), with Dense's in-place bias and activation (a softmax's last axis is
        # the channels). The output is a channels-first view of those rows, so the next
        # convolution reads its patches as contiguous runs of K * C values.
        n, o = x.shape[0], W.shape[0]
        reuse = cache if isinstance(cache, _ConvRows) else None
        rows, padded, out = _patch_rows(x, W.shape[2:], stride, padding, reuse)
        z, y = self.bias_activation(rows, _kernel_last(W).T, b, activation, params)
        view = y.reshape((n,) + out + (o,)).transpose(_first(len(out)))
        return view, _ConvRows(tuple(x.shape), rows, padded, z, y)

    def conv_backward(self, cache, W, grad, stride, padding, activation, params,
                      need_input_grad, out=None):
        if not isinstance(cache, _ConvRows):
            return super().conv_backward(cache, W, grad, stride, padding, activation,
                                         params, need_input_grad, out)
        z, y, rows = cache.z, cache.y, cache.rows
        n, o = cache.x_shape[0], W.shape[0]
        # dL/dy into the rows layout (N * L, O): one copy, contiguous when the layer
        # above is a convolution (its input gradient is a channels-last view).
        g = np.empty_like(z)
        np.copyto(g.reshape((n,) + tuple(grad.shape[2:]) + (o,)),
                  grad.transpose(_last(grad.ndim - 2)))
        if activation is not None:
            if activation.name == "relu":
                np.multiply(g, y > 0, out=g)
            else:
                g = self.activation_backward(activation, z, y, g, params)
        gW, gb = out if out is not None else (np.empty(W.shape, W.dtype),
                                              np.empty(W.shape[:1], W.dtype))
        # (O, K * C) back to the (O, C, *kernel) layout of W: a small copy. One-channel
        # rows are a transposed matrix: the product is then taken the other way round,
        # both operands as stored (2x faster for LeNet's first layer).
        gWk = _thin_product(rows.T, g).T if rows.flags.f_contiguous else g.T @ rows
        np.copyto(gW, gWk.reshape((o,) + W.shape[2:] + W.shape[1:2]).transpose(
            _first(W.ndim - 2)))
        # A product with ones: a reduction down the long axis of a narrow (N * L, O)
        # array runs ~10x slower than this GEMV.
        np.matmul(self._ones(g.shape[0], g.dtype), g, out=gb)
        if not need_input_grad:
            return gW, gb, None
        # The patch gradients offset by offset, (K, N * L, C): one batched product whose
        # slabs are contiguous, each then added into the image at its offset.
        per_offset = W.reshape(W.shape[:2] + (-1,)).transpose(2, 0, 1)  # (K, O, C)
        return gW, gb, _slabs_to_image(np.matmul(g, per_offset), cache.x_shape,
                                       W.shape[2:], stride, padding)

    def pool_forward(self, x, kind, kernel, stride):
        if x.dtype not in (np.float32, np.float64):
            return super().pool_forward(x, kind, kernel, stride)
        # One elementwise pass per kernel offset over strided views of the input, into
        # arrays laid out as the input is (channels last after a convolution): no window
        # matrix, no reduction over a short middle axis (4x faster for LeNet's pools).
        out = tuple((d - k) // s + 1 for d, k, s in zip(x.shape[2:], kernel, stride))
        slabs = _window_slabs(x, kernel, stride, out)
        y = np.empty_like(next(iter(slabs)))
        np.copyto(y, slabs[0])
        if kind != "max":
            for slab in slabs[1:]:
                y += slab
            y *= y.dtype.type(1.0 / len(slabs))
            return y, None
        # The window index of each first maximum: a later offset takes over only where it
        # is strictly greater (ties keep the first, as argmax and PyTorch do), and its
        # index exceeds every earlier one, so a maximum records it.
        index = np.uint8 if len(slabs) < 256 else np.intp
        arg = np.zeros_like(y, dtype=index)
        better, mark = np.empty_like(y, dtype=bool), np.empty_like(arg)
        for k, slab in enumerate(slabs[1:], start=1):
            np.greater(slab, y, out=better)
            np.maximum(y, slab, out=y)  # a NaN propagates, as in PyTorch
            np.multiply(better, index(k), out=mark)
            np.maximum(arg, mark, out=arg)
        return y, arg

    def pool_backward(self, grad, arg, kind, shape, kernel, stride):
        if grad.dtype not in (np.float32, np.float64) or \
                (arg is not None and arg.shape != grad.shape):  # the generic layout
            return super().pool_backward(grad, arg, kind, shape, kernel, stride)
        out = tuple(grad.shape[2:])
        like = grad if arg is None else arg
        # The gradient image laid out as the forward arrays are (the input's layout).
        order = sorted(range(like.ndim), key=lambda i: -like.strides[i])
        # Windows side by side (stride >= kernel) write each input value once; when they
        # also cover the input exactly, nothing is left to be zero.
        tiles = all(s >= k for s, k in zip(stride, kernel))
        exact = tiles and all(s == k and o * k == d for s, k, o, d in
                              zip(stride, kernel, out, shape[2:]))
        gx = (np.empty if exact and kind == "max" else np.zeros)(
            [shape[i] for i in order], grad.dtype).transpose(np.argsort(order))
        slabs = _window_slabs(gx, kernel, stride, out)
        if sorted(range(grad.ndim), key=lambda i: -grad.strides[i]) != order:
            # The gradient in the forward arrays' layout (a Flatten's gradient is
            # channels-first): one copy, then every pass below runs in one order.
            laid = np.empty_like(like, dtype=grad.dtype)
            np.copyto(laid, grad)
            grad = laid
        if kind != "max":
            g = grad * grad.dtype.type(1.0 / len(slabs))
            for slab in slabs:
                slab += g
            return gx
        hit = np.empty_like(arg, dtype=bool)
        for k, slab in enumerate(slabs):
            np.equal(arg, k, out=hit)
            if tiles:
                np.multiply(grad, hit, out=slab)
            else:
                slab += grad * hit
        return gx

    def im2col(self, x, kernel, stride, padding):
        # One strided view of every window (no copy), then a single copy into the patch
        # matrix; its inner axis runs along an input row, so the copy reads rows in order
        # (about twice as fast as copying kernel offset by kernel offset).
        nd = len(kernel)
        if any(padding):
            x = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in padding))
        n, c = x.shape[:2]
        windows = sliding_window_view(x, tuple(kernel), axis=tuple(range(2, 2 + nd)))
        windows = windows[(slice(None), slice(None)) + tuple(slice(None, None, s)
                                                             for s in stride)]
        out = windows.shape[2:2 + nd]
        # (N, C, *out, *kernel) -> (N, C, *kernel, *out): channel, offset, position.
        order = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))
        return windows.transpose(order).reshape(n, -1, int(np.prod(out)))

    def col2im(self, cols, shape, kernel, stride, padding):
        nd = len(kernel)
        n, c = int(shape[0]), int(shape[1])
        spatial = tuple(int(d) for d in shape[2:])
        padded = tuple(d + 2 * p for d, p in zip(spatial, padding))
        out = tuple((d - k) // s + 1 for d, k, s in zip(padded, kernel, stride))
        g = cols.reshape((n, c) + tuple(kernel) + out)  # a view: offsets as axes
        if tuple(stride) == tuple(kernel) and not any(padding) and \
                all(o * k == d for o, k, d in zip(out, kernel, spatial)):
            # Windows that tile the input exactly (pooling): every value is read once,
            # so the gradient is the patches rearranged, without a sum.
            order = (0, 1) + tuple(j for i in range(nd) for j in (2 + nd + i, 2 + i))
            return g.transpose(order).reshape(shape)
        # Each offset's slab added into a strided view of the result, in place: rows of
        # the slab and of the view run in the same order.
        gx = np.zeros((n, c) + padded, dtype=cols.dtype)
        for offset in itertools.product(*(range(k) for k in kernel)):
            where = (slice(None), slice(None)) + tuple(
                slice(o, o + s * (m - 1) + 1, s) for o, s, m in zip(offset, stride, out))
            gx[where] += g[(slice(None), slice(None)) + offset]
        if any(padding):
            gx = gx[(slice(None), slice(None)) + tuple(
                slice(p, p + d) for p, d in zip(padding, spatial))]
        return gx

    def scatter_add_rows(self, target, indices, values):
        # Sort the indices once and sum each run of equal ones with one reduceat: about
        # np.add.at's time on small tables and several times faster on large ones (it
        # touches only the rows present); the sums then land with one fancy-index add.
        if indices.shape[0] == 0:
            return target
        order = np.argsort(indices, kind="stable")
        ids = indices[order]
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        target[ids[starts]] += np.add.reduceat(values[order], starts, axis=0)
        return target

    # Faster versions of the optimiser rules' generic updates (gpunn.optim.rules): in place
    # with out= and one reused scratch array (numpy_kernels.py); Adam in one vectorised Numba
    # pass when Numba is installed (the flat buffer is 1-D).
    @fast_update_for("sgd", _FLOATS)
    def _sgd_update(self, p, g, state, hp) -> bool:
        numpy_kernels.sgd(p, g, state.get("velocity"), hp, self._scratch)
        return True

    def numba_setting(self) -> str:
        """``GPUNN_NUMBA`` (:func:`numba_kernels.setting`) when Numba is usable, else
        ``"0"``: read once, at the first fused pass (an environment read per step costs a
        microsecond)."""
        if self._numba is None:
            self._numba = numba_kernels.setting() if numba_kernels.enabled() else "0"
        return self._numba

    @fast_update_for("adam", _FLOATS)
    def _adam_update(self, p, g, state, hp) -> bool:
        m, v = state["m"], state["v"]
        how = self.numba_setting()
        if not (how != "0" and numba_kernels.adam(p, g, m, v, hp, how)):
            numpy_kernels.adam(p, g, m, v, hp, self._scratch)
        return True

    @fast_update_for("rmsprop", _FLOATS)
    def _rmsprop_update(self, p, g, state, hp) -> bool:
        numpy_kernels.rmsprop(p, g, state["square_avg"], state.get("velocity"), hp,
                              self._scratch)
        return True

    @fast_update_for("adagrad", _FLOATS)
    def _adagrad_update(self, p, g, state, hp) -> bool:
        numpy_kernels.adagrad(p, g, state["sum_sq"], hp, self._scratch)
        return True

    def _ones(self, n: int, dtype) -> np.ndarray:
        """A cached vector of ``n`` ones (read only)."""
        key = ("ones", n, np.dtype(dtype))
        ones = self._scratch_buffers.get(key)
        if ones is None:
            ones = self._scratch_buffers[key] = np.ones(n, dtype)
            ones.flags.writeable = False
        return ones

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """A reusable work array of ``like``'s shape and dtype (contents undefined)."""
        key = (like.shape, like.dtype)
        buf = self._scratch_buffers.get(key)
        if buf is None:
            buf = self._scratch_buffers[key] = np.empty_like(like)
        return buf


class _ConvRows:
    """What the NumPy convolution keeps between its forward and backward passes: the
    patch rows ``(N * L, K * C)``, the channels-last padded input buffer (reused while
    shapes hold; None without padding), and ``z``, ``y`` as rows ``(N * L, out_channels)``."""

    __slots__ = ("x_shape", "rows", "padded", "z", "y")

    def __init__(self, x_shape, rows, padded, z, y):
        self.x_shape, self.rows, self.padded, self.z, self.y = x_shape, rows, padded, z, y


def _thin_product(a, b, chunk: int = 4096):
    """``a (M, K) @ b (K, N)`` for a long ``K`` and a small result (a one-channel
    convolution's weight gradient: 25 x 200704 by 200704 x 6 for LeNet's first layer),
    as a batch of products over ``K``'s chunks, summed: OpenBLAS runs the long, thin
    product whole at a fraction of its speed (1.9x faster here in chunks of 4096)."""
    m, k = a.shape
    full = k // chunk
    if m * b.shape[1] > 256 or full < 2:
        return a @ b
    head = full * chunk
    out = np.matmul(a[:, :head].reshape(m, full, chunk).transpose(1, 0, 2),
                    b[:head].reshape(full, chunk, -1)).sum(axis=0)
    if head < k:
        out += a[:, head:] @ b[head:]
    return out


def _add_to_rows(z, b) -> None:
    """``z (R, O) += b (O,)`` in place. Narrow rows (a convolution's few channels at
    every position) are folded ``m`` at a time into rows of ``m * O`` values: the
    broadcast's inner loop over O values is what costs (4x for LeNet's first layer)."""
    rows, width = z.shape
    fold = math.gcd(rows, 256 // width) if width < 64 and z.flags.c_contiguous else 1
    if fold > 1:
        wide = z.reshape(rows // fold, fold * width)
        np.add(wide, np.tile(b, fold), out=wide)
    else:
        z += b


def _window_slabs(x, kernel, stride, out) -> list:
    """For each kernel offset (row-major), the strided view ``(N, C, *out)`` of ``x (N,
    C, *spatial)`` that the windows' entries at that offset make."""
    return [x[(slice(None), slice(None)) + tuple(
        slice(o, o + s * (m - 1) + 1, s) for o, s, m in zip(offset, stride, out))]
        for offset in itertools.product(*(range(k) for k in kernel))]


def _kernel_last(W):
    """``W (O, C, *kernel)`` as ``(O, K * C)``: the column order of the patch rows."""
    return W.transpose(_last(W.ndim - 2)).reshape(W.shape[0], -1)


def _last(nd: int) -> tuple:
    """The axes of ``(A, B, *spatial)`` as ``(A, *spatial, B)``: channels last."""
    return (0,) + tuple(range(2, 2 + nd)) + (1,)


def _first(nd: int) -> tuple:
    """The axes of ``(A, *spatial, B)`` as ``(A, B, *spatial)``: channels first."""
    return (0, 1 + nd) + tuple(range(1, 1 + nd))


def _patch_rows(x, kernel, stride, padding, reuse):
    """``x (N, C, *spatial)`` -> patch rows ``(N * L, K * C)`` (row-major over the
    output positions; columns over the kernel offsets, channels innermost), the padded
    channels-last input buffer (None without padding), and the output's spatial sizes.

    The input is laid out channels-last (``(N, *spatial, C)``: already so, without a
    copy, when it is a convolution's output), so each kernel row of a patch is one
    contiguous run. The padded buffer and the rows are ``reuse``'s arrays when their
    shapes match; the padded buffer's borders stay zero, only its interior is written.
    """
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    nd = len(spatial)
    last = x.transpose(_last(nd))  # (N, *spatial, C), a view
    padded = None
    if any(padding):
        shape = (n,) + tuple(d + 2 * p for d, p in zip(spatial, padding)) + (c,)
        old = None if reuse is None else reuse.padded
        padded = old if old is not None and old.shape == shape and old.dtype == x.dtype \
            else np.zeros(shape, x.dtype)
        padded[(slice(None),) + tuple(slice(p, p + d) for p, d in zip(padding, spatial))] \
            = last
        last = padded
    elif not last.flags.c_contiguous:
        last = np.ascontiguousarray(last)
    out = tuple((d - k) // s + 1 for d, k, s in zip(last.shape[1:-1], kernel, stride))
    size = (n * int(np.prod(out)), c * int(np.prod(kernel)))
    old = None if reuse is None else reuse.rows
    if c == 1:
        # One channel (a grey image, a series): the rows are the transpose of one
        # contiguous slab per kernel offset, copied in runs of an output row (the
        # windows' runs would be one kernel row: 3.4x slower for LeNet's first layer).
        # BLAS takes the transposed matrix as it is.
        cols = old.T if old is not None and old.shape == size and old.dtype == x.dtype \
            and old.flags.f_contiguous else np.empty(size[::-1], x.dtype)
        for i, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
            cols[i].reshape((n,) + out)[...] = last[(slice(None),) + tuple(
                slice(o, o + s * (m - 1) + 1, s) for o, s, m in zip(offset, stride, out))
                + (0,)]
        return cols.T, padded, out
    st = last.strides
    # Every window as a strided view (N, *out, *kernel, C), no copy; then one copy.
    windows = as_strided(last, shape=(n,) + out + tuple(kernel) + (c,),
                         strides=(st[0],) + tuple(st[1 + i] * stride[i] for i in range(nd))
                         + tuple(st[1:]), writeable=False)
    rows = old if old is not None and old.shape == size and old.dtype == x.dtype and \
        old.flags.c_contiguous else np.empty(size, x.dtype)
    np.copyto(rows.reshape(windows.shape), windows)
    return rows, padded, out


def _slabs_to_image(slabs, x_shape, kernel, stride, padding):
    """The adjoint of :func:`_patch_rows`: ``slabs (K, N * L, C)``, the patch gradients of
    each kernel offset, added back into the image at their offsets (channels last, so
    each addition runs over contiguous rows of ``out_width * C`` values at stride 1);
    returned as the channels-first view ``(N, C, *spatial)``."""
    n, c = x_shape[:2]
    spatial = x_shape[2:]
    padded = tuple(d + 2 * p for d, p in zip(spatial, padding))
    out = tuple((d - k) // s + 1 for d, k, s in zip(padded, kernel, stride))
    nd = len(kernel)
    gx = np.zeros((n,) + padded + (c,), slabs.dtype)
    for i, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        where = (slice(None),) + tuple(slice(o, o + s * (m - 1) + 1, s)
                                       for o, s, m in zip(offset, stride, out))
        gx[where] += slabs[i].reshape((n,) + out + (c,))
    if any(padding):
        gx = gx[(slice(None),) + tuple(slice(p, p + d) for p, d in zip(padding, spatial))]
    return gx.transpose(_first(nd))
