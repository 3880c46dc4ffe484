"""Shared fixtures: every test that takes ``backend`` runs once per available backend.

``numpy`` always runs; ``array_api_strict`` runs when installed (it proves the generic
code uses only the Array API standard); ``cupy`` runs when a CUDA GPU is usable and is
skipped visibly, with the reason, otherwise. CuPy cases carry the ``gpu`` marker.

Also here: the command line run in this process (``run_cli``), toy data with fixed seeds
(``xor``, ``moons``, ``spirals``, ``regression``, ``tiny``) and toy models (``mlp`` and
the ``classifier``, ``binary_classifier`` and ``regressor`` factories), and the report of
the kernel launches the CuPy stand-in counts (``report_launches``).
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


# ---------------------------------------------------------------------- the command line
@pytest.fixture
def run_cli(capsys):
    """``gpunn`` run in this process: ``run_cli(*argv) -> (code, out, err)``.

    ``code`` is what ``gpunn.cli.main`` returned, or argparse's exit code (``--help``,
    ``--version``, usage errors); ``out`` and ``err`` are what was printed since the last
    read of the captured output. Arguments are passed through ``str`` (paths may be given
    as they are). Tests of what only a real process shows (the entry point, environment
    variables read at start-up, signals, pipes) run ``python -m gpunn`` instead."""
    from gpunn import cli

    def run(*argv):
        try:
            code = cli.main([str(arg) for arg in argv])
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


# ---------------------------------------------------------------------- toy data
# Fixed seeds: each fixture gives the same arrays in every test (a fresh copy each time).
@pytest.fixture
def xor():
    """The four XOR points and their labels."""
    return gn.data.make_xor()


@pytest.fixture
def moons():
    """Two moons: 64 points (noise 0.1, seed 0) and binary labels."""
    return gn.data.make_moons(64, seed=0)


@pytest.fixture
def spirals():
    """Three interleaved spirals: 600 points in 2-D (seed 0) and labels 0, 1, 2."""
    return gn.data.make_spirals(600, seed=0)


@pytest.fixture
def regression():
    """256 rows of 4 standard-normal float32 features (seed 0) and a linear float32 target
    of large scale (coefficients 150, -100, 50, 25): plain SGD at ``lr=0.05`` diverges."""
    X = np.random.default_rng(0).standard_normal((256, 4)).astype(np.float32)
    return X, (X @ np.array([3.0, -2.0, 1.0, 0.5]) * 50).astype(np.float32)


def tiny_binary():
    """Eight rows of 2 standard-normal float32 features (seed 1) and float32 binary targets
    (``x0 > 0``): the least a binary model trains on, for checks of arguments. A function
    too, for data a module's parametrisations need."""
    X = np.random.default_rng(1).standard_normal((8, 2)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.float32)


@pytest.fixture
def tiny():
    """:func:`tiny_binary`'s eight rows."""
    return tiny_binary()


# ---------------------------------------------------------------------- toy models
def mlp(*widths, activation="relu", output=None, dropout=None, device="cpu", dtype=None,
        seed=0):
    """A Sequential of Dense layers ``widths[0] -> widths[1] -> ... -> widths[-1]``:
    ``activation`` on the hidden layers (each followed by ``Dropout(dropout)`` if given),
    ``output`` on the last. ``mlp(2, 4, 1, activation="tanh", output="sigmoid")``."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = i == len(widths) - 2
        layers.append(gn.Dense(n_in, n_out, activation=output if last else activation))
        if dropout is not None and not last:
            layers.append(gn.Dropout(dropout))
    return gn.Sequential(layers, device=device, dtype=dtype, seed=seed)


@pytest.fixture
def classifier():
    """Factory ``classifier(device="cpu", seed=0)``: 2 inputs, 32 relu units, Dropout(0.2),
    3 softmax outputs (for ``spirals``)."""
    return lambda device="cpu", seed=0: mlp(2, 32, 3, output="softmax", dropout=0.2,
                                           device=device, seed=seed)


@pytest.fixture
def binary_classifier():
    """Factory ``binary_classifier(device="cpu", seed=0)``: 2 inputs, 4 tanh units, one
    sigmoid output (for ``moons`` and ``tiny``)."""
    return lambda device="cpu", seed=0: mlp(2, 4, 1, activation="tanh", output="sigmoid",
                                           device=device, seed=seed)


@pytest.fixture
def regressor():
    """Factory ``regressor(device="cpu", seed=0)``: 4 inputs, 16 relu units, one linear
    output (for ``regression``)."""
    return lambda device="cpu", seed=0: mlp(4, 16, 1, device=device, seed=seed)


# ---------------------------------------------------------------------- fake CuPy launches
#: What the CuPy stand-in counted, by test: reported at the end of the run, never asserted.
_LAUNCHES = pytest.StashKey[dict]()


@pytest.fixture
def report_launches(request, record_property):
    """``report_launches(per_step, detail="")``: reports the kernel launches per training
    step the CuPy stand-in (tests/fake_cupy.py) counted in this test: a line of the test's
    output (``pytest -rA`` shows it), a ``launches per step`` property in the JUnit XML
    (``--junitxml``) and a line in the run's summary. A figure to watch, not a budget: the
    stand-in counts its own operations, not what CuPy launches on a GPU."""
    def report(per_step, detail=""):
        line = f"launches per step: {per_step:g}" + (f" ({detail})" if detail else "")
        print(line)
        record_property("launches per step", f"{per_step:g}")
        request.config.stash.setdefault(_LAUNCHES, {})[request.node.nodeid] = line
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counted = config.stash.get(_LAUNCHES, {})
    if counted:
        terminalreporter.section("CuPy stand-in: launches per step (reported, not asserted)")
        for nodeid, line in counted.items():
            terminalreporter.write_line(f"{nodeid}: {line}")


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
NEEDS_PANDAS = {"test_cli_data", "test_data_tables"}


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
