"""Series for forecasting: a statsmodels dataset, a column of a user's CSV, or (through
:func:`load_panel`) a set of series shipped with aeon.

Sources (``spec``):

- ``"statsmodels:sunspots"`` (yearly sunspot activity 1700-2008, 309 values), also
  ``statsmodels:nile`` (yearly, 100 values), ``statsmodels:co2`` (weekly, 2284 values, 59
  missing: needs ``fillna``) and ``statsmodels:elnino`` (monthly sea surface temperature
  1950-2010, 732 values, the 61 x 12 table read row by row); :data:`STATSMODELS_SERIES` lists
  them, :data:`STATSMODELS_FREQ` gives their frequency.
- a path to a ``.csv`` / ``.tsv`` file with a header line, plus ``column=NAME``.
- ``"aeon:NAME"`` (only through :func:`load_panel`): see :mod:`recur.data.aeon_forecast`.

:func:`load_panel` returns a :class:`Panel` (one or more series, their frequency, the seasonal
period it implies and the dataset's own horizon when it has one); :func:`period_of` maps a
frequency to a period (yearly 1, quarterly 4, monthly 12, weekly 52, daily 7, hourly 24).

A missing value (empty cell, ``NaN``, ``NA``) is an error that names where it is, unless
``fillna`` says how to fill it (``"interpolate"``, ``"ffill"`` or ``"drop"``).

Split and windows, for one-step-ahead forecasting without test leakage::

    s = load_series("statsmodels:sunspots")                 # s.values: [N] float64
    n_train = train_size(len(s.values), test_fraction=0.2)  # model and scaler see [:n_train]
    norm = SeriesNorm.fit(s.values[:n_train])
    z = norm.transform(s.values)
    x, y = make_windows(z, window=20, start=n_train, stop=len(z))  # x: [M, 20, 1], y: [M]

Each test target ``z[t]`` is predicted from the true values ``z[t-window:t]`` before it.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FILLNA_METHODS",
    "STATSMODELS_FREQ",
    "STATSMODELS_SERIES",
    "Panel",
    "Series",
    "SeriesNorm",
    "fill_missing",
    "load_panel",
    "load_series",
    "make_windows",
    "period_of",
    "read_csv_column",
    "train_size",
]

log = logging.getLogger(__name__)

#: name → (statsmodels.datasets module, value column)
STATSMODELS_SERIES: dict[str, tuple[str, str]] = {
    "sunspots": ("sunspots", "SUNACTIVITY"),
    "nile": ("nile", "volume"),
    "co2": ("co2", "co2"),
    "elnino": ("elnino", ""),           # wide: YEAR + one column per month
}
#: name → frequency of the statsmodels series
STATSMODELS_FREQ: dict[str, str] = {"sunspots": "yearly", "nile": "yearly", "co2": "weekly",
                                    "elnino": "monthly"}
#: frequency → seasonal period (the number of steps in a year or a day)
PERIODS: dict[str, int] = {"yearly": 1, "quarterly": 4, "monthly": 12, "weekly": 52,
                           "daily": 7, "hourly": 24, "half_hourly": 48}
FILLNA_METHODS = ("interpolate", "ffill", "drop")
_MISSING = {"", "nan", "na", "n/a", "null", "none", "?"}


@dataclass
class Series:
    """A univariate series.

    Attributes:
        name: where it came from (``"statsmodels:sunspots"``, ``"data.csv:price"``).
        values: ``[N]`` float64, no NaN.
        where: ``[N]`` human-readable position of each value (``"line 7"``, ``"row 3"``).
    """

    name: str
    values: np.ndarray
    where: list[str]


@dataclass
class SeriesNorm:
    """Standardisation ``(v - mean) / std`` with statistics from the train part only."""

    mean: float
    std: float

    @classmethod
    def fit(cls, train: np.ndarray) -> SeriesNorm:
        """Fit on ``train: [N_train]``; a constant series gets std 1."""
        std = float(np.std(train))
        return cls(float(np.mean(train)), std if std > 1e-12 else 1.0)

    def transform(self, v):
        return (v - self.mean) / self.std

    def inverse(self, z):
        return z * self.std + self.mean


def _parse_float(text: str) -> float:
    t = text.strip()
    if t.lower() in _MISSING:
        return math.nan
    return float(t)


def read_csv_column(path: str, column: str) -> tuple[np.ndarray, list[str]]:
    """Read one numeric column of a delimited file with a header line.

    The delimiter is a tab for ``.tsv`` / ``.tab`` files, else sniffed among ``, ; \\t |``.

    Returns:
        ``values: [N]`` float64 (NaN for empty / ``NaN`` / ``NA`` cells) and, per value, the
        ``"line K"`` it came from.

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing column (names the columns found), a line with the wrong number
            of fields or a value that is not a number (names the line), no data rows.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"series file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        head = f.read(8192)
        f.seek(0)
        if path.lower().endswith((".tsv", ".tab")):
            delim = "\t"
        else:
            try:
                delim = csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
            except csv.Error:
                delim = ","
        reader = csv.reader(f, delimiter=delim, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path} is empty; expected a header line") from None
        header = [h.strip() for h in header]
        if column not in header:
            raise ValueError(f"{path}: no column {column!r}; columns found: {header}")
        k = header.index(column)
        values, where = [], []
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise ValueError(f"{path}, line {reader.line_num}: malformed CSV: {e}") from None
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: expected {len(header)} "
                                 f"fields (as in the header), got {len(row)}: {row!r}")
            try:
                values.append(_parse_float(row[k]))
            except ValueError:
                raise ValueError(f"{path}, line {reader.line_num}: column {column!r} has "
                                 f"{row[k]!r}, which is not a number") from None
            where.append(f"line {reader.line_num}")
    if not values:
        raise ValueError(f"{path} has a header but no data rows")
    return np.asarray(values, dtype=np.float64), where


