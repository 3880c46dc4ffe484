"""CPU-trained and GPU-trained models agree: ``gpunn bench --agreement``.

One small float32 network (a Conv1D, then Dense layers) starts from the same weights on
the CPU and on the device asked for and is trained on the same data in the same order.
Each trained model is saved and loaded on the other device. Checks:

- the two trainings end with the same weights, to float32 tolerance (a GPU sums in
  another order, so a few ulps per step, compounded over the steps);
- the loss histories agree;
- a file written on one device loads on the other with its weights bit for bit;
- the same weights predict the same on both devices (float32 tolerance);
- the device-trained model, loaded on the CPU, predicts what the CPU-trained one does.

With ``--device cpu`` both sides are the CPU: the plumbing only (what a dry run checks).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

#: Tolerances: ``|a - b| <= atol + rtol * |b|`` elementwise.
WEIGHTS_TOL = {"rtol": 1e-3, "atol": 1e-4}
PREDICT_TOL = {"rtol": 1e-3, "atol": 1e-4}
SAME_WEIGHTS_PREDICT_TOL = {"rtol": 1e-4, "atol": 1e-5}
HISTORY_RTOL = 1e-4


def _data(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, 20)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 0.5)
    return X, y


def _model(device: str, seed: int):
    import gpunn as gn

    return gn.Sequential([gn.Reshape((1, 20)),
                          gn.Conv1D(1, 4, 3, padding=1, activation="relu"),
                          gn.Flatten(),
                          gn.Dense(80, 32, activation="tanh"),
                          gn.Dense(32, 3, activation="softmax")],
                         device=device, dtype="float32", seed=seed)


def _compare(name: str, a_list, b_list, rtol: float = 0.0, atol: float = 0.0) -> dict:
    """One check: the largest absolute difference and whether every element is within
    ``atol + rtol * |b|`` (exact equality when both are 0)."""
    worst, ok = 0.0, True
    for a, b in zip(a_list, b_list):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            return {"check": name, "max_abs_diff": None, "rtol": rtol, "atol": atol,
                    "ok": False, "note": f"shapes differ: {a.shape} vs {b.shape}"}
        diff = np.abs(a - b)
        worst = max(worst, float(diff.max(initial=0.0)))
        ok = ok and bool(np.all(diff <= atol + rtol * np.abs(b)))
    return {"check": name, "max_abs_diff": worst, "rtol": rtol, "atol": atol, "ok": ok}


def agreement(device: str, folder: str, rows: int = 512, epochs: int = 2,
              batch_size: int = 32, seed: int = 0) -> dict:
    """Train on the CPU and on ``device``, save, load across, compare (module docstring).

    Returns ``{"device", "checks": [...], "accuracy": {...}, "ok"}``; a check is
    ``{"check", "max_abs_diff", "rtol", "atol", "ok"}``.
    """
    import gpunn as gn

    X, y = _data(rows, seed)
    cpu, dev = _model("cpu", seed), _model(device, seed)
    for a, b in zip(cpu.parameters(), dev.parameters()):  # the same starting weights
        b[...] = dev.backend.asarray(gn.to_numpy(a))
    kwargs = dict(loss="cross_entropy", epochs=epochs, batch_size=batch_size, shuffle=False,
                  verbose=0)
    h_cpu = cpu.fit(X, y, optimizer=gn.optim.Adam(lr=1e-3), **kwargs)
    h_dev = dev.fit(X, y, optimizer=gn.optim.Adam(lr=1e-3), **kwargs)
    cpu_file = os.path.join(folder, "trained-on-cpu.npz")
    dev_file = os.path.join(folder, f"trained-on-{device.replace(':', '')}.npz")
    cpu.save(cpu_file)
    dev.save(dev_file)
    cpu_there = gn.load(cpu_file, device=device)
    dev_here = gn.load(dev_file, device="cpu")

    def weights(model):
        return [gn.to_numpy(p) for p in model.parameters()]

    def predict(model):
        return [gn.to_numpy(model.predict(X))]

    checks = [
        _compare(f"weights: trained on cpu vs on {device}", weights(dev), weights(cpu),
                 **WEIGHTS_TOL),
        _compare("loss history: cpu vs device", [h_dev.history["loss"]],
                 [h_cpu.history["loss"]], rtol=HISTORY_RTOL),
        _compare(f"file: saved on cpu, loaded on {device} (bit for bit)",
                 weights(cpu_there), weights(cpu)),
        _compare(f"file: saved on {device}, loaded on cpu (bit for bit)",
                 weights(dev_here), weights(dev)),
        _compare(f"predictions: cpu-trained on {device} vs on cpu", predict(cpu_there),
                 predict(cpu), **SAME_WEIGHTS_PREDICT_TOL),
        _compare(f"predictions: {device}-trained loaded on cpu vs cpu-trained",
                 predict(dev_here), predict(cpu), **PREDICT_TOL),
    ]
    accuracy = {"cpu": float(np.mean(predict(cpu)[0].argmax(axis=1) == y)),
                device: float(np.mean(predict(dev)[0].argmax(axis=1) == y))}
    return {"device": device, "rows": rows, "epochs": epochs, "batch_size": batch_size,
            "checks": checks, "accuracy": accuracy, "ok": all(c["ok"] for c in checks)}


def text(report: dict) -> str:
    """The report as a markdown table."""
    lines = [f"CPU-trained vs {report['device']}-trained, float32, {report['rows']} rows, "
             f"{report['epochs']} epochs of batches of {report['batch_size']}, Adam; "
             "tolerance |a - b| <= atol + rtol * |b|.", "",
             "| check | max abs diff | rtol | atol | ok |", "|---|---|---|---|---|"]
    for c in report["checks"]:
        diff = "n/a" if c["max_abs_diff"] is None else f"{c['max_abs_diff']:.3g}"
        lines.append(f"| {c['check']} | {diff} | {c['rtol']:g} | {c['atol']:g} | "
                     f"{'yes' if c['ok'] else 'NO'} |")
    lines += ["", "Training accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                   report["accuracy"].items()),
              f"All agree: {'yes' if report['ok'] else 'NO'}"]
    return "\n".join(lines)


def run_agreement(args, device: str) -> int:
    """``gpunn bench --agreement``: print the table, write ``--json``/``--markdown``;
    exit 1 when a check fails."""
    from ..atomic import check_outputs, write_text

    check_outputs([args.json, args.markdown])
    with tempfile.TemporaryDirectory(prefix="gpunn-agreement-") as folder:
        report = agreement(device, folder)
    table = text(report)
    print(table, flush=True)
    if args.json:
        write_text(args.json, json.dumps(report, indent=2))
    if args.markdown:
        write_text(args.markdown, table + "\n")
    if not report["ok"]:
        print("gpunn bench --agreement: the devices disagree (see the table)",
              file=sys.stderr)
        return 1
    return 0
