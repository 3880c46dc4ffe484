"""Optimiser wrappers: a step that may be skipped, decided on the device.

Each wraps another optimiser (Keras' ``LossScaleOptimizer`` way) and answers the two calls
a training step makes of any optimiser, ``loss_gradient(grad)`` (what backward starts
from) and ``step(params, grads, loss=None)``, so the step stays ``forward -> loss ->
backward -> optimizer.step`` whatever the precision, the divergence policy or the number
of ranks (gpunn.distributed.plan's rank average is a wrapper too):

- :class:`SkipNonFinite` drops a step whose gradients (or loss) are not finite
  (``fit(on_divergence="skip")``).
- :class:`LossScaleOptimizer` trains 16-bit parameters through float32 master weights:
  the loss gradient is scaled up before backward so small gradients survive float16,
  gradients are unscaled in float32, an overflowed step is skipped and the scale halved;
  the scale doubles after ``growth_interval`` clean steps. bfloat16 has float32's range
  and uses a fixed scale of 1.

Every decision is a 0-d device flag used with ``where``: no host sync per step. A skipped
step leaves parameters and optimiser state untouched but still counts toward the step
number (Adam's bias correction), as in PyTorch's GradScaler.
"""

from __future__ import annotations

from ..backend.ops import host_array, same_device


def masked_step(optimizer, params: list, grads: list, ok) -> None:
    """``optimizer.step`` where the 0-d flag ``ok`` is true, nothing where it is false.

    ``grads`` must be finite (zeroed where ``ok`` is false); the optimiser's own fast
    update runs, and the old values are put back by ``where``.
    """
    xp = optimizer.backend.xp
    old_params = [xp.asarray(p, copy=True) for p in params]
    old_state = [{k: xp.asarray(v, copy=True) for k, v in s.items()} for s in optimizer.state]
    optimizer.step(params, grads)
    for p, old in zip(params, old_params):
        p[...] = xp.where(ok, p, old)
    for s, old in zip(optimizer.state, old_state):
        for key, value in s.items():
            value[...] = xp.where(ok, value, old[key])


def _all_finite(xp, arrays, also=None):
    ok = also
    for a in arrays:
        finite = xp.all(xp.isfinite(a))
        ok = finite if ok is None else xp.logical_and(ok, finite)
    return ok


def delegated(name: str) -> property:
    """A property read from and written to the wrapped optimiser (``self.optimizer``)."""
    return property(lambda self: getattr(self.optimizer, name),
                    lambda self, value: setattr(self.optimizer, name, value),
                    doc=f"The wrapped optimiser's ``{name}``.")


class OptimizerWrapper:
    """An optimiser around another (``optimizer``): by default every call passes through.

    Parameters
    ----------
    optimizer : Optimizer or OptimizerWrapper
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def loss_gradient(self, grad):
        """The gradient backward starts from, given the loss's (``dL/doutput``)."""
        return self.optimizer.loss_gradient(grad)

    def saved_arrays(self) -> list:
        """The wrapped optimiser's arrays (and the wrapper's own, if it has state)."""
        return self.optimizer.saved_arrays()

    t = delegated("t")  # the step counter

    def step(self, params: list, grads: list, loss=None) -> None:
        """One update of ``params`` from ``grads`` (``loss``: the step's 0-d value)."""
        self.optimizer.step(params, grads, loss=loss)


class SkipNonFinite(OptimizerWrapper):
    """Skip each step whose gradients (or loss, or the given flag) are not finite.

    Parameters
    ----------
    optimizer : Optimizer
        Attached to the parameters it will update.
    """

    def step(self, params: list, grads: list, loss=None, finite=None) -> None:
        """Update unless a gradient, ``loss`` (0-d) or ``finite`` (0-d flag) says no."""
        xp = self.optimizer.backend.xp
        if loss is not None:
            finite = xp.isfinite(loss) if finite is None else xp.logical_and(
                finite, xp.isfinite(loss))
        ok = _all_finite(xp, grads, finite)
        grads = [xp.where(ok, g, xp.zeros_like(g)) for g in grads]
        masked_step(self.optimizer, params, grads, ok)


