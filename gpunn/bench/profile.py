"""Per-step GPU profile for the benchmark: kernel launches and device time of one step.

- CuPy (gpunn and the hand-written loop): one training step is captured into a CUDA graph
  (``Stream.begin_capture`` / ``end_capture``, CuPy >= 14 for ``debug_dot_str``); the
  graph's kernel nodes are the step's launches, counted by CUDA itself, and replaying the
  graph times the step on the GPU with no host overhead. A step that synchronises with
  the host cannot be captured, nor one calling cuBLAS on CuPy 14 (which refuses it
  during a capture): then, where PyTorch is installed, its profiler counts the step
  as below (CUPTI sees CuPy's kernels too), else the reason is reported.
- PyTorch: ``torch.profiler`` over a few steps; its CUDA kernel events give the launches
  and their summed durations the device time.

Host time per step comes from the benchmark's own timing (thread CPU time), so the two
columns together tell whether a size is host-bound (host >= device) or device-bound.
"""

from __future__ import annotations

import re


def count_graph_kernels(dot: str) -> int:
    """Kernel nodes in a CUDA graph's DOT dump (``cudaGraphDebugDotPrint`` format).

    Each node's record label starts with its type (``KERNEL``, ``MEMCPY``, ``MEMSET``,
    ``EMPTY``, ``MEM_ALLOC``, ...); only kernels count as launches.
    """
    return len(re.findall(r'label="\{?\s*KERNEL\b', dot))


def cupy_step_profile(step, replays: int = 20, dot_path: str | None = None):
    """Launches and device milliseconds of one call of ``step`` on the current device.

    Parameters
    ----------
    step : callable
        Runs one training step with no host synchronisation.
    replays : int
        Graph replays timed with CUDA events.
    dot_path : str, optional
        Also write the graph's DOT dump here (to see what ran).

    Returns
    -------
    (launches, device_ms, note) : (int or None, float or None, str)
    """
    import cupy

    for _ in range(2):
        step()  # the pool now holds every block one step allocates: no cudaMalloc below
    cupy.cuda.Device().synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    try:
        with stream:
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()
    except Exception as exc:  # e.g. a host read inside the step
        return None, None, f"not capturable ({type(exc).__name__}: {exc})"
    launches, note = None, ""
    if hasattr(graph, "debug_dot_str"):
        dot = graph.debug_dot_str()
        launches = count_graph_kernels(dot)
        if dot_path:
            with open(dot_path, "w") as fh:
                fh.write(dot)
    else:
        note = f"CuPy {cupy.__version__} cannot dump graphs (needs >= 14)"
    graph.launch(stream)
    stream.synchronize()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record(stream)
    for _ in range(replays):
        graph.launch(stream)
    end.record(stream)
    end.synchronize()
    return launches, cupy.cuda.get_elapsed_time(start, end) / replays, note


def torch_step_profile(step, steps: int = 10):
    """Launches and summed kernel milliseconds per step, from ``torch.profiler``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events()
               if str(getattr(e, "device_type", "")).endswith("CUDA")
               and not e.name.startswith(("Memcpy", "Memset"))]
    if not kernels:
        return None, None, "the profiler saw no CUDA kernels"
    micros = sum(getattr(e, "device_time", None) or getattr(e, "cuda_time", 0.0)
                 for e in kernels)
    return len(kernels) / steps, micros / 1e3 / steps, ""


def _has_torch() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def profile_step(impl: str, make_step, dot_path: str | None = None):
    """Dispatch to the right profiler; never raises (a failure becomes the note)."""
    try:
        step = make_step()
        if impl == "torch":
            return torch_step_profile(step)
        launches, device_ms, note = cupy_step_profile(step, dot_path=dot_path)
        if launches is None and note.startswith("not capturable") and _has_torch():
            # CuPy 14 refuses cuBLAS calls inside a stream capture, so a step with a
            # matmul is never capturable there; PyTorch's profiler (CUPTI) sees every
            # kernel of the process, CuPy's included, and counts them the same way as
            # for PyTorch's own rows.
            launches, device_ms, why = torch_step_profile(step)
            note = why or "counted by torch.profiler: " + note
        return launches, device_ms, note
    except Exception as exc:
        return None, None, f"profile failed ({type(exc).__name__}: {exc})"
