"""What MLPClassifier and MLPRegressor share: parameters, scikit-learn's objective on a
gpunn network, the solvers, stopping rules and fitted attributes.

The stochastic solvers ("sgd", "adam") train through gpunn's one training loop,
``model_.fit``; what makes a run scikit-learn's is given to it through its extension points
(:mod:`gpunn.sklearn._training`): scikit-learn's loss and L2 term as a loss and an
optimiser wrapper, its shuffle order as a data source, its end-of-iteration rules
(``tol``, ``n_iter_no_change``, learning-rate schedules, early stopping, ``verbose``,
``max_iter``) as a callback. So the weights are scikit-learn's (SGD to round-off in
float64), and the estimators get what that loop gives every model:

- roll-back on divergence: a loss that becomes NaN or infinite puts the network (and the
  attributes) back at the start of that epoch and raises scikit-learn's ValueError at
  once, saying where, instead of training on to non-finite weights; with
  ``early_stopping`` scikit-learn trains on and keeps the best epoch, and so does this;
- Ctrl-C: training stops after the current step and goes back to the end of the last
  whole epoch (the attributes agree with the weights), with scikit-learn's warning;
- data-parallel training under ``mpiexec`` (gpunn.distributed): each rank takes its piece
  of every batch and the result is one process's; the random state is rank 0's on every
  rank;
- a dataset larger than the GPU's free memory streamed to it from host memory.

L-BFGS stays a full-batch SciPy call on the same objective (there is no loop to share).

Differences from scikit-learn, on purpose and small:

- the network lives on ``device`` as a :class:`gpunn.Sequential` (``model_``); ``coefs_``
  and ``intercepts_`` are host arrays (on the CPU, views of the model's parameters);
- Adam adds ``epsilon`` to the bias-corrected root (PyTorch's and gpunn's form), where
  scikit-learn adds it before the correction: a change of order ``epsilon``;
- SGD momentum follows gpunn's SGD (``v = mu v + g; p -= lr v``), which equals
  scikit-learn's rule while the learning rate is constant and scales the whole velocity
  by the current rate when ``"invscaling"`` or ``"adaptive"`` changes it;
- ``dropout`` (gpunn's own) adds Dropout layers between hidden layers.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from .. import optim as _optim
from ..backend import host_array
from ..errors import TrainingDiverged, user_stacklevel
from ..layers import Dense, Dropout
from ..model import Sequential
from . import _losses, _training
from ._params import HIDDEN as _HIDDEN
from ._params import dense as _densified

_STOCHASTIC = ("sgd", "adam")


class Solver:
    """The gpunn optimiser of a stochastic solver, with scikit-learn's name for its
    current step size (``learning_rate``)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    @property
    def learning_rate(self) -> float:
        return self.optimizer.lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.optimizer.lr = value


def _same_on_every_rank(random_state) -> None:
    """Under an MPI launch, ``random_state`` continues from rank 0's state on every rank:
    initial weights, shuffles and the early-stopping split are then drawn alike (as they
    are anyway from an integer ``random_state``)."""
    from .. import distributed

    if distributed.launched():
        world = distributed.world()
        if world.distributed:
            random_state.set_state(world.broadcast(random_state.get_state()))


