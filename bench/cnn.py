"""Convolutional networks on the CPU: gpunn beside PyTorch eager, the GEMM floor, memory.

Two workloads, each gpunn's ``fit`` against PyTorch's usual eager loop on the same data,
network, batch and number of steps (Adam, softmax cross-entropy, float32):

- ``mnist1d-cnn``: the MNIST-1D paper's ConvBase (Conv1D 1->25 k5 s2 p1, 25->25 k3 s2
  p1, 25->25 k3 s2 p1, ReLU, Dense 125->10) on (batch, 40) series, batch 100;
- ``lenet5``: a LeNet-5-style network on 28x28 images (Conv2D 1->6 k5 p2, max-pool 2,
  Conv2D 6->16 k5, max-pool 2, Dense 400->120->84->10, ReLU), batch 256.

Reported per workload: ms per step of each (median of interleaved repeats), gpunn's speed
relative to PyTorch (> 1: gpunn is faster), the GEMM floor (the step's matrix products
alone, timed with NumPy's BLAS at the same shapes) and its share of gpunn's step, and
the peak memory of a step's forward and backward pass (traced allocations) against what
its activations and patch matrices need.

    python bench/cnn.py --out bench/results/cnn-cpu

writes ``<out>.json`` and ``<out>.md``. To lift this machine's OpenBLAS settings for the
run alone: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/cnn.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

import gpunn as gn

WORKLOADS = {
    "mnist1d-cnn": {"shape": (40,), "batch": 100, "steps": 200},
    "lenet5": {"shape": (1, 28, 28), "batch": 256, "steps": 12},
}


def gpunn_layers(name: str) -> list:
    if name == "mnist1d-cnn":
        return [gn.Reshape((1, 40)),
                gn.Conv1D(1, 25, 5, stride=2, padding=1, activation="relu"),
                gn.Conv1D(25, 25, 3, stride=2, padding=1, activation="relu"),
                gn.Conv1D(25, 25, 3, stride=2, padding=1, activation="relu"),
                gn.Flatten(), gn.Dense(125, 10, activation="softmax")]
    return [gn.Conv2D(1, 6, 5, padding=2, activation="relu"), gn.MaxPool2D(2),
            gn.Conv2D(6, 16, 5, activation="relu"), gn.MaxPool2D(2), gn.Flatten(),
            gn.Dense(400, 120, activation="relu"), gn.Dense(120, 84, activation="relu"),
            gn.Dense(84, 10, activation="softmax")]


def torch_model(name: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "mnist1d-cnn":
        return nn.Sequential(nn.Unflatten(1, (1, 40)),
                             nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
                             nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(125, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def data(name: str):
    spec = WORKLOADS[name]
    rng = np.random.default_rng(0)
    rows = spec["batch"] * spec["steps"]
    X = rng.standard_normal((rows,) + spec["shape"]).astype(np.float32)
    return X, rng.integers(0, 10, rows).astype(np.int64)


class GpunnRun:
    def __init__(self, name):
        self.X, self.y = data(name)
        self.batch = WORKLOADS[name]["batch"]
        self.model = gn.Sequential(gpunn_layers(name), device="cpu", seed=0)
        self.model.fit(self.X, self.y, loss="cross_entropy", optimizer=gn.optim.Adam(1e-3),
                       epochs=1, batch_size=self.batch, verbose=0)  # compile and warm up

    def epoch(self) -> None:
        self.model.fit(self.X, self.y, epochs=1, batch_size=self.batch, verbose=0)


class TorchRun:
    def __init__(self, name):
        import torch

        X, y = data(name)
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.batch = WORKLOADS[name]["batch"]
        self.model = torch_model(name)
        self.opt = torch.optim.Adam(self.model.parameters(), 1e-3)
        self.epoch()

    def epoch(self) -> None:
        import torch.nn.functional as F

        perm = np.random.default_rng(0).permutation(len(self.X))
        for lo in range(0, len(self.X), self.batch):
            idx = perm[lo:lo + self.batch]
            loss = F.cross_entropy(self.model(self.X[idx]), self.y[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()


def gemm_shapes(name: str) -> list:
    """``(m, k, n)`` of every matrix product in one gpunn training step (NumPy backend):
    per convolution the forward ``(N*L, K*C) @ (K*C, O)``, the weight gradient ``(O,
    N*L) @ (N*L, K*C)`` and, but for the first layer, the input gradient as one
    ``(N*L, O) @ (O, C)`` per kernel offset; per dense layer its three products."""
    model = gn.Sequential(gpunn_layers(name), device="cpu", seed=0)
    batch = WORKLOADS[name]["batch"]
    shape, shapes, first = WORKLOADS[name]["shape"], [], True
    for layer in model.layers:
        out = layer.output_shape(shape)
        if isinstance(layer, (gn.Conv1D, gn.Conv2D)):
            positions = int(np.prod(out[1:]))
            taps = int(np.prod(layer.kernel_size))
            nl, kc, o = batch * positions, taps * layer.in_channels, layer.out_channels
            shapes += [(nl, kc, o), (o, nl, kc)]
            if not first:
                shapes += [(nl, o, layer.in_channels)] * taps
            first = False
        elif isinstance(layer, gn.Dense):
            i, o = layer.in_features, layer.out_features
            shapes += [(batch, i, o), (i, batch, o)] + ([] if first else [(batch, o, i)])
            first = False
        shape = out
    return shapes


def gemm_floor_ms(shapes, repeats: int) -> float:
    rng = np.random.default_rng(1)
    total = 0.0
    for m, k, n in shapes:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        np.matmul(a, b, out=out)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
        total += statistics.median(times)
    return total * 1e3


def memory(name: str) -> dict:
    """Peak bytes one training step's forward and backward pass allocate (the model's
    own ``forward``/``backward``, after a warm-up step), against what its activations
    (every layer's output) and patch matrices need."""
    spec = WORKLOADS[name]
    X, y = data(name)
    X, y = X[:spec["batch"]], y[:spec["batch"]]
    model = gn.Sequential(gpunn_layers(name), device="cpu", seed=0)
    need, shape = 0, spec["shape"]
    for layer in model.layers:
        out = layer.output_shape(shape)
        need += spec["batch"] * int(np.prod(out)) * 4
        if isinstance(layer, (gn.Conv1D, gn.Conv2D)):
            need += spec["batch"] * int(np.prod(out[1:])) * layer.in_channels * \
                int(np.prod(layer.kernel_size)) * 4
        shape = out
    onehot = np.eye(10, dtype=np.float32)[y]

    def step():
        prob = model.forward(X, training=True)
        model.backward((prob - onehot) / np.float32(len(X)))  # softmax cross-entropy's

    step()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"peak_bytes": peak, "need_bytes": need, "ratio": peak / need}


