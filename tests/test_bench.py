"""The benchmark runs end to end (tiny size, one repeat); its numbers are not asserted."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gpunn.bench import SIZES, Row, markdown, step_flops


def test_step_flops():
    # No product for the data's gradient (the first layer's input gradient).
    assert step_flops([784, 128, 10], 64) == 64 * (4 * 784 * 128 + 6 * 128 * 10)


def test_markdown_ratios():
    rows = [Row("tiny", "cpu", impl, "float32", [4, 2], 8, 3, ms, 1.0, ms, 0.1, 10.0, None)
            for impl, ms in [("gpunn", 1.0), ("reference", 1.5), ("torch", 2.0)]]
    env = {"devices": {"cpu": "cpu"}, "versions": {"numpy": "x"}, "git_commit": "abc",
           "date": "today"}
    text = markdown(rows, env, {"cpu fp32": 1.0})
    gpunn_line = next(line for line in text.splitlines() if "| gpunn |" in line)
    assert "| 1.50x | 2.00x |" in gpunn_line


def test_markdown_reports_the_gemm_floor():
    """Each row shows its GEMM floor (the step's products alone) and the step's time
    over it; a row without one says n/a."""
    rows = [Row("medium", "cpu", "gpunn", "float32", [4, 2], 8, 3, 23.0, 1.0, 23.0, 0.1,
                10.0, None, gemm_floor_ms=20.0),
            Row("medium", "cpu", "torch", "float32", [4, 2], 8, 3, 25.0, 1.0, 25.0, 0.1,
                10.0, None)]
    env = {"devices": {"cpu": "cpu"}, "versions": {"numpy": "x"}, "git_commit": "abc",
           "date": "today"}
    lines = markdown(rows, env, {"cpu fp32": 1.0}).splitlines()
    assert "| GEMM floor ms | step / GEMM floor |" in lines[0]
    assert lines[1].count("---") == lines[0].count("|") - 1
    assert "| 20.000 | 1.15 |" in lines[2]
    assert "| n/a | n/a |" in lines[3]
    assert rows[0].over_gemm_floor == pytest.approx(1.15)


def test_needed_bytes():
    from gpunn.bench import needed_bytes

    params = 4 * 2 + 2
    assert needed_bytes([4, 2], 8) == (4 * params + 8 * 6 * 2) * 4


@pytest.mark.slow
def test_bench_command_writes_json_and_table(tmp_path):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "gpunn", "bench", "--device", "cpu", "--sizes", "tiny",
         "--impls", "gpunn,reference", "--repeats", "1", "--target-seconds", "0.05",
         "--pause", "0",
         "--json", str(out), "--markdown", str(md)],
        capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert {r["impl"] for r in data["rows"]} == {"gpunn", "reference"}
    row = data["rows"][0]
    assert row["widths"] == SIZES["tiny"]["cpu"][0] and row["samples_per_s"] > 0
    assert data["matmul_peak_tflops"]["cpu fp32"] > 0
    assert "numpy" in data["environment"]["versions"]
    assert "| tiny | cpu | float32 | gpunn |" in md.read_text()


def test_bench_rejects_unknown_size():
    proc = subprocess.run([sys.executable, "-m", "gpunn", "bench", "--sizes", "huge"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown size" in proc.stderr


def test_bench_plot(tmp_path):
    import pytest

    pytest.importorskip("matplotlib")
    from gpunn.bench import plot

    rows = [Row("tiny", "cpu", impl, "float32", [4, 2], 8, 3, 1.0, sps, 1.0, 0.1, 10.0, None)
            for impl, sps in [("gpunn", 100.0), ("reference", 90.0), ("torch", 50.0)]]
    assert plot(rows, str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_precisions_parsed_per_device():
    import pytest

    from gpunn.bench import _Device, parse_precisions

    cpu = _Device("cpu")
    assert parse_precisions("auto", cpu) == (["fp32"], [])
    keep, skipped = parse_precisions("fp32,float16,bf16", cpu)
    assert keep == ["fp32"] and len(skipped) == 2 and "GPU only" in skipped[0]
    with pytest.raises(ValueError, match="--precisions: unknown"):
        parse_precisions("fp8", cpu)


def test_graph_kernel_count_reads_cuda_dot_dumps():
    from gpunn.bench.profile import count_graph_kernels

    dot = ('digraph dot {\n subgraph cluster_1 {\n'
           '"graph_1_node_0"[style="solid" shape="rectangle" label="{KERNEL\\n| {ID | 0 | '
           'volta_sgemm_128x64_nn}}"];\n'
           '"graph_1_node_1"[style="solid" shape="rectangle" label="{MEMSET\\n| {ID | 1}}"];\n'
           '"graph_1_node_2"[style="solid" shape="rectangle" label="{KERNEL\\n| {ID | 2 | '
           'adam_f32}}"];\n}\n}')
    assert count_graph_kernels(dot) == 2


def test_profiled_step_is_fits_step():
    """The step the benchmark captures on a GPU does exactly what fit does per batch."""
    import numpy as np

    import gpunn as gn

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)

    def fitted():
        model = gn.Sequential([gn.Dense(4, 8, activation="relu"),
                               gn.Dense(8, 3, activation="softmax")], device="cpu", seed=0)
        model.fit(X, y, loss="cross_entropy", epochs=1, batch_size=32, verbose=0,
                  shuffle=False)
        return model

    a, b = fitted(), fitted()
    a.fit(X, y, loss=a.loss, optimizer=a.optimizer, epochs=1, batch_size=32, verbose=0,
          shuffle=False)
    gn.training.step_function(b, X, y)()
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa, pb)
    assert a.optimizer.t == b.optimizer.t == 2


@pytest.mark.slow
def test_bench_reports_fairness_fields(tmp_path):
    """Shares of the workload's own peak stay <= 100, the load and BLAS are recorded."""
    out = tmp_path / "b.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gpunn", "bench", "--device", "cpu", "--sizes", "micro",
         "--impls", "gpunn,reference", "--repeats", "1", "--target-seconds", "0.05",
         "--max-load", "100", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    for row in data["rows"]:
        assert row["peak_tflops"] > 0 and 0 < row["pct_of_peak"] <= 100
        assert row["gemm_floor_ms"] > 0
        assert row["other_load_pct"] >= 0
    assert any("environment" in lib for lib in data["environment"]["blas"])


@pytest.mark.slow
def test_bench_scaling_table(tmp_path):
    out = tmp_path / "s.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gpunn", "bench", "--scaling", "--device", "cpu",
         "--scaling-rows", "2000,4000", "--repeats", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["rows"] for r in rows] == [2000, 4000]
    assert all(r["us_per_row"] > 0 and 0.9 < r["memory_ratio"] < 2 for r in rows)
    # The median of the rounds, which went through the row counts in turn.
    assert all(r["rounds"] == 2 and r["us_per_row_min"] <= r["us_per_row"]
               <= r["us_per_row_max"] for r in rows)
    assert proc.stdout.count("round 2:") == 2
    bad = subprocess.run([sys.executable, "-m", "gpunn", "bench", "--scaling",
                          "--device", "cpu", "--scaling-rows", "ten"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--scaling-rows" in bad.stderr
    none = subprocess.run([sys.executable, "-m", "gpunn", "bench", "--scaling",
                           "--device", "cpu", "--scaling-rows", "2000", "--repeats", "0"],
                          capture_output=True, text=True, timeout=60)
    assert none.returncode == 2 and "--repeats" in none.stderr


def test_bench_chart_is_linear_from_zero_and_names_the_missing(tmp_path, monkeypatch):
    import importlib.util

    import pytest

    pytest.importorskip("matplotlib")
    from gpunn.bench import _Device, command, impls, report
    from gpunn.plot import _pyplot

    rows = [Row(size, "cpu", impl, "float32", [4, 2], 8, 3, 1.0, sps, 1.0, 0.1, 10.0, None)
            for size, impl, sps in [("micro", "gpunn", 300_000.0), ("micro", "reference",
                                    400_000.0), ("medium", "gpunn", 17_000.0)]]
    missing = {"torch": "not installed", "jax": "jax and optax not installed"}
    fig = report.chart(_pyplot(), rows, missing)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 2
    assert all(ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0 for ax in shown)
    assert "not measured: torch (not installed); jax (jax and optax not installed)" in [
        t.get_text() for t in fig.texts]
    assert "n/a" in [t.get_text() for t in shown[1].texts]  # reference never ran on medium
    assert report.plot(rows, str(tmp_path / "b.png"), missing)

    monkeypatch.setattr(impls, "usable", lambda impl, dev: impl in ("gpunn", "reference"))
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == "optax" else object())
    cpu = _Device("cpu")
    assert impls.why_unusable("gpunn", cpu) is None
    assert impls.why_unusable("jax", cpu) == "optax not installed"
    assert impls.why_unusable("torch", cpu) == "not usable on cpu"
    assert command._missing(["gpunn", "torch", "jax"], [cpu]) == {
        "torch": "not usable on cpu", "jax": "optax not installed"}


def test_gpunn_is_timed_inside_one_fit_call():
    """The sample of an implementation offering ``inner`` is its own in-fit epoch time
    (gpunn: the second epoch of fit(epochs=2)), not a whole fit call per epoch."""
    import importlib
    from types import SimpleNamespace

    import numpy as np

    from gpunn.bench import impls

    measure = importlib.import_module("gpunn.bench.measure")  # the module, not the function
    calls = []

    def epoch(n_rows):
        calls.append(("epoch", n_rows))

    epoch.inner = lambda n_rows: calls.append(("inner", n_rows)) or (0.25, 0.2)
    dev = SimpleNamespace(sync=lambda: None)
    wall, host, _ = measure._sample(dev, epoch, 64, 0, 100.0)
    assert (wall, host) == (0.25, 0.2) and calls == [("inner", 64)]
    dev = SimpleNamespace(name="cpu", kind="cpu", xp=np, sync=lambda: None)
    X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    run = impls._make_gpunn(dev, [4, 8, 3], X, np.arange(64) % 3, 16)
    times = run.inner(64)
    assert len(times) == 2 and times[0] > 0 and times[1] >= 0


@pytest.mark.slow
def test_a_time_limit_keeps_the_rows_measured_and_their_chart(tmp_path):
    """`timeout` (SIGTERM) in the middle of a run: the rows measured so far are in the
    JSON, markdown and chart, and the notes say the run stopped early."""
    import signal
    import time

    out = tmp_path / "b"
    cmd = [sys.executable, "-m", "gpunn", "bench", "--device", "cpu", "--sizes", "micro,tiny",
           "--impls", "gpunn,reference", "--repeats", "200", "--target-seconds", "0.05",
           "--max-load", "100", "--json", f"{out}.json", "--markdown", f"{out}.md"]
    have_mpl = importlib.util.find_spec("matplotlib") is not None
    if have_mpl:
        cmd += ["--plot", f"{out}.png"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GPUNN_DEVICE": "cpu"})
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(f"{out}.json"):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "stopped; reporting" in err, err
    data = json.loads(open(f"{out}.json").read())
    assert data["rows"] and any("stopped early" in n for n in data["notes"])
    if have_mpl:
        assert os.path.getsize(f"{out}.png") > 1000


def test_conv_net_workloads_describe_their_layers_and_products():
    """The MNIST-1D CNN and the LeNet-5: shapes layer by layer, the products a step does
    (a convolution's: its patches by its weights) and the row label."""
    from gpunn.bench.workloads import CONV_NETS, workload_flops

    cnn, lenet = CONV_NETS["cnn"], CONV_NETS["lenet"]
    assert [out for _, _, out in cnn.walk()] == [(25, 19), (25, 10), (25, 5), (10,)]
    assert cnn.matmuls(2) == [(38, 5, 25), (20, 75, 25), (10, 75, 25), (2, 125, 10)]
    assert SIZES["cnn"]["cpu"][0] == cnn.widths == [40, 25, 25, 25, 10]
    assert [out for _, _, out in lenet.walk()] == [
        (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120,), (84,), (10,)]
    assert lenet.matmuls(1) == [(784, 25, 6), (100, 150, 16), (1, 400, 120), (1, 120, 84),
                                (1, 84, 10)]
    assert lenet.widths == [784, 6, 16, 120, 84, 10]
    assert workload_flops("cnn", cnn.widths, 2) == 4 * 38 * 5 * 25 + 6 * (
        20 * 75 * 25 + 10 * 75 * 25 + 2 * 125 * 10)
    assert workload_flops("tiny", [784, 128, 10], 64) == step_flops([784, 128, 10], 64)


@pytest.mark.parametrize("size", ["cnn", "lenet"])
def test_conv_net_workloads_build_the_same_network_in_gpunn_and_torch(size):
    """gpunn's and PyTorch's builds of a workload train an epoch and hold as many
    parameters; the implementations without a convolutional version, and bfloat16, are
    left out (None)."""
    import numpy as np

    from gpunn.bench.impls import factory
    from gpunn.bench.workloads import CONV_NETS, _Device

    net, dev = CONV_NETS[size], _Device("cpu")
    X = np.random.default_rng(0).standard_normal((8, net.widths[0])).astype(np.float32)
    y = np.arange(8) % 10
    assert factory("reference", size)(dev, net.widths, X, y, 4) is None
    assert factory("gpunn", size)(dev, net.widths, X, y, 4, "bfloat16") is None
    epoch = factory("gpunn", size)(dev, net.widths, X, y, 4)
    epoch(8)
    assert epoch.model.output_shape((net.widths[0],)) == (10,)
    ours = sum(int(np.prod(p.shape)) for p in epoch.model.parameters())
    assert ours == sum(k * c + c for _, k, c in net.matmuls(1))
    if importlib.util.find_spec("torch") is not None:
        theirs = factory("torch", size)(dev, net.widths, X, y, 4)
        theirs(8)
        assert sum(p.numel() for p in theirs.model.parameters()) == ours


@pytest.mark.slow
def test_bench_runs_the_cnn_row(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gpunn", "bench", "--device", "cpu", "--sizes", "cnn",
         "--impls", "gpunn,reference", "--repeats", "1", "--target-seconds", "0.05",
         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["size"], r["impl"]) for r in rows] == [("cnn", "gpunn")]
    assert rows[0]["widths"] == [40, 25, 25, 25, 10] and rows[0]["samples_per_s"] > 0


def test_the_chart_is_rewritten_after_every_size(monkeypatch, tmp_path):
    """A run cut short keeps a chart of what it measured: one plot per size measured."""
    from gpunn.bench import command

    def fake_measure(dev, impls, size, *args):
        return [Row(size, dev.name, impl, "float32", [4, 2], 8, 3, 1.0, 1.0, 1.0, 0.1, 10.0,
                    None) for impl in impls]

    charted = []
    monkeypatch.setattr(command, "measure", fake_measure)
    monkeypatch.setattr(command, "matmul_peak", lambda dev, dtype: 1.0)
    monkeypatch.setattr(command, "plot", lambda rows, path, missing: charted.append(
        sorted({r.size for r in rows})) or True)
    args = command.build_parser().parse_args(
        ["--device", "cpu", "--sizes", "micro,tiny", "--impls", "gpunn,reference",
         "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")])
    assert command.run(args) == 0
    assert charted[:2] == [["micro"], ["micro", "tiny"]]


