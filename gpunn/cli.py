"""The ``gpunn`` command line: train, predict, export, info, devices, bench."""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import math
import os
import platform
import sys
import time
import warnings

import numpy as np

from . import __version__, distributed
from . import cli_arch as _arch
from . import cli_data as _cli_data
from . import cli_export as _cli_export
from . import cli_train as _train
from . import losses as _losses
from . import optim as _optim
from .activations import ACTIVATIONS
from .atomic import Terminated, atomic_path, check_outputs, terminate_as_exception
from .backend import available_devices, cuda_status, get_backend, parse_device, to_numpy
from .backend.random import check_seed
from .data import builtin as _builtin
from .data import tables as _ds
from .distributed.data import load_once
from .errors import DeviceFallbackWarning, GpunnError
from .files.safetensors_format import _library as require_safetensors
from .files.safetensors_format import is_safetensors
from .model import Sequential

#: Hidden layers per built-in dataset when --layers is not given.
DEFAULT_LAYERS = {"spirals": [64, 64], "moons": [25, 50, 50, 25], "circles": [32, 32],
                  "xor": [16, 16], "iris": [16], "digits": [64], "mnist": [256, 128],
                  "fashion-mnist": [256, 128], "mnist1d": [100, 100]}
_PER_SET = "; ".join(f"{k} {','.join(map(str, v))}" for k, v in DEFAULT_LAYERS.items())
_DEVICE = "auto (default, or $GPUNN_DEVICE), cpu, cuda, cuda:N"
TASK_LOSS = {"binary": "binary_crossentropy", "multiclass": "categorical_crossentropy",
             "regression": "mse"}


# Every flag's value is checked by its argparse type, where the flag is known: the error
# then names the flag ("argument --seed: ..."), never the parameter it becomes deeper in
# ("seed:", "Adam lr:", "device:").
def _positive(kind, zero=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
                from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < 0 or (value == 0 and not zero):
            sign = "a non-negative" if zero else "a positive"
            raise argparse.ArgumentTypeError(f"expected {sign} number, got {text!r}")
        return value

    return parse


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _seed(text):
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got "
                                         f"{text!r}") from None


def _device(text):
    try:
        parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _layers(text):
    # No hidden layer (a linear model) only when asked: an empty value is a mistake (an
    # unset shell variable), not a request.
    if text.strip().lower() == "none":
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 128,64 (or "
                                         f"'none' for no hidden layer), got {text!r}") \
            from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


class _Help(argparse.HelpFormatter):
    """``--help`` names each option's default, unless its text already does."""

    def _get_help_string(self, action):
        default, text = action.default, action.help or ""
        if default is None or default is False or default is argparse.SUPPRESS or \
                "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".strip()


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end in one line on stderr and exit code 2 (no usage dump)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpunn", description="Dense neural networks on NumPy (CPU) or "
                     "CuPy (CUDA GPU).")
    parser.add_argument("--version", action="version", version=f"gpunn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a network on your data or a built-in set",
                           description="Train on --data FILE --target COLUMN, or on "
                           "--dataset NAME (default: spirals).")
    source = train.add_mutually_exclusive_group()
    source.add_argument("--data", help="a CSV or Parquet file with a header row, or an "
                        ".npz with X, y")
    source.add_argument("--dataset", choices=_builtin.BUILTIN, help="a built-in dataset")
    train.add_argument("--target", help="the CSV column (or .npz array) to predict")
    train.add_argument("--task", choices=_ds.TASKS, help="override the inferred task")
    train.add_argument("--data-dir", help="folder holding the (fashion-)mnist IDX files")
    train.add_argument("--layers", type=_layers, metavar="SIZES", help="hidden layer sizes, "
                       f"e.g. 128,64, or none (default: 64,64 for --data; {_PER_SET})")
    train.add_argument("--activation", default=None, choices=sorted(ACTIVATIONS),
                       help="activation of the hidden layers (default: relu)")
    train.add_argument("--arch", metavar="FILE.json", help="the network instead of "
                       "--layers/--activation: a JSON list of layer dicts like {\"type\": "
                       "\"conv1d\", \"in_channels\": 1, \"out_channels\": 8, "
                       "\"kernel_size\": 3}; a Reshape to the dataset's sample shape is put "
                       "first when the network needs one. Example: gpunn train --dataset "
                       "digits --arch examples/digits_cnn.json")
    train.add_argument("--loss", choices=sorted(_losses.LOSSES), help="default: from the task")
    train.add_argument("--optimizer", default="adam", choices=sorted(_optim.OPTIMIZERS),
                       help="the optimiser")
    train.add_argument("--lr", type=_positive(float), default=0.01, help="learning rate")
    train.add_argument("--epochs", type=_positive(int), default=30, help="passes over the data")
    train.add_argument("--patience", type=_positive(int, zero=True), metavar="N",
                       help="stop after N epochs without improvement of the validation metric "
                       "(training metric with --val-split 0); with or without it, the best "
                       "epoch is kept and saved (default: no early stop)")
    train.add_argument("--batch-size", type=_positive(int),
                       default=TRAIN_DEFAULTS["batch_size"], help="rows per step")
    train.add_argument("--val-split", type=_fraction, default=0.2,
                       help="fraction held out for validation")
    train.add_argument("--device", type=_device, default=None, help=_DEVICE)
    train.add_argument("--dtype", default="float32", choices=["float32", "float64",
                                                              "float16", "bfloat16"],
                       help="precision of the parameters")
    train.add_argument("--seed", type=_seed, default=0,
                       help="seed of the split, the initial weights and the shuffling")
    train.add_argument("--no-standardize", action="store_true",
                       help="feed features as they are (default: standardise them)")
    train.add_argument("--save", help="write the trained model here (.npz, .safetensors)")
    train.add_argument("--plot", help="write loss/metric curves (and the decision "
                       "boundary of 2-D data) as PNG files into this folder")
    train.add_argument("--quiet", action="store_true", help="print only the summary (the "
                       "done: and saved: lines); device, data and network lines go to "
                       "stderr")
    _cli_data.add_reading_arguments(train, training=True)

    _other_commands(sub)
    return parser


