"""The command line as a whole (gpunn.cli): commands, arguments, help and errors. Run as a
user runs it, a subprocess, where only a real process shows the behaviour (the entry
point, the environment, signals, pipes); in this process otherwise (``run_cli``)."""

import os
import re
import subprocess
import sys

import pytest


def _gpunn(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "gpunn", *args], capture_output=True,
                          text=True, env=full_env, timeout=120)


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


def test_ctrl_c_in_any_cli_phase_is_one_line(monkeypatch, run_cli):
    from gpunn import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._cli_data, "load_training_data", interrupted)
    code, _, err = run_cli("train", "--epochs", "1")
    assert code == 130
    assert err.strip() == "gpunn: interrupted"
