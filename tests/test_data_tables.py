"""The table reader (gpunn.data.tables: CSV, TSV and Parquet files): messy files users
have, and the decision the reader takes on each, said in a notice; hostile ones refused
with one line naming the column, row or argument. Never a crash, never a silent
misreading."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pandas", reason="pandas not installed (pip install gpunn[data])")

from gpunn.data import tables  # noqa: E402
from gpunn.data.tables import DatasetError, TableOptions  # noqa: E402

N = 40  # rows in most cases: enough for the constant and ID-like rules to judge
rng = np.random.default_rng(0)
X1 = np.round(rng.normal(size=N), 3)
CLS = np.where(X1 > 0, "yes", "no")


def _rows(fmt):
    return "\n".join(fmt(i) for i in range(N)) + "\n"


# name, file text (str, or bytes for encodings), options, expected:
#   ("error", substring) or
#   (number of features, task, number of classes, substrings the notices must hold)
CASES = [
    ("plain numbers", "x,y\n" + _rows(lambda i: f"{X1[i]},{CLS[i]}"), {},
     (1, "binary", 2, ["task"])),
    ("one NA cell in a numeric column",
     "x,y\n" + _rows(lambda i: f"{'NA' if i == 5 else X1[i]},{CLS[i]}"), {},
     ("error", "missing values in column(s) 'x' in 1 row (data row 6); pass --impute")),
    ("one NA cell, --impute mean",
     "x,y\n" + _rows(lambda i: f"{'NA' if i == 5 else X1[i]},{CLS[i]}"),
     {"impute": "mean"}, (1, "binary", 2, ["'x': 1 missing value(s) filled with the mean"])),
    ("'?' is a missing marker, --impute median",
     "x,y\n" + _rows(lambda i: f"{'?' if i == 5 else X1[i]},{CLS[i]}"),
     {"impute": "median"}, (1, "binary", 2, ["filled with the median"])),
    ("missing regression target",
     "x,y\n" + _rows(lambda i: f"{X1[i]},{'' if i == 3 else X1[i] * 2.5}"), {},
     ("error", "target 'y' is missing in 1 row (data row 4); a missing target is never a "
               "class")),
    ("missing regression target, --impute drop",
     "x,y\n" + _rows(lambda i: f"{X1[i]},{'NA' if i == 3 else X1[i] * 2.5}"),
     {"impute": "drop"}, (1, "regression", 0, ["dropped 1 row(s)"])),
    ("empty binary target is not a third class",
     "x,y\n" + _rows(lambda i: f"{X1[i]},{'' if i == 7 else CLS[i]}"), {},
     ("error", "target 'y' is missing")),
    ("empty binary target, --impute drop",
     "x,y\n" + _rows(lambda i: f"{X1[i]},{'' if i == 7 else CLS[i]}"), {"impute": "drop"},
     (1, "binary", 2, ["dropped 1 row(s)"])),
    ("thousands separators in quotes",
     "income,y\n" + _rows(lambda i: f'"{1000 + i * 137:,}",{CLS[i]}'), {},
     (1, "binary", 2, ["numbers in this file are read with decimal mark '.' (no cell says "
                       "otherwise; other files a decimal point), thousands separator ',', "
                       "in every column"])),
    ("semicolons and decimal commas",
     "x;z;y\n" + _rows(lambda i: f"{X1[i]:.3f};{i % 5}".replace(".", ",") + f";{CLS[i]}"),
     {}, (2, "binary", 2, ["read with decimal mark ',' (column 'x' holds '0,126'), in "
                       "every column"])),
    ("dates become days", "when,y\n" + _rows(lambda i: f"2024-03-{i % 28 + 1:02d},{CLS[i]}"),
     {}, (1, "binary", 2, ["'when': dates, used as days since 1970-01-01"])),
    ("dates dropped on request",
     "when,x,y\n" + _rows(lambda i: f"2024-03-{i % 28 + 1:02d} 10:00,{X1[i]},{CLS[i]}"),
     {"dates": "drop"}, (1, "binary", 2, ["'when': left out (dates, --dates drop)"])),
    ("integer ID column", "id,x,y\n" + _rows(lambda i: f"{1000 + i},{X1[i]},{CLS[i]}"), {},
     (1, "binary", 2, ["'id': left out (ID-like: a different integer in every row"])),
    ("ID column kept with --features",
     "id,x,y\n" + _rows(lambda i: f"{1000 + i},{X1[i]},{CLS[i]}"),
     {"features": ("id", "x")}, (2, "binary", 2, [])),
    ("text ID column", "name,x,y\n" + _rows(lambda i: f"user{i:04d},{X1[i]},{CLS[i]}"), {},
     (1, "binary", 2, ["'name': left out (ID-like: a different text in every row)"])),
    ("constant column", "k,x,y\n" + _rows(lambda i: f"7,{X1[i]},{CLS[i]}"), {},
     (1, "binary", 2, ["'k': left out (constant"])),
    ("--drop", "a,x,y\n" + _rows(lambda i: f"{i % 3},{X1[i]},{CLS[i]}"), {"drop": ("a",)},
     (1, "binary", 2, [])),
    ("unknown --drop column", "x,y\n" + _rows(lambda i: f"{X1[i]},{CLS[i]}"),
     {"drop": ("nope",)}, ("error", "--drop: no column(s) 'nope'; columns are x, y")),
    ("integer target with 50 values is regression, said why",
     "x,y\n" + _rows(lambda i: f"{X1[i]},{i % 50 + (i // 50) * 3}"), {},
     (1, "regression", 0, ["integer target with 40 distinct values (more than 20); pass "
                           "--task multiclass"])),
    ("quoted commas in text", "city,x,y\n" + _rows(
        lambda i: f'"{["Paris, FR", "Rome, IT"][i % 2]}",{X1[i]},{CLS[i]}'), {},
     (3, "binary", 2, ["'city': text, one-hot encoded (2 categories)"])),
    ("CRLF line ends", "x,y\r\n" + _rows(lambda i: f"{X1[i]},{CLS[i]}").replace("\n", "\r\n"),
     {}, (1, "binary", 2, [])),
    ("UTF-8 byte-order mark", "\ufeffx,y\n" + _rows(lambda i: f"{X1[i]},{CLS[i]}"), {},
     (1, "binary", 2, [])),
    ("Latin-1 file", ("x,ville,y\n" + _rows(
        lambda i: f"{X1[i]},{['Orléans', 'Besançon'][i % 2]},{CLS[i]}")).encode("latin-1"),
     {}, ("error", "not valid utf-8 (byte 0xe9 at offset")),
    ("Latin-1 file, --encoding latin-1", ("x,ville,y\n" + _rows(
        lambda i: f"{X1[i]},{['Orléans', 'Besançon'][i % 2]},{CLS[i]}")).encode("latin-1"),
     {"encoding": "latin-1"}, (3, "binary", 2, ["2 categories"])),
    ("free text is left out", "note,x,y\n" + "\n".join(
        f"comment {i} {'abc'[i % 3]},{X1[i % N]},{CLS[i % N]}" if i % 7 else
        f"comment {i - 1} {'abc'[(i - 1) % 3]},{X1[i % N]},{CLS[i % N]}"
        for i in range(300)) + "\n", {},
     (1, "binary", 2, ["'note': left out (free text:"])),
    ("2,000 classes", "x,y\n" + "\n".join(f"{i % 13},c{i % 2000}" for i in range(4000)) + "\n",
     {}, (1, "multiclass", 2000, ["text labels, 2000 classes"])),
    ("tab-separated", "x\ty\n" + _rows(lambda i: f"{X1[i]}\t{CLS[i]}"), {},
     (1, "binary", 2, [])),
    ("short row", "x,y\n1,a\n2\n3,b\n", {}, ("error", "line 3 has 1 fields, the header has 2")),
    ("long row", "x,y\n1,a\n2,b,9\n3,b\n", {}, ("error", "line 3 has 3 fields, the header has 2")),
]


def _write(tmp_path, content, name="data.csv"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


@pytest.mark.parametrize("name,content,options,expected", CASES, ids=[c[0] for c in CASES])
def test_messy_file(tmp_path, name, content, options, expected):
    path = _write(tmp_path, content, "data.tsv" if name == "tab-separated" else "data.csv")
    if expected[0] == "error":
        with pytest.raises(DatasetError) as info:
            tables.load_file(path, "y", options=TableOptions(**options))
        assert expected[1] in str(info.value), str(info.value)
        return
    width, task, n_classes, notes = expected
    data = tables.load_file(path, "y", options=TableOptions(**options))
    told = " | ".join(data.notices + [f"task {data.task_reason}"])
    assert data.X.shape[1] == width, (data.feature_names, told)
    assert data.task == task and len(data.classes) == n_classes, told
    assert np.isfinite(data.X).all() and data.X.dtype == np.float32
    assert "" not in data.classes
    for note in notes:
        assert note in told, told


def test_the_table_covers_the_issue():
    assert len(CASES) >= 25


def test_parquet_matches_csv(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="pyarrow not installed (pip install gpunn[data])")
    frame = pd.DataFrame({"x": X1, "city": np.where(X1 > 0.5, "a", "b"), "y": CLS})
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_csv(tmp_path / "d.csv", index=False)
    a = tables.load_file(tmp_path / "d.parquet", "y")
    b = tables.load_file(tmp_path / "d.csv", "y")
    np.testing.assert_array_equal(a.X, b.X)
    assert a.feature_names == b.feature_names == ["x", "city=a", "city=b"]
    np.testing.assert_array_equal(a.y, b.y)


def _gpunn(*args):
    return subprocess.run([sys.executable, "-m", "gpunn", *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GPUNN_DEVICE": "cpu"})


@pytest.mark.slow
def test_predict_applies_the_training_decisions(tmp_path):
    """Through the CLI: notices at training, the same transform at prediction, unseen
    categories counted, missing values filled as in training, type changes refused."""
    colour = ["red", "green", "blue"]
    train = _write(tmp_path, "id,colour,price,x,y\n" + _rows(
        lambda i: f"{i},{colour[i % 3]},\"{1000 + 250 * i:,}\",{'' if i == 4 else X1[i]},"
                  f"{CLS[i]}"), "train.csv")
    model = tmp_path / "m.npz"
    out = _gpunn("train", "--data", train, "--target", "y", "--epochs", "2", "--impute",
                 "mean", "--save", model, "--quiet")
    assert out.returncode == 0, out.stderr
    for note in ("'id': left out", "'colour': text, one-hot", "thousands separator",
                 "'x': 1 missing value(s) filled with the mean", "task: binary"):
        assert note in out.stderr, out.stderr
    new = _write(tmp_path, "colour,price,x\npurple,\"2,000\",0.5\nred,\"1,500\",\n"
                 "green,900,1.0\n", "new.csv")
    out = _gpunn("predict", model, "--data", new)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 4
    assert "'colour': 1 row(s) with a category not seen in training" in out.stderr
    assert "'x': 1 missing value(s) filled as in training" in out.stderr
    bad = _write(tmp_path, "colour,price,x\nred,cheap,0.5\n", "bad.csv")
    out = _gpunn("predict", model, "--data", bad)
    assert out.returncode == 2 and "column 'price' was numeric in training but holds " \
        "'cheap'" in out.stderr, out.stderr


def test_wrong_delimiter_hint_and_explicit_sep(tmp_path):
    path = _write(tmp_path, "x|y\n" + _rows(lambda i: f"{X1[i]}|{CLS[i]}"))
    data = tables.load_file(path, "y", options=TableOptions(sep="|"))
    assert data.X.shape == (N, 1)
    with pytest.raises(DatasetError, match=r"one column holding '\|': pass --sep '\|'"):
        tables.load_file(path, "y", options=TableOptions(sep=","))


# ---------------------------------------------------------------------- refused in one line
# Their rows: N values drawn with another seed than the cases above.
X1B = np.round(np.random.default_rng(1).normal(size=N), 3)
CLSB = np.where(X1B > 0, "yes", "no")


def _load(tmp_path, content, **options):
    path = tmp_path / "data.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return tables.load_file(path, "y", options=TableOptions(**options))


REFUSED = [
    ("names equal once stripped", "x,x ,y\n" + _rows(lambda i: f"{X1B[i]},{i % 3},{CLSB[i]}"),
     {}, "duplicate column names in the header: x"),
    ("a name repeated after x.1",
     "x,x.1,x,y\n" + _rows(lambda i: f"{X1B[i]},{i % 3},{i % 5},{CLSB[i]}"), {},
     "duplicate column names in the header: x"),
    ("unknown encoding", "x,y\n1,a\n2,b\n", {"encoding": "nonsense"},
     "--encoding: unknown encoding 'nonsense'"),
    ("UTF-16 file", ("x,y\n" + _rows(lambda i: f"{X1B[i]},{CLSB[i]}")).encode("utf-16"), {},
     "--encoding utf-16"),
    ("binary file", bytes(range(256)) * 20, {}, "binary"),
    ("same decimal and thousands", "x,y\n1,a\n2,b\n", {"decimal": ",", "thousands": ","},
     "--decimal and --thousands are both ','"),
    ("--features names a column twice",
     "x,z,y\n" + _rows(lambda i: f"{X1B[i]},{i % 3},{CLSB[i]}"), {"features": ("x", "x")},
     "--features: 'x' named twice"),
    ("target in --drop", "x,z,y\n" + _rows(lambda i: f"{X1B[i]},{i % 3},{CLSB[i]}"),
     {"drop": ("y",)}, "--drop: 'y' is the target"),
    ("every target missing, --impute drop", "x,y\n" + _rows(lambda i: f"{X1B[i]},"),
     {"impute": "drop"}, "target 'y' is missing in every row"),
    ("one text cell in a numeric column",
     "x,y\n" + _rows(lambda i: f"{'abc' if i == 5 else X1B[i]},{CLSB[i]}"), {},
     "column 'x' holds numbers but 'abc' in 1 row (data row 6)"),
    ("one text cell in a numeric target",
     "x,y\n" + _rows(lambda i: f"{X1B[i]},{'oops' if i == 2 else X1B[i] * 2.5}"), {},
     "target 'y' holds numbers but 'oops' in 1 row (data row 3)"),
    ("one bad date", "d,x,y\n" + _rows(
        lambda i: f"{'2024-02-31' if i == 4 else f'2024-03-{i % 28 + 1:02d}'},{X1B[i]},"
                  f"{CLSB[i]}"), {}, "column 'd' holds dates but '2024-02-31' in 1 row"),
    ("infinite feature", "x,y\n" + _rows(lambda i: f"{'inf' if i == 2 else X1B[i]},{CLSB[i]}"),
     {}, "column 'x' holds an infinite value in 1 row (data row 3)"),
]


@pytest.mark.parametrize("name,content,options,message", REFUSED,
                         ids=[c[0] for c in REFUSED])
def test_refused_in_one_line(tmp_path, name, content, options, message):
    with pytest.raises(DatasetError) as info:
        _load(tmp_path, content, **options)
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_integers_beyond_int64_are_numbers(tmp_path):
    data = _load(tmp_path, "x,y\n" + _rows(lambda i: f"{10**30 + i * (-7) ** i},{CLSB[i]}"))
    assert data.feature_names == ["x"]
    assert np.isfinite(data.X).all() and data.X[0, 0] == np.float32(1e30)


def test_nested_parquet_columns_are_left_out(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="pyarrow not installed")
    frame = pd.DataFrame({"l": [[1, 2], [3]] * (N // 2), "s": [{"a": 1}] * N, "x": X1B,
                          "y": CLSB})
    frame.to_parquet(tmp_path / "d.parquet")
    data = tables.load_file(tmp_path / "d.parquet", "y")
    assert data.feature_names == ["x"]
    told = " | ".join(data.notices)
    assert "'l': left out (nested values" in told and "'s': left out (nested" in told


def test_predict_refuses_an_infinite_value(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("x,y\n" + _rows(lambda i: f"{X1B[i]},{CLSB[i]}"))
    data = tables.load_file(train, "y")
    new = tmp_path / "new.csv"
    new.write_text("x\n0.5\n-inf\n")
    with pytest.raises(DatasetError, match="column 'x' holds an infinite value in 1 row"):
        tables.read_features(new, data.columns)


def test_an_enormous_label_is_shortened_in_the_error(tmp_path):
    with pytest.raises(DatasetError) as info:
        _load(tmp_path, "x,y\n1," + "a" * 1_000_000 + "\n")
    assert len(str(info.value)) < 400 and "aaa..." in str(info.value)


def test_missing_values_error_names_the_markers(tmp_path):
    """'NA' may be North America: the error says which cells count as missing."""
    with pytest.raises(DatasetError, match=r"cells empty or 'NA', 'N/A', .* count as missing"):
        _load(tmp_path, "region,x,y\n" + _rows(lambda i: f"{['NA', 'EU', 'AS'][i % 3]},"
                                                      f"{X1B[i]},{CLSB[i]}"))


def test_day_first_dates_are_read_day_first_in_every_row(tmp_path):
    """'13/04/2024' proves the column day-first: '03/04/2024' is then 3 April, at training
    and at prediction (each cell was guessed on its own: 4 March)."""
    data = _load(tmp_path, "d,y\n" + _rows(lambda i: f"{['13/04/2024', '03/04/2024'][i % 2]},"
                                                    f"{CLSB[i]}"))
    assert data.X[1, 0] == data.X[0, 0] - 10, data.X[:2, 0]
    assert any("day first" in n for n in data.notices), data.notices
    new = tmp_path / "new.csv"
    new.write_text("d\n03/04/2024\n2024-04-03\n")
    X, _ = tables.read_features(new, data.columns)
    assert X[0, 0] == X[1, 0] == data.X[1, 0]


def test_dates_both_day_first_and_month_first_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="column 'd': dates written day first .* and "
                       "month first"):
        _load(tmp_path, "d,y\n" + _rows(lambda i: f"{['13/04/2024', '04/13/2024'][i % 2]},"
                                                 f"{CLSB[i]}"))


def test_an_infinite_target_is_refused_as_such_and_column_errors_name_the_file(tmp_path):
    from gpunn.data.tables import DatasetError, TableOptions, load_file

    path = tmp_path / "inf.csv"
    path.write_text("x,y\n" + "".join(f"{i % 5},{'inf' if i == 3 else i * 0.5}\n"
                                      for i in range(30)))
    with pytest.raises(DatasetError, match=r"inf.csv: target 'y' holds an infinite value "
                                           r"in 1 row \(data row 4\)"):
        load_file(path, "y", options=TableOptions(impute="drop"))
    path = tmp_path / "stray.csv"
    path.write_text("x,y\n" + "".join(f"{'abc' if i == 5 else i * 0.25},{i % 2}\n"
                                      for i in range(30)))
    with pytest.raises(DatasetError, match=r"^.*stray.csv: column 'x' holds numbers"):
        load_file(path, "y")


# ---------------------------------------------------------------- prediction reads as training
# Each column trained on one written form of its numbers or dates; at prediction a cell of
# another form is refused with its row and column (never read with the separators dropped,
# nor a date guessed in another order).
_TRAINED = {
    "thousands ','": ("price,y\n" + _rows(lambda i: f'"{1000 + 137 * i:,}",{CLSB[i]}'),
                      "price"),
    "decimal ','": ("x;y\n" + _rows(lambda i: f"{X1B[i]:.3f}".replace(".", ",")
                                    + f";{CLSB[i]}"), "x"),
    "ISO dates": ("d,y\n" + _rows(lambda i: f"2024-03-{i % 28 + 1:02d},{CLSB[i]}"), "d"),
    "month-first dates": ("d,y\n" + _rows(lambda i: f"03/{i % 28 + 1:02d}/2024,{CLSB[i]}"),
                          "d"),
    "plain numbers": ("x,y\n" + _rows(lambda i: f"{X1B[i]},{CLSB[i]}"), "x"),
}
PREDICT_GOOD = [
    ("thousands ','", '"2,500"', 2500.0), ("thousands ','", "900", 900.0),
    ("thousands ','", '"12,345.5"', 12345.5), ("decimal ','", '"1,5"', 1.5),
    ("decimal ','", "-3", -3.0), ("plain numbers", "1e3", 1000.0),
]
PREDICT_REFUSED = [
    ("thousands ','", '"2,5"'), ("thousands ','", '"2.500,00"'), ("thousands ','", '"1,2,3"'),
    ("thousands ','", '"1,0000"'), ("thousands ','", '",500"'),
    ("decimal ','", "1.5"), ("decimal ','", "1.500"), ("decimal ','", '"1,5,0"'),
    ("ISO dates", "01/03/2024"), ("ISO dates", "13/03/2024"),
    ("month-first dates", "13/03/2024"), ("month-first dates", "2024-02-30"),
    ("plain numbers", '"1,5"'), ("plain numbers", '"1,000"'),
]


def _trained(tmp_path, kind):
    content, column = _TRAINED[kind]
    return _load(tmp_path, content), column


def _predict_file(tmp_path, column, cell, sep=","):
    path = tmp_path / "new.csv"
    path.write_text(f"{column}\n{cell if sep == ',' else cell.strip(chr(34))}\n")
    return path


@pytest.mark.parametrize("kind,cell,value", PREDICT_GOOD, ids=[f"{k}: {c}" for k, c, _ in
                                                               PREDICT_GOOD])
def test_predict_reads_numbers_of_the_training_form(tmp_path, kind, cell, value):
    data, column = _trained(tmp_path, kind)
    X, _ = tables.read_features(_predict_file(tmp_path, column, cell), data.columns)
    assert X[0, 0] == np.float32(value)


@pytest.mark.parametrize("kind,cell", PREDICT_REFUSED, ids=[f"{k}: {c}" for k, c in
                                                            PREDICT_REFUSED])
def test_predict_refuses_cells_of_another_form(tmp_path, kind, cell):
    data, column = _trained(tmp_path, kind)
    path = tmp_path / "new.csv"
    good = {"ISO dates": "2024-03-05", "month-first dates": "03/05/2024"}.get(kind, "7")
    path.write_text(f"{column}\n{good}\n{cell}\n")
    with pytest.raises(DatasetError) as info:
        tables.read_features(path, data.columns)
    text = str(info.value)
    assert f"column {column!r}" in text and repr(cell.strip('"')) in text, text
    assert "1 row (data row 2)" in text and "\n" not in text, text


def test_predict_refuses_separator_flags_and_names_the_cell(tmp_path, run_cli):
    train = tmp_path / "train.csv"
    train.write_text(_TRAINED["thousands ','"][0])
    model = tmp_path / "m.npz"
    code, _, err = run_cli("train", "--data", train, "--target", "y", "--epochs", "1",
                           "--save", model, "--quiet")
    assert code == 0, err
    new = tmp_path / "new.csv"
    new.write_text('price\n"1,000"\n"2,5"\n')
    code, out, err = run_cli("predict", model, "--data", new)
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1, err
    assert "column 'price' was numeric in training" in err and "'2,5' in 1 row (data row 2)" \
        in err, err
    code, _, err = run_cli("predict", model, "--data", new, "--thousands", ",")
    assert code == 2 and "--thousands: predict reads each column's numbers as training did" \
        in err, err


def test_separator_flags_at_training_are_applied_strictly(tmp_path):
    """pandas drops a given thousands separator wherever it stands; the column's pattern
    does not."""
    data = _load(tmp_path, "x;y\n" + _rows(lambda i: f"{1 + i}.{i % 10:03d},5;{CLSB[i]}"),
                 thousands=".", decimal=",")
    assert data.X[1, 0] == np.float32(2001.5)
    with pytest.raises(DatasetError, match="column 'x'"):
        _load(tmp_path, "x;y\n" + _rows(lambda i: f"{1000 + i},{i % 10};{CLSB[i]}")
              + "2.5;no\n", thousands=".", decimal=",", features=("x",))


# ---------------------------------------------------------------------- valid files, read
def test_a_text_cell_beyond_the_csv_modules_field_limit(tmp_path):
    """The csv module stops at 128 KiB per field (it checks short rows when a cell is
    empty)."""
    data = _load(tmp_path, "note,x,y\n" + _rows(
        lambda i: f"{'a' * 200_000 if i == 0 else 'n' + str(i % 3)},"
                  f"{'' if i == 3 else X1B[i]},{CLSB[i]}"), impute="mean")
    assert data.X.shape[0] == N


@pytest.mark.parametrize("year", [1, 1500, 1677, 2262, 2500, 9999])
def test_dates_outside_pandas_nanosecond_range(tmp_path, year):
    import datetime

    data = _load(tmp_path, "d,y\n" + _rows(lambda i: f"{year:04d}-03-{i % 28 + 1:02d},"
                                                    f"{CLSB[i]}"))
    expected = (datetime.date(year, 3, 1) - datetime.date(1970, 1, 1)).days
    assert data.X[0, 0] == np.float32(expected)
    new = tmp_path / "new.csv"
    new.write_text(f"d\n{year:04d}-03-01T12:00:00+01:00\n")
    X, _ = tables.read_features(new, data.columns)
    assert X[0, 0] == np.float32(expected + 11 / 24)


def test_parquet_timestamps_outside_pandas_nanosecond_range(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import datetime

    import pyarrow.parquet as pq

    stamps = [datetime.datetime(1500 + 40 * i, 1, 2) for i in range(N)]
    pq.write_table(pa.table({"d": pa.array(stamps, pa.timestamp("ms")),
                             "y": list(CLSB)}), tmp_path / "d.parquet")
    data = tables.load_file(tmp_path / "d.parquet", "y")
    expected = (datetime.date(1500, 1, 2) - datetime.date(1970, 1, 1)).days
    assert data.X[0, 0] == np.float32(expected)


def test_x_and_x_dot_1_are_two_columns(tmp_path):
    """pandas renames a repeated 'x' to 'x.1': a real column 'x.1' is no repeat."""
    data = _load(tmp_path, "x,x.1,y\n" + _rows(lambda i: f"{X1B[i]},{i % 3},{CLSB[i]}"))
    assert data.feature_names == ["x", "x.1"]


@pytest.mark.parametrize("content", [b"hello\n", b"", b"\x80\x04K\x01.", b"x,y\n1,2\n"])
def test_a_file_that_is_no_npz_is_said_so(tmp_path, content):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        tables.load_file(path)
    text = str(info.value)
    assert "d.npz: not an .npz archive" in text, text
    # Only a pickle is called one (NumPy calls anything it cannot read "pickled data").
    assert ("a Python pickle" in text) == content.startswith(b"\x80"), text


# ---------------------------------------------------------------- the file's number convention
def german(value: float, places: int) -> str:
    """``value`` as a German spreadsheet writes it: ``1.270,0``, ``14,23``, ``1.065``."""
    return f"{value:,.{places}f}".replace(",", "_").replace(".", ",").replace("_", ".")


def german_wine(path, rows=None):
    """scikit-learn's wine data written by a German spreadsheet (``;`` fields, decimal
    comma, ``.`` between thousands, proline as integers: ``1.065`` beside ``735``);
    returns the true feature values."""
    datasets = pytest.importorskip("sklearn.datasets")
    wine = datasets.load_wine()
    X, y = wine.data[rows] if rows is not None else wine.data, wine.target
    y = y[rows] if rows is not None else y
    names = [n.replace("/", "_") for n in wine.feature_names]
    places = [0 if n == "proline" else 1 if n == "magnesium" else 2 for n in names]
    X = np.round(X, 2)
    lines = [";".join(names + ["cultivar"])]
    lines += [";".join([german(v, p) for v, p in zip(row, places)] + [str(t)])
              for row, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return X


@pytest.mark.parametrize("flags", [{}, {"decimal": ","}, {"thousands": "."}],
                         ids=["detected", "--decimal , alone", "--thousands . alone"])
def test_a_german_spreadsheet_is_read_by_one_convention(tmp_path, flags):
    """``1.065`` beside ``735`` in a file of ``14,23`` is 1065: the convention belongs to
    the file, is said once, and each flag fixes only its own part of it."""
    path = tmp_path / "wine.csv"
    truth = german_wine(path)
    data = tables.load_file(path, "cultivar", options=TableOptions(**flags))
    np.testing.assert_allclose(data.X, truth, rtol=1e-6)
    said = [n for n in data.notices if "decimal mark" in n]
    assert len(said) == 1 and "decimal mark ','" in said[0] and \
        "thousands separator '.'" in said[0], data.notices
    assert not any("one-hot" in n or "left out" in n for n in data.notices), data.notices
    X, _ = tables.read_features(path, data.columns)
    np.testing.assert_allclose(X, truth, rtol=1e-6)


def test_thousands_and_decimal_in_one_cell(tmp_path):
    data = _load(tmp_path, "m;p;y\n" + _rows(
        lambda i: f"{german(1270 + i * 7.5, 1)};{german(700 + i * 13, 0)};{CLSB[i]}"))
    assert data.X[0].tolist() == [1270.0, 700.0] and data.X[30, 1] == 1090.0


def test_a_column_that_contradicts_the_files_convention_names_its_cells(tmp_path):
    content = "a;b;y\n" + _rows(lambda i: f"{german(X1B[i] + 10, 2)};"
                               f"{'2.5' if i in (3, 8) else german(i, 1)};{CLSB[i]}")
    with pytest.raises(DatasetError, match=r"column 'b': '2.5' in 2 rows \(data row 4, 9\) "
                                           r"is written with decimal mark '.', but this "
                                           r"file's numbers use ','") as info:
        _load(tmp_path, content)
    assert "column 'a' holds" in str(info.value)
    with pytest.raises(DatasetError, match="column 'b'"):
        _load(tmp_path, content, decimal=",")


# ---------------------------------------------------------------- currency, percent, spaces
NBSP, MINUS = "\u00a0", "\u2212"
NUMBER_FORMS = [
    ("dollars", lambda i: f'"${1000 + 37 * i:,}.56"', 1000.56, "currency '$' dropped"),
    ("euros after", lambda i: f"{german(1000 + 37 * i + 0.5, 2)} €", 1000.5,
     "currency '€' dropped"),
    ("pounds", lambda i: f"£{i + 1}", 1.0, "currency '£' dropped"),
    ("space thousands", lambda i: f"1 {311 + i}", 1311.0,
     "spaces between digit groups are thousands separators"),
    ("no-break space thousands", lambda i: f"1{NBSP}{311 + i}", 1311.0,
     "spaces between digit groups are thousands separators"),
    ("Unicode minus", lambda i: f"{MINUS}1.{5 + i}", -1.5, "'\u2212' read as a minus sign"),
    ("percent", lambda i: f"{12.3 + i}%", 0.123,
     "percentages read as fractions (12.3% is 0.123)"),
]


@pytest.mark.parametrize("name,cell,first,note", NUMBER_FORMS,
                         ids=[c[0] for c in NUMBER_FORMS])
def test_written_number_forms_are_numbers_with_a_note(tmp_path, name, cell, first, note):
    sep = ";" if "euros" in name else ","
    data = _load(tmp_path, f"x{sep}y\n" + _rows(lambda i: f"{cell(i)}{sep}{CLSB[i]}"))
    assert data.X.shape == (N, 1) and data.X[0, 0] == np.float32(first), data.notices
    assert any("column 'x': text like" in n and note in n for n in data.notices), \
        data.notices
    new = tmp_path / "new.csv"
    new.write_text(f"x{sep}y\n{cell(0)}{sep}yes\n")
    X, _ = tables.read_features(new, data.columns)
    assert X[0, 0] == np.float32(first)


@pytest.mark.parametrize("cells,why", [
    (lambda i: f"${i + 1}" if i % 2 else f"€{i + 1}", "currencies $ and € mixed"),
    (lambda i: f"{i + 1}%" if i % 2 else f"{i + 1}", "some cells end in '%' and others do not"),
    (lambda i: f"{i + 1}.{i}.{i}" if i % 2 else f"{i + 1}", "is no number of any form"),
], ids=["mixed currencies", "percent in some cells", "dotted codes"])
def test_a_column_of_almost_numbers_says_why_it_is_not(tmp_path, cells, why):
    data = _load(tmp_path, "x,z,y\n" + _rows(lambda i: f"{cells(i)},{X1B[i]},{CLSB[i]}"))
    said = next(n for n in data.notices if "column 'x'" in n)
    assert why in said and "ID-like" not in said, said


# ---------------------------------------------------------------- dates as they are written
@pytest.mark.parametrize("cell,first", [
    (lambda i: f"{i % 28 + 1:02d}.08.2019", 18109.0),
    (lambda i: f"{i % 28 + 1} Aug 2019", 18109.0),
    (lambda i: f"{i % 28 + 1} August 2019", 18109.0),
    (lambda i: f"2019-08-{i % 28 + 1:02d} 10:15 PM", 18109.0 + 22.25 / 24),
    (lambda i: f"2019-08-{i % 28 + 1:02d} 12:00 AM", 18109.0),
], ids=["dd.mm.yyyy", "29 Aug 2019", "29 August 2019", "10:15 PM", "12:00 AM"])
def test_dates_as_spreadsheets_write_them(tmp_path, cell, first):
    data = _load(tmp_path, "d,y\n" + _rows(lambda i: f"{cell(i)},{CLSB[i]}"))
    assert data.columns[0]["kind"] == "datetime", data.notices
    assert data.X[0, 0] == np.float32(first)
    new = tmp_path / "new.csv"
    new.write_text(f"d\n{cell(0)}\n")
    assert tables.read_features(new, data.columns)[0][0, 0] == np.float32(first)


def test_date_format_reads_the_rest_and_predict_keeps_it(tmp_path):
    content = "d,y\n" + _rows(lambda i: f"2019{8 + i % 2:02d}{i % 28 + 1:02d},{CLSB[i]}")
    data = _load(tmp_path, content, date_format="%Y%m%d")
    assert data.columns[0]["parse"] == {"format": "%Y%m%d"} and data.X[0, 0] == 18109.0
    assert "dates written as '%Y%m%d' (--date-format)" in " ".join(data.notices)
    new = tmp_path / "new.csv"
    new.write_text("d\n20190901\n2019-09-01\n")
    with pytest.raises(DatasetError, match=r"'2019-09-01' in 1 row \(data row 2\), not of "
                                           r"its forms \(--date-format '%Y%m%d'\)"):
        tables.read_features(new, data.columns)
    with pytest.raises(DatasetError, match="--date-format: expected a strptime format"):
        _load(tmp_path, content, date_format="yyyymmdd")


# ---------------------------------------------------------------- what the user names and means
def test_features_keeps_a_named_free_text_column(tmp_path):
    content = "note,x,y\n" + "".join(f"comment {i * 2 // 3},{i % 7},{i % 2}\n"
                                     for i in range(300))
    assert "'note': left out (free text" in " ".join(_load(tmp_path, content).notices)
    data = _load(tmp_path, content, features=("note", "x"))
    assert [c["name"] for c in data.columns] == ["note", "x"]
    assert "200 categories: 200 features from 300 rows" in " ".join(data.notices)
    assert "kept as --features names it" in " ".join(data.notices), data.notices


def test_na_values_add_missing_words_used_at_predict(tmp_path):
    content = "x,y\n" + _rows(lambda i: f"{'missing' if i == 4 else X1B[i]},{CLSB[i]}")
    data = _load(tmp_path, content, na_values=("missing",), impute="mean")
    assert data.columns[0]["kind"] == "numeric" and not np.isnan(data.X).any()
    new = tmp_path / "new.csv"
    new.write_text("x\n1.5\nmissing\n")
    X, notes = tables.read_features(new, data.columns)
    assert X[0, 0] == 1.5 and "filled as in training" in " ".join(notes)


def test_gzipped_csv_is_read(tmp_path):
    import gzip

    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("x;y\n" + _rows(lambda i: f"{german(X1B[i], 3)};{CLSB[i]}"))
    data = tables.load_file(path, "y")
    assert data.X[0, 0] == np.float32(X1B[0])
    assert tables.read_features(path, data.columns)[0][0, 0] == np.float32(X1B[0])


def test_zip_codes_with_leading_zeros_stay_codes(tmp_path):
    data = _load(tmp_path, "zip,x,y\n" + _rows(
        lambda i: f"0{2134 + i % 5},{X1B[i]},{CLSB[i]}"))
    spec = data.columns[0]
    assert spec["kind"] == "categorical" and spec["categories"][0] == "02134"
    assert "digits with leading zeros ('02134'): codes, not quantities" in \
        " ".join(data.notices)


def test_a_wide_one_hot_encoding_is_said(tmp_path):
    n = 2000
    path = tmp_path / "wide.csv"
    path.write_text("town,y\n" + "".join(f"t{i % 868},{i % 2}\n" for i in range(n)))
    data = tables.load_file(path, "y")
    assert data.X.shape == (n, 868)
    assert "868 features from 2000 rows" in " ".join(data.notices), data.notices


# The tables are read as float32: a finite value beyond its range would become Inf there
# and be blamed as "NaN or Inf" later (by the standardiser or the model), naming no column.
def test_a_value_beyond_float32_in_a_table_names_its_column_and_row(tmp_path):
    body = _rows(lambda i: f"{X1B[i]},{'3e300' if i == 6 else i % 5},{CLSB[i]}")
    with pytest.raises(DatasetError, match=r"column 'big' holds 3e\+300 in data row 7, "
                                           r"beyond float32's range"):
        _load(tmp_path, "x,big,y\n" + body)


def test_predict_names_a_value_beyond_float32(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("x,y\n" + _rows(lambda i: f"{X1B[i]},{CLSB[i]}"))
    data = tables.load_file(train, "y")
    new = tmp_path / "new.csv"
    new.write_text("x\n0.5\n-1e39\n")
    with pytest.raises(DatasetError, match=r"new.csv: column 'x' holds -1e\+39 in data row 2,"
                                           r" beyond float32's range"):
        tables.read_features(new, data.columns)


def test_an_npz_value_beyond_float32_is_named(tmp_path):
    path = tmp_path / "d.npz"
    X = np.zeros((10, 3))
    X[4, 2] = 1e300
    np.savez(path, X=X, y=np.arange(10) % 2)
    with pytest.raises(DatasetError, match=r"d.npz: X\[4, 2\] holds 1e\+300, beyond "
                                           r"float32's range"):
        tables.load_file(path)


def test_predict_reads_a_boolean_column_as_training_did(tmp_path):
    """A column of True/False is read as 1/0 at training; predict reads its cells the same
    way whatever else the file holds (a missing cell, another row's mistake), and refuses
    a cell that is no boolean naming it, not the valid 'True' beside it."""
    flag = ["True" if x > 0 else "False" for x in X1B]
    data = _load(tmp_path, "x,flag,y\n" + _rows(lambda i: f"{X1B[i]},{flag[i]},{CLSB[i]}"))
    new = tmp_path / "new.csv"
    new.write_text("x,flag\n0.5,True\n0.5,false\n-0.5,FALSE\n")
    X, _ = tables.read_features(new, data.columns)
    np.testing.assert_array_equal(X[:, 1], [1.0, 0.0, 0.0])
    new.write_text("x,flag\n0.5,True\n0.5,\n")  # a missing cell: said as missing
    with pytest.raises(DatasetError, match=r"missing values in column 'flag' in 1 row "
                                           r"\(data row 2\); the model has no fill value"):
        tables.read_features(new, data.columns)
    new.write_text("x,flag\n0.5,True\n0.5,maybe\n")
    with pytest.raises(DatasetError, match=r"column 'flag' held True/False in training but "
                                           r"holds 'maybe' in 1 row \(data row 2\)"):
        tables.read_features(new, data.columns)
