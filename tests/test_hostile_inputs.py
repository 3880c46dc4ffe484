"""Hostile and messy inputs to the table reader and the scikit-learn estimators: each is
refused with one line naming the column, row or argument, or read as a notice says;
never a crash, never a silent misreading."""

import numpy as np
import pytest

pytest.importorskip("pandas", reason="pandas not installed (pip install gpunn[data])")

from gpunn.data import tables  # noqa: E402
from gpunn.data.tables import DatasetError, TableOptions  # noqa: E402

N = 40
rng = np.random.default_rng(1)
X1 = np.round(rng.normal(size=N), 3)
CLS = np.where(X1 > 0, "yes", "no")


def _rows(fmt):
    return "".join(fmt(i) + "\n" for i in range(N))


def _load(tmp_path, content, **options):
    path = tmp_path / "data.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return tables.load_file(path, "y", options=TableOptions(**options))


REFUSED = [
    ("names equal once stripped", "x,x ,y\n" + _rows(lambda i: f"{X1[i]},{i % 3},{CLS[i]}"),
     {}, "duplicate column names in the header: x"),
    ("unknown encoding", "x,y\n1,a\n2,b\n", {"encoding": "nonsense"},
     "--encoding: unknown encoding 'nonsense'"),
    ("UTF-16 file", ("x,y\n" + _rows(lambda i: f"{X1[i]},{CLS[i]}")).encode("utf-16"), {},
     "--encoding utf-16"),
    ("binary file", bytes(range(256)) * 20, {}, "binary"),
    ("same decimal and thousands", "x,y\n1,a\n2,b\n", {"decimal": ",", "thousands": ","},
     "--decimal and --thousands are both ','"),
    ("--features names a column twice",
     "x,z,y\n" + _rows(lambda i: f"{X1[i]},{i % 3},{CLS[i]}"), {"features": ("x", "x")},
     "--features: 'x' named twice"),
    ("target in --drop", "x,z,y\n" + _rows(lambda i: f"{X1[i]},{i % 3},{CLS[i]}"),
     {"drop": ("y",)}, "--drop: 'y' is the target"),
    ("every target missing, --impute drop", "x,y\n" + _rows(lambda i: f"{X1[i]},"),
     {"impute": "drop"}, "target 'y' is missing in every row"),
    ("one text cell in a numeric column",
     "x,y\n" + _rows(lambda i: f"{'abc' if i == 5 else X1[i]},{CLS[i]}"), {},
     "column 'x' holds numbers but 'abc' in 1 row (data row 6)"),
    ("one text cell in a numeric target",
     "x,y\n" + _rows(lambda i: f"{X1[i]},{'oops' if i == 2 else X1[i] * 2.5}"), {},
     "target 'y' holds numbers but 'oops' in 1 row (data row 3)"),
    ("one bad date", "d,x,y\n" + _rows(
        lambda i: f"{'2024-02-31' if i == 4 else f'2024-03-{i % 28 + 1:02d}'},{X1[i]},"
                  f"{CLS[i]}"), {}, "column 'd' holds dates but '2024-02-31' in 1 row"),
    ("infinite feature", "x,y\n" + _rows(lambda i: f"{'inf' if i == 2 else X1[i]},{CLS[i]}"),
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
    data = _load(tmp_path, "x,y\n" + _rows(lambda i: f"{10**30 + i * (-7) ** i},{CLS[i]}"))
    assert data.feature_names == ["x"]
    assert np.isfinite(data.X).all() and data.X[0, 0] == np.float32(1e30)


def test_nested_parquet_columns_are_left_out(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="pyarrow not installed")
    frame = pd.DataFrame({"l": [[1, 2], [3]] * (N // 2), "s": [{"a": 1}] * N, "x": X1,
                          "y": CLS})
    frame.to_parquet(tmp_path / "d.parquet")
    data = tables.load_file(tmp_path / "d.parquet", "y")
    assert data.feature_names == ["x"]
    told = " | ".join(data.notices)
    assert "'l': left out (nested values" in told and "'s': left out (nested" in told


def test_predict_refuses_an_infinite_value(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("x,y\n" + _rows(lambda i: f"{X1[i]},{CLS[i]}"))
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
                                                      f"{X1[i]},{CLS[i]}"))


def _gpunn(*args):
    import os
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "gpunn", *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GPUNN_DEVICE": "cpu"})


def test_cli_says_why_a_separator_is_refused(tmp_path):
    out = _gpunn("train", "--data", tmp_path / "d.csv", "--target", "y", "--sep", "::")
    assert out.returncode == 2
    assert "argument --sep: expected one character (or 'tab'), got '::'" in out.stderr


def test_day_first_dates_are_read_day_first_in_every_row(tmp_path):
    """'13/04/2024' proves the column day-first: '03/04/2024' is then 3 April, at training
    and at prediction (each cell was guessed on its own: 4 March)."""
    data = _load(tmp_path, "d,y\n" + _rows(lambda i: f"{['13/04/2024', '03/04/2024'][i % 2]},"
                                                    f"{CLS[i]}"))
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
                                                 f"{CLS[i]}"))


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