def _load_statsmodels(name: str) -> tuple[np.ndarray, list[str]]:
    key = name.lower()
    if key not in STATSMODELS_SERIES:
        raise ValueError(f"unknown statsmodels series {name!r}; valid: "
                         f"{', '.join('statsmodels:' + n for n in STATSMODELS_SERIES)}")
    module, col = STATSMODELS_SERIES[key]
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        mod = importlib.import_module(f"statsmodels.datasets.{module}")
        df = mod.load_pandas().data
    if not col:                                            # a year per row, a month per column
        months = df.drop(columns=df.columns[0])
        values = months.to_numpy(dtype=np.float64).reshape(-1)
        years = df[df.columns[0]].astype(int).tolist()
        stamps = [f"{y}-{m:02d}" for y in years for m in range(1, 13)]
        return values, [f"row {i} ({t})" for i, t in enumerate(stamps)]
    values = df[col].to_numpy(dtype=np.float64)
    labels = [f" ({v})" for v in df.index] if df.index.dtype.kind == "M" else [""] * len(df)
    return values, [f"row {i}{lab}" for i, lab in enumerate(labels)]


def fill_missing(values: np.ndarray, method: str) -> np.ndarray:
    """Fill NaN in ``values: [N]``.

    Args:
        method: ``"interpolate"`` (linear between neighbours, edges take the nearest value),
            ``"ffill"`` (last valid value; leading NaN take the first valid one) or
            ``"drop"`` (remove the steps).
    """
    if method not in FILLNA_METHODS:
        raise ValueError(f"fillna must be one of {FILLNA_METHODS}, got {method!r}")
    nan = np.isnan(values)
    if not nan.any():
        return values
    if nan.all():
        raise ValueError("the series has no valid values to fill from")
    if method == "drop":
        return values[~nan]
    idx = np.arange(len(values))
    if method == "interpolate":
        return np.interp(idx, idx[~nan], values[~nan])
    last = np.where(~nan, idx, 0)
    np.maximum.accumulate(last, out=last)
    out = values[last]
    first = int(np.argmax(~nan))
    out[:first] = values[first]
    return out


