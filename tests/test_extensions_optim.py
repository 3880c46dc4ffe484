"""An optimiser added from outside the package, in one file with the public API only
(tests/extensions/lion.py): Lion is found by name, learns, matches a NumPy reference of its
maths, saves and loads with its state, moves between devices, rolls back and resumes, as
the built-in rules do."""

import json

import numpy as np
import pytest
from extensions.lion import Lion

import gpunn as gn
from gpunn import callbacks as cbs


def _moons_net(device="cpu", seed=0):
    return gn.Sequential([gn.Dense(2, 16, activation="tanh"),
                          gn.Dense(16, 1, activation="sigmoid")], device=device, seed=seed)


def _params(model) -> list:
    return [gn.to_numpy(p).copy() for p in model.parameters()]


def test_lion_is_registered_by_name():
    opt = gn.optim.get("lion")
    assert isinstance(opt, Lion) and gn.optim.OPTIMIZERS["lion"] is Lion
    assert (opt.lr, opt.betas, opt.weight_decay) == (1e-4, (0.9, 0.99), 0.0)
    assert Lion.kind == "lion" and Lion.name == "lion"
    assert gn.get_backend("cpu").fast_update("lion", np.dtype("float32")) is None
    from gpunn.cli import build_parser

    args = build_parser().parse_args(["train", "--optimizer", "lion"])
    assert args.optimizer == "lion"
    with pytest.raises(ValueError, match=r"Lion betas: expected a pair .* got \(0.9,\)"):
        Lion(betas=(0.9,))


def _reference(params, grads, lr, betas, wd):
    """Lion in plain NumPy, float64 (Chen et al. 2023, Algorithm 2)."""
    b1, b2 = betas
    params = [np.array(p, dtype=np.float64) for p in params]
    moments = [np.zeros_like(p) for p in params]
    for step in grads:
        for p, m, g in zip(params, moments, step):
            c = b1 * m + (1 - b1) * g
            p -= lr * (np.sign(c) + wd * p)
            m[...] = b2 * m + (1 - b2) * g
    return params, moments


