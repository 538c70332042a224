"""``forecast``: one-step-ahead forecasting of a univariate series, against naive and AR peers.

    recur train forecast                                   # statsmodels:sunspots (yearly)
    recur train forecast --data prices.csv --column close  # a user's series
    recur train forecast --data prices.csv --column close --fillna interpolate

Split: the first 80% of the series (``--test-fraction 0.2``) is the only data the model, the
scaler and the AR peer ever fit on; every value of the last 20% is then forecast one step
ahead from the true values before it (as a forecaster that sees each new observation would).

Encoding: values are standardised with the train part's mean and std; an item is a window of
the ``--window`` previous values ``[W, 1]`` and the target is the next value. The recurrent
layer reads the window and a linear head maps its final state to the forecast; with
``--residual`` (default) the head predicts the change from the last value of the window, which
makes "no change" the starting point. Loss: mean squared error on the standardised scale.

``metrics.json`` has ``test_rmse`` (the model), and, computed in the same run on the same
split, ``naive_rmse`` (the previous value) and ``ar_rmse`` (statsmodels ``AutoReg`` with a
constant and ``--ar-lags`` lags, default 9, fitted on the first 80% only), in the series' units.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..data import FILLNA_METHODS, SeriesNorm, load_series, make_windows, train_size
from ..train import new_figure, save_figure
from .base import Config, Option, Task, TaskData, model_device, register
from .models import make_recurrent

__all__ = ["Forecast", "WindowRegressor", "Windows", "ar_forecast", "naive_forecast", "rmse"]

log = logging.getLogger(__name__)


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error of two ``[N]`` arrays."""
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(truth)) ** 2)))


def naive_forecast(y: np.ndarray, n_train: int) -> np.ndarray:
    """Forecasts of ``y[n_train:]``, each the value before it: ``[N - n_train]``."""
    return np.asarray(y[n_train - 1:-1], dtype=np.float64)


def ar_forecast(y: np.ndarray, n_train: int, lags: int) -> np.ndarray:
    """One-step forecasts of ``y[n_train:]`` from an AR(``lags``) with a constant, fitted on
    ``y[:n_train]`` only (statsmodels ``AutoReg``): ``[N - n_train]``."""
    if not 1 <= lags < n_train // 2:
        raise ValueError(f"--ar-lags must be in [1, {n_train // 2 - 1}] for {n_train} "
                         f"training values, got {lags}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        from statsmodels.tsa.ar_model import AutoReg

        params = np.asarray(AutoReg(np.asarray(y[:n_train], dtype=np.float64), lags=lags,
                                    trend="c").fit().params)
    const, phi = params[0], params[1:]                      # phi[k]: weight of y[t-1-k]
    t = np.arange(n_train, len(y))
    past = np.stack([y[t - 1 - k] for k in range(lags)], axis=1)  # (N_test, lags)
    return const + past @ phi


class Windows(Dataset):
    """Items ``(x [W, 1], y [])`` of standardised windows and next values.

    Attributes:
        x: ``[M, W, 1]`` float32; y: ``[M]`` float32 (standardised targets).
        index: ``[M]`` position of each target in the series.
        values: ``[N]`` float64, the whole series in its own units (for metrics and plots).
    """

    def __init__(self, x: Tensor, y: Tensor, index: np.ndarray, values: np.ndarray) -> None:
        self.x, self.y, self.index, self.values = x, y, index, values

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]

    @property
    def truth(self) -> np.ndarray:
        """``[M]`` the targets in the series' units."""
        return self.values[self.index]


