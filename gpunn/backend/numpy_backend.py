"""NumPy (CPU) backend: the generic maths plus in-place fast paths."""

from __future__ import annotations

import itertools

import array_api_compat.numpy as cnp
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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
        self._numba = None  # GPUNN_NUMBA and Numba's presence, read at the first Adam step

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
        if activation is not None:
            grad = self.activation_backward(activation, z, y, grad, params)
        gW, gb = out
        np.matmul(x.T, grad, out=gW)
        if not bias_done:
            np.add.reduce(grad, axis=0, out=gb)  # the ufunc method: no np.sum dispatch
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
        z += b
        name = activation.name
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
    # with out= and one reused scratch array (numpy_kernels.py); Adam in one parallel Numba
    # pass when Numba is installed (the flat buffer is 1-D).
    @fast_update_for("sgd", _FLOATS)
    def _sgd_update(self, p, g, state, hp) -> bool:
        numpy_kernels.sgd(p, g, state.get("velocity"), hp, self._scratch)
        return True

    @fast_update_for("adam", _FLOATS)
    def _adam_update(self, p, g, state, hp) -> bool:
        if self._numba is None:
            self._numba = numba_kernels.enabled()
        m, v = state["m"], state["v"]
        if not (self._numba and numba_kernels.adam(p, g, m, v, hp)):
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

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """A reusable work array of ``like``'s shape and dtype (contents undefined)."""
        key = (like.shape, like.dtype)
        buf = self._scratch_buffers.get(key)
        if buf is None:
            buf = self._scratch_buffers[key] = np.empty_like(like)
        return buf
