"""The data generators and helpers of gpunn.data (make_moons, make_spirals, ...,
train_test_split): their arguments are checked."""

import pytest
from conftest import tiny_binary

import gpunn as gn

X2, Y2 = tiny_binary()


@pytest.mark.parametrize("call,match", [
    (lambda: gn.data.make_moons(-5), "make_moons n: expected a positive integer"),
    (lambda: gn.data.make_moons(10.5), "make_moons n"),
    (lambda: gn.data.make_moons(100, noise=-1), "make_moons noise"),
    (lambda: gn.data.make_moons(100, noise=float("nan")), "make_moons noise"),
    (lambda: gn.data.make_circles(100, factor=0), "make_circles factor"),
    (lambda: gn.data.make_spirals(100, classes=0), "make_spirals classes"),
    (lambda: gn.data.make_spirals(100, classes=2.5), "make_spirals classes"),
    (lambda: gn.data.make_blobs(100, features=0), "make_blobs features"),
    (lambda: gn.data.make_blobs(100, spread=-1.0), "make_blobs spread"),
    (lambda: gn.data.make_linear(100, coef=[]), "make_linear coef"),
    (lambda: gn.data.make_xor(8, seed=-2), "make_xor seed"),
    (lambda: gn.data.train_test_split(X2, Y2, seed="x"), "train_test_split seed"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_data_generators_check_their_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
