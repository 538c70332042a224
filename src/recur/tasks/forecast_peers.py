"""Classical forecasting peers, run on the same origins and horizons as the model.

An *origin* ``o`` means: the values ``y[:o]`` are known, forecast ``y[o:o + H]``. Every peer
returns ``[len(origins), H]`` forecasts in the series' units, plus a JSON-able note of what it
chose::

    fc, note = PEERS["ets"](y, n_train, origins, horizon, period)

- ``naive``: the last known value.
- ``snaive``: the value one period before (``period`` 1: the same as naive).
- ``ar``: statsmodels ``AutoReg`` with a constant, order chosen by AIC on ``y[:n_train]``
  (``ar_select_order``, up to ``max(12, period + 1)`` lags, at most a quarter of the part);
  fitted there, then run forward over the known values from each origin (iterated for H > 1).
- ``ets``: statsmodels ``ETSModel``, additive errors, trend none / additive / damped and
  seasonality none / additive / multiplicative (multiplicative only for positive series,
  seasonal only with two full periods; periods above 12 start from statsmodels' heuristic
  seasonal state), chosen by AIC on ``y[:n_train]``; from each origin the
  fitted parameters are run over ``y[:o]`` (``smooth``) and forecast.
- ``theta``: statsmodels ``ThetaModel`` (deseasonalised when the period is above 1 and the part
  holds two periods). statsmodels cannot run a fitted Theta forward on new values, so it is
  refitted from each origin on everything known there (``y[:o]``): never the future, but more
  data than the other peers get, which can only favour it.

:func:`mase_scale` is the MASE denominator: the mean absolute seasonal difference of the
training part (lag ``period``; lag 1 when the part is too short for it or has no seasonal
change).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["PEERS", "ar_peer", "ets_peer", "mase_scale", "naive_peer", "quiet_statsmodels",
           "snaive_peer", "theta_peer"]


@contextlib.contextmanager
def quiet_statsmodels() -> Iterator[None]:
    """Silence the warnings statsmodels raises while fitting on short or awkward series
    (convergence, frequency, overflow inside multiplicative models, deprecations)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, EstimationWarning, ValueWarning

    with warnings.catch_warnings():
        for category in (ConvergenceWarning, ValueWarning, EstimationWarning, RuntimeWarning,
                         FutureWarning, DeprecationWarning):
            warnings.simplefilter("ignore", category=category)
        yield


def mase_scale(train: np.ndarray, period: int = 1) -> float:
    """Mean ``|y[t] - y[t - period]|`` over ``train: [N]`` (lag 1 when the part is shorter than
    ``period + 1`` or that mean is 0; 1.0 for a constant part)."""
    train = np.asarray(train, dtype=np.float64)
    for lag in (period, 1):
        if len(train) > lag:
            d = float(np.mean(np.abs(train[lag:] - train[:-lag])))
            if d > 1e-12:
                return d
    return 1.0


def _check(y: np.ndarray, origins: np.ndarray, horizon: int) -> None:
    if len(origins) and (origins.min() < 1 or origins.max() > len(y)):
        raise ValueError(f"origins must be in [1, {len(y)}], got {origins.min()}..{origins.max()}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")


def naive_peer(y, n_train, origins, horizon, period=1) -> tuple[np.ndarray, dict]:
    """Each origin's last known value, repeated: ``[O, H]``."""
    _check(y, origins, horizon)
    return np.repeat(np.asarray(y, np.float64)[origins - 1, None], horizon, axis=1), {}


def snaive_peer(y, n_train, origins, horizon, period=1) -> tuple[np.ndarray, dict]:
    """``y[o + h - period * k]`` with the smallest ``k`` that makes it known: ``[O, H]``."""
    _check(y, origins, horizon)
    m = max(int(period), 1)
    h = np.arange(horizon)
    idx = origins[:, None] - m + (h % m)[None, :]                       # (O, H)
    if idx.min() < 0:                                                     # too early: naive
        return naive_peer(y, n_train, origins, horizon)[0], {"period": 1}
    return np.asarray(y, np.float64)[idx], {"period": m}


