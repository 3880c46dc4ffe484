"""Cross-device training-throughput benchmark (``gpunn bench``, ``bench/bench.py``).

For each size and device it times full training steps (forward, loss, backward, Adam
update) three ways, on the same data and model:

- ``gpunn``: ``model.fit(...)`` exactly as users call it;
- ``reference``: a hand-written loop in plain NumPy/CuPy doing the same maths
  (the "no framework" baseline);
- ``torch``: PyTorch eager on the same device, when PyTorch is installed.

Numbers are medians over repeated epochs after a warm-up. A step costs about
``6 * batch * sum(in * out)`` FLOPs; the achieved rate is also given as a share of the
device's matmul peak, measured in the same run with a large square matmul.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass

import numpy as np

SIZES = {
    # name: {device kind: (layer widths, batch size)}
    "tiny": {"cpu": ([784, 128, 10], 64), "cuda": ([784, 128, 10], 64)},
    "medium": {"cpu": ([784, 1024, 1024, 10], 512), "cuda": ([784, 1024, 1024, 10], 512)},
    "large": {"cpu": ([2048, 2048, 2048, 2048], 1024),
              "cuda": ([4096, 4096, 4096, 4096, 4096], 4096)},
}
LR = 1e-3


@dataclass
class Row:
    """One benchmark measurement."""

    size: str
    device: str
    impl: str
    dtype: str
    widths: list
    batch: int
    steps: int
    ms_per_step: float
    samples_per_s: float
    host_ms_per_step: float
    tflops: float
    pct_of_peak: float
    peak_mem_mb: float | None
    data_mem_mb: float = 0.0
    needed_mem_mb: float = 0.0
    #: GPU time of one step without host overhead (CUDA-graph replay for CuPy, summed
    #: kernel times from PyTorch's profiler), and kernel launches per step.
    device_ms_per_step: float | None = None
    launches_per_step: float | None = None
    profile_note: str = ""

    @property
    def mem_ratio(self) -> float | None:
        """Peak memory beyond the dataset over what training strictly needs."""
        if self.peak_mem_mb is None or not self.needed_mem_mb:
            return None
        return (self.peak_mem_mb - self.data_mem_mb) / self.needed_mem_mb


def needed_bytes(widths, batch: int, itemsize: int = 4) -> int:
    """Parameters, gradients, two Adam moments, and each layer's input and output."""
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    activations = batch * sum(widths) * 2
    return (4 * params + activations) * itemsize


def step_flops(widths, batch: int) -> float:
    """FLOPs of one training step: 2 (forward) + 4 (two backward matmuls) per MAC."""
    return 6.0 * batch * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


# ---------------------------------------------------------------------- devices
class _Device:
    def __init__(self, name: str):
        self.name = name
        self.kind = "cpu" if name == "cpu" else "cuda"
        if self.kind == "cpu":
            self.xp = np
        else:
            import cupy

            self.xp = cupy
            self.index = int(name.split(":")[1]) if ":" in name else 0
            cupy.cuda.Device(self.index).use()

    def sync(self):
        if self.kind == "cuda":
            self.xp.cuda.Device(self.index).synchronize()

    def memory_reset(self):
        if self.kind == "cuda":
            self.xp.get_default_memory_pool().free_all_blocks()

    def label(self) -> str:
        if self.kind == "cpu":
            return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        props = self.xp.cuda.runtime.getDeviceProperties(self.index)
        name = props["name"]
        return f"{self.name} ({name.decode() if isinstance(name, bytes) else name})"


def matmul_peak(dev: _Device, dtype: str = "float32") -> float:
    """Achieved TFLOP/s of a large square matmul: the practical peak of this device."""
    xp = dev.xp
    n = 2048 if dev.kind == "cpu" else 8192
    if dtype == "bfloat16":
        import ml_dtypes

        dtype = ml_dtypes.bfloat16
    a = xp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype=dtype)
    b = xp.asarray(np.random.default_rng(1).standard_normal((n, n)), dtype=dtype)
    c = xp.matmul(a, b)
    times = []
    for _ in range(5):
        dev.sync()
        t0 = time.perf_counter()
        xp.matmul(a, b, out=c)
        dev.sync()
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e12


