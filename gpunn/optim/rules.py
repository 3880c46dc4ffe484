"""Update rules: SGD (momentum, Nesterov), Adam/AdamW (one core), RMSprop, Adagrad.

Each rule validates its settings, names its state arrays, builds the step's constants
(in double precision, :mod:`gpunn.backend.hyper`) and owns its generic update (Array API
calls only); a backend's faster version, registered under the rule's ``kind``, runs
instead where there is one (see :meth:`gpunn.optim.Optimizer.step`). Variants are
parameters of one core (AdamW is Adam with ``decoupled=True``).
"""

from __future__ import annotations

from ..backend.hyper import AdagradStep, AdamStep, RMSpropStep, SGDStep
from ..errors import flag
from .base import Optimizer, _real, register


@register("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    ``v = momentum * v + g``; ``p -= lr * (g + momentum * v if nesterov else v)``, with
    ``g`` including ``weight_decay * p`` (PyTorch's convention, dampening 0).

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float in [0, 1), default 0
    nesterov : bool, default False
    weight_decay : float, default 0
    clip_norm : float, optional
    """

    kind = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_norm)
        self.momentum = _real(momentum, "SGD momentum", 0.0, 1.0)
        self.nesterov = flag(nesterov, "SGD nesterov")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("SGD nesterov: needs momentum > 0, got momentum=0")
        self.state_keys = ("velocity",) if self.momentum else ()

    def hyper(self):
        return {**super().hyper(), "momentum": self.momentum, "nesterov": self.nesterov}

    def step_constants(self):
        return SGDStep(self.lr, self.momentum, self.weight_decay, self.nesterov, self.t)

    def update(self, xp, p, g, state, hp):
        if hp.weight_decay:
            g = g + hp.weight_decay * p
        if hp.momentum:
            velocity = state["velocity"]
            velocity[...] = hp.momentum * velocity + g
            g = g + hp.momentum * velocity if hp.nesterov else velocity
        p[...] = p - hp.lr * g


@register("adam")
class Adam(Optimizer):
    """Adam, and AdamW through ``decoupled=True``.

    ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected ``m_hat``, ``v_hat``.
    Weight decay is added to ``g`` (Adam) or applied as ``p *= 1 - lr * wd`` (AdamW).

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled : bool, default False
    clip_norm : float, optional
    """

    kind = "adam"
    state_keys = ("m", "v")
    nonnegative_state = ("v",)

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False,
                 clip_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_norm)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{type(self).__name__} betas: expected a pair (beta1, beta2), "
                             f"got {betas!r}")
        self.betas = (_real(betas[0], "Adam beta1", 0.0, 1.0),
                      _real(betas[1], "Adam beta2", 0.0, 1.0))
        self.eps = _real(eps, "Adam eps", 0.0, low_open=True)
        self.decoupled = flag(decoupled, f"{type(self).__name__} decoupled")

    def hyper(self):
        return {**super().hyper(), "betas": list(self.betas), "eps": self.eps,
                "decoupled": self.decoupled}

    def step_constants(self):
        return AdamStep.at(self.t, self.lr, self.betas, self.eps, self.weight_decay,
                           self.decoupled)

    def update(self, xp, p, g, state, hp):
        m, v = state["m"], state["v"]
        if hp.weight_decay:
            if hp.decoupled:
                p[...] = p * hp.decay
            else:
                g = g + hp.weight_decay * p
        # The bias corrections are folded into step_size and eps_hat (AdamStep.at).
        m[...] = m + hp.one_minus_b1 * (g - m)
        v[...] = v + hp.one_minus_b2 * (g * g - v)
        p[...] = p - (m / (xp.sqrt(v) + hp.eps_hat)) * hp.step_size


@register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter); ``weight_decay`` 0.01."""

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, decoupled: bool = True,
                 clip_norm: float | None = None):
        super().__init__(lr, betas, eps, weight_decay, decoupled, clip_norm)


@register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop: ``v = alpha v + (1-alpha) g^2``; ``p -= lr * g / (sqrt(v) + eps)``.

    Parameters
    ----------
    lr : float, default 0.01
    alpha : float in [0, 1), default 0.99
    eps : float, default 1e-8
    momentum : float in [0, 1), default 0
    weight_decay : float, default 0
    clip_norm : float, optional
    """

    kind = "rmsprop"
    nonnegative_state = ("square_avg",)

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 clip_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_norm)
        self.alpha = _real(alpha, "RMSprop alpha", 0.0, 1.0)
        self.eps = _real(eps, "RMSprop eps", 0.0, low_open=True)
        self.momentum = _real(momentum, "RMSprop momentum", 0.0, 1.0)
        self.state_keys = ("square_avg", "velocity") if self.momentum else ("square_avg",)

    def hyper(self):
        return {**super().hyper(), "alpha": self.alpha, "eps": self.eps,
                "momentum": self.momentum}

    def step_constants(self):
        return RMSpropStep(self.lr, self.alpha, 1.0 - self.alpha, self.eps, self.momentum,
                           self.weight_decay, self.t)

    def update(self, xp, p, g, state, hp):
        if hp.weight_decay:
            g = g + hp.weight_decay * p
        square_avg = state["square_avg"]
        square_avg[...] = hp.alpha * square_avg + hp.one_minus_alpha * (g * g)
        step = g / (xp.sqrt(square_avg) + hp.eps)
        if hp.momentum:
            velocity = state["velocity"]
            velocity[...] = hp.momentum * velocity + step
            step = velocity
        p[...] = p - hp.lr * step


@register("adagrad")
class Adagrad(Optimizer):
    """Adagrad: ``s += g^2``; ``p -= lr_t * g / (sqrt(s) + eps)`` with
    ``lr_t = lr / (1 + (t - 1) * lr_decay)`` (PyTorch's definition).

    Parameters
    ----------
    lr : float, default 0.01
    lr_decay : float >= 0, default 0
    eps : float, default 1e-10
    initial_accumulator_value : float >= 0, default 0
    weight_decay : float, default 0
    clip_norm : float, optional
    """

    kind = "adagrad"
    state_keys = ("sum_sq",)
    nonnegative_state = ("sum_sq",)

    def __init__(self, lr: float = 0.01, lr_decay: float = 0.0, eps: float = 1e-10,
                 initial_accumulator_value: float = 0.0, weight_decay: float = 0.0,
                 clip_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_norm)
        self.lr_decay = _real(lr_decay, "Adagrad lr_decay", 0.0)
        self.eps = _real(eps, "Adagrad eps", 0.0, low_open=True)
        self.initial_accumulator_value = _real(initial_accumulator_value,
                                               "Adagrad initial_accumulator_value", 0.0)

    def hyper(self):
        return {**super().hyper(), "lr_decay": self.lr_decay, "eps": self.eps,
                "initial_accumulator_value": self.initial_accumulator_value}

    def _init_state(self, params, backend) -> None:
        super()._init_state(params, backend)
        if self.initial_accumulator_value:
            for s in self.state:
                s["sum_sq"][...] = self.initial_accumulator_value

    def step_constants(self):
        return AdagradStep(self.lr / (1.0 + (self.t - 1) * self.lr_decay), self.eps,
                           self.weight_decay)

    def update(self, xp, p, g, state, hp):
        if hp.weight_decay:
            g = g + hp.weight_decay * p
        sum_sq = state["sum_sq"]
        sum_sq[...] = sum_sq + g * g
        p[...] = p - hp.lr * (g / (xp.sqrt(sum_sq) + hp.eps))

