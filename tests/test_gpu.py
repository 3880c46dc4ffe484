"""CuPy-only checks: parity of the CUDA path with NumPy on identical weights.

Skipped visibly (with the reason) when no CUDA GPU is usable; CI deselects them with
``-m "not gpu"`` or sees them skipped.
"""

import numpy as np
import pytest

import gpunn as gn
from gpunn.backend import cuda_status

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda():
    status = cuda_status()
    if not status.usable:
        pytest.skip(f"no usable CUDA GPU: {status.reason}")
    return gn.get_backend("cuda", seed=0)


def test_cuda_backend_is_cupy(cuda):
    import cupy

    x = cuda.asarray(np.ones((3, 2), np.float32))
    assert isinstance(x, cupy.ndarray) and cuda.owns(x)
    assert cuda.name == "cuda:0" and "cuda:0" in gn.available_devices()
    assert gn.get_backend("auto").name == "cuda:0"


def test_training_step_parity_with_numpy(cuda):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 10)).astype(np.float32)
    y = rng.integers(0, 4, 64)

    def make(device):
        return gn.Sequential([gn.Dense(10, 32, activation="relu"),
                              gn.Dense(32, 32, activation="gelu"),
                              gn.Dense(32, 4, activation="softmax")], device=device, seed=3)

    cpu, gpu = make("cpu"), make(cuda)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        b[...] = cuda.asarray(gn.to_numpy(a))
    kwargs = dict(loss="cross_entropy", epochs=3, batch_size=16, shuffle=False, verbose=0)
    h_cpu = cpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    h_gpu = gpu.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    np.testing.assert_allclose(h_gpu.history["loss"], h_cpu.history["loss"], rtol=1e-4)
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        np.testing.assert_allclose(gn.to_numpy(b), a, rtol=1e-3, atol=1e-5)


def test_moons_learned_on_gpu_and_moved_back(cuda):
    X, y = gn.data.make_moons(1000, noise=0.15, seed=1)
    model = gn.Sequential([gn.Dense(2, 32, activation="relu"),
                           gn.Dense(32, 1, activation="sigmoid")], device=cuda, seed=0)
    model.fit(X, y, loss="bce", optimizer=gn.optim.Adam(lr=0.01), epochs=30, verbose=0)
    acc = model.evaluate(X, y)["accuracy"]
    assert acc >= 0.97
    model.to("cpu")
    assert model.evaluate(X, y)["accuracy"] == pytest.approx(acc)