# ---------------------------------------------------------------------- implementations
def _make_gpunn(dev, widths, X, y, batch, dtype="float32"):
    import gpunn as gn

    arch = [{"input_dim": a, "output_dim": b, "activation": "relu"}
            for a, b in zip(widths[:-2], widths[1:-1])]
    arch.append({"input_dim": widths[-2], "output_dim": widths[-1], "activation": "softmax"})
    model = gn.Sequential.from_architecture(arch, device=dev.name, dtype=dtype, seed=0)
    opt = gn.optim.Adam(lr=LR)
    Xd, yd = model.backend.asarray(X), model.backend.asarray(y)

    def epoch(n_rows):
        model.fit(Xd[:n_rows], yd[:n_rows], loss="categorical_crossentropy", optimizer=opt,
                  epochs=1, batch_size=batch, verbose=0)

    def make_step():
        """One training step exactly as fit runs it per batch (for launch counts)."""
        if model.optimizer is None:
            epoch(batch)
        return gn.training.step_function(model, Xd[:batch], yd[:batch])

    epoch.make_step = make_step
    return epoch


def _make_reference(dev, widths, X, y, batch, dtype="float32"):
    """A from-scratch loop: what one writes by hand in NumPy/CuPy for the same maths."""
    if dtype != "float32":
        return None  # mixed precision by hand is not the "no framework" baseline
    xp = dev.xp
    rng = np.random.default_rng(0)
    Ws = [xp.asarray(rng.standard_normal((a, b)) * np.sqrt(2.0 / a), dtype=xp.float32)
          for a, b in zip(widths[:-1], widths[1:])]
    bs = [xp.zeros(b, dtype=xp.float32) for b in widths[1:]]
    params = Ws + bs
    m = [xp.zeros_like(p) for p in params]
    v = [xp.zeros_like(p) for p in params]
    Xd, yd = xp.asarray(X), xp.asarray(y)
    eye = xp.eye(widths[-1], dtype=xp.float32)
    t = [0]

    def step(xb, yb):
        acts = [xb]
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = acts[-1] @ W + b
            acts.append(xp.maximum(z, 0) if i < len(Ws) - 1 else z)
        z = acts[-1]
        e = xp.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        onehot = eye[yb]
        loss = -(onehot * xp.log(p + 1e-7)).sum() / len(xb)
        g = (p - onehot) / len(xb)
        gWs, gbs = [], []
        for i in range(len(Ws) - 1, -1, -1):
            gWs.append(acts[i].T @ g)
            gbs.append(g.sum(axis=0))
            if i:
                g = (g @ Ws[i].T) * (acts[i] > 0)
        grads = gWs[::-1] + gbs[::-1]
        t[0] += 1
        c1, c2 = 1 - 0.9 ** t[0], 1 - 0.999 ** t[0]
        for j, (prm, gr) in enumerate(zip(params, grads)):
            m[j] = 0.9 * m[j] + 0.1 * gr
            v[j] = 0.999 * v[j] + 0.001 * gr * gr
            prm -= LR * (m[j] / c1) / (xp.sqrt(v[j] / c2) + 1e-8)
        return loss

    def epoch(n_rows):
        perm = xp.asarray(rng.permutation(n_rows))
        Xs, ys = Xd[perm], yd[perm]
        total = xp.zeros((), dtype=xp.float32)
        for lo in range(0, n_rows, batch):
            total += step(Xs[lo:lo + batch], ys[lo:lo + batch])
        float(total)

    epoch.make_step = lambda: (lambda: step(Xd[:batch], yd[:batch]))
    return epoch


def _make_torch(dev, widths, X, y, batch, dtype="float32"):
    import torch

    low = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    half = dtype == "float16"

    device = "cpu" if dev.kind == "cpu" else f"cuda:{dev.index}"
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    lossf = torch.nn.CrossEntropyLoss()
    Xd = torch.as_tensor(X, device=device)
    yd = torch.as_tensor(y, device=device)

    # 16-bit: PyTorch's own recipe, autocast (plus a gradient scaler for float16).
    scaler = torch.amp.GradScaler(device, enabled=half)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=low or torch.float16,
                            enabled=low is not None):
            loss = lossf(model(xb), yb)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach().float()

    def epoch(n_rows):
        perm = torch.randperm(n_rows, device=device)
        Xs, ys = Xd[perm], yd[perm]
        total = torch.zeros((), device=device)
        for lo in range(0, n_rows, batch):
            total += step(Xs[lo:lo + batch], ys[lo:lo + batch])
        total.item()

    epoch.make_step = lambda: (lambda: step(Xd[:batch], yd[:batch]))
    return epoch


IMPLS = {"gpunn": _make_gpunn, "reference": _make_reference, "torch": _make_torch}


