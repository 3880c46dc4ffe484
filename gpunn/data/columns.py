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

import functools
import re

import numpy as np

from .frames import DatasetError

IMPUTE = ("mean", "median", "most_frequent", "drop")
#: A text column with more distinct values than this (and than half the rows) is free text.
MAX_CATEGORIES = 100
#: ID-like and constant columns are only judged from this many rows on.
MIN_ROWS_TO_JUDGE = 10
#: The written forms of a date (or date-time) cell: ``yyyy-mm-dd``, ``yyyy/mm/dd``,
#: ``a/b/yyyy`` (``a/b/yy``; day or month first, decided per column), ``dd.mm.yyyy`` (day
#: first, as German and Russian spreadsheets write it) or ``29 Aug 2019`` (English month
#: names, abbreviated or not), then an optional time (with ``AM``/``PM`` or not) and UTC
#: offset. One pattern decides at training whether a column holds dates and reads each
#: cell, at training and at prediction.
_DATE = re.compile(r"^\s*(?:(?P<Y>\d{4})(?P<ys>[-/])(?P<M>\d{1,2})(?P=ys)(?P<D>\d{1,2})"
                   r"|(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4}|\d{2})"
                   r"|(?P<dd>\d{1,2})\.(?P<dm>\d{1,2})\.(?P<dy>\d{4})"
                   r"|(?P<nd>\d{1,2})[ -](?P<nm>[A-Za-z]{3,9})\.?[ -](?P<ny>\d{4}))"
                   r"(?:[ T](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}(?:\.\d+)?))?\s*"
                   r"(?P<ap>[AaPp]\.?[Mm]\.?)?\s*(?P<z>Z|[+-]\d{2}:?\d{2})?)?\s*$")
