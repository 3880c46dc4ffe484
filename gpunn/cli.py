"""The ``gpunn`` command line: train, predict, evaluate, export, info, devices, bench."""

from __future__ import annotations

import argparse
import contextlib
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
from . import cli_predict as _cli_predict
from . import cli_train as _train
from . import losses as _losses
from . import optim as _optim
from . import plot as _plot
from .activations import ACTIVATIONS
from .atomic import Terminated, check_outputs, terminate_as_exception
from .backend import available_devices, cuda_status, get_backend, parse_device
from .backend.random import check_seed
from .callbacks import CSVLogger, History
from .data import builtin as _builtin
from .data import tables as _ds
from .distributed.data import load_once
from .errors import DeviceFallbackWarning, GpunnError, TrainingDiverged
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
        self.exit(2, f"{self.prog}: error: {message}{_did_you_mean(message)} "
                     f"(see {self.prog} --help)\n")


def close_match(word: str, choices) -> str | None:
    """The choice ``word`` most likely misspells, or None (difflib: argparse's own
    suggestions, ``suggest_on_error``, arrive only with Python 3.14)."""
    import difflib

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _did_you_mean(message: str) -> str:
    """"; did you mean 'train'?" for argparse's "invalid choice: 'trian' (choose from
    ...)", else nothing."""
    import re

    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not found:
        return ""
    guess = close_match(found.group(1), re.findall(r"'([^']*)'", found.group(2)))
    return f"; did you mean {guess!r}?" if guess else ""


def unknown_flags(parser, command: str | None, extra: list[str]) -> str:
    """argparse's "unrecognized arguments: ..." with, for each misspelt flag, the flag of
    ``command`` it most likely means."""
    sub = getattr(parser, "commands", {}).get(command)
    flags = list(getattr(sub, "_option_string_actions", {})) if sub is not None else []
    hints = []
    for token in extra:
        name = token.split("=", 1)[0]
        guess = close_match(name, flags) if name.startswith("-") else None
        if guess:
            hints.append(f"{name}: did you mean {guess}?")
    return f"unrecognized arguments: {' '.join(extra)}" + (
        f" ({'; '.join(hints)})" if hints else "")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpunn", description="Dense neural networks on NumPy (CPU) or "
                     "CuPy (CUDA GPU).")
    parser.add_argument("--version", action="version", version=f"gpunn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = sub.choices  # each command's parser, for the flags' suggestions

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
    train.add_argument("--epochs", type=_positive(int), default=None,
                       help="passes over the data (default: 30, or more for a small data "
                       "set: enough for 1,000 optimiser steps, at most 200)")
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
                       help="feed features, and a regression target, as they are "
                       "(default: standardise them; predictions come back in the "
                       "target's units)")
    train.add_argument("--dropout", type=_fraction, metavar="RATE", help="a Dropout of "
                       "this rate after each hidden layer (not with --arch)")
    train.add_argument("--weight-decay", type=_positive(float, zero=True), default=0.0,
                       metavar="L2", help="the optimiser's weight decay")
    train.add_argument("--clip-norm", type=_positive(float), metavar="NORM",
                       help="clip the gradients' global norm to NORM (default: no clipping)")
    train.add_argument("--lr-schedule", type=_train.lr_schedule, metavar="SCHEDULE",
                       help=_train.LR_SCHEDULE_HELP)
    train.add_argument("--on-divergence", choices=["raise", "stop", "skip"], default="raise",
                       help="when the loss becomes NaN or infinite: raise (an error; with "
                       "--save the best epoch before it is still saved), stop (end "
                       "training there and save as usual) or skip (drop each such step)")
    train.add_argument("--class-weight", choices=["balanced"], help="weigh each class by "
                       "n_rows / (n_classes * its rows), as scikit-learn's "
                       "class_weight='balanced' (classification only)")
    train.add_argument("--log", metavar="FILE.csv", help="write each epoch's loss, metrics "
                       "and learning rate as a row of this CSV file")
    train.add_argument("--save", help="write the trained model here (.npz, .safetensors)")
    train.add_argument("--plot", metavar="PATH", help="loss/metric curves (history) and, "
                       f"for 2-D data, the decision boundary: {_plot.PLOT_HELP}")
    train.add_argument("--quiet", action="store_true", help="print only the summary (the "
                       "done: and saved: lines); device, data, network and plots lines go "
                       "to stderr")
    _cli_data.add_reading_arguments(train, training=True)

    _other_commands(sub)
    return parser


