"""The NCCL engine's control flow against stand-ins of ``cupy.cuda.nccl`` and an MPI
communicator, and, with two or more GPUs and NCCL, two ranks on real GPUs."""

from __future__ import annotations

import os
import sys
import types
import warnings
from pathlib import Path

import fake_cupy
import numpy as np
import pytest

import gpunn as gn
from gpunn.backend import cuda_status
from gpunn.distributed import engines
from gpunn.distributed.group import World

sys.path.insert(0, str(Path(__file__).parent / "distributed"))
import cases  # noqa: E402
import mpi_launch  # noqa: E402


class FakeComm:
    """An MPI communicator of ``size`` ranks seen from ``rank``; bcast hands out what rank
    0 sent (the test plays rank 0 first)."""

    sent = None

    def __init__(self, rank, size=2):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def bcast(self, obj, root=0):
        if self.rank == root:
            FakeComm.sent = obj
        return FakeComm.sent


def fake_nccl(calls):
    class NcclCommunicator:
        def __init__(self, ndev, uid, rank):
            calls.append(("init", ndev, uid, rank))

        def allReduce(self, send, recv, count, dtype, op, stream):  # noqa: N802 (CuPy's)
            calls.append(("allReduce", send, recv, count, dtype, op, stream))

        def bcast(self, buf, count, dtype, root, stream):
            calls.append(("bcast", buf, count, dtype, root, stream))

    return types.SimpleNamespace(
        get_unique_id=lambda: (b"id-of-rank-0",), NcclCommunicator=NcclCommunicator,
        NCCL_FLOAT16=6, NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_SUM=0, available=True)


class DeviceBuffer:
    def __init__(self, n, dtype):
        self.data, self.size, self.dtype = types.SimpleNamespace(ptr=4096), n, np.dtype(dtype)


FAKE_CUPY = types.SimpleNamespace(cuda=types.SimpleNamespace(
    get_current_stream=lambda: types.SimpleNamespace(ptr=77)))


def test_nccl_ranks_share_rank_0s_unique_id_and_reduce_in_place_on_the_stream():
    calls = []
    nccl = fake_nccl(calls)
    root = engines.NCCLEngine(FakeComm(0), nccl, FAKE_CUPY)
    engines.NCCLEngine(FakeComm(1), nccl, FAKE_CUPY)
    assert calls[:2] == [("init", 2, (b"id-of-rank-0",), 0), ("init", 2, (b"id-of-rank-0",), 1)]
    root.allreduce(DeviceBuffer(10, "float32"))
    root.broadcast(DeviceBuffer(10, "float64"))
    # Send and receive buffers are the same device memory: no copy, no host.
    assert calls[2] == ("allReduce", 4096, 4096, 10, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 77)
    assert calls[3] == ("bcast", 4096, 10, nccl.NCCL_FLOAT64, 0, 77)


def test_nccl_refuses_a_dtype_it_cannot_sum_naming_it():
    engine = engines.NCCLEngine(FakeComm(0), fake_nccl([]), FAKE_CUPY)
    with pytest.raises(ValueError, match="dtype: NCCL sums float16, bfloat16, float32 or "
                                         "float64 buffers, got bfloat16"):
        engine._type(types.SimpleNamespace(dtype="bfloat16"))  # this NCCL has no bfloat16


@pytest.fixture
def gpu_backend(monkeypatch):
    with fake_cupy.installed(monkeypatch):
        yield gn.get_backend("cuda", dtype="float32")


class Recorder:
    name = "recorded"

    def __init__(self, *args):
        self.args = args


def test_auto_picks_nccl_for_a_gpu_model(monkeypatch, gpu_backend):
    nccl = fake_nccl([])
    monkeypatch.setattr(engines, "_nccl", lambda: (nccl, ""))
    monkeypatch.setattr(engines, "NCCLEngine", Recorder)
    engine = engines.make_engine(World(FakeComm(0), 0, 2, engine="auto"), gpu_backend)
    assert isinstance(engine, Recorder) and engine.args[1] is nccl


def test_without_nccl_a_gpu_model_falls_back_to_mpi_with_a_notice(monkeypatch, gpu_backend):
    monkeypatch.setattr(engines, "_nccl", lambda: (None, "NCCL is not usable from CuPy"))
    monkeypatch.setattr(engines, "MPIEngine", Recorder)
    with pytest.warns(UserWarning, match="NCCL is not usable from CuPy; gradients go "
                                         "through MPI via host memory"):
        engine = engines.make_engine(World(FakeComm(0), 0, 2, engine="auto"), gpu_backend)
    assert isinstance(engine, Recorder)
    with pytest.raises(ValueError, match="engine: 'nccl' asked for, but NCCL is not usable"):
        engines.make_engine(World(FakeComm(0), 0, 2, engine="nccl"), gpu_backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asking for MPI is no fallback: no notice
        engines.make_engine(World(FakeComm(0), 0, 2, engine="mpi"), gpu_backend)


def test_nccl_for_a_cpu_model_is_refused_naming_the_device():
    with pytest.raises(ValueError, match="engine: 'nccl' needs a model on a CUDA GPU, got "
                                         "one on cpu"):
        engines.make_engine(World(FakeComm(0), 0, 2, engine="nccl"),
                            gn.get_backend("cpu"))


@pytest.mark.gpu
def test_two_ranks_on_two_gpus_over_nccl_equal_one_gpu(tmp_path):
    status = cuda_status()
    if not status.usable or status.count < 2:
        pytest.skip(f"needs 2 usable GPUs for 2 NCCL ranks: {status.reason}, "
                    f"{status.count if status.usable else 0} GPU(s)")
    pytest.importorskip("cupy.cuda.nccl", reason="CuPy without NCCL")
    mpi_launch.mpiexec()
    env = {"GPUNN_CASES_DEVICE": "cuda", "GPUNN_DIST_ENGINE": "nccl"}
    os.environ.update(env)  # for the single-process reference below, too
    try:
        proc = mpi_launch.launch([Path(__file__).parent / "distributed" / "train_cases.py",
                                  tmp_path, "adam", "dropout"])
        assert proc.returncode == 0, proc.stderr[-3000:]
        for name in ("adam", "dropout"):
            model, _ = cases.train(name)
            got = np.load(tmp_path / f"{name}-rank0.npz")["params"]
            assert np.max(np.abs(got - gn.to_numpy(model.store.flat[0]))) < 1e-10
    finally:
        for k in env:
            os.environ.pop(k, None)



@pytest.mark.gpu
def test_one_rank_nccl_engine_runs_on_a_real_gpu():
    """With one GPU: the NCCL engine (unique id, communicator, in-place all-reduce and
    broadcast on the current stream) runs on real device memory for a world of one rank."""
    status = cuda_status()
    if not status.usable:
        pytest.skip(f"needs a usable GPU: {status.reason}")
    cupy = pytest.importorskip("cupy")
    nccl = pytest.importorskip("cupy.cuda.nccl", reason="CuPy without NCCL")
    engine = engines.NCCLEngine(FakeComm(0, size=1), nccl, cupy)
    for dtype in ("float32", "float64"):
        buf = cupy.arange(1000, dtype=dtype)
        before = buf.data.ptr
        engine.allreduce(buf)
        engine.broadcast(buf)
        cupy.cuda.get_current_stream().synchronize()
        assert buf.data.ptr == before  # in place: no copy, no host round trip
        np.testing.assert_array_equal(cupy.asnumpy(buf), np.arange(1000, dtype=dtype))