def _other_commands(sub) -> None:
    """The parsers of predict, export, info, devices and bench."""
    predict = sub.add_parser("predict", help="predict with a saved model")
    predict.add_argument("model", help="a model file written by gpunn train --save")
    predict.add_argument("--data", required=True,
                         help="a CSV or Parquet file with the training features")
    predict.add_argument("--out", help="write predictions here (default, or -: standard "
                         "output)")
    predict.add_argument("--device", type=_device, default=None, help=_DEVICE)
    _cli_data.add_reading_arguments(predict, training=False)

    _cli_export.build_parser(sub.add_parser("export", help="write a saved model as ONNX"))
    sub.add_parser("info", help="versions, GPUs, and which devices are usable and why")
    sub.add_parser("devices", help="list usable devices and why CUDA is or is not usable")
    # The benchmark package (workloads, impls, reports) is imported only when it runs: its
    # own parser reads the arguments then, so `gpunn train` never loads it.
    bench = sub.add_parser("bench", add_help=False, help="training throughput on every "
                           "usable device, against a hand-written loop and PyTorch")
    bench.set_defaults(bench_args=[])


def _backend(spec, **kwargs):
    with warnings.catch_warnings():
        # The device line printed by the command says the same as the fallback warning.
        warnings.simplefilter("ignore", DeviceFallbackWarning)
        return get_backend(spec, **kwargs)


def _split(data: _ds.Dataset, val_split: float, seed: int):
    n = len(data.X)
    n_val = int(round(n * val_split))
    if val_split and (n_val < 1 or n - n_val < 1):
        raise _ds.DatasetError(f"--val-split {val_split} leaves no training or validation "
                               f"rows out of {n}")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    return (data.X[train], data.y[train]), ((data.X[val], data.y[val]) if n_val else None)


def _model_path(path: str) -> str:
    # "dir/" stays a folder (refused as a destination), never "dir/.npz".
    return path if path.endswith((".npz", ".safetensors", "/", os.sep)) else path + ".npz"


#: Defaults of gpunn train that its checks name as such.
TRAIN_DEFAULTS = {"batch_size": 64}


def cmd_train(args) -> int:
    # Under mpiexec every rank trains; rank 0 alone reads the data, prints and writes.
    world = distributed.init()
    if world.rank == 0:
        return _train_rank(args, world)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
            contextlib.redirect_stderr(null):
        return _train_rank(args, world)


