"""Normalisation: ``BatchNorm`` (per channel, over the batch and spatial axes, with
running statistics) and ``LayerNorm`` (per sample, over its last axes).

Both follow PyTorch's definitions, so weights and running statistics carry over either
way: ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the biased variance in the
normalisation; BatchNorm's running variance is the unbiased one, updated as
``running = (1 - momentum) * running + momentum * batch``.

The maths of both passes are backend operations (``backend.batchnorm_forward`` and
``batchnorm_backward``, ``layernorm_forward`` and ``layernorm_backward``): generic Array
API code; on CuPy, a per-channel reduction and an elementwise kernel per pass for
BatchNorm, one kernel per pass for LayerNorm. Batch statistics over several ranks
(synchronised batch normalisation) stay in the layer: they need the rank group's
all-reduce.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import describe
from .base import Layer, is_any_size, positive_int, register, show_shape


def _fraction(value, what: str, low: float, high: float, closed_low: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        (low <= value if closed_low else low < value) and value <= high
    if not ok:
        bracket = "[" if closed_low else "("
        raise ValueError(f"{what}: expected a number in {bracket}{low}, {high}], got "
                         f"{value!r}")
    return float(value)


def _eps(value, what: str) -> float:
    # Beyond 1 the constant outweighs the variance of any normalised activations, so every
    # output tends to beta: a mistake, or a crafted model file.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not 0 < value <= 1.0:
        raise ValueError(f"{what}: expected a positive number of at most 1, got {value!r}")
    return float(value)


@register
class BatchNorm(Layer):
    """Batch normalisation per channel (PyTorch's ``BatchNorm1d``/``BatchNorm2d``).

    While training, each channel is normalised with the mean and (biased) variance of the
    batch over the batch and spatial axes, and the running statistics follow them; in
    inference (``predict``, ``evaluate``, ``forward(training=False)``) the running
    statistics are used instead.

    Parameters
    ----------
    num_features : int
        Channels ``C``: the axis after the batch.
    momentum : float in [0, 1], default 0.1
        ``running = (1 - momentum) * running + momentum * batch`` (PyTorch's convention,
        Keras's ``1 - momentum``).
    eps : float in (0, 1], default 1e-5
        Added to the variance.
    sync : bool, default True
        In data-parallel training (``mpiexec``, see :mod:`gpunn.distributed`), compute
        the statistics over the whole global batch, summed over the ranks (PyTorch's
        ``SyncBatchNorm``): every rank then keeps the same running statistics, and two
        ranks at half the batch train as one process at the whole batch. False: each rank
        normalises by its own rows (and the ranks' running statistics drift apart). No
        effect in one process.
    name : str, optional

    Attributes
    ----------
    params : ``gamma (C,)`` (ones), ``beta (C,)`` (zeros)
    buffers : ``running_mean (C,)`` (zeros), ``running_var (C,)`` (ones, unbiased)

    Notes
    -----
    Shapes: ``x (batch, C)``, ``(batch, C, length)`` or ``(batch, C, height, width)`` ->
    same. A training batch needs at least two values per channel.
    """

    _cached = ("_xhat", "_inv", "_count", "_sync")
    nonnegative = ("running_var",)

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 sync: bool = True, name: str | None = None):
        super().__init__(name)
        self.num_features = positive_int(num_features, "BatchNorm num_features")
        self.momentum = _fraction(momentum, "BatchNorm momentum", 0.0, 1.0, True)
        self.eps = _eps(eps, "BatchNorm eps")
        if not isinstance(sync, bool):
            raise ValueError(f"BatchNorm sync: expected True or False, got {sync!r}")
        self.sync = sync
        self._xhat = self._inv = self._count = self._sync = None

    def _describe_args(self) -> str:
        return f"{self.num_features}"

    def param_shapes(self) -> dict:
        return {"gamma": (self.num_features,), "beta": (self.num_features,)}

    def buffer_shapes(self) -> dict:
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def allocate(self, backend) -> None:
        c = self.num_features
        self.add_param("gamma", np.ones(c))
        self.add_param("beta", np.zeros(c))
        self.add_buffer("running_mean", np.zeros(c))
        self.add_buffer("running_var", np.ones(c))

    def output_shape(self, input_shape):
        if input_shape is None:
            return None
        if len(input_shape) not in (1, 2, 3) or input_shape[0] != self.num_features:
            raise ValueError(f"{self.label}: expects inputs of shape (batch, "
                             f"{self.num_features}), (batch, {self.num_features}, length) or "
                             f"(batch, {self.num_features}, height, width), the layer "
                             f"before it gives {show_shape(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training: bool = False):
        """``x (batch, C, *spatial)`` -> same shape, normalised per channel."""
        self._require_built()
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) not in (2, 3, 4) or shape[1] != self.num_features:
            raise ValueError(f"{self.label}: expected input of shape (batch, "
                             f"{self.num_features}, *spatial) with at most two spatial axes, "
                             f"got {describe(x)}")
        xp = self.backend.xp
        axes = (0,) + tuple(range(2, len(shape)))
        per_row = 1
        for a in axes[1:]:
            per_row *= shape[a]
        plan = self._plan() if training else None
        # Values per channel the statistics cover: the global batch's on several ranks.
        count = per_row * (shape[0] if plan is None else plan.step_rows()[1])
        if training and count < 2:
            raise ValueError(f"{self.label}: a training batch needs more than one value per "
                             f"channel to estimate its variance, got {describe(x)}")
        be = self.backend
        gamma, beta = self.params["gamma"], self.params["beta"]
        if plan is not None:  # statistics of the global batch: sums all-reduced
            bshape = (1, self.num_features) + (1,) * (len(shape) - 2)
            mean, centred, var = self._global_moments(x, axes, bshape, plan, count)
            inv = 1.0 / xp.sqrt(var + self.eps)
            xhat = centred * xp.reshape(inv, bshape)
            y = xhat * xp.reshape(gamma, bshape) + xp.reshape(beta, bshape)
        elif training:
            y, xhat, inv, mean, var = be.batchnorm_forward(x, gamma, beta, self.eps)
        else:
            y, xhat, inv, _, _ = be.batchnorm_forward(
                x, gamma, beta, self.eps,
                xp.astype(self.buffers["running_mean"], x.dtype, copy=False),
                xp.astype(self.buffers["running_var"], x.dtype, copy=False))
        if training:
            m = self.momentum
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            # In place: snapshots and model files hold these very arrays.
            rm[...] = (1.0 - m) * rm + m * xp.astype(mean, rm.dtype)
            rv[...] = (1.0 - m) * rv + (m * count / (count - 1)) * xp.astype(var, rv.dtype)
        self._xhat, self._inv = xhat, inv
        self._count = count if training else None  # None: the statistics were constants
        self._sync = plan
        return y

    def backward(self, grad_out):
        """``dL/dy`` -> ``dL/dx`` (same shape); fills ``grads``. After a training forward
        the batch statistics' own gradients are included; after an inference one they are
        constants."""
        self._require_forward("_xhat")
        xp, xhat = self.backend.xp, self._xhat
        if self._sync is None:
            dx, dgamma, dbeta = self.backend.batchnorm_backward(
                grad_out, xhat, self.params["gamma"], self._inv, self._count is not None)
            self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
            return dx
        axes = (0,) + tuple(range(2, grad_out.ndim))
        bshape = (1, self.num_features) + (1,) * (grad_out.ndim - 2)
        dbeta = xp.sum(grad_out, axis=axes)
        dgamma = xp.sum(grad_out * xhat, axis=axes)
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        scale = xp.reshape(self.params["gamma"] * self._inv, bshape)
        return self._global_input_grad(grad_out, dbeta, dgamma, scale, bshape)

    # ------------------------------------------------------------------ several ranks
    def _plan(self):
        """The distributed fit's plan while one runs a training step, else None."""
        if not self.sync:
            return None
        from ..distributed import plan as _plan

        plan = _plan.active()
        return plan if plan is not None and plan.step_rows() is not None else None

    def _global_moments(self, x, axes, bshape, plan, count):
        """Mean, centred input and biased variance over the global batch: per-channel
        sums all-reduced over the ranks (two passes, as one process computes them). A
        rank holding a weight-0 stand-in row adds nothing."""
        xp = self.backend.xp
        rows = plan.step_rows()[0]
        def nothing():
            return self.backend.zeros((self.num_features,), dtype=x.dtype)

        total = xp.sum(x, axis=axes) if rows else nothing()
        plan.engine.allreduce(total)  # in place, on every rank
        mean = total / count
        centred = x - xp.reshape(mean, bshape)
        squares = xp.sum(centred * centred, axis=axes) if rows else nothing()
        plan.engine.allreduce(squares)
        return mean, centred, squares / count

    def _global_input_grad(self, grad_out, dbeta, dgamma, scale, bshape):
        """``dL/dx`` of this rank's rows with statistics of the global batch. The plan
        scales each rank's gradients by its share of the batch and sums them, so the
        sums of ``share * dL_rank/dy`` over all ranks are what the statistics pass back,
        and this rank returns the global gradient divided by its share."""
        xp, plan = self.backend.xp, self._sync
        rows = plan.step_rows()[0]
        share = plan.share
        sums = xp.concat([dbeta, dgamma]) * share if rows else \
            self.backend.zeros((2 * self.num_features,), dtype=grad_out.dtype)
        plan.engine.allreduce(sums)
        if not rows:  # a stand-in row: its gradients are scaled by 0 (kept finite)
            return grad_out * scale
        c = self.num_features
        # share * count is this rank's part of the global count (its rows' values, or
        # the weighted equivalent); a rank whose weights are all 0 has share 0.
        part = share * self._count
        part = xp.where(part > 0, part, xp.ones_like(part)) if hasattr(part, "shape") \
            else (part or 1.0)
        return scale * (grad_out - xp.reshape(sums[:c] / part, bshape)
                        - self._xhat * xp.reshape(sums[c:] / part, bshape))

    def to_onnx(self, graph, x: str, path: str) -> str:
        """``BatchNormalization`` in inference mode (the running statistics)."""
        return graph.node("BatchNormalization", [
            x, graph.param(f"{path}.gamma", self.params["gamma"]),
            graph.param(f"{path}.beta", self.params["beta"]),
            graph.param(f"{path}.running_mean", self.buffers["running_mean"]),
            graph.param(f"{path}.running_var", self.buffers["running_var"])],
            epsilon=self.eps)

    def get_config(self) -> dict:
        cfg = {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}
        if not self.sync:
            cfg["sync"] = False
        return cfg


@register
class LayerNorm(Layer):
    """Layer normalisation over each sample's last axes (PyTorch's ``LayerNorm``).

    Parameters
    ----------
    normalized_shape : int or tuple of int
        The shape of the last axes normalised together, e.g. ``64`` for ``(batch, 64)``
        or ``(channels, length)`` for the whole of ``(batch, channels, length)``.
    eps : float in (0, 1], default 1e-5
    name : str, optional

    Attributes
    ----------
    params : ``gamma normalized_shape`` (ones), ``beta normalized_shape`` (zeros)

    Notes
    -----
    Shapes: ``x (batch, ..., *normalized_shape)`` -> same. The same in training and
    inference (no running statistics). ONNX: ``LayerNormalization`` (opset 17 and newer).
    """

    _cached = ("_xhat", "_inv")

    def __init__(self, normalized_shape, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) \
            else normalized_shape
        if not isinstance(shape, (tuple, list)) or not shape or not all(
                isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
                and not is_any_size(d) for d in shape):
            raise ValueError(f"LayerNorm normalized_shape: expected a positive integer or a "
                             f"tuple of them, got {describe(normalized_shape)}")
        self.normalized_shape = tuple(int(d) for d in shape)
        self.eps = _eps(eps, "LayerNorm eps")
        self._xhat = self._inv = None

    def _describe_args(self) -> str:
        ns = self.normalized_shape
        return f"{ns[0] if len(ns) == 1 else ns}"

    def param_shapes(self) -> dict:
        return {"gamma": self.normalized_shape, "beta": self.normalized_shape}

    def allocate(self, backend) -> None:
        self.add_param("gamma", np.ones(self.normalized_shape))
        self.add_param("beta", np.zeros(self.normalized_shape))

    def output_shape(self, input_shape):
        if input_shape is None:
            return None
        k = len(self.normalized_shape)
        if len(input_shape) < k or tuple(input_shape[len(input_shape) - k:]) != \
                self.normalized_shape:
            raise ValueError(f"{self.label}: expects inputs whose last axes are "
                             f"{self.normalized_shape}, the layer before it gives "
                             f"{show_shape(input_shape)}")
        return tuple(input_shape)

    def forward(self, x, training: bool = False):
        """``x (batch, ..., *normalized_shape)`` -> same shape."""
        self._require_built()
        k = len(self.normalized_shape)
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) < k + 1 or shape[len(shape) - k:] != self.normalized_shape:
            raise ValueError(f"{self.label}: expected input of shape (batch, ..., "
                             f"{', '.join(map(str, self.normalized_shape))}), got "
                             f"{describe(x)}")
        y, self._xhat, self._inv = self.backend.layernorm_forward(
            x, self.params["gamma"], self.params["beta"], self.eps)
        return y

    def backward(self, grad_out):
        """``dL/dy`` -> ``dL/dx`` (same shape); fills ``grads``."""
        self._require_forward("_xhat")
        dx, self.grads["gamma"], self.grads["beta"] = self.backend.layernorm_backward(
            grad_out, self._xhat, self.params["gamma"], self._inv)
        return dx

    def to_onnx(self, graph, x: str, path: str) -> str:
        """``LayerNormalization`` over the last ``len(normalized_shape)`` axes."""
        if graph.opset < 17:
            raise ValueError(f"to_onnx: {self.label} needs LayerNormalization, an operator "
                             f"of opset 17; export with opset=17 or newer (got {graph.opset})")
        return graph.node("LayerNormalization", [
            x, graph.param(f"{path}.gamma", self.params["gamma"]),
            graph.param(f"{path}.beta", self.params["beta"])],
            axis=-len(self.normalized_shape), epsilon=self.eps)

    def get_config(self) -> dict:
        ns = self.normalized_shape
        return {"normalized_shape": ns[0] if len(ns) == 1 else list(ns), "eps": self.eps}