def test_agreement_across_devices_with_the_cupy_stand_in(monkeypatch, tmp_path):
    """The CPU vs GPU agreement check's control flow, with the CuPy stand-in as the GPU:
    trained on both, saved, loaded across, every check passes (the stand-in computes with
    NumPy, so the numbers agree exactly; on a GPU they agree to float32 tolerance)."""
    import fake_cupy

    from gpunn.bench.agreement import agreement, text

    with fake_cupy.installed(monkeypatch):
        report = agreement("cuda:0", str(tmp_path), rows=64, epochs=1)
    assert report["ok"], text(report)
    names = [c["check"] for c in report["checks"]]
    assert any("saved on cpu, loaded on cuda:0" in n for n in names)
    assert any("saved on cuda:0, loaded on cpu" in n for n in names)
    assert sorted(tmp_path.iterdir()) == [tmp_path / "trained-on-cpu.npz",
                                           tmp_path / "trained-on-cuda0.npz"]
    assert "All agree: yes" in text(report)


def test_agreement_check_flags_what_is_beyond_its_tolerance():
    from gpunn.bench.agreement import _compare

    a = [np.array([1.0, 2.0], dtype=np.float32)]
    assert _compare("same", a, a)["ok"]
    near = [np.array([1.0 + 5e-5, 2.0], dtype=np.float32)]
    assert _compare("near", near, a, rtol=0, atol=1e-4)["ok"]
    check = _compare("far", near, a)  # bit for bit
    assert not check["ok"] and check["max_abs_diff"] > 0
    assert not _compare("shape", [np.zeros(3)], [np.zeros(2)])["ok"]


