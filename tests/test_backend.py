import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import gpunn as gn
from gpunn import backend as gb
from gpunn.backend import detect


@pytest.fixture
def fresh_detection(monkeypatch):
    """Forget the cached CUDA probe and the once-per-process notice around a test."""
    detect.cuda_status.cache_clear()
    monkeypatch.setattr(gb, "_fallback_noticed", False)
    yield
    detect.cuda_status.cache_clear()


def _fake_cupy(count_error=None, count=0):
    """A stand-in CuPy module whose getDeviceCount fails like a driverless machine."""

    class CUDARuntimeError(RuntimeError):
        pass

    def get_count():
        if count_error:
            raise CUDARuntimeError(count_error)
        return count

    runtime = types.SimpleNamespace(getDeviceCount=get_count,
                                    CUDARuntimeError=CUDARuntimeError)
    module = types.ModuleType("cupy")
    module.cuda = types.SimpleNamespace(runtime=runtime)
    return module


def test_import_does_not_import_cupy():
    code = "import sys, gpunn; gpunn.Sequential; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_cpu_backend_properties():
    be = gn.get_backend("cpu", seed=0)
    assert be.name == "cpu" and be.dtype_name == "float32"
    assert be.xp.__name__ == "array_api_compat.numpy"
    x = be.asarray([[1, 2], [3, 4]])
    assert isinstance(x, np.ndarray) and x.dtype == np.int64
    assert be.asarray([[1.0, 2.0]]).dtype == np.float32
    assert be.asarray(np.ones(3, dtype=np.float64)).dtype == np.float32


def test_backend_array_round_trip(backend):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    dev = backend.asarray(host)
    assert backend.owns(dev)
    assert backend.asarray(dev) is dev
    np.testing.assert_array_equal(gn.to_numpy(dev), host)
    np.testing.assert_array_equal(gn.backend.host_array(dev), host)
    backend.synchronize()


def test_backend_rng_is_seeded(backend_name):
    from conftest import make_backend

    a, b = make_backend(backend_name, seed=7), make_backend(backend_name, seed=7)
    for draw in (lambda r: r.normal((5, 3), std=2.0), lambda r: r.uniform((4,), -1, 1),
                 lambda r: r.permutation(10), lambda r: r.bernoulli((6, 2), 0.3)):
        np.testing.assert_array_equal(gn.to_numpy(draw(a.random)), gn.to_numpy(draw(b.random)))
    perm = gn.to_numpy(a.random.permutation(50))
    assert sorted(perm.tolist()) == list(range(50))
    u = gn.to_numpy(a.random.uniform((1000,), -2, 3))
    assert u.min() >= -2 and u.max() < 3
    m = gn.to_numpy(a.random.bernoulli((20000,), 0.25))
    assert set(np.unique(m)) <= {0.0, 1.0} and abs(m.mean() - 0.25) < 0.02


def test_namespace_specs():
    strict = pytest.importorskip("array_api_strict")
    be = gn.get_backend(strict)
    assert be.xp is strict and be.library == "generic"
    assert isinstance(gn.get_backend(np), gb.NumpyBackend)
    assert gn.get_backend(be) is be
    assert gn.get_backend(be, dtype="float64").dtype_name == "float64"


@pytest.mark.parametrize("spec", ["gpu", "cpu:0", "cuda:x", "tpu", ""])
def test_bad_device_spec(spec):
    with pytest.raises(ValueError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        gn.get_backend(spec)


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype: expected one of"):
        gn.get_backend("cpu", dtype="int32")


def test_env_var_default(monkeypatch):
    monkeypatch.setenv("GPUNN_DEVICE", "cpu")
    assert gn.get_backend().name == "cpu"
    monkeypatch.setenv("GPUNN_DEVICE", "quantum")
    with pytest.raises(ValueError, match="GPUNN_DEVICE"):
        gn.get_backend()


def test_no_cupy_falls_back_with_one_notice(monkeypatch, fresh_detection):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.warns(gn.DeviceFallbackWarning, match="CuPy is not installed"):
        be = gn.get_backend("auto")
    assert be.name == "cpu" and "CuPy is not installed" in be.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gn.get_backend("auto")  # second time: no second notice
    assert gn.available_devices() == ["cpu"]


def test_cupy_without_driver_falls_back(monkeypatch, fresh_detection):
    fake = _fake_cupy("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.warns(gn.DeviceFallbackWarning, match="no usable CUDA driver"):
        be = gn.get_backend("auto")
    assert be.name == "cpu"
    with pytest.raises(gn.DeviceUnavailableError, match=r"gpunn\[cuda12\]"):
        gn.get_backend("cuda")


def test_cuda_visible_devices_hides_gpu(monkeypatch, fresh_detection):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count=0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.warns(gn.DeviceFallbackWarning, match="CUDA_VISIBLE_DEVICES"):
        assert gn.get_backend("auto").name == "cpu"


def test_explicit_cuda_unavailable(monkeypatch, fresh_detection):
    monkeypatch.setitem(sys.modules, "cupy", None)
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(gn.DeviceUnavailableError, match="CuPy is not installed"):
            gn.get_backend(spec)
    with pytest.raises(gn.DeviceUnavailableError):
        gn.Sequential([gn.Dense(2, 1)], device="cuda")


def test_cuda_index_out_of_range():
    status = detect.cuda_status()
    if not status.usable:
        pytest.skip(f"needs a GPU: {status.reason}")
    with pytest.raises(gn.DeviceUnavailableError, match="only"):
        gn.get_backend(f"cuda:{status.count}")


def test_the_fallback_notice_points_at_the_users_line(monkeypatch, fresh_detection):
    """The warning shows the line that built the model, not a line inside gpunn."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.warns(gn.DeviceFallbackWarning) as record:
        gn.Sequential.from_architecture([{"input_dim": 2, "output_dim": 1}], device="auto")
    assert record[0].filename == __file__
