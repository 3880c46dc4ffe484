"""gpunn: neural networks written once, trained on NumPy (CPU) or CuPy (CUDA GPU).

Importing gpunn never imports CuPy; the device is detected when a backend is first asked
for (``device="auto"``, the default).
"""

from . import activations, callbacks, data, init, losses, metrics, optim, preprocessing, training
from .backend import Backend, available_devices, from_dlpack, get_backend, to_numpy
from .callbacks import History
from .errors import (
    DeviceFallbackWarning,
    DeviceMemoryError,
    DeviceUnavailableError,
    GpunnError,
    RanksDisagree,
    TrainingDiverged,
)
from .files import ModelFileError, load
from .gradcheck import GradcheckResult, gradcheck
from .layers import (
    ELU,
    GELU,
    ActivationLayer,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    BinaryStep,
    Block,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAvgPool,
    Identity,
    Layer,
    LayerNorm,
    LeakyReLU,
    Linear,
    MaxPool1D,
    MaxPool2D,
    ReLU,
    Reshape,
    Residual,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from .layers import register as register_layer
from .model import Sequential
from .precision import get_precision, set_precision

__version__ = "0.1.0"

__all__ = [
    "Backend", "get_backend", "available_devices", "to_numpy", "from_dlpack",
    "GpunnError", "DeviceUnavailableError", "DeviceFallbackWarning", "TrainingDiverged",
    "DeviceMemoryError", "RanksDisagree",
    "Layer", "Dense", "Dropout", "ActivationLayer", "Identity", "Linear", "Sigmoid", "Tanh",
    "BinaryStep", "ReLU", "LeakyReLU", "Softmax", "ELU", "GELU", "Softplus",
    "Block", "Residual", "register_layer", "Flatten", "Reshape",
    "Conv1D", "Conv2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool",
    "BatchNorm", "LayerNorm", "Embedding",
    "Sequential", "History", "gradcheck", "GradcheckResult", "set_precision",
    "get_precision",
    "load", "ModelFileError", "callbacks", "preprocessing",
    "activations", "data", "files", "init", "losses", "metrics", "optim", "training",
]
