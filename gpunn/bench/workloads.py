"""Benchmark workloads: sizes, precisions, FLOP and memory accounting, devices, the matmul
peak measured in the same run, and the :class:`Row` every measurement becomes."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

SIZES = {
    # name: {device kind: (layer widths, batch size)}
    "micro": {"cpu": ([2, 16, 16, 2], 32), "cuda": ([2, 16, 16, 2], 32)},
    "tiny": {"cpu": ([784, 128, 10], 64), "cuda": ([784, 128, 10], 64)},
    "wide": {"cpu": ([784, 256, 10], 4096), "cuda": ([784, 256, 10], 4096)},
    "medium": {"cpu": ([784, 1024, 1024, 10], 512), "cuda": ([784, 1024, 1024, 10], 512)},
    "large": {"cpu": ([2048, 2048, 2048, 2048], 1024),
              "cuda": ([4096, 4096, 4096, 4096, 4096], 4096)},
}
LR = 1e-3


@dataclass(frozen=True)
class ConvNet:
    """A convolutional network of the benchmark, described once and built by each
    implementation (gpunn, PyTorch) from this description.

    Inputs are flat rows ``(batch, prod(input_shape))``, reshaped to ``input_shape``
    (channels first, one or two spatial axes), then ``layers`` in order:
    ``("conv", out_channels, kernel, stride, padding)`` a ReLU convolution,
    ``("maxpool", kernel)`` max pooling with the kernel as stride,
    ``("dense", out_features)`` a ReLU dense layer (the input flattened before the first),
    and a softmax dense layer to ``classes`` at the end.
    """

    input_shape: tuple
    layers: tuple
    classes: int

    def walk(self):
        """``(spec, input shape, output shape)`` per layer, the softmax layer last; shapes
        without the batch axis."""
        shape = tuple(self.input_shape)
        for spec in self.layers + (("dense", self.classes),):
            if spec[0] == "conv":
                _, c, k, s, p = spec
                out = (c,) + tuple((d + 2 * p - k) // s + 1 for d in shape[1:])
            elif spec[0] == "maxpool":
                out = shape[:1] + tuple((d - spec[1]) // spec[1] + 1 for d in shape[1:])
            else:
                out = (spec[1],)
            yield spec, shape, out
            shape = out

    @property
    def widths(self) -> list:
        """Input features, each layer's channels or features, classes: the row label."""
        return [_prod(self.input_shape)] + [out[0] for spec, _, out in self.walk()
                                            if spec[0] != "maxpool"]

    def matmuls(self, batch: int) -> list:
        """``(rows, inner, cols)`` of each layer's forward product: a convolution's is
        its patches ``(batch * positions, in_channels * K)`` by its weights."""
        mats = []
        for spec, shape, out in self.walk():
            if spec[0] == "conv":
                k = spec[2] ** (len(shape) - 1)
                mats.append((batch * _prod(out[1:]), shape[0] * k, out[0]))
            elif spec[0] == "dense":
                mats.append((batch, _prod(shape), out[0]))
        return mats

    def needed_bytes(self, batch: int, itemsize: int = 4) -> int:
        """Parameters, gradients, two Adam moments, the input and each layer's output
        (twice: the value and its gradient) and each convolution's patches."""
        params = sum(inner * cols + cols for _, inner, cols in self.matmuls(1))
        values = _prod(self.input_shape) + sum(_prod(out) for _, _, out in self.walk())
        convs = [spec[0] == "conv" for spec, _, _ in self.walk() if spec[0] != "maxpool"]
        patches = sum(rows * inner for (rows, inner, _), conv in zip(self.matmuls(1), convs)
                      if conv)
        return (4 * params + batch * (2 * values + patches)) * itemsize


def _prod(sizes) -> int:
    total = 1
    for d in sizes:
        total *= int(d)
    return total


#: The convolutional workloads, by size name: the MNIST-1D CNN (flat rows of 40 values)
#: and a LeNet-5-style network on 28x28 images (2-D patches and max pooling).
CONV_NETS = {
    "cnn": ConvNet((1, 40), (("conv", 25, 5, 2, 1), ("conv", 25, 3, 2, 1),
                             ("conv", 25, 3, 2, 1)), 10),
    "lenet": ConvNet((1, 28, 28), (("conv", 6, 5, 1, 2), ("maxpool", 2),
                                   ("conv", 16, 5, 1, 0), ("maxpool", 2), ("dense", 120),
                                   ("dense", 84)), 10),
}
SIZES.update({name: {"cpu": (net.widths, 256), "cuda": (net.widths, 512)}
              for name, net in CONV_NETS.items()})


def step_matmuls(size: str, widths, batch: int) -> list:
    """``(rows, inner, cols)`` of the forward products of one step of workload ``size``
    (a dense network of ``widths``, or a :data:`CONV_NETS` network)."""
    net = CONV_NETS.get(size)
    if net is not None:
        return net.matmuls(batch)
    return [(batch, a, b) for a, b in zip(widths[:-1], widths[1:])]


def workload_flops(size: str, widths, batch: int) -> float:
    """FLOPs of one training step of workload ``size`` (:func:`products_flops` of its
    :func:`step_matmuls`)."""
    return products_flops(step_matmuls(size, widths, batch))