def load_series(spec: str, column: str | None = None, fillna: str | None = None) -> Series:
    """Load a univariate series from ``"statsmodels:NAME"`` or a CSV/TSV path + ``column``.

    Args:
        spec: ``"statsmodels:sunspots"`` etc., or a file path.
        column: the value column of a file (required for files; ignored for statsmodels).
        fillna: None (missing values are an error) or one of :data:`FILLNA_METHODS`.

    Returns:
        :class:`Series` with ``values: [N]`` float64 and no NaN.

    Raises:
        FileNotFoundError: ``spec`` is neither a statsmodels name nor an existing file.
        ValueError: unknown name (lists the valid ones), missing column, malformed line, or a
            missing value without ``fillna`` (names its line / row and how many there are).
    """
    if fillna is not None and fillna not in FILLNA_METHODS:
        raise ValueError(f"fillna must be one of {FILLNA_METHODS} or None, got {fillna!r}")
    if spec.startswith("statsmodels:"):
        name = spec.split(":", 1)[1]
        values, where = _load_statsmodels(name)
        label = f"statsmodels:{name.lower()}"
    else:
        if not os.path.isfile(spec):  # before the column: the file is the first thing wrong
            raise FileNotFoundError(f"series file not found: {spec}")
        if not column:
            raise ValueError(f"reading a series from {spec} needs a column name (--column)")
        values, where = read_csv_column(spec, column)
        label = f"{spec}:{column}"
    nan = np.isnan(values)
    if nan.any():
        if fillna is None:
            first = int(np.argmax(nan))
            raise ValueError(f"{label} has {int(nan.sum())} missing value(s), the first at "
                             f"{where[first]}; pass fillna (--fillna) as one of "
                             f"{', '.join(FILLNA_METHODS)} to fill them")
        if fillna == "drop":
            where = [w for w, m in zip(where, nan) if not m]
        values = fill_missing(values, fillna)
        log.info("%s: filled %d missing value(s) with %r", label, int(nan.sum()), fillna)
    return Series(label, values, where)


def train_size(n: int, test_fraction: float = 0.2) -> int:
    """Number of leading values used for fitting: ``floor(n * (1 - test_fraction))``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_train = math.floor(n * (1.0 - test_fraction) + 1e-9)
    if n_train < 2 or n_train >= n:
        raise ValueError(f"a series of {n} values is too short to split with "
                         f"test_fraction={test_fraction}")
    return n_train


def make_windows(z: np.ndarray, window: int, start: int, stop: int) -> tuple[Tensor, Tensor]:
    """One-step-ahead pairs: predict ``z[t]`` from ``z[t-window:t]`` for ``t`` in
    ``[max(start, window), stop)``.

    Args:
        z: ``[N]`` (normalised) series.
        window: number of past values per input.
        start, stop: range of target indices.

    Returns:
        ``x: [M, window, 1]`` float32 and ``y: [M]`` float32.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    first = max(start, window)
    if stop <= first:
        raise ValueError(f"no targets in [{start}, {stop}) with window={window}; the series "
                         "is too short for this window")
    idx = np.arange(first, stop)
    x = np.stack([z[t - window:t] for t in idx]).astype(np.float32)[..., None]
    y = z[idx].astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def period_of(freq: str | None) -> int:
    """The seasonal period of a frequency name (:data:`PERIODS`); 1 (none) when unknown."""
    return PERIODS.get((freq or "").lower(), 1)


@dataclass
class Panel:
    """One or more series to forecast together.

    Attributes:
        name: where they came from (``"aeon:m1_yearly_dataset"``).
        series: list of ``[N_i]`` float64 arrays (no NaN), possibly of different lengths.
        freq: frequency name (``"monthly"``) or ``None`` when the source does not say.
        period: seasonal period implied by ``freq`` (1: none).
        horizon: the dataset's own forecast horizon (M1 yearly: 6), or ``None``.
        names: one label per series.
    """

    name: str
    series: list[np.ndarray]
    freq: str | None = None
    period: int = 1
    horizon: int | None = None
    names: list[str] | None = None


def load_panel(spec: str, column: str | None = None, fillna: str | None = None) -> Panel:
    """:func:`load_series` for one series, or ``"aeon:NAME"`` for a series or a set of series
    shipped with aeon (:func:`recur.data.aeon_forecast.load_aeon_forecast`), as a
    :class:`Panel` with the frequency and period when the source tells them (a CSV does not:
    pass ``--period``)."""
    if spec.startswith("aeon:"):
        from .aeon_forecast import load_aeon_forecast

        return load_aeon_forecast(spec.split(":", 1)[1], fillna=fillna)
    s = load_series(spec, column=column, fillna=fillna)
    freq = STATSMODELS_FREQ.get(s.name.split(":", 1)[1]) if s.name.startswith("statsmodels:") \
        else None
    return Panel(s.name, [s.values], freq, period_of(freq), None, [s.name])
