"""Milliseconds per training step of ``Sequential.fit`` on the CPU, for three workloads.

Prints one JSON line: ``{"micro": ms, "tiny": ms, "medium": ms, "wide": ms}`` (best of
three timed epochs after a warm-up epoch; 2-16-16-2 at batch 32, 784-128-10 at 64,
784-1024-1024-10 at 512, 784-256-10 at 4096; Adam, softmax cross-entropy). Used to compare
two checkouts side by side:

    bash bench/compare_checkouts.sh OLD_DIR NEW_DIR 10
"""

import json
import time

import numpy as np

import gpunn as gn

WORKLOADS = [("micro", [2, 16, 16, 2], 32, 32 * 400),
             ("tiny", [784, 128, 10], 64, 64 * 150),
             ("medium", [784, 1024, 1024, 10], 512, 512 * 8),
             ("wide", [784, 256, 10], 4096, 4096 * 6)]


def ms_per_step(widths, batch, rows) -> float:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], rows)
    arch = [{"input_dim": a, "output_dim": b, "activation": "relu"}
            for a, b in zip(widths[:-2], widths[1:-1])]
    arch.append({"input_dim": widths[-2], "output_dim": widths[-1], "activation": "softmax"})
    model = gn.Sequential.from_architecture(arch, device="cpu", seed=0)
    opt = gn.optim.Adam(lr=1e-3)
    kwargs = dict(loss="cross_entropy", optimizer=opt, epochs=1, batch_size=batch, verbose=0)
    model.fit(X, y, **kwargs)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.fit(X, y, **kwargs)
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times) / (rows // batch)


if __name__ == "__main__":
    print(json.dumps({name: ms_per_step(w, b, r) for name, w, b, r in WORKLOADS}))