def _torch_usable(dev) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return dev.kind == "cpu" or torch.cuda.is_available()


# ---------------------------------------------------------------------- measurement
#: Precision name -> (model dtype, row label). TF32 is float32 with TF32 matmuls.
PRECISIONS = {"fp32": ("float32", "float32"), "tf32": ("float32", "tf32"),
              "fp16": ("float16", "float16"), "bf16": ("bfloat16", "bfloat16")}
_ALIASES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def measure(dev, impls: list, size: str, repeats: int, target_s: float, peak: float,
            precision: str = "fp32", pause: float = 1.0, profile_dir: str | None = None
            ) -> list[Row]:
    """Time several implementations of one size on one device, repeats interleaved.

    Interleaving (a, b, c, a, b, c, ...) exposes every implementation to the same
    background load on a shared machine, so their ratios stay meaningful. All run the same
    number of steps per epoch, calibrated on the first implementation.
    """
    widths, batch = SIZES[size][dev.kind]
    dtype, label = PRECISIONS[precision]
    rng = np.random.default_rng(0)
    probe_steps = 3
    X = rng.standard_normal((batch * probe_steps, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], batch * probe_steps).astype(np.int64)
    impls = [i for i in impls if IMPLS[i](dev, widths, X, y, batch, dtype) is not None]
    if not impls:
        return []
    probe = IMPLS[impls[0]](dev, widths, X, y, batch, dtype)
    probe(batch * probe_steps)  # warm-up: allocations, kernel compilation, BLAS threads
    dev.sync()
    t0 = time.perf_counter()
    probe(batch * probe_steps)
    dev.sync()
    per_step = (time.perf_counter() - t0) / probe_steps
    steps = int(min(500, max(3, target_s / max(per_step, 1e-6))))
    n_rows = batch * steps
    X = rng.standard_normal((n_rows, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], n_rows).astype(np.int64)
    epochs = {i: IMPLS[i](dev, widths, X, y, batch, dtype) for i in impls}
    for epoch in epochs.values():
        epoch(n_rows)  # warm-up at full size
    walls = {i: [] for i in impls}
    hosts = {i: [] for i in impls}
    for r in range(repeats):
        # Alternate the order (each implementation follows a different one), and pause
        # before each epoch: right after PyTorch's CPU epochs the next runner was measured
        # up to 20% slower with a 0.2 s pause and unaffected with 1-2 s.
        for impl in (impls if r % 2 == 0 else impls[::-1]):
            epoch = epochs[impl]
            time.sleep(pause)
            dev.sync()
            t0, h0 = time.perf_counter(), time.thread_time()
            epoch(n_rows)
            h1 = time.thread_time()
            dev.sync()
            walls[impl].append(time.perf_counter() - t0)
            hosts[impl].append(h1 - h0)
    profiles = {}
    if dev.kind == "cuda":
        from .bench_profile import profile_step

        for impl in impls:
            dot = (os.path.join(profile_dir, f"{size}-{impl}-{precision}.dot")
                   if profile_dir and impl != "torch" else None)
            profiles[impl] = profile_step(impl, epochs[impl].make_step, dot)
    del epochs
    rows = []
    for impl in impls:
        wall = statistics.median(walls[impl]) / steps
        host = statistics.median(hosts[impl]) / steps
        mem, data = _peak_memory(dev, impl, widths, X, y, batch, dtype)
        tflops = step_flops(widths, batch) / wall / 1e12
        launches, device_ms, note = profiles.get(impl, (None, None, ""))
        rows.append(Row(size, dev.name, impl, label, list(widths), batch, steps, wall * 1e3,
                        batch / wall, host * 1e3, tflops, 100.0 * tflops / peak, mem, data,
                        needed_bytes(widths, batch) / 2**20, device_ms, launches, note))
    return rows


def _peak_memory(dev, impl, widths, X, y, batch, dtype) -> tuple[float | None, float]:
    """Peak memory (MiB) of building an implementation and running one epoch, and how
    much of it is the dataset: CPU: the shuffled copy (tracemalloc sees only allocations
    made inside the window, and the NumPy input is not copied); GPU: the copy on the
    device plus its shuffled copy."""
    data_bytes = X.nbytes + y.nbytes
    n_rows = X.shape[0]
    if dev.kind == "cpu":
        if impl == "torch":
            return None, 0.0  # torch's CPU allocator is invisible to tracemalloc
        tracemalloc.start()
        IMPLS[impl](dev, widths, X, y, batch, dtype)(n_rows)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / 2**20, data_bytes / 2**20
    if impl == "torch":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        IMPLS[impl](dev, widths, X, y, batch, dtype)(n_rows)
        return torch.cuda.max_memory_allocated() / 2**20, 2 * data_bytes / 2**20
    pool = dev.xp.get_default_memory_pool()
    dev.sync()
    pool.free_all_blocks()
    IMPLS[impl](dev, widths, X, y, batch, dtype)(n_rows)
    dev.sync()
    return pool.total_bytes() / 2**20, 2 * data_bytes / 2**20  # the pool keeps its blocks


