"""Layers: the contract (:mod:`.base`), ``Dense``, ``Dropout``, activation layers and
blocks (``Block``, ``Residual``). One file per kind of layer; a new one registers itself
with :func:`register` so model files can rebuild it."""

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
from .base import LAYERS, Layer, as_shape, layer_from_spec, positive_int, register
from .blocks import Block, Residual
from .dense import Dense
from .dropout import Dropout

__all__ = ["Layer", "LAYERS", "register", "layer_from_spec", "positive_int", "as_shape",
           "Dense", "Dropout", "ActivationLayer", "Identity", "Linear", "Sigmoid", "Tanh",
           "BinaryStep", "ReLU", "LeakyReLU", "Softmax", "ELU", "GELU", "Softplus",
           "Block", "Residual"]
