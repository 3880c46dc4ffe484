"""Optimisers: SGD (momentum, Nesterov), Adam/AdamW, RMSprop, Adagrad; wrappers that skip
non-finite steps and scale the loss for 16-bit training.

Each rule in :mod:`gpunn.optim.rules` owns its maths: a generic update in Array API calls
only. Backends register faster versions by the rule's kind (in-place NumPy or Numba in
``numpy_backend``, one fused CUDA kernel each in ``cupy_backend``), which
:meth:`Optimizer.step` runs where they exist.
"""

from __future__ import annotations

from ..errors import lookup
from .base import OPTIMIZERS, Optimizer, register
from .rules import SGD, Adagrad, Adam, AdamW, RMSprop
from .wrappers import LossScaleOptimizer, SkipNonFinite

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "OPTIMIZERS", "get",
           "register", "LossScaleOptimizer", "SkipNonFinite"]


def get(name, **kwargs) -> Optimizer:
    """An optimiser by registered name (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``,
    ``"adagrad"``, or one added with :func:`register`) or as given.

    Raises
    ------
    ValueError
        Unknown name, listing the valid ones.
    """
    return lookup("optimizer", name, OPTIMIZERS, Optimizer, **kwargs)