# ---------------------------------------------------------------------- reporting
def environment(devices) -> dict:
    import gpunn

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "gpunn": gpunn.__version__}
    for mod in ("cupy", "torch", "array_api_compat"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    env = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "git_commit": _git_commit(), "platform": platform.platform(),
           "devices": {d.name: d.label() for d in devices}, "versions": versions,
           "threads": os.cpu_count()}
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
            "peak MiB | memory / needed | vs reference | vs torch |")
    lines = [head, "|" + "---|" * 17]
    for r in rows:
        ref = by_key.get((r.size, r.device, r.dtype, "reference"))
        tor = by_key.get((r.size, r.device, r.dtype, "torch"))
        mem = f"{r.peak_mem_mb:,.0f}" if r.peak_mem_mb is not None else "n/a"
        ratio = f"{r.mem_ratio:.2f}" if r.mem_ratio is not None else "n/a"
        lines.append(
            f"| {r.size} | {r.device} | {r.dtype} | {r.impl} | {'-'.join(map(str, r.widths))} | "
            f"{r.batch} | {r.ms_per_step:.3f} | {r.samples_per_s:,.0f} | "
            f"{r.host_ms_per_step:.3f} | {_opt(r.device_ms_per_step, '.3f')} | "
            f"{_opt(r.launches_per_step, '.0f')} | {r.tflops:.3f} | {r.pct_of_peak:.1f} | {mem} | "
            f"{ratio} | "
            f"{_ratio(ref, r) if r.impl != 'reference' else ''} | "
            f"{_ratio(tor, r) if r.impl != 'torch' else ''} |")
    peak_text = ", ".join(f"{d}: {p:.3f} TFLOP/s" for d, p in peaks.items())
    lines += ["", f"Matmul peak measured in the same run, per device and precision: "
              f"{peak_text}. 'vs' columns: the other's ms/step over this row's (above 1: "
              "this row is faster). 'memory / needed': peak memory less the dataset and its "
              "shuffled copy, over parameters + gradients + Adam moments + layer inputs and "
              "outputs (CPU: NumPy allocations seen by tracemalloc; GPU: CuPy's pool or "
              "PyTorch's allocator). GPU only: 'device ms/step' is one step's GPU time "
              "without host overhead (CuPy: replay of the step captured as a CUDA graph; "
              "PyTorch: summed kernel times from torch.profiler) and 'launches/step' its "
              "kernel count (graph nodes; profiler events); host ms/step at or above "
              "device ms/step means host-bound.",
              f"Devices: {'; '.join(env['devices'].values())}. Versions: "
              + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
              + f". Commit {env['git_commit'][:10]}, {env['date']}."]
    return "\n".join(lines)