def ar_peer(y, n_train, origins, horizon, period=1) -> tuple[np.ndarray, dict]:
    """AR with a constant, order by AIC on ``y[:n_train]``, iterated ``horizon`` steps."""
    _check(y, origins, horizon)
    y = np.asarray(y, np.float64)
    maxlag = min(max(12, int(period) + 1), max(n_train // 4, 1))
    with quiet_statsmodels():
        from statsmodels.tsa.ar_model import AutoReg, ar_select_order

        sel = ar_select_order(y[:n_train], maxlag=maxlag, ic="aic", trend="c")
        lags = sel.ar_lags or []
        res = AutoReg(y[:n_train], lags=lags, trend="c").fit() if lags else None
    if res is None:                                         # AIC prefers the mean alone
        mean = float(np.mean(y[:n_train]))
        return np.full((len(origins), horizon), mean), {"lags": []}
    params = np.asarray(res.params)
    const, phi = params[0], params[1:]
    lags = np.asarray(lags)
    if origins.min() < lags.max():
        raise ValueError(f"AR({lags.max()}) needs {lags.max()} known values before the first "
                         f"origin, got {origins.min()}")
    hist = np.stack([y[o - lags.max():o] for o in origins])          # (O, P)
    out = np.empty((len(origins), horizon))
    for h in range(horizon):
        nxt = const + hist[:, -lags] @ phi                             # (O,)
        out[:, h] = nxt
        hist = np.concatenate([hist[:, 1:], nxt[:, None]], axis=1)
    return out, {"lags": [int(v) for v in lags]}


def _ets_candidates(train: np.ndarray, period: int) -> list[dict[str, Any]]:
    trends = [{"trend": None}, {"trend": "add"}, {"trend": "add", "damped_trend": True}]
    seasons: list[dict[str, Any]] = [{"seasonal": None}]
    if period > 1 and len(train) >= 2 * period + 2:
        # long periods (weekly: 52) start from the heuristic seasonal state rather than
        # estimating one initial value per season (minutes instead of seconds)
        init = {"initialization_method": "heuristic"} if period > 12 else {}
        seasons.append(dict(seasonal="add", seasonal_periods=period, **init))
        if train.min() > 0:
            seasons.append(dict(seasonal="mul", seasonal_periods=period, **init))
    return [{**t, **s} for t in trends for s in seasons]


def ets_peer(y, n_train, origins, horizon, period=1) -> tuple[np.ndarray, dict]:
    """ETS chosen by AIC on ``y[:n_train]``; its parameters run from each origin."""
    _check(y, origins, horizon)
    y = np.asarray(y, np.float64)
    train = y[:n_train]
    with quiet_statsmodels():
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        best = None
        for spec in _ets_candidates(train, int(period)):
            try:
                res = ETSModel(train, error="add", **spec).fit(disp=False)
            except (ValueError, np.linalg.LinAlgError):
                continue
            if np.isfinite(res.aic) and (best is None or res.aic < best[1].aic):
                best = (spec, res)
        if best is None:                                    # nothing fitted: naive
            return naive_peer(y, n_train, origins, horizon)[0], {"spec": "naive"}
        spec, res = best
        full = ETSModel(y, error="add", **spec).smooth(res.params)     # one pass over y
        out = ets_from_states(np.asarray(full.states), spec, res.params, res.param_names,
                              origins, horizon)
    note = {"trend": spec.get("trend"), "damped": bool(spec.get("damped_trend", False)),
            "seasonal": spec.get("seasonal"), "aic": float(res.aic)}
    return out, note


def ets_from_states(states: np.ndarray, spec: dict[str, Any], params: np.ndarray,
                    names: list[str], origins: np.ndarray, horizon: int) -> np.ndarray:
    """Point forecasts of an additive-error ETS from its states (``states[t]``: level, slope,
    season after observing ``y[t]``), the forecast function statsmodels' ``forecast`` uses at
    the end of a series, at every origin at once: ``[O, H]``."""
    h = np.arange(1, horizon + 1)
    last = states[origins - 1]                                           # (O, k)
    level = last[:, :1]                                                  # (O, 1)
    col = 1
    if spec.get("trend"):
        phi = float(params[list(names).index("damping_trend")]) \
            if spec.get("damped_trend") else 1.0
        steps = np.cumsum(phi ** h)                                      # (H,)
        level = level + last[:, 1:2] * steps[None, :]
        col = 2
    if not spec.get("seasonal"):
        return np.broadcast_to(level, (len(origins), horizon)).copy()
    m = int(spec["seasonal_periods"])
    rows = origins[:, None] - 1 + h[None, :] - m * np.ceil(h / m).astype(int)[None, :]
    season = states[np.maximum(rows, 0), col]                            # (O, H)
    return level + season if spec["seasonal"] == "add" else level * season


def theta_peer(y, n_train, origins, horizon, period=1) -> tuple[np.ndarray, dict]:
    """statsmodels ``ThetaModel`` refitted on ``y[:o]`` at each origin."""
    _check(y, origins, horizon)
    y = np.asarray(y, np.float64)
    m = max(int(period), 1)
    out = np.empty((len(origins), horizon))
    with quiet_statsmodels():
        from statsmodels.tsa.forecasting.theta import ThetaModel

        for i, o in enumerate(origins):
            seasonal = m > 1 and o >= 2 * m
            try:
                res = ThetaModel(y[:o], period=m, deseasonalize=seasonal).fit()
                out[i] = np.asarray(res.forecast(horizon))
            except (ValueError, np.linalg.LinAlgError):
                out[i] = y[o - 1]
    return out, {"deseasonalize": bool(m > 1 and origins.min() >= 2 * m)}


#: name → peer function ``(y, n_train, origins, horizon, period) -> (forecasts, note)``
PEERS: dict[str, Callable[..., tuple[np.ndarray, dict]]] = {
    "naive": naive_peer, "snaive": snaive_peer, "ar": ar_peer, "ets": ets_peer,
    "theta": theta_peer}
