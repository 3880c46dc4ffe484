"""What keeps a run recoverable: roll-back snapshots, divergence, out of memory, Ctrl-C.

- :class:`Snapshot`: parameters and optimiser state at the start of an epoch (on the GPU
  when it fits with room to spare, else in host memory); a divergence or out-of-memory
  error puts the model back there.
- :func:`diverged`: what a non-finite epoch loss does under ``on_divergence``.
- :func:`oom_message`: the out-of-memory explanation (batch size, memory estimate).
- :func:`interrupt_flag`: Ctrl-C stops after the current step; a second one aborts.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading

import numpy as np

from ..backend.ops import host_array
from ..errors import TrainingDiverged


class Snapshot:
    """Parameters and optimiser state at the start of an epoch.

    On a GPU the copy stays on the device when a snapshot takes under a fifth of the free
    memory (``on_device``): a device-to-device copy queued on the stream, no host round
    trip and no synchronisation per epoch. Otherwise (and on the CPU) it is a host copy,
    so a divergence or out-of-memory error can put the model back without a second copy
    of the model on a full GPU.
    """

    #: How much slower a copy into host memory is than one within device memory (PCIe or
    #: NVLink-C2C against HBM bandwidth, roughly), for :meth:`epochs_between`.
    HOST_COPY_COST = 100

    def __init__(self, model, optimizer, epoch: int):
        self.epoch = epoch
        self.model, self.optimizer = model, optimizer
        backend = model.backend
        # What the optimiser (and the wrappers around it, e.g. 16-bit master weights)
        # holds: restored in place, so every reference to it stays valid.
        # (None: a model without one, e.g. a callback driven by hand).
        self._targets = optimizer.saved_arrays() if optimizer is not None else []
        self.on_device = False
        if getattr(backend, "library", "") == "cupy":
            arrays = model.parameters() + self._targets
            self.on_device = backend.fits_on_device(5 * sum(a.nbytes for a in arrays))
        copy = (lambda a: backend.xp.asarray(a, copy=True)) if self.on_device else \
            (lambda a: np.array(host_array(a)))
        self.params = model.store.snapshot(on_device=self.on_device)
        self.train_state = model.train_state  # what a checkpoint written then would hold
        self.state = [copy(a) for a in self._targets]
        self.t = getattr(optimizer, "t", 0)
        #: Bytes copied: the parameters, buffers and the optimiser's arrays.
        self.nbytes = sum(_nbytes(a) for a in self.params + self.state)

    @classmethod
    def from_saved(cls, model, optimizer, epoch: int, params: list, state: list, t: int,
                   train_state) -> Snapshot:
        """A snapshot from its host arrays (a checkpoint's copy, e.g. early stopping's best
        epoch); the arrays must fit the model and optimiser as they are now.

        Raises
        ------
        ValueError
            Naming what does not fit.
        """
        snap = cls.__new__(cls)
        snap.epoch, snap.model, snap.optimizer = epoch, model, optimizer
        snap._targets = optimizer.saved_arrays() if optimizer is not None else []
        for what, saved, targets in (("parameters and buffers", params,
                                      model.store.parameters() + model.store.buffers()),
                                     ("optimiser arrays", state, snap._targets)):
            want = [tuple(a.shape) for a in targets]
            got = [tuple(np.shape(a)) for a in saved]
            if want != got:
                raise ValueError(f"the saved copy of epoch {epoch} has {what} of shapes "
                                 f"{got}; the model now has {want}")
        snap.on_device = False
        snap.params, snap.state = [np.asarray(a) for a in params], [np.asarray(a) for a in state]
        snap.t, snap.train_state = int(t), train_state
        snap.nbytes = sum(_nbytes(a) for a in snap.params + snap.state)
        return snap

    def epochs_between(self, steps: int) -> int:
        """Epochs between snapshots, decided from sizes and, on a GPU, whether the copy
        fits in its free memory (not a timing; the ranks of a distributed fit take the
        smallest of theirs): an epoch reads and writes the parameters, gradients and
        optimiser state a few times per step, a snapshot copies them once (a copy to host
        memory counting :attr:`HOST_COPY_COST` times); snapshots stay under ~5% of an
        epoch's memory traffic. Every epoch on the CPU and for GPU snapshots kept on the
        device; less often for big models whose snapshot goes to host memory."""
        on_gpu = getattr(self.model.backend, "library", "") == "cupy"
        if not on_gpu or self.on_device:
            return 1  # a copy within the same memory: cheaper than any epoch's steps
        params = sum(_nbytes(p) for p in self.model.parameters())
        state = sum(_nbytes(a) for a in self._targets)
        epoch_traffic = max(1, steps) * (4 * params + 2 * state)
        cost = self.nbytes * self.HOST_COPY_COST
        return max(1, math.ceil(cost / (0.05 * epoch_traffic)))

    def restore(self) -> None:
        """Put parameters, buffers, the optimiser's arrays and step counter back (copied in
        place: the snapshot stays as taken for a later roll-back to it)."""
        self.model.store.restore(self.params)
        be = self.model.backend
        with be.context():
            for target, saved in zip(self._targets, self.state):
                target[...] = be.asarray(saved, dtype=target.dtype)
        if self.optimizer is not None:
            self.optimizer.t = self.t
        self.model.train_state = self.train_state


def _nbytes(a) -> int:
    """Bytes of an array of any namespace (the standard has no ``nbytes``)."""
    n = getattr(a, "nbytes", None)
    if n is not None:
        return int(n)
    name = str(a.dtype).rsplit(".", 1)[-1]
    return math.prod(a.shape) * np.dtype(name).itemsize


def diverged(model, step_losses, snapshot, epoch: int, policy: str, verbose) -> bool:
    """Report a non-finite epoch loss under ``policy`` ("raise" or "stop"), the model
    already rolled back to ``snapshot``: raise :class:`TrainingDiverged` naming the first
    bad step, or print it and return True (stop)."""
    losses = host_array(step_losses)
    bad = int(np.argmax(~np.isfinite(losses)))
    error = TrainingDiverged(epoch, bad + 1, getattr(model.optimizer, "lr", None),
                             snapshot.epoch)
    if policy == "raise":
        raise error
    if verbose:
        print(f"stopped: {error}", flush=True)
    return True


def oom_message(model, batch_size: int, restored_epoch: int | None) -> str:
    """Why training ran out of memory and what to change."""
    itemsize = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}[model.dtype]
    n_params = model.count_params()
    state = len(model.optimizer.state_keys) if model.optimizer is not None else 2
    fixed = n_params * (2 + state) * itemsize
    per_batch = 2 * batch_size * _values_per_sample(model) * itemsize
    return (f"out of memory on {model.device} while training with batch_size="
            f"{batch_size}: the model needs about {fixed / 2**20:,.1f} MiB for "
            f"parameters, gradients and optimiser state plus about "
            f"{per_batch / 2**20:,.1f} MiB of activations per batch (and the dataset, "
            f"unless streamed). Lower batch_size (or use device_data=False); "
            + (f"the parameters are back at the start of epoch {restored_epoch} and "
               if restored_epoch else "")
            + "memory was released")


def _values_per_sample(model) -> int:
    """Input and layer outputs of one sample, along the top-level layers (shapes known)."""
    shape = model.input_shape()
    total = int(np.prod(shape)) if shape else 0
    for layer in model.layers:
        shape = layer.output_shape(shape)
        total += int(np.prod(shape)) if shape else 0
    return total


@contextlib.contextmanager
def interrupt_flag():
    """While training, Ctrl-C asks the loop to stop after the current step; a second
    Ctrl-C interrupts at once. Yields a function telling whether it was pressed."""
    pressed = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
        from ..distributed import joined

        world = joined()
        if world is None or world.rank == 0:  # a launcher sends Ctrl-C to every rank
            print("\ngpunn: stopping after the current step (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)
