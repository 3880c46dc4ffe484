"""A training step's matrix products alone, in NumPy (its BLAS), JAX (XLA, jit) and PyTorch
(MKL), interleaved in one process: whether a library's step is faster than gpunn's because
of its products or because of the work between them.

The products of one step of a dense workload of ``gpunn bench``: ``x @ W`` and ``x.T @ g``
for every layer, ``g @ W.T`` for every layer but the first (nobody needs the gradient of
the data). Libraries not installed are left out.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/step_products.py --size medium
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from gpunn.bench.workloads import SIZES


def _operands(widths, batch):
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((batch, a)).astype(np.float32),
             rng.standard_normal((a, b)).astype(np.float32),
             rng.standard_normal((batch, b)).astype(np.float32))
            for a, b in zip(widths[:-1], widths[1:])]


def _products(data):
    out = []
    for i, (x, W, g) in enumerate(data):
        out += [x @ W, x.T @ g]
        if i:
            out.append(g @ W.T)
    return out


def _steps(data) -> dict:
    """Library name -> a callable running the products once and waiting for them."""
    steps = {"numpy": lambda: _products(data)}
    try:
        import jax
        import jax.numpy as jnp

        jd = [tuple(jnp.asarray(a) for a in t) for t in data]
        compiled = jax.jit(_products)
        steps["jax"] = lambda: jax.block_until_ready(compiled(jd))
    except ImportError:
        pass
    try:
        import torch

        td = [tuple(torch.from_numpy(a) for a in t) for t in data]
        steps["torch"] = lambda: _products(td)
    except ImportError:
        pass
    return steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="medium", help="a dense size of gpunn bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    widths, batch = SIZES[args.size]["cpu"]
    steps = _steps(_operands(widths, batch))
    for step in steps.values():
        step()
    print(f"{args.size} {'-'.join(map(str, widths))} / {batch}: the step's products alone, "
          f"median ms of {args.repeats} per round")
    for r in range(args.rounds):
        times = {}
        for name, step in steps.items():
            samples = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                step()
                samples.append(time.perf_counter() - t0)
            times[name] = statistics.median(samples) * 1e3
        print(f"  round {r + 1}: " + "  ".join(f"{k} {v:.2f}" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
