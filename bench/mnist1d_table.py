"""The MNIST-1D paper's table (Greydanus 2020), reproduced with gpunn, PyTorch beside it.

The paper's three rows that gpunn can express, with its own architectures and schedule
(its notebook ``mnist1d-classification.ipynb``): logistic regression (``LinearBase``), the
MLP with a skip connection (``MLPBase``: ``h = relu(W1 x); h = h + relu(W2 h)``, 100 hidden
units) and the CNN (``ConvBase``: Conv1D 1->25 k5 s2 p1, 25->25 k3 s2 p1, 25->25 k3 s2 p1,
ReLU, a linear map of the 125 features); Adam at 1e-2, batches of 100 taken in order
(no shuffling), 6000 steps, the test accuracy at the end. The data are the package's own
(``make_dataset(get_dataset_args())``: 4000 training and 1000 test series of 40 values).

Each library trains the same networks with its own default initialisation, from seeds
0, 1, 2; the two are interleaved (seed by seed, row by row, the order alternating) so
that load on a shared machine falls on both. Training time is the training loop alone
(no evaluation inside it).

    pip install mnist1d torch    # the data, and the reference
    python bench/mnist1d_table.py --out bench/results/mnist1d-cpu

writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

import gpunn as gn

PAPER = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94}  # the paper's table, test accuracy
ROWS = tuple(PAPER)


def gpunn_model(row: str, seed: int) -> gn.Sequential:
    """The paper's network for ``row`` in gpunn (softmax output, trained on logits)."""
    if row == "logistic":
        layers = [gn.Dense(40, 10, activation="softmax")]
    elif row == "mlp":
        layers = [gn.Dense(40, 100, activation="relu"),
                  gn.Residual([gn.Dense(100, 100, activation="relu")]),
                  gn.Dense(100, 10, activation="softmax")]
    else:
        layers = [gn.Reshape((1, 40)),
                  gn.Conv1D(1, 25, 5, stride=2, padding=1, activation="relu"),
                  gn.Conv1D(25, 25, 3, stride=2, padding=1, activation="relu"),
                  gn.Conv1D(25, 25, 3, stride=2, padding=1, activation="relu"),
                  gn.Flatten(), gn.Dense(125, 10, activation="softmax")]
    return gn.Sequential(layers, device="cpu", seed=seed)