_MONTHS = {name: i + 1 for i, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
     ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
     ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")]) for name in names}
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
#: Spaces written between groups of three digits: plain, no-break and narrow no-break
#: (French and Swiss spreadsheets); a thousands separator of " " stands for any of them.
_SPACES = " \u00a0\u202f"
#: Currency symbols read as part of a number, before or after it.
CURRENCIES = "$€£"
#: The minus sign typesetting programs write (U+2212), read as "-".
_MINUS = "\u2212"
_OTHER = {",": ".", ".": ","}


def number_pattern(parse: dict | None):
    """The one form a column's numbers may take, as a compiled regular expression.

    ``parse`` is the column's recorded reading, None for plain numbers, else a dict of
    ``thousands`` and ``decimal`` (the file's convention), and optionally ``currency``
    (a symbol allowed before or after the number) and ``percent`` (every cell ends in
    ``%``). With a thousands separator, groups after the first have exactly three digits
    (``1,000`` and ``12,345.5``, never ``2,5`` or ``1,2,3``); the decimal mark is the only
    one allowed (``1.5`` is no number of a decimal-comma column).
    """
    if not parse:
        return _PLAIN
    return _compiled(parse.get("thousands"), parse.get("decimal") or ".",
                     parse.get("currency"), bool(parse.get("percent")))


@functools.lru_cache(maxsize=64)
def _compiled(thousands, decimal, currency, percent):
    """:func:`number_pattern`'s expression, compiled once per form (it is asked for each
    cell when a file's convention is decided)."""
    sep = f"[{_SPACES}]" if thousands == " " else re.escape(thousands or "")
    whole = rf"[1-9]\d{{0,2}}(?:{sep}\d{{3}})+|\d+" if thousands else r"\d+"
    number = rf"[+\-{_MINUS}]?(?:{whole})(?:{re.escape(decimal)}\d+)?"
    if currency:
        cur = re.escape(currency)
        number = rf"[+\-{_MINUS}]?(?:{cur}\s?{number}|{number}\s?{cur}|{number})"
    if percent:
        number = rf"{number}\s?%"
    return re.compile(number)


def _shown_decimal(cell: str):
    """The decimal mark a number cell shows: ``","`` for ``14,23`` or ``1.270,0``, ``"."``
    for ``2.5`` or ``1,234.5``, None when either reading fits (``1.065``, ``735``) and
    ``""`` when it is no number in either reading."""
    core = cell.strip().strip(CURRENCIES + "%").strip()
    readings = [d for d in (".", ",") if number_pattern(
        {"thousands": _OTHER[d], "decimal": d}).fullmatch(core)
        or number_pattern({"thousands": " ", "decimal": d}).fullmatch(core)]
    return readings[0] if len(readings) == 1 else (None if readings else "")


def file_convention(pd, frame, sep, options):
    """The file's way of writing numbers, decided once from every column's cells.

    Parameters
    ----------
    frame : pandas.DataFrame
        The file's columns as text (as written).
    sep : str or None
        The field delimiter: a ``;`` file whose cells never say is read with a decimal
        comma, as European spreadsheets write them.
    options : ReadOptions-like
        ``decimal`` and ``thousands`` given by the user fix their part; the rest is
        detected.

    Returns
    -------
    convention : dict
        ``{"thousands": str or None, "decimal": str}``; a thousands separator no cell
        holds is None (so ``1.500`` is refused, not read as 1500, in a decimal-comma
        column).
    note : str or None
        The decision in words, when it is not plain ``1234.5``.

    A column whose cells show the other decimal mark (``2.5`` in a ``14,23`` file) is an
    error naming its cells: reading it either way would misread some column.
    """
    votes = {}  # column -> (marks shown per cell, as a Series)
    for name in frame.columns:
        text = frame[name].dropna().astype(str).str.strip()
        if text.empty or text.str.match(_DATE.pattern).all():
            continue
        shown = text.map({v: _shown_decimal(v) for v in text.unique()})
        if (shown == "").any():  # not a column of numbers: no evidence either way
            continue
        votes[name] = shown
    decimal, why = options.decimal, "given by --decimal"
    if decimal is None and options.thousands in _OTHER:
        decimal, why = _OTHER[options.thousands], "given by --thousands"
    if decimal is None:
        counts = {d: [n for n, s in votes.items() if (s == d).any()] for d in (".", ",")}
        if len(counts[","]) != len(counts["."]):
            decimal = "," if len(counts[","]) > len(counts["."]) else "."
            name = counts[decimal][0]
            cell = frame[name].dropna().astype(str).str.strip()[votes[name] == decimal]
            why = f"column {name!r} holds {cell.iloc[0]!r}"
        else:
            decimal = "," if sep == ";" else "."
            rule = ("';'-separated files write a decimal comma" if sep == ";"
                    else "other files a decimal point")
            why = (f"as many columns show ',' as '.' ({', '.join(map(repr, counts[',']))} "
                   f"against {', '.join(map(repr, counts['.']))}); {rule}"
                   if counts[","] else f"no cell says otherwise; {rule}")
    for name, shown in votes.items():
        wrong = shown == _OTHER[decimal]
        if wrong.any():
            mask = frame[name].index.isin(shown.index[wrong.to_numpy()])
            cell = frame[name][mask].astype(str).iloc[0].strip()
            raise DatasetError(
                f"column {name!r}: {cell!r} in {_rows(mask)} is written with decimal mark "
                f"{_OTHER[decimal]!r}, but this file's numbers use {decimal!r} ({why}); "
                "correct those cells, or pass --decimal if that is wrong")
    thousands = options.thousands
    if thousands is None:
        cells = pd.concat([frame[n].dropna().astype(str) for n in votes]) if votes else \
            pd.Series([], dtype=str)
        if cells.str.contains(re.escape(_OTHER[decimal]), regex=True).any():
            thousands = _OTHER[decimal]
        elif cells.str.strip().str.contains(rf"\d[{_SPACES}]\d{{3}}", regex=True).any():
            thousands = " "
    convention = {"thousands": thousands, "decimal": decimal}
    if decimal == "." and thousands is None:
        return convention, None
    how = f"decimal mark {decimal!r} ({why})"
    if thousands:
        named = "a space" if thousands == " " else repr(thousands)
        how += f", thousands separator {named}"
    return convention, f"numbers in this file are read with {how}, in every column"


def number_form(text: list, convention: dict):
    """The column's ``parse`` (the file's convention plus the currency symbol and percent
    sign its cells carry) when every cell is a number of it, else None; None too for
    plain numbers (``1234.5``), which need no recorded form."""
    form = dict(convention)
    symbols = {c for v in text for c in v if c in CURRENCIES}
    if len(symbols) == 1:
        form["currency"] = symbols.pop()
    if text and all(v.endswith("%") for v in text):
        form["percent"] = True
    plain = form == {"thousands": None, "decimal": "."} and not any(_MINUS in v for v in text)
    pattern = number_pattern(form)
    if plain or not all(pattern.fullmatch(v) for v in text):
        return None
    return form


def describe_form(text: list, form: dict) -> str | None:
    """What a column's cells carry beyond the file's convention, in words (None if
    nothing): ``"'$1,234.56' read as 1234.56 (currency '$')"``."""
    extras = []
    if form.get("currency"):
        extras.append(f"currency {form['currency']!r} dropped")
    if form.get("percent"):
        extras.append("percentages read as fractions (12.3% is 0.123)")
    if form.get("thousands") == " ":
        extras.append("spaces between digit groups are thousands separators")
    if any(_MINUS in v for v in text):
        extras.append("'\u2212' read as a minus sign")
    if not extras:
        return None
    example = next((v for v in text if not v.replace(".", "").isdigit()), text[0])
    return f"text like {example!r} read as numbers ({'; '.join(extras)})"


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
    """Float64 values of a text column read with its ``parse`` form, NaN where missing,
    or None when some present cell is not of the column's pattern
    (:func:`number_pattern`). Percentages are fractions: ``12.3%`` is 0.123."""
    text = series.astype("string").str.strip()
    if not_numbers(text, parse).any():
        return None
    if parse:
        text = text.str.replace(_MINUS, "-", regex=False)
        for symbol in (parse.get("currency"), "%" if parse.get("percent") else None):
            if symbol:
                text = text.str.replace(symbol, "", regex=False)
        text = text.str.replace(f"[{_SPACES}]", "", regex=True)
        if parse.get("thousands") and parse["thousands"] != " ":
            text = text.str.replace(parse["thousands"], "", regex=False)
        if (parse.get("decimal") or ".") != ".":
            text = text.str.replace(parse["decimal"], ".", regex=False)
    values = pd.to_numeric(text, errors="coerce")
    if bool((values.isna() & text.notna()).any()):
        return None
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return values / 100 if parse and parse.get("percent") else values


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
    matched = np.zeros(len(text), dtype=bool)
    for first in ("ys", "a", "dd", "nd"):
        matched |= parts[first].notna().to_numpy(dtype=bool)

    def num(col, default=np.nan):
        return pd.to_numeric(parts[col], errors="coerce").to_numpy(
            dtype=np.float64, na_value=default)

    slash = parts["a"].notna().to_numpy(dtype=bool)
    a, b, y = num("a"), num("b"), num("y")
    y = np.where(y < 100, np.where(y < 69, 2000 + y, 1900 + y), y)
    day_a = bool(dayfirst)
    dotted = parts["dd"].notna().to_numpy(dtype=bool)
    named = parts["nd"].notna().to_numpy(dtype=bool)
    name = parts["nm"].str.lower().map(_MONTHS)
    year = np.select([slash, dotted, named], [y, num("dy"), num("ny")], num("Y"))
    month = np.select([slash, dotted, named],
                      [b if day_a else a, num("dm"),
                       pd.to_numeric(name).to_numpy(dtype=np.float64, na_value=np.nan)],
                      num("M"))
    day = np.select([slash, dotted, named], [a if day_a else b, num("dd"), num("nd")],
                    num("D"))
    hour, minute, second = num("h", 0.0), num("mi", 0.0), num("s", 0.0)
    # 12-hour clock: 12 AM is midnight, 12 PM noon; hours 0 and 13-23 take no AM/PM.
    noon = parts["ap"].str.lower().str.startswith("p").to_numpy(dtype=bool, na_value=False)
    clock = parts["ap"].notna().to_numpy(dtype=bool)
    bad_clock = clock & ((hour < 1) | (hour > 12))
    hour = np.where(clock, hour % 12 + 12 * noon, hour)
    offset = np.zeros(len(text))
    zone = parts["z"].fillna("Z").to_numpy(dtype=object)
    for i in np.flatnonzero(zone != "Z"):
        z = zone[i].replace(":", "")
        offset[i] = (1 if z[0] == "+" else -1) * (int(z[1:3]) * 60 + int(z[3:5]))
    ok = matched & (month >= 1) & (month <= 12) & (day >= 1) & (hour < 24) & \
        (minute < 60) & (second < 60) & ~bad_clock
    if dayfirst is None:
        ok &= ~slash
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype(np.int64)
    start = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    end = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    ok &= np.where(ok, day <= end - start, False)
    days = start + day - 1 + (hour * 3600 + minute * 60 + second - offset * 60) / 86400
    days = np.where(ok, days, np.nan)
    return days, present & ~ok


def format_days(pd, series, fmt: str):
    """Days since 1970-01-01 of a text column's dates written as ``fmt`` (a
    :func:`datetime.datetime.strptime` format, ``--date-format``); returns ``(days, bad)``
    as :func:`date_days` does. A date with a UTC offset (``%z``) is read in UTC."""
    import datetime as dt

    text = series.astype("string").str.strip()
    days = np.full(len(text), np.nan)
    bad = np.zeros(len(text), dtype=bool)
    epoch = dt.datetime(1970, 1, 1)
    for i, cell in enumerate(text.tolist()):
        if cell is None or cell is pd.NA:
            continue
        try:
            when = dt.datetime.strptime(cell, fmt)
        except ValueError:
            bad[i] = True
            continue
        if when.tzinfo is not None:
            when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
        days[i] = (when - epoch) / dt.timedelta(days=1)
    return days, bad


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
    fmt = getattr(options, "date_format", None)
    if fmt is not None and "%" not in fmt:
        raise DatasetError(f"--date-format: expected a strptime format such as '%d.%m.%Y' "
                           f"or '%Y%m%d', got {fmt!r}")
    specs, notices, n = [], [], len(frame)
    for name in frame.columns:
        spec, note = _decide(pd, name, frame[name], n, options, name in (keep or ()))
        if note:
            notices.append(note)
        if spec is not None:
            specs.append(spec)
    if fmt is not None and not any("format" in (s["parse"] or {}) for s in specs):
        notices.append(f"--date-format {fmt!r}: no column's every cell is a date of it")
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
    fmt = getattr(options, "date_format", None)
    if fmt and not pd.api.types.is_datetime64_any_dtype(series):
        days, bad = format_days(pd, present.astype(str), fmt)
        if not bad.any():
            if getattr(options, "dates", "numeric") == "drop":
                return None, f"column {name!r}: left out (dates, --dates drop)"
            spec.update(kind="datetime", parse={"format": fmt})
            return spec, (f"column {name!r}: dates written as {fmt!r} (--date-format), used "
                          "as days since 1970-01-01")
        if bad.mean() <= 0.1:  # dates of the format but for a few cells: typos
            rows = np.zeros(n, dtype=bool)
            rows[np.flatnonzero(series.notna().to_numpy(dtype=bool))[bad]] = True
            cell = present.astype(str).iloc[int(np.argmax(bad))]
            raise DatasetError(f"column {name!r} holds dates of --date-format {fmt!r} but "
                               f"{_short(cell)!r} in {_rows(rows)}; correct those cells or "
                               "leave them empty (missing)")
    if pd.api.types.is_numeric_dtype(series):
        return (None, _id_like(name)) if judge and _in_order(present, n) else (spec, None)
    if pd.api.types.is_datetime64_any_dtype(series) or not _is_text(pd, series):
        return _dates(pd, name, series, spec, options)
    text = present.astype(str).str.strip().tolist()
    if all(v.isdigit() for v in text) and any(len(v) > 1 and v[0] == "0" for v in text):
        # Zip codes, account numbers: "02134" is a code, not the quantity 2134.
        return _categories(name, spec, text, distinct, n, chosen,
                           "digits with leading zeros "
                           f"({next(v for v in text if v[0] == '0')!r}): codes, not "
                           "quantities")
    form = number_form(text, {"thousands": options.thousands,
                              "decimal": options.decimal or "."})
    values = None if form is None else parse_numbers(pd, series, form)
    if values is not None:
        # Row numbers re-read from a decimal-comma file's text are still row numbers.
        if judge and all(v.isdigit() for v in text) and _in_order(
                pd.Series(values[~np.isnan(values)]), n):
            return None, _id_like(name)
        spec["parse"] = form
        told = describe_form(text, form)
        return spec, (f"column {name!r}: {told}" if told else None)
    if form is None and parse_numbers(pd, series, None) is not None:
        return spec, f"column {name!r}: numbers beyond 64-bit integers, read as floating point"
    if _date_like(present) and parse_dates(pd, series, day_first(pd, series)) is not None:
        return _dates(pd, name, series, spec, options)
    why = _why_not_numbers(text)
    refuse_stray_text(pd, f"column {name!r}", series, options)
    if judge and distinct == n and why:  # numbers but for their writing: no identifier
        return None, (f"column {name!r}: left out ({why[2:]}; as text, a different value "
                      "in every row); correct those cells, or pass --features to keep it "
                      "as categories")
    if judge and distinct == n:
        return None, (f"column {name!r}: left out (ID-like: a different text in every row); "
                      "pass --features to keep it")
    return _categories(name, spec, text, distinct, n, chosen, "text", why)


def _in_order(present, n: int) -> bool:
    """A different integer in every row, in order: a row number, not a measurement."""
    values = present.to_numpy(dtype=np.float64)
    return bool(np.all(values == np.round(values))) and present.nunique() == n and (
        present.is_monotonic_increasing or present.is_monotonic_decreasing)


def _id_like(name) -> str:
    return (f"column {name!r}: left out (ID-like: a different integer in every row, in "
            "order); pass --features to keep it")


#: A column one-hot encoded into more features than this gets a note saying so.
WIDE = 50


def _categories(name, spec, text, distinct, n, chosen, what, why=""):
    """A text column one-hot encoded, or left out as free text (unless ``--features``
    names it), with the notice; ``what`` the column is, ``why`` not numbers."""
    if distinct > MAX_CATEGORIES and distinct > n / 2 and not chosen:
        return None, (f"column {name!r}: left out (free text: {distinct} distinct values in "
                      f"{n} rows{why}); pass --features to keep it as categories")
    spec.update(kind="categorical", categories=sorted(set(text)))
    note = f"column {name!r}: {what}{why}, one-hot encoded ({distinct} categories"
    if distinct > WIDE:
        note += (f": {distinct} features from {n} rows, most categories seen in few rows; "
                 "--drop it if it is an identifier")
    return spec, note + (", kept as --features names it)" if chosen else ")")


def _why_not_numbers(text: list) -> str:
    """Why a column of mostly numbers is text after all (``""`` when most cells are no
    numbers at all): mixed currencies or percent signs, or the first cell that is no
    number of any form."""
    shown = [_shown_decimal(v) for v in text]
    if sum(s != "" for s in shown) < 0.5 * len(text):
        return ""
    symbols = {c for v in text for c in v if c in CURRENCIES}
    if len(symbols) > 1:
        return f"; not numbers: currencies {' and '.join(sorted(symbols))} mixed"
    if 0 < sum(v.endswith("%") for v in text) < len(text):
        return "; not numbers: some cells end in '%' and others do not"
    bad = next((v for v, s in zip(text, shown) if s == ""), None)
    if bad is not None:
        return f"; not numbers: {_short(bad)!r} is no number of any form"
    return ""


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
    if order is None and series.dropna().astype(str).str.match(r"\s*\d{1,2}\.").any():
        how = ", read day first (13.04.2024 is 13 April)"
    return spec, f"column {name!r}: dates{how}, used as days since 1970-01-01"


def complete(spec: dict) -> dict:
    """A model file's column spec with its optional keys (``parse``, ``fill``,
    ``na_values``) present."""
    return {"name": spec["name"], "kind": spec["kind"], "categories": spec["categories"],
            "parse": spec.get("parse"), "fill": spec.get("fill"),
            "na_values": spec.get("na_values")}


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
        fmt = parse.get("format") if parse else None
        values, bad = format_days(pd, text, fmt) if fmt else date_days(pd, text, order)
        if bad.any():
            forms = (f"--date-format {fmt!r}" if fmt else
                     "yyyy-mm-dd, dd.mm.yyyy, 29 Aug 2019" if order is None else
                     f"yyyy-mm-dd, dd.mm.yyyy, 29 Aug 2019 or "
                     f"{'dd/mm/yyyy' if order else 'mm/dd/yyyy'}")
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
