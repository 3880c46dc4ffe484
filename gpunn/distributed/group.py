"""The processes training together: rank, size, local rank, and host-side collectives.

Host collectives (a flag, a few floats, a generator state) go over MPI; the gradient
all-reduce goes through an engine (:mod:`.engines`) chosen per device.

No rank waits for ever: the host collectives that decide whether training goes on (the
agreement at the start of ``fit`` and of each epoch, the epoch's sums, the stop flags) are
non-blocking requests waited on with a deadline (``$GPUNN_DIST_TIMEOUT`` seconds, default
:data:`TIMEOUT`); a rank whose partners never come says so and ends the job. The start
agreement travels on a communicator of its own, so it can never be matched with another
collective of a rank that is elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings

import numpy as np

#: Seconds a rank waits in a host collective for the others before it ends the job (as
#: PyTorch's process groups); ``$GPUNN_DIST_TIMEOUT`` overrides it.
TIMEOUT = 1800.0
#: Seconds of waiting after which a rank says on stderr what it waits for.
NOTICE_AFTER = 60.0


class World:
    """This process's place in the job.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm or None
        ``COMM_WORLD``; None for a single process.
    rank, size, local_rank, local_size : int
        Global and per-node position (the local one from an MPI shared-memory split).
    engine : {"auto", "mpi", "nccl"}
        The gradient engine asked for (see :func:`gpunn.distributed.init`).
    """

    def __init__(self, comm=None, rank=0, size=1, local_rank=0, local_size=1,
                 engine="auto"):
        self.comm, self.rank, self.size = comm, rank, size
        self.local_rank, self.local_size, self.engine = local_rank, local_size, engine
        self._engines = {}
        #: A duplicate of ``comm`` for the agreements (:mod:`.agreement`): their messages
        #: never match a collective of another kind.
        self.control = None
        #: Seconds to wait in a host collective before ending the job.
        self.timeout = TIMEOUT
        #: Where the ranks' GPU choice came from (for ``gpunn info``).
        self.gpu_note = ""

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def describe(self) -> str:
        """One line: world size, rank, local rank, engine asked for and MPI library."""
        if not self.distributed:
            return "not distributed (1 process; launch with mpiexec -n N to train on N)"
        from mpi4py import MPI

        library = MPI.Get_library_version().splitlines()[0].strip()
        return (f"world size {self.size}, rank {self.rank} (local {self.local_rank} of "
                f"{self.local_size}), engine {self.engine}, {library}"
                + (f"; {self.gpu_note}" if self.gpu_note else ""))

    # ------------------------------------------------------------------ host collectives
    def sum(self, values) -> np.ndarray:
        """Element-wise sum over ranks of a 1-D float64 host vector (a copy)."""
        buf = np.ascontiguousarray(values, dtype=np.float64).copy()
        if self.distributed:
            from mpi4py import MPI

            self.wait(self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM),
                      "sum the epoch's figures")
        return buf

    def any(self, flag) -> bool:
        """Whether ``flag`` is true on any rank (every rank gets the same answer)."""
        if not self.distributed:
            return bool(flag)
        from mpi4py import MPI

        buf = np.array([1 if flag else 0], dtype=np.int32)
        self.wait(self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX), "decide a stop")
        return bool(buf[0])

    def least(self, value: int) -> int:
        """The smallest of the ranks' ``value`` (every rank gets the same answer)."""
        if not self.distributed:
            return int(value)
        from mpi4py import MPI

        buf = np.array([value], dtype=np.int64)
        self.wait(self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MIN), "agree on a number")
        return int(buf[0])

    def allgather_bytes(self, buf, what: str) -> np.ndarray:
        """Every rank's ``buf`` (1-D uint8, the same length on every rank), one row per
        rank, over the agreement communicator."""
        out = np.zeros((self.size, buf.size), dtype=np.uint8)
        if not self.distributed:
            out[0] = buf
            return out
        self.wait(self.control.Iallgather(np.ascontiguousarray(buf), out), what)
        return out

    def wait(self, request, what: str) -> None:
        """Wait for a non-blocking collective: polled, yielding the processor between
        polls (sleeping up to 10 ms once it has taken 0.1 s, so a waiting rank leaves
        shared cores to the others); after :data:`NOTICE_AFTER` seconds a notice on
        stderr, and after ``timeout`` seconds the job ends (the other ranks are gone or
        elsewhere, and would never come)."""
        started = time.monotonic()
        pause, noticed = 0.0, False
        while not request.Test():
            waited = time.monotonic() - started
            if waited > self.timeout:
                sys.stderr.write(
                    f"gpunn: rank {self.rank} of {self.size} waited {waited:.0f} s for the "
                    f"other ranks to {what}; they left, failed or are running other code. "
                    f"Aborting the job (GPUNN_DIST_TIMEOUT sets the wait, now "
                    f"{self.timeout:g} s)\n")
                self.abort(1)
            if not noticed and waited > min(NOTICE_AFTER, self.timeout / 2):
                noticed = True
                sys.stderr.write(f"gpunn: rank {self.rank} of {self.size} has waited "
                                 f"{waited:.0f} s for the other ranks to {what}\n")
            # The first 0.1 s, as a blocking exchange would (ranks a step apart meet
            # at once); then a growing pause, which a long wait (a slow rank) can afford.
            if waited > 0.1:
                pause = min(0.01, max(1e-4, pause * 2))
            time.sleep(pause)

    def broadcast(self, obj, root: int = 0):
        """A small picklable object from ``root`` to every rank."""
        return self.comm.bcast(obj, root=root) if self.distributed else obj

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (after this rank's message was written)."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.distributed:
            # The launcher forwards output through pipes it stops reading once a rank
            # aborts: a moment first lets the message that explains the abort through.
            time.sleep(0.5)
            self.comm.Abort(code)
        raise SystemExit(code)

    def fail(self, exc: BaseException | None = None) -> None:
        """End the job after this rank failed on its own (the others would wait for it
        in their next collective): its traceback, then one line saying so."""
        if exc is not None:
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)
        sys.stderr.write(f"gpunn: rank {self.rank} of {self.size} failed; aborting the "
                         "job\n")
        self.abort(1)

    def engine_for(self, backend):
        """The gradient engine for ``backend``'s arrays (made once per device)."""
        from .engines import make_engine

        key = backend.name
        if key not in self._engines:
            self._engines[key] = make_engine(self, backend)
        return self._engines[key]