def _opt(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def plot(rows: list[Row], path: str) -> bool:
    """A grouped bar chart of samples/s (log scale); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    groups = sorted({(r.size, f"{r.device} {r.dtype}") for r in rows},
                    key=lambda k: (list(SIZES).index(k[0]), k[1]))
    impls = [i for i in IMPLS if any(r.impl == i for r in rows)]
    by_key = {(r.size, f"{r.device} {r.dtype}", r.impl): r.samples_per_s for r in rows}
    fig, ax = plt.subplots(figsize=(1.8 * len(groups) + 2, 4))
    width = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        xs = [i + j * width for i in range(len(groups))]
        ax.bar(xs, [by_key.get((*g, impl), 0) for g in groups], width, label=impl)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
    ax.set_xticklabels([f"{s}\n{d}" for s, d in groups])
    ax.set_yscale("log")
    ax.set_ylabel("training samples / s")
    ax.legend()
    ax.set_title("gpunn training throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _set_precision(precision: str, dev) -> None:
    """Apply a matmul precision to gpunn/CuPy (the reference loop too) and to PyTorch."""
    from .precision import set_precision

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
    from .backend import get_backend

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
    parser.add_argument("--sizes", default="tiny,medium,large",
                        help="comma-separated subset of tiny,medium,large")
    parser.add_argument("--impls", default="gpunn,reference,torch",
                        help="comma-separated subset of gpunn,reference,torch")
    parser.add_argument("--precisions", default="auto",
                        help="comma-separated subset of fp32,tf32,fp16,bf16 (default auto: "
                        "fp32 on the CPU, all four on a GPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-seconds", type=float, default=0.5,
                        help="approximate length of one timed epoch")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds of idle before each timed epoch (default 1.0)")
    parser.add_argument("--json", help="write the results and environment to this file "
                        "(rewritten after every row: a killed run keeps what it measured)")
    parser.add_argument("--markdown", help="write the markdown table to this file (also "
                        "after every row)")
    parser.add_argument("--plot", help="write a PNG chart here (needs matplotlib)")
    parser.add_argument("--profile-dir", help="GPU: write each CuPy step's CUDA graph "
                        "(DOT) here, to see which kernels a step launches")
    return parser


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _report(args, rows, env, peaks, notes) -> str:
    """Write the JSON and markdown files (if asked) and return the table."""
    table = markdown(rows, env, peaks)
    if notes:
        table += "\n\nNotes: " + "; ".join(notes) + "."
    if args.json:
        _write_atomic(args.json, json.dumps(
            {"environment": env, "matmul_peak_tflops": peaks, "command": " ".join(sys.argv),
             "notes": notes, "rows": [asdict(r) for r in rows]}, indent=2))
    if args.markdown:
        _write_atomic(args.markdown, table + "\n")
    return table


def run(args) -> int:
    from .backend import available_devices

    usable = available_devices()
    names = usable if args.device == "all" else [args.device.replace("cuda", "cuda:0")
                                                 if args.device == "cuda" else args.device]
    missing = [n for n in names if n not in usable]
    if missing:
        print(f"gpunn bench: device(s) {missing} not usable here; usable: {usable}",
              file=sys.stderr)
        return 2
    sizes = [s for s in args.sizes.split(",") if s]
    impls = [i for i in args.impls.split(",") if i]
    bad = [s for s in sizes if s not in SIZES] + [i for i in impls if i not in IMPLS]
    if bad or args.repeats < 1:
        print(f"gpunn bench: unknown size/impl {bad} or repeats < 1", file=sys.stderr)
        return 2
    devices = [_Device(n) for n in names]
    plans, notes = [], []
    for dev in devices:
        try:
            keep, skipped = parse_precisions(args.precisions, dev)
        except ValueError as exc:
            print(f"gpunn bench: {exc}", file=sys.stderr)
            return 2
        plans.append((dev, keep))
        notes += skipped
    if args.profile_dir:
        os.makedirs(args.profile_dir, exist_ok=True)
    env = environment(devices)
    for note in notes:
        print(f"# {note}", flush=True)
    peaks, rows = {}, []
    for dev, precisions in plans:
        for precision in precisions:
            _set_precision(precision, dev)
            key = f"{dev.name} {precision}"
            peak_dtype = {"fp16": "float16", "bf16": "bfloat16"}.get(precision, "float32")
            peaks[key] = matmul_peak(dev, peak_dtype)
            print(f"# {dev.label()} {precision}: matmul peak {peaks[key]:.3f} TFLOP/s",
                  flush=True)
            usable = [i for i in impls if i != "torch" or _torch_usable(dev)]
            for size in sizes:
                dev.memory_reset()
                for row in measure(dev, usable, size, args.repeats, args.target_seconds,
                                   peaks[key], precision, args.pause, args.profile_dir):
                    rows.append(row)
                    extra = (f"  device {_opt(row.device_ms_per_step, '.3f')} ms, "
                             f"{_opt(row.launches_per_step, '.0f')} launches"
                             if dev.kind == "cuda" else "")
                    print(f"  {size:6s} {row.impl:9s} {row.ms_per_step:9.3f} ms/step "
                          f"{row.samples_per_s:12,.0f} samples/s  host "
                          f"{row.host_ms_per_step:.3f} ms  {row.pct_of_peak:5.1f}% of peak"
                          f"{extra}{'  (' + row.profile_note + ')' if row.profile_note else ''}",
                          flush=True)
                    _report(args, rows, env, peaks, notes)
        _set_precision("fp32", dev)
    table = _report(args, rows, env, peaks, notes)
    print()
    print(table)
    if args.plot and not plot(rows, args.plot):
        print("gpunn bench: matplotlib not installed, no plot written", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))
