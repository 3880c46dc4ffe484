"""The registry of fast optimiser updates: backends register faster versions of the
optimiser rules' generic updates, keyed by the rule's ``kind`` string.

An update rule (gpunn.optim.rules, or a user's optimiser) owns its maths as generic Array
API code; a backend subclass marks a method with :func:`fast_update_for` to say "for rule
``kind`` in these dtypes, this is faster" (in-place NumPy, Numba, one fused CUDA kernel).
:meth:`FastUpdates.fast_update` is what the optimiser asks at each step. The backend knows
rules only by their kind: it imports nothing from gpunn.optim. The parity tests iterate
:meth:`FastUpdates.fast_updates`, so no registered fast path goes untested.
"""

from __future__ import annotations


def fast_update_for(kind: str, dtypes: tuple[str, ...]):
    """Register the decorated backend method as a faster version of the optimiser update
    rule ``kind`` (``"adam"``, ``"sgd"``, ...) for arrays of ``dtypes`` (names such as
    ``"float32"``).

    The method is called as ``method(p, g, state, hp)``: it updates the parameter ``p``
    and the rule's state arrays (``state``, a dict by name) in place from the gradient
    ``g`` and the step's constants ``hp`` (what the rule's ``step_constants`` returns,
    read by attribute), and returns True; or it returns False, having changed nothing,
    where it cannot run on these arrays (a layout it has no kernel for, kernels turned
    off), and the rule's generic update runs instead.
    """
    dtypes = tuple(dtypes)

    def mark(method):
        method._fast_update_for = (kind, dtypes)
        return method

    return mark


class FastUpdates:
    """What :class:`gpunn.backend.Backend` holds of the registry: the marked methods of
    each subclass, collected when the class is defined (a subclass inherits its parent's
    and may replace them)."""

    #: Rule kind -> (method name, dtype names).
    _fast_updates: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        table = dict(cls._fast_updates)
        for attr, value in vars(cls).items():
            mark = getattr(value, "_fast_update_for", None)
            if mark is not None:
                table[mark[0]] = (attr, mark[1])
        cls._fast_updates = table

    @classmethod
    def fast_updates(cls) -> dict[str, tuple[str, ...]]:
        """The update rules this backend runs faster: ``{kind: dtype names}`` (empty for
        the generic backend)."""
        return {kind: dtypes for kind, (_, dtypes) in cls._fast_updates.items()}

    def fast_update(self, kind: str, dtype):
        """This backend's faster version of the update rule ``kind`` for arrays of
        ``dtype`` (see :func:`fast_update_for`), or None: then the rule's generic update
        runs."""
        entry = self._fast_updates.get(kind)
        if entry is None or _dtype_name(dtype) not in entry[1]:
            return None
        return getattr(self, entry[0])


def _dtype_name(dtype) -> str:
    """``"float32"`` for a dtype (``np.dtype``), a scalar type (``np.float32``) or a
    namespace's dtype object (``array_api_strict.float32``)."""
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    return name.rsplit(".", 1)[-1]
