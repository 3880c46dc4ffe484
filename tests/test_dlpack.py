"""Arrays of other libraries (PyTorch, JAX, CuPy) in and out through DLPack: the same
results as NumPy input, and no copy where the memory is already on the model's device."""

import numpy as np
import pytest

import gpunn as gn
from gpunn.backend import cuda_status
from gpunn.training import batches

torch = pytest.importorskip("torch", reason="PyTorch not installed")


def _model(dtype="float32", outputs=3, activation="softmax"):
    return gn.Sequential([gn.Dense(4, 8, activation="tanh"),
                          gn.Dense(8, outputs, activation=activation)],
                         device="cpu", dtype=dtype, seed=0)


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, size=n)


def _train(X, y, dtype="float32"):
    model = _model(dtype)
    hist = model.fit(X, y, loss="categorical_crossentropy", epochs=2, batch_size=16,
                     verbose=0, seed=0)
    return model, hist.history


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_tensors_train_predict_and_evaluate_as_numpy_does(dtype):
    X, y = _data()
    X = X.astype(dtype)
    m_np, h_np = _train(X, y, "float32")
    m_pt, h_pt = _train(torch.from_numpy(X), torch.from_numpy(y), "float32")
    assert h_pt == h_np  # bitwise: the same arrays reached the same steps
    np.testing.assert_array_equal(m_pt.predict(torch.from_numpy(X)), m_np.predict(X))
    assert m_pt.evaluate(torch.from_numpy(X), torch.from_numpy(y)) == m_np.evaluate(X, y)


def test_int_labels_and_one_hot_float_targets_from_torch():
    X, y = _data()
    _, h_labels = _train(torch.from_numpy(X), torch.from_numpy(y).to(torch.int32))
    _, h_onehot = _train(torch.from_numpy(X), torch.nn.functional.one_hot(
        torch.from_numpy(y), 3).to(torch.float32))
    _, h_np = _train(X, y)
    assert h_labels == h_np
    np.testing.assert_allclose(h_onehot["loss"], h_np["loss"], rtol=1e-6)


def test_float32_tensor_is_used_in_place_not_copied():
    X, y = _data()
    t = torch.from_numpy(X.copy())
    model = _model()
    host = t.numpy()  # the tensor's own memory
    assert np.shares_memory(batches.as_input(model, t), host)  # predict's path
    Xd, _, streaming = batches.as_dataset(model, t, torch.from_numpy(y),
                                          gn.losses.get("categorical_crossentropy"))
    assert np.shares_memory(Xd, host) and not streaming  # fit's and evaluate's path
    assert np.shares_memory(gn.from_dlpack(t), host)


def test_non_contiguous_tensor_is_a_view_and_gives_the_numpy_result():
    X, y = _data()
    t = torch.from_numpy(np.ascontiguousarray(X.T)).T  # strides (1, N): column-major
    assert not t.is_contiguous()
    model = _model()
    assert np.shares_memory(batches.as_input(model, t), t.numpy())
    np.testing.assert_array_equal(model.predict(t), model.predict(X))
    assert _train(t, torch.from_numpy(y))[1] == _train(X, y)[1]


def test_float64_tensor_is_cast_once_like_a_float64_numpy_array():
    X, _ = _data()
    t = torch.from_numpy(X.astype(np.float64))
    model = _model()
    x = batches.as_input(model, t)
    assert x.dtype == np.float32 and not np.shares_memory(x, t.numpy())
    np.testing.assert_array_equal(model.predict(t), model.predict(X.astype(np.float64)))
    model64 = _model("float64")
    assert np.shares_memory(batches.as_input(model64, t), t.numpy())


def test_tensor_that_requires_grad_is_refused_naming_the_argument():
    X, y = _data(8)
    model = _model()
    t = torch.from_numpy(X).requires_grad_()
    y_grad = torch.from_numpy(y.astype(np.float32)).requires_grad_()
    loss = "categorical_crossentropy"
    for call in (lambda: model.predict(t), lambda: model.evaluate(t, y, loss=loss),
                 lambda: model.fit(t, y, loss=loss, verbose=0),
                 lambda: model.fit(X, y_grad, loss=loss, verbose=0)):
        with pytest.raises(TypeError, match=r"^(X|y): .*requires grad.*detach\(\)"):
            call()
    with pytest.raises(TypeError, match="requires grad"):
        gn.to_numpy(t)
    np.testing.assert_array_equal(model.predict(t.detach()), model.predict(X))


def test_predictions_speak_dlpack_to_torch_without_a_copy():
    X, _ = _data()
    out = _model().predict(X)
    t = torch.from_dlpack(out)
    assert np.shares_memory(t.numpy(), out)


def test_from_dlpack_keeps_dtype_and_refuses_what_is_not_an_array():
    ints = torch.arange(6).reshape(2, 3)
    a = gn.from_dlpack(ints, device="cpu")
    assert a.dtype == np.int64 and np.shares_memory(a, ints.numpy())
    assert gn.from_dlpack(torch.ones(3, dtype=torch.float64)).dtype == np.float64
    with pytest.raises(TypeError, match=r"from_dlpack x: expected an array with __dlpack__"):
        gn.from_dlpack([[1.0, 2.0]])


def test_jax_arrays_are_read_in_place():
    jnp = pytest.importorskip("jax.numpy", reason="JAX not installed")
    X, _ = _data()
    model = _model()
    np.testing.assert_array_equal(model.predict(jnp.asarray(X)), model.predict(X))


@pytest.mark.gpu
def test_cuda_tensor_reaches_a_gpu_model_without_a_copy():
    status = cuda_status()
    if not status.usable:
        pytest.skip(f"cupy backend: {status.reason}")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch build has no CUDA")
    import cupy

    X, y = _data()
    t = torch.from_numpy(X).cuda()
    model = gn.Sequential([gn.Dense(4, 8, activation="tanh"),
                           gn.Dense(8, 3, activation="softmax")], device="cuda:0", seed=0)
    x = batches.as_input(model, t)
    assert isinstance(x, cupy.ndarray) and x.data.ptr == t.data_ptr()
    np.testing.assert_allclose(gn.to_numpy(model.predict(t)),
                               gn.to_numpy(model.predict(X)), rtol=1e-6)
    hist = model.fit(t, torch.from_numpy(y).cuda(), loss="categorical_crossentropy",
                     epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    assert gn.from_dlpack(t).data.ptr == t.data_ptr()
    np.testing.assert_array_equal(gn.to_numpy(t), X)  # device memory back to the host


def test_every_backend_takes_tensors_and_refuses_complex_ones(backend):
    X, _ = _data(5)
    a = backend.asarray(torch.from_numpy(X.astype(np.float64)))
    assert a.dtype == backend.dtype
    np.testing.assert_array_equal(gn.to_numpy(a), X)
    with pytest.raises(TypeError, match="to a real numeric array"):
        backend.asarray(torch.ones(3, dtype=torch.complex64))
