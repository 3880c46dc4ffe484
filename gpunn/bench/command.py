"""``gpunn bench``: arguments, precisions per device, the run, files after every row."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import asdict

from ..atomic import check_outputs, write_text
from ..plot import PLOT_HELP, plot_outputs
from .impls import IMPLS, usable, why_unusable
from .measure import measure
from .report import _opt, environment, markdown, plot, pyplot
from .workloads import _ALIASES, PRECISIONS, SIZES, _Device, blas_report, matmul_peak


def _set_precision(precision: str, dev) -> None:
    """Apply a matmul precision to gpunn/CuPy (the reference loop too) and to PyTorch."""
    from ..precision import set_precision

    tf32 = precision == "tf32"
    set_precision("tf32" if tf32 else "fp32")
    if dev.kind == "cuda":
        try:
            import torch

            torch.backends.cuda.matmul.allow_tf32 = tf32
        except ImportError:
            pass


def parse_precisions(text: str, dev) -> tuple[list[str], list[str]]:
    """The precisions to run on ``dev`` and notices for those skipped.

    ``auto`` is fp32 on the CPU and fp32, tf32, fp16, bf16 on a GPU; TF32 and 16-bit
    types only pay off on GPUs (NumPy has no fast float16 and no bfloat16 at all).
    """
    if text == "auto":
        wanted = ["fp32"] if dev.kind == "cpu" else list(PRECISIONS)
    else:
        wanted = [_ALIASES.get(p.strip(), p.strip()) for p in text.split(",") if p.strip()]
    bad = [p for p in wanted if p not in PRECISIONS]
    if bad:
        raise ValueError(f"--precisions: unknown {bad}; expected a comma-separated subset of "
                         f"{', '.join(PRECISIONS)} (or auto)")
    keep, skipped = [], []
    for p in wanted:
        if dev.kind == "cpu" and p != "fp32":
            skipped.append(f"{p} skipped on cpu (GPU only)")
        elif p == "bf16" and not _bf16_usable(dev):
            skipped.append(f"bf16 skipped on {dev.name}: {_bf16_usable.reason}")
        else:
            keep.append(p)
    return keep, skipped


def _bf16_usable(dev) -> bool:
    from ..backend import get_backend

    try:
        get_backend(dev.name, dtype="bfloat16")
    except ValueError as exc:
        _bf16_usable.reason = str(exc)
        return False
    return True


def build_parser(parser=None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="gpunn bench", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--device", default="all",
                        help="all (default: every usable device), cpu, cuda, cuda:N")
    parser.add_argument("--sizes", default="micro,tiny,medium,wide,large,cnn,lenet",
                        help="comma-separated subset of micro,tiny,medium,wide,large (dense "
                        "networks), cnn (the MNIST-1D CNN) and lenet (a LeNet-5 on 28x28 "
                        "images); gpunn and torch only for the last two")
    parser.add_argument("--impls", default="gpunn,reference,torch,jax",
                        help="comma-separated subset of gpunn,reference,torch,jax,keras "
                        "(keras: Keras 3 on JAX, CPU; those not installed are left out)")
    parser.add_argument("--precisions", default="auto",
                        help="comma-separated subset of fp32,tf32,fp16,bf16 (default auto: "
                        "fp32 on the CPU, all four on a GPU)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed samples per row (the median is reported)")
    parser.add_argument("--target-seconds", type=float, default=0.5,
                        help="approximate length of one timed epoch")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds of idle before each sample (default 0)")
    parser.add_argument("--max-load", type=float, default=10.0,
                        help="retake a sample while other processes use more than this "
                        "percent of the CPU (default 10; the load is recorded per row)")
    parser.add_argument("--scaling", action="store_true",
                        help="instead: time and memory of fit against the number of rows")
    parser.add_argument("--scaling-rows", default="10000,100000,1000000",
                        help="row counts for --scaling (default 10000,100000,1000000)")
    parser.add_argument("--agreement", action="store_true",
                        help="instead: train one float32 model on the CPU and on --device "
                        "from the same weights, save each and load it on the other device, "
                        "and check that weights and predictions agree (exit 1 if not)")
    parser.add_argument("--json", help="write the results and environment to this file "
                        "(rewritten after every row: a killed run keeps what it measured)")
    parser.add_argument("--markdown", help="write the markdown table to this file (also "
                        "after every row)")
    parser.add_argument("--plot", metavar="PATH", help="a bar chart of samples/s (bench.png "
                        f"in a folder): {PLOT_HELP}")
    parser.add_argument("--profile-dir", help="GPU: write each CuPy step's CUDA graph "
                        "(DOT) here, to see which kernels a step launches")
    return parser


def _report(args, rows, env, peaks, notes) -> str:
    """Write the JSON and markdown files (if asked) and return the table."""
    table = markdown(rows, env, peaks)
    if notes:
        table += "\n\nNotes: " + "; ".join(notes) + "."
    if args.json:
        write_text(args.json, json.dumps(
            {"environment": env, "matmul_peak_tflops": peaks, "command": " ".join(sys.argv),
             "notes": notes, "rows": [asdict(r) for r in rows]}, indent=2))
    if args.markdown:
        write_text(args.markdown, table + "\n")
    return table


def _plans(devices, precisions: str):
    """Per device, the precisions to run; and notices for those skipped."""
    plans, notes = [], []
    for dev in devices:
        keep, skipped = parse_precisions(precisions, dev)
        plans.append((dev, keep))
        notes += skipped
    return plans, notes


def _run_device(args, dev, precisions, sizes, impls, env, peaks, rows, notes,
                missing) -> None:
    """Every precision and size on one device; rows and files updated after each row,
    the chart after each size."""
    for precision in precisions:
        _set_precision(precision, dev)
        key = f"{dev.name} {precision}"
        peak_dtype = {"fp16": "float16", "bf16": "bfloat16"}.get(precision, "float32")
        peaks[key] = matmul_peak(dev, peak_dtype)
        print(f"# {dev.label()} {precision}: matmul peak {peaks[key]:.3f} TFLOP/s",
              flush=True)
        here = [i for i in impls if usable(i, dev)]
        for size in sizes:
            dev.memory_reset()
            for row in measure(dev, here, size, args.repeats, args.target_seconds,
                               precision, args.pause, args.profile_dir, args.max_load):
                rows.append(row)
                extra = (f"  device {_opt(row.device_ms_per_step, '.3f')} ms, "
                         f"{_opt(row.launches_per_step, '.0f')} launches"
                         if dev.kind == "cuda" else "")
                print(f"  {size:6s} {row.impl:9s} {row.ms_per_step:9.3f} ms/step "
                      f"{row.samples_per_s:12,.0f} samples/s  host "
                      f"{row.host_ms_per_step:.3f} ms  {row.pct_of_peak:5.1f}% of peak  "
                      f"{_opt(row.over_gemm_floor, '.2f')}x GEMM floor"
                      f"{extra}{'  (' + row.profile_note + ')' if row.profile_note else ''}",
                      flush=True)
                _report(args, rows, env, peaks, notes)
            if args.chart and rows:
                plot(rows, args.chart, missing)
    _set_precision("fp32", dev)


def _argument_problem(args, sizes, impls) -> str | None:
    """What is wrong with the arguments, in one line, or None."""
    import math

    bad = [s for s in sizes if s not in SIZES] + [i for i in impls if i not in IMPLS]
    if bad:
        return f"unknown size or implementation {bad}; sizes: {', '.join(SIZES)}; " \
               f"implementations: {', '.join(IMPLS)}"
    if not sizes or not impls:
        return "--sizes and --impls: expected at least one name each"
    if args.repeats < 1:
        return f"--repeats: expected an integer >= 1, got {args.repeats}"
    for name, value, positive in (("--target-seconds", args.target_seconds, True),
                                  ("--pause", args.pause, False),
                                  ("--max-load", args.max_load, False)):
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            return f"{name}: expected a finite number {'>' if positive else '>='} 0, " \
                   f"got {value}"
    return None


def run(args) -> int:
    from ..backend import available_devices

    devices_here = available_devices()
    names = devices_here if args.device == "all" else [
        args.device.replace("cuda", "cuda:0") if args.device == "cuda" else args.device]
    missing = [n for n in names if n not in devices_here]
    if missing:
        print(f"gpunn bench: device(s) {missing} not usable here; usable: {devices_here}",
              file=sys.stderr)
        return 2
    if args.agreement:
        from .agreement import run_agreement

        return run_agreement(args, next((n for n in names if n != "cpu"), names[0]))
    if args.scaling:
        from .scaling import run_scaling

        return run_scaling(args, _Device(names[0]))
    # --plot: a folder or a .png file, as in every command; matplotlib checked now.
    chart = plot_outputs(args.plot, ["bench"])
    args.chart = chart[0] if chart else None  # redrawn after every size
    check_outputs([args.json, args.markdown] + chart,
                  folders=([args.profile_dir] if args.profile_dir else [])
                  + ([args.plot] if chart and chart[0] != args.plot else []))
    sizes = [s for s in args.sizes.split(",") if s]
    impls = [i for i in args.impls.split(",") if i]
    problem = _argument_problem(args, sizes, impls)
    if problem:
        print(f"gpunn bench: {problem}", file=sys.stderr)
        return 2
    devices = [_Device(n) for n in names]
    try:
        plans, notes = _plans(devices, args.precisions)
    except ValueError as exc:
        print(f"gpunn bench: {exc}", file=sys.stderr)
        return 2
    if args.profile_dir:
        os.makedirs(args.profile_dir, exist_ok=True)
    env = environment(devices)
    missing = _missing(impls, devices)
    notes += [f"{impl} not measured: {why}" for impl, why in missing.items()]
    for note in notes:
        print(f"# {note}", flush=True)
    peaks, rows = {}, []
    if chart:
        pyplot()  # imported now, not where a time limit can cut the import short
    # A time limit (`timeout` in ci/gpu.sh sends SIGTERM) or Ctrl-C ends the run with the
    # rows measured so far reported and charted.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        for dev, precisions in plans:
            _run_device(args, dev, precisions, sizes, impls, env, peaks, rows, notes,
                        missing)
    except KeyboardInterrupt:
        notes.append(f"stopped early: {len(rows)} row(s) measured")
        print(f"gpunn bench: stopped; reporting the {len(rows)} row(s) measured",
              file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    env["blas"] = blas_report()  # now that every library has loaded its BLAS
    table = _report(args, rows, env, peaks, notes)
    print()
    print(table)
    if chart and rows:
        plot(rows, chart[0], missing)
    return 0


def _stop(signum, frame):
    raise KeyboardInterrupt


def _missing(impls, devices) -> dict:
    """Implementation -> why it was left out (on some device), for those that were."""
    reasons: dict[str, list] = {}
    for dev in devices:
        for impl in impls:
            why = why_unusable(impl, dev)
            if why and why not in reasons.setdefault(impl, []):
                reasons[impl].append(why)
    return {impl: ", ".join(why) for impl, why in reasons.items() if why}


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))
