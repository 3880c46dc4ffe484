"""The command line's data flags (how to read a file, what to do with its columns) and
the model file's record of them, checked when a model is loaded for ``predict``."""

from __future__ import annotations

import argparse
import sys

from .data import builtin as _builtin
from .data import columns as _cols
from .data import tables as _ds

_KINDS = ("numeric", "categorical", "datetime")


def _column_list(text: str) -> tuple:
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got "
                                         f"{text!r}")
    return names


def _one_char(text: str) -> str:
    text = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"expected one character (or 'tab'), got {text!r}")
    return text


def add_reading_arguments(parser, training: bool) -> None:
    """The flags saying how to read a CSV (both commands) and, for training, what to do
    with its columns and missing values."""
    group = parser.add_argument_group("reading CSV files")
    group.add_argument("--sep", type=_one_char, default=None,
                       help="field delimiter (default: detected among , ; tab |)")
    group.add_argument("--encoding", default="utf-8", help="text encoding of the file")
    group.add_argument("--na-values", type=_column_list, default=(), metavar="WORD,...",
                       help="more cells that mean 'missing', besides empty, NA, N/A, NaN, "
                       "null, ? and #N/A" + ("" if training else " (those of training are "
                                              "recorded in the model file)"))
    if not training:
        # Kept so that the refusal names them (see _options), not argparse's "unrecognized".
        group.add_argument("--decimal", type=_one_char, default=None, help=argparse.SUPPRESS)
        group.add_argument("--thousands", type=_one_char, default=None,
                           help=argparse.SUPPRESS)
        return
    group.add_argument("--decimal", type=_one_char, default=None,
                       help="decimal mark of the file's numbers, e.g. ',' for 3,5 "
                       "(default: detected from every column, said in one note; the "
                       "thousands separator is still detected)")
    group.add_argument("--thousands", type=_one_char, default=None,
                       help="thousands separator of the file's numbers, e.g. '.' for "
                       "1.000 or ' ' for any space (default: detected from every column)")
    group.add_argument("--impute", choices=_cols.IMPUTE, default=None,
                       help="fill missing feature values (text columns: most frequent "
                       "category) or drop their rows (default: refuse them)")
    group.add_argument("--drop", type=_column_list, default=(), metavar="COL,...",
                       help="columns to leave out")
    group.add_argument("--features", type=_column_list, default=None, metavar="COL,...",
                       help="the only columns to use as features, each kept (one that "
                       "looks like an ID or free text is used as it is or as categories)")
    group.add_argument("--dates", choices=("numeric", "drop"), default="numeric",
                       help="date columns (2019-08-29, 29.08.2019, 29 Aug 2019, 08/29/2019, "
                       "with a time or not): days since 1970-01-01, or left out")
    group.add_argument("--date-format", default=None, metavar="FORMAT",
                       help="read columns of dates written another way, as a strptime "
                       "format, e.g. '%%Y%%m%%d' or '%%d-%%b-%%y'")


def _options(args, training: bool):
    read = {"sep": args.sep, "encoding": args.encoding, "decimal": args.decimal,
            "thousands": args.thousands, "na_values": tuple(args.na_values)}
    if not training:
        # Each column's numbers are read with the separators recorded at training; a flag
        # here could only disagree with them.
        for flag in ("decimal", "thousands"):
            if getattr(args, flag) is not None:
                raise _ds.DatasetError(f"--{flag}: predict reads each column's numbers as "
                                       "training did (recorded in the model file); leave "
                                       f"--{flag} out")
        return _ds.ReadOptions(**read)
    return _ds.TableOptions(**read, impute=args.impute, drop=tuple(args.drop),
                            features=args.features, dates=args.dates,
                            date_format=args.date_format)


