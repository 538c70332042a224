"""``recur.data.series``: statsmodels series, CSV columns, missing values, split, windows."""

from __future__ import annotations

import numpy as np
import pytest

from recur.data import (
    SeriesNorm,
    fill_missing,
    load_series,
    make_windows,
    read_csv_column,
    train_size,
)


def test_sunspots_from_statsmodels():
    s = load_series("statsmodels:sunspots")
    assert s.name == "statsmodels:sunspots" and s.values.shape == (309,)
    assert s.values[:3].tolist() == [5.0, 11.0, 16.0]
    assert train_size(len(s.values), 0.2) == 247


def test_unknown_statsmodels_series_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown statsmodels series 'sunspot'.*"
                                         "statsmodels:sunspots.*statsmodels:nile"):
        load_series("statsmodels:sunspot")


def test_statsmodels_series_with_gaps_needs_fillna():
    with pytest.raises(ValueError, match=r"statsmodels:co2 has 59 missing value\(s\), the "
                                         r"first at row 6 \(1958-05-10"):
        load_series("statsmodels:co2")
    filled = load_series("statsmodels:co2", fillna="interpolate")
    dropped = load_series("statsmodels:co2", fillna="drop")
    assert not np.isnan(filled.values).any() and len(filled.values) == 2284
    assert len(dropped.values) == 2284 - 59 and len(dropped.where) == len(dropped.values)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_column_and_tsv(tmp_path):
    path = _write(tmp_path, "s.csv", "day,price,volume\n1,10.5,3\n2,11,4\n\n3,12.25,5\n")
    values, where = read_csv_column(path, "price")
    assert values.tolist() == [10.5, 11.0, 12.25] and where == ["line 2", "line 3", "line 5"]
    path = _write(tmp_path, "s.tsv", "a\tb\n1\t2\n3\t4\n")
    assert load_series(path, column="b").values.tolist() == [2.0, 4.0]
    path = _write(tmp_path, "semi.csv", "a;b\n1;2\n3;4\n")
    assert load_series(path, column="b").values.tolist() == [2.0, 4.0]


def test_nan_in_a_csv_is_an_error_naming_the_line_unless_filled(tmp_path):
    path = _write(tmp_path, "s.csv", "t,v\n0,1\n1,NaN\n2,\n3,4\n")
    with pytest.raises(ValueError, match=r"has 2 missing value\(s\), the first at line 3; "
                                         r"pass fillna"):
        load_series(path, column="v")
    assert load_series(path, column="v", fillna="interpolate").values.tolist() == \
        [1.0, 2.0, 3.0, 4.0]
    assert load_series(path, column="v", fillna="ffill").values.tolist() == [1.0, 1.0, 1.0, 4.0]
    assert load_series(path, column="v", fillna="drop").values.tolist() == [1.0, 4.0]
    with pytest.raises(ValueError, match="fillna must be one of"):
        load_series(path, column="v", fillna="mean")


def test_missing_column_names_the_columns_found(tmp_path):
    path = _write(tmp_path, "s.csv", "date,close\n1,2\n")
    with pytest.raises(ValueError, match=r"no column 'price'; columns found: \['date', 'close'\]"):
        load_series(path, column="price")
    with pytest.raises(ValueError, match="needs a column name"):
        load_series(path)


@pytest.mark.parametrize("body, line, what", [
    ("t,v\n0,1\n1,2,3\n", 3, "expected 2 fields"),
    ("t,v\n0,1\n1,2\n2,abc\n", 4, "'abc', which is not a number"),
    ('t,v\n0,1\n1,"2\n', 3, "malformed CSV"),
], ids=["fields", "not-a-number", "open-quote"])
def test_malformed_csv_names_the_line(tmp_path, body, line, what):
    path = _write(tmp_path, "s.csv", body)
    with pytest.raises(ValueError, match=rf"line {line}: .*{what}"):
        load_series(path, column="v")


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="series file not found"):
        load_series(str(tmp_path / "nope.csv"), column="v")
    with pytest.raises(FileNotFoundError, match="series file not found"):  # before the column
        load_series(str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="no data rows"):
        load_series(_write(tmp_path, "h.csv", "t,v\n"), column="v")


def test_fill_missing_edges():
    v = np.array([np.nan, 2.0, np.nan, 6.0, np.nan])
    assert fill_missing(v, "interpolate").tolist() == [2.0, 2.0, 4.0, 6.0, 6.0]
    assert fill_missing(v, "ffill").tolist() == [2.0, 2.0, 2.0, 6.0, 6.0]
    with pytest.raises(ValueError, match="no valid values"):
        fill_missing(np.array([np.nan]), "ffill")


def test_norm_windows_and_split():
    y = np.arange(10, dtype=float)
    n_train = train_size(len(y), 0.2)
    assert n_train == 8
    norm = SeriesNorm.fit(y[:n_train])
    assert norm.mean == 3.5 and norm.std == pytest.approx(np.std(np.arange(8.0)))
    np.testing.assert_allclose(norm.inverse(norm.transform(y)), y)
    x, t = make_windows(y, 3, 0, n_train)                  # targets 3..7
    assert x.shape == (5, 3, 1) and t.tolist() == [3, 4, 5, 6, 7]
    assert x[0, :, 0].tolist() == [0, 1, 2]
    x, t = make_windows(y, 3, n_train, len(y))             # targets 8, 9 from the true past
    assert t.tolist() == [8, 9] and x[1, :, 0].tolist() == [6, 7, 8]
    with pytest.raises(ValueError, match="too short"):
        train_size(2, 0.2)
    with pytest.raises(ValueError, match="no targets"):
        make_windows(y, 20, 0, 8)


# ---- panels: frequency, period, aeon's shipped forecasting data ------------------------------
def test_elnino_reads_the_table_row_by_row_and_is_monthly():
    from recur.data.series import load_panel

    p = load_panel("statsmodels:elnino")
    assert (len(p.series), len(p.series[0]), p.freq, p.period) == (1, 732, "monthly", 12)
    assert p.series[0][:2].tolist() == [23.11, 24.2]                  # 1950 Jan, Feb


def test_period_of_frequencies():
    from recur.data.series import period_of

    assert [period_of(f) for f in ("yearly", "quarterly", "monthly", "weekly", "daily",
                                   "hourly", None, "fortnightly")] == [1, 4, 12, 52, 7, 24, 1, 1]


def test_aeon_forecasting_data_ships_without_download():
    from recur.data.series import load_panel

    m1 = load_panel("aeon:m1_yearly_dataset")
    assert (len(m1.series), m1.horizon, m1.freq, m1.period) == (181, 6, "yearly", 1)
    assert min(map(len, m1.series)) == 15 and m1.names[0] == "T1"
    lynx = load_panel("aeon:lynx")                                    # case-insensitive
    assert (lynx.name, len(lynx.series[0]), lynx.period) == ("aeon:Lynx", 114, 1)
    pbs = load_panel("aeon:PBS_dataset")
    assert (len(pbs.series[0]), pbs.freq, pbs.period) == (204, "monthly", 12)
    with pytest.raises(ValueError, match="unknown aeon forecasting data 'm3_monthly'; shipped "
                                         "with the installed aeon \\(no download\\): "
                                         "aeon:Airline, "):
        load_panel("aeon:m3_monthly")