class BaseMLP(BaseEstimator):
    """The shared machinery; see :class:`~gpunn.sklearn.MLPClassifier` for parameters."""

    # ------------------------------------------------------------------ the network
    def _initialize(self, X, n_outputs: int, sizes: list) -> None:
        """A fresh network with scikit-learn's Glorot-uniform weights and intercepts,
        drawn from ``self._random_state`` in scikit-learn's order; resets the counters."""
        units = [X.shape[1], *sizes, n_outputs]
        out = {"softmax": "softmax", "logistic": "sigmoid"}.get(self.out_activation_)
        layers = []
        for i, (a, b) in enumerate(zip(units[:-1], units[1:])):
            last = i == len(units) - 2
            layers.append(Dense(a, b, activation=out if last else _HIDDEN[self.activation]))
            if not last and self.dropout:
                layers.append(Dropout(self.dropout))
        seed = int(self.random_state) if isinstance(self.random_state, numbers.Integral) \
            else int(check_random_state(None).randint(2**31))  # dropout masks only
        dtype = str(np.dtype(self.dtype or X.dtype))
        model = Sequential(layers, device=self.device, dtype=dtype, seed=seed)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for dense in (lay for lay in model.layers if isinstance(lay, Dense)):
            bound = np.sqrt(factor / (dense.in_features + dense.out_features))
            W = self._random_state.uniform(-bound, bound, (dense.in_features,
                                                           dense.out_features))
            b = self._random_state.uniform(-bound, bound, dense.out_features)
            dense.params["W"][...] = model.backend.asarray(W.astype(dtype))
            dense.params["b"][...] = model.backend.asarray(b.astype(dtype))
        self.model_ = model
        self.n_iter_, self.t_, self.n_outputs_ = 0, 0, n_outputs
        self.n_layers_ = len(units)
        if self.solver in _STOCHASTIC:
            self.loss_curve_, self._no_improvement_count = [], 0
            self.best_loss_ = None if self.early_stopping else np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None

    def _dense(self) -> list:
        return [lay for lay in self.model_.layers if isinstance(lay, Dense)]

    def _publish(self) -> None:
        """``coefs_`` / ``intercepts_`` from the network (views of it on the CPU)."""
        self.coefs_ = [host_array(d.params["W"]) for d in self._dense()]
        self.intercepts_ = [host_array(d.params["b"]) for d in self._dense()]
        self._published = (list(self.coefs_), list(self.intercepts_))

    def _adopt(self) -> None:
        """Copy into the network any ``coefs_`` / ``intercepts_`` array the user replaced
        (as scikit-learn's estimators read them directly)."""
        published = getattr(self, "_published", None)
        if published is None:
            return
        for key, now, before in (("W", self.coefs_, published[0]),
                                 ("b", self.intercepts_, published[1])):
            for d, new, old in zip(self._dense(), now, before):
                if new is not old:
                    target = d.params[key]
                    new = np.asarray(new)
                    if new.shape != tuple(target.shape):
                        raise ValueError(f"{type(self).__name__}: a replaced "
                                         f"{'coefs_' if key == 'W' else 'intercepts_'} "
                                         f"array has shape {new.shape}, the layer needs "
                                         f"{tuple(target.shape)}")
                    target[...] = self.model_.backend.asarray(new.astype(self.model_.dtype))
        self._publish()

    # ------------------------------------------------------------------ the objective
    def _objective(self):
        """scikit-learn's objective on this network: its loss (:class:`ScikitLearnLoss`)
        and, with ``alpha``, its L2 term (:class:`L2Penalty`), which the loss adds to
        the value and the optimiser (or L-BFGS) to the gradient."""
        model = self.model_
        penalty = _training.L2Penalty(self.alpha, model) if self.alpha else None
        loss = _losses.ScikitLearnLoss(self._loss_name(), self.out_activation_,
                                       model.output_layer().activation, penalty)
        return loss, penalty

    # ------------------------------------------------------------------ solvers
    def _fit(self, X, Y, sample_weight, incremental: bool, first_pass: bool, sizes) -> None:
        _same_on_every_rank(self._random_state)
        if first_pass:
            self._initialize(X, Y.shape[1], sizes)
        else:
            self._adopt()
        try:
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, Y, sample_weight)
            else:
                self._fit_stochastic(X, Y, sample_weight, incremental)
        finally:  # also after a divergence: the weights it was rolled back to
            self._publish()
        if not all(np.isfinite(a).all() for a in self.coefs_ + self.intercepts_):
            raise ValueError(f"{type(self).__name__}: Solver produced non-finite parameter "
                             "weights. The input data may contain large values and need to "
                             "be preprocessed.")

    def _device(self, *arrays):
        be = self.model_.backend
        return [None if a is None else be.asarray(np.ascontiguousarray(a, dtype=be.dtype))
                for a in arrays]

    def _make_optimizer(self):
        if self.solver == "sgd":
            return _optim.SGD(lr=self.learning_rate_init, momentum=self.momentum,
                              nesterov=self.nesterovs_momentum and self.momentum > 0)
        return _optim.Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                           eps=self.epsilon)


    def _split(self, X, Y, sw):
        """scikit-learn's early-stopping split (same call, same random state)."""
        stratify = Y if self._stratify() else None
        parts = train_test_split(X, Y, *([] if sw is None else [sw]),
                                 random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_tr, X_val, Y_tr, Y_val = parts[:4]
        sw_tr, sw_val = (parts[4], parts[5]) if sw is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError(f"{type(self).__name__}: The validation set is too small. "
                             "Increase 'validation_fraction' or the size of your dataset.")
        return X_tr, Y_tr, sw_tr, (X_val, self._decode(Y_val), sw_val)

    def _fit_stochastic(self, X, Y, sw, incremental: bool) -> None:
        """Epochs of the core training loop (``model_.fit``) on scikit-learn's objective,
        batches and end-of-iteration rules (see :mod:`gpunn.sklearn._training`)."""
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = Solver(self._make_optimizer())
        early = self.early_stopping and not incremental
        if self.early_stopping and incremental:
            raise ValueError(f"{type(self).__name__}: partial_fit does not support "
                             "early_stopping=True")
        X, Y, sw, val = self._split(X, Y, sw) if early else (X, Y, sw, None)
        n = X.shape[0]
        batch = min(200, n) if self.batch_size == "auto" else int(self.batch_size)
        if batch > n:
            warnings.warn(f"{type(self).__name__}: batch_size {batch} is larger than the "
                          f"{n} samples; it is clipped", UserWarning, stacklevel=3)
            batch = n
        model, opt = self.model_, self._optimizer.optimizer
        loss, penalty = self._objective()
        rules = _training.ScikitLearnRules(self, n, val, incremental)
        epochs = 1 if incremental else self.max_iter
        self.n_iter_, self._best = 0, None
        # What fit sets on the network for its own loop; the estimator's network keeps
        # what it had (its optimiser is saved with it, a loss or checkpoint state is not).
        kept = model.loss, model.metrics, model.train_state
        try:
            history = model.fit(
                X, Y, loss=loss, epochs=epochs, batch_size=batch, shuffle=self.shuffle,
                optimizer=opt if penalty is None else _training.PenalisedOptimizer(opt,
                                                                                  penalty),
                verbose=0, metrics=[], callbacks=[rules], sample_weight=sw,
                # With early stopping scikit-learn trains on through a divergence (NaN
                # scores) and keeps the best epoch's weights (its issue 29504); without,
                # non-finite weights end in a ValueError: here at once, rolled back.
                on_divergence="off" if early else "raise",
                batch_source=lambda data: _training.ScikitLearnBatches(
                    data, self._random_state, penalty))
            # Ctrl-C: the loop stopped after a step and put the network back at the end
            # of its last whole epoch (or an earlier one); the attributes follow it.
            rules.rewind(len(history.epoch))
            if len(history.epoch) < epochs and not rules.stopped:
                warnings.warn("Training interrupted by user.", UserWarning,
                              stacklevel=user_stacklevel())
        except KeyboardInterrupt:  # a second Ctrl-C: as scikit-learn, mid-epoch
            warnings.warn("Training interrupted by user.", UserWarning,
                          stacklevel=user_stacklevel())
        except TrainingDiverged as exc:
            rules.rewind(exc.restored_epoch - 1)
            raise ValueError(f"{type(self).__name__}: Solver produced non-finite parameter "
                             "weights. The input data may contain large values and need to "
                             f"be preprocessed. (The loss became NaN or infinite at epoch "
                             f"{exc.epoch}, step {exc.step}; the network is back at its "
                             f"weights from the start of epoch {exc.restored_epoch}: scale "
                             "the input or lower learning_rate_init.)") from exc
        finally:
            model.optimizer = opt
            model.loss, model.metrics, model.train_state = kept
        if early:
            self._restore_best()

    def _restore_best(self) -> None:
        best = getattr(self, "_best", None)
        if best is not None:
            self.model_.store.restore(best)
        self._best = None

    def _fit_lbfgs(self, X, Y, sw) -> None:
        """scikit-learn's L-BFGS-B call (SciPy) on the full-batch objective; each
        evaluation runs forward and backward on the device."""
        import scipy.optimize
        from sklearn.utils.optimize import _check_optimize_result

        model = self.model_
        be = model.backend
        # A full-batch method: its every evaluation takes all rows at once, dense.
        Xd, Yd, wd = self._device(_densified(X), Y, sw)
        loss, penalty = self._objective()
        if penalty is not None:
            penalty.scale = 1.0 / (X.shape[0] if sw is None else float(np.sum(sw)))
        params = model.store.step_lists()[0]
        sizes = [int(np.prod(p.shape)) for p in params]
        cuts = np.cumsum([0] + sizes)

        def unpack(theta):
            for p, a, b in zip(params, cuts[:-1], cuts[1:]):
                p[...] = be.asarray(theta[a:b].reshape(tuple(p.shape)).astype(be.dtype))

        def loss_grad(theta):
            unpack(theta)
            z = model.forward_batch(Xd, training=False, logits=True)
            value, grad, _ = loss.compute_logits(z, Yd, be, weight=wd)
            model.backward_batch(grad, need_input_grad=False, logits=True)
            ps, grads = model.store.step_lists()
            if penalty is not None:
                penalty.add_gradient(ps, grads)
            flat = np.concatenate([np.ravel(host_array(g)) for g in grads])
            return float(value), flat.astype(np.float64)

        theta0 = np.concatenate([np.ravel(host_array(p)) for p in params]).astype(np.float64)
        res = scipy.optimize.minimize(loss_grad, theta0, method="L-BFGS-B", jac=True,
                                      options={"maxfun": self.max_fun,
                                               "maxiter": self.max_iter, "gtol": self.tol})
        self.n_iter_ = _check_optimize_result("lbfgs", res, self.max_iter)
        self.loss_ = float(res.fun)
        unpack(res.x)
        model.forget()

    # ------------------------------------------------------------------ outputs, pickling
    def _forward(self, X) -> np.ndarray:
        """The output activations ``(n, outputs)`` on the host, in the network's dtype."""
        self._adopt()
        out = np.asarray(host_array(self.model_.predict(X)))
        return np.exp(out) if self.out_activation_ == "exp" else out

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_optimizer", None)  # saved inside the model file below
        for key in ("coefs_", "intercepts_", "_best", "_published"):
            state.pop(key, None)  # views of the network: rebuilt on load
        if "model_" in state:
            from .. import files as _io

            state["model_"] = _io.dumps(state["model_"])
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model_"), bytes):
            from .. import files as _io

            state["model_"] = _io.loads(state["model_"], device="cpu")
            opt = state["model_"].optimizer
            state["_optimizer"] = None if opt is None else Solver(opt)
        self.__dict__.update(state)
        if "model_" in state:
            self._publish()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        # Kept sparse; the stochastic solvers densify one batch at a time, L-BFGS (full
        # batch) all of it.
        tags.input_tags.sparse = True
        return tags
