"""The generic backend: an Array API namespace, a device, a dtype and a seeded RNG.

Everything in this class uses only the Array API standard, so any compliant namespace
(``array_api_strict`` included) runs the whole training loop. Faster implementations
live in subclasses (:mod:`gpunn.backend.numpy_backend`, :mod:`gpunn.backend.cupy_backend`),
which override single methods and register faster optimiser updates by rule
(:mod:`gpunn.backend.fastpath`); layer code never asks which library it runs on.
"""

from __future__ import annotations

import contextlib

from ..errors import describe
from .fastpath import FastUpdates
from .ops import HALF_DTYPES, from_dlpack, host_array, plain_ndarray, softmax_cross_entropy
from .random import HostRandom

_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
BFLOAT16_HINT = ("dtype='bfloat16' needs a CUDA GPU with CuPy >= 14 and ml_dtypes "
                 "(pip install \"gpunn[cuda13,bf16]\"); on the CPU use 'float32' "
                 "(NumPy has no bfloat16 arithmetic: ml_dtypes computes it without BLAS)")


class Backend(FastUpdates):
    """Generic backend over one Array API namespace.

    Parameters
    ----------
    xp : module
        An Array API compatible namespace (``array_api_compat.numpy``,
        ``array_api_strict``, ...).
    device : object, optional
        The namespace's device object; ``None`` means the namespace default.
    dtype : str, default "float32"
        Floating dtype for parameters and activations.
    seed : int, optional
        Seed of the random generator (:attr:`random`); ``None`` draws fresh entropy.
    name : str, optional
        Short device name shown to users (``"cpu"``, ``"cuda:0"``, ...).

    Attributes
    ----------
    random : HostRandom
        The seeded generator: weights, dropout masks, shuffling.
    low_precision : bool
        True for 16-bit dtypes, trained with float32 master weights.
    """

    #: Library family; subclasses set "numpy" or "cupy".
    library = "generic"
    #: The generator class: ``random_type(backend, seed)``.
    random_type = HostRandom
    #: The loss heads :meth:`fused_loss` may run (by output activation).
    fused_losses: tuple = ()
    #: Slices and reshapes of a contiguous array are guaranteed views, so a model may keep
    #: all parameters in one flat buffer (the standard leaves view semantics open).
    supports_views = False

    def __init__(self, xp, device=None, dtype: str = "float32", seed: int | None = None,
                 name: str | None = None):
        dtype = _check_dtype_name(dtype)
        self.xp = xp
        self.device = device
        self.dtype_name = dtype
        self.dtype = self._resolve_dtype(dtype)
        self.low_precision = dtype in HALF_DTYPES
        self.name = name or getattr(xp, "__name__", "array-api")
        self.random = self.random_type(self, seed)

    # ------------------------------------------------------------------ identity
    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dtype={self.dtype_name!r})"

    def with_dtype(self, dtype: str) -> Backend:
        """A backend on the same namespace, device and generator with another dtype."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.dtype_name = _check_dtype_name(dtype)
        clone.dtype = clone._resolve_dtype(clone.dtype_name)
        clone.low_precision = clone.dtype_name in HALF_DTYPES
        clone.random = self.random.for_backend(clone)
        return clone

    def with_generator(self, seed: int | None) -> Backend:
        """A backend on the same namespace, device and dtype with a generator of its own,
        seeded with ``seed``: what draws from it leaves this backend's generator as it
        was (a model loaded onto a user's backend must not change the user's draws)."""
        clone = self.with_dtype(self.dtype_name)
        clone.random = self.random_type(clone, seed)
        return clone

    def _resolve_dtype(self, name: str):
        """The namespace's dtype object for ``name``; a ValueError saying why when this
        backend cannot compute in it."""
        if name == "bfloat16":
            raise ValueError(BFLOAT16_HINT)
        if not hasattr(self.xp, name):
            raise ValueError(f"dtype: {getattr(self.xp, '__name__', self.xp)} has no "
                             f"{name!r}")
        return getattr(self.xp, name)

    def is_floating(self, dtype) -> bool:
        """True for real floating dtypes, this backend's own included (bfloat16 is not a
        NumPy floating type, so ``isdtype`` alone would say no)."""
        return dtype == self.dtype or self.xp.isdtype(dtype, "real floating")

    def context(self):
        """Context manager that makes this backend's device current (no-op here)."""
        return contextlib.nullcontext()

    def overflow_expected(self):
        """Context in which float overflow is handled by the caller (loss scaling), so the
        library should not warn about it. A no-op unless the library warns."""
        return contextlib.nullcontext()

    def describe(self) -> str:
        """One line naming the library and device, for logs."""
        return f"{self.name} ({getattr(self.xp, '__name__', 'array-api')}, {self.dtype_name})"

    # ------------------------------------------------------------------ arrays
    def owns(self, a) -> bool:
        """True when ``a`` is already an array of this backend's namespace."""
        try:
            import array_api_compat

            return array_api_compat.array_namespace(a) is self.xp
        except TypeError:
            return False

    def asarray(self, a, dtype=None):
        """Move ``a`` (any array or nested list) onto this backend.

        Parameters
        ----------
        a : array_like
            NumPy, CuPy or Array API array, any DLPack array (PyTorch tensor, JAX
            array, ...) or nested sequence; a PyTorch tensor that requires grad is
            refused (``TypeError``: detach it first).
        dtype : dtype or str, optional
            Target dtype; ``None`` keeps integer and bool arrays as they are and casts
            floating arrays to the backend dtype.

        Returns
        -------
        array
            An array of ``self.xp`` on ``self.device``; no copy when ``a`` is already
            there in this dtype (a DLPack array's memory is shared).
        """
        xp = self.xp
        if isinstance(dtype, str):
            dtype = getattr(xp, dtype)
        if not self.owns(a):
            a = plain_ndarray(a)
            # A DLPack array (PyTorch, JAX, ...) already where xp computes is taken over
            # in place; anything else goes through a host copy.
            direct = from_dlpack(xp, a, self.device)
            if direct is None:
                host = host_array(a)
                if host.dtype.kind not in "biuf":
                    raise TypeError(f"cannot convert {describe(a)} to a real numeric array "
                                    f"(dtype {host.dtype})")
                direct = xp.asarray(host, device=self.device) if self.device is not None \
                    else xp.asarray(host)
            elif not (self.is_floating(direct.dtype) or
                      xp.isdtype(direct.dtype, ("bool", "integral"))):
                raise TypeError(f"cannot convert {describe(a)} to a real numeric array")
            a = direct
        if dtype is None and a.dtype != self.dtype and self.is_floating(a.dtype):
            dtype = self.dtype
        if dtype is not None and a.dtype != dtype:
            a = xp.astype(a, dtype)
        return a

    def take_rows(self, X, idx, out=None):
        """Rows ``X[idx]`` of a ``(N, ...)`` array for integer indices ``idx (k,)``, all
        in ``[0, N)`` (a slice of a permutation): one shuffled batch, gathered without
        copying the dataset. A backend may write them into ``out`` (a buffer of the
        batch's shape, reused from step to step); the generic version allocates.

        ``X`` may be a tuple of such arrays (a batch's inputs and targets, gathered
        together: one launch on CUDA); ``out`` and the result are then tuples too."""
        if isinstance(X, tuple):
            return tuple(self.take_rows(a, idx, o)
                         for a, o in zip(X, out or (None,) * len(X)))
        return self.xp.take(X, idx, axis=0)

    def zeros(self, shape, dtype=None):
        """Zeros of the backend dtype (or ``dtype``) on the backend device."""
        return self.xp.zeros(shape, dtype=dtype or self.dtype, device=self.device)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on synchronous backends)."""

    def release_memory(self) -> None:
        """Give cached device memory back (after an out-of-memory error)."""
        import gc

        gc.collect()

    def fits_on_device(self, nbytes: int) -> bool:
        """Whether a dataset of ``nbytes`` should be moved onto this device for training.
        Host memory: always."""
        return True

    def batches(self, X, T, order, batch_size: int):
        """Stream batches of host (NumPy) arrays onto this device.

        Parameters
        ----------
        X : (N, features) host array
        T : (N, ...) host array or None
        order : (k,) host int array, or None for the stored order (all N rows)
        batch_size : int

        Yields
        ------
        (x, t) : device arrays of at most ``batch_size`` rows (``t`` None without ``T``)
        """
        # With an order, its rows only (a rank's share may be fewer than the data's).
        n = int(X.shape[0]) if order is None else len(order)
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            idx = slice(lo, hi) if order is None else order[lo:hi]
            yield self.asarray(X[idx]), (None if T is None else self.asarray(T[idx]))

    # ------------------------------------------------------------------ operations
    # The named operations of a training step. Generic, standard-only versions here;
    # NumpyBackend and CupyBackend override them by name, each override with a parity test
    # against these (tests/test_backend_parity.py, tests/test_gpu.py).
    def bias_activation(self, x, W, b, activation, params: dict):
        """Affine map and activation of a Dense layer.

        Parameters
        ----------
        x : (batch, in)
        W : (in, out)
        b : (out,)
        activation : gpunn.activations.Activation
        params : dict
            The activation's hyper-parameters.

        Returns
        -------
        z : (batch, out)
            Pre-activation ``x @ W + b``.
        y : (batch, out)
            ``activation(z)``; ``z`` itself for identity.
        """
        z = x @ W + b
        if activation.name == "identity":
            return z, z
        return z, activation.forward(self.xp, z, **params)

    def activation_backward(self, activation, z, y, grad, params: dict):
        """``dL/dz`` from ``grad = dL/dy`` (all ``(batch, features)``)."""
        return activation.backward(self.xp, z, y, grad, **params)

    def softmax_cross_entropy(self, z, target):
        """Softmax and cross-entropy from logits in one pass (see the module function
        :func:`softmax_cross_entropy`); returns ``(value, prob, grad)``."""
        return softmax_cross_entropy(self.xp, z, target)

    def fused_loss(self, kind: str, z, target, bias, bias_grad, loss_slot=None,
                   metric_slot=None):
        """A training step's whole loss head in one pass, or None where this backend has
        none (nothing is then written: the caller runs the generic maths).

        Parameters
        ----------
        kind : str
            The output activation the loss applies: one of :attr:`fused_losses`
            (``"softmax"``: categorical, ``"sigmoid"``: binary cross-entropy,
            ``"identity"``: mean squared error).
        z : (batch, outputs)
            ``x @ W`` of the output layer, without its bias.
        target : (batch,) labels or (batch, outputs)
        bias : (outputs,)
            The output layer's bias, added to ``z`` here.
        bias_grad : (outputs,)
            Overwritten with the bias gradient.
        loss_slot : 0-d array, optional
            The epoch buffer's entry for this step's loss: the value is written there
            (and that array returned as the value).
        metric_slot : 0-d array, optional
            The entry for this step's value of the loss's own metric: the count of correct
            predictions (int64) for the cross-entropies, the sum over rows of the mean
            absolute error over outputs for the squared error.

        Returns
        -------
        (value, prob, grad) or None
            ``grad`` is ``dL/dz``; ``prob`` the activated output.
        """
        return None

    def dense_backward(self, x, W, z, y, grad, activation, params: dict,
                       need_input_grad: bool, out=None, bias_done: bool = False):
        """Gradients of a Dense layer ``y = f(x @ W + b)``.

        Parameters
        ----------
        x : (batch, in)
        W : (in, out)
        z, y : (batch, out)
            The forward pass's pre-activation and output.
        grad : (batch, out)
            ``dL/dy``; ``dL/dz`` when ``activation`` is None (identity, or a loss that
            applied the activation).
        activation : gpunn.activations.Activation or None
        params : dict
        need_input_grad : bool
        out : (gW, gb), optional
            Arrays a backend may overwrite instead of allocating new ones (the generic
            version ignores them, but for ``gb`` under ``bias_done``).
        bias_done : bool
            ``out[1]`` already holds the bias gradient (a fused loss wrote it).

        Returns
        -------
        gW : (in, out)
        gb : (out,)
        gx : (batch, in) or None
        """
        if activation is not None:
            grad = self.activation_backward(activation, z, y, grad, params)
        xp = self.xp
        gW = xp.matrix_transpose(x) @ grad
        gb = out[1] if bias_done else xp.sum(grad, axis=0)
        gx = grad @ xp.matrix_transpose(W) if need_input_grad else None
        return gW, gb, gx

    # ------------------------------------------------------------------ convolution
    def conv_forward(self, x, W, b, stride: tuple, padding: tuple, activation,
                     params: dict, cache=None):
        """A convolution's affine map and activation, as a dense layer on every patch.

        Parameters
        ----------
        x : (batch, in_channels, *spatial)
        W : (out_channels, in_channels, *kernel)
        b : (out_channels,)
        stride, padding : tuple of int
            One entry per spatial axis.
        activation : gpunn.activations.Activation
            Applied at each position; a softmax is taken over the channels.
        params : dict
            The activation's hyper-parameters.
        cache : object, optional
            The cache this method returned for the previous batch: a backend may reuse
            its buffers (the generic version ignores it).

        Returns
        -------
        y : (batch, out_channels, *out)
            ``out = (spatial + 2 * padding - kernel) // stride + 1`` per axis.
        cache : object
            What :meth:`conv_backward` needs; opaque to the caller.
        """
        xp = self.xp
        kernel = tuple(int(k) for k in W.shape[2:])
        n, o = int(x.shape[0]), int(W.shape[0])
        cols = self.im2col(x, kernel, stride, padding)  # (N, C*K, L)
        # One product per sample, already channels-first: (N, out_channels, L).
        z = xp.reshape(W, (o, -1)) @ cols + xp.reshape(b, (o, 1))
        y = z
        if activation.name == "softmax":  # over the channels at each position
            t = (0, 2, 1)
            y = xp.permute_dims(activation.forward(xp, xp.permute_dims(z, t), **params), t)
        elif activation.name != "identity":
            y = activation.forward(xp, z, **params)
        out = _out_sizes(tuple(int(d) + 2 * p for d, p in zip(x.shape[2:], padding)),
                         kernel, stride)
        return xp.reshape(y, (n, o) + out), (tuple(x.shape), cols, z, y)

    def conv_backward(self, cache, W, grad, stride: tuple, padding: tuple, activation,
                      params: dict, need_input_grad: bool, out=None):
        """Gradients of :meth:`conv_forward`.

        Parameters
        ----------
        cache : object
            What :meth:`conv_forward` returned for this batch.
        W : (out_channels, in_channels, *kernel)
        grad : (batch, out_channels, *out)
            ``dL/dy``.
        stride, padding : tuple of int
        activation : gpunn.activations.Activation or None
            None when ``grad`` is already ``dL/dz`` (identity).
        params : dict
        need_input_grad : bool
            False skips the input gradient (the model's first layer).
        out : (gW, gb), optional
            Arrays a backend may overwrite instead of allocating new ones.

        Returns
        -------
        gW : (out_channels, in_channels, *kernel)
        gb : (out_channels,)
        gx : (batch, in_channels, *spatial) or None
        """
        xp = self.xp
        x_shape, cols, z, y = cache
        kernel = tuple(int(k) for k in W.shape[2:])
        g = xp.reshape(grad, tuple(z.shape))
        if activation is not None and activation.name == "softmax":
            t = (0, 2, 1)
            g = xp.permute_dims(self.activation_backward(
                activation, xp.permute_dims(z, t), xp.permute_dims(y, t),
                xp.permute_dims(g, t), params), t)
        elif activation is not None:
            g = self.activation_backward(activation, z, y, g, params)
        W2 = xp.reshape(W, (int(W.shape[0]), -1))
        gW = xp.reshape(xp.sum(g @ xp.matrix_transpose(cols), axis=0), tuple(W.shape))
        gb = xp.sum(g, axis=(0, 2))
        gx = None
        if need_input_grad:
            gx = self.col2im(xp.matrix_transpose(W2) @ g, x_shape, kernel, stride, padding)
        return gW, gb, gx

    # ------------------------------------------------------------------ patches (convolution)
    def im2col(self, x, kernel: tuple, stride: tuple, padding: tuple):
        """The patches a convolution or pooling window sees, one column per output position.

        Parameters
        ----------
        x : (batch, channels, *spatial)
            One or two spatial axes (any number works).
        kernel, stride, padding : tuple of int
            One entry per spatial axis; ``padding`` zeros are added on both sides.

        Returns
        -------
        (batch, channels * K, L)
            ``K = prod(kernel)`` values per channel (row-major over the kernel, channel
            after channel: the order of ``W.reshape(out_channels, -1)``), ``L`` output
            positions (row-major over the output's spatial axes). Channels-first, so a
            convolution's product ``W @ cols`` is already ``(batch, out_channels, L)``.
        """
        xp = self.xp
        x = self._pad(x, padding)
        n, c, spatial = int(x.shape[0]), int(x.shape[1]), tuple(x.shape[2:])
        out = _out_sizes(spatial, kernel, stride)
        # One strided slice per kernel offset (a loop over the K offsets, not over the
        # samples), stacked after the channel axis: (N, C, K, *out), one copy.
        parts = [x[_window(offset, stride, out)] for offset in _offsets(kernel)]
        return xp.reshape(xp.stack(parts, axis=2), (n, c * len(parts), _prod(out)))

    def col2im(self, cols, shape: tuple, kernel: tuple, stride: tuple, padding: tuple):
        """The adjoint of :meth:`im2col`: each patch entry added back where it was read.

        Parameters
        ----------
        cols : (batch, channels * K, L)
            Gradients with respect to :meth:`im2col`'s output.
        shape : tuple
            The shape of :meth:`im2col`'s input ``(batch, channels, *spatial)``.
        kernel, stride, padding : tuple of int

        Returns
        -------
        (batch, channels, *spatial)
        """
        xp = self.xp
        n, c = int(shape[0]), int(shape[1])
        padded = tuple(int(d) + 2 * p for d, p in zip(shape[2:], padding))
        out = _out_sizes(padded, kernel, stride)
        offsets = _offsets(kernel)
        g = xp.reshape(cols, (n, c, len(offsets)) + out)
        gx = self.zeros((n, c) + padded, dtype=cols.dtype)
        for k, offset in enumerate(offsets):
            where = _window(offset, stride, out)
            gx[where] = gx[where] + g[:, :, k, ...]
        return gx[(slice(None), slice(None)) + tuple(slice(p, p + int(d)) for p, d in
                                                     zip(padding, shape[2:]))]

    def _pad(self, x, padding: tuple):
        """``x (N, C, *spatial)`` with ``padding[i]`` zeros before and after spatial axis
        ``i`` (the standard has no pad: zeros concatenated)."""
        for axis, p in enumerate(padding, start=2):
            if p:
                side = tuple(p if i == axis else int(d) for i, d in enumerate(x.shape))
                zeros = self.zeros(side, dtype=x.dtype)
                x = self.xp.concat([zeros, x, zeros], axis=axis)
        return x

    # ------------------------------------------------------------------ pooling
    def pool_forward(self, x, kind: str, kernel: tuple, stride: tuple):
        """Max or mean of each window of each channel (no padding).

        Parameters
        ----------
        x : (batch, channels, *spatial)
        kind : {"max", "avg"}
        kernel, stride : tuple of int
            One entry per spatial axis.

        Returns
        -------
        y : (batch, channels, *out)
            ``out = (spatial - kernel) // stride + 1`` per axis.
        arg : integer array, or None
            For ``"max"``, where each window's first maximum lies in it (its index in
            the window, row-major over the kernel), what :meth:`pool_backward` routes the
            gradient by: here ``(batch * channels, L)``, ``L`` windows per channel
            (row-major); a backend may lay it out otherwise (only its own
            :meth:`pool_backward` reads it). None for ``"avg"``.
        """
        xp = self.xp
        n, c, spatial = int(x.shape[0]), int(x.shape[1]), tuple(int(d) for d in x.shape[2:])
        out = _out_sizes(spatial, kernel, stride)
        # Each channel as a one-channel sample: the windows are then the columns.
        single = xp.reshape(x, (n * c, 1) + spatial)
        cols = self.im2col(single, kernel, stride, (0,) * len(kernel))  # (N*C, K, L)
        if kind == "max":
            arg = xp.argmax(cols, axis=1)  # the first maximum, as PyTorch picks
            y = xp.max(cols, axis=1)
        else:
            arg, y = None, xp.mean(cols, axis=1)
        return xp.reshape(y, (n, c) + out), arg

    def pool_backward(self, grad, arg, kind: str, shape: tuple, kernel: tuple,
                      stride: tuple):
        """The input gradient of :meth:`pool_forward`: the maximum of each window takes
        its gradient (max), or the window's values share it equally (avg).

        Parameters
        ----------
        grad : (batch, channels, *out)
            ``dL/dy``.
        arg : (batch * channels, L) or None
            What :meth:`pool_forward` returned.
        kind : {"max", "avg"}
        shape : tuple
            The input's shape ``(batch, channels, *spatial)``.
        kernel, stride : tuple of int

        Returns
        -------
        (batch, channels, *spatial)
        """
        xp = self.xp
        n, c = int(shape[0]), int(shape[1])
        k = _prod(kernel)
        g = xp.reshape(grad, (n * c, 1, -1))
        if kind == "max":
            window = xp.reshape(xp.arange(k, dtype=arg.dtype,
                                          device=getattr(g, "device", None)), (k, 1))
            gcols = xp.astype(xp.reshape(arg, (n * c, 1, -1)) == window, g.dtype) * g
        else:
            gcols = xp.broadcast_to(g / k, (n * c, k, int(g.shape[2])))
        single = (n * c, 1) + tuple(shape[2:])
        gx = self.col2im(gcols, single, kernel, stride, (0,) * len(kernel))
        return xp.reshape(gx, tuple(shape))

    # ------------------------------------------------------------------ normalisation
    def batchnorm_forward(self, x, gamma, beta, eps: float, mean=None, var=None):
        """Batch normalisation per channel: statistics, normalised values and the affine
        map.

        Parameters
        ----------
        x : (batch, C, *spatial)
            Zero, one or two spatial axes.
        gamma, beta : (C,)
        eps : float
            Added to the variance.
        mean, var : (C,), optional
            Statistics to use (inference: the running ones); None computes the batch's
            mean and biased variance over the batch and spatial axes (training).

        Returns
        -------
        y : (batch, C, *spatial)
            ``xhat * gamma + beta``.
        xhat : (batch, C, *spatial)
            ``(x - mean) * inv``.
        inv : (C,)
            ``1 / sqrt(var + eps)``.
        mean, var : (C,)
            The statistics used.
        """
        xp = self.xp
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, int(x.shape[1])) + (1,) * (x.ndim - 2)  # broadcasts per channel
        if mean is None:
            mean = xp.mean(x, axis=axes)
            centred = x - xp.reshape(mean, bshape)
            var = xp.mean(centred * centred, axis=axes)
        else:
            centred = x - xp.reshape(mean, bshape)
        inv = 1.0 / xp.sqrt(var + eps)
        xhat = centred * xp.reshape(inv, bshape)
        y = xhat * xp.reshape(gamma, bshape) + xp.reshape(beta, bshape)
        return y, xhat, inv, mean, var

    def batchnorm_backward(self, grad, xhat, gamma, inv, batch_stats: bool):
        """Gradients of :meth:`batchnorm_forward`.

        Parameters
        ----------
        grad : (batch, C, *spatial)
            ``dL/dy``.
        xhat : (batch, C, *spatial)
        gamma, inv : (C,)
        batch_stats : bool
            True after a training forward (the batch statistics' own gradients are
            included); False when they were constants (inference).

        Returns
        -------
        dx : (batch, C, *spatial)
        dgamma, dbeta : (C,)
        """
        xp = self.xp
        axes = (0,) + tuple(range(2, grad.ndim))
        bshape = (1, int(grad.shape[1])) + (1,) * (grad.ndim - 2)
        count = int(grad.shape[0]) * _prod(grad.shape[2:])
        dbeta = xp.sum(grad, axis=axes)
        dgamma = xp.sum(grad * xhat, axis=axes)
        scale = xp.reshape(gamma * inv, bshape)
        if not batch_stats:
            return grad * scale, dgamma, dbeta
        return scale * (grad - xp.reshape(dbeta / count, bshape)
                        - xhat * xp.reshape(dgamma / count, bshape)), dgamma, dbeta

    def layernorm_forward(self, x, gamma, beta, eps: float):
        """Layer normalisation over the last ``gamma.ndim`` axes of each sample.

        Parameters
        ----------
        x : (*lead, *normalized_shape)
        gamma, beta : normalized_shape
        eps : float

        Returns
        -------
        y : (*lead, *normalized_shape)
            ``xhat * gamma + beta``.
        xhat : (*lead, *normalized_shape)
            ``(x - mean) * inv`` with the mean and biased variance of each sample's
            normalised values.
        inv : (*lead, 1, ..., 1)
            ``1 / sqrt(var + eps)``, one per sample (ones for the normalised axes).
        """
        xp = self.xp
        axes = tuple(range(-gamma.ndim, 0))
        centred = x - xp.mean(x, axis=axes, keepdims=True)
        var = xp.mean(centred * centred, axis=axes, keepdims=True)
        inv = 1.0 / xp.sqrt(var + eps)
        xhat = centred * inv
        return xhat * gamma + beta, xhat, inv

    def layernorm_backward(self, grad, xhat, gamma, inv):
        """Gradients of :meth:`layernorm_forward`.

        Parameters
        ----------
        grad, xhat : (*lead, *normalized_shape)
        gamma : normalized_shape
        inv : (*lead, 1, ..., 1)

        Returns
        -------
        dx : (*lead, *normalized_shape)
        dgamma, dbeta : normalized_shape
        """
        xp = self.xp
        k = gamma.ndim
        lead = tuple(range(grad.ndim - k))
        axes = tuple(range(-k, 0))
        dgamma = xp.sum(grad * xhat, axis=lead)
        dbeta = xp.sum(grad, axis=lead)
        g = grad * gamma
        dx = inv * (g - xp.mean(g, axis=axes, keepdims=True)
                    - xhat * xp.mean(g * xhat, axis=axes, keepdims=True))
        return dx, dgamma, dbeta

    # ------------------------------------------------------------------ embeddings
    def scatter_add_rows(self, target, indices, values):
        """``target[indices[i]] += values[i]`` for every ``i``, repeated indices summed
        (the gradient of a row lookup: an embedding's).

        Parameters
        ----------
        target : (R, D)
        indices : (M,) integer array, every entry in ``[0, R)`` (checked by the caller)
        values : (M, D)

        Returns
        -------
        (R, D)
            The sum; a backend may write it into ``target`` and return that. The generic
            version returns a new array.
        """
        xp = self.xp
        rows = int(target.shape[0])
        ids = xp.arange(rows, dtype=indices.dtype, device=self.device)
        # One-hot rows times the values: standard-only (no scatter in the Array API). In
        # chunks of indices so the one-hot block stays under ~16M entries.
        m, step = int(indices.shape[0]), max(1, (1 << 24) // max(rows, 1))
        for lo in range(0, m, step):
            hi = min(lo + step, m)  # the standard leaves out-of-range stops undefined
            hit = xp.astype(xp.reshape(indices[lo:hi], (-1, 1)) == ids, values.dtype)
            target = target + xp.matrix_transpose(hit) @ values[lo:hi, ...]
        return target


def _prod(sizes) -> int:
    total = 1
    for s in sizes:
        total *= int(s)
    return total


def _out_sizes(padded: tuple, kernel: tuple, stride: tuple) -> tuple:
    """Output positions per spatial axis of a window ``kernel`` moved by ``stride``."""
    return tuple((int(p) - k) // s + 1 for p, k, s in zip(padded, kernel, stride))


def _offsets(kernel: tuple) -> list:
    """Every offset inside the kernel, row-major."""
    import itertools

    return list(itertools.product(*(range(k) for k in kernel)))


def _window(offset: tuple, stride: tuple, out: tuple) -> tuple:
    """The index of what kernel offset ``offset`` sees at every output position."""
    return (slice(None), slice(None)) + tuple(
        slice(o, o + s * (m - 1) + 1, s) for o, s, m in zip(offset, stride, out))


def _check_dtype_name(dtype) -> str:
    name = getattr(dtype, "name", None) or str(dtype)
    name = name.rsplit(".", 1)[-1].replace("'>", "").replace("<class '", "")
    if name not in _FLOAT_DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(_FLOAT_DTYPES)}, got {dtype!r}")
    return name
