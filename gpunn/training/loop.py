"""The training loop: epochs of steps, and one step.

One step reads ``forward -> loss -> backward -> optimizer.step``: the *head*
(gpunn.training.head, chosen once per fit) runs the model's forward pass and the loss,
then backward from the gradient it returned; the optimiser steps, perhaps inside wrappers
(loss scaling, skipping non-finite steps, the ranks' gradient average) that the step does
not know about. The loss and metrics accumulate on the device and are read once per
epoch: no step waits on the host. A fit's settings arrive checked, as a :class:`FitConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import metrics as _metrics
from ..callbacks import Callback, configured_lr
from ..distributed import plan as _plan
from ..distributed.agreement import describe
from ..errors import DeviceMemoryError
from ..losses import LossResult
from ..optim import LossScaleOptimizer, SkipNonFinite
from .evaluation import accumulator, cast_like, evaluate_arrays, namespace_of, prepare_metrics
from .head import head_for
from .recovery import Snapshot, diverged, oom_message
from .state import TrainState, load_callback_states


@dataclass(frozen=True)
class FitConfig:
    """The checked settings of one ``fit``.

    Attributes
    ----------
    epochs, batch_size : int
    shuffle : bool
    verbose : int
    on_divergence : {"raise", "stop", "skip", "off"}
    val : tuple or None
        A checked validation set ``(X, T, streaming, W)``.
    start : int
        The first epoch's number (after a resumed checkpoint's).
    dist : Local or Plan
        The ranks' plan (gpunn.distributed.plan); LOCAL on one process.
    weighted : bool
        The training rows carry sample weights.
    labels : bool
        The targets are integer class labels (not rows).
    resumed : tuple or None
        ``(callback states, path)`` of the checkpoint a resumed fit continues from.

    Under several ranks every field must be equal on every rank, and the ranks agree on
    them before training (gpunn.distributed.agreement.fit_terms), except the fields whose
    metadata says ``per_rank`` and why (``argument``: the name the agreement's messages
    give a field, that of the argument of ``fit`` it comes from).
    """

    epochs: int
    batch_size: int
    shuffle: bool = True
    verbose: int = field(default=0, metadata={
        "per_rank": "output only: ranks other than 0 print nothing"})
    on_divergence: str = "raise"
    val: tuple | None = field(default=None, metadata={"argument": "validation_data"})
    start: int = field(default=1, metadata={"argument": "first epoch (resume_from)"})
    dist: object = field(default=_plan.LOCAL, metadata={
        "per_rank": "the ranks' plan itself, made once they agree"})
    weighted: bool = field(default=False, metadata={"argument": "sample weights"})
    labels: bool = field(default=True, metadata={"argument": "targets as class labels"})
    resumed: tuple | None = field(default=None, metadata={
        "per_rank": "the resumed checkpoint's callback states and path; the ranks agree on "
                    "its epoch (start)"})


class Trainer:
    """One ``fit`` call, its settings checked: runs epochs and steps.

    Parameters
    ----------
    model : Sequential
    loss : Loss
    optimizer : Optimizer
        Attached to the parameters it updates (the master weights under 16-bit).
    metrics : list of Metric
    amp : LossScaleOptimizer or None
        16-bit training: wraps ``optimizer``.
    config : FitConfig
    callbacks : list of Callback
        Sorted by ``order``; ``History`` among them.
    history : History
    """

    def __init__(self, model, loss, optimizer, metrics, amp, config: FitConfig, callbacks,
                 history):
        self.model, self.loss, self.metrics, self.amp = model, loss, metrics, amp
        self.optimizer, self.config = optimizer, config
        self.epochs, self.batch_size, self.shuffle = config.epochs, config.batch_size, \
            config.shuffle
        self.verbose, self.on_divergence = config.verbose, config.on_divergence
        self.val, self.start, self.dist = config.val, config.start, config.dist
        self.weighted = config.weighted
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))
        self.history = history
        self.skip = self.on_divergence == "skip"
        # What a step steps: the optimiser, inside the wrappers this fit needs (16-bit
        # loss scaling or skipping non-finite steps, then the ranks' gradient average);
        # each is an optimiser to the step, which knows none of them.
        inner = amp if amp is not None else (
            SkipNonFinite(optimizer) if self.skip else optimizer)
        self.stepper = self.dist.wrap_optimizer(inner, self.skip)
        # Where the output meets the loss, decided once: the loss on the output, on the
        # output layer's logits, or one fused kernel (which may also score a metric).
        self.head = head_for(model, loss, metrics, weighted=self.weighted,
                             scaled=amp is not None, labels=config.labels)
        self.per_batch = [cb for cb in self.callbacks
                          if type(cb).on_batch_end is not Callback.on_batch_end]
        # The model's store stays the same object while fit runs (moving the model is
        # refused then); a rebuilt flat buffer is rebuilt inside it.
        self.store = model.store

    # ------------------------------------------------------------------ one step
    def step(self, x, t, w=None, slots=None) -> LossResult:
        """Forward, loss, backward and update of one batch (rows weighted by ``w``;
        ``slots``: the epoch buffers' entries for a head that writes into them).

        Returns
        -------
        LossResult
            ``value`` (0-d, the layers' penalties included; the loss slot itself where the
            head wrote it there), ``grad`` and ``output`` (the activated model output, for
            the metrics).
        """
        result = self.head.forward(x, t, w, slots)                  # forward and loss
        self.head.backward(self.stepper.loss_gradient(result.grad))  # backward
        params, grads = self.store.step_lists(adopt_params=False)
        self.stepper.step(params, grads, loss=result.value)          # optimizer.step
        return result

    def _roll_back(self) -> None:
        """Back to the snapshot: weights, optimiser and master weights, and the history
        and checkpoint state of that moment, so all three agree."""
        snapshot = self.snapshot
        snapshot.restore()
        history = self.history
        keep = [i for i, e in enumerate(history.epoch) if e < snapshot.epoch]
        history.epoch[:] = [history.epoch[i] for i in keep]
        for key, values in list(history.history.items()):
            values[:] = [values[i] for i in keep if i < len(values)]
            if not values:
                del history.history[key]

    def _reattach(self) -> None:
        """After the parameter buffers were rebuilt: 16-bit master weights start again
        from the new parameters (the optimiser's state is positional and still fits)."""
        if self.amp is not None:
            params = self.model.store.step_lists(adopt_params=False)[0]
            self.amp = self.model._amp = LossScaleOptimizer.for_dtype(self.model.backend,
                                                                      params)
            self.amp.attach(self.optimizer, [tuple(p.shape) for p in self.model.parameters()])
            self.stepper = self.dist.wrap_optimizer(self.amp, self.skip)

    # ------------------------------------------------------------------ epochs
    def run(self, data, interrupted):
        """All epochs over ``data`` (a :class:`gpunn.training.batches.Batches`: rows
        ``X``, targets ``T`` and sample weights ``W`` or None); returns the History (early
        on Ctrl-C, a stop or divergence)."""
        model = self.model
        self.data = data
        X, T, W, streaming = data.X, data.T, data.W, data.streaming
        # Each phase prepares its own dataset for the metrics (R²'s total sum of
        # squares): the metric objects, shared by both phases, hold none of it.
        self.prepared = prepare_metrics(self.metrics, T, W)
        self.val_prepared = (None if self.val is None
                             else prepare_metrics(self.metrics, self.val[1], self.val[3]))
        # What an epoch's sums are divided by: rows, or the sum of their weights.
        self.mass = int(X.shape[0]) if W is None else float(namespace_of(W).sum(W))
        model.stop_training = False
        model._fitting = True
        self.snapshot, self.every = None, 1
        for cb in self.callbacks:
            cb.on_train_begin(model)  # each resets what an earlier fit left
        if self.config.resumed is not None:  # then takes up the checkpoint's epoch
            load_callback_states(self.callbacks, *self.config.resumed)
        interrupted = self.dist.collective(interrupted)  # or-ed over ranks
        try:
            with self.dist.training(model):
                self._epochs(X, T, W, streaming, interrupted)
            for cb in self.callbacks:
                cb.on_train_end(model, self.history)
        finally:
            model._fitting = False
            # Nothing of the training data outlives fit (layers keep their last batch).
            model.forget()
        return self.history

    def _epochs(self, X, T, W, streaming, interrupted) -> None:
        model = self.model
        for epoch in range(self.start, self.epochs + 1):
            for cb in self.callbacks:
                cb.on_epoch_begin(model, epoch)
            # Callbacks may have changed the optimiser (a learning-rate schedule): the
            # ranks must step with the same one, or their replicas drift apart.
            self.dist.agree({"optimizer": describe(self.optimizer)}, f"epoch {epoch}")
            logs = self._epoch(epoch, X, T, W, streaming, interrupted)
            if logs is None:
                break
            state = model.train_state = TrainState(
                epoch, model.backend.random.state(), self.history, logs, self.callbacks,
                configured_lr(self.optimizer))
            for cb in self.callbacks:
                cb.on_epoch_end(model, epoch, logs)
            state.freeze()  # the callbacks' states at the end of this epoch
            if self.dist.any(model.stop_training):  # all ranks stop together
                model.stop_training = True
                break

    def _epoch(self, epoch, X, T, W, streaming, interrupted) -> dict | None:
        """One epoch's steps and its logs; None when training must stop."""
        model = self.model
        # Parameters replaced between epochs (a callback, the user) join the flat buffer.
        before = model.store.flat
        model.store.adopt_params()
        if model.store.flat is not before:
            self._reattach()
        # A copy to roll back to (on the GPU when it fits); taken every epoch while its
        # bytes are under ~5% of an epoch's traffic (always on the CPU), less often for big
        # models. Whether it fits on a GPU depends on that GPU's free memory, so the ranks
        # take the shortest cadence of them all: a divergence rolls every rank back to the
        # same epoch.
        if self.on_divergence != "off" and (self.snapshot is None
                                            or epoch - self.snapshot.epoch >= self.every):
            self.snapshot = Snapshot(model, self.stepper, epoch)
            self.every = self.dist.least(self.snapshot.epochs_between(
                self.dist.steps(int(X.shape[0]), self.batch_size)))
        try:
            sums = self.dist.reduce_epoch(self._steps(X, T, W, streaming, interrupted))
        except MemoryError as exc:
            if self.snapshot is not None:
                self._roll_back()
            model.backend.release_memory()
            raise DeviceMemoryError(oom_message(
                model, self.batch_size, self.snapshot.epoch if self.snapshot else None)) \
                from exc
        total, metric_sums, step_losses, (dropped, valid), seen = sums
        # Under "skip" the epoch's figures are over the rows (or weights) of valid steps;
        # with none at all they are NaN, so no callback takes the epoch for a good one.
        n = float(valid) if valid is not None else self.mass
        if interrupted():
            # The weights of a half-done epoch match no epoch counter: go back to the
            # snapshot (history and checkpoint state with them), or, without one
            # (on_divergence="off"), say what the weights are: the history records the
            # partial epoch as such, and no checkpoint state claims a complete one.
            if self.snapshot is not None:
                self._roll_back()
                told = f"returning {len(self.history.epoch)} completed epoch(s)"
            else:
                model.train_state = None
                self._record_partial(epoch, seen, total, metric_sums, n)
                told = (f"the weights are those after {seen} of its samples (on_divergence="
                        "'off' keeps no copy to go back to): the history ends with this "
                        "partial epoch (history.partial)")
            if self.verbose:
                print(f"interrupted during epoch {epoch} after {seen} samples; {told}",
                      flush=True)
            return None
        total_host = float(total)  # the one host read of the epoch
        if not math.isfinite(total_host) and self.on_divergence in ("raise", "stop"):
            self._roll_back()
            diverged(model, step_losses, self.snapshot, epoch, self.on_divergence,
                     self.verbose)
            return None
        nan = float("nan")
        logs = {"loss": total_host / n if n else nan}
        logs.update({m.name: m.result(_metrics.host_value(s), n, p) if n else nan
                     for m, s, p in zip(self.metrics, metric_sums, self.prepared)})
        if self.skip:
            logs["skipped"] = float(dropped) if dropped is not None else 0.0
        if self.val is not None:
            vX, vT, v_streaming, vW = self.val
            val = evaluate_arrays(model, vX, vT, v_streaming, self.loss, self.metrics,
                                  self.batch_size, self.dist, self.val_prepared, vW)
            logs.update({f"val_{k}": v for k, v in val.items()})
        return logs

    def _record_partial(self, epoch, seen, total, metric_sums, n) -> None:
        """The interrupted epoch in the history, its figures over the steps it ran (no
        validation: NaN), marked by ``history.partial``."""
        # Rows of the steps that ran (with sample weights, their share of the weight).
        mass = n * seen / max(int(self.data.X.shape[0]), 1) if self.weighted else seen
        nan = float("nan")
        logs = {"loss": float(total) / mass if mass else nan}
        logs.update({m.name: m.result(_metrics.host_value(s), mass, p)
                     if mass and s is not None else nan
                     for m, s, p in zip(self.metrics, metric_sums, self.prepared)})
        logs.update({k: nan for k in self.history.history if k not in logs})
        self.history.append(epoch, logs)
        self.history.partial = {"epoch": epoch, "samples": int(seen),
                                "of": int(self.data.X.shape[0])}

    def _steps(self, X, T, W, streaming, interrupted):
        """Run the batches of one epoch; the epoch's loss and metric sums on the device.

        Each step writes its loss and metric values into per-epoch device buffers (no
        arithmetic on running sums per step); they are reduced once at the end. The loss
        buffer also tells, if the total is not finite, which step went first. With sample
        weights each step's loss (a weighted mean) counts by its weight sum, and the
        metrics' sums are weighted sums.
        """
        model = self.model
        backend, xp = model.backend, model.backend.xp
        n, b = int(X.shape[0]), self.batch_size
        steps = self.dist.steps(n, b)
        acc = accumulator(backend).dtype
        step_losses = backend.zeros((steps,), dtype=acc)
        metric_steps = [None] * len(self.metrics)
        head = self.head
        fused_at = head.metric_at  # a metric the loss kernel writes into its buffer
        if fused_at is not None:
            counts_correct = type(self.metrics[fused_at]) is _metrics.Accuracy
            metric_steps[fused_at] = backend.zeros((steps,), dtype=xp.int64 if counts_correct
                                                   else None)
        step_weights = None if W is None else backend.zeros((steps,), dtype=acc)
        self._running = [None, None, 0]  # loss and weight sums, rows: for per_batch
        batch, counts = -1, []
        batches = self.dist.batches(self.data)
        for batch, (xb, tb, wb, rows) in enumerate(batches):
            slots = None
            if head.writes_loss:
                slots = (step_losses[batch], None if fused_at is None
                         else metric_steps[fused_at][batch])
            result = self.step(xb, tb, wb, slots)
            value, output = result.value, result.output
            counts.append(rows)
            if slots is None or value is not slots[0]:
                step_losses[batch] = value
            if wb is not None:
                step_weights[batch] = xp.sum(wb)
            for i, m in enumerate(self.metrics):
                if i == fused_at and head.wrote_metric():
                    continue
                count = m.batch(xp, output, tb, wb)
                if metric_steps[i] is None:  # a metric of counts sums an array per step
                    metric_steps[i] = backend.zeros((steps,) + tuple(count.shape),
                                                    dtype=count.dtype)
                metric_steps[i][batch] = count
            if self.per_batch:  # a running sum only for callbacks that look at it
                weight = None if wb is None else step_weights[batch]
                self._batch_end(batch, cast_like(xp, value, step_losses), rows, weight)
            if interrupted():
                break
        return self._epoch_sums(batch + 1, counts, step_losses, metric_steps,
                                step_weights) + (sum(counts),)

    def _batch_end(self, batch, value, rows, weight) -> None:
        """Callbacks' ``on_batch_end``: rows seen and a running loss sum over them (with
        sample weights, the running weighted mean times the rows)."""
        xp = self.model.backend.xp
        total, mass, seen = self._running
        part = value * (rows if weight is None else weight)
        total = part if total is None else total + part
        seen += rows
        if weight is not None:
            mass = weight if mass is None else mass + weight
        self._running = [total, mass, seen]
        loss_sum = total if weight is None else \
            total / xp.where(mass > 0, mass, xp.ones_like(mass)) * seen
        for cb in self.per_batch:
            cb.on_batch_end(self.model, batch, seen, loss_sum)

    def _epoch_sums(self, done, counts, step_losses, metric_steps, step_weights):
        """The epoch's sums on the device from its per-step buffers: ``(total,
        metric sums, step losses, (dropped, valid))``; each step counts by its rows or,
        with sample weights, by its weight sum."""
        backend = self.model.backend
        xp = backend.xp
        rows = backend.asarray(counts, dtype=step_losses.dtype)
        losses = step_losses[:done]
        metric_vals = [cast_like(xp, buf[:done], losses) if buf is not None else None
                       for buf in metric_steps]
        if 0 in counts:  # a rank's weight-0 stand-in row counts toward no metric
            metric_vals = [None if v is None else xp.where(_per_step(xp, rows > 0, v), v,
                                                           xp.zeros_like(v))
                           for v in metric_vals]
        weights = rows if step_weights is None else step_weights[:done]
        dropped = valid = None
        if self.skip:  # a skipped step (non-finite loss) counts toward nothing
            finite = xp.isfinite(losses)
            dropped = xp.sum(xp.astype(xp.logical_not(finite), xp.int64))
            valid = xp.sum(xp.where(finite, weights, xp.zeros_like(weights)))
            losses = xp.where(finite, losses, xp.zeros_like(losses))
            metric_vals = [None if v is None else xp.where(_per_step(xp, finite, v), v,
                                                           xp.zeros_like(v))
                           for v in metric_vals]
        total = xp.sum(losses * weights)
        sums = [None if v is None else xp.sum(v, axis=0) for v in metric_vals]
        return total, sums, step_losses, (dropped, valid)


def _per_step(xp, flags, like):
    """``flags (steps,)`` shaped to select the steps of ``like``, ``(steps,)`` or
    ``(steps, *counts)``."""
    return xp.reshape(flags, (-1,) + (1,) * (like.ndim - 1))
