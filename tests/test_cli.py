"""The command line as a whole (gpunn.cli): commands, arguments, help and errors. Run as a
user runs it, a subprocess, where only a real process shows the behaviour (the entry
point, the environment, signals, pipes); in this process otherwise (``run_cli``)."""

import argparse
import os
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpunn import cli


def _gpunn(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "gpunn", *args], capture_output=True,
                          text=True, env=full_env, timeout=120)


# ---------------------------------------------------------------------- as a user runs it
@pytest.mark.slow
def test_train_prints_device_epochs_and_accuracy():
    out = _gpunn("train", "--epochs", "15", "--seed", "0", env={"GPUNN_DEVICE": "cpu"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("device: cpu") and "[requested (GPUNN_DEVICE)]" in lines[0]
    epochs = [line for line in lines if line.startswith("epoch")]
    assert len(epochs) == 15
    assert all(re.search(r"loss [\d.]+ .*accuracy [\d.]+ .*samples/s", e) for e in epochs)
    acc = float(re.search(r"best val_accuracy ([\d.]+) at epoch \d+", lines[-1]).group(1))
    assert acc >= 0.95


@pytest.mark.slow
def test_train_auto_says_why_it_chose_the_device():
    out = _gpunn("train", "--epochs", "1", "--dataset", "moons", "--quiet")
    assert out.returncode == 0, out.stderr
    first = out.stderr.splitlines()[0]  # --quiet: what runs where goes to stderr
    assert first.startswith("device: ") and "auto" in first
    assert not any(line.startswith("epoch") for line in out.stdout.splitlines())


def test_explicit_cuda_without_gpu_is_a_clear_error():
    from gpunn.backend import cuda_status

    if cuda_status().usable:
        pytest.skip("a GPU is usable here")
    out = _gpunn("train", "--device", "cuda", "--epochs", "1")
    assert out.returncode == 2
    assert "gpunn: error: device 'cuda' requested but CUDA is not usable" in out.stderr
    assert 'pip install "gpunn[cuda12]"' in out.stderr


@pytest.mark.parametrize("args,match", [(["train", "--epochs", "0"], "positive"),
                                        (["train", "--device", "tpu"], "expected 'auto'"),
                                        (["train", "--dataset", "imagenet"], "invalid choice")])
def test_bad_arguments(args, match):
    out = _gpunn(*args)
    assert out.returncode == 2 and re.search(match, out.stderr)


def test_devices_command():
    out = _gpunn("devices")
    assert out.returncode == 0
    assert out.stdout.startswith("usable devices: cpu")
    assert "cuda: " in out.stdout


def test_the_parser_does_not_import_the_benchmark():
    # `gpunn train` builds the whole parser; the benchmark package loads only for `bench`.
    code = ("import sys, gpunn.cli as c; c.build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('gpunn.bench')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------- version and help
def test_version(run_cli):
    from gpunn import __version__

    code, out, err = run_cli("--version")
    assert code == 0 and out == f"gpunn {__version__}\n" and not err


def _parsers():
    top = cli.build_parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return [("gpunn", top), *subs.choices.items()]


@pytest.mark.parametrize("name,parser", _parsers(), ids=lambda p: p if isinstance(p, str)
                         else "")
def test_every_help_names_the_defaults(name, parser, capsys):
    text = " ".join(parser.format_help().split())
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in parser._actions:
        default = action.default
        if not action.option_strings or any(default is v for v in (None, False,
                                                                   argparse.SUPPRESS)):
            continue
        assert action.help, (name, action.option_strings)
        assert f"(default: {default})" in text or "default" in action.help, (
            name, action.option_strings, text)


def test_train_help_names_every_default(run_cli):
    code, out, _ = run_cli("train", "--help")
    text = " ".join(out.split())
    assert code == 0
    for value in ("0.01", "adam", "relu", "64", "0.2", "float32", "0"):
        assert f"(default: {value})" in text, value
    assert "(default: 30, or more for a small data set" in text  # --epochs
    # --layers: the hidden layers each built-in dataset gets.
    for name, sizes in cli.DEFAULT_LAYERS.items():
        assert f"{name} {','.join(map(str, sizes))}" in text, name
    assert "64,64 for --data" in text


# ---------------------------------------------------------------------- mistakes: one line, exit 2
def test_usage_errors_stay_one_line(run_cli):
    code, out, err = run_cli("train", "--epochs", "x")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--epochs" in err
    assert "expected an integer, got 'x'" in err


BAD = [["--epochs", "0"], ["--epochs", "-3"], ["--lr", "nan-ish"], ["--batch-size", "1.5"],
       ["--val-split", "2"], ["--dataset", "nope"], ["--data", "/no/such/file.csv"],
       ["--layers", "12,,x"], ["--device", "quantum"], ["--dtype", "int8"],
       ["--loss", "hinge"], ["--optimizer", "lbfgs"], ["--seed", "-1"],
       ["--activation", "swishy"], ["--task", "ranking"], ["--save", "/proc/self/x.npz"],
       ["--seed", str(2**64)], ["--seed", "2**64"], ["--lr", "nan"], ["--lr", "inf"],
       ["--lr", "1e400"], ["--layers", ""], ["--layers", "64,,32"], ["--layers", ","],
       ["--device", "gpu"], ["--device", "cuda:x"], ["--patience", "-1"]]
#: The values of flags (not files: a refused file is named by its path).
FLAG_VALUES = [b for b in BAD if b[0] not in ("--data", "--save")]
FINE = [["--epochs", "1"], ["--quiet"], ["--dataset", "xor"], ["--layers", "4"],
        ["--batch-size", "8"], ["--val-split", "0.3"], ["--no-standardize"],
        ["--optimizer", "sgd"], ["--lr", "0.1"], ["--device", "cpu"]]


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(BAD), st.lists(st.sampled_from(FINE), max_size=4),
       st.randoms(use_true_random=False))
def test_fuzzed_command_lines_fail_in_one_line(run_cli, bad, fine, rnd):
    # A later valid value of the same option would override the bad one.
    flags = [bad, *(f for f in fine if f[0] != bad[0])]
    rnd.shuffle(flags)
    argv = ["train"] + [part for flag in flags for part in flag]
    code, out, err = run_cli(*argv)
    assert code == 2, (argv, code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, (argv, err)


@pytest.mark.parametrize("bad", FLAG_VALUES, ids=[" ".join(b) for b in FLAG_VALUES])
def test_a_refused_value_names_its_flag(run_cli, bad):
    """Each value is checked where the flag is read, so the one-line error names the
    flag (not the parameter it becomes deep inside: 'seed:', 'Adam lr:', 'device:')."""
    code, _, err = run_cli("train", "--epochs", "1", *bad)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"argument {bad[0]}:" in err or f"{bad[0]}:" in err, err


def test_predict_device_is_named(run_cli, tmp_path):
    code, _, err = run_cli("predict", tmp_path / "m.npz", "--data", tmp_path / "x.csv",
                           "--device", "gpu")
    assert code == 2 and "--device" in err, err


def test_no_hidden_layers_only_when_asked(run_cli, tmp_path):
    code, _, err = run_cli("train", "--dataset", "xor", "--epochs", "1", "--layers", "")
    assert code == 2 and "--layers" in err and "none" in err, err
    code, out, err = run_cli("train", "--dataset", "xor", "--epochs", "1", "--layers",
                             "none", "--quiet")
    assert code == 0, err
    assert "network: 2-1 " in err, err


@pytest.mark.parametrize("argv,match", [
    (["predict", "nomodel.npz", "--data", "x.csv"], "nomodel.npz: No such file"),
    (["train", "--epochs", "2.5"], "expected an integer, got '2.5'"),
])
def test_errors_read_as_sentences(run_cli, argv, match):
    code, _, err = run_cli(*argv)
    assert code == 2 and match in err and "Errno" not in err


@pytest.mark.parametrize("argv,match", [
    (["bench", "--sizes", ",,"], "at least one name"),
    (["bench", "--target-seconds", "nan"], "--target-seconds"),
    (["bench", "--max-load", "-5"], "--max-load"),
    (["bench", "--pause", "-1"], "--pause"),
    (["bench", "--repeats", "0"], "--repeats"),
])
def test_bench_arguments_are_checked(run_cli, argv, match):
    code, _, err = run_cli(*argv)
    assert code == 2 and match in err


# ---------------------------------------------------------------------- Ctrl-C and closed pipes
def test_ctrl_c_in_any_cli_phase_is_one_line(monkeypatch, run_cli):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._cli_data, "load_training_data", interrupted)
    code, _, err = run_cli("train", "--epochs", "1")
    assert code == 130
    assert err.strip() == "gpunn: interrupted"


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


# ---------------------------------------------------------------------- SIGTERM while writing
# The write made slow by a hook: every file gpunn writes is fsynced before its rename, so a
# slow fsync holds the temporary file open long enough to be stopped there.
_SLOW_WRITE = """
import os, sys, time
def slow(fd):
    print("writing", file=sys.stderr, flush=True)
    time.sleep(60)
os.fsync = slow
from gpunn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _terminated_while_writing(argv, folder):
    import signal

    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITE, *argv], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "GPUNN_DEVICE": "cpu"})
    for line in proc.stderr:
        if line.strip() == "writing":
            break
    else:
        proc.wait()
        raise AssertionError(f"never reached the write: {proc.stdout.read()}")
    assert [p for p in os.listdir(folder) if p.startswith(".gpunn-")]  # mid-write indeed
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.fixture
def trained_model(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n" + "".join(f"{a},{b},{int(a > 0)}\n" for a, b in X))
    code = cli.main(["train", "--data", str(data), "--target", "y", "--epochs", "1",
                     "--save", str(tmp_path / "m.npz"), "--quiet", "--device", "cpu"])
    assert code == 0
    return tmp_path / "m.npz", data


@pytest.mark.parametrize("command", ["train", "predict", "export"])
def test_sigterm_while_writing_leaves_no_temporary_file(command, tmp_path, trained_model,
                                                        capsys):
    model, data = trained_model
    capsys.readouterr()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "export":
        pytest.importorskip("onnx")
    argv = {"train": ["train", "--dataset", "xor", "--epochs", "1", "--save",
                      str(out_dir / "m.npz")],
            "predict": ["predict", str(model), "--data", str(data), "--out",
                        str(out_dir / "p.csv")],
            "export": ["export", str(model), "--onnx", str(out_dir / "m.onnx")]}[command]
    code, out, err = _terminated_while_writing(argv, out_dir)
    assert code == 143, err
    assert "gpunn: terminated" in err and "Traceback" not in err
    assert os.listdir(out_dir) == []  # neither the file nor its temporary one


def test_bare_gpunn_shows_the_help(run_cli):
    code, out, err = run_cli()
    assert code == 0 and err == ""
    assert out.startswith("usage: gpunn") and "train" in out and "predict" in out


@pytest.mark.parametrize("argv,hint", [
    (["trian"], "invalid choice: 'trian' (choose from 'train', 'predict', 'evaluate', "
                "'export', 'info', 'devices', 'bench'); did you mean 'train'?"),
    (["train", "--optimizer", "adma"], "did you mean 'adam'?"),
    (["train", "--epochss", "3"], "unrecognized arguments: --epochss 3 (--epochss: did you "
                                  "mean --epochs?)"),
    (["train", "--lr-shedule=cosine"], "(--lr-shedule: did you mean --lr-schedule?)"),
    (["predict", "m.npz", "--data", "d.csv", "--outt", "p.csv"], "did you mean --out?"),
])
def test_typos_get_a_did_you_mean(run_cli, argv, hint):
    code, out, err = run_cli(*argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert hint in err, err


def test_an_unknown_word_far_from_every_choice_gets_no_guess(run_cli):
    code, _, err = run_cli("xyzzy")
    assert code == 2 and "did you mean" not in err


def test_plot_names_a_folder_or_a_png_file_in_every_command():
    from gpunn.plot import figure_paths

    assert figure_paths("figs", ["history", "decision_boundary"]) == [
        os.path.join("figs", "history.png"), os.path.join("figs", "decision_boundary.png")]
    assert figure_paths("out/run.PNG", ["history", "decision_boundary"]) == [
        "out/run.PNG", "out/run-decision_boundary.png"]
    assert figure_paths("b.png", ["bench"]) == ["b.png"]


@pytest.mark.parametrize("argv", [["train", "--dataset", "xor", "--epochs", "1"],
                                  ["bench", "--device", "cpu", "--sizes", "micro"]])
def test_plot_without_matplotlib_is_refused_before_any_work(run_cli, monkeypatch, tmp_path,
                                                            argv):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    code, out, err = run_cli(*argv, "--plot", tmp_path / "figs")
    assert code == 2 and 'pip install "gpunn[plot]"' in err, err
    assert "epoch" not in out and "samples/s" not in out
    assert not (tmp_path / "figs").exists()