def environment() -> dict:
    """Versions, threads, and the BLAS each library loaded (and the kernel it picked)."""
    import torch

    from gpunn.bench.workloads import blas_report

    return {"numpy": np.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "gpunn": gn.__version__,
            "cpus": os.cpu_count(), "blas": blas_report()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS),
                        default=list(WORKLOADS))
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("cnn.py: PyTorch is the reference here: pip install torch", file=sys.stderr)
        return 2
    load_before = [round(v, 2) for v in os.getloadavg()]
    results = {}
    for name in args.workloads:
        runs = {"gpunn": GpunnRun(name), "torch": TorchRun(name)}
        times = {lib: [] for lib in runs}
        for r in range(args.repeats):  # interleaved, the order alternating
            for lib in (("gpunn", "torch") if r % 2 == 0 else ("torch", "gpunn")):
                start = time.perf_counter()
                runs[lib].epoch()
                times[lib].append((time.perf_counter() - start) / WORKLOADS[name]["steps"])
        ms = {lib: 1e3 * statistics.median(t) for lib, t in times.items()}
        floor = gemm_floor_ms(gemm_shapes(name), args.repeats)
        results[name] = {"gpunn_ms": ms["gpunn"], "torch_ms": ms["torch"],
                         "speed": ms["torch"] / ms["gpunn"], "gemm_floor_ms": floor,
                         "gemm_share": floor / ms["gpunn"], "memory": memory(name),
                         "batch": WORKLOADS[name]["batch"]}
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "memory"}),
              flush=True)
    command = " ".join(["python bench/cnn.py"] + (argv if argv is not None else sys.argv[1:]))
    lines = [f"# Convolutional networks on the CPU ({time.strftime('%Y-%m-%d')})", "",
             f"`{command}` — median ms per training step over {args.repeats} interleaved "
             "epochs; speed = PyTorch ms / gpunn ms (> 1: gpunn faster).", "",
             "| workload | batch | gpunn ms/step | PyTorch ms/step | gpunn speed | GEMM floor "
             "ms | GEMM share of gpunn's step | step memory / (activations + patches) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['batch']} | {r['gpunn_ms']:.2f} | {r['torch_ms']:.2f} | "
                     f"{r['speed']:.2f}× | {r['gemm_floor_ms']:.2f} | "
                     f"{100 * r['gemm_share']:.0f}% | {r['memory']['ratio']:.2f} |")
    env = environment()
    libs = "; ".join(", ".join(f"{k} {v}" for k, v in lib.items() if v is not None)
                     for lib in env["blas"])
    lines += ["", f"Machine: {env['cpus']} CPUs, load average {load_before} before, "
              f"{[round(v, 2) for v in os.getloadavg()]} after. NumPy {env['numpy']}, "
              f"PyTorch {env['torch']} ({env['torch_threads']} threads). Libraries: {libs}.",
              ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out + ".json", "w") as f:
            json.dump({"results": results, "environment": env, "command": command,
                       "load_before": load_before}, f, indent=1)
        with open(args.out + ".md", "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
