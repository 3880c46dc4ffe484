"""A user's loss in one file: log-cosh, quadratic near zero and linear far from it (robust
to outliers, smooth everywhere). Sample weights come from the two helpers every loss uses.
"""

from __future__ import annotations

import math

import gpunn as gn
from gpunn.losses import weigh, weighted_mean


@gn.losses.register("log_cosh", "logcosh")
class LogCosh(gn.losses.Loss):
    """``mean(log(cosh(pred - target)))`` over all elements; gradient ``tanh(d)``."""

    name = "log_cosh"

    def _value_and_grad(self, xp, pred, target, share=None):
        d = pred - target
        a = xp.abs(d)
        # log(cosh(d)) = |d| + log1p(exp(-2|d|)) - log 2 never overflows.
        terms = a + xp.log1p(xp.exp(-2.0 * a)) - math.log(2.0)
        return weighted_mean(xp, terms, share), weigh(xp, xp.tanh(d) * (1.0 / d.size), share)
