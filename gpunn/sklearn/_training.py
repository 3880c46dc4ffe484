"""scikit-learn's stochastic training as extensions of gpunn's one training loop.

The estimators' ``sgd`` and ``adam`` solvers run ``model_.fit`` (gpunn.training), so they
share its roll-back on divergence, Ctrl-C handling and data-parallel ranks. What makes
the run scikit-learn's is given to that loop through its extension points, never as flags
in it:

- the objective: :class:`gpunn.sklearn._losses.ScikitLearnLoss` (scikit-learn's loss on
  the output layer's pre-activation) plus :class:`L2Penalty`, scikit-learn's
  ``alpha / (2 S) ||W||^2`` for a batch of ``S`` samples (or weight sum): its value is
  added by the loss, its gradient by :class:`PenalisedOptimizer`, an optimiser wrapping
  the solver's SGD or Adam;
- the batches: :class:`ScikitLearnBatches`, a data source in scikit-learn's order (each
  epoch ``sklearn.utils.shuffle`` of the last order with the estimator's random state),
  which tells the penalty each batch's ``S`` and scales each batch's sample weights to
  sum to its rows, so the loop's epoch loss is scikit-learn's (a batch counts by its
  rows);
- the end of an iteration: :class:`ScikitLearnRules`, a callback applying ``tol`` /
  ``n_iter_no_change``, the ``invscaling`` and ``adaptive`` learning rates, early stopping
  on the validation score, the ``verbose`` lines and the ``max_iter`` warning to the
  estimator's attributes.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import shuffle

from .. import distributed
from ..backend import host_array
from ..callbacks import Callback
from ..errors import user_stacklevel
from ..optim import Optimizer
from ..optim.wrappers import OptimizerWrapper, delegated
from ..params import flat_layout
from ..training.batches import Batches


class L2Penalty:
    """scikit-learn's L2 term of one batch: ``alpha / (2 S) * sum(||W||^2)`` over the
    network's weight matrices (not the intercepts), ``S`` the batch's sample count or, with
    sample weights, their sum (over the global batch when ranks share it).

    Parameters
    ----------
    alpha : float > 0
    model : Sequential
        Its Dense layers' ``W`` are penalised.

    Attributes
    ----------
    scale : float or 0-d device array
        ``1 / S`` of the batch in progress: set by the data source as it yields the batch
        (:class:`ScikitLearnBatches`), or once for the whole set (L-BFGS).
    """

    def __init__(self, alpha: float, model):
        self.alpha, self.model = float(alpha), model
        self.scale = None
        self._kernels = [lay for _, lay in model.walk() if "W" in lay.params]
        self._at = {}  # where the weights are, by the number of arrays stepped on

    def value(self, xp):
        """The term's value (0-d array) at the current weights."""
        total = None
        for layer in self._kernels:
            W = layer.params["W"]
            part = xp.sum(W * W)
            total = part if total is None else total + part
        return (0.5 * self.alpha) * total * self.scale

    def add_gradient(self, params: list, grads: list) -> None:
        """Add ``alpha / S * W`` to the weights' gradients in ``grads``, in place.

        ``params`` and ``grads`` are what an optimiser steps on: the model's parameters
        in order, or one flat buffer of them (:func:`gpunn.params.flat_layout`).
        """
        coef = self.alpha * self.scale
        where = self._at.get(len(params))
        if where is None:
            where = self._at[len(params)] = self._where(params)
        for i, lo, hi in where:
            p, g = params[i], grads[i]
            if lo is None:
                g[...] = g + coef * p
            else:
                g[lo:hi] = g[lo:hi] + coef * p[lo:hi]

    def _where(self, params):
        """``(array index, start, stop)`` of each weight matrix in ``params`` (start and
        stop None for a whole array)."""
        everything = self.model.parameters()
        kernels = {id(lay.params["W"]) for lay in self._kernels}
        at = [i for i, p in enumerate(everything) if id(p) in kernels]
        if len(params) == len(everything):
            return [(i, None, None) for i in at]
        shapes = [tuple(p.shape) for p in everything]
        offsets, _ = flat_layout(shapes)
        return [(0, offsets[i], offsets[i] + int(np.prod(shapes[i]))) for i in at]