SINGLE = World()


def join_mpi(engine: str) -> World:
    """Initialise MPI (through mpi4py) and describe this rank; install the abort hook."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("this process was started by an MPI launcher but mpi4py is not "
                          "installed; pip install \"gpunn[distributed]\"") from None
    comm = MPI.COMM_WORLD
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    world = World(comm, comm.Get_rank(), comm.Get_size(), node.Get_rank(), node.Get_size(),
                  engine)
    node.Free()
    if world.distributed:
        world.control = comm.Dup()
        world.timeout = _timeout()
        _abort_on_uncaught(world)
        world.gpu_note = _pick_gpu(world.local_rank)
        if world.rank:  # rank 0 alone prints
            from ..backend import silence_fallback_notice

            silence_fallback_notice()
    return world


def _abort_on_uncaught(world: World) -> None:
    """An uncaught exception on one rank ends the job (the others would otherwise wait
    in their next collective for ever), after its traceback is printed."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        world.fail()

    sys.excepthook = hook


def _timeout() -> float:
    """``$GPUNN_DIST_TIMEOUT`` seconds (positive), else :data:`TIMEOUT`."""
    text = os.environ.get("GPUNN_DIST_TIMEOUT", "")
    try:
        value = float(text) if text else TIMEOUT
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"GPUNN_DIST_TIMEOUT: expected a positive number of seconds, got "
                         f"{text!r}")
    return value


def _pick_gpu(local_rank: int) -> str:
    """Show this rank only its node-local GPU (``CUDA_VISIBLE_DEVICES``): "cuda" is then
    this rank's device. Only possible before CuPy has started CUDA."""
    if importlib.util.find_spec("cupy") is None:
        return ""
    if "cupy" in sys.modules:
        warnings.warn("gpunn.distributed.init() ran after CuPy was imported: every rank "
                      "of a node may use the same GPU; call it before building models",
                      UserWarning, stacklevel=3)
        return "GPU not chosen (CuPy already imported)"
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d]
    gpu = visible[local_rank % len(visible)] if visible else str(local_rank)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    return f"GPU {gpu} (from local rank {local_rank})"
