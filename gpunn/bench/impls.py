"""The implementations the benchmark times side by side, each one training epoch of the
same model on the same data: gpunn's ``fit``, a hand-written NumPy/CuPy loop, PyTorch
eager. Each epoch function also offers ``make_step()``: one step to profile on a GPU."""

from __future__ import annotations

import os
import time

import numpy as np

from ..callbacks import Callback
from .workloads import LR


def _make_gpunn(dev, widths, X, y, batch, dtype="float32"):
    import gpunn as gn

    arch = [{"input_dim": a, "output_dim": b, "activation": "relu"}
            for a, b in zip(widths[:-2], widths[1:-1])]
    arch.append({"input_dim": widths[-2], "output_dim": widths[-1], "activation": "softmax"})
    model = gn.Sequential.from_architecture(arch, device=dev.name, dtype=dtype, seed=0)
    return _gpunn_epoch(model, X, y, batch)


def _gpunn_epoch(model, X, y, batch):
    """One epoch of ``fit`` on ``model`` (with ``make_step`` and ``inner``, see below)."""
    import gpunn as gn

    opt = gn.optim.Adam(lr=LR)
    Xd, yd = model.backend.asarray(X), model.backend.asarray(y)

    def epoch(n_rows):
        model.fit(Xd[:n_rows], yd[:n_rows], loss="categorical_crossentropy", optimizer=opt,
                  epochs=1, batch_size=batch, verbose=0)

    def make_step():
        """One training step exactly as fit runs it per batch (for launch counts)."""
        if model.optimizer is None:
            epoch(batch)
        return gn.training.step_function(model, Xd[:batch], yd[:batch])

    def inner(n_rows):
        """Wall and host seconds of the second epoch of one ``fit(epochs=2)`` call: what
        each epoch of a user's multi-epoch fit costs (fit's input checks, one pass over
        the data, run once per call, not once per epoch)."""
        clock = _EpochClock()
        model.fit(Xd[:n_rows], yd[:n_rows], loss="categorical_crossentropy", optimizer=opt,
                  epochs=2, batch_size=batch, verbose=0, callbacks=[clock])
        return clock.times[-1]

    epoch.make_step, epoch.inner, epoch.model = make_step, inner, model
    return epoch


def _make_gpunn_cnn(dev, net, X, y, batch, dtype="float32"):
    """gpunn's layers for a :class:`ConvNet`: Reshape, Conv1D/Conv2D, MaxPool1D/MaxPool2D,
    Flatten, Dense."""
    import gpunn as gn

    layers, flat = [gn.Reshape(tuple(net.input_shape))], False
    specs = list(net.walk())
    for i, (spec, shape, out) in enumerate(specs):
        two_d = len(shape) == 3
        if spec[0] == "conv":
            conv = gn.Conv2D if two_d else gn.Conv1D
            layers.append(conv(shape[0], spec[1], spec[2], stride=spec[3], padding=spec[4],
                               activation="relu"))
        elif spec[0] == "maxpool":
            layers.append((gn.MaxPool2D if two_d else gn.MaxPool1D)(spec[1]))
        else:
            if not flat:
                layers.append(gn.Flatten())
                flat = True
            last = i == len(specs) - 1
            in_features = 1
            for d in shape:
                in_features *= d
            layers.append(gn.Dense(in_features, out[0],
                                   activation="softmax" if last else "relu"))
    model = gn.Sequential(layers, device=dev.name, dtype=dtype, seed=0)
    return _gpunn_epoch(model, X, y, batch)


class _EpochClock(Callback):
    """Records each epoch's wall and host (thread CPU) seconds; an epoch ends with fit's
    one host read of the loss, so its device work is included."""

    def __init__(self):
        self.times = []

    def on_epoch_begin(self, model, epoch):
        self._t0, self._h0 = time.perf_counter(), time.thread_time()

    def on_epoch_end(self, model, epoch, logs):
        self.times.append((time.perf_counter() - self._t0, time.thread_time() - self._h0))