def _train_rank(args, world) -> int:
    if args.arch and (args.layers is not None or args.activation):
        given = "--layers" if args.layers is not None else "--activation"
        raise ValueError(f"--arch {args.arch} describes the whole network, so {given} cannot "
                         "be given with it; put the sizes and activations in the file")
    if args.batch_size % world.size:  # every rank knows: all refuse before any work
        default = " (the default)" if args.batch_size == TRAIN_DEFAULTS["batch_size"] else ""
        low = args.batch_size - args.batch_size % world.size
        sizes = f"{low} or {low + world.size}" if low else f"{world.size}"
        raise ValueError(f"--batch-size {args.batch_size}{default} does not split evenly "
                         f"over the {world.size} ranks; pass a multiple of {world.size}, "
                         f"such as {sizes}")
    if world.rank == 0:
        _check_destinations(args)
    arch = _arch.read(args.arch) if args.arch else None  # a bad file fails before loading
    backend = _backend(args.device, dtype=args.dtype, seed=args.seed)
    data = load_once(world, lambda: _cli_data.load_training_data(args))
    _cli_data.tell(data.notices + ([f"task: {data.task} ({data.task_reason})"]
                                   if data.task_reason else []))
    name = args.dataset or (os.path.basename(args.data) if args.data else "spirals")
    (X, y), val = _split(data, args.val_split, args.seed)
    task = data.task
    outputs = (1 if task == "binary" else len(data.classes)) if task != "regression" else (
        1 if data.y.ndim == 1 else data.y.shape[1])
    loss = args.loss or TASK_LOSS[task]
    if arch is not None:
        model, notes = _arch.build(args.arch, arch, data, name, outputs, loss, backend,
                                   args.seed)
        _cli_data.tell(notes)
        network = _arch.describe(model)
    else:
        model, network = _widths_model(args, name, X.shape[1], outputs, task, backend)
    if not args.no_standardize:
        from .preprocessing import Standardizer

        model.preprocessor = Standardizer().fit(X)
    model.extra = {"task": task, "classes": data.classes, "target": data.target,
                   "feature_names": data.feature_names, "columns": data.columns,
                   "dataset": name}
    optimizer = _optim.get(args.optimizer, lr=args.lr)
    # --quiet: standard output is the summary alone; what runs where goes to stderr.
    info = sys.stderr if args.quiet else sys.stdout
    print(f"device: {backend.describe()} [{backend.reason}]", file=info)
    print("\n".join(_train.header(name, data, len(X), len(val[0]) if val else 0, network,
                                  model.count_params(), loss, args.optimizer, args.lr)),
          file=info)
    best = _train.BestEpoch(loss, val is not None, args.patience, args.epochs)
    start = time.perf_counter()
    hist = model.fit(X, y, loss=loss, optimizer=optimizer, epochs=args.epochs,
                     batch_size=args.batch_size, validation_data=val, callbacks=[best],
                     verbose=0 if args.quiet else 1, seed=args.seed)
    if not hist.epoch:  # Ctrl-C before the first epoch ended
        raise KeyboardInterrupt
    summary = best.summary(hist, time.perf_counter() - start, backend.name)
    if data.X_test is not None:  # with the best epoch's weights, those saved
        test = model.evaluate(data.X_test, data.y_test)[best.metric]
        summary += f"; test {best.metric} {test:.4f}"
    print(summary)
    if args.save:  # the best epoch's weights, optimiser and counters: resumable from there
        model.save(args.save)  # rank 0 alone writes
        print(best.saved(_model_path(args.save), hist))
    if args.plot and world.rank == 0:
        _train.plots(args.plot, model, hist, data,
                     _train.title(name, network, args.optimizer, args.lr), best)
    return 0


def _widths_model(args, name, n_features, outputs, task, backend):
    """The dense network of --layers and --activation, and its widths."""
    hidden = args.layers if args.layers is not None else DEFAULT_LAYERS.get(name, [64, 64])
    widths = [n_features, *hidden, outputs]
    out_act = {"binary": "sigmoid", "multiclass": "softmax", "regression": None}[task]
    arch = [{"input_dim": a, "output_dim": b, "activation": args.activation or "relu"}
            for a, b in zip(widths[:-2], widths[1:-1])]
    arch.append({"input_dim": widths[-2], "output_dim": widths[-1], "activation": out_act})
    return Sequential.from_architecture(arch, device=backend, seed=args.seed), widths


def _check_destinations(args) -> None:
    check_outputs([_model_path(args.save)] if args.save else [], [args.data],
                  [args.plot] if args.plot else [])
    if args.plot:  # before training, not after it
        from .plot import _pyplot

        _pyplot()
    if args.save and is_safetensors(_model_path(args.save)):  # the same: the library now
        require_safetensors()