def test_lion_matches_a_numpy_reference(backend64):
    rng = np.random.default_rng(0)
    p0 = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [[rng.standard_normal(p.shape) for p in p0] for _ in range(5)]
    grads[2][1][:] = 0.0  # sign(0) = 0: the moment alone decides
    opt = Lion(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    params = [backend64.asarray(p.copy()) for p in p0]
    for step in grads:
        opt.step(params, [backend64.asarray(g) for g in step])
    want, moments = _reference(p0, grads, 0.01, (0.8, 0.95), 0.1)
    for p, w in zip(params, want):
        np.testing.assert_allclose(gn.to_numpy(p), w, rtol=1e-12, atol=1e-14)
    for s, m in zip(opt.state_dict()["state"], moments):
        np.testing.assert_allclose(s["m"], m, rtol=1e-12, atol=1e-14)


def test_lion_learns_two_moons(backend):
    X, y = gn.data.make_moons(400, noise=0.1, seed=0)
    model = _moons_net(backend)
    model.fit(X, y, loss="bce", optimizer="lion", epochs=1, verbose=0)  # by name
    model.fit(X, y, loss="bce", optimizer=Lion(lr=0.01), epochs=30, verbose=0, seed=0)
    assert model.evaluate(X, y)["accuracy"] > 0.9
    if model.store.flat is not None:  # its generic update ran over the flat buffer
        (m,) = [gn.to_numpy(s["m"]) for s in model.optimizer.state]
        offsets, total = gn.params.flat_layout([tuple(p.shape) for p in model.parameters()])
        gaps = np.ones(total, bool)
        for o, p in zip(offsets, model.parameters()):
            gaps[o:o + p.size] = False
        assert gaps.any() and not np.any(m[gaps])
        assert not np.any(gn.to_numpy(model.store.flat[0])[gaps])


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_lion_saves_loads_and_continues_identically(tmp_path, backend, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors", reason="safetensors not installed")
    X, y = gn.data.make_moons(200, noise=0.1, seed=1)
    kwargs = dict(loss="bce", epochs=2, batch_size=32, verbose=0, shuffle=False)
    straight = _moons_net(backend)
    opt = Lion(lr=0.01, weight_decay=0.01)
    straight.fit(X, y, optimizer=opt, **kwargs)
    straight.fit(X, y, optimizer=opt, **kwargs)
    half = _moons_net(backend)
    half.fit(X, y, optimizer=Lion(lr=0.01, weight_decay=0.01), **kwargs)
    path = tmp_path / f"lion{suffix}"
    half.save(path)
    header = gn.files.format.read_header(path)["optimizer"]
    assert (header["name"], header["kind"], header["slots"]) == ("lion", "lion", 4)
    loaded = gn.load(path, device=backend)
    assert isinstance(loaded.optimizer, Lion) and loaded.optimizer.t == half.optimizer.t
    assert loaded.optimizer.hyper() == half.optimizer.hyper()
    for a, b, p in zip(loaded.optimizer.state_dict()["state"],
                       half.optimizer.state_dict()["state"], half.parameters()):
        assert a["m"].shape == tuple(p.shape)
        np.testing.assert_array_equal(a["m"], b["m"])
    loaded.fit(X, y, optimizer=loaded.optimizer, **kwargs)
    for a, b in zip(_params(straight), _params(loaded)):
        np.testing.assert_array_equal(b, a)


def test_a_file_of_an_optimizer_not_imported_says_what_to_do(tmp_path, monkeypatch):
    X, y = gn.data.make_moons(64, seed=0)
    model = _moons_net()
    model.fit(X, y, loss="bce", optimizer=Lion(lr=0.01), epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    monkeypatch.delitem(gn.optim.OPTIMIZERS, "lion")  # as in a process that never imported it
    with pytest.raises(gn.ModelFileError, match="optimizer header names 'lion', which is not "
                                                "registered.*import the module"):
        gn.load(tmp_path / "m.npz", device="cpu")


def test_lion_state_moves_between_devices(backend):
    X, y = gn.data.make_moons(400, noise=0.1, seed=2)
    model = _moons_net()
    opt = Lion(lr=0.01)
    model.fit(X, y, loss="bce", optimizer=opt, epochs=2, verbose=0)
    before = opt.state_dict()
    model.to(backend)
    moved = opt.state_dict()
    assert moved["t"] == before["t"]
    for a, b in zip(moved["state"], before["state"]):
        np.testing.assert_array_equal(a["m"], b["m"])
    assert all(backend.owns(v) for s in opt.state for v in s.values())
    model.fit(X, y, loss="bce", optimizer=opt, epochs=2, verbose=0)
    assert opt.t == 2 * before["t"] and opt.backend.name == backend.name
    model.to("cpu")
    model.fit(X, y, loss="bce", optimizer=opt, epochs=20, verbose=0)
    assert opt.t == 12 * before["t"] and model.evaluate(X, y)["accuracy"] > 0.9


def _regression(n=256):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 4)).astype(np.float32)
    return X, (X @ np.array([3.0, -2.0, 1.0, 0.5])).astype(np.float32)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the diverging run overflows
def test_lion_is_rolled_back_and_skipped_on_divergence(backend):
    X, y = _regression()
    model = gn.Sequential([gn.Dense(4, 16, activation="relu"), gn.Dense(16, 1)],
                          device=backend, seed=0)
    opt = Lion(lr=0.01)
    model.fit(X, y, loss="mse", optimizer=opt, epochs=1, verbose=0)
    params, state = _params(model), opt.state_dict()
    opt.lr = 1e25  # every coordinate jumps by 1e25: the next forward pass overflows
    with pytest.raises(gn.TrainingDiverged):
        model.fit(X, y, loss="mse", optimizer=opt, epochs=2, verbose=0)
    for a, b in zip(_params(model), params):
        np.testing.assert_array_equal(a, b)
    back = opt.state_dict()
    assert back["t"] == state["t"]
    for a, b in zip(back["state"], state["state"]):
        np.testing.assert_array_equal(a["m"], b["m"])
    hist = model.fit(X, y, loss="mse", optimizer=opt, epochs=1, on_divergence="skip",
                     verbose=0)
    assert sum(hist.history["skipped"]) > 0
    assert all(np.isfinite(gn.to_numpy(v)).all() for s in opt.state for v in s.values())


def test_lion_resumes_from_a_checkpoint_bitwise(tmp_path):
    X, y = gn.data.make_moons(300, noise=0.1, seed=3)
    kwargs = dict(loss="bce", batch_size=32, verbose=0)
    straight = _moons_net()
    h1 = straight.fit(X, y, optimizer=Lion(lr=0.01), epochs=4, seed=7, **kwargs)
    first = _moons_net()
    first.fit(X, y, optimizer=Lion(lr=0.01), epochs=2, seed=7,
              callbacks=[cbs.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz"))], **kwargs)
    header = json.loads(np.load(tmp_path / "ckpt-2.npz")["__gpunn__"].tobytes())
    assert header["optimizer"]["name"] == "lion"
    resumed = _moons_net(seed=123)  # a fresh process builds the model anew
    h2 = resumed.fit(X, y, optimizer="adam", epochs=4, seed=99,
                     resume_from=tmp_path / "ckpt-2.npz", **kwargs)
    assert isinstance(resumed.optimizer, Lion) and resumed.optimizer.t == straight.optimizer.t
    assert h2.history == h1.history
    for a, b in zip(_params(straight), _params(resumed)):
        np.testing.assert_array_equal(b, a)
