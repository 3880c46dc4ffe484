"""The user's tables: CSV and NPZ files read into a :class:`Dataset` of host arrays, with
text features one-hot encoded, categorical targets mapped to classes and the task
(binary, multiclass, regression) inferred.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GpunnError

TASKS = ("binary", "multiclass", "regression")


class DatasetError(GpunnError, ValueError):
    """A dataset that cannot be read, found or downloaded."""


@dataclass
class Dataset:
    """Features, targets and what they mean.

    Attributes
    ----------
    X : (N, features) float32
    y : (N,) int64 class indices, or (N,) / (N, k) float32 regression targets
    task : "binary", "multiclass" or "regression"
    classes : list of str
        Original label of each class index (classification only).
    feature_names : list of str
    X_test, y_test : optional official test split
    """

    X: np.ndarray
    y: np.ndarray
    task: str
    classes: list = field(default_factory=list)
    feature_names: list = field(default_factory=list)
    target: str = "target"
    columns: list = field(default_factory=list)
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


# ---------------------------------------------------------------------- task inference
def infer_task(values: np.ndarray) -> str:
    """Guess the task from raw target values.

    Strings or booleans are classes; integers (or integral floats) with at most 20
    distinct values are classes; anything else is regression.
    """
    if values.dtype.kind in "USOb":
        return "binary" if len(np.unique(values)) == 2 else "multiclass"
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    distinct = np.unique(finite)
    if np.all(distinct == np.round(distinct)) and len(distinct) <= 20:
        return "binary" if len(distinct) == 2 else "multiclass"
    return "regression"


def encode_target(values: np.ndarray, task: str, what: str = "target"):
    """Turn raw target values into model targets.

    Returns
    -------
    y : int64 class indices or float32 values
    classes : list of str (empty for regression)
    """
    if task not in TASKS:
        raise DatasetError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    if task == "regression":
        try:
            y = values.astype(np.float32)
        except ValueError as exc:
            raise DatasetError(f"{what}: regression needs numeric targets ({exc})") from None
        return y, []
    labels, y = np.unique(values, return_inverse=True)
    if task == "binary" and len(labels) != 2:
        raise DatasetError(f"{what}: task 'binary' needs exactly 2 classes, found "
                           f"{len(labels)}: {_preview(labels)}")
    if len(labels) < 2:
        raise DatasetError(f"{what}: classification needs at least 2 classes, found "
                           f"{_preview(labels)}")
    return y.astype(np.int64).reshape(-1), [_label(v) for v in labels]


def _label(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _preview(values, n=5) -> str:
    items = [_label(v) for v in list(values)[:n]]
    return ", ".join(items) + (", ..." if len(values) > n else "")


# ---------------------------------------------------------------------- user files
def read_csv(path, target: str | None = None, columns=None):
    """Read a CSV with a header row.

    Numeric columns are features as they are; a text column is categorical and becomes
    one 0/1 feature per category (one-hot).

    Parameters
    ----------
    path : str
    target : str, optional
        Name of the target column (required for training; optional for prediction,
        where it is dropped when present).
    columns : list of dict, optional
        The feature columns a saved model was trained on (``{"name", "categories"}``),
        to encode prediction data the same way. A category unseen in training encodes
        as all zeros.

    Returns
    -------
    X : (N, features) float32
    y_raw : (N,) raw target values or None
    columns : list of dict
        ``{"name": str, "categories": list of str or None}`` per input column.
    """
    path = Path(path)
    header, cells = _read_cells(path)
    y_raw = None
    if target is not None:
        if target not in cells:
            sep = next((d for d in (";", "\t", "|") if len(header) == 1 and d in header[0]),
                       None)
            hint = (f" (the header is one column holding {sep!r}: this reader expects "
                    "comma-separated values)" if sep else "")
            raise DatasetError(f"{path}: no column {target!r}; columns are "
                               f"{', '.join(header)}{hint}")
        y_raw = _column(cells.pop(target))
    if columns is None:
        columns = []
        for name in (h for h in header if h in cells):
            values = _column(cells[name])
            categories = None
            if values.dtype.kind not in "fiub":
                categories = sorted(set(cells[name]))
            columns.append({"name": name, "categories": categories})
    else:
        missing = [c["name"] for c in columns if c["name"] not in cells]
        if missing:
            raise DatasetError(f"{path}: missing feature column(s) {missing}; the model "
                               f"was trained on {[c['name'] for c in columns]}")
    if not columns:
        raise DatasetError(f"{path}: no feature columns besides the target")
    blocks = []
    for col in columns:
        raw = cells[col["name"]]
        if col["categories"] is None:
            values = _column(raw)
            if values.dtype.kind not in "fiub":
                bad = next(v for v in raw if not _is_number(v))
                raise DatasetError(f"{path}: column {col['name']!r} was numeric in training "
                                   f"but holds {bad!r}")
            blocks.append(values.reshape(-1, 1))
        else:
            cats = np.asarray(col["categories"])
            blocks.append((np.asarray(raw)[:, None] == cats[None, :]).astype(np.float64))
    X = np.concatenate(blocks, axis=1).astype(np.float32)
    if not np.all(np.isfinite(X)):
        rows_bad = np.unique(np.nonzero(~np.isfinite(X))[0])[:5] + 2
        raise DatasetError(f"{path}: missing or non-finite feature values on line(s) "
                           f"{', '.join(map(str, rows_bad))}")
    return X, y_raw, columns


def _read_cells(path: Path) -> tuple[list, dict]:
    """The header and each column's stripped text cells, with the file's shape checked."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read as CSV ({exc})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DatasetError(f"{path}: empty file; expected a header row and data rows")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise DatasetError(f"{path}: header only, no data rows")
    if len(set(header)) != len(header):
        raise DatasetError(f"{path}: duplicate column names in the header")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DatasetError(f"{path}: line {line} has {len(row)} fields, the header has "
                               f"{len(header)}")
    return header, {name: [row[i].strip() for row in body] for i, name in enumerate(header)}


