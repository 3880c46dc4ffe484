"""The ``gpunn`` command line: ``gpunn train`` and ``gpunn devices``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from . import data as _data
from .backend import available_devices, cuda_status, get_backend
from .errors import DeviceFallbackWarning, DeviceUnavailableError
from .metrics import accuracy
from .model import Sequential
from .optim import Adam

#: Built-in classification problems for ``gpunn train``: loader kwargs and hidden layers.
TRAIN_DATASETS = {
    "spirals": ({"n": 3000, "classes": 3, "noise": 0.2}, [64, 64]),
    "moons": ({"n": 2000, "noise": 0.2}, [25, 50, 50, 25]),
    "circles": ({"n": 2000, "noise": 0.08}, [32, 32]),
    "xor": ({"n": 2000, "noise": 0.15}, [16, 16]),
    "blobs": ({"n": 1500, "classes": 3, "features": 4, "spread": 1.5}, [32]),
}


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpunn", description="Dense neural networks on "
                                     "NumPy (CPU) or CuPy (CUDA GPU).")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a network on a built-in dataset")
    train.add_argument("--dataset", choices=sorted(TRAIN_DATASETS), default="spirals")
    train.add_argument("--device", default=None,
                       help="auto (default, or $GPUNN_DEVICE), cpu, cuda, cuda:N")
    train.add_argument("--epochs", type=_positive(int), default=30)
    train.add_argument("--batch-size", type=_positive(int), default=64)
    train.add_argument("--lr", type=_positive(float), default=0.01)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="print only the final result")
    sub.add_parser("devices", help="list usable devices and why CUDA is or is not usable")
    from .bench import build_parser as bench_parser

    bench_parser(sub.add_parser("bench", help="training throughput on every usable device, "
                                "against a hand-written loop and PyTorch"))
    return parser


def cmd_train(args) -> int:
    with warnings.catch_warnings():
        # The device line below says the same thing as the fallback warning.
        warnings.simplefilter("ignore", DeviceFallbackWarning)
        backend = get_backend(args.device, seed=args.seed)
    print(f"device: {backend.describe()} [{backend.reason}]")
    kwargs, hidden = TRAIN_DATASETS[args.dataset]
    X, y = _data.load(args.dataset, seed=args.seed, **kwargs)
    X_train, X_test, y_train, y_test = _data.train_test_split(X, y, 0.2, seed=args.seed)
    classes = int(y.max()) + 1
    binary = classes == 2
    widths = [X.shape[1], *hidden, 1 if binary else classes]
    arch = [{"input_dim": a, "output_dim": b, "activation": "relu"}
            for a, b in zip(widths[:-2], widths[1:-1])]
    arch.append({"input_dim": widths[-2], "output_dim": widths[-1],
                 "activation": "sigmoid" if binary else "softmax"})
    model = Sequential.from_architecture(arch, device=backend, seed=args.seed)
    loss = "binary_crossentropy" if binary else "categorical_crossentropy"
    print(f"dataset: {args.dataset} ({len(X_train)} train / {len(X_test)} test, "
          f"{classes} classes), network {'-'.join(map(str, widths))}, "
          f"{model.count_params():,} parameters")
    start = time.perf_counter()
    model.fit(X_train, y_train, loss=loss, optimizer=Adam(lr=args.lr), epochs=args.epochs,
              batch_size=args.batch_size, validation_data=(X_test, y_test),
              verbose=0 if args.quiet else 1, seed=args.seed)
    elapsed = time.perf_counter() - start
    acc = accuracy(y_test, model.predict(X_test))
    print(f"test accuracy: {acc:.4f} ({elapsed:.1f} s on {backend.name})")
    return 0


def cmd_devices(args) -> int:
    status = cuda_status()
    print(f"usable devices: {', '.join(available_devices())}")
    print(f"cuda: {'usable, ' if status.usable else 'not usable: '}{status.reason}")
    return 0


def cmd_bench(args) -> int:
    from .bench import run

    return run(args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train, "devices": cmd_devices, "bench": cmd_bench}[
            args.command](args)
    except (DeviceUnavailableError, ValueError) as exc:
        print(f"gpunn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
