"""Model files (gpunn.files, the .npz format): round trips across devices and dtypes,
optimiser state, refusal of bad files, atomic writes."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import gpunn as gn


def _trained(device="cpu", dtype="float32"):
    X, y = gn.data.make_spirals(300, classes=3, seed=0)
    model = gn.Sequential([gn.Dense(2, 16, activation="leaky_relu",
                                    activation_params={"alpha": 0.2}),
                           gn.Dropout(0.1), gn.Tanh(),
                           gn.Dense(16, 3, activation="softmax")], device=device, dtype=dtype,
                          seed=0)
    model.preprocessor = gn.preprocessing.Standardizer().fit(X)
    model.extra = {"classes": ["a", "b", "c"]}
    model.fit(X, y, loss="cross_entropy", optimizer=gn.optim.Adam(lr=0.01), epochs=2,
              verbose=0)
    return model, X, y


def test_round_trip_on_every_backend(tmp_path, backend):
    model, X, y = _trained()
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = gn.load(path, device=backend)
    assert loaded.backend.name == backend.name and loaded.dtype == "float32"
    assert [type(layer).__name__ for layer in loaded.layers] == [
        "Dense", "Dropout", "ActivationLayer", "Dense"]
    assert loaded.layers[0].activation_params == {"alpha": 0.2}
    np.testing.assert_allclose(gn.to_numpy(loaded.predict(X)), gn.to_numpy(model.predict(X)),
                               rtol=1e-5, atol=1e-6)
    assert loaded.extra == {"classes": ["a", "b", "c"]}
    assert loaded.loss.name == "categorical_crossentropy" and loaded.metrics == ["accuracy"]
    assert loaded.optimizer.t == model.optimizer.t
    assert loaded.evaluate(X, y)["loss"] == pytest.approx(model.evaluate(X, y)["loss"],
                                                          rel=1e-5)


def test_resumed_training_matches_uninterrupted(tmp_path):
    X, y = gn.data.make_moons(256, seed=0)
    kwargs = dict(loss="bce", epochs=2, batch_size=32, verbose=0, shuffle=False)

    def fresh():
        return gn.Sequential([gn.Dense(2, 8, activation="tanh"), gn.Dense(8, 1, "sigmoid")],
                             device="cpu", seed=0)

    straight = fresh()
    opt = gn.optim.Adam(lr=0.01)
    straight.fit(X, y, optimizer=opt, **kwargs)
    straight.fit(X, y, optimizer=opt, **kwargs)
    half = fresh()
    half.fit(X, y, optimizer=gn.optim.Adam(lr=0.01), **kwargs)
    half.save(tmp_path / "ckpt")  # .npz is appended
    resumed = gn.load(tmp_path / "ckpt.npz", device="cpu")  # compared with a CPU run
    resumed.fit(X, y, optimizer=resumed.optimizer, **kwargs)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b)


def test_float16_model_keeps_its_dtype(tmp_path):
    model, X, _ = _trained(dtype="float16")
    model.save(tmp_path / "half.npz")
    loaded = gn.load(tmp_path / "half.npz", device="cpu")  # compared with a CPU model
    assert loaded.dtype == "float16" and loaded.parameters()[0].dtype == np.float16
    np.testing.assert_array_equal(gn.to_numpy(loaded.predict(X)), gn.to_numpy(model.predict(X)))


def test_file_has_no_pickles_and_little_endian_arrays(tmp_path):
    model, _, _ = _trained()
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        for name in archive.files:
            a = archive[name]
            assert a.dtype != object and a.dtype.byteorder in "<|="
        header = json.loads(archive["__gpunn__"].tobytes())
    assert header["format"] == "gpunn-model" and header["optimizer"]["kind"] == "adam"


def _rewrite(src, dst, change):
    with np.load(src, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    change(arrays)
    np.savez(dst, **arrays)


def _flat_optimizer_state(gaps: bool):
    """An edit giving a file the optimiser state that files written before it was saved per
    parameter held: one flat array per state name, the parameters at gpunn.params' aligned
    offsets (``gaps``: as released) or end to end (never released)."""
    def change(arrays):
        header = json.loads(arrays["__gpunn__"].tobytes())
        opt = header["optimizer"]
        names = sorted({k.split("/")[2] for k in arrays if k.startswith("optim/")})
        pieces = {k: [arrays.pop(f"optim/{j}/{k}") for j in range(opt["slots"])]
                  for k in names}
        offsets, total = gn.params.flat_layout([a.shape for a in pieces[names[0]]])
        for key, parts in pieces.items():
            flat = np.zeros(total, parts[0].dtype)
            for o, a in zip(offsets, parts):
                flat[o:o + a.size] = a.ravel()
            arrays[f"optim/0/{key}"] = flat if gaps else np.concatenate(
                [a.ravel() for a in parts])
        opt["slots"] = 1
        del opt["name"]  # those files named no registered optimiser either
        arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    return change


def test_optimizer_state_is_saved_per_parameter_and_old_flat_files_load(tmp_path):
    """A file holds one optimiser array per parameter in its shape, whatever the flat
    buffer's alignment. Files written before held one flat array with the alignment gaps:
    cut per parameter once on reading, they train on exactly as the new file does. A flat
    state without gaps was never released and does not fit."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = gn.Sequential([gn.Dense(5, 7, activation="relu"),
                           gn.Dense(7, 3, activation="softmax")], device="cpu", seed=0)
    kwargs = dict(loss="cross_entropy", epochs=1, verbose=0, shuffle=False)
    model.fit(X, y, optimizer=gn.optim.Adam(lr=0.01, weight_decay=0.1), **kwargs)
    assert model.store.flat is not None and len(model.optimizer.state) == 1  # one buffer
    model.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as archive:
        held = {k: archive[k].shape for k in archive.files if k.startswith("optim/")}
    assert held == {f"optim/{j}/{k}": tuple(p.shape) for j, p in enumerate(model.parameters())
                    for k in ("m", "v")}
    _rewrite(tmp_path / "new.npz", tmp_path / "old.npz", _flat_optimizer_state(gaps=True))
    _rewrite(tmp_path / "new.npz", tmp_path / "gapless.npz", _flat_optimizer_state(False))
    results = []
    for name in ("new", "old"):
        loaded = gn.load(tmp_path / f"{name}.npz", device="cpu")
        assert isinstance(loaded.optimizer, gn.optim.Adam)
        for a, b in zip(loaded.optimizer.state_dict()["state"],
                        model.optimizer.state_dict()["state"]):
            np.testing.assert_array_equal(a["m"], b["m"])
        loaded.fit(X, y, optimizer=loaded.optimizer, **kwargs)
        results.append([gn.to_numpy(p) for p in loaded.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(b, a)
    with pytest.raises(gn.ModelFileError, match="optimizer state does not fit the model"):
        gn.load(tmp_path / "gapless.npz")


def _header_edit(edit):
    def change(arrays):
        header = json.loads(arrays["__gpunn__"].tobytes())
        edit(header)
        arrays["__gpunn__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    return change


BAD_FILES = {
    "pickled object array": (lambda a: a.__setitem__("param/0/W", np.array([{}], dtype=object)),
                             "unreadable|dtype object"),
    "wrong weight shape": (lambda a: a.__setitem__("param/0/W", np.zeros((3, 16), np.float32)),
                           r"shape \(3, 16\), the architecture needs \(2, 16\)"),
    "missing weights": (lambda a: a.pop("param/3/b"), "missing array 'param/3/b'"),
    "unknown array": (lambda a: a.__setitem__("evil", np.zeros(1)), "unexpected arrays"),
    "NaN weights": (lambda a: a.__setitem__("param/0/b", np.full(16, np.nan, np.float32)),
                    "NaN or Inf"),
    "not JSON": (lambda a: a.__setitem__("__gpunn__", np.frombuffer(b"{nope", np.uint8)),
                 "not valid JSON"),
    "wrong format": (_header_edit(lambda h: h.__setitem__("format", "keras")),
                     "not a gpunn model file"),
    "future version": (_header_edit(lambda h: h.__setitem__("version", 99)),
                       "unsupported format version 99"),
    "unknown layer": (_header_edit(lambda h: h["layers"][0].__setitem__("type", "os.system")),
                      "expected a known type"),
    "bad layer config": (_header_edit(lambda h: h["layers"][0]["config"].__setitem__(
        "out_features", -4)), "invalid config"),
    "layers not a list": (_header_edit(lambda h: h.__setitem__("layers", "Dense")),
                          "'layers' should be a list"),
    "optimizer mismatch": (lambda a: a.__setitem__("optim/0/m", np.zeros(5, np.float32)),
                           "optimizer state does not fit"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_crafted_files_are_refused(tmp_path, name):
    model, _, _ = _trained()
    good = tmp_path / "good.npz"
    model.save(good)
    change, match = BAD_FILES[name]
    bad = tmp_path / "bad.npz"
    _rewrite(good, bad, change)
    with pytest.raises(gn.ModelFileError, match=match):
        gn.load(bad)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    model, _, _ = _trained()
    model.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(gn.ModelFileError):
        gn.load(tmp_path / "cut.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(gn.ModelFileError, match="not a readable .npz"):
        gn.load(tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(gn.ModelFileError, match="single .npy"):
        gn.load(tmp_path / "single.npy")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(gn.ModelFileError, match="missing array '__gpunn__'"):
        gn.load(tmp_path / "empty.npz")
    with pytest.raises(FileNotFoundError):
        gn.load(tmp_path / "nothing.npz")


def test_save_is_atomic(tmp_path, monkeypatch):
    model, _, _ = _trained()
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left


# ---------------------------------------------------------------------- a writer killed mid-write
WRITER = textwrap.dedent("""
    import sys, gpunn as gn, numpy as np
    model = gn.Sequential([gn.Dense(512, 1024), gn.Dense(1024, 512)], device="cpu", seed=0)
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        model.layers[0].params["b"][...] = i   # each checkpoint is recognisable
        model.save(sys.argv[1])
""")


@pytest.mark.slow
def test_killed_writer_never_leaves_a_broken_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)  # mid-write, most likely
        proc.wait()
        if path.exists():
            model = gn.load(path, device="cpu")  # never a ModelFileError
            b = gn.to_numpy(model.layers[0].params["b"])
            assert np.all(b == b[0]) and b[0] >= 1
            seen.append(int(b[0]))
    assert seen, "no checkpoint was ever completed"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.npz"]
    assert all(name.startswith(".gpunn-") for name in leftovers)  # only temp files remain
    assert len(leftovers) <= 1  # each write removed those of the writers killed before it


def test_a_failed_write_names_the_users_file_not_the_temporary_one(tmp_path):
    model, _, _ = _trained()
    long = tmp_path / ("m" * 300 + ".npz")
    with pytest.raises(OSError) as info:
        model.save(long)
    assert ".gpunn-" not in str(info.value) and str(long) in str(info.value)
    assert list(tmp_path.iterdir()) == []


SLOW_SAVE = textwrap.dedent("""
    import os, sys, time, gpunn as gn
    model = gn.Sequential([gn.Dense(4, 8)], device="cpu", seed=0)
    def slow(fd):
        print("writing", flush=True)
        time.sleep(60)
    os.fsync = slow
    model.save(sys.argv[1])
""")


def test_sigterm_during_a_save_removes_the_temporary_file(tmp_path):
    """SIGTERM (docker stop, timeout, Slurm, systemd) while a file is written: the
    temporary file goes, the previous file stays, and the process ends with 143."""
    path = tmp_path / "m.npz"
    path.write_bytes(b"previous")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.iterdir())) == 2  # the temporary file exists
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]
    assert path.read_bytes() == b"previous"


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    from gpunn import atomic

    model, _, _ = _trained()
    path = tmp_path / "m.npz"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    prefix = atomic._temp_prefix(str(path.resolve()))
    stale = tmp_path / f"{prefix}{atomic._HOST}-{gone.pid}-abc123.npz.tmp"
    live = tmp_path / f"{prefix}{atomic._HOST}-{os.getppid()}-def456.npz.tmp"
    away = tmp_path / f"{prefix}{'0' * 10}-{gone.pid}-ghi789.npz.tmp"  # another machine
    old_away = tmp_path / f"{prefix}{'0' * 10}-{gone.pid}-jkl012.npz.tmp"
    other = tmp_path / f"{atomic._temp_prefix('other.npz')}{atomic._HOST}-{gone.pid}-x.tmp"
    # Killed but not yet reaped by its parent (a zombie): gone all the same.
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie.kill()
    time.sleep(0.2)
    unreaped = tmp_path / f"{prefix}{atomic._HOST}-{zombie.pid}-mno345.npz.tmp"
    # A process number reused: a process started after the file was last written.
    reused_by = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    reused = tmp_path / f"{prefix}{atomic._HOST}-{reused_by.pid}-pqr678.npz.tmp"
    old_style, new_style = tmp_path / ".gpunn-ab12cd_9.npz.tmp", tmp_path / ".gpunn-zz.npz.tmp"
    for p in (stale, live, away, old_away, other, unreaped, reused, old_style, new_style):
        p.write_bytes(b"half a file")
    day_ago = time.time() - 86400
    for p in (old_away, reused, old_style, new_style):
        os.utime(p, (day_ago, day_ago))
    try:
        model.save(path)
    finally:
        reused_by.kill()
        reused_by.wait()
        zombie.wait()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["m.npz", live.name, away.name, other.name, new_style.name])


def test_a_full_disk_names_the_users_file(tmp_path, monkeypatch):
    import errno

    model, _, _ = _trained()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match="No space left") as info:
        model.save(tmp_path / "m.npz")
    assert info.value.filename == str(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- saving what loads
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("edit, match", [
    (lambda m: m.layers[0].params.__setitem__("W", m.backend.zeros((3, 3))),
     r"layer 0 \('dense_0'.*'W'.*\(3, 4\).*\(3, 3\)"),
    (lambda m: m.layers[1].buffers.__setitem__("running_var", m.backend.zeros((5,))),
     r"layer 1 \('batchnorm_1'.*'running_var'.*\(4,\).*\(5,\)"),
    (lambda m: m.layers[2].layers[0].params.__setitem__("b", m.backend.zeros((2, 1))),
     r"layer 2\.0 .*'b'.*\(1,\).*\(2, 1\)"),
    (lambda m: m.layers[0].params.pop("b"), r"'b'.*missing"),
])
def test_save_refuses_arrays_the_layers_do_not_declare(tmp_path, suffix, edit, match):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors", reason="safetensors not installed")
    model = gn.Sequential([gn.Dense(3, 4), gn.BatchNorm(4),
                           gn.Sequential([gn.Dense(4, 1)], device="cpu")], device="cpu",
                          seed=0)
    edit(model)
    with pytest.raises(ValueError, match=match):
        model.save(tmp_path / f"m{suffix}")
    with pytest.raises(ValueError, match=match):
        gn.files.dumps(model)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize("extra, match", [
    ({"when": __import__("datetime").date(2020, 1, 2)}, r"'when'.*date"),
    ({"info": {"labels": {1, 2}}}, r"'info'\]\['labels'.*set"),
    ({"scale": np.float32(2.0)}, r"'scale'.*float32"),
    ({3: "x"}, r"key 3.*int"),
    ({"nan": float("nan")}, r"'nan'.*nan"),
])
def test_save_refuses_extra_that_json_cannot_hold(tmp_path, extra, match):
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    model.extra = extra
    with pytest.raises(TypeError, match=match):
        model.save(tmp_path / "m.npz")
    model.extra = {}
    with pytest.raises(TypeError, match=match):
        gn.files.save(model, tmp_path / "m.npz", extra=extra)
    assert list(tmp_path.iterdir()) == []


def test_load_leaves_the_callers_generator_alone(tmp_path):
    model = gn.Sequential([gn.Dense(3, 4), gn.Dropout(0.5), gn.Dense(4, 1)], device="cpu",
                          seed=0)
    model.save(tmp_path / "m.npz")
    backend, twin = gn.get_backend("cpu", seed=5), gn.get_backend("cpu", seed=5)
    backend.random.normal((2,)), twin.random.normal((2,))  # a generator already in use
    loaded = gn.load(tmp_path / "m.npz", device=backend)
    assert np.array_equal(gn.to_numpy(backend.random.normal((4,))),
                          gn.to_numpy(twin.random.normal((4,))))
    assert loaded.backend.name == backend.name and loaded.dtype == backend.dtype_name


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.layers[0].params["W"].__setitem__((0, 0), np.nan), r"param/0/W.*NaN or Inf"),
    (lambda m: m.layers[1].buffers["running_var"].__setitem__(0, -1.0),
     r"buffer/1/running_var.*>= 0"),
    (lambda m: m.layers[0].params.__setitem__("b", np.zeros(4, np.complex64)),
     r"param/0/b has dtype complex64"),
    (lambda m: setattr(m, "preprocessor", gn.preprocessing.Standardizer(
        [1e200, 0, 0], [1.0, 1.0, 1.0])), r"prep/mean.*float32's range"),
    (lambda m: setattr(m, "preprocessor", gn.preprocessing.Standardizer(
        [0, 0], [1.0, 1.0])), r"'prep/mean' has shape \(2,\), the architecture needs \(3,\)"),
    (lambda m: setattr(m, "preprocessor", gn.preprocessing.Standardizer(
        [[0, 0, 0]], [[1.0, 1.0, 1.0]])), r"'prep/mean' has shape \(1, 3\), the architecture"),
])
def test_save_refuses_what_load_would_refuse(tmp_path, edit, match):
    """Whatever a load checks in a file's contents, a save checks before writing it."""
    model = gn.Sequential([gn.Dense(3, 4), gn.BatchNorm(4), gn.Dense(4, 1)], device="cpu",
                          seed=0)
    edit(model)
    with pytest.raises(ValueError, match=match):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("edit, match", [
    (lambda m: setattr(m.layers[1], "p", 1.5), r"layer 1 \(Dropout\): invalid config "
                                                r"\(Dropout p: expected a probability"),
    (lambda m: setattr(m.layers[0], "kernel_l2", -1.0), r"layer 0 \(Dense\): invalid "
                                                         r"config \(Dense kernel_l2"),
    (lambda m: setattr(m.layers[2], "momentum", 2.0), r"layer 2 \(BatchNorm\): invalid "
                                                       r"config \(BatchNorm momentum"),
    (lambda m: setattr(m.loss, "delta", -1.0), r"invalid loss \(Huber delta: expected a "
                                                r"positive number, got -1.0\)"),
], ids=["dropout-p", "kernel_l2", "batchnorm-momentum", "huber-delta"])
def test_save_refuses_layer_settings_no_load_accepts(tmp_path, edit, match):
    """A layer's (or the loss's) setting changed after it was made is judged by its
    constructor before a save, as a load judges it: never a file gn.load refuses."""
    model = gn.Sequential([gn.Dense(3, 4, kernel_l2=0.01), gn.Dropout(0.1), gn.BatchNorm(4),
                           gn.Dense(4, 1)], device="cpu", seed=0)
    X, y = gn.data.make_linear(16, seed=0)
    model.fit(X, y, loss=gn.losses.get("huber", delta=1.0), epochs=1, verbose=0)
    edit(model)
    with pytest.raises(ValueError, match=rf"cannot save .*m.npz: {match}"):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("edit, match", [
    (lambda opt: setattr(opt, "lr", 0.0), r"lr: expected a number in \(0.0, inf\), got 0.0"),
    (lambda opt: setattr(opt, "t", -1), r"step counter -1: expected an integer >= 0"),
    (lambda opt: setattr(opt, "weight_decay", -0.5), r"weight_decay: expected a number in"),
], ids=["lr-0", "t-negative", "weight_decay-negative"])
def test_save_refuses_optimizer_settings_no_load_accepts(tmp_path, suffix, edit, match):
    """Settings changed on an optimiser after it was made (a learning rate set to 0 by
    hand, a step counter wound back) are checked by its constructor again before a save,
    as a load does: the file is never one gn.load refuses."""
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    X, y = gn.data.make_linear(32, seed=0)
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    model.fit(X, y, loss="mse", optimizer=gn.optim.Adam(lr=0.01), epochs=1, verbose=0)
    edit(model.optimizer)
    with pytest.raises(ValueError, match=rf"cannot save .*m{suffix}: the optimizer's settings "
                                         rf"would not load back \(.*{match}"):
        model.save(tmp_path / f"m{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_save_names_a_layer_config_json_cannot_hold(tmp_path):
    """A user's layer whose config holds a NumPy number: named, not a raw json error."""
    class Scaled(gn.layers.Dense):
        def get_config(self):
            return {**super().get_config(), "gain": np.float32(2.0)}

    Scaled._serializes_as = "Dense"
    model = gn.Sequential([Scaled(3, 1)], device="cpu", seed=0)
    with pytest.raises(TypeError, match=r"layer 0 \(Dense\) config\['gain'\].*float32"):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_an_optimizer_that_never_stepped_saves_and_loads(tmp_path):
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    model.optimizer = gn.optim.Adam(lr=0.05)
    model.save(tmp_path / "m.npz")
    loaded = gn.load(tmp_path / "m.npz", device="cpu")
    assert loaded.optimizer.lr == 0.05 and loaded.optimizer.t == 0
    loaded.fit(np.ones((4, 3)), np.ones(4), loss="mse", epochs=1, verbose=0)


def test_save_refuses_an_optimizer_state_of_another_model(tmp_path):
    other = gn.Sequential([gn.Dense(3, 2)], device="cpu", seed=0)
    other.fit(np.ones((4, 3)), np.ones((4, 2)), loss="mse", optimizer="adam", epochs=1,
              verbose=0)
    model = gn.Sequential([gn.Dense(3, 1)], device="cpu", seed=0)
    model.optimizer = other.optimizer
    with pytest.raises(ValueError, match=r"optimi[sz]er.*\(3, 2\).*0\.W.*\(3, 1\)"):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []
    model.save(tmp_path / "m.npz", include_optimizer=False)


def test_save_errors_name_the_file(tmp_path):
    model = gn.Sequential([gn.Dense(3, 4), gn.Dense(4, 1)], device="cpu", seed=0)
    model.layers[1].params["W"][0, 0] = np.inf
    with pytest.raises(ValueError,
                       match=r"cannot save .*m\.npz: param/dense_1/W \(archive member param/1/W\)"):
        model.save(tmp_path / "m.npz")