def _other_commands(sub) -> None:
    """The parsers of predict, export, info, devices and bench."""
    _cli_predict.add_parsers(sub, _device, _DEVICE)
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
    if args.arch and (args.layers is not None or args.activation or args.dropout):
        given = ("--layers" if args.layers is not None else
                 "--activation" if args.activation else "--dropout")
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
    if args.class_weight and task == "regression":
        raise ValueError(f"--class-weight {args.class_weight}: the task is regression (no "
                         "classes to weigh); leave it out, or set --task")
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
        if task == "regression":
            # Targets in dollars or grams make a loss of 1e10 and outputs that start a
            # million times too small: the network learns standardised targets, and the
            # model file turns its outputs back (predict, the ONNX graph).
            model.target_scaler = Standardizer().fit(y.reshape(len(y), -1))
            _cli_data.tell([_train.scaling_note(model.target_scaler, data.target)])
    model.extra = {"task": task, "classes": data.classes, "target": data.target,
                   "feature_names": data.feature_names, "columns": data.columns,
                   "dataset": name}
    optimizer = _optim.get(args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                           clip_norm=args.clip_norm)
    # --quiet: standard output is the summary alone; what runs where goes to stderr.
    info = sys.stderr if args.quiet else sys.stdout
    print(device_line(backend, world), file=info)
    print("\n".join(_train.header(name, data, len(X), len(val[0]) if val else 0, network,
                                  model.count_params(), loss, args.optimizer, args.lr)),
          file=info)
    if args.epochs is None:
        args.epochs = _train.default_epochs(len(X), args.batch_size)
    best = _train.BestEpoch(loss, val is not None, args.patience, args.epochs,
                            standardised=model.target_scaler is not None)
    # The epochs fit completes, kept here: a divergence raised from fit still leaves them.
    done = History()
    callbacks = [best, done] + _train.schedule_callbacks(args.lr_schedule, args.epochs,
                                                          val is not None)
    if args.log:
        callbacks.append(CSVLogger(args.log))
    start = time.perf_counter()
    failure = None
    try:
        # "stop" is done here, as "raise" is: the message then names flags, not arguments.
        hist = model.fit(X, y, loss=loss, optimizer=optimizer, epochs=args.epochs,
                         batch_size=args.batch_size, validation_data=val, callbacks=callbacks,
                         verbose=0 if args.quiet else 1, seed=args.seed,
                         on_divergence="skip" if args.on_divergence == "skip" else "raise",
                         class_weight=args.class_weight)
    except TrainingDiverged as exc:
        failure = _train.diverged_message(exc, args)
        if not done.epoch:  # nothing good to keep
            raise ValueError(failure) from None
        for cb in callbacks:  # as fit ends: back to the best epoch before it, files closed
            cb.on_train_end(model, done)
        hist = done
        if args.on_divergence == "stop":
            print(f"stopped: {failure}", file=info)
            failure = None
    if not hist.epoch:  # Ctrl-C before the first epoch ended
        raise KeyboardInterrupt
    summary = best.summary(hist, time.perf_counter() - start, backend.name)
    if data.X_test is not None and task != "regression":  # the best epoch's weights
        test = model.evaluate(data.X_test, data.y_test)[best.metric]
        summary += f"; test {best.metric} {test:.4f}"
    print(summary)
    scores = {}
    if task == "regression":  # in the target's units, whatever the network learnt in
        for label, rows in (("validation", val), ("test", (data.X_test, data.y_test))):
            if rows is not None and rows[0] is not None:
                scores[label] = _train.regression_scores(model, *rows)
                print(_train.scores_line(label, scores[label]))
    if args.save:  # the best epoch's weights, optimiser and counters: resumable from there
        model.save(args.save)  # rank 0 alone writes
        print(best.saved(_model_path(args.save), hist))
    for line in _train.advice(hist, best, scores.get("validation"),
                              val[1] if val is not None and task != "regression" else None):
        print(f"warning: {line}", file=sys.stderr)
    if args.plot and world.rank == 0:
        _train.plots(args.plot, model, hist, data,
                     _train.title(name, network, args.optimizer, args.lr), best, file=info)
    if failure is not None:  # after saving what was good: still an error
        raise ValueError(failure)
    return 0


def device_line(backend, world) -> str:
    """The ``device:`` line; under ``mpiexec`` it says how many ranks train (each on its
    own device where there are several)."""
    line = f"device: {backend.describe()} [{backend.reason}]"
    if getattr(world, "size", 1) > 1:
        line += (f"; {world.size} ranks (mpiexec), each training on its share of every "
                 "batch")
    return line


def _widths_model(args, name, n_features, outputs, task, backend):
    """The dense network of --layers and --activation, and its widths."""
    hidden = args.layers if args.layers is not None else DEFAULT_LAYERS.get(name, [64, 64])
    widths = [n_features, *hidden, outputs]
    out_act = {"binary": "sigmoid", "multiclass": "softmax", "regression": None}[task]
    arch = [{"input_dim": a, "output_dim": b, "activation": args.activation or "relu"}
            | ({"dropout": args.dropout} if args.dropout else {})
            for a, b in zip(widths[:-2], widths[1:-1])]
    arch.append({"input_dim": widths[-2], "output_dim": widths[-1], "activation": out_act})
    return Sequential.from_architecture(arch, device=backend, seed=args.seed), widths


def _check_destinations(args) -> None:
    # matplotlib too: before training, not after it.
    figures = _plot.plot_outputs(args.plot, _train.FIGURES)
    folders = [args.plot] if args.plot and figures[0] != args.plot else []
    check_outputs(([_model_path(args.save)] if args.save else []) + figures
                  + ([args.log] if args.log else []), [args.data], folders)
    if args.save and is_safetensors(_model_path(args.save)):  # the same: the library now
        require_safetensors()


def cmd_predict(args) -> int:
    return _cli_predict.cmd_predict(args, _backend(args.device))


def cmd_evaluate(args) -> int:
    return _cli_predict.cmd_evaluate(args, _backend(args.device))


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
    if not (sys.argv[1:] if argv is None else argv):  # bare `gpunn`: what it can do
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = extra  # read by the benchmark's own parser
    elif extra:
        parser.error(unknown_flags(parser, args.command, extra))
    code = _run(args)
    joined = distributed.joined()  # None when joining failed (mpiexec without mpi4py)
    if code and joined is not None and joined.distributed:
        joined.abort(code)  # the other ranks may be waiting on this one
    return code


#: The commands every rank of an MPI launch runs: training, and info (each rank's line,
#: printed by rank 0). The others (predict, evaluate, export, devices, bench) run on rank
#: 0 alone: one set of predictions, one file, one listing.
EVERY_RANK = ("train", "info")


def _run(args) -> int:
    commands = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate,
                "info": cmd_info,
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