@pytest.mark.slow
def test_bench_agreement_command_writes_its_report(tmp_path):
    out = tmp_path / "agreement.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gpunn", "bench", "--agreement", "--device", "cpu",
         "--json", str(out), "--markdown", str(tmp_path / "agreement.md")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["ok"] and len(report["checks"]) == 6
    assert "| check | max abs diff |" in (tmp_path / "agreement.md").read_text()


def test_targets_read_from_the_run_files(tmp_path):
    """Each target of the GPU proof, per gpunn row: speed beside PyTorch (tiny, medium),
    share of cuBLAS (large), memory over what training needs, and the agreement."""
    from dataclasses import asdict

    from gpunn.bench import targets

    def row(size, impl, ms, pct=50.0, mem=None):
        r = Row(size, "cuda:0", impl, "float32", [4, 2], 8, 3, ms, 1.0, ms, 40.0, pct, mem,
                100.0, 50.0, peak_tflops=45.0)
        return asdict(r)

    bench = {"rows": [row("tiny", "gpunn", 1.0, mem=160.0), row("tiny", "torch", 1.2),
                      row("medium", "gpunn", 2.0), row("medium", "torch", 1.0),
                      row("large", "gpunn", 9.0, pct=90.0)]}
    agreement = {"device": "cuda:0", "checks": [{"check": "weights", "ok": True},
                                                {"check": "file", "ok": False}]}
    results = targets.evaluate(bench, agreement)
    met = {(t["target"], t["where"]): t["met"] for t in results}
    assert met[("speed vs torch", "tiny cuda:0 float32")] is True  # 1.2x
    assert met[("speed vs torch", "medium cuda:0 float32")] is False  # 0.5x
    assert met[("% of cuBLAS", "large cuda:0 float32")] is True
    assert met[("memory / needed", "tiny cuda:0 float32")] is True  # (160 - 100) / 50
    assert met[("cpu/gpu agreement", "cpu vs cuda:0")] is False
    assert "failed: file" in targets.markdown(results)
    missing = targets.evaluate(None, None)
    assert [t["met"] for t in missing] == [None, None]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    assert targets.main([str(tmp_path)]) == 0
    assert "| % of cuBLAS | large cuda:0 float32 | 90.00% (cuBLAS 45.0 TFLOP/s" in (
        tmp_path / "targets.md").read_text()
    assert targets.main([str(tmp_path / "absent")]) == 2


