"""The command line never loses a file or shows a traceback: destinations are checked
before any work, inputs are never overwritten, and every mistake is one line, exit 2."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpunn import cli


def _run(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    return path


def test_a_missing_output_folder_is_created_up_front(tmp_path, capsys, data):
    code, out, err = _run(["train", "--data", str(data), "--target", "y", "--epochs", "1",
                           "--save", str(tmp_path / "new" / "deeper" / "m.npz"), "--quiet"],
                          capsys)
    assert code == 0, err
    assert (tmp_path / "new" / "deeper" / "m.npz").is_file()


@pytest.mark.parametrize("flags,match", [
    (lambda t, d: ["--save", str(d)], "is also an input"),
    (lambda t, d: ["--save", str(t / "afile" / "m.npz")], "afile"),
    (lambda t, d: ["--save", str(t / "adir.npz")], "is a folder"),
    (lambda t, d: ["--plot", str(t / "afile")], "afile"),
], ids=["save-onto-data", "folder-is-a-file", "save-is-a-folder", "plot-into-a-file"])
def test_bad_destinations_are_refused_before_training(tmp_path, capsys, data, flags, match):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir.npz").mkdir()
    before = data.read_bytes()
    code, out, err = _run(["train", "--data", str(data), "--target", "y", "--epochs", "1",
                           *flags(tmp_path, data)], capsys)
    assert code == 2 and match in err and "epoch" not in out and "device:" not in out
    assert len(err.strip().splitlines()) == 1
    assert data.read_bytes() == before


def test_predict_never_overwrites_its_inputs(tmp_path, capsys):
    csv = tmp_path / "f.csv"
    rows = ["a,b,label"] + [f"{i % 7},{i % 3},{'x' if i % 2 else 'y'}" for i in range(30)]
    csv.write_text("\n".join(rows) + "\n")
    model = tmp_path / "m.npz"
    assert _run(["train", "--data", str(csv), "--target", "label", "--epochs", "1",
                 "--save", str(model), "--quiet"], capsys)[0] == 0
    for out in (csv, model):
        before = out.read_bytes()
        code, _, err = _run(["predict", str(model), "--data", str(csv), "--out", str(out)],
                            capsys)
        assert code == 2 and "is also an input" in err and out.read_bytes() == before
    code, _, err = _run(["predict", str(model), "--data", str(csv), "--out",
                         str(tmp_path / "p.csv")], capsys)
    assert code == 0 and (tmp_path / "p.csv").read_text().startswith("label,")


BAD = [["--epochs", "0"], ["--epochs", "-3"], ["--lr", "nan-ish"], ["--batch-size", "1.5"],
       ["--val-split", "2"], ["--dataset", "nope"], ["--data", "/no/such/file.csv"],
       ["--layers", "12,,x"], ["--device", "quantum"], ["--dtype", "int8"],
       ["--loss", "hinge"], ["--optimizer", "lbfgs"], ["--seed", "-1"],
       ["--activation", "swishy"], ["--task", "ranking"], ["--save", "/proc/self/x.npz"]]
FINE = [["--epochs", "1"], ["--quiet"], ["--dataset", "xor"], ["--layers", "4"],
        ["--batch-size", "8"], ["--val-split", "0.3"], ["--no-standardize"],
        ["--optimizer", "sgd"], ["--lr", "0.1"], ["--device", "cpu"]]


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(BAD), st.lists(st.sampled_from(FINE), max_size=4),
       st.randoms(use_true_random=False))
def test_fuzzed_command_lines_fail_in_one_line(capsys, bad, fine, rnd):
    # A later valid value of the same option would override the bad one.
    flags = [bad, *(f for f in fine if f[0] != bad[0])]
    rnd.shuffle(flags)
    argv = ["train"] + [part for flag in flags for part in flag]
    code, out, err = _run(argv, capsys)
    assert code == 2, (argv, code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, (argv, err)


def test_malformed_npz_and_crafted_model_extras_are_one_line_errors(tmp_path, capsys):
    import io
    import json

    bad = tmp_path / "scalar_y.npz"
    np.savez(bad, X=np.zeros((5, 2)), y=np.float64(3.0))
    code, _, err = _run(["train", "--data", str(bad), "--epochs", "1"], capsys)
    assert code == 2 and "1-D or 2-D" in err and len(err.strip().splitlines()) == 1

    csv = tmp_path / "f.csv"
    csv.write_text("a,label\n" + "".join(f"{i % 7},{'x' if i % 2 else 'y'}\n" for i in range(20)))
    model = tmp_path / "m.npz"
    assert _run(["train", "--data", str(csv), "--target", "label", "--epochs", "1",
                 "--save", str(model), "--quiet"], capsys)[0] == 0
    for field, value in [("columns", [{"name": 3}]), ("columns", "a"), ("classes", {"x": 1}),
                         ("task", "ranking"), ("target", ["t"]), ("classes", None)]:
        with np.load(model, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        header = json.loads(arrays["__gpunn__"].tobytes())
        header["extra"][field] = value
        arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        crafted = tmp_path / "crafted.npz"
        crafted.write_bytes(buffer.getvalue())
        code, _, err = _run(["predict", str(crafted), "--data", str(csv)], capsys)
        assert code == 2 and "malformed" in err and len(err.strip().splitlines()) == 1, (
            field, value, err)


def test_plots_without_matplotlib_are_refused_before_training(tmp_path, capsys, monkeypatch,
                                                              data):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    code, out, err = _run(["train", "--data", str(data), "--target", "y", "--epochs", "1",
                           "--save", str(tmp_path / "m.npz"), "--plot",
                           str(tmp_path / "plots")], capsys)
    assert code == 2 and 'pip install "gpunn[plot]"' in err and "epoch" not in out
    assert not (tmp_path / "m.npz").exists()


def test_a_safetensors_file_without_safetensors_is_refused_before_training(tmp_path, capsys,
                                                                           monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed
    code, out, err = _run(["train", "--epochs", "1", "--save",
                           str(tmp_path / "m.safetensors")], capsys)
    assert code == 2 and 'pip install "gpunn[safetensors]"' in err and "epoch" not in out
    assert "done:" not in out and not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("argv,match", [
    (["predict", "nomodel.npz", "--data", "x.csv"], "nomodel.npz: No such file"),
    (["train", "--epochs", "2.5"], "expected an integer, got '2.5'"),
])
def test_errors_read_as_sentences(capsys, argv, match):
    code, _, err = _run(argv, capsys)
    assert code == 2 and match in err and "Errno" not in err


def test_outputs_never_replace_links_devices_or_each_other(tmp_path, capsys, data):
    import os

    target = tmp_path / "target.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    code, _, err = _run(["train", "--data", str(data), "--target", "y", "--epochs", "1",
                         "--save", str(link), "--quiet"], capsys)
    assert code == 0, err
    assert link.is_symlink() and target.read_bytes()[:2] == b"PK"  # written through
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    code, _, err = _run(["train", "--data", str(data), "--target", "y", "--epochs", "1",
                         "--save", str(fifo)], capsys)
    assert code == 2 and "expected a file name" in err
    for argv in (["bench", "--json", str(tmp_path / "r"), "--markdown", str(tmp_path / "r")],
                 ["train", "--save", str(tmp_path / "dir") + "/"]):
        code, _, err = _run(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv, err)


@pytest.mark.parametrize("argv,match", [
    (["bench", "--sizes", ",,"], "at least one name"),
    (["bench", "--target-seconds", "nan"], "--target-seconds"),
    (["bench", "--max-load", "-5"], "--max-load"),
    (["bench", "--pause", "-1"], "--pause"),
    (["bench", "--repeats", "0"], "--repeats"),
])
def test_bench_arguments_are_checked(capsys, argv, match):
    code, _, err = _run(argv, capsys)
    assert code == 2 and match in err


def test_output_into_a_closed_pipe_ends_quietly():
    """``gpunn predict ... | head``: once the reader has gone, gpunn stops without an error
    line (it printed 'gpunn: error: [Errno 32] Broken pipe')."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "gpunn.cli", "info"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "GPUNN_DEVICE": "cpu"})
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr
