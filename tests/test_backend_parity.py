"""Every fast path against the generic Array API path on the same inputs.

NumPy's overrides (in-place gradients, flat parameter buffer, the optimiser updates it
registers) and,
when a GPU is usable, CuPy's, are compared with ``Backend`` (the standard-only class) on
identical weights and data.
"""

import numpy as np
import pytest
from conftest import optimizers_of_kind

import gpunn as gn
from gpunn.backend.base import Backend
from gpunn.backend.numpy_backend import NumpyBackend


def _generic(backend):
    """The standard-only backend on the same namespace and device as ``backend``."""
    return Backend(backend.xp, device=backend.device, dtype=backend.dtype_name, seed=0,
                   name=f"generic-{backend.name}")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def fast(request):
    from conftest import make_backend

    return make_backend(request.param)


def test_linear_and_backward_parity(fast, rng):
    generic = _generic(fast)
    x, W = rng.standard_normal((9, 5)), rng.standard_normal((5, 4))
    b, g = rng.standard_normal(4), rng.standard_normal((9, 4))
    args = [fast.asarray(a) for a in (x, W, b)]
    identity = gn.activations.IDENTITY
    np.testing.assert_allclose(gn.to_numpy(fast.bias_activation(*args, identity, {})[1]),
                               gn.to_numpy(generic.bias_activation(*args, identity, {})[1]),
                               rtol=1e-6)
    out = (fast.zeros((5, 4)), fast.zeros((4,)))
    fast_res = fast.dense_backward(args[0], args[1], None, None, fast.asarray(g), None, {},
                                   True, out=out)
    gen_res = generic.dense_backward(args[0], args[1], None, None, fast.asarray(g), None,
                                     {}, True, out=None)
    assert fast_res[0] is out[0] and fast_res[1] is out[1]  # written in place
    for a, c in zip(fast_res, gen_res):
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "elu", "identity"])
def test_dense_backward_through_an_activation_parity(fast, name, rng):
    """The layer's gradients through its activation match the generic maths on repeated
    calls of one shape (where a backend may reuse work arrays), and the upstream
    gradient is left unchanged (a residual block still reads it)."""
    generic = _generic(fast)
    act, params = gn.activations.get(name)
    for _ in range(2):  # a second call of the same shapes
        x = fast.asarray(rng.standard_normal((9, 5)))
        W, b = fast.asarray(rng.standard_normal((5, 4))), fast.asarray(rng.standard_normal(4))
        g = fast.asarray(rng.standard_normal((9, 4)))
        g_before = gn.to_numpy(g).copy()
        z, y = fast.bias_activation(x, W, b, act, params)
        zg, yg = generic.bias_activation(x, W, b, act, params)
        out = (fast.zeros((5, 4)), fast.zeros((4,)))
        fast_res = fast.dense_backward(x, W, z, y, g, act, params, True, out=out)
        gen_res = generic.dense_backward(x, W, zg, yg, g, act, params, True)
        np.testing.assert_array_equal(gn.to_numpy(g), g_before)
        for a, c in zip(fast_res, gen_res):
            np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(c), rtol=1e-5, atol=1e-6)


#: Every fast optimiser update the NumPy backend registers, with every registered optimiser
#: of its rule (conftest.optimizers_of_kind); the CuPy backend registers the same kinds
#: (tests/test_gpu.py checks its own list).
FAST_UPDATES = [pytest.param(kind, make, id=case)
                for kind in sorted(NumpyBackend.fast_updates())
                for case, make in optimizers_of_kind(kind)]


@pytest.mark.parametrize("kind,make_opt", FAST_UPDATES)
def test_flat_buffer_training_matches_generic(fast, kind, make_opt, rng):
    X = rng.standard_normal((96, 6)).astype(np.float32)
    y = rng.integers(0, 3, 96)

    def model(backend):
        return gn.Sequential([gn.Dense(6, 16, activation="relu", kernel_l2=1e-3),
                              gn.Dense(16, 16, activation="tanh"),
                              gn.Dense(16, 3, activation="softmax")], device=backend, seed=0)

    a, b = model(fast), model(_generic(fast))
    assert a.store.flat is not None and b.store.flat is None
    if fast.fast_update(kind, fast.dtype) is None:
        pytest.skip(f"{fast.name} has no fast update for {kind!r}")
    # The fast backend may draw from its own generator (CuPy's): start from equal weights.
    for pa, pb in zip(a.parameters(), b.parameters()):
        pb[...] = b.backend.asarray(gn.to_numpy(pa))
    kwargs = dict(loss="cross_entropy", epochs=3, batch_size=32, shuffle=False, verbose=0)
    ha = a.fit(X, y, optimizer=make_opt(), **kwargs)
    hb = b.fit(X, y, optimizer=make_opt(), **kwargs)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(gn.to_numpy(pa), gn.to_numpy(pb), rtol=1e-4, atol=1e-6)


def test_flat_buffer_views_and_rebinding():
    model = gn.Sequential([gn.Dense(3, 4), gn.Dense(4, 2)], device="cpu", seed=0)
    P, G = model.store.flat
    assert model.count_params() == 26 and P.size == 4 * 64  # each view 64-aligned
    W = model.layers[0].params["W"]
    assert np.shares_memory(W, P)
    W[0, 0] = 42.0  # writing into a view writes into the buffer
    assert 42.0 in P
    new = np.full((3, 4), 0.5, np.float32)
    model.layers[0].params["W"] = new  # rebinding: the next fit adopts the new array
    X, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    model.fit(X, y, loss="mse", optimizer=gn.optim.SGD(lr=1e-9), epochs=1, verbose=0)
    assert np.shares_memory(model.layers[0].params["W"], model.store.flat[0])
    np.testing.assert_allclose(model.layers[0].params["W"], 0.5, rtol=1e-6)


def test_parameter_views_are_aligned_and_the_gaps_stay_zero(rng):
    """Every view starts at a multiple of 64 elements of the flat buffers (256-byte aligned
    in float32, what cuBLAS and vector loads like); training leaves the gaps at zero in
    the parameters, the gradients and the optimiser's state."""
    from gpunn.params import ALIGN

    model = gn.Sequential([gn.Dense(5, 7, activation="tanh"), gn.Dense(7, 3)], device="cpu",
                          seed=0)
    P, G = model.store.flat
    base = P.__array_interface__["data"][0]
    offsets = [(p.__array_interface__["data"][0] - base) // P.itemsize
               for p in model.parameters()]
    assert offsets == [0, 64, 128, 192] and ALIGN == 64
    X = rng.standard_normal((40, 5)).astype(np.float32)
    model.fit(X, rng.integers(0, 3, 40), loss="cross_entropy", epochs=2, verbose=0,
              optimizer=gn.optim.Adam(lr=0.01, weight_decay=0.1))
    used = np.zeros(P.size, bool)
    for o, p in zip(offsets, model.parameters()):
        used[o:o + p.size] = True
    for buf in [P, G] + list(model.optimizer.state[0].values()):
        assert not np.any(gn.to_numpy(buf)[~used])


def test_optimizer_state_survives_layout_changes():
    """Own loop (separate arrays), then fit (flat), then a generic backend (separate), then
    back: the state follows, and its saved form is one array per parameter throughout."""
    strict = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)).astype(np.float32), rng.standard_normal(64)
    model = gn.Sequential([gn.Dense(4, 8, activation="tanh"), gn.Dense(8, 1)], device="cpu",
                          seed=0)
    shapes = [tuple(p.shape) for p in model.parameters()]
    opt, loss = gn.optim.Adam(lr=0.01), gn.losses.get("mse")
    loss.forward(model.forward(X, training=True), y.astype(np.float32))
    model.backward(loss.backward())
    opt.step(model.parameters(), model.gradients())
    assert len(opt.state) == 4
    model.fit(X, y, loss="mse", optimizer=opt, epochs=1, batch_size=64, verbose=0)
    assert len(opt.state) == 1 and opt.t == 2  # laid into the flat buffer, state kept
    m_flat = opt.state[0]["m"].copy()
    saved = opt.state_dict()["state"]
    assert [tuple(s["m"].shape) for s in saved] == shapes
    model.to(strict)
    opt.attach(model.parameters(), model.backend)  # what fit does: cut, gaps dropped
    offsets, _ = gn.params.flat_layout(shapes)
    for o, s, kept in zip(offsets, opt.state, saved):
        piece = m_flat[o:o + int(s["m"].size)].reshape(tuple(s["m"].shape))
        np.testing.assert_array_equal(gn.to_numpy(s["m"]), piece)
        np.testing.assert_array_equal(kept["m"], piece)
    model.fit(X, y, loss="mse", optimizer=opt, epochs=1, batch_size=64, verbose=0)
    assert len(opt.state) == 4 and opt.t == 3
    model.to("cpu")  # and back onto the flat buffer, gaps restored as zeros
    P = model.store.step_lists()[0]
    opt.attach(P, model.backend, shapes)
    assert len(opt.state) == 1 and opt.state[0]["m"].size == m_flat.size
    used = np.zeros(m_flat.size, bool)
    for o, shape in zip(offsets, shapes):
        used[o:o + int(np.prod(shape))] = True
    assert not np.any(opt.state[0]["m"][~used])
    assert [tuple(s["m"].shape) for s in opt.state_dict()["state"]] == shapes
    with pytest.raises(ValueError, match=r"Adam.attach: expected the parameters \(shapes "
                                         r"\[\(4, 8\).*one flat buffer of 256 values.*\(7,\)"):
        opt.attach([np.zeros(7, np.float32)], model.backend, shapes)


@pytest.mark.parametrize("name", sorted(gn.activations.ACTIVATIONS))
def test_bias_activation_and_activation_backward_parity(fast, name, rng):
    """Backends may apply activations in place (z becomes y) or in fused kernels; the
    layer's forward output and gradients must not change."""
    generic = _generic(fast)
    act, params = gn.activations.get(name)
    x, W = fast.asarray(rng.standard_normal((6, 4))), fast.asarray(rng.standard_normal((4, 5)))
    b, g = fast.asarray(rng.standard_normal(5)), fast.asarray(rng.standard_normal((6, 5)))
    zf, yf = fast.bias_activation(x, W, b, act, params)
    zg, yg = generic.bias_activation(x, W, b, act, params)
    np.testing.assert_allclose(gn.to_numpy(yf), gn.to_numpy(yg), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gn.to_numpy(fast.activation_backward(act, zf, yf, g, params)),
                               gn.to_numpy(generic.activation_backward(act, zg, yg, g, params)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dense", [False, True], ids=["labels", "rows"])
def test_softmax_cross_entropy_parity(fast, dense, rng):
    generic = _generic(fast)
    z = fast.asarray(rng.standard_normal((7, 5)) * 3)
    labels = rng.integers(0, 5, 7)
    target = fast.asarray(np.eye(5, dtype=np.float32)[labels] if dense else labels)
    for a, c in zip(fast.softmax_cross_entropy(z, target),
                    generic.softmax_cross_entropy(z, target)):
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(c), rtol=1e-5, atol=1e-7)


def test_take_rows_parity_with_and_without_a_reused_buffer(fast, rng):
    """The batch gather, into a reused buffer (NumPy writes it directly: mode="clip")
    and fresh, equals the generic xp.take for every row of a permutation."""
    generic = _generic(fast)
    X = fast.asarray(rng.standard_normal((50, 7)).astype(np.float32))
    perm = fast.asarray(rng.permutation(50))
    out = None
    for lo in range(0, 50, 16):
        idx = perm[lo:lo + 16]
        out = fast.take_rows(X, idx, out)
        want = gn.to_numpy(generic.take_rows(X, idx))
        np.testing.assert_array_equal(gn.to_numpy(out), want)
        np.testing.assert_array_equal(gn.to_numpy(fast.take_rows(X, idx)), want)


CONV_CASES = [  # x shape, W shape, stride, padding
    ((3, 2, 11), (4, 2, 3), (1,), (0,)),
    ((1, 3, 12), (5, 3, 5), (2,), (1,)),
    ((4, 1, 40), (25, 1, 5), (2,), (1,)),
    ((2, 3, 7, 9), (4, 3, 3, 2), (1, 2), (1, 0)),
    ((3, 2, 8, 8), (6, 2, 3, 3), (2, 2), (1, 1)),
    ((2, 1, 9, 7), (3, 1, 5, 5), (1, 1), (2, 2)),
    ((7, 1, 40, 41), (6, 1, 5, 5), (1, 1), (2, 2)),  # one channel, 11480 positions: the
]                                                   # weight gradient in chunks


@pytest.mark.parametrize("x_shape,w_shape,stride,padding", CONV_CASES)
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "softmax", "elu"])
def test_conv_forward_and_backward_parity(fast, x_shape, w_shape, stride, padding,
                                          activation, rng):
    """The backend's convolution (NumPy: patch rows and one GEMM, reused buffers) equals
    the generic one, twice in a row (the second call reuses the first call's buffers),
    with and without arrays to write the gradients into."""
    fast = fast.with_dtype("float64")
    generic = _generic(fast)
    act, params = gn.activations.get(activation)
    W, b = fast.asarray(rng.standard_normal(w_shape)), fast.asarray(rng.standard_normal(
        w_shape[0]))
    cache = None
    for attempt in range(2):
        x = fast.asarray(rng.standard_normal(x_shape))
        y, cache = fast.conv_forward(x, W, b, stride, padding, act, params, cache=cache)
        y0, cache0 = generic.conv_forward(x, W, b, stride, padding, act, params)
        np.testing.assert_allclose(gn.to_numpy(y), gn.to_numpy(y0), rtol=1e-12, atol=1e-12)
        g = fast.asarray(rng.standard_normal(tuple(y0.shape)))
        backward_act = None if activation == "identity" else act
        out = (fast.zeros(w_shape), fast.zeros(w_shape[:1])) if attempt else None
        got = fast.conv_backward(cache, W, g, stride, padding, backward_act, params, True,
                                 out=out)
        want = generic.conv_backward(cache0, W, g, stride, padding, backward_act, params,
                                     True)
        for a, c in zip(got, want):
            np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(c), rtol=1e-10,
                                       atol=1e-10)
        assert fast.conv_backward(cache, W, g, stride, padding, backward_act, params,
                                  False)[2] is None


