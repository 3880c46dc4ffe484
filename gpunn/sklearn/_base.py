"""What MLPClassifier and MLPRegressor share: parameters, scikit-learn's training maths on a
gpunn network, the stochastic and L-BFGS solvers, stopping rules and fitted attributes.

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
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, shuffle

from .. import optim as _optim
from ..backend import host_array
from ..errors import user_stacklevel
from ..layers import Dense, Dropout
from ..model import Sequential
from . import _losses
from ._params import HIDDEN as _HIDDEN

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

    # ------------------------------------------------------------------ one batch
    def _backprop(self, x, y, w, training: bool = True):
        """Loss (0-d device array) and gradients of scikit-learn's objective on one batch.

        ``x (n, features)``, ``y (n, outputs)`` and ``w (n,)`` or None are on the device;
        the gradients land in the layers (``model_.store.step_lists()`` collects them).
        """
        model, xp = self.model_, self.model_.backend.xp
        z = model.forward_batch(x, training=training, logits=True)
        p = _losses.link(xp, self.out_activation_, z)
        sw = float(x.shape[0]) if w is None else xp.sum(w)
        loss = _losses.value(xp, self._loss_name(), y, p, z, w, sw)
        delta = p - y  # the canonical link: d loss / d z
        if w is not None:
            delta = delta * xp.reshape(w, (-1, 1))
        model.backward_batch(delta / sw, need_input_grad=False, logits=True)
        penalty = 0.0
        for d in self._dense():
            W = d.params["W"]
            if self.alpha:
                d.grads["W"] = d.grads["W"] + (self.alpha / sw) * W
                penalty = penalty + xp.sum(W * W)
        return loss + (0.5 * self.alpha) * penalty / sw

    # ------------------------------------------------------------------ solvers
    def _fit(self, X, Y, sample_weight, incremental: bool, first_pass: bool, sizes) -> None:
        if first_pass:
            self._initialize(X, Y.shape[1], sizes)
        else:
            self._adopt()
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, sample_weight)
        else:
            self._fit_stochastic(X, Y, sample_weight, incremental)
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
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = Solver(self._make_optimizer())
        # Saved (and pickled) with the network.
        self.model_.optimizer = opt = self._optimizer.optimizer
        opt.attach(self.model_.store.step_lists()[0], self.model_.backend,
                   [tuple(p.shape) for p in self.model_.parameters()])
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
        Xd, Yd, wd = self._device(X, Y, sw)
        self.n_iter_, self._order = 0, np.arange(n)
        try:
            for _ in range(self.max_iter):
                if self._epoch(Xd, Yd, wd, n, batch, val, early, incremental):
                    break
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", UserWarning, stacklevel=3)
        if early:
            self._restore_best()

    def _epoch(self, Xd, Yd, wd, n: int, batch: int, val, early: bool,
               incremental: bool) -> bool:
        """One pass over the data, then scikit-learn's end-of-iteration rules; True to
        stop."""
        be = self.model_.backend
        if self.shuffle:  # re-shuffles the previous order, as scikit-learn does
            self._order = shuffle(self._order, random_state=self._random_state)
            idx = be.asarray(self._order)
        total = None
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            if self.shuffle:
                i = idx[lo:hi]
                xb, yb = be.take_rows(Xd, i), be.take_rows(Yd, i)
                wb = None if wd is None else be.take_rows(wd, i)
            else:
                xb, yb, wb = Xd[lo:hi, ...], Yd[lo:hi, ...], None if wd is None else wd[lo:hi]
            loss = self._backprop(xb, yb, wb)
            self._optimizer.optimizer.step(*self.model_.store.step_lists())
            total = loss * (hi - lo) if total is None else total + loss * (hi - lo)
        self.n_iter_ += 1
        self.t_ += n
        self.loss_ = float(total) / n  # the epoch's one host read
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement(early, val)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = (self.learning_rate_init
                                             / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if early else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if self._trigger_stopping(msg):
                return True
            self._no_improvement_count = 0
        if incremental:
            return True
        if self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=user_stacklevel())
        return False

    def _trigger_stopping(self, msg: str) -> bool:
        """Adam and constant-rate SGD stop; adaptive SGD divides its rate by 5 first."""
        opt = self._optimizer.optimizer
        if self.solver == "adam" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if opt.lr <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        opt.lr /= 5.0
        if self.verbose:
            print(msg + f" Setting learning rate to {opt.lr:f}")
        return False

    def _update_no_improvement(self, early: bool, val) -> None:
        if early:
            score = self._score(*val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best = self.model_.store.snapshot(on_device=True)
            return
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

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

        be = self.model_.backend
        Xd, Yd, wd = self._device(X, Y, sw)
        params = self.model_.store.step_lists()[0]
        sizes = [int(np.prod(p.shape)) for p in params]
        cuts = np.cumsum([0] + sizes)

        def unpack(theta):
            for p, a, b in zip(params, cuts[:-1], cuts[1:]):
                p[...] = be.asarray(theta[a:b].reshape(tuple(p.shape)).astype(be.dtype))

        def loss_grad(theta):
            unpack(theta)
            loss = self._backprop(Xd, Yd, wd, training=False)
            grads = self.model_.store.step_lists()[1]
            flat = np.concatenate([np.ravel(host_array(g)) for g in grads])
            return float(loss), flat.astype(np.float64)

        theta0 = np.concatenate([np.ravel(host_array(p)) for p in params]).astype(np.float64)
        res = scipy.optimize.minimize(loss_grad, theta0, method="L-BFGS-B", jac=True,
                                      options={"maxfun": self.max_fun,
                                               "maxiter": self.max_iter, "gtol": self.tol})
        self.n_iter_ = _check_optimize_result("lbfgs", res, self.max_iter)
        self.loss_ = float(res.fun)
        unpack(res.x)

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
        tags.input_tags.sparse = True  # densified: the network's matmuls are dense
        return tags
