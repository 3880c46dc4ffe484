"""Where one gpunn training step's time goes on a GPU: the kernels it launches and the host
functions it spends its time in.

For each workload and precision, one epoch of ``fit`` (the benchmark's own workload and
data, after two warm-up epochs) runs under PyTorch's profiler, whose CUPTI tracing sees
every CUDA kernel of the process, CuPy's included: each kernel's launches and GPU time per
step. The same epoch then runs under ``cProfile``: host seconds per step by function. With
``--device cpu`` only the host profile is taken (a dry run of the script).
``--trace-dtypes`` also lists, per backend operation of one epoch, the dtypes of the arrays
it was given and returned: whether a 16-bit step hands float32 to its products itself or
the array library casts inside them.

Usage::

    python bench/gpu_kernels.py --sizes tiny,large --precisions fp16,bf16 --out results/
    python bench/gpu_kernels.py --sizes tiny --precisions bf16 --trace-dtypes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np

from gpunn.bench.impls import factory
from gpunn.bench.workloads import PRECISIONS, SIZES, _Device


def _kernel_table(epoch, n_rows: int, steps: int, top: int) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        epoch(n_rows)
        torch.cuda.synchronize()
    rows = []
    for ev in prof.key_averages():
        us = getattr(ev, "self_device_time_total", None)
        if us is None:
            us = getattr(ev, "self_cuda_time_total", 0.0)
        if us > 0:
            rows.append((us, ev.count, ev.key))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    launches = sum(r[1] for r in rows)
    lines = [f"GPU time per step {total / steps / 1e3:.3f} ms in {launches / steps:.1f} "
             f"kernels/copies per step", "| GPU us/step | calls/step | share | kernel |",
             "|---|---|---|---|"]
    for us, count, key in rows[:top]:
        lines.append(f"| {us / steps:.1f} | {count / steps:.2f} | {100 * us / total:.1f}% | "
                     f"{key[:110]} |")
    return "\n".join(lines)


#: The backend operations of a step whose operands and results are traced.
TRACED = ("bias_activation", "dense_backward", "activation_backward", "softmax_cross_entropy",
          "conv_forward", "conv_backward", "take_rows")


def _dtypes(value) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_dtypes(v) for v in value) + ")"
    dtype = getattr(value, "dtype", None)
    return str(dtype) if dtype is not None else "-"


def _dtype_trace(epoch, n_rows: int) -> str:
    """Per backend operation of one epoch: argument and result dtypes, and how often."""
    from collections import Counter

    backend = epoch.model.backend
    seen = Counter()

    def wrap(name, method):
        def traced(*args, **kwargs):
            out = method(*args, **kwargs)
            arrays = [a for a in args if hasattr(a, "dtype") or isinstance(a, tuple)]
            seen[(name, _dtypes(arrays), _dtypes(out))] += 1
            return out
        return traced

    for name in TRACED:
        setattr(backend, name, wrap(name, getattr(backend, name)))
    try:
        epoch(n_rows)
    finally:
        for name in TRACED:
            delattr(backend, name)  # the instance attribute: the class's method again
    lines = ["| operation | argument dtypes | result dtypes | calls |", "|---|---|---|---|"]
    lines += [f"| {n} | {a} | {r} | {c} |" for (n, a, r), c in sorted(seen.items())]
    return "\n".join(lines)


def _host_profile(epoch, n_rows: int, steps: int, top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    epoch(n_rows)
    prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    return f"(host seconds for {steps} steps)\n" + text.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--sizes", default="tiny,large")
    parser.add_argument("--precisions", default="fp32,fp16,bf16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=18)
    parser.add_argument("--out", default=None, help="folder for gpu-kernels.md")
    parser.add_argument("--trace-dtypes", action="store_true",
                        help="also list each backend operation's argument/result dtypes")
    args = parser.parse_args(argv)
    sizes, precisions = args.sizes.split(","), args.precisions.split(",")
    bad = [s for s in sizes if s not in SIZES] + [p for p in precisions if p not in PRECISIONS]
    if bad or args.steps < 1:
        parser.error(f"unknown size or precision {bad} (sizes: {', '.join(SIZES)}; "
                     f"precisions: {', '.join(PRECISIONS)}), or --steps below 1")
    dev = _Device(args.device)
    report = [f"# gpunn step profile on {dev.label()}", ""]
    for size in sizes:
        for precision in precisions:
            dtype, _ = PRECISIONS[precision]
            widths, batch = SIZES[size][dev.kind]
            rng = np.random.default_rng(0)
            n_rows = batch * args.steps
            X = rng.standard_normal((n_rows, widths[0])).astype(np.float32)
            y = rng.integers(0, widths[-1], n_rows).astype(np.int64)
            try:
                epoch = factory("gpunn", size)(dev, widths, X, y, batch, dtype)
                epoch(n_rows)
                epoch(n_rows)
                dev.sync()
                t0 = time.perf_counter()
                epoch(n_rows)
                dev.sync()
                ms = (time.perf_counter() - t0) / args.steps * 1e3
            except Exception as exc:  # a workload this device or dtype cannot run
                report += [f"## {size} {precision}: not run ({type(exc).__name__}: {exc})", ""]
                continue
            report += [f"## {size} {precision} (batch {batch}): {ms:.3f} ms/step wall", ""]
            if dev.kind == "cuda":
                report += [_kernel_table(epoch, n_rows, args.steps, args.top), ""]
            if args.trace_dtypes and hasattr(epoch, "model"):
                report += [_dtype_trace(epoch, n_rows), ""]
            report += ["```", _host_profile(epoch, n_rows, args.steps, args.top), "```", ""]
            print("\n".join(report[-8:]), flush=True)
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                (Path(args.out) / "gpu-kernels.md").write_text("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
