"""Reporting: environment, the markdown table with ratios, the PNG chart."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess

import numpy as np

from ..atomic import atomic_path
from .impls import IMPLS
from .workloads import SIZES, Row, blas_report


def environment(devices) -> dict:
    import gpunn

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "gpunn": gpunn.__version__}
    for mod in ("cupy", "torch", "jax", "optax", "array_api_compat"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    try:  # from its metadata: importing Keras would fix its backend for the process
        from importlib.metadata import version

        versions["keras"] = version("keras")
    except Exception:
        pass
    env = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "git_commit": _git_commit(), "platform": platform.platform(),
           "devices": {d.name: d.label() for d in devices}, "versions": versions,
           "threads": os.cpu_count(), "blas": blas_report(),
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if any(d.kind == "cuda" for d in devices):
        import cupy

        env["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        env["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    return env


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(__file__), check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _ratio(other: Row | None, row: Row) -> str:
    """Speed of ``row`` relative to ``other`` (above 1: ``row`` is faster)."""
    return f"{other.ms_per_step / row.ms_per_step:.2f}x" if other else ""


def markdown(rows: list[Row], env: dict, peaks: dict) -> str:
    """The results as a markdown table, with ratios to the reference loop and PyTorch."""
    by_key = {(r.size, r.device, r.dtype, r.impl): r for r in rows}
    head = ("| size | device | dtype | impl | widths | batch | ms/step | samples/s | "
            "host ms/step | device ms/step | launches/step | TFLOP/s | % of peak | "
            "GEMM floor ms | step / GEMM floor | "
            "peak MiB | memory / needed | other load % | vs reference | vs torch | vs jax | "
            "vs keras |")
    lines = [head, "|" + "---|" * 22]
    for r in rows:
        ref = by_key.get((r.size, r.device, r.dtype, "reference"))
        tor = by_key.get((r.size, r.device, r.dtype, "torch"))
        jx = by_key.get((r.size, r.device, r.dtype, "jax"))
        ks = by_key.get((r.size, r.device, r.dtype, "keras"))
        mem = f"{r.peak_mem_mb:,.0f}" if r.peak_mem_mb is not None else "n/a"
        ratio = f"{r.mem_ratio:.2f}" if r.mem_ratio is not None else "n/a"
        lines.append(
            f"| {r.size} | {r.device} | {r.dtype} | {r.impl} | {'-'.join(map(str, r.widths))} | "
            f"{r.batch} | {r.ms_per_step:.3f} | {r.samples_per_s:,.0f} | "
            f"{r.host_ms_per_step:.3f} | {_opt(r.device_ms_per_step, '.3f')} | "
            f"{_opt(r.launches_per_step, '.0f')} | {r.tflops:.3f} | {r.pct_of_peak:.1f} | "
            f"{_opt(r.gemm_floor_ms, '.3f')} | {_opt(r.over_gemm_floor, '.2f')} | {mem} | "
            f"{ratio} | {r.other_load_pct:.0f} | "
            f"{_ratio(ref, r) if r.impl != 'reference' else ''} | "
            f"{_ratio(tor, r) if r.impl != 'torch' else ''} | "
            f"{_ratio(jx, r) if r.impl != 'jax' else ''} | "
            f"{_ratio(ks, r) if r.impl != 'keras' else ''} |")
    peak_text = ", ".join(f"{d}: {p:.3f} TFLOP/s" for d, p in peaks.items())
    lines += ["", f"'% of peak': the row's TFLOP/s over the peak measured in the same run "
              "for the workload's own matmul shapes (forward and both backward products, "
              "but no gradient for the data; "
              f"capped at 100); a square-matmul peak per device and precision: {peak_text}. "
              "Each time is the median over interleaved repeats of the second of two "
              "back-to-back epochs (gpunn: the second epoch of one fit(epochs=2), as in a "
              "user's multi-epoch fit); 'other load %': the largest share of the CPU other "
              "processes used meanwhile (a sample above --max-load was retaken). "
              "'GEMM floor ms': the step's matrix products alone (forward and both backward "
              "products per layer at the workload's shapes, none for the gradient of the "
              "data, which no library computes; same BLAS, same run, best "
              "round); 'step / GEMM floor': the row's ms/step over it (1.00: the step is "
              "nothing but its products; the rest is elementwise work and overhead). "
              "'vs' columns: the other's ms/step over this row's (above 1: "
              "this row is faster). 'memory / needed': peak memory less the dataset's copy on a "
              "GPU, "
              "over parameters + gradients + Adam moments + layer inputs and "
              "outputs (CPU: NumPy allocations seen by tracemalloc; GPU: CuPy's pool or "
              "PyTorch's allocator). GPU only: 'device ms/step' is one step's GPU time "
              "without host overhead (CuPy: replay of the step captured as a CUDA graph; "
              "PyTorch: summed kernel times from torch.profiler) and 'launches/step' its "
              "kernel count (graph nodes; profiler events); host ms/step at or above "
              "device ms/step means host-bound.",
              "BLAS: " + _blas_text(env.get("blas") or []) + ".",
              f"Devices: {'; '.join(env['devices'].values())}. Versions: "
              + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
              + f". Commit {env['git_commit'][:10]}, {env['date']}."]
    return "\n".join(lines)


def _blas_text(blas: list) -> str:
    """One phrase per loaded BLAS/OpenMP library: which, version, threads, kernel."""
    parts = []
    for lib in blas:
        if "environment" in lib:
            parts.append("environment " + ", ".join(f"{k}={v}" for k, v in
                                                     lib["environment"].items()))
        elif "note" in lib:
            parts.append(lib["note"])
        else:
            parts.append(f"{lib.get('internal_api')} {lib.get('version') or ''} "
                         f"({os.path.basename(str(lib.get('prefix')))}, "
                         f"{lib.get('num_threads')} threads, kernel "
                         f"{lib.get('architecture') or 'n/a'})")
    return "; ".join(parts) or "not reported"


def _opt(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def plot(rows: list[Row], path: str, missing: dict | None = None) -> bool:
    """A bar chart of samples/s, one panel per size and device, each on a linear axis from
    zero; ``missing`` (implementation -> why) is said under it. False when matplotlib is
    missing."""
    plt = pyplot()
    if plt is None:
        return False
    fig = chart(plt, rows, missing or {})
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return True


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is missing. The
    benchmark calls this before a time limit can interrupt it: an import cut short by
    SIGTERM leaves a half-imported matplotlib that no later chart could use."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _short(value: float) -> str:
    """312,772 -> "313k"; 1,234,567 -> "1.23M"."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def chart(plt, rows: list[Row], missing: dict):
    """The figure :func:`plot` writes: implementations side by side per panel (the same
    colour in every panel), their values on the bars."""
    from matplotlib.ticker import FuncFormatter

    from ..plot import COLOURS

    # One row of panels per size (one row in all for a single device and precision),
    # one column per device and precision in the order they ran.
    sizes = [s for s in SIZES if any(r.size == s for r in rows)]
    kinds = list(dict.fromkeys(f"{r.device} {r.dtype}" for r in rows))
    cells = [[(s, kinds[0]) for s in sizes]] if len(kinds) == 1 else \
        [[(s, k) for k in kinds] for s in sizes]
    impls = [i for i in IMPLS if any(r.impl == i for r in rows)]
    colour = {impl: COLOURS[j % len(COLOURS)] for j, impl in enumerate(IMPLS)}
    by_key = {(r.size, f"{r.device} {r.dtype}", r.impl): r.samples_per_s for r in rows}
    nrows, ncols = len(cells), len(cells[0])
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(2.4 * ncols + 1, 5), 3.6 * nrows + 0.8),
                             squeeze=False)
    groups = [group for row in cells for group in row]
    for ax, group in zip(axes.flat, groups):
        if not any(key[:2] == group for key in by_key):
            ax.set_visible(False)
            continue
        values = [by_key.get((*group, i)) for i in impls]
        bars = ax.bar(range(len(impls)), [v or 0 for v in values], 0.7,
                      color=[colour[i] for i in impls])
        ax.bar_label(bars, [_short(v) if v else "n/a" for v in values], fontsize=7)
        ax.set_ylim(0, 1.15 * max([v or 0 for v in values] + [1e-9]))
        ax.set_xticks(range(len(impls)), impls, rotation=30, fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v) if v else "0"))
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(f"{group[0]} {'-'.join(map(str, _widths(rows, group)))}\n{group[1]}",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel("training samples/s (higher is better)", fontsize=9)
    fig.suptitle("gpunn training throughput")
    if missing:
        fig.text(0.5, 0.01, "not measured: " + "; ".join(f"{i} ({why})" for i, why in
                                                         missing.items()),
                 ha="center", fontsize=8)
    # Room for the title: tight_layout alone lets it touch the first row's titles.
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0.2 / height if missing else 0, 1, 1 - 0.35 / height))
    return fig


def _widths(rows, group):
    return next((r.widths for r in rows if (r.size, f"{r.device} {r.dtype}") == group), [])
