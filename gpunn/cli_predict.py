"""``gpunn predict`` and ``gpunn evaluate``: a saved model on a file of rows.

Both read the rows the way training read its data: the column decisions stored in the
model file for a model trained on a table, the feature names of a built-in data set, or
array ``X`` of an ``.npz``. ``predict`` writes one row per input row (CSV with ``\\n``
line ends, or Parquet), an ID column passed through; ``evaluate`` compares with the
target column and prints the scores.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cli_data as _cli_data
from . import evaluation as _evaluation
from .atomic import atomic_path, check_outputs
from .backend import to_numpy
from .data import tables as _ds

_OUT = ("write predictions here: .csv (or any other name: CSV), .parquet (a Parquet "
        "file, needs pyarrow); default, or -: CSV on standard output")


def add_parsers(sub, device_type, device_help) -> None:
    """The ``predict`` and ``evaluate`` subcommands' arguments."""
    data_help = ("the rows: a CSV or Parquet file with the training's feature columns "
                 "(named as in training; for a built-in data set, its feature names), "
                 "or an .npz with array X (the encoded features, as many as the model "
                 "takes)")
    predict = sub.add_parser("predict", help="predict with a saved model",
                             description="Predict with a model saved by gpunn train "
                             "--save: one output row per input row, in input order.")
    predict.add_argument("model", help="a model file written by gpunn train --save")
    predict.add_argument("--data", required=True, help=data_help)
    predict.add_argument("--out", help=_OUT)
    predict.add_argument("--id", metavar="COL", help="copy this column (of the CSV or "
                         "Parquet file, or array of the .npz) into the output as its "
                         "first column, to join predictions back to their rows")
    predict.add_argument("--device", type=device_type, default=None, help=device_help)
    _cli_data.add_reading_arguments(predict, training=False)

    evaluate = sub.add_parser("evaluate", help="score a saved model on labelled rows",
                              description="Score a model saved by gpunn train --save on "
                              "rows whose target is known: accuracy, per-class "
                              "precision, recall and F1 and the confusion matrix for "
                              "classes; MAE, RMSE and R² (in the target's units) for "
                              "regression.")
    evaluate.add_argument("model", help="a model file written by gpunn train --save")
    evaluate.add_argument("--data", required=True, help=data_help + "; with the target "
                          "column (or, in an .npz, the array of the training's target "
                          "name, else y)")
    evaluate.add_argument("--target", help="the column holding the true values (default: "
                          "the training's target column)")
    evaluate.add_argument("--plot", metavar="FILE.png", help="draw the confusion matrix "
                          "(classes) or predicted against true values (regression) into "
                          "this PNG file (needs matplotlib)")
    evaluate.add_argument("--device", type=device_type, default=None, help=device_help)
    _cli_data.add_reading_arguments(evaluate, training=False)


@dataclass
class Rows:
    """What a data file holds for a model: the encoded features and named extra columns
    (an ID, the target), as read."""

    X: np.ndarray
    extra: dict


def _model(args, backend):
    from .files import load

    model = load(args.model, device=backend)
    extra = _cli_data.checked_extra(args.model, model.extra, model.output_dim)
    return model, extra


def feature_columns(path, extra: dict) -> list:
    """The column specs a table is read by: those saved by a training on a table, or
    numeric columns named by a built-in data set's feature names."""
    columns = extra.get("columns") or None
    if columns:
        return columns
    names = extra.get("feature_names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return [{"name": n, "kind": "numeric", "categories": None, "parse": None}
                for n in names]
    raise _ds.DatasetError(f"{path}: the model file names no feature columns (it was not "
                           "written by gpunn train); pass an .npz with array X, or load "
                           "it in Python and call model.predict")


def read_rows(path, args, model, extra: dict, wanted=()) -> Rows:
    """The features of ``path`` for ``model`` and the columns named in ``wanted`` (None
    entries skipped), each as it is in the file."""
    wanted = [w for w in wanted if w]
    if Path(path).suffix.lower() == ".npz":
        return _npz_rows(path, model, wanted)
    columns = feature_columns(args.model, extra)
    X = _cli_data.predict_features(path, args, columns)
    kept = {}
    if wanted:
        frame, _ = _ds.read_frame(path, _ds.ReadOptions(sep=args.sep,
                                                        encoding=args.encoding),
                                  text=wanted)
        for name in wanted:
            if name not in frame.columns:
                raise _ds.DatasetError(f"{path}: no column {name!r}; columns: "
                                       f"{', '.join(map(str, frame.columns[:20]))}")
            kept[name] = frame[name]
    return Rows(X, kept)


