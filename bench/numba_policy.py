"""Is the Numba fast path ever slower than NumPy? Three measurements, medians of
interleaved repeats:

1. The Adam update alone over each workload's flat buffer, in this process: NumPy's
   in-place passes, the serial Numba kernel and the parallel one (microseconds).
1b. The softmax cross-entropy head by number of classes: NumPy, the row-by-row kernel
   forced, and the default (the kernel up to ``numba_kernels.HEAD_MAX_CLASSES`` classes).
2. Milliseconds per step of ``fit`` per workload with ``GPUNN_NUMBA`` = 0 (NumPy), 1 (the
   default policy), serial and parallel, each in a fresh process (a parallel region's
   threads outlive it), rounds interleaved.

    python bench/numba_policy.py [rounds] [sizes]     # e.g. 5 micro,tiny,wide,medium

Prints the ratio of each to NumPy (> 1: slower than NumPy), the machine's load and the
BLAS kernel. The check the policy must pass: the default at or below 1.0 at every size
(on a loaded machine the fit times swing several-fold; the kernel table is the steadier
signal).
"""

import functools
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = {"micro": ([2, 16, 16, 2], 32, 200), "tiny": ([784, 128, 10], 64, 60),
         "wide": ([784, 256, 10], 4096, 3), "medium": ([784, 1024, 1024, 10], 512, 6),
         "large": ([2048, 2048, 2048, 2048], 1024, 3)}
MODES = ("0", "1", "serial", "parallel")

# A fresh process per measurement (a parallel region's threads outlive it), timing fit as
# bench/fit_steps.py does.
CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
from fit_steps import ms_per_step
widths, batch, steps = json.loads(sys.argv[1])
print(ms_per_step(widths, batch, batch * steps))
"""


def _params(widths) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def _interleaved_us(calls: dict, repeats: int, loops: int) -> dict:
    """Median microseconds per call of each callable, ``loops`` calls a sample after one
    untimed call, the order reversed every other repeat."""
    times = {k: [] for k in calls}
    for r in range(repeats):
        for name, call in (calls.items() if r % 2 == 0 else list(calls.items())[::-1]):
            call()
            t0 = time.perf_counter()
            for _ in range(loops):
                call()
            times[name].append((time.perf_counter() - t0) / loops * 1e6)
    return {k: statistics.median(t) for k, t in times.items()}


def kernel_table(sizes, repeats: int = 15) -> None:
    """The Adam update alone per workload's parameter count: microseconds per call."""
    from types import SimpleNamespace

    import numpy as np

    from gpunn.backend import numba_kernels, numpy_kernels

    if not numba_kernels.enabled():
        print("Numba not installed: kernel table skipped")
        return
    hp = SimpleNamespace(one_minus_b1=0.1, one_minus_b2=0.001, eps_hat=1e-8, step_size=1e-3,
                         weight_decay=0.0, decay=1.0, decoupled=False, step=1)
    print("| size | params | NumPy us | Numba serial us | Numba parallel us | serial/NumPy "
          "| parallel/NumPy |")
    print("|---" * 7 + "|")
    for size in sizes:
        n = _params(SIZES[size][0])
        rng = np.random.default_rng(0)
        p, g, m, v = (rng.random(n, dtype=np.float32) for _ in range(4))
        scratch = functools.partial(lambda work, like: work, np.empty_like(p))
        calls = {"numpy": functools.partial(numpy_kernels.adam, p, g, m, v, hp, scratch),
                 "serial": functools.partial(numba_kernels.adam, p, g, m, v, hp, "serial"),
                 "parallel": functools.partial(numba_kernels.adam, p, g, m, v, hp,
                                               "parallel")}
        med = _interleaved_us(calls, repeats, max(1, 200_000 // n))
        print(f"| {size} | {n:,} | {med['numpy']:.1f} | {med['serial']:.1f} | "
              f"{med['parallel']:.1f} | {med['serial'] / med['numpy']:.2f} | "
              f"{med['parallel'] / med['numpy']:.2f} |")


def head_table(repeats: int = 15) -> None:
    """The softmax head from labels by classes and batch: microseconds per call."""
    import numpy as np

    from gpunn.backend import numba_kernels
    from gpunn.backend.numpy_backend import NumpyBackend

    if not numba_kernels.enabled():
        print("Numba not installed: head table skipped")
        return
    numpy_be, default_be = NumpyBackend(), NumpyBackend()
    numpy_be._numba, default_be._numba = "0", "1"
    kernel = numba_kernels._kernels()["softmax_xent"]
    print("| batch | classes | NumPy us | kernel us | default us | kernel/NumPy | "
          "default/NumPy |")
    print("|---" * 7 + "|")
    rng = np.random.default_rng(0)
    for n in (64, 512, 4096):
        for c in (2, 10, 24, 32, 64, 1000):
            z = rng.standard_normal((n, c)).astype(np.float32)
            t = rng.integers(0, c, n)
            prob, grad = np.empty_like(z), np.empty_like(z)
            calls = {"numpy": functools.partial(numpy_be.softmax_cross_entropy, z, t),
                     "kernel": functools.partial(kernel, z, t, prob, grad,
                                                 np.float32(1 / n)),
                     "default": functools.partial(default_be.softmax_cross_entropy, z, t)}
            med = _interleaved_us(calls, repeats, max(1, 100_000 // (n * c)))
            print(f"| {n} | {c} | {med['numpy']:.1f} | {med['kernel']:.1f} | "
                  f"{med['default']:.1f} | {med['kernel'] / med['numpy']:.2f} | "
                  f"{med['default'] / med['numpy']:.2f} |")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    sizes = sys.argv[2].split(",") if len(sys.argv) > 2 else ["micro", "tiny", "wide",
                                                               "medium"]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    kernel_table(sizes + ["large"] if "large" not in sizes else sizes)
    print()
    head_table()
    print()
    times = {(s, m): [] for s in sizes for m in MODES}
    for r in range(rounds):
        for size in sizes:
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                env = dict(os.environ, GPUNN_NUMBA=mode)
                out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(SIZES[size]),
                                      os.path.dirname(os.path.abspath(__file__))],
                                     env=env, check=True,
                                     capture_output=True, text=True).stdout
                times[size, mode].append(float(out.split()[-1]))
                print(f"round {r} {size} GPUNN_NUMBA={mode}: {times[size, mode][-1]:.3f} "
                      "ms/step", file=sys.stderr, flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; medians of {rounds} rounds, ms/step")
    print("| size | params | " + " | ".join(f"GPUNN_NUMBA={m}" for m in MODES)
          + " | default/NumPy |")
    print("|---" * (len(MODES) + 3) + "|")
    for size in sizes:
        params = _params(SIZES[size][0])
        med = {m: statistics.median(times[size, m]) for m in MODES}
        cells = " | ".join(f"{med[m]:.3f} ({med[m] / med['0']:.2f}x)" for m in MODES)
        print(f"| {size} | {params:,} | {cells} | {med['1'] / med['0']:.2f} |")
    try:
        import numpy  # noqa: F401  (loads its BLAS)
        from threadpoolctl import threadpool_info

        print("BLAS:", [(i["internal_api"], i["version"], i["architecture"], i["num_threads"])
                        for i in threadpool_info()])
    except ImportError:
        print("BLAS: threadpoolctl not installed")


if __name__ == "__main__":
    main()