def _make_reference(dev, widths, X, y, batch, dtype="float32"):
    """A from-scratch loop doing exactly fit's work, written tightly by hand: one flat
    buffer for parameters, gradients and Adam moments (folded bias corrections), batches
    gathered through the permutation into reused buffers, softmax cross-entropy from
    labels, an accuracy count and the loss per step kept on the device, read once."""
    if dtype != "float32":
        return None  # mixed precision by hand is not the "no framework" baseline
    xp = dev.xp
    rng = np.random.default_rng(0)
    flat, Ws, bs, gWs, gbs = _flat_network(xp, widths, rng)
    Xd, yd = xp.asarray(X), xp.asarray(y)
    xbuf, ybuf = xp.empty((batch, widths[0]), xp.float32), xp.empty(batch, yd.dtype)
    t = [0]
    f32 = np.float32

    def step(xb, yb, k, losses, correct):
        acts = [xb]
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = xp.matmul(acts[-1], W)
            z += b
            if i < len(Ws) - 1:
                xp.maximum(z, 0, out=z)
            acts.append(z)
        z = acts[-1]
        rows = xp.arange(z.shape[0])
        z -= z.max(axis=1, keepdims=True)
        e = xp.exp(z)
        s = e.sum(axis=1, keepdims=True)
        losses[k] = (xp.log(s[:, 0]) - z[rows, yb]).mean()
        e /= s
        correct[k] = (e.argmax(axis=1) == yb).sum()
        g = e
        g[rows, yb] -= 1
        g *= f32(1.0 / z.shape[0])
        for i in range(len(Ws) - 1, -1, -1):
            xp.matmul(acts[i].T, g, out=gWs[i])
            g.sum(axis=0, out=gbs[i])
            if i:
                g = xp.matmul(g, Ws[i].T)
                g *= acts[i] > 0
        t[0] += 1
        _adam_flat(xp, *flat, t[0])

    def epoch(n_rows):
        perm = xp.asarray(rng.permutation(n_rows))
        steps = -(-n_rows // batch)
        losses = xp.zeros(steps, dtype=xp.float32)
        correct = xp.zeros(steps, dtype=xp.int64)
        for k, lo in enumerate(range(0, n_rows, batch)):
            idx = perm[lo:lo + batch]
            if idx.shape[0] == batch:
                xb, yb = _take(xp, Xd, idx, xbuf), _take(xp, yd, idx, ybuf)
            else:
                xb, yb = xp.take(Xd, idx, axis=0), xp.take(yd, idx)
            step(xb, yb, k, losses, correct)
        float(losses.sum()), int(correct.sum())  # the epoch's one host read

    def make_step():
        losses, correct = xp.zeros(1, dtype=xp.float32), xp.zeros(1, dtype=xp.int64)
        return lambda: step(Xd[:batch], yd[:batch], 0, losses, correct)

    epoch.make_step = make_step
    return epoch


def _take(xp, a, idx, out):
    """Rows ``a[idx]`` into ``out``; as fit does on NumPy, mode="clip" writes straight into
    ``out`` (the default gathers into a hidden buffer first; the indices are in range)."""
    if xp is np:
        return xp.take(a, idx, axis=0, out=out, mode="clip")
    return xp.take(a, idx, axis=0, out=out)


def _flat_network(xp, widths, rng):
    """Flat float32 buffers (parameters, gradients, Adam moments, scratch) and the layers'
    weight/bias views into the first two, He-initialised."""
    shapes = list(zip(widths[:-1], widths[1:]))
    total = sum(a * b + b for a, b in shapes)
    flat = tuple(xp.zeros(total, dtype=xp.float32) for _ in range(5))
    P, G = flat[:2]
    Ws, bs, gWs, gbs, offset = [], [], [], [], 0
    for a, b in shapes:
        Ws.append(P[offset:offset + a * b].reshape(a, b))
        gWs.append(G[offset:offset + a * b].reshape(a, b))
        bs.append(P[offset + a * b:offset + a * b + b])
        gbs.append(G[offset + a * b:offset + a * b + b])
        offset += a * b + b
        Ws[-1][...] = xp.asarray(rng.standard_normal((a, b)) * np.sqrt(2.0 / a))
    return flat, Ws, bs, gWs, gbs


def _adam_flat(xp, P, G, M, V, S, t: int) -> None:
    """Adam over the flat buffers in 12 in-place passes, bias corrections folded."""
    f32 = np.float32
    c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
    xp.subtract(G, M, out=S)
    xp.multiply(S, f32(0.1), out=S)
    xp.add(M, S, out=M)
    xp.multiply(G, G, out=S)
    xp.subtract(S, V, out=S)
    xp.multiply(S, f32(0.001), out=S)
    xp.add(V, S, out=V)
    xp.sqrt(V, out=S)
    xp.add(S, f32(1e-8 * c2 ** 0.5), out=S)
    xp.divide(M, S, out=S)
    xp.multiply(S, f32(LR * c2 ** 0.5 / c1), out=S)
    xp.subtract(P, S, out=P)


def _make_torch(dev, widths, X, y, batch, dtype="float32"):
    import torch

    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return _torch_epoch(dev, torch.nn.Sequential(*layers), X, y, batch, dtype)


def _make_torch_cnn(dev, net, X, y, batch, dtype="float32"):
    """PyTorch's layers for a :class:`ConvNet` (eager, as a user writes it)."""
    import torch

    nn = torch.nn
    layers, flat = [nn.Unflatten(1, tuple(net.input_shape))], False
    for spec, shape, out in net.walk():
        two_d = len(shape) == 3
        if spec[0] == "conv":
            conv = nn.Conv2d if two_d else nn.Conv1d
            layers += [conv(shape[0], spec[1], spec[2], stride=spec[3], padding=spec[4]),
                       nn.ReLU()]
        elif spec[0] == "maxpool":
            layers.append((nn.MaxPool2d if two_d else nn.MaxPool1d)(spec[1]))
        else:
            if not flat:
                layers.append(nn.Flatten())
                flat = True
            in_features = 1
            for d in shape:
                in_features *= d
            layers.append(nn.Linear(in_features, out[0]))
            layers.append(nn.ReLU())
    layers.pop()  # the logits: the loss applies the softmax
    return _torch_epoch(dev, nn.Sequential(*layers), X, y, batch, dtype)


def _torch_epoch(dev, model, X, y, batch, dtype):
    """One epoch of a PyTorch training loop on ``model`` (with ``make_step``)."""
    import torch

    low = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    half = dtype == "float16"

    device = "cpu" if dev.kind == "cpu" else f"cuda:{dev.index}"
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, foreach=True)  # its fast Adam
    lossf = torch.nn.CrossEntropyLoss()
    Xd = torch.as_tensor(X, device=device)
    yd = torch.as_tensor(y, device=device)

    # 16-bit: PyTorch's own recipe, autocast (plus a gradient scaler for float16).
    scaler = torch.amp.GradScaler(device, enabled=half)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        if low is None:  # float32: no autocast, no scaler
            loss = lossf(model(xb), yb)
            loss.backward()
            opt.step()
            return loss.detach()
        with torch.autocast(device_type=device.split(":")[0], dtype=low):
            loss = lossf(model(xb), yb)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach().float()

    def epoch(n_rows):
        perm = torch.randperm(n_rows, device=device)
        total = torch.zeros((), device=device)
        for lo in range(0, n_rows, batch):  # each batch gathered, as gpunn does
            idx = perm[lo:lo + batch]
            total += step(Xd[idx], yd[idx])
        total.item()

    epoch.make_step = lambda: (lambda: step(Xd[:batch], yd[:batch]))
    epoch.model = model
    return epoch