class PenalisedOptimizer(OptimizerWrapper, Optimizer):
    """The solver's optimiser with scikit-learn's L2 gradient added before each step.

    A wrapper (as gpunn's loss scaling is): the wrapped optimiser keeps its maths, state,
    step count and learning rate, which this one shows as its own, so the training loop's
    snapshots and roll-back see them. The gradient is added after the ranks' gradients
    are averaged, once, with the global batch's ``1 / S``.

    Parameters
    ----------
    optimizer : Optimizer
        The solver's (SGD or Adam), kept between ``partial_fit`` calls.
    penalty : L2Penalty
    """

    lr = delegated("lr")
    state = delegated("state")
    backend = delegated("backend")
    state_keys = delegated("state_keys")
    kind = delegated("kind")

    def __init__(self, optimizer, penalty):
        # Nothing of Optimizer.__init__: every setting and state is the wrapped one's.
        self.optimizer, self.penalty = optimizer, penalty

    def hyper(self) -> dict:
        return self.optimizer.hyper()

    def attach(self, params: list, backend, shapes=None) -> None:
        self.optimizer.attach(params, backend, shapes)

    def step(self, params: list, grads: list, loss=None) -> None:
        self.penalty.add_gradient(params, grads)
        self.optimizer.step(params, grads, loss=loss)

    def to(self, backend):
        self.optimizer.to(backend)
        return self

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


class ScikitLearnBatches(Batches):
    """The batches of another data source in scikit-learn's order.

    Each epoch's order is ``sklearn.utils.shuffle`` of the previous one with
    ``random_state`` (the rows as stored without ``shuffle``), as scikit-learn's
    ``_fit_stochastic`` draws it. Per global batch of ``S`` samples (or weight sum) the
    penalty's ``scale`` is set to ``1 / S`` as the batch is yielded, and sample weights
    are scaled to sum to the batch's rows: a batch's weighted mean loss and its gradient
    are unchanged (ratios of the weights), and the loop's epoch loss, a mean of the batch
    losses weighted by the batches' weight sums, becomes scikit-learn's, weighted by rows.

    Parameters
    ----------
    data : Batches
        The usual source (gathered on the device or streamed), whose rows it yields.
    random_state : numpy.random.RandomState
    penalty : L2Penalty or None
    """

    def __init__(self, data, random_state, penalty=None):
        super().__init__(data.backend, data.X, data.T, data.W, data.batch_size,
                         data.shuffle)
        self.data, self.streaming = data, data.streaming
        self.random_state, self.penalty = random_state, penalty
        self._order = np.arange(self.n)
        self._scales = None
        if self.W is not None:
            xp = _namespace(self.W)
            # The weights as given stay apart; the source yields (and ranks read) W,
            # rewritten each epoch. Between epochs it sums to the rows, as each epoch's
            # does: the sum the loop divides an epoch's loss by.
            self._given = self.W
            self.W = data.W = self._given * (self.n / xp.sum(self._given))

    def order(self):
        if self.shuffle:
            self._order = shuffle(self._order, random_state=self.random_state)
        order = self._order if self.shuffle else None
        self._per_batch(order)
        return order

    def rows(self, order, size: int):
        # One run of rows per global batch, in order, here as under several ranks.
        for k, batch in enumerate(self.data.rows(order, size)):
            if self.penalty is not None:
                self.penalty.scale = self._scales[k]
            yield batch

    def _per_batch(self, order) -> None:
        """Each global batch's ``1 / S`` and, with sample weights, the epoch's weights."""
        n, b = self.n, self.batch_size
        rows = [min(b, n - lo) for lo in range(0, n, b)]
        if self.W is None:
            self._scales = [1.0 / r for r in rows]
            return
        xp, given = _namespace(self._given), self._given
        on_host = not self.backend.owns(given)
        place = np.asarray if on_host else self.backend.asarray
        if order is not None:
            given = xp.take(given, place(order), axis=0)
        full = n // b * b
        sums = [xp.sum(xp.reshape(given[:full], (-1, b)), axis=1)] if full else []
        if full < n:
            sums.append(xp.reshape(xp.sum(given[full:]), (1,)))
        total = xp.concat(sums) if len(sums) > 1 else sums[0]
        # A batch of zero weights counts for nothing (no loss, no penalty).
        positive = total > 0
        inverse = xp.where(positive, 1.0 / xp.where(positive, total, xp.ones_like(total)),
                           xp.zeros_like(total))
        factor = inverse * xp.asarray(place(np.asarray(rows, dtype=np.float64)),
                                      dtype=inverse.dtype)
        batch_of = np.arange(n) // b
        if order is not None:
            batch_of = np.empty(n, dtype=np.int64)
            batch_of[np.asarray(order)] = np.arange(n) // b
        self.W[...] = self._given * xp.take(factor, place(batch_of), axis=0)
        # Host scales as Python floats: a NumPy float64 would promote float32 arrays.
        self._scales = [float(s) for s in host_array(inverse)] if on_host else inverse


