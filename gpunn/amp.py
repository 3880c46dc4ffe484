"""Float16 training: float32 master weights and dynamic loss scaling.

A model built with ``dtype="float16"`` runs forward and backward in half precision (half
the memory traffic, tensor cores on GPUs) while the optimiser updates a float32 copy of
the weights, so small updates are not rounded away. The loss gradient is multiplied by a
scale before backward so that small gradients survive float16; gradients are unscaled in
float32, and a step whose gradients overflowed is skipped and the scale halved. The scale
doubles after ``growth_interval`` clean steps.

Every decision stays on the device (``where`` on a 0-d flag): no host sync per step.
A skipped step leaves weights and optimiser moments untouched, but still counts toward
Adam's bias-correction step number.
"""

from __future__ import annotations


class MixedPrecision:
    """Master weights and loss scale for float16 parameters.

    Parameters
    ----------
    backend : Backend
        The model's float16 backend.
    params : list of arrays
        The float16 parameters (the model's flat buffer, or one array per parameter).
    init_scale : float, default 2**15
        Largest power of two that float16 can hold; the first overflow halves it.
    growth_interval : int, default 2000
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

    @property
    def loss_scale(self) -> float:
        """The current loss scale (reads the device)."""
        return float(self.scale)

    def in_sync(self) -> bool:
        """True when the float16 parameters still equal the rounded master weights."""
        xp = self.backend16.xp
        return all(bool(xp.all(xp.astype(m, p.dtype) == p))
                   for m, p in zip(self.master, self.params))

    def scale_grad(self, grad):
        """``grad * scale`` in float16 (an overflow becomes inf and skips the step)."""
        xp = self.backend16.xp
        return xp.astype(xp.astype(grad, xp.float32) * self.scale, grad.dtype)

    def step(self, optimizer, grads) -> None:
        """Unscale ``grads``, update the master weights unless they overflowed, round back.

        Parameters
        ----------
        optimizer : Optimizer
            Attached to :attr:`master` (float32).
        grads : list of float16 arrays matching :attr:`params`
        """
        xp = self.backend32.xp
        inv = 1.0 / self.scale
        g32 = [xp.astype(g, xp.float32) * inv for g in grads]
        ok = None
        for g in g32:
            finite = xp.all(xp.isfinite(g))
            ok = finite if ok is None else xp.logical_and(ok, finite)
        g32 = [xp.where(ok, g, xp.zeros_like(g)) for g in g32]
        optimizer.masked_step(self.master, g32, ok)
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
        cross = not b32.same_device(old)

        def move(a):
            return b32.asarray(old.to_numpy(a) if cross else a, dtype="float32")

        self.master = [move(m) for m in self.master]
        self.scale, self.good_steps = move(self.scale), move(self.good_steps)
        self.backend16, self.backend32, self.params = backend, b32, params