@pytest.mark.parametrize("shape,kernel,stride", [((2, 3, 9), (3,), (2,)),
                                                 ((1, 2, 7, 6), (3, 2), (2, 1)),
                                                 ((2, 2, 6, 4), (2, 2), (2, 2))],
                         ids=["1d", "2d", "2d-tiling"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_parity(fast, shape, kernel, stride, kind, rng):
    """The pooling operations (NumPy: the generic maths on its strided patches; CuPy: one
    kernel each way) against the generic path; small integers make tied maxima."""
    generic = _generic(fast)
    x = fast.asarray(rng.integers(-2, 3, shape).astype(np.float32))
    y, arg = fast.pool_forward(x, kind, kernel, stride)
    y0, arg0 = generic.pool_forward(x, kind, kernel, stride)
    np.testing.assert_allclose(gn.to_numpy(y), gn.to_numpy(y0), rtol=1e-6)
    if kind == "max":  # the same first maxima, whatever layout the backend keeps them in
        np.testing.assert_array_equal(gn.to_numpy(arg).reshape(-1),
                                      gn.to_numpy(arg0).reshape(-1))
    g = fast.asarray(rng.standard_normal(tuple(y.shape)).astype(np.float32))
    np.testing.assert_allclose(
        gn.to_numpy(fast.pool_backward(g, arg, kind, shape, kernel, stride)),
        gn.to_numpy(generic.pool_backward(g, arg0, kind, shape, kernel, stride)),
        rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_batchnorm_parity(fast, shape, training, rng):
    generic = _generic(fast)
    c = shape[1]
    x = fast.asarray(rng.standard_normal(shape).astype(np.float32) * 2 + 1)
    gamma, beta = (fast.asarray(rng.standard_normal(c).astype(np.float32)) for _ in "gb")
    stats = () if training else (fast.asarray(rng.standard_normal(c).astype(np.float32)),
                                 fast.asarray(rng.random(c).astype(np.float32) + 0.5))
    got = fast.batchnorm_forward(x, gamma, beta, 1e-5, *stats)
    want = generic.batchnorm_forward(x, gamma, beta, 1e-5, *stats)
    for a, b in zip(got, want):
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(b), rtol=1e-5, atol=1e-6)
    g = fast.asarray(rng.standard_normal(shape).astype(np.float32))
    for a, b in zip(fast.batchnorm_backward(g, got[1], gamma, got[2], training),
                    generic.batchnorm_backward(g, got[1], gamma, got[2], training)):
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape,k", [((6, 5), 1), ((2, 3, 4, 5), 2)])
def test_layernorm_parity(fast, shape, k, rng):
    generic = _generic(fast)
    x = fast.asarray(rng.standard_normal(shape).astype(np.float32) * 2 + 1)
    gamma, beta = (fast.asarray(rng.standard_normal(shape[len(shape) - k:]).astype(
        np.float32)) for _ in "gb")
    got = fast.layernorm_forward(x, gamma, beta, 1e-5)
    for a, b in zip(got, generic.layernorm_forward(x, gamma, beta, 1e-5)):
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(b), rtol=1e-5, atol=1e-6)
    g = fast.asarray(rng.standard_normal(shape).astype(np.float32))
    for a, b in zip(fast.layernorm_backward(g, got[1], gamma, got[2]),
                    generic.layernorm_backward(g, got[1], gamma, got[2])):
        np.testing.assert_allclose(gn.to_numpy(a), gn.to_numpy(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel,stride", [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((3, 2), (1, 1))])
def test_pooling_parity_on_a_convolutions_channels_last_output(fast, kind, kernel, stride,
                                                               rng):
    """A convolution's output is a channels-first view of channels-last memory (NumPy):
    pooling it, forward and backward, equals the generic path on the same values, with
    ties (small integers) and overlapping windows."""
    generic = _generic(fast)
    memory = rng.integers(-2, 3, (3, 9, 8, 4)).astype(np.float32)  # (N, H, W, C)
    x = fast.asarray(memory)
    x = fast.xp.permute_dims(x, (0, 3, 1, 2))
    y, arg = fast.pool_forward(x, kind, kernel, stride)
    y0, arg0 = generic.pool_forward(x, kind, kernel, stride)
    np.testing.assert_allclose(gn.to_numpy(y), gn.to_numpy(y0), rtol=1e-6)
    g = fast.asarray(rng.standard_normal(tuple(y.shape)).astype(np.float32))
    np.testing.assert_allclose(
        gn.to_numpy(fast.pool_backward(g, arg, kind, tuple(x.shape), kernel, stride)),
        gn.to_numpy(generic.pool_backward(g, arg0, kind, tuple(x.shape), kernel, stride)),
        rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rows,width", [(64, 6), (200, 3), (27, 4), (96, 1), (64, 70)])
def test_bias_and_activation_of_narrow_rows(fast, rows, width, rng):
    """NumPy adds the bias to narrow rows folded into wider ones (a convolution's few
    channels at every position): equal to the generic broadcast, whatever the fold."""
    generic = _generic(fast)
    x, W = rng.standard_normal((rows, 5)), rng.standard_normal((5, width))
    b = rng.standard_normal(width)
    args = [fast.asarray(a) for a in (x, W, b)]
    for name in ("identity", "relu"):
        act = gn.activations.get(name)[0]
        np.testing.assert_allclose(gn.to_numpy(fast.bias_activation(*args, act, {})[1]),
                                   gn.to_numpy(generic.bias_activation(*args, act, {})[1]),
                                   rtol=1e-6, atol=1e-6)