def _npz_rows(path, model, wanted) -> Rows:
    from .files.format import not_npz

    problem = not_npz(path)
    if problem is not None:
        raise _ds.DatasetError(f"{path}: not an .npz archive ({problem})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ["X", *wanted] if k not in archive.files]
            if missing:
                raise _ds.DatasetError(f"{path}: no array {missing[0]!r}; arrays: "
                                       f"{', '.join(archive.files) or 'none'}")
            X = archive["X"]
            kept = {k: archive[k] for k in wanted}
    except FileNotFoundError:
        raise _ds.DatasetError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, _ds.DatasetError):
            raise
        raise _ds.DatasetError(f"{path}: cannot read as .npz ({exc})") from None
    if X.ndim < 2 or X.dtype.kind not in "fiub":
        raise _ds.DatasetError(f"{path}: X must be a numeric array of 2 or more "
                               f"dimensions, got shape {X.shape} and dtype {X.dtype}")
    X = X.reshape(len(X), -1).astype(np.float32)
    if model.input_dim is not None and X.shape[1] != model.input_dim:
        raise _ds.DatasetError(f"{path}: X has {X.shape[1]} columns; the model takes "
                               f"{model.input_dim} (its encoded features, one-hot columns "
                               "included)")
    for name, values in kept.items():
        if values.ndim != 1 or len(values) != len(X):
            raise _ds.DatasetError(f"{path}: array {name!r} has shape {values.shape}; "
                                   f"expected one value per row of X ({len(X)})")
    return Rows(X, kept)


def _outputs(model, rows: Rows, args):
    with np.errstate(over="ignore", invalid="ignore"):  # checked below, in one line
        out = np.asarray(to_numpy(model.predict(rows.X)), dtype=np.float64)
    bad = np.flatnonzero(~np.all(np.isfinite(out), axis=1))
    if bad.size:  # argmax and >= 0.5 would label a NaN row as the first class
        raise ValueError(f"{args.model}: the model's outputs are NaN or infinite for "
                         f"{bad.size} of {out.shape[0]} rows (the first is row "
                         f"{int(bad[0]) + 1} of {args.data}): the network overflows "
                         f"{model.dtype} on this data; nothing was written")
    return out


def _labels(out, task: str) -> np.ndarray:
    """Class indices of the outputs: a sigmoid's at 0.5, else the most probable."""
    if task == "binary":
        return (out[:, 0] >= 0.5).astype(np.int64)
    return np.argmax(out, axis=1)


def prediction_columns(out, extra: dict) -> list:
    """``[(name, values), ...]``: the predicted label (classes) and probabilities, or the
    predicted values."""
    task, classes = extra.get("task"), extra.get("classes") or []
    target = extra.get("target") or "prediction"
    if task == "binary":
        labels = _labels(out, task)
        named = np.asarray(classes, dtype=object)[labels] if len(classes) == 2 else labels
        return [(target, named), (f"p_{classes[1]}" if len(classes) == 2 else
                                  "probability", out[:, 0])]
    if task == "multiclass":
        labels = _labels(out, task)
        return [(target, np.asarray(classes, dtype=object)[labels])] + [
            (f"p_{c}", out[:, i]) for i, c in enumerate(classes)]
    if out.shape[1] == 1:
        return [(target, out[:, 0])]
    return [(f"{target}_{i}", out[:, i]) for i in range(out.shape[1])]


def _cell(v) -> str:
    """A CSV cell: numbers to 6 significant digits (what float32 outputs hold), the rest
    as written."""
    if isinstance(v, (float, np.floating)):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def write_table(columns: list, path) -> None:
    """Write ``[(name, values), ...]`` as CSV (``\\n`` line ends) to ``path`` (None:
    standard output), or as Parquet when ``path`` ends in ``.parquet`` or ``.pq``."""
    if path is not None and Path(path).suffix.lower() in (".parquet", ".pq"):
        pd = _ds.pandas()
        frame = pd.DataFrame({name: (values.astype(str) if np.asarray(values).dtype ==
                                     object else values) for name, values in columns})
        try:
            import pyarrow  # noqa: F401  - pandas' Parquet writer
        except ImportError:
            raise ImportError('writing Parquet needs pyarrow: pip install "gpunn[data]"'
                              ) from None
        with atomic_path(path, suffix=".parquet") as tmp:
            frame.to_parquet(tmp, index=False)
        return
    header = [name for name, _ in columns]
    rows = zip(*[[_cell(v) for v in values] for _, values in columns])
    if path is None:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    # newline="" and "\n": the same bytes on every platform (csv's default is "\r\n").
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def cmd_predict(args, backend) -> int:
    if args.out == "-":  # the usual spelling of standard output
        args.out = None
    check_outputs([args.out] if args.out else [], [args.model, args.data])
    model, extra = _model(args, backend)
    rows = read_rows(args.data, args, model, extra, [args.id])
    out = _outputs(model, rows, args)
    columns = prediction_columns(out, extra)
    if args.id:
        ids = rows.extra[args.id]
        ids = np.asarray(ids.to_numpy(dtype=object, na_value="") if hasattr(ids, "to_numpy")
                         else ids, dtype=object)
        if any(name == args.id for name, _ in columns):
            raise _ds.DatasetError(f"--id {args.id}: the predictions have a column of that "
                                   "name; pass another ID column")
        columns.insert(0, (args.id, ids))
    write_table(columns, args.out)
    if args.out:
        print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    return 0


