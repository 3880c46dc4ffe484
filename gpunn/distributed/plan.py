"""What one ``fit`` does differently on several ranks: the hooks of the training loop.

:class:`Local` (one process) changes nothing. :class:`Plan` (several) makes each rank
train on its share of every global batch and keeps the ranks equal:

- **Agreement.** A plan exists only once the ranks agree on everything that must be equal
  (:mod:`.agreement`: settings, model, loss, optimiser, callbacks, data), or every rank
  has refused; the optimiser is agreed again at each epoch's start. An error that leaves
  ``fit`` on one rank alone ends the job (:meth:`Plan.guard`).

- **Data order.** Every rank draws the same permutation of all ``N`` rows from the one
  shared generator (as a single process would); global batch ``k`` is rows
  ``perm[k*B:(k+1)*B]`` and rank ``r`` takes the contiguous piece
  ``[r*m//p, (r+1)*m//p)`` of its ``m`` rows (``B/p`` rows of every full batch). When the
  last batch has fewer rows than ranks, a rank with no row runs its step on the batch's
  last row with weight 0, so every rank takes part in every all-reduce.
- **Gradients.** Each rank's gradient (a mean over its rows) is scaled by its share of the
  global batch and summed over ranks: the mean over the global batch, as one process
  computes it at batch size ``B``. With sample weights a rank's gradient is a weighted
  mean over its rows and its share is its rows' part of the global batch's weight sum
  (every rank holds all weights, so each computes that sum itself, on the device).
- **Dropout.** The masks of a global batch are drawn whole from the shared generator and
  each rank uses its rows of them: the same masks as one process at batch ``B``, and the
  generators of all ranks stay equal (so checkpoints resume under any number of ranks).
- **Batch statistics.** While a plan is :func:`active`, a layer whose forward pass needs
  the whole global batch (``BatchNorm``) sums its statistics over the ranks with the
  plan's engine, using :meth:`Plan.step_rows` and the share.
- **Decisions.** Epoch sums (loss, metrics, skipped steps) and validation sums are summed
  over ranks before anything reads them; Ctrl-C and ``stop_training`` are or-ed over
  ranks, so all ranks stop after the same step.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..backend.ops import host_array
from ..optim.wrappers import OptimizerWrapper
from .agreement import agree


class Local:
    """One process: the training loop as it always was."""

    size, rank, is_root = 1, 0, True

    def steps(self, n: int, batch_size: int) -> int:
        return -(-n // batch_size)

    def local_rows(self, n: int, batch_size: int) -> int:
        """Rows this rank trains on per epoch (what its progress bar counts)."""
        return n

    def batches(self, data):
        """``(x, t, w, rows)``: one epoch of ``data`` (a
        :class:`gpunn.training.batches.Batches`), as it yields it."""
        return data.epoch()

    def wrap_optimizer(self, optimizer, skip: bool):
        """What a training step steps: the optimiser itself on one process."""
        return optimizer

    def reduce_gradients(self, grads, loss=None) -> None:
        """Nothing to reduce."""

    def reduce_epoch(self, sums):
        return sums

    def rows_of(self, X, T, W=None):
        return X, T, W

    def sum_floats(self, values):
        return values

    def collective(self, flag):
        return flag

    def any(self, flag) -> bool:
        return bool(flag)

    def least(self, value: int) -> int:
        """The smallest of the ranks' ``value``: the value itself, alone."""
        return value

    def training(self, model):
        return contextlib.nullcontext()

    def agree(self, terms: dict, what: str) -> None:
        """Nothing to agree with."""

    def guard(self):
        """What an error leaving ``fit`` does to the other ranks: nothing, alone."""
        return contextlib.nullcontext()


LOCAL = Local()

#: The plan of the distributed ``fit`` running in this process (None outside one): layers
#: whose forward pass needs the whole global batch (BatchNorm's statistics) read it.
_active = None


def active():
    """The :class:`Plan` of the distributed ``fit`` running now, or None."""
    return _active