class LossScaleOptimizer(OptimizerWrapper):
    """Float32 master weights and loss scaling for 16-bit parameters.

    Parameters
    ----------
    backend : Backend
        The model's 16-bit backend.
    params : list of arrays
        The 16-bit parameters (the model's flat buffer, or one array per parameter).
    init_scale : float, default 2**15
        Largest power of two that float16 can hold; the first overflow halves it.
    growth_interval : int, default 2000

    Attributes
    ----------
    master : list of float32 arrays
        What the wrapped optimiser updates (attach it with :meth:`attach`).
    """

    def __init__(self, backend, params, init_scale: float = 2.0**15,
                 growth_interval: int = 2000):
        self.backend16 = backend
        self.backend32 = backend.with_dtype("float32")
        xp = backend.xp
        self.params = params
        self.master = [xp.astype(p, xp.float32, copy=True) for p in params]
        self.scale = self.backend32.asarray([init_scale])[0]
        self.good_steps = self.backend32.zeros(())
        self.growth_interval = growth_interval
        self.optimizer = None

    @classmethod
    def for_dtype(cls, backend, params) -> LossScaleOptimizer:
        """Dynamic scaling for float16; a fixed scale of 1 for bfloat16."""
        if backend.dtype_name == "bfloat16":
            return cls(backend, params, init_scale=1.0, growth_interval=2**62)
        return cls(backend, params)

    def attach(self, optimizer, shapes=None) -> None:
        """Wrap ``optimizer``, bound to the float32 master weights (``shapes``: the
        parameters' shapes when the master weights are one flat buffer, as
        :meth:`Optimizer.attach` takes them)."""
        optimizer.attach(self.master, self.backend32, shapes)
        self.optimizer = optimizer

    def saved_arrays(self) -> list:
        return self.optimizer.saved_arrays() + list(self.master)

    @property
    def loss_scale(self) -> float:
        """The current loss scale (reads the device)."""
        return float(self.scale)

    def in_sync(self) -> bool:
        """True when the 16-bit parameters still equal the rounded master weights."""
        xp = self.backend16.xp
        return all(bool(xp.all(xp.astype(m, p.dtype) == p))
                   for m, p in zip(self.master, self.params))

    def loss_gradient(self, grad):
        """``grad * scale`` in the 16-bit dtype (an overflow becomes inf: step skipped)."""
        xp = self.backend16.xp
        return xp.astype(xp.astype(grad, xp.float32) * self.scale, grad.dtype)

    def step(self, params: list, grads: list, loss=None, finite=None) -> None:
        """Unscale ``grads``, update the master weights unless they overflowed, round back
        into ``params`` (the 16-bit arrays this wrapper was built on). An overflow shows in
        the gradients; the loss itself is not consulted."""
        xp = self.backend32.xp
        inv = 1.0 / self.scale
        g32 = [xp.astype(g, xp.float32) * inv for g in grads]
        ok = _all_finite(xp, g32, finite)
        g32 = [xp.where(ok, g, xp.zeros_like(g)) for g in g32]
        masked_step(self.optimizer, self.master, g32, ok)
        for p, m in zip(self.params, self.master):
            p[...] = xp.astype(m, p.dtype)
        self.good_steps = xp.where(ok, self.good_steps + 1.0, xp.zeros_like(self.good_steps))
        grow = self.good_steps >= float(self.growth_interval)
        self.scale = xp.where(ok, xp.where(grow, self.scale * 2.0, self.scale),
                              self.scale * 0.5)
        self.good_steps = xp.where(grow, xp.zeros_like(self.good_steps), self.good_steps)

    def to(self, backend, params) -> None:
        """Follow the model to another device (master weights keep their precision)."""
        b32 = backend.with_dtype("float32")
        old = self.backend32
        cross = not same_device(b32, old)

        def move(a):
            return b32.asarray(host_array(a) if cross else a, dtype="float32")

        self.master = [move(m) for m in self.master]
        self.scale, self.good_steps = move(self.scale), move(self.good_steps)
        self.backend16, self.backend32, self.params = backend, b32, params