def test_a_step_cupy_cannot_capture_is_counted_by_the_torch_profiler(monkeypatch):
    """CuPy 14 refuses cuBLAS inside a stream capture (seen on an H200): the launches and
    device time then come from PyTorch's profiler, and the note says so."""
    from gpunn.bench import profile

    refused = "not capturable (NotImplementedError: calling cuBLAS API during stream capture)"
    monkeypatch.setattr(profile, "cupy_step_profile", lambda step, dot_path=None:
                        (None, None, refused))
    monkeypatch.setattr(profile, "torch_step_profile", lambda step: (14.0, 0.25, ""))
    monkeypatch.setattr(profile, "_has_torch", lambda: True)
    launches, ms, note = profile.profile_step("gpunn", lambda: (lambda: None))
    assert (launches, ms) == (14.0, 0.25) and note.startswith("counted by torch.profiler")
    monkeypatch.setattr(profile, "_has_torch", lambda: False)
    assert profile.profile_step("gpunn", lambda: (lambda: None)) == (None, None, refused)


def test_keras_is_a_peer_timed_inside_its_own_fit():
    """Keras 3 on JAX trains through model.fit, timed like gpunn (the second epoch of one
    fit(epochs=2)), and the table compares every row with it."""
    import importlib.util
    from types import SimpleNamespace

    import numpy as np

    from gpunn.bench import impls

    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None:
        pytest.skip("Keras 3 on JAX is not installed (pip install keras jax)")
    if impls._keras() is None:
        pytest.skip("Keras was imported on another backend than JAX in this process")
    dev = SimpleNamespace(name="cpu", kind="cpu", xp=np, sync=lambda: None)
    X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    run = impls._make_keras(dev, [4, 8, 3], X, np.arange(64) % 3, 16)
    wall, host = run.inner(64)
    assert wall > 0 and host >= 0
    assert impls.usable("keras", dev) and impls._make_keras(dev, [4, 3], X, X[:, 0], 16,
                                                            "float16") is None


def test_markdown_has_a_keras_column():
    rows = [Row("tiny", "cpu", impl, "float32", [4, 2], 8, 3, ms, 1.0, ms, 0.1, 10.0, None)
            for impl, ms in [("gpunn", 1.0), ("keras", 4.0)]]
    env = {"devices": {"cpu": "cpu"}, "versions": {"numpy": "x"}, "git_commit": "abc",
           "date": "today"}
    text = markdown(rows, env, {"cpu fp32": 1.0})
    assert text.splitlines()[0].endswith("| vs jax | vs keras |")
    gpunn_line = next(line for line in text.splitlines() if "| gpunn |" in line)
    assert gpunn_line.endswith("| 4.00x |")