def torch_model(row: str, seed: int):
    """The same network in PyTorch, as the paper's ``models.py`` writes it."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    if row == "logistic":
        return nn.Linear(40, 10)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.l3 = nn.Linear(40, 100), nn.Linear(100, 100), \
                nn.Linear(100, 10)

        def forward(self, x):
            h = self.l1(x).relu()
            h = h + self.l2(h).relu()
            return self.l3(h)

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(1, 25, 5, stride=2, padding=1)
            self.c2 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
            self.c3 = nn.Conv1d(25, 25, 3, stride=2, padding=1)
            self.out = nn.Linear(125, 10)

        def forward(self, x):
            h = x.view(-1, 1, x.shape[-1])
            h = self.c3(self.c2(self.c1(h).relu()).relu()).relu()
            return self.out(h.view(h.shape[0], -1))

    return MLP() if row == "mlp" else CNN()


def run_gpunn(row, seed, data, steps, batch, lr) -> dict:
    X, y, Xt, yt = data
    model = gpunn_model(row, seed)
    epochs = steps * batch // len(X)  # the paper's batches run through the data in order
    start = time.perf_counter()
    model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=lr), epochs=epochs,
              batch_size=batch, shuffle=False, verbose=0, seed=seed)
    seconds = time.perf_counter() - start
    acc = float(np.mean(model.predict(Xt).argmax(axis=1) == yt))
    return {"accuracy": acc, "train_s": seconds, "steps": epochs * (len(X) // batch)}


def run_torch(row, seed, data, steps, batch, lr) -> dict:
    import torch
    import torch.nn.functional as F

    X, y, Xt, yt = (torch.from_numpy(a) for a in data)
    model = torch_model(row, seed)
    opt = torch.optim.Adam(model.parameters(), lr)
    n = len(X)
    start = time.perf_counter()
    for step in range(steps):
        lo = (step * batch) % n
        loss = F.cross_entropy(model(X[lo:lo + batch]), y[lo:lo + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        acc = float((model(Xt).argmax(-1) == yt).float().mean())
    return {"accuracy": acc, "train_s": seconds, "steps": steps}


def environment() -> dict:
    """Versions, threads, and the BLAS each library loaded (and the kernel it picked)."""
    import torch

    from gpunn.bench.workloads import blas_report

    return {"numpy": np.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "gpunn": gn.__version__,
            "cpus": os.cpu_count(), "blas": blas_report()}


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"# MNIST-1D: the paper's table with gpunn and PyTorch ({results['date']})", "",
             f"`{results['command']}` — {results['steps']} steps of {results['batch']}, "
             f"Adam {results['lr']}, seeds {results['seeds']}; test accuracy at the end "
             "(mean ± standard deviation over the seeds); training time of the loop alone.",
             "", "| model | paper | gpunn | PyTorch | gpunn train s | PyTorch train s | "
             "gpunn speed (PyTorch s / gpunn s) |", "|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        r = results["table"][row]
        lines.append(
            f"| {row} | {PAPER[row]:.2f} | {r['gpunn_mean']:.3f} ± {r['gpunn_sd']:.3f} | "
            f"{r['torch_mean']:.3f} ± {r['torch_sd']:.3f} | {r['gpunn_s']:.2f} | "
            f"{r['torch_s']:.2f} | {r['speed']:.2f}× |")
    lines += ["", "Per seed (gpunn / PyTorch): " + "; ".join(
        f"{row} " + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(
            results["table"][row]["gpunn"], results["table"][row]["torch"]))
        for row in results["rows"]), "",
        f"Machine: {env['cpus']} CPUs, load average {results['load_before']} before, "
        f"{results['load_after']} after. NumPy {env['numpy']}, PyTorch {env['torch']} "
        f"({env['torch_threads']} threads). Libraries: " + "; ".join(
            ", ".join(f"{k} {v}" for k, v in lib.items() if v is not None)
            for lib in env["blas"]) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--out", help="write <out>.json and <out>.md")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        print(f"mnist1d_table.py: needs the mnist1d and torch packages ({exc}): "
              "pip install mnist1d torch", file=sys.stderr)
        return 2
    raw = make_dataset(get_dataset_args())
    data = (raw["x"].astype(np.float32), raw["y"].astype(np.int64),
            raw["x_test"].astype(np.float32), raw["y_test"].astype(np.int64))
    runs = {row: {"gpunn": [], "torch": []} for row in args.rows}
    for row in args.rows:  # first calls (imports, allocator, thread pools) are not timed
        run_gpunn(row, 0, data, 2 * len(data[0]) // args.batch, args.batch, args.lr)
        run_torch(row, 0, data, 2 * len(data[0]) // args.batch, args.batch, args.lr)
    load_before = [round(v, 2) for v in os.getloadavg()]
    turn = 0
    for seed in args.seeds:
        for row in args.rows:
            order = [("gpunn", run_gpunn), ("torch", run_torch)]
            for lib, fn in order if turn % 2 == 0 else order[::-1]:
                r = fn(row, seed, data, args.steps, args.batch, args.lr)
                runs[row][lib].append(r)
                print(f"seed {seed} {row:8s} {lib:5s} accuracy {r['accuracy']:.3f} "
                      f"train {r['train_s']:.2f} s", flush=True)
            turn += 1
    table = {}
    for row in args.rows:
        g = [r["accuracy"] for r in runs[row]["gpunn"]]
        t = [r["accuracy"] for r in runs[row]["torch"]]
        gs = statistics.median(r["train_s"] for r in runs[row]["gpunn"])
        ts = statistics.median(r["train_s"] for r in runs[row]["torch"])
        table[row] = {"gpunn": g, "torch": t, "gpunn_mean": statistics.fmean(g),
                      "gpunn_sd": statistics.pstdev(g), "torch_mean": statistics.fmean(t),
                      "torch_sd": statistics.pstdev(t), "gpunn_s": gs, "torch_s": ts,
                      "speed": ts / gs, "paper": PAPER[row]}
    results = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(
        ["python bench/mnist1d_table.py"] + (argv if argv is not None else sys.argv[1:])),
        "steps": args.steps, "batch": args.batch, "lr": args.lr, "seeds": args.seeds,
        "rows": args.rows, "table": table, "runs": runs, "environment": environment(),
        "load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()]}
    text = markdown(results)
    print(text)
    if args.out:
        with open(args.out + ".json", "w") as f:
            json.dump(results, f, indent=1)
        with open(args.out + ".md", "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