def load_training_data(args) -> _ds.Dataset:
    """The data ``gpunn train`` was pointed at: a file or a built-in dataset."""
    if args.data:
        return _ds.load_file(args.data, args.target, args.task, _options(args, True))
    for flag in ("target", "features", "impute", "sep", "decimal", "thousands", "na_values",
                 "date_format"):
        if getattr(args, flag, None):
            raise _ds.DatasetError(f"--{flag.replace('_', '-')} only applies with --data "
                                   "FILE")
    if args.drop:
        raise _ds.DatasetError("--drop only applies with --data FILE")
    data = _builtin.load_builtin(args.dataset or "spirals", seed=args.seed,
                                 data_dir=args.data_dir)
    if args.task and args.task != data.task:
        data.y, data.classes = _ds.encode_target(data.y, args.task)
        data.task = args.task
    return data


def tell(notices, stream=None) -> None:
    """Print each decision taken about the data, one ``note:`` line each (stderr)."""
    for line in notices:
        print(f"note: {line}", file=stream or sys.stderr)


def predict_features(path, args, columns):
    """A prediction file's features, read as the model's training data was."""
    X, notices = _ds.read_features(path, columns, _options(args, False))
    tell(notices)
    return X


def columns_ok(columns) -> bool:
    """Whether a model file's column list is well formed (the file may be crafted)."""
    return isinstance(columns, list) and all(_column_ok(c) for c in columns)


def _column_ok(c) -> bool:
    if not (isinstance(c, dict) and isinstance(c.get("name"), str) and "categories" in c):
        return False
    cats = c["categories"]
    if cats is not None and not (isinstance(cats, list) and cats and all(
            isinstance(v, str) for v in cats) and len(set(cats)) == len(cats)):
        return False
    kind = c.get("kind")
    if kind not in _KINDS or (kind == "categorical") != (cats is not None):
        return False
    parse = c.get("parse")
    words = c.get("na_values")
    if words is not None and not (isinstance(words, list) and all(
            isinstance(w, str) for w in words)):
        return False
    if kind == "datetime" and parse is not None:
        return parse in ({"dayfirst": True}, {"dayfirst": False}) or (
            set(parse) == {"format"} and isinstance(parse["format"], str))
    if parse == {"booleans": True}:  # a numeric column of True/False
        return kind == "numeric" and _fill_ok(c, None)
    if parse is not None and not _number_form_ok(parse):
        return False
    return _fill_ok(c, cats)


def _fill_ok(c, cats) -> bool:
    fill = c.get("fill")
    if fill is None:
        return True
    width = len(cats) if cats else None
    if width is None:
        return isinstance(fill, (int, float)) and not isinstance(fill, bool) and \
            fill == fill and abs(fill) != float("inf")
    return isinstance(fill, list) and len(fill) == width and all(
        v in (0, 1) and not isinstance(v, bool) for v in fill)


def _number_form_ok(parse) -> bool:
    """A numeric column's ``parse``: separators of one character, a known currency
    symbol, ``percent`` true (see gpunn.data.columns.number_pattern)."""
    if not (isinstance(parse, dict) and set(parse) <= {"thousands", "decimal", "currency",
                                                       "percent"}):
        return False
    marks = all(parse.get(k) is None or (isinstance(parse[k], str) and len(parse[k]) == 1)
                for k in ("thousands", "decimal"))
    return marks and parse.get("currency") in (None, *_cols.CURRENCIES) and \
        parse.get("percent") in (None, True)


def checked_extra(path, extra: dict, n_out=None) -> dict:
    """The CLI's part of a model file's ``extra``, type-checked (the file may be crafted)."""
    def fail(what):
        raise _ds.DatasetError(f"{path}: the model's saved {what} is malformed; it was not "
                               "written by gpunn train, or was edited")

    if extra.get("task") not in (None, *_ds.TASKS):
        fail("task")
    classes = extra.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(
            isinstance(c, (str, int)) for c in classes)):
        fail("class list")
    target = extra.get("target", "prediction")
    if not isinstance(target, str) or not target:
        fail("target name")
    columns = extra.get("columns")
    if columns is not None and not columns_ok(columns):
        fail("column list")
    task = extra.get("task")
    # The task must fit the network: binary = one output and two classes, multiclass = one
    # output per class.
    if task == "binary" and (n_out != 1 or len(classes or []) != 2):
        fail("task (binary, for this network and class list)")
    if task == "multiclass" and (not classes or len(classes) < 2 or n_out != len(classes)):
        fail("task (multiclass, for this network and class list)")
    return extra
