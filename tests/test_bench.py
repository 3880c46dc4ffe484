"""The benchmark runs end to end (tiny size, one repeat); its numbers are not asserted."""

import json
import os
import subprocess
import sys

from gpunn.bench import SIZES, Row, markdown, step_flops


def test_step_flops():
    assert step_flops([784, 128, 10], 64) == 6 * 64 * (784 * 128 + 128 * 10)


def test_markdown_ratios():
    rows = [Row("tiny", "cpu", impl, "float32", [4, 2], 8, 3, ms, 1.0, ms, 0.1, 10.0, None)
            for impl, ms in [("gpunn", 1.0), ("reference", 1.5), ("torch", 2.0)]]
    env = {"devices": {"cpu": "cpu"}, "versions": {"numpy": "x"}, "git_commit": "abc",
           "date": "today"}
    text = markdown(rows, env, {"cpu fp32": 1.0})
    gpunn_line = next(line for line in text.splitlines() if "| gpunn |" in line)
    assert "| 1.50x | 2.00x |" in gpunn_line


def test_needed_bytes():
    from gpunn.bench import needed_bytes

    params = 4 * 2 + 2
    assert needed_bytes([4, 2], 8) == (4 * params + 8 * 6 * 2) * 4


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