class WindowRegressor(nn.Module):
    """Window of past values → next value.

    ``forward(x: [B, W, 1]) -> [B]``; with ``residual`` the output is ``x[:, -1, 0]`` plus the
    head's output.
    """

    def __init__(self, cfg: Config, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.rnn = make_recurrent(cfg.cell, 1, cfg.hidden, layers=cfg.layers,
                                  bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                                  backend=cfg.backend)
        self.directions = 2 if cfg.bidirectional else 1
        self.head = nn.Linear(self.directions * cfg.hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state      # (L*D, B, H)
        z = self.head(torch.cat(list(h_n[-self.directions:]), -1))[:, 0]  # (B,)
        return z + x[:, -1, 0] if self.residual else z


@register
class Forecast(Task):
    """One-step-ahead forecasting of a univariate series (statsmodels or a CSV column)."""

    name = "forecast"
    summary = "one-step-ahead forecast of a series (statsmodels:sunspots or CSV) vs naive/AR"
    options = (
        Option("data", str, "statsmodels:sunspots",
               "statsmodels:NAME (sunspots, nile, co2) or a .csv/.tsv file"),
        Option("column", str, None, "the value column of a CSV/TSV file"),
        Option("fillna", str, None, "fill missing values instead of failing", FILLNA_METHODS),
        Option("window", int, 20, "past values the model reads per forecast"),
        Option("test_fraction", float, 0.2, "the last part of the series, forecast at the end"),
        Option("ar_lags", int, 9, "lags of the AutoReg peer"),
        Option("residual", bool, True, "predict the change from the last value"),
    )
    defaults = {"cell": "gru", "hidden": 32, "epochs": 60, "batch_size": 16, "lr": 3e-3,
                "optimizer": "adam"}

    def build_data(self) -> TaskData:
        c = self.cfg
        series = load_series(c.data, column=c.column, fillna=c.fillna)
        y = series.values
        n_train = train_size(len(y), c.test_fraction)
        if n_train <= c.window + 1:
            raise ValueError(f"{series.name}: {n_train} training values leave no windows of "
                             f"--window {c.window}; use a shorter window")
        norm = SeriesNorm.fit(y[:n_train])                  # train part only
        z = norm.transform(y)
        x_tr, y_tr = make_windows(z, c.window, 0, n_train)     # (M, W, 1), (M,)
        x_te, y_te = make_windows(z, c.window, n_train, len(z))
        train = Windows(x_tr, y_tr, np.arange(c.window, n_train), y)
        test = Windows(x_te, y_te, np.arange(n_train, len(y)), y)
        info = {"series": series.name, "values": len(y), "n_train": n_train,
                "window": c.window, "mean": norm.mean, "std": norm.std,
                "last_window": y[-c.window:].tolist()}
        return TaskData(train=train, val=test, test=test, info=info)

    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        return WindowRegressor(self.cfg, self.cfg.residual)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = batch                                       # (B, W, 1), (B,)
        return F.mse_loss(model(x), y)

    def _forecast(self, model: nn.Module, windows: Windows,
                  info: Mapping[str, Any]) -> tuple[np.ndarray, float]:
        """``(forecasts [M] in the series' units, standardised MSE)`` for every window."""
        with torch.no_grad():
            z = model(windows.x.to(model_device(model))).cpu()
        mse = F.mse_loss(z, windows.y).item()
        return SeriesNorm(info["mean"], info["std"]).inverse(z.double().numpy()), mse

    def evaluate(self, model: nn.Module, data: TaskData) -> dict[str, float]:
        pred, mse = self._forecast(model, data.val, data.info)
        return {"loss": mse, "rmse": rmse(pred, data.val.truth)}

    def final_metrics(self, model: nn.Module, data: TaskData) -> dict[str, Any]:
        info, c, test = data.info, self.cfg, data.test
        y, n_train = test.values, info["n_train"]
        pred, mse = self._forecast(model, test, info)
        train_pred, _ = self._forecast(model, data.train, info)
        return {"test_rmse": rmse(pred, test.truth),
                "naive_rmse": rmse(naive_forecast(y, n_train), test.truth),
                "ar_rmse": rmse(ar_forecast(y, n_train, c.ar_lags), test.truth),
                "ar_lags": c.ar_lags, "loss": mse,
                "train_rmse": rmse(train_pred, data.train.truth),
                "series": info["series"], "n_train": n_train, "n_test": len(test)}

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """``forecast.png``: the series, and on the test part the truth, the model's and the
        AR peer's one-step forecasts."""
        info, c = data.info, self.cfg
        y, n_train = data.test.values, info["n_train"]
        t = np.arange(len(y))
        pred, _ = self._forecast(model, data.test, info)
        ar = ar_forecast(y, n_train, c.ar_lags)
        fig, axes = new_figure(2, 1, size=(9.0, 6.0))
        top, bottom = axes
        top.plot(t, y, color="0.5", lw=1, label="series")
        top.axvspan(n_train - 0.5, len(y) - 0.5, color="tab:orange", alpha=0.1,
                    label="test part")
        top.plot(t[n_train:], pred, color="tab:blue", lw=1.2, label="recur forecast")
        top.set_title(f"{info['series']}: fit on the first {n_train}, forecast the last "
                      f"{len(y) - n_train} one step ahead")
        top.legend(fontsize=8)
        bottom.plot(t[n_train:], y[n_train:], "k.-", lw=1, label="truth")
        bottom.plot(t[n_train:], pred, color="tab:blue",
                    label=f"recur ({rmse(pred, y[n_train:]):.2f} RMSE)")
        bottom.plot(t[n_train:], ar, color="tab:green", ls="--",
                    label=f"AR({c.ar_lags}) ({rmse(ar, y[n_train:]):.2f} RMSE)")
        bottom.set_xlabel("step")
        bottom.legend(fontsize=8)
        for ax in axes:
            ax.grid(True, alpha=0.3)
        return [save_figure(fig, Path(out_dir) / "forecast.png")]

    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> dict[str, Any]:
        """The forecast of the value after the end of the series."""
        norm = SeriesNorm(info["mean"], info["std"])
        z = torch.tensor(norm.transform(np.asarray(info["last_window"])), dtype=torch.float32)
        with torch.no_grad():
            out = model(z.view(1, -1, 1).to(model_device(model))).item()
        return {"series": info["series"], "next_value": float(norm.inverse(out))}
