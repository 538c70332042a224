"""Forecasting series shipped inside the installed aeon: single series and ``.tsf`` panels.

    load_aeon_forecast("Lynx")                 # yearly lynx trappings 1821-1934, 114 values
    load_aeon_forecast("PBS_dataset")          # monthly scripts, 204 values (seasonal)
    load_aeon_forecast("m1_yearly_dataset")    # 181 yearly series of 15-58 values, horizon 6

Names are case-insensitive. Single series come from aeon's CSV files (``Airline``,
``ShampooSales``, ``Lynx``, ``PBS_dataset``, ``solar``, ...; their pandas index gives the
frequency); panels from the ``.tsf`` files aeon ships (the M1 yearly competition set, whose
header gives the frequency and the horizon). Nothing is downloaded: aeon's
``load_forecasting`` fetches other ``.tsf`` sets from forecastingdata.org, which this loader
refuses with the list of what ships. aeon and pandas are imported on the first call.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .series import Panel, fill_missing, period_of

__all__ = ["aeon_forecast_names", "load_aeon_forecast"]

#: aeon's single-series CSV files without a loader of their own that we read (multi-column
#: files such as Uschange or Longley are not single series)
_CSV_SKIP = {"Uschange", "Longley"}


def _data_dir() -> str:
    import aeon.datasets

    return os.path.join(os.path.dirname(aeon.datasets.__file__), "data")


def aeon_forecast_names() -> dict[str, str]:
    """Shipped forecasting data: name → ``"csv"`` (one series) or ``"tsf"`` (a panel)."""
    root, found = _data_dir(), {}
    for name in sorted(os.listdir(root)):
        if name in _CSV_SKIP:
            continue
        if os.path.isfile(os.path.join(root, name, f"{name}.tsf")):
            found[name] = "tsf"
        elif os.path.isfile(os.path.join(root, name, f"{name}.csv")) and \
                not os.path.exists(os.path.join(root, name, f"{name}_TRAIN.ts")):
            found[name] = "csv"
    return found


def _freq_name(index) -> str | None:
    """``"monthly"`` etc. from a pandas PeriodIndex / DatetimeIndex, or None."""
    code = getattr(getattr(index, "freq", None), "freqstr", None) or ""
    code = code.upper()
    for prefix, name in (("Y", "yearly"), ("A", "yearly"), ("Q", "quarterly"),
                         ("M", "monthly"), ("W", "weekly"), ("D", "daily"), ("H", "hourly")):
        if code.startswith(prefix) and not code.startswith("MIN"):
            return name
    if code in ("30MIN", "30T"):
        return "half_hourly"
    return None


def _read_csv(name: str) -> tuple[np.ndarray, str | None]:
    import aeon.datasets as ad

    loaders = {"Lynx": ad.load_lynx, "PBS_dataset": ad.load_PBS_dataset,
               "Airline": ad.load_airline, "ShampooSales": ad.load_shampoo_sales,
               "solar": ad.load_solar}
    if name in loaders:
        s = loaders[name](return_array=False)
        return s.to_numpy(dtype=np.float64), _freq_name(s.index)
    import pandas as pd

    df = pd.read_csv(os.path.join(_data_dir(), name, f"{name}.csv"), index_col=0)
    if df.shape[1] != 1:
        raise ValueError(f"aeon:{name} has {df.shape[1]} columns; expected one series")
    return df.iloc[:, 0].to_numpy(dtype=np.float64), None


def load_aeon_forecast(name: str, fillna: str | None = None) -> Panel:
    """Read a forecasting series or panel shipped with aeon as a :class:`Panel`.

    Raises:
        ValueError: a name that does not ship with the installed aeon (the message lists the
            ones that do), or missing values without ``fillna``.
    """
    shipped = aeon_forecast_names()
    key = {k.lower(): k for k in shipped}.get(str(name).lower())
    if key is None:
        raise ValueError(f"unknown aeon forecasting data {name!r}; shipped with the installed "
                         f"aeon (no download): {', '.join('aeon:' + k for k in shipped)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        if shipped[key] == "tsf":
            from aeon.datasets import load_from_tsf_file

            df, meta = load_from_tsf_file(os.path.join(_data_dir(), key, f"{key}.tsf"))
            series = [np.asarray(v, dtype=np.float64) for v in df["series_value"]]
            names = [str(n) for n in df["series_name"]]
            freq, horizon = meta.get("frequency"), meta.get("forecast_horizon")
        else:
            values, freq = _read_csv(key)
            series, names, horizon = [values], [f"aeon:{key}"], None
    for i, v in enumerate(series):
        if np.isnan(v).any():
            if fillna is None:
                raise ValueError(f"aeon:{key} series {names[i]} has {int(np.isnan(v).sum())} "
                                 f"missing value(s); pass fillna (--fillna) to fill them")
            series[i] = fill_missing(v, fillna)
    return Panel(f"aeon:{key}", series, freq, period_of(freq),
                 int(horizon) if horizon else None, names)
