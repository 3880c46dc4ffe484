"""Cross-device training-throughput benchmark (``gpunn bench``, ``bench/bench.py``).

For each size and device it times full training steps (forward, loss, backward, Adam
update) three ways, on the same data and model:

- ``gpunn``: ``model.fit(...)`` exactly as users call it;
- ``reference``: a hand-written loop in plain NumPy/CuPy doing the same maths
  (the "no framework" baseline);
- ``torch``: PyTorch eager on the same device, when PyTorch is installed.

Sizes ``micro`` to ``large`` are dense networks; ``cnn`` (the MNIST-1D CNN: three strided
Conv1D layers and a softmax Dense) and ``lenet`` (a LeNet-5 on 28x28 images: Conv2D,
MaxPool2D, Dense) are convolutional networks (:data:`workloads.CONV_NETS`), timed for gpunn
and PyTorch in float32 and float16.

Numbers are medians over repeated epochs after a warm-up. A step costs about
``6 * batch * sum(in * out)`` FLOPs less ``2 * batch * in * out`` of the first layer,
whose input gradient nobody needs (a convolution: its patches by its weights); the
achieved rate is also given as a share of the device's matmul peak, measured in the same
run with a large square matmul.

``gpunn bench --agreement`` instead trains one float32 model on the CPU and on a GPU from
the same weights, saves each and loads it on the other device, and checks that weights
and predictions agree (:mod:`gpunn.bench.agreement`).
"""

from __future__ import annotations

from .command import build_parser, main, parse_precisions, run
from .impls import IMPLS
from .measure import measure
from .report import environment, markdown, plot
from .workloads import PRECISIONS, SIZES, Row, _Device, matmul_peak, needed_bytes, step_flops

__all__ = ["SIZES", "PRECISIONS", "IMPLS", "Row", "measure", "markdown", "plot",
           "environment", "needed_bytes", "step_flops", "matmul_peak", "parse_precisions",
           "build_parser", "run", "main", "_Device"]
