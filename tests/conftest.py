"""Shared fixtures: every test that takes ``backend`` runs once per available backend.

``numpy`` always runs; ``array_api_strict`` runs when installed (it proves the generic
code uses only the Array API standard); ``cupy`` runs when a CUDA GPU is usable and is
skipped visibly, with the reason, otherwise. CuPy cases carry the ``gpu`` marker.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpunn as gn
from gpunn.backend import cuda_status

BACKEND_NAMES = ["numpy", "array_api_strict", pytest.param("cupy", marks=pytest.mark.gpu)]


def make_backend(name: str, dtype: str = "float32", seed: int = 0):
    if name == "numpy":
        return gn.get_backend("cpu", dtype=dtype, seed=seed)
    if name == "array_api_strict":
        strict = pytest.importorskip("array_api_strict",
                                     reason="array_api_strict not installed")
        return gn.get_backend(strict, dtype=dtype, seed=seed)
    if name == "cupy":
        status = cuda_status()
        if not status.usable:
            pytest.skip(f"cupy backend: {status.reason}")
        return gn.get_backend("cuda", dtype=dtype, seed=seed)
    raise AssertionError(name)


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request):
    return request.param


@pytest.fixture
def backend(backend_name):
    """A float32 backend seeded with 0."""
    return make_backend(backend_name)


@pytest.fixture
def backend64(backend_name):
    """A float64 backend seeded with 0 (for gradient checks)."""
    return make_backend(backend_name, dtype="float64")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


#: Settings reaching every branch of the built-in update rules (momentum, Nesterov, coupled
#: and decoupled weight decay, learning-rate decay), by registered optimiser name.
OPTIMIZER_VARIANTS = {
    "sgd": [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.1, weight_decay=0.01),
            dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)],
    "adam": [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1)],
    "adamw": [dict(lr=0.01, weight_decay=0.1)],
    "rmsprop": [dict(lr=0.01), dict(lr=0.01, momentum=0.5, weight_decay=0.1)],
    "adagrad": [dict(lr=0.1), dict(lr=0.1, lr_decay=0.5, initial_accumulator_value=0.2,
                                   weight_decay=0.05)],
}


def optimizers_of_kind(kind: str) -> list:
    """``(id, factory)`` for every registered optimiser whose update rule is ``kind``: its
    defaults and the settings in :data:`OPTIMIZER_VARIANTS`. What the parity tests run
    through each fast path a backend registers for ``kind``."""
    cases = []
    for name, cls in sorted(gn.optim.OPTIMIZERS.items()):
        if cls.kind != kind:
            continue
        cases.append((f"{name}-defaults", cls))
        cases += [(f"{name}-" + "-".join(f"{k}={v}" for k, v in kw.items()),
                   lambda cls=cls, kw=kw: cls(**kw))
                  for kw in OPTIMIZER_VARIANTS.get(name, [])]
    return cases


def parity_tolerance(dtype) -> dict:
    """``assert_allclose`` tolerances for a fast path against the generic maths after a
    few steps: a few units in the last place of ``dtype`` (operation order differs)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return dict(rtol=32 * eps, atol=4 * eps)


#: Test modules that read users' CSV files, which needs pandas (the gpunn[data] extra, in
#: the test extra). Where pandas is missing (a bare GPU image) they are skipped, saying so.
NEEDS_PANDAS = {"test_bad_input_table", "test_cli_data", "test_cli_safety",
                "test_messy_files"}


def pytest_collection_modifyitems(config, items):
    try:
        import pandas  # noqa: F401
        return
    except ImportError:
        pass
    skip = pytest.mark.skip(reason='reads CSV files: needs pandas (pip install "gpunn[data]")')
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in NEEDS_PANDAS:
            item.add_marker(skip)
