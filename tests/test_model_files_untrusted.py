"""Untrusted model files: a committed corpus of crafted files, and a fuzzer."""

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="hypothesis not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gpunn as gn

CORPUS = Path(__file__).parent / "data" / "bad_models"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_crafted_file_is_refused(name, capsys):
    with pytest.raises(gn.ModelFileError, match=EXPECTED[name].replace("(", r"\(")
                       .replace(")", r"\)")):
        gn.load(CORPUS / name, device="cpu")
    assert "pickle executed" not in capsys.readouterr().out  # nothing was unpickled


def test_huge_declared_size_allocates_nothing():
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(gn.ModelFileError):
        gn.load(CORPUS / "huge_declared_shape.npz", device="cpu")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20  # the file declares 4 TiB


def _valid_bytes() -> bytes:
    model = gn.Sequential([gn.Dense(3, 4, activation="tanh"), gn.Dense(4, 1)], device="cpu",
                          seed=0)
    model.fit(np.ones((4, 3)), np.ones(4), loss="mse", epochs=1, verbose=0)
    return gn.io.dumps(model)


VALID = _valid_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(0, len(VALID)))
def test_fuzzed_bytes_never_escape_as_other_errors(edits, cut):
    data = bytearray(VALID)
    for pos, value in edits:
        data[pos] = value
    data = bytes(data[:cut] if cut < len(VALID) // 2 else data)
    try:
        model = gn.io.loads(data, device="cpu")
    except gn.ModelFileError:
        return
    # A mutation that zip's checksums cannot see (e.g. in padding) must still be a model.
    assert model.count_params() == 3 * 4 + 4 + 4 + 1


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10),
       st.sampled_from(["layers", "dtype", "optimizer", "loss", "preprocessing", "training",
                        "metrics", "extra", "version"]))
def test_fuzzed_header_fields_give_model_file_errors(value, field):
    with np.load(io.BytesIO(VALID), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    header = json.loads(arrays["__gpunn__"].tobytes())
    header[field] = value
    arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        gn.io.loads(buffer.getvalue(), device="cpu")
    except gn.ModelFileError:
        pass
