"""Activation codes shared by the CUDA source and its launchers.

Must match the ``GPUNN_*`` defines in ``kernels/gpunn_kernels.cu`` (a test compares them).
Softmax is row-wise and has its own kernel, so it has no code here.
"""

ACTIVATION_CODES = {"identity": 0, "linear": 1, "sigmoid": 2, "tanh": 3, "binary_step": 4,
                    "relu": 5, "leaky_relu": 6, "elu": 7, "gelu": 8, "softplus": 9}
