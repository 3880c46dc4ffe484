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
#: The written forms of a date (or date-time) cell: ``yyyy-mm-dd``, ``yyyy/mm/dd`` or
#: ``a/b/yyyy`` (``a/b/yy``; day or month first, decided per column), then an optional time
#: and UTC offset. One pattern decides at training whether a column holds dates and reads
#: each cell, at training and at prediction.
_DATE = re.compile(r"^\s*(?:(?P<Y>\d{4})(?P<ys>[-/])(?P<M>\d{1,2})(?P=ys)(?P<D>\d{1,2})"
                   r"|(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4}|\d{2}))"
                   r"(?:[ T](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}(?:\.\d+)?))?\s*"
                   r"(?P<z>Z|[+-]\d{2}:?\d{2})?)?\s*$")
_SLASH = r"^\s*(\d{1,2})/(\d{1,2})/\d{2,4}"
_DAY_FIRST = r"^\s*(1[3-9]|[23]\d)/"
_MONTH_FIRST = r"^\s*\d{1,2}/(1[3-9]|[23]\d)/"


def _is_text(pd, series) -> bool:
    return (pd.api.types.is_string_dtype(series) or series.dtype == object
            or isinstance(series.dtype, pd.CategoricalDtype))


def _rows(mask, n=5) -> str:
    """``"rows 3, 7 and 9"``: data rows counted from 1 after the header."""
    idx = (np.flatnonzero(mask) + 1).tolist()
    shown = ", ".join(map(str, idx[:n])) + (", ..." if len(idx) > n else "")
    return f"{len(idx)} row{'s' if len(idx) != 1 else ''} (data row {shown})"


# ---------------------------------------------------------------------- text -> numbers
#: A number as written in a column read without separators (what pandas reads as one).
_PLAIN = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)",
                    re.IGNORECASE)


def number_pattern(parse: dict | None):
    """The one form a column's numbers may take, as a compiled regular expression.

    ``parse`` is the column's recorded reading (``{"thousands", "decimal"}``, None for
    plain numbers). With a thousands separator, groups after the first have exactly three
    digits (``1,000`` and ``12,345.5``, never ``2,5`` or ``1,2,3``); the decimal mark is
    the only one allowed (``1.5`` is no number of a decimal-comma column).
    """
    if not parse:
        return _PLAIN
    thousands, decimal = parse.get("thousands"), parse.get("decimal") or "."
    whole = (rf"[1-9]\d{{0,2}}(?:{re.escape(thousands)}\d{{3}})+|\d+" if thousands
             else r"\d+")
    return re.compile(rf"[+-]?(?:{whole})(?:{re.escape(decimal)}\d+)?")


def _separators(values: list, thousands, decimal, sep=None):
    """``(thousands, decimal)`` that read every value as a number, or None.

    ``1,000`` alone could be either; a semicolon-separated file is read the European way
    (decimal comma), a comma-separated one (where such cells are quoted) the English way.
    A separator no value holds is not recorded (None): the column's pattern then refuses
    it at prediction rather than reading ``1.500`` as 1500 in a decimal-comma column.
    """
    if thousands is not None or decimal is not None:
        return thousands, decimal or "."
    if not any("," in v for v in values):
        return None
    readings = [(",", "."), (".", ",")]
    if sep == ";":
        readings.reverse()
    for t, d in readings:
        pattern = number_pattern({"thousands": t, "decimal": d})
        if all(pattern.fullmatch(v) for v in values):
            return (t if any(t in v for v in values) else None), d
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


def not_numbers(text, parse: dict | None):
    """Mask of the present cells of a stripped text series that are not of the column's
    number pattern (:func:`number_pattern`)."""
    pattern = number_pattern(parse)
    present = text.notna().to_numpy(dtype=bool)
    ok = np.array([bool(pattern.fullmatch(v)) for v in text[present].tolist()], dtype=bool)
    bad = np.zeros(len(text), dtype=bool)
    bad[np.flatnonzero(present)[~ok]] = True
    return bad


def parse_numbers(pd, series, parse: dict | None):
    """Float64 values of a text column read with ``parse`` separators, NaN where missing,
    or None when some present cell is not of the column's pattern
    (:func:`number_pattern`)."""
    text = series.astype("string").str.strip()
    if not_numbers(text, parse).any():
        return None
    if parse:
        if parse.get("thousands"):
            text = text.str.replace(parse["thousands"], "", regex=False)
        if (parse.get("decimal") or ".") != ".":
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


