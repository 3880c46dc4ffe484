"""The user's tables: CSV, Parquet and NPZ files read into a :class:`Dataset` of host
arrays, with each column's treatment decided and explained (gpunn.data.columns), missing
values refused or imputed, categorical targets mapped to classes and the task (binary,
multiclass, regression) inferred with its reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import columns as _cols
from .frames import (
    CSV_SUFFIXES,
    NA_VALUES,
    PARQUET_SUFFIXES,
    DatasetError,
    ReadOptions,
    pandas,
    read_frame,
    table_suffix,
)

TASKS = ("binary", "multiclass", "regression")
#: Integer targets with at most this many distinct values are classes.
MAX_INTEGER_CLASSES = 20

__all__ = ["TASKS", "Dataset", "DatasetError", "ReadOptions", "TableOptions", "infer_task",
           "encode_target", "load_file", "read_features", "feature_names"]


@dataclass(frozen=True)
class TableOptions(ReadOptions):
    """Reading options plus what to do with the columns (``gpunn train`` flags).

    Attributes
    ----------
    impute : {"mean", "median", "most_frequent", "drop"} or None
        Missing feature cells: None refuses them; ``drop`` drops their rows (and rows with
        a missing target); the others fill them (text columns: the most frequent
        category).
    drop : tuple of str
        Columns to leave out.
    features : tuple of str or None
        The only columns to use (kept even when they look like IDs).
    dates : {"numeric", "drop"}
    date_format : str or None
        A :func:`~datetime.datetime.strptime` format (``--date-format``): a column whose
        every cell is a date of it is read as dates (days since 1970-01-01).
    """

    impute: str | None = None
    drop: tuple = ()
    features: tuple | None = None
    dates: str = "numeric"
    date_format: str | None = None


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
    columns : list of dict
        Per input column, how it was read (gpunn.data.columns), for ``predict``.
    notices : list of str
        Each decision taken about the data, in words.
    task_reason : str
        Why the task is what it is.
    X_test, y_test : optional official test split
    sample_shape : tuple of int or None
        The shape of one sample when its features are an image or a signal, channels
        first (``(1, 8, 8)`` for digits, ``(1, 40)`` for mnist1d); None for a table. X
        stays flat, ``(N, prod(sample_shape))``: a network reshapes it (``Reshape``).
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
    notices: list = field(default_factory=list)
    task_reason: str = ""
    sample_shape: tuple | None = None


# ---------------------------------------------------------------------- task inference
def infer_task(values: np.ndarray) -> tuple[str, str]:
    """Guess the task from raw target values, and say why.

    Text or booleans are classes; integers (or integral floats) with at most
    ``MAX_INTEGER_CLASSES`` distinct values are classes; anything else is regression.

    Returns
    -------
    task : str
    reason : str
    """
    if values.dtype.kind in "USOb":
        k = len(np.unique(values))
        return ("binary" if k == 2 else "multiclass"), f"text labels, {k} classes"
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    distinct = np.unique(finite)
    k = len(distinct)
    if not np.all(distinct == np.round(distinct)):
        return "regression", "real-valued target"
    if k <= MAX_INTEGER_CLASSES:
        return ("binary" if k == 2 else "multiclass"), (
            f"integer target with {k} distinct values (at most {MAX_INTEGER_CLASSES}: "
            "classes); pass --task regression for a quantity")
    return "regression", (f"integer target with {k} distinct values (more than "
                          f"{MAX_INTEGER_CLASSES}); pass --task multiclass for classes")


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


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _preview(values, n=5) -> str:
    items = [_short(_label(v)) for v in list(values)[:n]]
    return ", ".join(items) + (", ..." if len(values) > n else "")


def feature_names(columns) -> list:
    """Names of the encoded features: the column, or ``column=category`` for one-hots."""
    return [c["name"] if not c.get("categories") else f"{c['name']}={cat}"
            for c in columns for cat in (c.get("categories") or [None])]


# ---------------------------------------------------------------------- user files
def _names(option, frame, path, what: str) -> list:
    twice = next((c for c in option if list(option).count(c) > 1), None)
    if twice is not None:
        raise DatasetError(f"{what}: {twice!r} named twice")
    unknown = [c for c in option if c not in frame.columns]
    if unknown:
        raise DatasetError(f"{path}: {what}: no column(s) {', '.join(map(repr, unknown))}; "
                           f"columns are {', '.join(map(str, frame.columns))}")
    return list(option)


def _target(pd, frame, target: str, path, sep, options):
    """The target column as a NumPy array (NaN/None where missing), checked."""
    if target not in frame.columns:
        header = list(frame.columns)
        other = next((d for d in (";", "\t", "|", ",") if d != sep and len(header) == 1
                      and d in header[0]), None)
        hint = (f" (the header is one column holding {other!r}: pass --sep {other!r})"
                if other else "")
        raise DatasetError(f"{path}: no column {target!r}; columns are "
                           f"{', '.join(map(str, header))}{hint}")
    series = frame[target]
    notices = []
    if _cols._is_text(pd, series):
        text = series.astype("string").str.strip()
        values = text.dropna().tolist()
        form = _cols.number_form(values, {"thousands": options.thousands,
                                          "decimal": options.decimal or "."})
        numbers = None if form is None else _cols.parse_numbers(pd, text, form)
        if numbers is not None:
            told = _cols.describe_form(values, form)
            notices += [f"target {target!r}: {told}"] if told else []
            return numbers, np.isnan(numbers), notices
        _cols.refuse_stray_text(pd, f"{path}: target {target!r}", text)
        values = text.to_numpy(dtype=object, na_value=None)
        missing = text.isna().to_numpy()
        return np.where(missing, "", values).astype(str), missing, notices
    if pd.api.types.is_bool_dtype(series):
        missing = series.isna().to_numpy()
        return series.astype("string").fillna("").to_numpy(dtype=str), missing, notices
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():  # a value, not a missing one: never dropped as if missing
        raise DatasetError(f"{path}: target {target!r} holds an infinite value in "
                           f"{_cols._rows(infinite)}")
    return values, np.isnan(values), notices


def _features(pd, frame, path, options, specs):
    """``X (N, features)`` float64 with NaN where missing, and notices."""
    blocks, notices = [], []
    for spec in specs:
        values, unseen = _cols.column_values(pd, frame[spec["name"]], spec, str(path))
        blocks.append(values.reshape(len(frame), -1))
        if unseen:
            notices.append(f"column {spec['name']!r}: {unseen} row(s) with a category not "
                           "seen in training (encoded as all zeros)")
    return np.concatenate(blocks, axis=1), notices


def _blocks(specs) -> list:
    """``(spec, first, end)``: the columns of X each column spec encodes into."""
    widths = [len(s["categories"]) if s["categories"] else 1 for s in specs]
    ends = np.cumsum(widths)
    return [(s, int(e - w), int(e)) for s, w, e in zip(specs, widths, ends)]


def _missing(path, frame, specs, X, missing_y, target, options):
    """Apply ``options.impute`` to missing cells; returns (X, keep rows, notices)."""
    blocks = _blocks(specs)
    holes = {s["name"]: np.isnan(X[:, a:b]).any(axis=1)
             for s, a, b in blocks}
    bad = {k: v for k, v in holes.items() if v.any()}
    if missing_y.all():
        raise DatasetError(f"{path}: target {target!r} is missing in every row")
    if missing_y.any() and options.impute != "drop":
        raise DatasetError(f"{path}: target {target!r} is missing in "
                           f"{_cols._rows(missing_y)}; a missing target is never a class: "
                           "fill or remove those rows, or pass --impute drop")
    if bad and options.impute is None:
        listed = "; ".join(f"{k!r} in {_cols._rows(v)}" for k, v in list(bad.items())[:4])
        raise DatasetError(f"{path}: missing values in column(s) {listed}"
                           f"{'; ...' if len(bad) > 4 else ''}; pass --impute mean, median, "
                           "most_frequent or drop (cells empty or "
                           f"{', '.join(map(repr, NA_VALUES[1:6]))}, ... count as missing)")
    keep = ~missing_y
    notices = []
    if options.impute == "drop":
        for v in bad.values():
            keep &= ~v
        if (~keep).any():
            notices.append(f"dropped {int((~keep).sum())} row(s) with missing values "
                           "(--impute drop)")
        return X[keep], keep, notices
    for spec, a, b in blocks:
        if spec["name"] in bad:
            fill = _cols.fill_value(X[:, a:b] if spec["categories"] else X[:, a],
                                    spec["kind"], options.impute)
            spec["fill"] = fill
            rows = bad[spec["name"]]
            X[rows, a:b] = fill
            how = "most frequent category" if spec["categories"] else options.impute
            notices.append(f"column {spec['name']!r}: {int(rows.sum())} missing value(s) "
                           f"filled with the {how}")
    return X, keep, notices


def _convention(pd, path: Path, frame, options: TableOptions, target: str):
    """Options holding the file's number convention (decided once from every column's
    cells, :func:`gpunn.data.columns.file_convention`), and its notice.

    pandas reads ``1.065`` as 1.065 whatever the file means; where the convention is a
    decimal comma, the columns pandas read as numbers are read again from their text
    (``1.065`` beside ``735`` is 1065), and integers with leading zeros (``02134``) are
    kept as written, being codes. ``frame`` is changed in place.
    """
    used = [c for c in frame.columns if c not in options.drop
            and (options.features is None or c in options.features or c == target)]
    if options.sep is None:  # Parquet: only its text columns are written numbers
        raw = frame[[c for c in used if _cols._is_text(pd, frame[c])]]
    else:
        raw = read_frame(path, options, text=list(frame.columns))[0][used]
    try:
        convention, note = _cols.file_convention(pd, raw, options.sep, options)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    for name in raw.columns:
        series = frame[name]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        text = raw[name].dropna().str.strip()
        zeros = bool(text.str.fullmatch(r"\d+").all() and text.str.match(r"0\d").any())
        if convention["decimal"] != "." or zeros:
            frame[name] = raw[name]
    return dataclasses.replace(options, **convention), [note] if note else []


def _float32(X: np.ndarray, where) -> np.ndarray:
    """``X`` as the float32 array the tables are held in, or a :class:`DatasetError`
    naming the first finite value the cast would turn into Inf: ``where(row, col,
    value)`` says where it is (a column and data row) and what. Said here, where the
    column is known, not later as "NaN or Inf" of a matrix the user never wrote."""
    limit = float(np.finfo(np.float32).max)
    if X.dtype.kind == "f" and X.size:
        with np.errstate(invalid="ignore"):
            beyond = np.abs(X) > limit  # NaN (a missing cell) compares False
        if beyond.any():
            r, c = (int(i) for i in np.argwhere(beyond)[0])
            raise DatasetError(f"{where(r, c, f'{float(X[r, c]):.3g}')}, beyond float32's "
                               f"range ({limit:.3g}), the precision data files are read in; "
                               "rescale it (e.g. to other units)")
    return X.astype(np.float32)


def _read_table(path: Path, target: str, options: TableOptions):
    """X, raw target, column specs and notices of a CSV or Parquet file."""
    pd = pandas()
    frame, sep = read_frame(path, options)
    options = dataclasses.replace(options, sep=sep)  # what was used, sniffed or given
    options, notices = _convention(pd, path, frame, options, target)
    y_raw, missing_y, more = _target(pd, frame, target, path, sep, options)
    notices += more
    if options.features is not None:
        chosen = _names(options.features, frame, path, "--features")
        if target in chosen:
            raise DatasetError(f"--features: {target!r} is the target")
    else:
        chosen = [c for c in frame.columns if c != target]
    dropped = _names(options.drop, frame, path, "--drop")
    if target in dropped:  # ignoring it would train on the column the user left out
        raise DatasetError(f"--drop: {target!r} is the target")
    chosen = [c for c in chosen if c not in dropped]
    try:
        specs, told = _cols.plan(pd, frame[chosen], options, keep=options.features)
    except DatasetError as exc:  # the column rules name column and row; add the file
        raise DatasetError(f"{path}: {exc}") from None
    notices += told
    for spec in specs:  # the file's missing-value words are the column's, at predict too
        if options.na_values:
            spec["na_values"] = list(options.na_values)
    if not specs:
        raise DatasetError(f"{path}: no usable feature columns besides the target "
                           f"{target!r}" + (f" ({'; '.join(told)})" if told else ""))
    X, more = _features(pd, frame, path, options, specs)
    notices += more
    X = _float32(X, _cell_of(path, specs))
    X, keep, more = _missing(path, frame, specs, X, missing_y, target, options)
    notices += more
    return X, y_raw[keep], specs, notices


def read_features(path, columns: list, options: ReadOptions | None = None):
    """The features of a prediction file, encoded as a model's training data was.

    Parameters
    ----------
    path : str
    columns : list of dict
        The model's column specs (``extra["columns"]``).

    Returns
    -------
    X : (N, features) float32
    notices : list of str
    """
    path, options = Path(path), options or ReadOptions()
    specs = [_cols.complete(c) for c in columns]
    missing_words = sorted({w for s in specs for w in s["na_values"] or ()})
    options = dataclasses.replace(options, na_values=tuple(
        dict.fromkeys([*missing_words, *options.na_values])))
    frame, _ = read_frame(path, options, text=[s["name"] for s in specs
                                               if s["kind"] != "numeric" or s["parse"]])
    return frame_features(frame, specs, path, options)


def frame_features(frame, columns: list, where="X", options: ReadOptions | None = None):
    """The features of a pandas DataFrame of raw columns (as a table file holds them),
    encoded as a model's training data was: what ``model.predict(frame)`` feeds the
    network. Parameters and returns as :func:`read_features`; errors name ``where``."""
    pd = pandas()
    options = options or ReadOptions()
    specs = [_cols.complete(c) for c in columns]
    path = where
    missing = [s["name"] for s in specs if s["name"] not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing feature column(s) {missing}; the model "
                           f"was trained on {[c['name'] for c in specs]}")
    X, notices = _features(pd, frame, path, options, specs)
    X = _float32(X, _cell_of(path, specs))
    blocks = _blocks(specs)
    for spec, a, b in blocks:
        rows = np.isnan(X[:, a:b]).any(axis=1)
        if not rows.any():
            continue
        if spec.get("fill") is None:
            raise DatasetError(f"{path}: missing values in column {spec['name']!r} in "
                               f"{_cols._rows(rows)}; the model has no fill value for it "
                               "(train with --impute mean, median or most_frequent)")
        X[rows, a:b] = spec["fill"]
        notices.append(f"column {spec['name']!r}: {int(rows.sum())} missing value(s) "
                       "filled as in training")
    return X, notices


def _cell_of(path, specs):
    """``where(row, col, value)`` for :func:`_float32`: the column an encoded feature
    comes from and its data row (1-based, as the file's rows after the header)."""
    names = [s["name"] for s, a, b in _blocks(specs) for _ in range(a, b)]
    return lambda r, c, v: f"{path}: column {names[c]!r} holds {v} in data row {r + 1}"


def _read_npz(path: Path, target: str | None):
    from ..files.format import not_npz

    problem = not_npz(path)
    if problem is not None:
        raise DatasetError(f"{path}: not an .npz archive of arrays X and y ({problem})")
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
    X = _float32(X.reshape(len(X), -1),
                 lambda r, c, v: f"{path}: X[{r}, {c}] holds {v}")
    if y_raw.ndim not in (1, 2) or y_raw.dtype.kind not in "fiubU":
        raise DatasetError(f"{path}: {key} must be a 1-D or 2-D array of targets, got "
                           f"shape {y_raw.shape} and dtype {y_raw.dtype}")
    if len(y_raw) != len(X):
        raise DatasetError(f"{path}: X has {len(X)} rows but {key} has {len(y_raw)}")
    if y_raw.dtype.kind == "f" and not np.all(np.isfinite(y_raw)):
        raise DatasetError(f"{path}: target {key!r} has missing or non-finite values")
    columns = [{"name": f"x{i}", "kind": "numeric", "categories": None, "parse": None}
               for i in range(X.shape[1])]
    return X, y_raw, columns, key


def load_file(path, target: str | None = None, task: str | None = None,
              options: TableOptions | None = None) -> Dataset:
    """A CSV/Parquet table (header row, ``target`` column) or an NPZ (arrays ``X`` and
    ``y``, or the array named ``target``) as a :class:`Dataset`."""
    path, options = Path(path), options or TableOptions()
    suffix = table_suffix(path)
    notices = []
    if suffix == ".npz":
        X, y_raw, columns, target = _read_npz(path, target)
    elif suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if target is None:
            raise DatasetError("--target: name the column to predict")
        X, y_raw, columns, notices = _read_table(path, target, options)
    else:
        raise DatasetError(f"{path}: unsupported file type {suffix!r}; expected .csv, .tsv, "
                           ".txt (each also gzipped: .csv.gz), .parquet or .npz")
    inferred, reason = infer_task(y_raw)
    if task is not None and task != inferred:
        reason = f"set by --task; the target alone suggests {inferred}"
    task = task or inferred
    y, classes = encode_target(y_raw, task, f"{path}: target {target!r}")
    return Dataset(X, y, task, classes, feature_names(columns), target, columns,
                   notices=notices, task_reason=reason)
