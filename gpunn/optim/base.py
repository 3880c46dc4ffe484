"""The optimiser base: state per parameter array, the update dispatch, device moves,
checkpoints, clipping.

An update rule (gpunn.optim.rules, or a user's subclass) owns its maths: ``update`` is the
generic version in Array API calls only, and ``step_constants`` the step's frozen
hyper-parameters, derived in double precision. A backend may register a faster version of
a rule by its ``kind`` (:func:`gpunn.backend.fast_update_for`: NumPy in place or
Numba, one fused CUDA kernel); :meth:`Optimizer.step` runs that where the backend has one
for the rule and dtype, else ``update``. Parameters are updated in place: references users
hold to ``layer.params[...]`` stay valid.

The state is kept as the arrays stepped on are laid out (one flat buffer on NumPy and CuPy,
separate arrays elsewhere) and saved as one array per parameter in its shape
(:meth:`Optimizer.state_dict`), so a saved state does not depend on the buffer's alignment;
:meth:`Optimizer.attach` lays it out again for the parameters it is bound to.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from ..backend.ops import host_array, same_device
from ..errors import describe
from ..params import flat_layout


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


#: The registered optimisers by name (see :func:`register`): what ``gpunn.optim.get``,
#: ``fit(optimizer="...")``, the CLI's ``--optimizer`` and model files look names up in.
OPTIMIZERS: dict[str, type] = {}


def register(name: str):
    """Class decorator registering an :class:`Optimizer` subclass under ``name``.

    A registered optimiser is found by ``gpunn.optim.get(name)`` and ``fit(optimizer=
    name)``, offered by the CLI's ``--optimizer``, and a model file saved with it loads
    back with it (once the module defining it is imported). A class that declares no
    ``kind`` of its own gets ``name`` as its kind (the key backends register fast
    updates under); a variant of a registered rule keeps its parent's (AdamW: "adam").

    Parameters
    ----------
    name : str
        Lower case (names are looked up case-insensitively), e.g. ``"lion"``.

    Raises
    ------
    ValueError
        A name that is not a lower-case string, or one registered to another class.
    TypeError
        The decorated object is not an Optimizer subclass.
    """
    if not isinstance(name, str) or not name or name != name.lower() or \
            name != name.strip():
        raise ValueError(f"gpunn.optim.register: expected a lower-case name such as "
                         f"'lion', got {name!r}")

    def add(cls):
        if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
            raise TypeError(f"gpunn.optim.register({name!r}): expected a subclass of "
                            f"gpunn.optim.Optimizer, got {describe(cls)}")
        held = OPTIMIZERS.get(name)
        # The same class defined again (its module re-imported or reloaded) replaces it.
        if held is not None and _qualified(held) != _qualified(cls):
            raise ValueError(f"gpunn.optim.register({name!r}): the name already belongs to "
                             f"{_qualified(held)}; choose another for {_qualified(cls)}")
        missing = [m for m in ("step_constants", "update")
                   if getattr(cls, m) is getattr(Optimizer, m)
                   and cls.step is Optimizer.step]
        if missing:
            raise TypeError(f"gpunn.optim.register({name!r}): {cls.__name__} must define "
                            f"{' and '.join(missing)} (see gpunn.optim.Optimizer)")
        if cls.kind == Optimizer.kind:
            cls.kind = name
        if "name" not in vars(cls):
            cls.name = name
        OPTIMIZERS[name] = cls
        return cls

    return add


def _qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Optimizer:
    """Base class: state handling, the update dispatch, device moves and checkpoints.

    A new optimiser subclasses this, names its state arrays (:attr:`state_keys`) and
    those that can never be negative (:attr:`nonnegative_state`: model files holding a
    negative one are refused), returns its settings from :meth:`hyper` (the
    constructor's keyword arguments: a saved optimiser is rebuilt from them), its
    per-step constants from :meth:`step_constants`, implements :meth:`update`, and is
    registered with :func:`register`.

    Parameters
    ----------
    lr : float > 0
    weight_decay : float >= 0
        L2 penalty added to the gradient (decoupled for AdamW).
    clip_norm : float > 0, optional
        Rescale the gradients so their global L2 norm (over all parameters) is at most
        this, before each update. Computed on the device: no host sync.
    """

    #: The update rule: what backends key their fast versions of ``update`` by and what a
    #: saved state says it belongs to (AdamW is the rule "adam" with other settings).
    kind = "base"
    #: The name it is registered under (:func:`register`), None when it is not.
    name: str | None = None
    #: Names of the per-parameter state arrays ``update`` keeps (each of its parameter's
    #: shape, zeros at the start).
    state_keys: tuple[str, ...] = ()
    #: Those of :attr:`state_keys` that can never be negative (sums of squares): a saved
    #: state holding a negative one is refused on loading.
    nonnegative_state: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0, clip_norm: float | None = None):
        self.lr = _real(lr, f"{type(self).__name__} lr", 0.0, low_open=True)
        self.weight_decay = _real(weight_decay, f"{type(self).__name__} weight_decay", 0.0)
        self.clip_norm = None if clip_norm is None else _real(
            clip_norm, f"{type(self).__name__} clip_norm", 0.0, low_open=True)
        #: Global gradient norm of the last step (0-d device array) when clipping.
        self.last_grad_norm = None
        self.t = 0
        #: The state arrays by name, one dict per array :meth:`step` updates: per
        #: parameter, or one for a flat buffer of them all.
        self.state: list[dict] = []
        self.backend = None
        # What the state covers: the parameters' shapes (None before binding), whether it
        # is one flat buffer at gpunn.params.flat_layout's offsets, and the shapes of the
        # arrays stepped on (a step with others binds again).
        self._shapes: list[tuple] | None = None
        self._flat = False
        self._buffers: list[tuple] | None = None

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
        # minimum, not clip: array-api-compat's clip indexes with boolean masks on CuPy,
        # which waits for the device.
        factor = xp.minimum(self.clip_norm / (norm + 1e-6), 1.0)
        return [g * xp.astype(factor, g.dtype) for g in grads]

    def _init_state(self, params, backend) -> None:
        self.backend = backend
        self.state = [{k: backend.zeros(tuple(p.shape), dtype=p.dtype) for k in self.state_keys}
                      for p in params]

    def attach(self, params: list, backend, shapes=None) -> None:
        """Bind to a model's parameters on ``backend``.

        Parameters
        ----------
        params : list of arrays
            What :meth:`step` will update: the parameters themselves, or one flat buffer
            holding them all, each at its offset of :func:`gpunn.params.flat_layout`
            (what ``model.store.step_lists()`` returns on NumPy and CuPy).
        backend : Backend
        shapes : list of tuple, optional
            The parameters' shapes, needed when ``params`` is a flat buffer; without it
            ``params`` are the parameters, or a flat buffer of the parameters this
            optimiser already knows.

        Existing state of the same parameters (continued training, a loaded
        ``state_dict``, another device or layout) is kept, moved to ``backend`` and laid
        out as ``params`` are; otherwise fresh zero state is allocated, which is only
        allowed before the first step.
        """
        shapes, flat = self._layout_of(params, shapes)
        if self.state_keys and shapes == self._shapes:
            with backend.context():
                self.to(backend)
                self._regroup(flat)
        elif not self.t or not self.state_keys:
            self._init_state(params, backend)  # nothing learned yet, or nothing to keep
            self._shapes, self._flat = shapes, flat
        else:
            raise ValueError(f"{type(self).__name__}: the parameter list changed after "
                             f"{self.t} step(s); create a new optimiser for a new model")
        self._buffers = [tuple(p.shape) for p in params]

    def _layout_of(self, params, shapes) -> tuple[list, bool]:
        """The parameters' shapes, and whether ``params`` is one flat buffer of them."""
        buffers = [tuple(p.shape) for p in params]
        known = shapes is None
        if known:
            shapes = self._shapes if self._shapes is not None else buffers
        shapes = [tuple(int(d) for d in s) for s in shapes]
        total = flat_layout(shapes)[1]
        if buffers == shapes or buffers == [(total,)]:
            return shapes, buffers != shapes
        if known:
            return buffers, False  # other parameters than the state's: attach decides
        raise ValueError(f"{type(self).__name__}.attach: expected the parameters (shapes "
                         f"{shapes}) or one flat buffer of {total} values holding them, got "
                         f"arrays of shapes {buffers}")

    def _regroup(self, flat: bool) -> None:
        """Cut a flat state into one array per parameter, or lay per-parameter state into
        one flat buffer (at :func:`gpunn.params.flat_layout`'s offsets, gaps zero): on the
        state's device, once per device move or change of layout, never per step."""
        if flat == self._flat:
            return
        xp, shapes = self.backend.xp, self._shapes
        offsets, total = flat_layout(shapes)
        sizes = [math.prod(s) for s in shapes]
        if self._flat:
            (whole,) = self.state
            self.state = [{k: xp.reshape(xp.asarray(a[o:o + n], copy=True), s)
                           for k, a in whole.items()}
                          for o, n, s in zip(offsets, sizes, shapes)]
        else:
            whole = {k: self.backend.zeros((total,)) for k in self.state_keys}
            for entry, o, n in zip(self.state, offsets, sizes):
                for k, a in entry.items():
                    whole[k][o:o + n] = xp.reshape(a, (n,))
            self.state = [whole]
        self._flat = flat

    def _begin_step(self, params: list, grads: list) -> list:
        """Bind to ``params`` if needed, count the step, clip: the gradients to apply."""
        if self.backend is None or [tuple(p.shape) for p in params] != self._buffers:
            from ..backend import get_backend

            self.attach(params, self.backend or get_backend(_namespace_of(params[0])))
        self.t += 1
        return self._clip(grads) if self.clip_norm is not None else grads

    def saved_arrays(self) -> list:
        """Every array of the optimiser's state (what a roll-back copies and puts back in
        place); a wrapper adds its own."""
        return [v for s in self.state for v in s.values()]

    def loss_gradient(self, grad):
        """The gradient backward starts from, given the loss's: itself (a wrapper such as
        16-bit loss scaling changes it)."""
        return grad

    def step(self, params: list, grads: list, loss=None) -> None:
        """Apply one update to ``params`` in place.

        Parameters
        ----------
        params, grads : list of arrays
            Same order and shapes on every call (the optimiser's state is positional).
        loss : 0-d array, optional
            The step's loss value (read by wrappers; a rule ignores it).
        """
        grads = self._begin_step(params, grads)
        hp = self.step_constants()
        backend = self.backend
        for p, g, s in zip(params, grads, self.state):
            fast = self._fast_update(backend, p.dtype)
            if fast is None or not fast(p, g, s, hp):
                self.update(backend.xp, p, g, s, hp)

    def _fast_update(self, backend, dtype):
        """The backend's fast version of this rule for ``dtype`` arrays, or None; looked up
        once per backend and dtype (a dtype's name costs microseconds: per step on a small
        model, that shows)."""
        last = self.__dict__.get("_fast_last")
        if last is not None and last[0] is backend and last[1] == dtype:
            return last[2]
        kind = _fast_kind(type(self), self.kind)
        fast = backend.fast_update(kind, dtype) if kind else None
        self._fast_last = (backend, dtype, fast)
        return fast

    def step_constants(self):
        """The constants of this step (``self.t`` is its number, from 1), computed once
        in double precision on the host: what :meth:`update` and a backend's fast
        version of it read (the built-in rules' named tuples are in
        :mod:`gpunn.backend.hyper`)."""
        raise NotImplementedError(f"{type(self).__name__}: an optimiser defines "
                                  "step_constants()")

    def update(self, xp, p, g, state: dict, hp) -> None:
        """The rule's generic update, in Array API calls on ``xp`` only: update ``p``
        (one parameter array, or the flat buffer holding them all) and ``state`` (its
        arrays by name, each of ``p``'s shape) in place, as ``p[...] = ...``, from the
        gradient ``g`` and this step's constants ``hp``."""
        raise NotImplementedError(f"{type(self).__name__}: an optimiser defines "
                                  "update(xp, p, g, state, hp)")

    # ------------------------------------------------------------------ devices & checkpoints
    def to(self, backend) -> Optimizer:
        """Move the optimiser state onto ``backend`` (with the model's parameters)."""
        old = self.backend
        cross = old is not None and not same_device(backend, old)
        # Unattached state (old is None) is host NumPy, which asarray moves as it is.
        self.state = [{k: backend.asarray(host_array(v) if cross else v, dtype=backend.dtype)
                       for k, v in s.items()} for s in self.state]
        self.backend = backend
        return self

    def state_dict(self) -> dict:
        """Hyper-parameters, step count and state: one dict of host (NumPy) arrays per
        parameter, each array in its parameter's shape, whatever the buffers stepped on
        (the alignment gaps of a flat buffer are not state)."""
        host = [{k: np.array(host_array(v)) for k, v in s.items()} for s in self.state]
        if self._flat:
            (whole,) = host
            offsets, _ = flat_layout(self._shapes)
            host = [{k: a[o:o + math.prod(s)].reshape(s) for k, a in whole.items()}
                    for o, s in zip(offsets, self._shapes)]
        return {"kind": self.kind, "hyper": self.hyper(), "t": self.t, "state": host}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned; validates before changing anything.
        Bound to parameters of the same shapes, the optimiser stays bound to them."""
        name = type(self).__name__
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            got = state.get("kind") if isinstance(state, dict) else describe(state)
            raise ValueError(f"{name}.load_state_dict: expected a state of kind "
                             f"{self.kind!r}, got {got!r}")
        fresh = type(self)(**state["hyper"])
        for i, s in enumerate(state["state"]):
            if set(s) != set(fresh.state_keys):
                raise ValueError(f"{name}.load_state_dict: entry {i} has keys {sorted(s)}, "
                                 f"expected {sorted(fresh.state_keys)}")
            if len({tuple(np.shape(v)) for v in s.values()}) > 1:
                raise ValueError(f"{name}.load_state_dict: entry {i} holds arrays of "
                                 f"shapes {[tuple(np.shape(v)) for v in s.values()]}; "
                                 "expected one shape, its parameter's")
        backend, shapes, flat = self.backend, self._shapes, self._flat
        self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k not in _BOUND})
        self.t = int(state["t"])
        self.state = [{k: np.array(v) for k, v in s.items()} for s in state["state"]]
        self._shapes = [tuple(next(iter(s.values())).shape) for s in self.state] \
            if self.state_keys else None
        self._flat, self._buffers = False, None  # the next step binds again
        if backend is not None and self.state_keys and self._shapes == shapes:
            with backend.context():
                self.to(backend)
                self._regroup(flat)
            self._buffers = [(flat_layout(shapes)[1],)] if flat else shapes


#: What binds an optimiser to parameters (kept by load_state_dict, which sets the rest).
_BOUND = ("state", "backend", "t", "_shapes", "_flat", "_buffers")


@functools.cache
def _fast_kind(cls, kind: str) -> str | None:
    """The kind whose registered fast paths compute ``cls``'s update: its own, unless a
    subclass replaced ``update`` and kept the kind it inherited (a fused kernel would run
    the parent's maths instead of the subclass's)."""
    owner = next(c for c in cls.__mro__ if "update" in vars(c))
    return kind if vars(owner).get("kind") == kind else None


def _namespace_of(a):
    import array_api_compat

    return array_api_compat.array_namespace(a)