def date_days(pd, series, dayfirst=None):
    """Days since 1970-01-01 of a text column's dates, read by :data:`_DATE`.

    Parameters
    ----------
    dayfirst : bool or None
        How ``a/b/yyyy`` cells are read; None refuses them (the column held none in
        training, so their order was never decided).

    Returns
    -------
    days : (N,) float64
        NaN where missing or refused.
    bad : (N,) bool
        Present cells that are no date of the column's forms (or no date at all: 31
        February, month 13).

    The calendar is NumPy's (``datetime64`` of months and days), so any year reads, not
    only pandas' nanosecond range (1677 to 2262); ``yy`` years are ``strptime``'s
    (69-99: 1900s, 00-68: 2000s).
    """
    text = series.astype("string")
    present = text.notna().to_numpy(dtype=bool)
    parts = text.str.extract(_DATE.pattern)
    matched = parts["ys"].notna().to_numpy(dtype=bool) | parts["a"].notna().to_numpy(dtype=bool)

    def num(col, default=np.nan):
        return pd.to_numeric(parts[col], errors="coerce").to_numpy(
            dtype=np.float64, na_value=default)

    slash = parts["a"].notna().to_numpy(dtype=bool)
    a, b, y = num("a"), num("b"), num("y")
    y = np.where(y < 100, np.where(y < 69, 2000 + y, 1900 + y), y)
    day_a = bool(dayfirst)
    year = np.where(slash, y, num("Y"))
    month = np.where(slash, b if day_a else a, num("M"))
    day = np.where(slash, a if day_a else b, num("D"))
    hour, minute, second = num("h", 0.0), num("mi", 0.0), num("s", 0.0)
    offset = np.zeros(len(text))
    zone = parts["z"].fillna("Z").to_numpy(dtype=object)
    for i in np.flatnonzero(zone != "Z"):
        z = zone[i].replace(":", "")
        offset[i] = (1 if z[0] == "+" else -1) * (int(z[1:3]) * 60 + int(z[3:5]))
    ok = matched & (month >= 1) & (month <= 12) & (day >= 1) & (hour < 24) & \
        (minute < 60) & (second < 60)
    if dayfirst is None:
        ok &= ~slash
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype(np.int64)
    start = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    end = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    ok &= np.where(ok, day <= end - start, False)
    days = start + day - 1 + (hour * 3600 + minute * 60 + second - offset * 60) / 86400
    days = np.where(ok, days, np.nan)
    return days, present & ~ok


def parse_dates(pd, series, dayfirst=None):
    """Days since 1970-01-01 (float64, NaN where missing) when every present cell is a
    date or date-time of the column's forms (:func:`date_days`), else None."""
    if pd.api.types.is_datetime64_any_dtype(series):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        # In the column's own unit (Parquet's are often ms or us, with years pandas'
        # nanoseconds cannot hold): no conversion to nanoseconds.
        stamps = series.to_numpy()
        days = (stamps - np.datetime64(0, "s")) / np.timedelta64(1, "D")
        return np.where(np.isnat(stamps), np.nan, days)
    present = series.dropna().astype(str)
    if present.empty or not present.str.match(_DATE.pattern).all():
        return None
    days, bad = date_days(pd, series.astype("string").str.strip(), dayfirst)
    return None if bad.any() else days


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
        # Predict reads the cells as text and by this rule (a missing cell or a mistake
        # elsewhere in its file must not turn True into "not a number").
        spec["parse"] = {"booleans": True}
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
    if _date_like(present) and parse_dates(pd, series, day_first(pd, series)) is not None:
        return _dates(pd, name, series, spec, options)
    refuse_stray_text(pd, f"column {name!r}", series, options)
    if judge and distinct == n:
        return None, (f"column {name!r}: left out (ID-like: a different text in every row); "
                      "pass --features to keep it")
    if distinct > MAX_CATEGORIES and distinct > n / 2:
        return None, (f"column {name!r}: left out (free text: {distinct} distinct values in "
                      f"{n} rows)")
    spec.update(kind="categorical", categories=sorted(set(text)))
    return spec, (f"column {name!r}: text, one-hot encoded ({distinct} categories)")


