"""Networks as lists of layer dicts (gpunn.architecture): the typed form
``{"type": ..., **arguments}`` builds every layer type as its constructor would, blocks
nest, the classic dense form still works beside it, and mistakes name the entry."""

from __future__ import annotations

import numpy as np
import pytest

import gpunn as gn
from gpunn.architecture import layers_from_architecture

# (typed dict, the same layer built directly, a per-sample input shape it takes)
CASES = [
    ({"type": "conv1d", "in_channels": 1, "out_channels": 25, "kernel_size": 5, "stride": 2,
      "padding": 1, "activation": "relu"},
     lambda: gn.Conv1D(1, 25, 5, stride=2, padding=1, activation="relu"), (1, 40)),
    ({"type": "Conv2D", "in_channels": 2, "out_channels": 4, "kernel_size": [3, 2],
      "padding": 1}, lambda: gn.Conv2D(2, 4, (3, 2), padding=1), (2, 6, 5)),
    ({"type": "maxpool1d", "kernel_size": 2}, lambda: gn.MaxPool1D(2), (3, 8)),
    ({"type": "MaxPool2D", "kernel_size": 2, "stride": 1}, lambda: gn.MaxPool2D(2, stride=1),
     (3, 5, 5)),
    ({"type": "avgpool1d", "kernel_size": 3}, lambda: gn.AvgPool1D(3), (2, 9)),
    ({"type": "avgpool2d", "kernel_size": [2, 2]}, lambda: gn.AvgPool2D(2), (2, 4, 6)),
    ({"type": "globalavgpool"}, lambda: gn.GlobalAvgPool(), (3, 4, 4)),
    ({"type": "batchnorm", "num_features": 3}, lambda: gn.BatchNorm(3), (3, 4)),
    ({"type": "layernorm", "normalized_shape": 6}, lambda: gn.LayerNorm(6), (6,)),
    ({"type": "flatten"}, lambda: gn.Flatten(), (2, 3, 4)),
    ({"type": "reshape", "shape": [1, 40]}, lambda: gn.Reshape((1, 40)), (40,)),
    ({"type": "dense", "in_features": 4, "out_features": 3, "activation": "tanh"},
     lambda: gn.Dense(4, 3, activation="tanh"), (4,)),
    ({"type": "Dense", "input_dim": 4, "output_dim": 3, "kernel_l2": 0.01},
     lambda: gn.Dense(4, 3, kernel_l2=0.01), (4,)),
    ({"type": "dropout", "p": 0.3}, lambda: gn.Dropout(0.3), (5,)),
    ({"type": "relu"}, lambda: gn.ReLU(), (5,)),
    ({"type": "LeakyReLU", "alpha": 0.2}, lambda: gn.LeakyReLU(alpha=0.2), (5,)),
    ({"type": "activation", "activation": "softmax"}, lambda: gn.Softmax(), (5,)),
    ({"type": "residual", "layers": [{"type": "dense", "in_features": 5, "out_features": 5,
                                      "activation": "relu"}]},
     lambda: gn.Residual([gn.Dense(5, 5, activation="relu")]), (5,)),
    ({"type": "block", "layers": [{"input_dim": 5, "output_dim": 2}]},
     lambda: gn.layers.Block([gn.Dense(5, 2)]), (5,)),
    ({"type": "sequential", "layers": [{"type": "tanh"}]},
     lambda: gn.layers.Block([gn.Tanh()]), (5,)),
]


def _run(layer, shape):
    """The layer built on a fresh seeded backend, applied to a fixed batch of ``shape``."""
    backend = gn.get_backend("cpu", dtype="float64", seed=0)
    layer.build(backend, shape)
    x = np.random.default_rng(1).normal(size=(3, *shape))
    return np.asarray(layer.forward(backend.asarray(x)))


@pytest.mark.parametrize("spec,direct,shape", CASES, ids=[c[0]["type"] for c in CASES])
def test_every_layer_type_builds_as_its_constructor(spec, direct, shape):
    built = layers_from_architecture([spec])
    assert len(built) == 1 and type(built[0]) is type(direct()) or \
        isinstance(built[0], gn.layers.ActivationLayer)
    assert built[0].get_config() == direct().get_config()
    ours = _run(built[0], shape)
    theirs = _run(direct(), shape)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs)  # same seed, same layers: same weights


def test_embedding_from_a_dict():
    built = layers_from_architecture([{"type": "embedding", "num_embeddings": 10,
                                       "embedding_dim": 4}])
    model = gn.Sequential(built, device="cpu")
    assert model.predict(np.array([[1, 2, 3]])).shape == (1, 3, 4)


def test_forms_mix_and_blocks_nest():
    arch = [{"input_dim": 40, "output_dim": 16, "activation": "relu", "dropout": 0.1},
            {"type": "residual", "layers": [
                {"type": "residual", "layers": [{"type": "dense", "in_features": 16,
                                                 "out_features": 16, "activation": "relu"}]},
                {"input_dim": 16, "output_dim": 16}]},
            {"type": "dense", "input_dim": 16, "output_dim": 10, "activation": "softmax"}]
    model = gn.Sequential.from_architecture(arch, device="cpu", seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "Dropout", "Residual", "Dense"]
    assert isinstance(model.layers[2].layers[0], gn.Residual)
    assert model.predict(np.zeros((2, 40), np.float32)).shape == (2, 10)