def cmd_predict(args) -> int:
    from .files import load

    if args.out == "-":  # the usual spelling of standard output
        args.out = None
    check_outputs([args.out] if args.out else [], [args.model, args.data])
    backend = _backend(args.device)
    model = load(args.model, device=backend)
    extra = _cli_data.checked_extra(args.model, model.extra, model.output_dim)
    columns = extra.get("columns") or None
    if not columns:
        raise _ds.DatasetError(f"{args.model}: was not trained from a CSV file (no column "
                               "names saved); load it in Python and call model.predict")
    X = _cli_data.predict_features(args.data, args, columns)
    with np.errstate(over="ignore", invalid="ignore"):  # checked below, in one line
        proba = np.asarray(to_numpy(model.predict(X)), dtype=np.float64)
    bad = np.flatnonzero(~np.all(np.isfinite(proba), axis=1))
    if bad.size:  # argmax and >= 0.5 would label a NaN row as the first class
        raise ValueError(f"{args.model}: the model's outputs are NaN or infinite for "
                         f"{bad.size} of {proba.shape[0]} rows (the first is row "
                         f"{int(bad[0]) + 1} of {args.data}): the network overflows "
                         f"{model.dtype} on this data; nothing was written")
    task, classes = extra.get("task"), extra.get("classes") or []
    target = extra.get("target", "prediction")
    if task == "binary":
        header = [target, f"p_{classes[1]}" if len(classes) == 2 else "probability"]
        rows = [[classes[int(p >= 0.5)] if len(classes) == 2 else int(p >= 0.5), f"{p:.6g}"]
                for p in proba[:, 0]]
    elif task == "multiclass":
        header = [target] + [f"p_{c}" for c in classes]
        rows = [[classes[int(np.argmax(p))]] + [f"{v:.6g}" for v in p] for p in proba]
    else:
        header = [target] if proba.shape[1] == 1 else [f"{target}_{i}"
                                                       for i in range(proba.shape[1])]
        rows = [[f"{v:.6g}" for v in p] for p in proba]
    if not args.out:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
        return 0
    with atomic_path(args.out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    print(f"wrote {len(rows)} predictions to {args.out}", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    print(f"gpunn {__version__}")
    print(f"python {platform.python_version()} ({platform.platform()})")
    print(f"numpy {np.__version__}")
    status = cuda_status()
    try:
        import cupy

        print(f"cupy {cupy.__version__}")
        if status.usable:
            rt = cupy.cuda.runtime
            print(f"cuda runtime {rt.runtimeGetVersion()}, driver {rt.driverGetVersion()}")
            for i in range(status.count):
                props = rt.getDeviceProperties(i)
                name = props["name"]
                name = name.decode() if isinstance(name, bytes) else name
                print(f"cuda:{i}: {name}, compute capability {props['major']}."
                      f"{props['minor']}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
    except ImportError:
        print("cupy not installed")
    print("devices:")
    print("  cpu: usable (NumPy)")
    state = "usable, " if status.usable else "not usable: "
    print(f"  cuda: {state}{status.reason}")
    mpi = ("installed" if importlib.util.find_spec("mpi4py") is not None
           else 'not installed (pip install "gpunn[distributed]")')
    world = distributed.init()
    # Under a launcher rank 0 prints every rank's line (the others print nothing).
    lines = world.comm.gather(world.describe(), root=0) if world.distributed else \
        [world.describe()]
    for line in lines or []:
        print(f"distributed: {line}; mpi4py {mpi}")
    return 0


def cmd_devices(args) -> int:
    status = cuda_status()
    print(f"usable devices: {', '.join(available_devices())}")
    print(f"cuda: {'usable, ' if status.usable else 'not usable: '}{status.reason}")
    return 0


def cmd_bench(args) -> int:
    from .bench import build_parser, run

    return run(build_parser(argparse.ArgumentParser(prog="gpunn bench")).parse_args(
        args.bench_args))


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = extra  # read by the benchmark's own parser
    elif extra:
        parser.parse_args(argv)  # the usual error for unrecognised arguments
    code = _run(args)
    joined = distributed.joined()  # None when joining failed (mpiexec without mpi4py)
    if code and joined is not None and joined.distributed:
        joined.abort(code)  # the other ranks may be waiting on this one
    return code


#: The commands every rank of an MPI launch runs: training, and info (each rank's line,
#: printed by rank 0). The others (predict, export, devices, bench) run on rank 0 alone:
#: one set of predictions, one file, one listing.
EVERY_RANK = ("train", "info")


def _run(args) -> int:
    commands = {"train": cmd_train, "predict": cmd_predict, "info": cmd_info,
                "devices": cmd_devices, "bench": cmd_bench, "export": _cli_export.run}
    try:
        # Under a launcher every rank joins first (joining is collective); then nothing
        # but rank 0 writes to standard output. SIGTERM (docker stop, timeout, Slurm,
        # systemd) ends the command as Ctrl-C does: an exception where it was, so a file
        # being written takes its temporary file away.
        world = distributed.init() if distributed.launched() else None
        with terminate_as_exception():
            if world is None or world.rank == 0:
                code = commands[args.command](args)
            elif args.command not in EVERY_RANK:
                code = 0
            else:
                with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                    code = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except Terminated:
        print("gpunn: terminated (SIGTERM); no partly written file was left",
              file=sys.stderr)
        return Terminated().code
    except BrokenPipeError:  # `gpunn predict ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
        return 141  # 128 + SIGPIPE, as a shell reports a command ended by it
    except (GpunnError, ValueError, OSError, ImportError, MemoryError) as exc:
        print(f"gpunn: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gpunn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, never a traceback
        print(f"gpunn: internal error ({type(exc).__name__}: {_one_line(exc)}); please "
              "report it", file=sys.stderr)
        return 1


def _one_line(exc) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"  # not "[Errno 2] ..."
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