def workload_bytes(size: str, widths, batch: int) -> int:
    """What training workload ``size`` strictly needs (:func:`needed_bytes` for a dense
    network)."""
    net = CONV_NETS.get(size)
    return net.needed_bytes(batch) if net is not None else needed_bytes(widths, batch)


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
    #: The matmul peak for this workload's own shapes (TFLOP/s), and the largest share of
    #: the CPU other processes used during this row's timed epochs (percent).
    peak_tflops: float = 0.0
    other_load_pct: float = 0.0
    #: The GEMM floor: milliseconds of this step's matrix products alone (forward and
    #: both backward products of every layer at the workload's shapes), timed with the
    #: same BLAS in the same run (the best of repeated rounds; :func:`shapes_peak`).
    gemm_floor_ms: float | None = None

    @property
    def over_gemm_floor(self) -> float | None:
        """The step's time over its GEMM floor (1.0: nothing but the products)."""
        if not self.gemm_floor_ms:
            return None
        return self.ms_per_step / self.gemm_floor_ms

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


def products_flops(mats) -> float:
    """FLOPs of a training step's products, ``mats`` listing ``(rows, inner, cols)`` per
    layer: 2 per multiply-add forward, 2 for the weight gradient, 2 for the input
    gradient, except the first layer's: nothing asks for the gradient of the data
    (gpunn, PyTorch and JAX all skip it), so neither its time nor its FLOPs count."""
    macs = [r * k * c for r, k, c in mats]
    return 6.0 * sum(macs) - (2.0 * macs[0] if macs else 0.0)


def step_flops(widths, batch: int) -> float:
    """FLOPs of one training step of a dense network (:func:`products_flops`)."""
    return products_flops([(batch, a, b) for a, b in zip(widths[:-1], widths[1:])])


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


def shapes_peak(dev: _Device, widths, batch: int, dtype: str = "float32",
                mats: list | None = None) -> float:
    """TFLOP/s of exactly the matmuls one training step does (forward ``x @ W``, backward
    ``x.T @ g`` and ``g @ W.T`` per layer), best of several rounds: the peak to compare
    a workload with, so a share of it can never exceed 100%.

    ``mats`` lists ``(rows, inner, cols)`` per layer (:func:`step_matmuls`); default the
    dense network of ``widths`` at ``batch`` rows."""
    xp = dev.xp
    if dtype == "bfloat16":
        import ml_dtypes

        dtype = ml_dtypes.bfloat16
    rng = np.random.default_rng(0)
    if mats is None:
        mats = [(batch, a, b) for a, b in zip(widths[:-1], widths[1:])]
    flops = products_flops(mats)
    arrays = []
    for rows, a, b in mats:
        x = xp.asarray(rng.standard_normal((rows, a)), dtype=dtype)
        W = xp.asarray(rng.standard_normal((a, b)), dtype=dtype)
        g = xp.asarray(rng.standard_normal((rows, b)), dtype=dtype)
        arrays.append((x, W, g))

    def once():
        for i, (x, W, g) in enumerate(arrays):
            xp.matmul(x, W)
            xp.matmul(x.T, g)
            if i:  # the first layer's input gradient is never needed
                xp.matmul(g, W.T)

    once()
    best, deadline = float("inf"), time.perf_counter() + 0.5
    while time.perf_counter() < deadline or best == float("inf"):
        dev.sync()
        t0 = time.perf_counter()
        once()
        dev.sync()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e12


class LoadMeter:
    """The share of the machine's CPU time used by other processes during a window, from
    /proc/stat and this process's own CPU time (Linux; 0 elsewhere)."""

    def __enter__(self):
        self._busy0, self._all0 = _proc_stat()
        self._own0 = sum(os.times()[:4])
        return self

    def __exit__(self, *exc):
        busy, total = _proc_stat()
        own = sum(os.times()[:4]) - self._own0
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        span = (total - self._all0) / ticks
        others = (busy - self._busy0) / ticks - own
        self.other_pct = max(0.0, 100.0 * others / span) if span > 0 else 0.0
        return False


def _proc_stat() -> tuple[float, float]:
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def blas_report() -> list[dict]:
    """Each BLAS/OpenMP library loaded in this process, its version, threads and the
    kernel it picked (threadpoolctl), plus the OpenBLAS variables that change the kernel."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed: BLAS kernels not reported"}]
    keys = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture")
    info = [{k: lib.get(k) for k in keys} for lib in threadpool_info()]
    if "torch" in sys.modules:  # its BLAS/oneDNN is linked in, invisible to threadpoolctl
        torch = sys.modules["torch"]
        info.append({"internal_api": "torch", "version": torch.__version__,
                     "num_threads": torch.get_num_threads(),
                     "architecture": f"MKL {torch.backends.mkl.is_available()}, oneDNN "
                                     f"{torch.backends.mkldnn.is_available()}"})
    if "jax" in sys.modules:
        info.append({"internal_api": "jax", "version": sys.modules["jax"].__version__,
                     "architecture": "XLA's own CPU kernels (Eigen/oneDNN), no system BLAS"})
    env = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                   "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    return info + [{"environment": env}]


# ---------------------------------------------------------------------- implementations


PRECISIONS = {"fp32": ("float32", "float32"), "tf32": ("float32", "tf32"),
              "fp16": ("float16", "float16"), "bf16": ("bfloat16", "bfloat16")}
_ALIASES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
