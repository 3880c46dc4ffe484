"""Optimisers: SGD (momentum, Nesterov), Adam/AdamW (one core), RMSprop.

Each algorithm is written once as generic array maths (``_generic_*``). A backend may
supply a fused in-place kernel for an algorithm through ``backend.optimizer_kernel(kind)``
(NumPy: ``out=`` ufuncs); the scalar flags below select the variant, so one kernel
serves e.g. Adam and AdamW. Parameters are updated in place: references users hold to
``layer.params[...]`` stay valid.
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import describe, lookup


def _real(value, what: str, low: float, high: float = float("inf"), *, low_open=False,
          high_open=True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        ok = ok and v == v
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{what}: expected a number in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: state handling, device moves and checkpoints.

    Parameters
    ----------
    lr : float > 0
    weight_decay : float >= 0
        L2 penalty added to the gradient (decoupled for AdamW).
    clip_norm : float > 0, optional
        Rescale the gradients so their global L2 norm (over all parameters) is at most
        this, before each update. Computed on the device: no host sync.
    """

    kind = "base"
    _state_keys: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0, clip_norm: float | None = None):
        self.lr = _real(lr, f"{type(self).__name__} lr", 0.0, low_open=True)
        self.weight_decay = _real(weight_decay, f"{type(self).__name__} weight_decay", 0.0)
        self.clip_norm = None if clip_norm is None else _real(
            clip_norm, f"{type(self).__name__} clip_norm", 0.0, low_open=True)
        #: Global gradient norm of the last step (0-d device array) when clipping.
        self.last_grad_norm = None
        self.t = 0
        self.state: list[dict] = []
        self._shapes: list[tuple] = []
        self.backend = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper().items())
        return f"{type(self).__name__}({args})"

    def hyper(self) -> dict:
        """Hyper-parameters as plain Python values."""
        return {"lr": self.lr, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm}

    def _clip(self, grads: list) -> list:
        """Gradients scaled to a global norm of at most ``clip_norm``."""
        xp = self.backend.xp
        total = None
        for g in grads:
            part = xp.sum(g * g)
            total = part if total is None else total + part
        self.last_grad_norm = norm = xp.sqrt(total)
        factor = xp.clip(self.clip_norm / (norm + 1e-6), max=1.0)
        return [g * xp.astype(factor, g.dtype) for g in grads]

    def _init_state(self, params, backend) -> None:
        self.backend = backend
        self._shapes = [tuple(p.shape) for p in params]
        self.state = [{k: backend.zeros(tuple(p.shape), dtype=p.dtype) for k in self._state_keys}
                      for p in params]

    def attach(self, params: list, backend) -> None:
        """Bind to a model's parameters on ``backend``.

        Existing state of matching shapes (continued training, or a loaded
        ``state_dict``) is kept and moved to ``backend``; otherwise fresh zero state is
        allocated, which is only allowed before the first step.
        """
        matches = len(self.state) == len(params) and all(
            tuple(v.shape) == tuple(p.shape) for s, p in zip(self.state, params)
            for v in s.values())
        if matches and (self.state or not self._state_keys or not params):
            self.to(backend)
            self._shapes = [tuple(p.shape) for p in params]
        elif not self.t or not self._state_keys:
            self._init_state(params, backend)  # nothing learned yet, or nothing to keep
        elif self._same_size(params):
            self._relayout(params, backend)
        else:
            raise ValueError(f"{type(self).__name__}: the parameter list changed after "
                             f"{self.t} step(s); create a new optimiser for a new model")

    def _same_size(self, params) -> bool:
        key = self._state_keys[0]
        have = sum(int(s[key].size) for s in self.state)
        return bool(self.state) and have == sum(int(p.size) for p in params)

    def _relayout(self, params, backend) -> None:
        """Re-cut the state for another grouping of the same parameters.

        A model keeps its parameters in one flat buffer on NumPy and CuPy but as separate
        arrays elsewhere; the element order is the same, so the state is concatenated and
        split again (on the host: this happens once per device move, not per step).
        """
        old = self.backend
        to_host = old.to_numpy if old is not None else np.asarray
        new_state = [{} for _ in params]
        for key in self._state_keys:
            flat = np.concatenate([np.ravel(to_host(s[key])) for s in self.state])
            offset = 0
            for entry, p in zip(new_state, params):
                n = int(p.size)
                entry[key] = backend.asarray(flat[offset:offset + n].reshape(tuple(p.shape)),
                                             dtype=backend.dtype)
                offset += n
        self.state, self.backend = new_state, backend
        self._shapes = [tuple(p.shape) for p in params]

    def _begin_step(self, params: list, grads: list) -> list:
        """Bind to ``params`` if needed, count the step, clip: the gradients to apply."""
        if self.backend is None or [tuple(p.shape) for p in params] != self._shapes:
            from .backend import get_backend

            self.attach(params, self.backend or get_backend(_namespace_of(params[0])))
        self.t += 1
        return self._clip(grads) if self.clip_norm is not None else grads

    def step(self, params: list, grads: list) -> None:
        """Apply one update to ``params`` in place.

        Parameters
        ----------
        params, grads : list of arrays
            Same order and shapes on every call (the optimiser's state is positional).
        """
        grads = self._begin_step(params, grads)
        kernel = self.backend.optimizer_kernel(self.kind, params[0].dtype) if params else None
        hp = self._step_scalars()
        for p, g, s in zip(params, grads, self.state):
            if kernel is None or kernel(p, g, s, hp) is False:
                p[...] = self._generic(self.backend.xp, p, g, s, hp)

    def masked_step(self, params: list, grads: list, ok) -> None:
        """Like :meth:`step`, but parameters and state change only where the 0-d device
        flag ``ok`` is true (mixed precision skips overflowed steps without a host sync).
        Always the generic maths: the selection needs the old and new values side by side.
        """
        grads = self._begin_step(params, grads)
        xp = self.backend.xp
        hp = self._step_scalars()
        for p, g, s in zip(params, grads, self.state):
            old = dict(s)
            new = self._generic(xp, p, g, s, hp)
            for key in s:
                s[key] = xp.where(ok, s[key], old[key])
            p[...] = xp.where(ok, new, p)

    def _step_scalars(self) -> dict:
        return self.hyper()

    def _generic(self, xp, p, g, s, hp):
        raise NotImplementedError

    # ------------------------------------------------------------------ devices & checkpoints
    def to(self, backend) -> Optimizer:
        """Move the optimiser state onto ``backend`` (with the model's parameters)."""
        old = self.backend
        cross = old is not None and not backend.same_device(old)
        # Unattached state (old is None) is host NumPy, which asarray moves as it is.
        self.state = [{k: backend.asarray(old.to_numpy(v) if cross else v, dtype=backend.dtype)
                       for k, v in s.items()} for s in self.state]
        self.backend = backend
        return self

    def state_dict(self) -> dict:
        """Hyper-parameters, step count and state as host (NumPy) arrays."""
        to_host = self.backend.to_numpy if self.backend else np.asarray
        return {"kind": self.kind, "hyper": self.hyper(), "t": self.t,
                "state": [{k: np.array(to_host(v)) for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned; validates before changing anything."""
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            got = state.get("kind") if isinstance(state, dict) else describe(state)
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected a state of "
                             f"kind {self.kind!r}, got {got!r}")
        fresh = type(self)(**state["hyper"])
        for i, s in enumerate(state["state"]):
            if set(s) != set(fresh._state_keys):
                raise ValueError(f"{type(self).__name__}.load_state_dict: entry {i} has keys "
                                 f"{sorted(s)}, expected {sorted(fresh._state_keys)}")
        self.__dict__.update({k: v for k, v in fresh.__dict__.items()
                              if k not in ("state", "backend", "t", "_shapes")})
        self.t = int(state["t"])
        self.state = [{k: np.array(v) for k, v in s.items()} for s in state["state"]]
        if self.backend is not None:
            backend, self.backend = self.backend, None
            self.to(backend)


def _namespace_of(a):
    import array_api_compat

    return array_api_compat.array_namespace(a)


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
    """

    kind = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_norm)
        self.momentum = _real(momentum, "SGD momentum", 0.0, 1.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("SGD nesterov: needs momentum > 0, got momentum=0")
        self._state_keys = ("velocity",) if self.momentum else ()

    def hyper(self):
        return {**super().hyper(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _generic(self, xp, p, g, s, hp):
        if hp["weight_decay"]:
            g = g + hp["weight_decay"] * p
        if hp["momentum"]:
            s["velocity"] = v = hp["momentum"] * s["velocity"] + g
            g = g + hp["momentum"] * v if hp["nesterov"] else v
        return p - hp["lr"] * g


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
    """

    kind = "adam"
    _state_keys = ("m", "v")

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
        self.decoupled = bool(decoupled)

    def hyper(self):
        return {**super().hyper(), "betas": list(self.betas), "eps": self.eps,
                "decoupled": self.decoupled}

    def _step_scalars(self):
        b1, b2 = self.betas
        # Bias corrections folded into two host scalars: no extra array pass per step.
        return {**self.hyper(), "b1": b1, "b2": b2, "c1": 1.0 - b1 ** self.t,
                "c2": 1.0 - b2 ** self.t}

    def _generic(self, xp, p, g, s, hp):
        if hp["weight_decay"]:
            if hp["decoupled"]:
                p = p * (1.0 - hp["lr"] * hp["weight_decay"])
            else:
                g = g + hp["weight_decay"] * p
        s["m"] = m = hp["b1"] * s["m"] + (1.0 - hp["b1"]) * g
        s["v"] = v = hp["b2"] * s["v"] + (1.0 - hp["b2"]) * (g * g)
        denom = xp.sqrt(v * (1.0 / hp["c2"])) + hp["eps"]
        return p - (hp["lr"] / hp["c1"]) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter); ``weight_decay`` 0.01."""

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, decoupled: bool = True,
                 clip_norm: float | None = None):
        super().__init__(lr, betas, eps, weight_decay, decoupled, clip_norm)


class RMSprop(Optimizer):
    """RMSprop: ``v = alpha v + (1-alpha) g^2``; ``p -= lr * g / (sqrt(v) + eps)``.

    Parameters
    ----------
    lr : float, default 0.01
    alpha : float in [0, 1), default 0.99
    eps : float, default 1e-8
    momentum : float in [0, 1), default 0
    weight_decay : float, default 0
    """

    kind = "rmsprop"

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 clip_norm: float | None = None):
        super().__init__(lr, weight_decay, clip_norm)
        self.alpha = _real(alpha, "RMSprop alpha", 0.0, 1.0)
        self.eps = _real(eps, "RMSprop eps", 0.0, low_open=True)
        self.momentum = _real(momentum, "RMSprop momentum", 0.0, 1.0)
        self._state_keys = ("square_avg", "velocity") if self.momentum else ("square_avg",)

    def hyper(self):
        return {**super().hyper(), "alpha": self.alpha, "eps": self.eps,
                "momentum": self.momentum}

    def _generic(self, xp, p, g, s, hp):
        if hp["weight_decay"]:
            g = g + hp["weight_decay"] * p
        s["square_avg"] = v = hp["alpha"] * s["square_avg"] + (1.0 - hp["alpha"]) * (g * g)
        step = g / (xp.sqrt(v) + hp["eps"])
        if hp["momentum"]:
            s["velocity"] = step = hp["momentum"] * s["velocity"] + step
        return p - hp["lr"] * step


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(name, **kwargs) -> Optimizer:
    """An optimiser by name (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``) or as given.

    Raises
    ------
    ValueError
        Unknown name, listing the valid ones.
    """
    return lookup("optimizer", name, OPTIMIZERS, Optimizer, **kwargs)