def refuse_stray_text(pd, what: str, series, options=None) -> None:
    """Refuse a column of numbers or dates but for a few cells (a typo or a bad date,
    which would otherwise turn the whole column into categories or leave it out); numbers
    are those of the separators ``options`` gives (``--thousands``/``--decimal``), when
    it gives any."""
    text = series.astype("string").str.strip()
    present = text.notna().to_numpy()
    given = {"thousands": getattr(options, "thousands", None),
             "decimal": getattr(options, "decimal", None)}
    if any(given.values()):
        numbers = pd.Series(~not_numbers(text, given)).where(lambda ok: ok)
    else:
        numbers = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce")
    # A date in either order counts: the question is only whether the cell is a date.
    dated = ~(date_days(pd, text, False)[1] & date_days(pd, text, True)[1])
    for kind, good in (("numbers", numbers.notna().to_numpy(dtype=bool)), ("dates", dated)):
        bad = present & ~good
        if 0 < bad.sum() <= 0.1 * present.sum() and text[good].nunique() > 10:
            raise DatasetError(f"{what} holds {kind} but {text[bad].iloc[0]!r} in "
                               f"{_rows(bad)}; correct those cells or leave them empty "
                               "(missing)")


def _finite(values, name: str, where: str):
    if np.isinf(values).any():
        raise DatasetError(f"{where}: column {name!r} holds an infinite value in "
                           f"{_rows(np.isinf(values))}")
    return values, 0


def _date_like(present) -> bool:
    """Whether every present cell is written as a date (before asking which order)."""
    return bool(present.astype(str).str.match(_DATE.pattern).all())


def _dates(pd, name, series, spec, options):
    order = day_first(pd, series)
    if parse_dates(pd, series, order) is None:
        return None, f"column {name!r}: left out (values of type {series.dtype})"
    if getattr(options, "dates", "numeric") == "drop":
        return None, f"column {name!r}: left out (dates, --dates drop)"
    spec["kind"] = "datetime"
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
    parse = spec.get("parse") or None
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(series):
            return parse_dates(pd, series), 0
        order = parse.get("dayfirst") if parse else None
        text = series.astype("string").str.strip()
        values, bad = date_days(pd, text, order)
        if bad.any():
            forms = ("yyyy-mm-dd" if order is None else
                     f"yyyy-mm-dd or {'dd/mm/yyyy' if order else 'mm/dd/yyyy'}")
            raise DatasetError(f"{where}: column {name!r} held dates in training but holds "
                               f"{_short(text[bad].iloc[0])!r} in {_rows(bad)}, not of its "
                               f"forms ({forms}) or no such day")
        return values, 0
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return _finite(series.to_numpy(dtype=np.float64, na_value=np.nan), name, where)
    if parse and parse.get("booleans"):
        return _booleans(series, name, where), 0
    # Each cell against the column's one pattern: a cell of another form (``2,5`` in a
    # column of ``1,000``) is refused, never read with the separators dropped.
    text = series.astype("string").str.strip()
    bad = not_numbers(text, parse)
    values = None if bad.any() else parse_numbers(pd, text, parse)
    if values is None:
        bad = bad if bad.any() else text.notna().to_numpy(dtype=bool)
        raise DatasetError(f"{where}: column {name!r} was numeric in training but holds "
                           f"{_short(text[bad].iloc[0])!r} in {_rows(bad)}, not of its form "
                           f"({_form(parse)})")
    return _finite(values, name, where)


#: The cells a column of booleans holds (as pandas reads them), and their values.
BOOLEANS = {"true": 1.0, "false": 0.0}


def _booleans(series, name: str, where: str) -> np.ndarray:
    """A column read as booleans at training, from its text: True/False in any case as
    1/0, NaN where missing; any other cell refused, naming it and its row."""
    text = series.astype("string").str.strip()
    lower = text.str.lower()
    bad = (text.notna() & ~lower.isin(list(BOOLEANS))).to_numpy(dtype=bool)
    if bad.any():
        raise DatasetError(f"{where}: column {name!r} held True/False in training but "
                           f"holds {_short(text[bad].iloc[0])!r} in {_rows(bad)}; write "
                           "True or False (or leave the cell empty for a missing value)")
    return lower.map(BOOLEANS).to_numpy(dtype=np.float64, na_value=np.nan)


def _form(parse) -> str:
    """The numbers a column's ``parse`` accepts, in words."""
    if not parse:
        return "plain numbers such as 1234.5"
    thousands, decimal = parse.get("thousands"), parse.get("decimal") or "."
    example = f"1{thousands}234" if thousands else "1234"
    return (f"numbers written as {example}{decimal}5: "
            + (f"thousands separator {thousands!r} between groups of 3 digits, "
               if thousands else "no thousands separator, ")
            + f"decimal mark {decimal!r}")


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


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