def test_the_paper_cnn_from_dicts():
    arch = [{"type": "reshape", "shape": [1, 40]}] + [
        {"type": "conv1d", "in_channels": c, "out_channels": 25, "kernel_size": k,
         "stride": 2, "padding": 1, "activation": "relu"} for c, k in ((1, 5), (25, 3), (25, 3))
    ] + [{"type": "flatten"}, {"type": "dense", "in_features": 125, "out_features": 10,
                               "activation": "softmax"}]
    model = gn.Sequential.from_architecture(arch, device="cpu")
    assert model.output_shape((40,)) == (10,)
    assert model.layers[3].output_shape((25, 10)) == (25, 5)


def test_a_registered_user_layer_by_name():
    @gn.register_layer(name="Scale3")
    class Scale3(gn.layers.Layer):
        def __init__(self, factor: float = 3.0, name=None):
            super().__init__(name)
            self.factor = factor

        def forward(self, x, training=False):
            return x * self.factor

        def backward(self, grad_out):
            return grad_out * self.factor

        def get_config(self):
            return {"factor": self.factor}

    try:
        model = gn.Sequential.from_architecture(
            [{"type": "scale3", "factor": 2.0}, {"input_dim": 2, "output_dim": 1}],
            device="cpu")
        assert isinstance(model.layers[0], Scale3) and model.layers[0].factor == 2.0
        with pytest.raises(ValueError, match=r"architecture\[0\] \(scale3\): unknown key"
                                             r"\(s\) \['scale'\]; expected \[\] and "
                                             r"optionally \['factor', 'name'\]"):
            layers_from_architecture([{"type": "scale3", "scale": 2.0}])
    finally:
        gn.layers.LAYERS.pop("Scale3")


@pytest.mark.parametrize("arch,error,match", [
    ([{"type": "conv9d"}], ValueError,
     r"architecture\[0\]: unknown layer type 'conv9d'; known \(any case\): .*Conv1D.*"
     r"Residual.*or an activation \(.*relu"),
    ([{"type": 3}], TypeError, r"architecture\[0\]: 'type' must be a layer type name"),
    ([{"type": "conv1d", "in_channels": 1, "kernel_size": 3}], ValueError,
     r"architecture\[0\] \(conv1d\): missing key\(s\) \['out_channels'\]; expected "
     r"\['in_channels', 'out_channels', 'kernel_size'\]"),
    ([{"type": "maxpool2d", "kernel_size": 2, "strides": 2}], ValueError,
     r"architecture\[0\] \(maxpool2d\): unknown key\(s\) \['strides'\]; expected "
     r"\['kernel_size'\] and optionally \['stride', 'name'\]"),
    ([{"type": "relu"}, {"type": "residual", "layers": [
        {"type": "conv1d", "in_channels": 1, "out_channels": 2, "kernel_size": 0}]}],
     ValueError, r"architecture\[1\]\.layers\[0\] \(conv1d\): Conv1D kernel_size: expected "
                 r"a positive integer, got 0"),
    ([{"type": "residual", "layers": [{"type": "block", "layers": [{"output_dim": 3}]}]}],
     ValueError, r"architecture\[0\]\.layers\[0\]\.layers\[0\]: missing key\(s\) "
                 r"\['input_dim'\]"),
    ([{"type": "residual", "layers": []}], ValueError,
     r"architecture\[0\]\.layers: expected a non-empty list of dicts, got"),
    ([{"type": "residual"}], ValueError,
     r"architecture\[0\] \(residual\): missing key\(s\) \['layers'\]"),
    ([{"type": "residual", "layers": [{"input_dim": 4, "output_dim": 3}]}], ValueError,
     r"architecture\[0\] \(residual\): .*must keep the shape of its input"),
    ([{"type": "dense", "in_features": 4, "input_dim": 4, "out_features": 2}], ValueError,
     r"architecture\[0\] \(dense\): give 'in_features' or its alias 'input_dim', not both"),
    ([{"type": "dense", "in_features": 4, "out_features": 2, "activation": "swish"}],
     ValueError, r"architecture\[0\] \(dense\): unknown activation 'swish'"),
    ([{"type": "reshape", "shape": [0, 40]}], ValueError,
     r"architecture\[0\] \(reshape\): Reshape shape: expected a per-sample shape"),
    ([{"type": "leaky_relu", "activation": "relu"}], ValueError,
     r"architecture\[0\] \(leaky_relu\): unknown key\(s\) \['activation'\]"),
    ([{"input_dim": 2, "output_dim": 3, "typ": "dense"}], ValueError,
     r"architecture\[0\]: unknown key\(s\) \['typ'\].*or a 'type' key naming a layer"),
])
def test_mistakes_name_the_entry(arch, error, match):
    with pytest.raises(error, match=match):
        layers_from_architecture(arch)
