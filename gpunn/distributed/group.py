"""The processes training together: rank, size, local rank, and host-side collectives.

Host collectives (a flag, a few floats, a generator state) go over MPI; the gradient
all-reduce goes through an engine (:mod:`.engines`) chosen per device.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings

import numpy as np


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

            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf

    def any(self, flag) -> bool:
        """Whether ``flag`` is true on any rank (every rank gets the same answer)."""
        if not self.distributed:
            return bool(flag)
        from mpi4py import MPI

        buf = np.array([1 if flag else 0], dtype=np.int32)
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
        return bool(buf[0])

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
        sys.stderr.write(f"gpunn: rank {world.rank} of {world.size} failed; aborting the "
                         "job\n")
        world.abort(1)

    sys.excepthook = hook


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
