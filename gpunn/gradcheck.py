"""Gradient checking by central differences in float64.

Backpropagation is easy to get subtly wrong; comparing it with
``(L(p + eps) - L(p - eps)) / (2 eps)`` for every parameter (and the input) catches that.
The check runs on a float64 copy of the model on the model's own backend, so the model
itself is never modified.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import losses as _losses
from .backend.ops import host_array


@dataclass
class GradcheckResult:
    """Outcome of :func:`gradcheck`.

    Attributes
    ----------
    ok : bool
        Every checked entry satisfied ``|a - n| <= atol + rtol * |n|``.
    max_abs_error : float
    max_rel_error : float
        ``max |a - n| / max(|a| + |n|, 1e-12)`` (the classic CS231n ratio).
    errors : dict of str -> float
        Largest absolute error per checked array (``"dense_0.W"`` for a named layer, the
        parameter's path ``"2.0.W"`` otherwise, ``"input"``).
    checked : int
        Number of entries compared.
    """

    ok: bool
    max_abs_error: float
    max_rel_error: float
    errors: dict = field(default_factory=dict)
    checked: int = 0

    def __bool__(self) -> bool:
        return self.ok


class _ProjectionLoss:
    """``L = sum(out * w)`` for a fixed random ``w``: checks every output direction."""

    def __init__(self, xp, weights):
        self.xp, self.weights = xp, weights

    def forward(self, out, target=None):
        return self.xp.sum(out * self.weights)

    def backward(self):
        return self.weights


def _as_tree(obj):
    """The layer tree to check (a model's own tree, deep-copied later) and its backend."""
    from .layers import Layer

    if isinstance(obj, Layer):
        if obj.backend is None:
            raise ValueError(f"gradcheck: {obj.label} is not built; call layer.build(backend)")
        return obj, obj.backend
    raise TypeError(f"gradcheck: expected a Sequential or a Layer, got {type(obj).__name__}")


def _check_name(path: str, layer, key: str) -> str:
    """``"<layer name>.<key>"`` for a named layer of the model itself (``"dense_0.W"``,
    unique there), else the parameter's path (``"3.0.0.W"``: nested blocks may reuse a
    name)."""
    return f"{layer.name}.{key}" if layer.name and path.count(".") == 1 else path


def gradcheck(model, x, y=None, loss="mse", *, eps: float = 1e-6, rtol: float = 1e-5,
              atol: float = 1e-8, check_input: bool = True, max_checks: int | None = None,
              seed: int = 0) -> GradcheckResult:
    """Compare backpropagated gradients with central finite differences.

    Parameters
    ----------
    model : Sequential or Layer
        A built model or layer (blocks included); its whole tree is deep-copied to
        float64 and checked layer by layer, never modified.
    x : (batch, in_features) array-like
    y : array-like, optional
        Targets for ``loss``. Without ``y`` the loss is ``sum(output * w)`` with a fixed
        random ``w`` of the output's shape.
    loss : str or Loss, default "mse"
    eps : float
        Finite-difference step.
    rtol, atol : float
        Tolerances of the comparison.
    check_input : bool
        Also check the gradient with respect to ``x``.
    max_checks : int, optional
        Compare at most this many randomly chosen entries per array.
    seed : int

    Returns
    -------
    GradcheckResult
        Truthy when the check passed.

    Examples
    --------
    >>> import gpunn as gn
    >>> net = gn.Sequential([gn.Dense(3, 4, activation="tanh"), gn.Dense(4, 2)],
    ...                     device="cpu", seed=0)
    >>> bool(gn.gradcheck(net, [[0.1, -0.2, 0.3]]))
    True
    """
    tree, backend = _as_tree(model)
    b64 = backend.with_dtype("float64")
    xp = b64.xp
    rng = np.random.default_rng(seed)
    with b64.context():  # on cuda:N, the float64 copies must be made on GPU N
        # A deep copy of the real tree (blocks and the layers inside them), so the check
        # sees exactly the model's maths and never touches its arrays.
        from .layers import Block

        copy = Block([child.clone(b64) for child in tree.layers]) \
            if isinstance(tree, Block) else tree.clone(b64)
        x = b64.asarray(x)
        if b64.is_floating(x.dtype):
            x = b64.asarray(x, dtype="float64")
        else:  # indices (an Embedding first): they have no gradient to check
            check_input = False

        def run_forward():
            return copy.forward(x, training=False)

        out = run_forward()
        if y is None:
            loss_obj = _ProjectionLoss(xp, b64.asarray(rng.standard_normal(tuple(out.shape))))
        else:
            loss_obj = _losses.get(loss)
            y = b64.asarray(y)

        def loss_value() -> float:
            # Layer penalties (kernel_l2) are part of the loss their gradients include.
            total = float(loss_obj.forward(run_forward(), y))
            penalty = copy.regularization_loss()
            return total + (float(penalty) if penalty is not None else 0.0)

        loss_obj.forward(out, y)
        grad = copy.backward(loss_obj.backward())
        checks = [(_check_name(path, layer, key), layer.params[key], layer.grads[key])
                  for path, layer, key in copy.named_parameters()]
        if check_input:
            checks.append(("input", x, grad))

        return _compare(b64, checks, loss_value, rng, eps, atol, rtol, max_checks)


def _compare(b64, checks, loss_value, rng, eps, atol, rtol, max_checks) -> GradcheckResult:
    """Each analytic gradient against central differences of ``loss_value``."""
    xp = b64.xp
    errors, max_abs, max_rel, ok, count = {}, 0.0, 0.0, True, 0
    for name, array, analytic in checks:
        analytic = host_array(analytic)
        shape = tuple(array.shape)
        flat = np.arange(int(np.prod(shape)))
        if max_checks is not None and flat.size > max_checks:
            flat = rng.choice(flat, size=max_checks, replace=False)
        worst = 0.0
        for f in flat:
            idx = tuple(int(i) for i in np.unravel_index(int(f), shape))
            orig = xp.asarray(array[idx], copy=True)
            array[idx] = orig + eps
            plus = loss_value()
            array[idx] = orig - eps
            minus = loss_value()
            array[idx] = orig
            numeric = (plus - minus) / (2 * eps)
            a = float(analytic[idx])
            err = abs(a - numeric)
            worst = max(worst, err)
            max_rel = max(max_rel, err / max(abs(a) + abs(numeric), 1e-12))
            ok = ok and err <= atol + rtol * abs(numeric)
            count += 1
        errors[name] = worst
        max_abs = max(max_abs, worst)
    return GradcheckResult(ok, max_abs, max_rel, errors, count)


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar function of a float64 NumPy array.

    Parameters
    ----------
    f : callable ``(x) -> float``
    x : ndarray (any shape), float64

    Returns
    -------
    ndarray of ``x``'s shape
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        orig = x[idx]
        x[idx] = orig + eps
        plus = f(x)
        x[idx] = orig - eps
        minus = f(x)
        x[idx] = orig
        grad[idx] = (plus - minus) / (2 * eps)
    return grad
