"""Data-parallel training: one process per device, launched by ``mpiexec`` (or ``srun``).

The ChainerMN/Horovod design on proven engines: the same model on every rank, parameters
broadcast from rank 0 when ``fit`` starts, and the gradients averaged by one all-reduce
over the model's flat gradient buffer each step, through MPI (mpi4py, host memory) or, for
CuPy models, NCCL (``cupy.cuda.nccl``, its unique id sent over MPI). Every rank calls
``fit`` alike with the whole dataset: the ranks agree on that first, and refuse together
what differs (:mod:`.agreement`). Rank 0 alone prints, draws progress and writes files;
decisions that end training are collective, and no rank waits for ever on another
(``$GPUNN_DIST_TIMEOUT``, :mod:`.group`).

A script needs no change: ``fit`` notices an MPI launch from the launcher's environment and
initialises itself. Call :func:`init` first in scripts that train on GPUs, so each rank
picks its own GPU before CuPy starts. Importing gpunn never imports mpi4py, and a process
not started by an MPI launcher never does.
"""

from __future__ import annotations

import os

from .group import SINGLE, World

__all__ = ["init", "world", "joined", "rank", "size", "is_root", "launched", "World",
           "ENGINES"]

#: Engine names for :func:`init` (and ``$GPUNN_DIST_ENGINE``).
ENGINES = ("auto", "mpi", "nccl")
#: Environment variables by which MPI launchers announce a job of several processes:
#: MPICH/Hydra and PMI-2 (srun --mpi=pmi2), Open MPI, MVAPICH; PMIx (srun --mpi=pmix,
#: prterun) announces the rank only.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_ONLY_VARS = ("PMIX_RANK",)

_world: World | None = None


def launched() -> bool:
    """Whether this process was started by an MPI launcher as one of several (read from
    the environment; imports nothing)."""
    for var in _SIZE_VARS:
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            continue
    return any(var in os.environ for var in _RANK_ONLY_VARS)


def init(engine: str | None = None) -> World:
    """Join the MPI job this process belongs to (a world of one when not launched by MPI).

    Idempotent. Under a launcher it imports mpi4py, splits the ranks by node to find this
    rank's local rank, points CUDA at the local rank's GPU (when CuPy has not started yet)
    and makes an uncaught exception on any rank abort the whole job (``python -m mpi4py``
    semantics), so no rank waits forever on one that died.

    Parameters
    ----------
    engine : {"auto", "mpi", "nccl"}, optional
        How gradients of CuPy models are summed: "auto" (default, or
        ``$GPUNN_DIST_ENGINE``) uses NCCL when ``cupy.cuda.nccl`` is usable and MPI
        (host-staged) otherwise, with a notice; NumPy models always use MPI.

    Returns
    -------
    World
        ``rank``, ``size``, ``local_rank``, ``local_size``, ``engine``.
    """
    global _world
    engine = engine if engine is not None else os.environ.get("GPUNN_DIST_ENGINE", "auto")
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if _world is not None:
        _world.engine = engine
        return _world
    if not launched():
        _world = SINGLE
        SINGLE.engine = engine
        return _world
    from .group import join_mpi

    _world = join_mpi(engine)
    return _world


def world() -> World:
    """The current world, initialising it (see :func:`init`) on first use."""
    return _world if _world is not None else init()


def joined() -> World | None:
    """The world if :func:`init` has succeeded, else None; never initialises (an error
    handler asks this, so a failed join, e.g. without mpi4py, is not retried)."""
    return _world


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return world().rank


def size() -> int:
    """Number of processes training together (1 when not distributed)."""
    return world().size


def is_root() -> bool:
    """Whether this process prints and writes files (rank 0)."""
    return world().rank == 0