def _make_jax(dev, widths, X, y, batch, dtype="float32"):
    """JAX + optax: the whole step (softmax cross-entropy from labels, Adam, accuracy)
    compiled by XLA with ``jax.jit``; batches gathered inside the compiled step."""
    if dtype != "float32":
        return None
    import jax
    import jax.numpy as jnp
    import optax

    platform = "cpu" if dev.kind == "cpu" else "gpu"
    device = jax.devices(platform)[0]
    rng = np.random.default_rng(0)
    params = [(jax.device_put(jnp.asarray(rng.standard_normal((a, b)) * np.sqrt(2.0 / a),
                                          dtype=jnp.float32), device),
               jax.device_put(jnp.zeros(b, jnp.float32), device))
              for a, b in zip(widths[:-1], widths[1:])]
    tx = optax.adam(LR)
    state = {"params": params, "opt": tx.init(params)}
    Xd, yd = jax.device_put(jnp.asarray(X), device), jax.device_put(jnp.asarray(y), device)

    def loss_fn(p, xb, yb):
        h = xb
        for i, (W, b) in enumerate(p):
            h = h @ W + b
            if i < len(p) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        loss = -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))
        return loss, jnp.sum(jnp.argmax(h, axis=1) == yb)

    @jax.jit
    def step(p, o, idx):
        xb, yb = Xd[idx], yd[idx]
        (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, xb, yb)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss, correct

    def epoch(n_rows):
        perm = jax.device_put(jnp.asarray(rng.permutation(n_rows)), device)
        p, o, total, correct = state["params"], state["opt"], 0.0, 0
        for lo in range(0, n_rows, batch):
            p, o, loss, c = step(p, o, perm[lo:lo + batch])
            total, correct = total + loss, correct + c
        state["params"], state["opt"] = p, o
        float(total), int(correct)  # the epoch's one host read (waits for the device)

    return epoch