def _normal(value) -> str:
    """A label as text, ``1.0`` and ``1`` alike (a CSV may write an integer class
    either way)."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _truth(values, extra: dict, where: str) -> np.ndarray:
    """The true values of the target column: class indices, or floats."""
    values = np.asarray(values.to_numpy(dtype=object, na_value=None)
                        if hasattr(values, "to_numpy") else values, dtype=object)
    missing = np.array([v is None or (isinstance(v, float) and v != v) or str(v) == ""
                        for v in values])
    if missing.any():
        first = int(np.flatnonzero(missing)[0]) + 1
        raise _ds.DatasetError(f"{where}: {int(missing.sum())} row(s) without a target "
                               f"value (the first is row {first}); remove or fill them")
    if extra.get("task") == "regression":
        try:
            return np.asarray([float(v) for v in values], dtype=np.float64)
        except ValueError as exc:
            raise _ds.DatasetError(f"{where}: the target of a regression must be numbers "
                                   f"({exc})") from None
    classes = extra.get("classes") or []
    index = {_normal(c): i for i, c in enumerate(classes)}
    labels = [_normal(v) for v in values]
    unknown = sorted({v for v in labels if v not in index})
    if unknown:
        raise _ds.DatasetError(f"{where}: label(s) {unknown[:5]} are not among the model's "
                               f"classes {classes}")
    return np.asarray([index[v] for v in labels], dtype=np.int64)


def _npz_target(path, trained) -> str:
    """The target's name by default: the training's; in an .npz without that array
    (a model trained on a table or a built-in set), ``y``."""
    trained = trained or "y"
    if Path(path).suffix.lower() != ".npz":
        return trained
    try:
        with np.load(path, allow_pickle=False) as archive:
            return trained if trained in archive.files else "y"
    except (OSError, ValueError):
        return trained  # reading the rows says what is wrong with the file


def cmd_evaluate(args, backend) -> int:
    check_outputs([args.plot] if args.plot else [], [args.model, args.data])
    if args.plot:  # before any work, not after it
        from .plot import _pyplot

        _pyplot()
    model, extra = _model(args, backend)
    task = extra.get("task")
    if task not in _ds.TASKS:
        raise _ds.DatasetError(f"{args.model}: the model file does not say its task (it "
                               "was not written by gpunn train)")
    target = args.target or _npz_target(args.data, extra.get("target"))
    rows = read_rows(args.data, args, model, extra, [target])
    where = f"{args.data}: target {target!r}"
    truth = _truth(rows.extra[target], extra, where)
    out = _outputs(model, rows, args)
    print(f"evaluate: {len(truth)} rows of {args.data}, target {target!r} ({task})")
    if task == "regression":
        if out.shape[1] != 1:
            raise _ds.DatasetError(f"{args.model}: scoring {out.shape[1]} outputs from one "
                                   "target column is not supported; use Python")
        report = _evaluation.regression_report(truth, out[:, 0])
        print(f"MAE {report['mae']:.6g}, RMSE {report['rmse']:.6g}, R² {report['r2']:.4f} "
              "(in the target's units)")
        if args.plot:
            from .plot import predicted_vs_true

            predicted_vs_true(truth, out[:, 0], args.plot, title=f"{Path(args.model).name}"
                              f" on {Path(args.data).name}", target=target)
    else:
        classes = [str(c) for c in extra.get("classes") or []]
        report = _evaluation.classification_report(truth, _labels(out, task),
                                                   len(classes))
        print("\n".join(classification_lines(report, classes)))
        if args.plot:
            from .plot import confusion_matrix

            confusion_matrix(report["confusion"], classes, args.plot,
                             title=f"{Path(args.model).name} on {Path(args.data).name}")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


def classification_lines(report: dict, classes: list) -> list[str]:
    """Accuracy, the per-class table and the confusion matrix, as printed."""
    n = int(report["support"].sum())
    hits = int(np.trace(report["confusion"]))
    lines = [f"accuracy {report['accuracy']:.4f} ({hits} of {n} rows)", ""]
    width = max(len("macro avg"), *(len(c) for c in classes))
    lines.append(f"{'class':<{width}}  precision  recall  f1      support")
    for i, c in enumerate(classes):
        lines.append(f"{c:<{width}}  {report['precision'][i]:9.4f}  {report['recall'][i]:6.4f}"
                     f"  {report['f1'][i]:6.4f}  {int(report['support'][i]):7d}")
    lines.append(f"{'macro avg':<{width}}  {float(np.mean(report['precision'])):9.4f}  "
                 f"{float(np.mean(report['recall'])):6.4f}  {report['macro_f1']:6.4f}  "
                 f"{n:7d}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted class):"]
    cell = max(5, *(len(c) for c in classes), len(str(int(report["confusion"].max()))))
    lines.append(" " * width + "  " + " ".join(f"{c:>{cell}}" for c in classes))
    for i, c in enumerate(classes):
        lines.append(f"{c:<{width}}  " + " ".join(
            f"{int(v):>{cell}d}" for v in report["confusion"][i]))
    return lines

