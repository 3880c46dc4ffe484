"""Timing: implementations interleaved on one device, then memory and the GPU profile."""

from __future__ import annotations

import os
import statistics
import time
import tracemalloc

import numpy as np

from .impls import factory
from .workloads import (
    PRECISIONS,
    SIZES,
    LoadMeter,
    Row,
    shapes_peak,
    step_matmuls,
    workload_bytes,
    workload_flops,
)


def measure(dev, impls: list, size: str, repeats: int, target_s: float,
            precision: str = "fp32", pause: float = 0.0, profile_dir: str | None = None,
            max_load: float = 10.0) -> list[Row]:
    """Time several implementations of one size on one device, repeats interleaved.

    Interleaving (a, b, c, a, b, c, ...) exposes every implementation to the same
    background load on a shared machine, so their ratios stay meaningful. All run the same
    number of steps per epoch, calibrated on the first implementation. Each sample is the
    second of two back-to-back epochs (the first pays for page faults and caches); a
    sample during which other processes used more than ``max_load`` percent of the CPU is
    taken again (up to three times) and the load is recorded in the row.
    """
    widths, batch = SIZES[size][dev.kind]
    dtype, label = PRECISIONS[precision]
    rng = np.random.default_rng(0)
    makers = {i: factory(i, size) for i in impls}
    impls, steps = _calibrate(dev, makers, widths, batch, dtype, target_s, rng)
    if not impls:
        return []
    n_rows = batch * steps
    X = rng.standard_normal((n_rows, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], n_rows).astype(np.int64)
    epochs = {i: makers[i](dev, widths, X, y, batch, dtype) for i in impls}
    for epoch in epochs.values():
        epoch(n_rows)  # warm-up at full size
    walls, hosts, loads = ({i: [] for i in impls} for _ in range(3))
    for r in range(repeats):
        for impl in (impls if r % 2 == 0 else impls[::-1]):  # each follows a different one
            wall, host, load = _sample(dev, epochs[impl], n_rows, pause, max_load)
            walls[impl].append(wall)
            hosts[impl].append(host)
            loads[impl].append(load)
    profiles = {}
    if dev.kind == "cuda":
        from .profile import profile_step

        for impl in impls:
            dot = (os.path.join(profile_dir, f"{size}-{impl}-{precision}.dot")
                   if profile_dir and impl not in ("torch", "jax") else None)
            profiles[impl] = profile_step(impl, epochs[impl].make_step, dot) \
                if hasattr(epochs[impl], "make_step") else (None, None, "")
    del epochs
    peak = shapes_peak(dev, widths, batch, dtype, step_matmuls(size, widths, batch))
    flops = workload_flops(size, widths, batch)
    floor_ms = flops / (peak * 1e12) * 1e3  # the step's products alone, same BLAS, this run
    rows = []
    for impl in impls:
        wall = statistics.median(walls[impl]) / steps
        host = statistics.median(hosts[impl]) / steps
        mem, data = _peak_memory(dev, impl, makers[impl], widths, X, y, batch, dtype)
        tflops = flops / wall / 1e12
        launches, device_ms, note = profiles.get(impl, (None, None, ""))
        rows.append(Row(size, dev.name, impl, label, list(widths), batch, steps, wall * 1e3,
                        batch / wall, host * 1e3, tflops, min(100.0, 100.0 * tflops / peak),
                        mem, data, workload_bytes(size, widths, batch) / 2**20, device_ms, launches,
                        note, peak, max(loads[impl]), floor_ms))
    return rows


def _sample(dev, epoch, n_rows, pause, max_load):
    """Wall and host (this thread's CPU) seconds of the second of two back-to-back
    epochs (for gpunn, the second epoch of one ``fit(epochs=2)``), and the other
    processes' share of the CPU meanwhile (percent)."""
    for _ in range(3):
        if pause:
            time.sleep(pause)
        inner = getattr(epoch, "inner", None)  # gpunn: timed inside one fit call
        if inner is None:
            epoch(n_rows)
        dev.sync()
        with LoadMeter() as meter:
            if inner is not None:
                wall, host = inner(n_rows)
            else:
                t0, h0 = time.perf_counter(), time.thread_time()
                epoch(n_rows)
                host = time.thread_time() - h0
                dev.sync()
                wall = time.perf_counter() - t0
        if meter.other_pct <= max_load:
            break
    return wall, host, meter.other_pct


def _calibrate(dev, makers, widths, batch, dtype, target_s, rng):
    """The implementations (of ``makers``: name -> builder) that run this dtype and
    workload, and the steps per timed epoch that make it last about ``target_s`` (probed
    on the first implementation)."""
    probe_steps = 3
    X = rng.standard_normal((batch * probe_steps, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], batch * probe_steps).astype(np.int64)
    impls = [i for i, make in makers.items()
             if make(dev, widths, X, y, batch, dtype) is not None]
    if not impls:
        return [], 0
    probe = makers[impls[0]](dev, widths, X, y, batch, dtype)
    probe(batch * probe_steps)  # warm-up: allocations, kernel compilation, BLAS threads
    dev.sync()
    t0 = time.perf_counter()
    probe(batch * probe_steps)
    dev.sync()
    per_step = (time.perf_counter() - t0) / probe_steps
    return impls, int(min(500, max(3, target_s / max(per_step, 1e-6))))


def _peak_memory(dev, impl, make, widths, X, y, batch, dtype) -> tuple[float | None,
                                                                      float]:
    """Peak memory (MiB) of building an implementation and running one epoch, and how
    much of it is the dataset: CPU: none (tracemalloc sees only allocations made inside
    the window; the float32 input is not copied and every implementation gathers its
    batches); GPU: the dataset's copy on the device."""
    data_bytes = X.nbytes + y.nbytes
    n_rows = X.shape[0]
    if dev.kind == "cpu":
        if impl in ("torch", "jax", "keras"):
            return None, 0.0  # their allocators are invisible to tracemalloc
        tracemalloc.start()
        make(dev, widths, X, y, batch, dtype)(n_rows)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / 2**20, 0.0
    if impl in ("jax", "keras"):
        return None, 0.0
    if impl == "torch":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        make(dev, widths, X, y, batch, dtype)(n_rows)
        return torch.cuda.max_memory_allocated() / 2**20, data_bytes / 2**20
    # A pool of its own for this implementation: the default pool also holds what is
    # still alive from the other implementations of the row and from the matmul peaks,
    # so its size says nothing about this one. A pool keeps every block it was given and
    # reuses freed ones, so its size at the end is this implementation's peak (rounded
    # up to CuPy's 512-byte blocks).
    cupy = dev.xp
    pool = cupy.cuda.MemoryPool()
    dev.sync()
    previous = cupy.cuda.get_allocator()
    cupy.cuda.set_allocator(pool.malloc)
    try:
        make(dev, widths, X, y, batch, dtype)(n_rows)
        dev.sync()
    finally:
        cupy.cuda.set_allocator(previous)
    return pool.total_bytes() / 2**20, data_bytes / 2**20


# ---------------------------------------------------------------------- reporting