class RankAverage(OptimizerWrapper):
    """An optimiser wrapper: the ranks' gradients are averaged
    over the global batch (one all-reduce over the flat buffer) before the wrapped step.

    Parameters
    ----------
    optimizer : Optimizer or wrapper
    plan : Plan
    poison : bool
        Under ``on_divergence="skip"``: a rank's non-finite loss poisons its gradients,
        so every rank skips that step together.
    """

    def __init__(self, optimizer, plan, poison: bool):
        super().__init__(optimizer)
        self.plan, self.poison = plan, poison

    def step(self, params: list, grads: list, loss=None) -> None:
        self.plan.reduce_gradients(grads, loss if self.poison else None)
        self.optimizer.step(params, grads, loss=loss)


class Plan(Local):
    """Several ranks (see the module docstring).

    Parameters
    ----------
    world : World
    engine : MPIEngine or NCCLEngine
        Sums and broadcasts the model's flat device buffers.
    """

    def __init__(self, world, engine):
        self.world, self.engine = world, engine
        self.size, self.rank, self.is_root = world.size, world.rank, world.rank == 0
        #: This rank's rows of the current global batch: (lo, hi, m); hi - lo is 1 for a
        #: weight-0 stand-in row.
        self.window = None
        #: This rank's part of the global batch: of its rows, or (sample weights) of its
        #: weight sum, a 0-d device array then.
        self.share = 1.0

    def _piece(self, m: int) -> tuple[int, int]:
        return self.rank * m // self.size, (self.rank + 1) * m // self.size

    def step_rows(self) -> tuple[int, int] | None:
        """``(rows, m)`` during a training step: this rank's rows of the global batch (0
        for a rank running a weight-0 stand-in row) and the global batch's rows; None
        between steps."""
        if self.window is None:
            return None
        m = self.window[2]
        lo, hi = self._piece(m)
        return hi - lo, m

    def local_rows(self, n: int, batch_size: int) -> int:
        full, last = divmod(n, batch_size)
        lo, hi = self._piece(last)
        return full * (batch_size // self.size) + hi - lo

    def batches(self, data):
        """``(x, t, w, rows)`` of this rank for each global batch of ``data`` (a
        :class:`gpunn.training.batches.Batches`): the rows of the order ``data.order()``
        draws (the same on every rank), this rank's piece of each global batch gathered
        or streamed by ``data.rows``."""
        backend, n, batch_size = data.backend, data.n, data.batch_size
        # The same draw a single process makes, so the generators stay in step.
        perm = data.order()
        positions, pieces = [], []
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            lo, hi = self._piece(m)
            rows = hi - lo
            if rows == 0:
                lo, hi = m - 1, m
            positions.append(np.arange(start + lo, start + hi))
            pieces.append((lo, hi, m, rows))
        pos = np.concatenate(positions)
        try:
            # This rank's rows: runs of batch_size / size of them, one per global batch
            # (only the last may be shorter), so data.rows cuts them as the pieces are.
            if perm is None:
                order = pos
            elif data.streaming or not backend.owns(perm):
                order = host_array(perm)[pos]
            else:
                order = backend.xp.take(perm, backend.asarray(pos), axis=0)
            chunks = data.rows(order, batch_size // self.size)
            W = data.W
            totals = None if W is None else self._batch_weights(backend, W, perm, batch_size)
            for k, ((lo, hi, m, rows), (xb, tb, wb)) in enumerate(zip(pieces, chunks)):
                self.window, self.share = (lo, hi, m), rows / m
                if wb is not None:
                    wb, self.share = self._weighted_share(backend, wb, rows, totals[k])
                yield xb, tb, wb, rows
        finally:
            self.window, self.share = None, 1.0

    @staticmethod
    def _batch_weights(backend, W, perm, batch_size: int):
        """Each global batch's sum of sample weights, one array on the model's device
        (moved there once per epoch when ``W`` streams from host memory)."""
        xp = _namespace(W)
        if perm is not None:  # the global batches' rows, in the shuffled order
            order = perm if backend.owns(W) and backend.owns(perm) else \
                xp.asarray(host_array(perm))
            W = xp.take(W, order, axis=0)
        n = int(W.shape[0])
        full = n // batch_size * batch_size
        sums = [xp.sum(xp.reshape(W[:full], (-1, batch_size)), axis=1)] if full else []
        if full < n:
            sums.append(xp.reshape(xp.sum(W[full:]), (1,)))
        return backend.asarray(xp.concat(sums) if len(sums) > 1 else sums[0], dtype=W.dtype)

    def _weighted_share(self, backend, wb, rows: int, total):
        """This rank's weights (zero for a stand-in row) and its share of the batch's
        weight sum, on the model's device. A batch whose weights are all zero keeps the
        shares by rows: its loss gradient is zero on every rank, but the layers'
        penalties (kernel_l2) must still add up to one."""
        xp = backend.xp
        if rows == 0:
            wb = xp.zeros_like(wb)
        total = backend.asarray(total, dtype=wb.dtype)
        positive = total > 0
        by_weight = xp.sum(wb) / xp.where(positive, total, xp.ones_like(total))
        return wb, xp.where(positive, by_weight, xp.full_like(by_weight, self.share))

    def wrap_optimizer(self, optimizer, skip: bool):
        return RankAverage(optimizer, self, skip)

    def reduce_gradients(self, grads, loss=None) -> None:
        """Average the ranks' gradients over the global batch, in place: each scaled by
        its share of the batch, then summed. A non-finite ``loss`` (given under
        ``on_divergence="skip"``) poisons this rank's gradients first, so every rank
        skips the step together."""
        for g in grads:
            xp = _namespace(g)
            if loss is not None:
                g[:1] = xp.where(xp.isfinite(loss), g[:1], xp.full_like(g[:1], xp.nan))
            g *= self.share
            self.engine.allreduce(g)

    def reduce_epoch(self, sums):
        """The epoch's device sums, summed over ranks, as host values (one exchange)."""
        total, metric_sums, step_losses, (dropped, valid), seen = sums
        have = [s is not None for s in metric_sums]
        extra = [dropped, valid]
        # Metrics of counts (precision, AUC) sum arrays: flattened here, shaped back after.
        parts = [np.asarray(host_array(v), dtype=np.float64) for v in
                 [total] + [s for s in metric_sums if s is not None]
                 + [e for e in extra if e is not None]]
        host = np.concatenate([p.ravel() for p in parts]
                              + [host_array(step_losses).astype(np.float64), [seen]])
        out = self.world.sum(host)
        summed, at = [], 0
        for p in parts:
            piece = out[at:at + p.size].reshape(p.shape)
            summed.append(np.float64(piece) if p.ndim == 0 else piece)
            at += p.size
        values = iter(summed[1:])
        metric_sums = [next(values) if h else None for h in have]
        extra = [next(values) if e is not None else None for e in extra]
        return (summed[0], metric_sums, out[at:-1], tuple(extra), int(out[-1]))

    def rows_of(self, X, T, W=None):
        """This rank's contiguous share of a validation set."""
        lo, hi = self._piece(int(X.shape[0]))
        return X[lo:hi, ...], (None if T is None else T[lo:hi, ...]), (
            None if W is None else W[lo:hi])

    def sum_floats(self, values):
        return [float(v) for v in self.world.sum(values)]

    def collective(self, flag):
        """``flag()`` (e.g. Ctrl-C pressed) or-ed over ranks at each call."""
        return lambda: self.world.any(flag())

    def any(self, flag) -> bool:
        return self.world.any(flag)

    def least(self, value: int) -> int:
        """The smallest of the ranks' ``value``, on every rank."""
        return self.world.least(value)

    def agree(self, terms: dict, what: str) -> None:
        """The ranks hold equal ``terms`` (e.g. the optimiser's hyper-parameters, which a
        callback may change between epochs), or every rank raises RanksDisagree."""
        agree(self.world, terms, None, what)

    @contextlib.contextmanager
    def guard(self):
        """An error that leaves ``fit`` on this rank alone ends the job: the other ranks
        would wait for it in their next collective for ever. Errors every rank raises at
        the same point (``collective``: divergence decided on the reduced loss, ranks
        that disagree) leave normally."""
        try:
            yield
        except Exception as exc:
            if not getattr(exc, "collective", False):
                self.world.fail(exc)
            raise
        except BaseException as exc:  # a second Ctrl-C, on this rank alone
            self.world.fail(exc)
            raise

    @contextlib.contextmanager
    def training(self, model):
        """While training: random draws of a step sized by this rank's rows are drawn
        for the whole global batch and sliced (see the module docstring), and this plan
        is :func:`active` (layers that need the global batch reduce over the ranks)."""
        global _active
        backends = {id(b): b for b in [model.backend] +
                    [lay.backend for _, lay in model.walk() if lay.backend is not None]}
        saved = {k: b.random for k, b in backends.items()}
        for k, b in backends.items():
            b.random = SlicedRandom(saved[k], self)
        previous, _active = _active, self
        try:
            yield
        finally:
            _active = previous
            for k, b in backends.items():
                b.random = saved[k]

    def start(self, model, seed) -> None:
        """Every rank from rank 0's parameters, buffers and random generator."""
        store = model.store
        arrays = [store.flat[0]] if store.flat is not None else store.parameters()
        arrays += store.buffers()
        for a in arrays:
            self.engine.broadcast(a)
        random = model.backend.random
        state = self.world.broadcast(random.state())
        if state is not None:
            random.set_state(state)
        elif seed is None:  # an unreadable generator (CuPy's): a seed from rank 0
            random.seed(self.world.broadcast(int(np.random.SeedSequence().entropy % 2**63)))


class SlicedRandom:
    """A generator whose draws for this rank's rows of a global batch are this rank's
    rows of the draw for the whole batch; everything else passes through."""

    def __init__(self, inner, plan):
        self.inner, self.plan = inner, plan

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _draw(self, fn, shape, *args):
        window = self.plan.window
        shape = tuple(shape)
        if window is None or not shape or shape[0] != window[1] - window[0]:
            return fn(shape, *args)
        lo, hi, m = window
        return fn((m, *shape[1:]), *args)[lo:hi, ...]

    def bernoulli(self, shape, p):
        return self._draw(self.inner.bernoulli, shape, p)

    def uniform(self, shape, low=0.0, high=1.0):
        return self._draw(self.inner.uniform, shape, low, high)

    def normal(self, shape, std=1.0, mean=0.0):
        return self._draw(self.inner.normal, shape, std, mean)


def _namespace(a):
    import array_api_compat

    return array_api_compat.array_namespace(a)


def check_batch(batch_size: int) -> None:
    """``batch_size`` splits evenly over the ranks (a check of this rank's own, made
    before the agreement like the other argument checks)."""
    from . import world as current_world

    size = current_world().size
    if size > 1 and batch_size % size:
        raise ValueError(f"batch_size: expected a multiple of the {size} ranks (the "
                         f"global batch is split evenly), got {batch_size}")


def is_root() -> bool:
    """Whether this process prints and writes files (rank 0, or the only process)."""
    from . import world as current_world

    return current_world().rank == 0


def refuse(exc: BaseException) -> None:
    """This rank's checks of ``fit``'s arguments failed: under several ranks the others,
    waiting in the agreement, are told and refuse too (the caller raises ``exc``)."""
    from . import world as current_world

    world = current_world()
    if world.distributed:
        agree(world, None, exc, "fit")


def for_fit(model, terms: dict):
    """The plan of one ``fit``: :data:`LOCAL` unless several ranks train together, and
    then only once the ranks agree on ``terms`` (:func:`.agreement.fit_terms`).

    Raises
    ------
    RanksDisagree
        On every rank: the ranks' terms differ, or a rank refused its arguments.
    ValueError
        A 16-bit model on MPI (on every rank: the ranks agree on the dtype).
    """
    from . import world as current_world

    world = current_world()
    if not world.distributed:
        return LOCAL
    agree(world, terms, None, "fit")
    try:  # NCCL's set-up is collective: a rank failing in it alone ends the job
        engine = world.engine_for(model.backend)
    except Exception as exc:
        world.fail(exc)
        raise
    if engine.name == "mpi" and model.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype: distributed training over MPI sums float32 or float64 "
                         f"gradients, got {model.dtype}; use NCCL on GPUs or float32")
    return Plan(world, engine)
