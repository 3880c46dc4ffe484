"""What each column of a user's table becomes, decided once at training time, said in a
notice, recorded in the model file and applied unchanged at prediction time.

A column is one of:

- ``numeric``: numbers as they are (booleans as 0/1; text such as ``1,000`` or ``3,5``
  parsed with the separators recorded in ``parse``);
- ``datetime``: dates and times as days since 1970-01-01;
- ``categorical``: text, one 0/1 feature per category seen in training (an unseen
  category at prediction time encodes as all zeros and is reported);

or it is left out, with the reason: constant, ID-like (unique per row), free text (too
many distinct values), dates when asked to drop them, or ``--drop``/``--features``.
Missing cells are an error unless an imputation strategy says how to fill them; the fill
value is part of the column's spec.
"""

from __future__ import annotations

import re

import numpy as np

from .frames import DatasetError

IMPUTE = ("mean", "median", "most_frequent", "drop")
#: A text column with more distinct values than this (and than half the rows) is free text.
MAX_CATEGORIES = 100
#: ID-like and constant columns are only judged from this many rows on.
MIN_ROWS_TO_JUDGE = 10
_DATE = re.compile(r"^\s*(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{4}/\d{1,2}/\d{1,2})"
                   r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?\s*$")
_SLASH = r"^\s*(\d{1,2})/(\d{1,2})/\d{2,4}"
_DAY_FIRST = r"^\s*(1[3-9]|[23]\d)/"
_MONTH_FIRST = r"^\s*\d{1,2}/(1[3-9]|[23]\d)/"
_EPOCH = np.datetime64("1970-01-01T00:00:00", "ns")


def _is_text(pd, series) -> bool:
    return (pd.api.types.is_string_dtype(series) or series.dtype == object
            or isinstance(series.dtype, pd.CategoricalDtype))


def _rows(mask, n=5) -> str:
    """``"rows 3, 7 and 9"``: data rows counted from 1 after the header."""
    idx = (np.flatnonzero(mask) + 1).tolist()
    shown = ", ".join(map(str, idx[:n])) + (", ..." if len(idx) > n else "")
    return f"{len(idx)} row{'s' if len(idx) != 1 else ''} (data row {shown})"


# ---------------------------------------------------------------------- text -> numbers
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(,\d{3})+(\.\d+)?|[+-]?\d+(\.\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?[1-9]\d{0,2}(\.\d{3})+(,\d+)?|[+-]?\d+(,\d+)?")


def _separators(values: list, thousands, decimal, sep=None):
    """``(thousands, decimal)`` that read every value as a number, or None.

    ``1,000`` alone could be either; a semicolon-separated file is read the European way
    (decimal comma), a comma-separated one (where such cells are quoted) the English way.
    """
    if thousands is not None or decimal is not None:
        return thousands, decimal or "."
    if not any("," in v for v in values):
        return None
    readings = [((",", "."), _THOUSANDS), ((".", ","), _DECIMAL_COMMA)]
    if sep == ";":
        readings.reverse()
    for seps, pattern in readings:
        if all(pattern.fullmatch(v) for v in values):
            return seps
    return None


def describe_numbers(text: list, seps) -> str:
    """``"text like '1,000' read as numbers (thousands separator ',')"``."""
    thousands, decimal = seps
    example = next((v for v in text if (thousands and thousands in v) or decimal in v),
                   text[0])
    how = [f"thousands separator {thousands!r}"] if thousands and any(
        thousands in v for v in text) else []
    how += [f"decimal mark {decimal!r}"] if decimal != "." else []
    return f"text like {example!r} read as numbers ({', '.join(how) or 'as written'})"


def parse_numbers(pd, series, parse: dict | None):
    """Float64 values of a text column read with ``parse`` separators, NaN where missing,
    or None when some present cell is not a number."""
    text = series.astype("string").str.strip()
    if parse:
        if parse.get("thousands"):
            text = text.str.replace(parse["thousands"], "", regex=False)
        if parse.get("decimal", ".") != ".":
            text = text.str.replace(parse["decimal"], ".", regex=False)
    values = pd.to_numeric(text, errors="coerce")
    if bool((values.isna() & text.notna()).any()):
        return None
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def day_first(pd, series):
    """Whether the ``a/b/yyyy`` dates of a text column are day first (some ``a`` > 12),
    month first (some ``b`` > 12; also when no cell says), None without such dates."""
    if pd.api.types.is_datetime64_any_dtype(series) or not _is_text(pd, series):
        return None
    parts = series.dropna().astype(str).str.extract(_SLASH).dropna().astype(int)
    if parts.empty:
        return None
    day, month = bool((parts[0] > 12).any()), bool((parts[1] > 12).any())
    if day and month:
        text = series.dropna().astype(str)
        a = text[text.str.match(_DAY_FIRST)].iloc[0]
        b = text[text.str.match(_MONTH_FIRST)].iloc[0]
        raise DatasetError(f"column {series.name!r}: dates written day first ({a!r}) and "
                           f"month first ({b!r})")
    return day


def parse_dates(pd, series, dayfirst=False):
    """Days since 1970-01-01 (float64, NaN where missing) when every present cell is a
    date or date-time, else None; ``a/b/yyyy`` cells are read day first if ``dayfirst``."""
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series
    else:
        present = series.dropna().astype(str)
        if present.empty or not present.str.match(_DATE).all():
            return None
        text = series.astype("string")
        slash = text.str.match(_SLASH).fillna(False).astype(bool)
        stamps = pd.to_datetime(text.where(~slash), errors="coerce", format="mixed", utc=True)
        if slash.any():
            stamps[slash] = pd.to_datetime(text[slash], errors="coerce", format="mixed",
                                           utc=True, dayfirst=bool(dayfirst))
        if bool((stamps.isna() & series.notna()).any()):
            return None
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    ns = stamps.astype("datetime64[ns]").to_numpy()
    days = (ns - _EPOCH) / np.timedelta64(1, "D")
    return np.where(np.isnat(ns), np.nan, days)


# ---------------------------------------------------------------------- decisions
def plan(pd, frame, options, keep=None) -> tuple[list, list]:
    """Decide what each feature column of ``frame`` becomes.

    Parameters
    ----------
    frame : pandas.DataFrame
        The feature columns only (target removed, ``--drop``/``--features`` applied).
    options : ReadOptions-like
        ``sep`` (the delimiter the file was read with), ``thousands``, ``decimal``,
        ``dates`` ("numeric" or "drop").
    keep : list of str, optional
        Columns the user chose (``--features``): never left out as constant or ID-like.

    Returns
    -------
    specs : list of dict
        ``{"name", "kind", "categories", "parse"}`` per kept column, in file order.
    notices : list of str
    """
    specs, notices, n = [], [], len(frame)
    for name in frame.columns:
        spec, note = _decide(pd, name, frame[name], n, options, name in (keep or ()))
        if note:
            notices.append(note)
        if spec is not None:
            specs.append(spec)
    return specs, notices


def _decide(pd, name, series, n: int, options, chosen: bool):
    """``(spec or None, notice or None)`` for one column."""
    judge = n >= MIN_ROWS_TO_JUDGE and not chosen
    present = series.dropna()
    if present.empty:
        return None, f"column {name!r}: left out (every cell is missing)"
    nested = next((v for v in present if isinstance(v, (list, tuple, dict, set, np.ndarray))),
                  None) if series.dtype == object else None
    if nested is not None:  # Parquet lists and structs: no one number per row
        return None, f"column {name!r}: left out (nested values: {type(nested).__name__})"
    distinct = present.nunique()
    if judge and distinct == 1:
        return None, f"column {name!r}: left out (constant: {present.iloc[0]!r} in every row)"
    spec = {"name": name, "kind": "numeric", "categories": None, "parse": None}
    if pd.api.types.is_bool_dtype(series):
        return spec, None
    if pd.api.types.is_numeric_dtype(series):
        values = present.to_numpy(dtype=np.float64)
        integral = bool(np.all(values == np.round(values)))
        if judge and integral and distinct == n and (present.is_monotonic_increasing
                                                     or present.is_monotonic_decreasing):
            return None, (f"column {name!r}: left out (ID-like: a different integer in every "
                          "row, in order); pass --features to keep it")
        return spec, None
    if pd.api.types.is_datetime64_any_dtype(series) or not _is_text(pd, series):
        return _dates(pd, name, series, spec, options)
    text = present.astype(str).str.strip().tolist()
    seps = _separators(text, options.thousands, options.decimal, options.sep)
    if seps is not None and parse_numbers(pd, series, dict(zip(("thousands", "decimal"),
                                                                seps))) is not None:
        spec["parse"] = {"thousands": seps[0], "decimal": seps[1]}
        return spec, f"column {name!r}: {describe_numbers(text, seps)}"
    if seps is None and parse_numbers(pd, series, None) is not None:
        return spec, f"column {name!r}: numbers beyond 64-bit integers, read as floating point"
    if parse_dates(pd, series) is not None:
        return _dates(pd, name, series, spec, options)
    refuse_stray_text(pd, f"column {name!r}", series)
    if judge and distinct == n:
        return None, (f"column {name!r}: left out (ID-like: a different text in every row); "
                      "pass --features to keep it")
    if distinct > MAX_CATEGORIES and distinct > n / 2:
        return None, (f"column {name!r}: left out (free text: {distinct} distinct values in "
                      f"{n} rows)")
    spec.update(kind="categorical", categories=sorted(set(text)))
    return spec, (f"column {name!r}: text, one-hot encoded ({distinct} categories)")


def refuse_stray_text(pd, what: str, series) -> None:
    """Refuse a column of numbers or dates but for a few cells (a typo or a bad date,
    which would otherwise turn the whole column into categories or leave it out)."""
    text = series.astype("string").str.strip()
    present = text.notna().to_numpy()
    numbers = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce")
    dated = text.str.match(_DATE).fillna(False).astype(bool)
    stamps = pd.to_datetime(text.where(dated), errors="coerce", format="mixed", utc=True)
    for kind, good in (("numbers", numbers.notna()), ("dates", stamps.notna())):
        bad = present & ~good.to_numpy(dtype=bool)
        if 0 < bad.sum() <= 0.1 * present.sum() and text[good].nunique() > 10:
            raise DatasetError(f"{what} holds {kind} but {text[bad].iloc[0]!r} in "
                               f"{_rows(bad)}; correct those cells or leave them empty "
                               "(missing)")


def _finite(values, name: str, where: str):
    if np.isinf(values).any():
        raise DatasetError(f"{where}: column {name!r} holds an infinite value in "
                           f"{_rows(np.isinf(values))}")
    return values, 0


def _dates(pd, name, series, spec, options):
    if parse_dates(pd, series) is None:
        return None, f"column {name!r}: left out (values of type {series.dtype})"
    if getattr(options, "dates", "numeric") == "drop":
        return None, f"column {name!r}: left out (dates, --dates drop)"
    spec["kind"] = "datetime"
    order = day_first(pd, series)
    if order is not None:
        spec["parse"] = {"dayfirst": order}
    how = {True: ", read day first (13/04/2024 is 13 April)",
           False: ", read month first (04/13/2024 is 13 April)"}.get(order, "")
    return spec, f"column {name!r}: dates{how}, used as days since 1970-01-01"


def complete(spec: dict) -> dict:
    """A model file's column spec with its optional keys (``parse``, ``fill``) present."""
    return {"name": spec["name"], "kind": spec["kind"], "categories": spec["categories"],
            "parse": spec.get("parse"), "fill": spec.get("fill")}


# ---------------------------------------------------------------------- encoding
def column_values(pd, series, spec: dict, where: str):
    """One column as float64 values (NaN where missing): ``(N,)`` or ``(N, categories)``.

    Raises a :class:`DatasetError` when the column's type disagrees with ``spec``.
    Returns the values and the number of rows with a category unseen in training.
    """
    name, kind = spec["name"], spec["kind"]
    if kind == "categorical":
        if not _is_text(pd, series) and not series.isna().all():
            raise DatasetError(f"{where}: column {name!r} was text (categories) in training "
                               f"but holds {series.dtype} values here")
        text = series.astype("string").str.strip()
        cats = spec["categories"]
        onehot = np.stack([(text == c).fillna(False).to_numpy(dtype=bool) for c in cats],
                          axis=1).astype(np.float64)
        missing = text.isna().to_numpy()
        onehot[missing] = np.nan
        unseen = int((~missing & ~onehot.any(axis=1)).sum())
        return onehot, unseen
    if kind == "datetime":
        values = parse_dates(pd, series, (spec.get("parse") or {}).get("dayfirst"))
        if values is None:
            raise DatasetError(f"{where}: column {name!r} held dates in training but holds "
                               f"{_first_bad(series)!r} here")
        return values, 0
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return _finite(series.to_numpy(dtype=np.float64, na_value=np.nan), name, where)
    values = parse_numbers(pd, series, spec.get("parse"))
    if values is None:
        raise DatasetError(f"{where}: column {name!r} was numeric in training but holds "
                           f"{_first_bad(series)!r}")
    return _finite(values, name, where)


def _first_bad(series) -> str:
    for v in series.dropna():
        try:
            float(str(v).replace(",", ""))
        except ValueError:
            return str(v)
    return str(series.dropna().iloc[0]) if series.notna().any() else ""


def fill_value(values: np.ndarray, kind: str, strategy: str):
    """The value (or one-hot row) that fills a column's missing cells under ``strategy``."""
    present = values[~np.isnan(values).any(axis=1)] if values.ndim == 2 else \
        values[~np.isnan(values)]
    if values.ndim == 2:  # categorical: the most frequent category
        counts = present.sum(axis=0)
        row = np.zeros(values.shape[1])
        row[int(np.argmax(counts))] = 1.0
        return row.tolist()
    if strategy == "median":
        return float(np.median(present))
    if strategy == "most_frequent":
        uniq, counts = np.unique(present, return_counts=True)
        return float(uniq[int(np.argmax(counts))])
    return float(np.mean(present))
