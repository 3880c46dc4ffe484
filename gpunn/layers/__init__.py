"""Layers: the contract (:mod:`.base`), ``Dense``, ``Dropout``, activation layers,
convolutions (``Conv1D``, ``Conv2D``), pooling, normalisation (``BatchNorm``,
``LayerNorm``), ``Embedding``, shape layers (``Flatten``, ``Reshape``) and blocks
(``Block``, ``Residual``). One file per kind of layer; a new one registers itself with
:func:`register` so model files can rebuild it."""

from .activation import (
    ELU,
    GELU,
    ActivationLayer,
    BinaryStep,
    Identity,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from .base import (
    ANY_SIZE,
    LAYERS,
    Layer,
    as_shape,
    is_any_size,
    layer_from_spec,
    positive_int,
    register,
)
from .blocks import Block, Residual
from .conv import Conv1D, Conv2D
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .normalization import BatchNorm, LayerNorm
from .pooling import AvgPool1D, AvgPool2D, GlobalAvgPool, MaxPool1D, MaxPool2D
from .shape import Flatten, Reshape

__all__ = ["Layer", "LAYERS", "register", "layer_from_spec", "positive_int", "as_shape",
           "ANY_SIZE", "is_any_size", "Dense", "Dropout", "Flatten", "Reshape", "Conv1D", "Conv2D",
           "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool",
           "BatchNorm", "LayerNorm", "Embedding",
           "ActivationLayer", "Identity", "Linear", "Sigmoid", "Tanh",
           "BinaryStep", "ReLU", "LeakyReLU", "Softmax", "ELU", "GELU", "Softplus",
           "Block", "Residual"]