class ScikitLearnRules(Callback):
    """scikit-learn's end of an iteration (one epoch), on the estimator's attributes:
    ``n_iter_``, ``t_``, ``loss_`` and ``loss_curve_``, the ``verbose`` line, the
    no-improvement count (training loss, or the validation score with the best weights
    kept), the ``invscaling`` rate, stopping (or the ``adaptive`` rate divided by 5) after
    ``n_iter_no_change`` epochs without improvement by ``tol``, and the ``max_iter``
    warning. Training stops through ``model.stop_training``, on every rank at once.

    What it sets is recorded per epoch, so :meth:`rewind` puts the estimator back with the
    network when the loop rolls back (Ctrl-C, divergence).

    Parameters
    ----------
    est : BaseMLP
    n : int
        Training rows (of the split, with early stopping).
    val : (X_val, y_val, sample_weight_val) or None
        The early-stopping validation set.
    incremental : bool
        ``partial_fit``: one epoch, no ``max_iter`` warning.
    """

    def __init__(self, est, n: int, val, incremental: bool):
        self.est, self.n, self.val, self.incremental = est, n, val, incremental
        #: True once the rules stopped training (not an interruption).
        self.stopped = False
        self._records = []

    def on_train_begin(self, model) -> None:
        self.stopped = False
        self._records = [self._record()]

    def on_epoch_end(self, model, epoch: int, logs: dict) -> None:
        est = self.est
        est.n_iter_ += 1
        est.t_ += self.n
        est.loss_ = logs["loss"]
        est.loss_curve_.append(est.loss_)
        self._say(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        self._no_improvement(model)
        opt = est._optimizer.optimizer
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            opt.lr = est.learning_rate_init / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.val is not None else "Training loss"
            msg = (f"{what} did not improve more than tol={est.tol:f} for "
                   f"{est.n_iter_no_change} consecutive epochs.")
            if self._stop(msg, opt):
                model.stop_training = self.stopped = True
            else:
                est._no_improvement_count = 0
        if not self.stopped and not self.incremental and est.n_iter_ == est.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=user_stacklevel())
        self._records.append(self._record())

    def rewind(self, epochs: int) -> None:
        """Put the estimator's attributes (and the learning rate, the best weights) back
        to what they were after ``epochs`` epochs of this fit."""
        if epochs >= len(self._records) - 1:
            return
        est = self.est
        (est.n_iter_, est.t_, loss, curve, scores, est.best_loss_,
         est.best_validation_score_, est._no_improvement_count, lr, est._best) = \
            self._records[epochs]
        if loss is not None:
            est.loss_ = loss
        elif hasattr(est, "loss_"):  # no epoch of this fit, none before it
            del est.loss_
        del est.loss_curve_[curve:]
        if scores is not None:
            del est.validation_scores_[scores:]
        est._optimizer.optimizer.lr = lr
        del self._records[epochs + 1:]

    def _record(self) -> tuple:
        est = self.est
        scores = est.validation_scores_
        return (est.n_iter_, est.t_, getattr(est, "loss_", None), len(est.loss_curve_),
                None if scores is None else len(scores), est.best_loss_,
                est.best_validation_score_, est._no_improvement_count,
                est._optimizer.optimizer.lr, getattr(est, "_best", None))

    def _say(self, line: str) -> None:
        if self.est.verbose and distributed.is_root():
            print(line)

    def _no_improvement(self, model) -> None:
        est = self.est
        if self.val is not None:
            score = est._score(*self.val)
            est.validation_scores_.append(score)
            self._say(f"Validation score: {score:f}")
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best = model.store.snapshot(on_device=True)
            return
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        est.best_loss_ = min(est.best_loss_, est.loss_curve_[-1])

    def _stop(self, msg: str, opt) -> bool:
        """Adam and constant-rate SGD stop; adaptive SGD divides its rate by 5 first."""
        est = self.est
        if est.solver == "adam" or est.learning_rate != "adaptive":
            self._say(msg + " Stopping.")
            return True
        if opt.lr <= 1e-6:
            self._say(msg + " Learning rate too small. Stopping.")
            return True
        opt.lr /= 5.0
        self._say(msg + f" Setting learning rate to {opt.lr:f}")
        return False


def _namespace(a):
    import array_api_compat

    return array_api_compat.array_namespace(a)
