"""The implementations the benchmark times side by side, each one training epoch of the
same model on the same data: gpunn's ``fit``, a hand-written NumPy/CuPy loop, PyTorch
eager. Each epoch function also offers ``make_step()``: one step to profile on a GPU."""

from __future__ import annotations

import numpy as np

from .workloads import LR


def _make_gpunn(dev, widths, X, y, batch, dtype="float32"):
    import gpunn as gn

    arch = [{"input_dim": a, "output_dim": b, "activation": "relu"}
            for a, b in zip(widths[:-2], widths[1:-1])]
    arch.append({"input_dim": widths[-2], "output_dim": widths[-1], "activation": "softmax"})
    model = gn.Sequential.from_architecture(arch, device=dev.name, dtype=dtype, seed=0)
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

    epoch.make_step = make_step
    return epoch


def _make_reference(dev, widths, X, y, batch, dtype="float32"):
    """A from-scratch loop: what one writes by hand in NumPy/CuPy for the same maths."""
    if dtype != "float32":
        return None  # mixed precision by hand is not the "no framework" baseline
    xp = dev.xp
    rng = np.random.default_rng(0)
    Ws = [xp.asarray(rng.standard_normal((a, b)) * np.sqrt(2.0 / a), dtype=xp.float32)
          for a, b in zip(widths[:-1], widths[1:])]
    bs = [xp.zeros(b, dtype=xp.float32) for b in widths[1:]]
    params = Ws + bs
    m = [xp.zeros_like(p) for p in params]
    v = [xp.zeros_like(p) for p in params]
    Xd, yd = xp.asarray(X), xp.asarray(y)
    eye = xp.eye(widths[-1], dtype=xp.float32)
    t = [0]

    def step(xb, yb):
        acts = [xb]
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = acts[-1] @ W + b
            acts.append(xp.maximum(z, 0) if i < len(Ws) - 1 else z)
        z = acts[-1]
        e = xp.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        onehot = eye[yb]
        loss = -(onehot * xp.log(p + 1e-7)).sum() / len(xb)
        g = (p - onehot) / len(xb)
        gWs, gbs = [], []
        for i in range(len(Ws) - 1, -1, -1):
            gWs.append(acts[i].T @ g)
            gbs.append(g.sum(axis=0))
            if i:
                g = (g @ Ws[i].T) * (acts[i] > 0)
        grads = gWs[::-1] + gbs[::-1]
        t[0] += 1
        c1, c2 = 1 - 0.9 ** t[0], 1 - 0.999 ** t[0]
        for j, (prm, gr) in enumerate(zip(params, grads)):
            m[j] = 0.9 * m[j] + 0.1 * gr
            v[j] = 0.999 * v[j] + 0.001 * gr * gr
            prm -= LR * (m[j] / c1) / (xp.sqrt(v[j] / c2) + 1e-8)
        return loss

    def epoch(n_rows):
        perm = xp.asarray(rng.permutation(n_rows))
        Xs, ys = Xd[perm], yd[perm]
        total = xp.zeros((), dtype=xp.float32)
        for lo in range(0, n_rows, batch):
            total += step(Xs[lo:lo + batch], ys[lo:lo + batch])
        float(total)

    epoch.make_step = lambda: (lambda: step(Xd[:batch], yd[:batch]))
    return epoch


def _make_torch(dev, widths, X, y, batch, dtype="float32"):
    import torch

    low = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    half = dtype == "float16"

    device = "cpu" if dev.kind == "cpu" else f"cuda:{dev.index}"
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    lossf = torch.nn.CrossEntropyLoss()
    Xd = torch.as_tensor(X, device=device)
    yd = torch.as_tensor(y, device=device)

    # 16-bit: PyTorch's own recipe, autocast (plus a gradient scaler for float16).
    scaler = torch.amp.GradScaler(device, enabled=half)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=low or torch.float16,
                            enabled=low is not None):
            loss = lossf(model(xb), yb)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach().float()

    def epoch(n_rows):
        perm = torch.randperm(n_rows, device=device)
        Xs, ys = Xd[perm], yd[perm]
        total = torch.zeros((), device=device)
        for lo in range(0, n_rows, batch):
            total += step(Xs[lo:lo + batch], ys[lo:lo + batch])
        total.item()

    epoch.make_step = lambda: (lambda: step(Xd[:batch], yd[:batch]))
    return epoch


IMPLS = {"gpunn": _make_gpunn, "reference": _make_reference, "torch": _make_torch}


def _torch_usable(dev) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return dev.kind == "cpu" or torch.cuda.is_available()


# ---------------------------------------------------------------------- measurement
#: Precision name -> (model dtype, row label). TF32 is float32 with TF32 matmuls.
