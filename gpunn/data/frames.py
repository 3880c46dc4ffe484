"""Users' files read into a pandas DataFrame: CSV (the delimiter sniffed unless given) and
Parquet, with the usual missing-value markers, and errors that say what to pass.

pandas (and pyarrow for Parquet) are the ``gpunn[data]`` extra: reading ordinary files
well (quoting, encodings, BOMs, CRLF, decimal commas, thousands separators) is their job.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import GpunnError

#: What counts as a missing cell, on top of an empty one (pandas' own list minus
#: spellings that can be real categories, plus "?" which UCI files use).
NA_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "null", "NULL", "?", "#N/A",
             "<NA>"]
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
#: A text table compressed with gzip (``data.csv.gz``) reads as the table itself.
GZIP_SUFFIX = ".gz"
PARQUET_SUFFIXES = (".parquet", ".pq")
_SNIFF_BYTES = 64 * 1024


class DatasetError(GpunnError, ValueError):
    """A dataset that cannot be read, found or downloaded."""


@dataclass(frozen=True)
class ReadOptions:
    """How to read a text table (``None``: detect).

    Attributes
    ----------
    sep : str or None
        Field delimiter; sniffed among ``, ; TAB |`` when None.
    encoding : str
    decimal : str or None
        Decimal mark of numbers written as text (``","`` for ``3,5``); detected from the
        whole file when None.
    thousands : str or None
        Thousands separator (``","`` for ``1,000``, ``" "`` for any space); detected from
        the whole file when None.
    na_values : tuple of str
        Cells that mean "missing" besides :data:`NA_VALUES` (``--na-values``).

    The two marks are never handed to pandas (which drops a thousands separator wherever
    it stands: ``2,5`` would be 25): cells holding them stay text, and
    :mod:`gpunn.data.columns` reads each such column against a strict pattern, the same
    one at training and at prediction.
    """

    sep: str | None = None
    encoding: str = "utf-8"
    decimal: str | None = None
    thousands: str | None = None
    na_values: tuple = ()


def table_suffix(path) -> str:
    """The type of a table file by its name: ``.csv`` for ``data.csv`` and for
    ``data.csv.gz`` (gzip-compressed)."""
    path = Path(path)
    if path.suffix.lower() == GZIP_SUFFIX:
        return Path(path.stem).suffix.lower()
    return path.suffix.lower()


def _open(path: Path, mode: str = "r", **kwargs):
    """``open``, decompressing a ``.gz`` file."""
    if path.suffix.lower() == GZIP_SUFFIX:
        return gzip.open(path, mode if "b" in mode else mode + "t", **kwargs)
    return open(path, mode, **kwargs)


def pandas():
    """The pandas module, or a one-line install hint."""
    try:
        import pandas as pd
    except ImportError:
        raise DatasetError('reading CSV and Parquet files needs pandas: pip install '
                           '"gpunn[data]"') from None
    return pd


def read_frame(path, options: ReadOptions | None = None, text=()):
    """Read ``path`` (CSV, TSV, TXT or Parquet) into a DataFrame of one column per field.

    Parameters
    ----------
    path : str or Path
    options : ReadOptions
    text : list of str
        Columns to keep as text (a model's categorical columns: ``007`` stays ``007``).

    Returns
    -------
    frame : pandas.DataFrame
        Missing cells are NA; text columns keep their text (stripped).
    sep : str or None
        The delimiter used (None for Parquet).
    """
    path, options = Path(path), options or ReadOptions()
    suffix = table_suffix(path)
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise DatasetError(f"{path}: unsupported file type {suffix!r}; expected .csv, .tsv, "
                           ".txt (each also gzipped: .csv.gz), .parquet or .npz")
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    pd = pandas()
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(pd, path), None
    _check_options(options)
    _check_text(path, options.encoding)
    sep = options.sep or _sniff(path, options.encoding)
    try:
        frame = pd.read_csv(path, sep=sep, encoding=options.encoding,
                            na_values=NA_VALUES + list(options.na_values),
                            keep_default_na=False,
                            skipinitialspace=True, dtype_backend="numpy_nullable",
                            dtype={name: "string" for name in text} or None)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not valid {options.encoding} (byte "
                           f"0x{exc.object[exc.start]:02x} at offset {exc.start}); pass "
                           "--encoding with the file's encoding, e.g. --encoding latin-1"
                           ) from None
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: empty file; expected a header row and data rows"
                           ) from None
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{path}: {_parser_message(exc, sep)}") from None
    except (OSError, ValueError, LookupError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read as CSV ({exc})") from None
    _check_shape(path, frame, sep, options.encoding)
    return frame, sep


@contextlib.contextmanager
def _no_field_limit():
    """The csv module without its 128 KiB field limit (a long text cell is valid)."""
    old = csv.field_size_limit()
    # The C long the module stores the limit in may be 32-bit (Windows).
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _header(path: Path, sep: str, encoding: str) -> list:
    """The header row's names as written (pandas renames a repeated ``x`` to ``x.1``,
    which cannot be told from a real column ``x.1``)."""
    with _no_field_limit(), _open(path, encoding=encoding, newline="") as fh:
        for row in csv.reader(fh, delimiter=sep):
            if any(cell.strip() for cell in row):
                return [cell.strip().lstrip("\ufeff").strip() for cell in row]
    return []


def _check_options(options: ReadOptions) -> None:
    """Arguments that cannot describe any file, refused before reading."""
    try:
        codecs.lookup(options.encoding)
    except (LookupError, TypeError):
        raise DatasetError(f"--encoding: unknown encoding {options.encoding!r} (e.g. utf-8, "
                           "latin-1, cp1252, utf-16)") from None
    bad = next((v for v in options.na_values if not isinstance(v, str)), None)
    if bad is not None:
        raise DatasetError(f"--na-values: expected text, got {bad!r}")
    for flag, value in (("--sep", options.sep), ("--decimal", options.decimal),
                        ("--thousands", options.thousands)):
        if value is not None and (not isinstance(value, str) or len(value) != 1):
            raise DatasetError(f"{flag}: expected one character, got {value!r}")
    if options.decimal is not None and options.decimal == options.thousands:
        raise DatasetError(f"--decimal and --thousands are both {options.decimal!r}")


def _check_text(path: Path, encoding: str) -> None:
    """A UTF-16 file read as UTF-8, or a binary file, said as such (not as a short row)."""
    try:
        with _open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    if codecs.lookup(encoding).name.startswith("utf-16"):
        return
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DatasetError(f"{path}: starts with a UTF-16 byte-order mark; pass "
                           "--encoding utf-16")
    if b"\x00" in head:
        raise DatasetError(f"{path}: holds NUL bytes: a binary file, not a text table "
                           f"(or UTF-16/32 text without a byte-order mark: pass --encoding)")


def _read_parquet(pd, path: Path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DatasetError('reading Parquet files needs pyarrow: pip install '
                           '"gpunn[data]"') from None
    try:
        frame = pd.read_parquet(path, dtype_backend="numpy_nullable")
    except Exception as exc:  # pyarrow raises its own exception types
        raise DatasetError(f"{path}: cannot read as Parquet ({exc})") from None
    if frame.shape[1] == 0 or len(frame) == 0:
        raise DatasetError(f"{path}: no {'rows' if frame.shape[1] else 'columns'}")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _sniff(path: Path, encoding: str) -> str:
    """The delimiter of the first lines, among ``, ; TAB |`` (comma when unsure)."""
    try:
        with _open(path, encoding=encoding, errors="replace", newline="") as fh:
            sample = fh.read(_SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    lines = [line for line in sample.splitlines() if line.strip()]
    if len(sample) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    if table_suffix(path) == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _parser_message(exc, sep: str) -> str:
    """pandas' "Expected 2 fields in line 3, saw 3" in this reader's words."""
    text = str(exc)
    if "Expected" in text and "fields in line" in text:
        try:
            want = int(text.split("Expected ")[1].split()[0])
            line = int(text.split("fields in line ")[1].split(",")[0])
            saw = int(text.split("saw ")[1].split()[0].rstrip("."))
            return (f"line {line} has {saw} fields, the header has {want} "
                    f"(delimiter {sep!r}; pass --sep if that is wrong)")
        except (IndexError, ValueError):
            pass
    return f"cannot read as CSV ({text.strip().splitlines()[-1]})"


def _check_shape(path: Path, frame, sep: str, encoding: str) -> None:
    """Header present, unique, and no row shorter than it (pandas pads those with NA)."""
    names = [str(c) for c in frame.columns]
    if any(n.startswith("Unnamed: ") for n in names) and len(frame) == 0:
        raise DatasetError(f"{path}: empty file; expected a header row and data rows")
    written = [n for n in _header(path, sep, encoding) if n]
    dupes = sorted({n for n in written if written.count(n) > 1})
    if dupes:
        raise DatasetError(f"{path}: duplicate column names in the header: "
                           f"{', '.join(dupes)}")
    if len(frame) == 0:
        raise DatasetError(f"{path}: header only, no data rows")
    frame.columns = [n.strip() for n in names]
    if frame.isna().to_numpy().any():
        short = _short_line(path, sep, encoding, len(names))
        if short:
            raise DatasetError(f"{path}: line {short[0]} has {short[1]} fields, the header "
                               f"has {len(names)} (delimiter {sep!r})")


def _short_line(path: Path, sep: str, encoding: str, width: int):
    """The first ``(line, fields)`` with fewer fields than the header, or None.

    Only called when some cell is missing: pandas fills a short row with NA, which must
    not pass for missing values.
    """
    with _no_field_limit(), _open(path, encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        for row in reader:
            if len(row) < width and any(cell.strip() for cell in row):
                return reader.line_num, len(row)
    return None
