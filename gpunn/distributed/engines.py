"""Gradient engines: sum a flat device buffer over ranks in place, broadcast one.

- :class:`MPIEngine`: ``MPI_Allreduce`` on host memory; CuPy buffers are staged through
  the host (works with any MPI, CUDA-aware or not).
- :class:`NCCLEngine`: ``cupy.cuda.nccl.NcclCommunicator.allReduce`` on the device, on
  the current CUDA stream, with no host copy; its unique id is sent over MPI.
"""

from __future__ import annotations

import warnings

import array_api_compat
import numpy as np

from ..backend.ops import host_array

#: dtype name -> the attribute of cupy.cuda.nccl naming it.
NCCL_TYPES = {"float16": "NCCL_FLOAT16", "bfloat16": "NCCL_BFLOAT16",
              "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


class MPIEngine:
    """All-reduce and broadcast through MPI on host memory.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    backend : Backend, optional
        Where the buffers live when not in host memory (to copy the result back).
    """

    name = "mpi"

    def __init__(self, comm, backend=None):
        from mpi4py import MPI

        self.comm, self.backend, self._mpi = comm, backend, MPI

    def allreduce(self, buf) -> None:
        """Sum ``buf (n,)`` over ranks, in place."""
        host = _host(buf)
        self.comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
        if host is not buf:
            buf[...] = self.backend.asarray(host, dtype=buf.dtype)

    def broadcast(self, buf, root: int = 0) -> None:
        """Overwrite ``buf (n,)`` with rank ``root``'s, in place."""
        host = _host(buf)
        self.comm.Bcast(host, root=root)
        if host is not buf:
            buf[...] = self.backend.asarray(host, dtype=buf.dtype)


class NCCLEngine:
    """All-reduce and broadcast on the GPU through NCCL.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Carries rank 0's NCCL unique id to the others.
    nccl : module
        ``cupy.cuda.nccl``.
    cupy : module
    """

    name = "nccl"

    def __init__(self, comm, nccl, cupy):
        self.nccl, self.cupy = nccl, cupy
        uid = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        uid = comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())

    def _type(self, buf) -> int:
        name = str(buf.dtype)
        attr = NCCL_TYPES.get(name)
        if attr is None or not hasattr(self.nccl, attr):
            raise ValueError(f"dtype: NCCL sums float16, bfloat16, float32 or float64 "
                             f"buffers, got {name}")
        return getattr(self.nccl, attr)

    def allreduce(self, buf) -> None:
        """Sum the contiguous device buffer ``buf (n,)`` over ranks, in place, queued on
        the current stream (no host synchronisation)."""
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._type(buf),
                            self.nccl.NCCL_SUM, stream)

    def broadcast(self, buf, root: int = 0) -> None:
        """Overwrite ``buf (n,)`` with rank ``root``'s, in place, on the current stream."""
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.bcast(buf.data.ptr, buf.size, self._type(buf), root, stream)


def make_engine(world, backend):
    """The engine for ``backend``'s arrays under ``world.engine`` ("auto", "mpi", "nccl").

    Raises
    ------
    ValueError
        ``engine="nccl"`` for a model not on a CUDA GPU, or NCCL not usable.
    """
    on_gpu = array_api_compat.is_cupy_namespace(backend.xp)
    if not on_gpu or world.engine == "mpi":
        if world.engine == "nccl":
            raise ValueError(f"engine: 'nccl' needs a model on a CUDA GPU, got one on "
                             f"{backend.name}")
        return MPIEngine(world.comm, backend)
    nccl, why = _nccl()
    if nccl is None:
        if world.engine == "nccl":
            raise ValueError(f"engine: 'nccl' asked for, but {why}")
        if world.rank == 0:
            warnings.warn(f"gpunn.distributed: {why}; gradients go through MPI via host "
                          "memory (slower)", UserWarning, stacklevel=4)
        return MPIEngine(world.comm, backend)
    import cupy

    with backend.context():
        return NCCLEngine(world.comm, nccl, cupy)


def _nccl():
    """``(cupy.cuda.nccl, "")`` when usable, else ``(None, why not)``."""
    try:
        from cupy.cuda import nccl
    except ImportError as exc:
        return None, f"NCCL is not usable from CuPy ({exc})"
    if not getattr(nccl, "available", True):
        return None, "CuPy was built without NCCL (cupy.cuda.nccl.available is False)"
    return nccl, ""


def _host(buf):
    """``buf`` itself when it is a contiguous NumPy array, else a contiguous host copy."""
    if isinstance(buf, np.ndarray) and buf.flags.c_contiguous:
        return buf
    return np.ascontiguousarray(host_array(buf))