def _keras():
    """Keras 3 on its JAX backend, or None (not installed, or imported on another
    backend already: Keras picks its backend once per process)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        return None
    return keras if keras.backend.backend() == "jax" else None


def _make_keras(dev, widths, X, y, batch, dtype="float32"):
    """Keras 3 on JAX as a Keras user trains: a Sequential of Dense layers compiled with
    ``jit_compile=True``, Adam, sparse softmax cross-entropy from logits, accuracy, and
    ``model.fit`` on the NumPy arrays (Keras shuffles and batches them itself)."""
    keras = _keras()
    if dtype != "float32" or dev.kind != "cpu" or keras is None:
        return None
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((widths[0],))]
        + [keras.layers.Dense(b, activation="relu") for b in widths[1:-1]]
        + [keras.layers.Dense(widths[-1])])
    model.compile(optimizer=keras.optimizers.Adam(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=True)

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t0, self._h0 = time.perf_counter(), time.thread_time()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append((time.perf_counter() - self._t0,
                               time.thread_time() - self._h0))

    def epoch(n_rows):
        model.fit(X[:n_rows], y[:n_rows], batch_size=batch, epochs=1, verbose=0)

    def inner(n_rows):
        """The second epoch of one ``fit(epochs=2)``, as for gpunn."""
        clock = Clock()
        model.fit(X[:n_rows], y[:n_rows], batch_size=batch, epochs=2, verbose=0,
                  callbacks=[clock])
        return clock.times[-1]

    epoch.inner, epoch.model = inner, model
    return epoch


IMPLS = {"gpunn": _make_gpunn, "reference": _make_reference, "torch": _make_torch,
         "jax": _make_jax, "keras": _make_keras}
#: The implementations of the convolutional workloads (the others are not measured there:
#: the hand-written loop and JAX's are dense networks only).
CONV_IMPLS = {"gpunn": _make_gpunn_cnn, "torch": _make_torch_cnn}
#: The dtypes the convolutional workloads run in: CuPy's bfloat16 matmul is 2-D only, and
#: a convolution's is batched.
CONV_DTYPES = ("float32", "float16")


def factory(impl: str, size: str):
    """The builder of ``impl`` for workload ``size``, called as ``make(dev, widths, X, y,
    batch, dtype)``; it returns None where ``impl`` has no version of the workload."""
    from .workloads import CONV_NETS

    net = CONV_NETS.get(size)
    if net is None:
        return IMPLS[impl]
    make = CONV_IMPLS.get(impl)

    def build(dev, widths, X, y, batch, dtype="float32"):
        if make is None or dtype not in CONV_DTYPES:
            return None
        return make(dev, net, X, y, batch, dtype)

    return build



def usable(impl: str, dev) -> bool:
    """Whether an implementation's library is installed and reaches the device."""
    if impl == "torch":
        return _torch_usable(dev)
    if impl == "jax":
        try:
            import jax
            import optax  # noqa: F401

            return bool(jax.devices("cpu" if dev.kind == "cpu" else "gpu"))
        except Exception:
            return False
    if impl == "keras":
        return dev.kind == "cpu" and _keras() is not None
    return True


def why_unusable(impl: str, dev) -> str | None:
    """None when ``impl`` runs on ``dev``; else why not, in a few words."""
    if usable(impl, dev):
        return None
    import importlib.util

    absent = [m for m in {"torch": ["torch"], "jax": ["jax", "optax"],
                          "keras": ["keras", "jax"]}.get(impl, [])
              if importlib.util.find_spec(m) is None]
    if not absent:
        return f"not usable on {dev.name}"
    return "not installed" if absent == [impl] else f"{' and '.join(absent)} not installed"


def _torch_usable(dev) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return dev.kind == "cpu" or torch.cuda.is_available()


# ---------------------------------------------------------------------- measurement
#: Precision name -> (model dtype, row label). TF32 is float32 with TF32 matmuls.