def feature_names(columns) -> list:
    """Names of the encoded features: the column, or ``column=category`` for one-hots."""
    return [c["name"] if c["categories"] is None else f"{c['name']}={cat}"
            for c in columns for cat in (c["categories"] or [None])]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _column(cells: list) -> np.ndarray:
    """Numbers when every cell parses as one, else strings."""
    try:
        return np.array([float(c) if c != "" else np.nan for c in cells], dtype=np.float64)
    except ValueError:
        return np.array(cells, dtype=str)


def load_file(path, target: str | None = None, task: str | None = None) -> Dataset:
    """A CSV (header row, ``target`` column) or an NPZ (arrays ``X`` and ``y``, or the
    array named ``target``) as a :class:`Dataset`."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                key = target or "y"
                if "X" not in archive.files or key not in archive.files:
                    raise DatasetError(f"{path}: expected arrays 'X' and {key!r}, found "
                                       f"{', '.join(archive.files) or 'none'}")
                X, y_raw = archive["X"], archive[key]
        except FileNotFoundError:
            raise DatasetError(f"{path}: no such file") from None
        except (OSError, ValueError) as exc:
            if isinstance(exc, DatasetError):
                raise
            raise DatasetError(f"{path}: cannot read as .npz ({exc})") from None
        if X.ndim < 2 or X.dtype.kind not in "fiub":
            raise DatasetError(f"{path}: X must be a numeric array of 2 or more dimensions, "
                               f"got shape {X.shape} and dtype {X.dtype}")
        X = X.reshape(len(X), -1).astype(np.float32)
        if y_raw.ndim not in (1, 2) or y_raw.dtype.kind not in "fiubU":
            raise DatasetError(f"{path}: {target or 'y'} must be a 1-D or 2-D array of "
                               f"targets, got shape {y_raw.shape} and dtype {y_raw.dtype}")
        if len(y_raw) != len(X):
            raise DatasetError(f"{path}: X has {len(X)} rows but {target or 'y'} has "
                               f"{len(y_raw)}")
        names = [f"x{i}" for i in range(X.shape[1])]
        columns = None
        target = target or "y"
    elif path.suffix.lower() in (".csv", ".txt", ".tsv"):
        if target is None:
            raise DatasetError("--target: name the CSV column to predict")
        X, y_raw, columns = read_csv(path, target)
        names = feature_names(columns)
    else:
        raise DatasetError(f"{path}: unsupported file type {path.suffix!r}; expected .csv "
                           "or .npz")
    if y_raw.dtype.kind == "f" and not np.all(np.isfinite(y_raw)):
        raise DatasetError(f"{path}: target {target!r} has missing or non-finite values")
    task = task or infer_task(y_raw)
    y, classes = encode_target(y_raw, task, f"{path}: target {target!r}")
    if path.suffix.lower() == ".npz":
        columns = [{"name": n, "categories": None} for n in names]
    return Dataset(X, y, task, classes, names, target, columns)
