"""``forecast``: multi-step forecasts of one series or many, against classical peers.

    recur train forecast                                     # statsmodels:sunspots, one step
    recur train forecast --data statsmodels:elnino --horizon 12
    recur train forecast --data aeon:m1_yearly_dataset       # 181 series, horizon 6 (M1's)
    recur train forecast --data prices.csv --column close --period 7 --fillna interpolate
    recur predict RUN                                        # the H values after the end

Split. One series: the first 80% (``--test-fraction``) is the training part; from every origin
``o`` of the rest (``y[:o]`` known) the next ``H`` values are forecast (``H = 1`` by default:
every test value one step ahead). Several series (``aeon:m1_yearly_dataset``): the last ``H``
values of each series are its test part, one origin per series (the M competitions' way);
``H`` defaults to the dataset's own horizon. Nothing of a test part is used to fit or choose.

Model (ES-RNN's recipe, smaller). Each window of the ``--window`` values before an origin is
expressed relative to its last value and divided by the series' mean absolute one-step change
on its training part (per-series scaling, so one model serves series of any size); windows
shorter than ``--window`` (early origins, short series) are padded and read with ``lengths=``.
A recur GRU reads the window; a linear head gives the ``H`` future changes from the last
value (so "no change" is the starting point). ``--members`` such networks, different
initialisations, are trained together (L1 loss, which is MASE on this scale) and their mean is
the network's forecast. Trained on every window of every series' training part.

Defaults from the data (written to config.json and metrics.json, printed in the summary):
``period`` (from the data's frequency, 1 for a CSV without ``--period``), ``horizon``,
``window`` (``max(24, 2 period, 2 H)``, at most half the longest training part), ``epochs``
(about 800 optimiser steps), and ``combine``: the final forecast is the network alone, or
its mean with the best classical peer (``rnn+ets``...), or with the mean of AR, ETS and Theta
(``rnn+peers``), whichever has
the lowest MASE on a validation part, the last 20% of the training part (for panels, the last H
training values of each series that has at least H + 2 values before them), with the network
and the peers refitted on what precedes it.

Peers, same origins and horizons (:mod:`recur.tasks.forecast_peers`): naive, seasonal naive,
AR (order by AIC), ETS (by AIC), Theta. ``metrics.json``: ``test_mase`` and ``test_rmse`` (per
horizon in ``mase_by_h`` / ``rmse_by_h``), each peer's ``<peer>_mase`` / ``<peer>_rmse``,
``best_peer`` (lowest MASE), ``rnn_mase`` (the network alone). MASE: absolute errors divided
by the mean absolute seasonal difference of the series' training part, averaged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..data.series import FILLNA_METHODS, Panel, load_panel, train_size
from ..train import new_figure, save_figure
from .base import Config, Option, Task, TaskData, model_device, register
from .forecast_peers import PEERS, mase_scale
from .models import make_recurrent

__all__ = ["Forecast", "ForecastNet", "Windows", "make_origin_windows", "rmse"]

log = logging.getLogger(__name__)

COMBINE = ("auto", "rnn", "rnn+ar", "rnn+ets", "rnn+theta", "rnn+peers")
STEPS = 800                                  # optimiser steps the automatic epochs aim at


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error of two arrays of the same shape."""
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(truth)) ** 2)))


class Windows(Dataset):
    """Items ``(x [W, 1], length [], target [H])``: past values relative to the last one over
    the series' scale, how many are real (the rest is padding), the next H changes.

    Attributes: ``x [M, W, 1]``, ``lengths [M]``, ``y [M, H]`` (NaN where no target exists:
    forecasts past the end), ``series [M]`` and ``origins [M]`` (which series, which origin).
    """

    def __init__(self, x: Tensor, lengths: Tensor, y: Tensor, series: np.ndarray,
                 origins: np.ndarray) -> None:
        self.x, self.lengths, self.y, self.series, self.origins = x, lengths, y, series, origins

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.x[i], self.lengths[i], self.y[i]


def make_origin_windows(ys: list[np.ndarray], norms: list[float], origins: list[np.ndarray],
                        window: int, horizon: int) -> Windows:
    """Windows of ``ys[i][:o]`` (the last ``window`` values) for each ``o`` in ``origins[i]``,
    relative to ``ys[i][o - 1]`` and divided by ``norms[i]``; targets ``ys[i][o:o + H]`` the
    same way (NaN past the end)."""
    rows = [(i, int(o)) for i, os_ in enumerate(origins) for o in os_]
    x = np.zeros((len(rows), window, 1), np.float32)
    y = np.full((len(rows), horizon), np.nan, np.float32)
    lengths = np.zeros(len(rows), np.int64)
    for m, (i, o) in enumerate(rows):
        v, last = ys[i], ys[i][o - 1]
        past = v[max(0, o - window):o]
        x[m, :len(past), 0] = (past - last) / norms[i]
        lengths[m] = len(past)
        future = v[o:o + horizon]
        y[m, :len(future)] = (future - last) / norms[i]
    series = np.array([r[0] for r in rows], np.int64)
    return Windows(torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(y), series,
                   np.array([r[1] for r in rows], np.int64))


class ForecastNet(nn.Module):
    """``members`` recurrent networks side by side: ``forward(x [B, W, 1], lengths [B])``
    returns ``[K, B, H]``, each member's forecast of the next H changes (scaled)."""

    def __init__(self, cell: str, hidden: int, layers: int, horizon: int, members: int,
                 backend: str = "auto", zoneout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        self.rnns = nn.ModuleList(
            make_recurrent(cell, 1, hidden, layers=layers, backend=backend, zoneout=zoneout,
                           recurrent_dropout=recurrent_dropout) for _ in range(members))
        self.heads = nn.ModuleList(nn.Linear(hidden, horizon) for _ in range(members))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        outs = []
        for rnn, head in zip(self.rnns, self.heads):
            _, state = rnn(x, lengths=lengths)
            h_n = state[0] if isinstance(state, tuple) else state         # (L, B, Hd)
            outs.append(head(h_n[-1]))                                    # (B, H)
        return torch.stack(outs)                                          # (K, B, H)


def _loss(model: nn.Module, batch: Any) -> Tensor:
    x, lengths, y = batch                                     # (B, W, 1), (B,), (B, H)
    out = model(x, lengths.cpu())                             # (K, B, H)
    return F.l1_loss(out, y.unsqueeze(0).expand_as(out))


def _fit(model: nn.Module, data: Windows, cfg: Config, epochs: int) -> None:
    """Adam with the run's settings over ``data`` (the validation model's training, the same
    recipe the trainer applies to the final model)."""
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = epochs * math.ceil(len(data) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)) if cfg.schedule == "cosine"
        else 1.0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=gen).split(cfg.batch_size):
            loss = _loss(model, (data.x[idx], data.lengths[idx], data.y[idx]))
            opt.zero_grad()
            loss.backward()
            if cfg.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            sched.step()
    model.eval()


def _net_forecast(model: nn.Module, w: Windows, ys: list[np.ndarray],
                  norms: list[float]) -> np.ndarray:
    """The members' mean, back in the series' units: ``[M, H]``."""
    with torch.no_grad():
        z = model(w.x.to(model_device(model)), w.lengths).mean(0).cpu().double().numpy()
    last = np.array([ys[i][o - 1] for i, o in zip(w.series, w.origins)])
    scale = np.array([norms[i] for i in w.series])
    return last[:, None] + z * scale[:, None]


def _peer_forecasts(ys, n_trains, origins, horizon, period, names=("ar", "ets", "theta",
                    "naive", "snaive")) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Every peer's ``[M, H]`` forecasts over all series (rows in ``origins`` order)."""
    out, notes = {}, {}
    for name in names:
        parts = [PEERS[name](y, n, o, horizon, period) for y, n, o in zip(ys, n_trains, origins)
                 if len(o)]
        out[name] = np.concatenate([p[0] for p in parts])
        notes[name] = [p[1] for p in parts]
    return out, notes


def _combine(how: str, net: np.ndarray, peers: Mapping[str, np.ndarray]) -> np.ndarray:
    """The final forecast: ``"rnn"``, ``"rnn+PEER"`` (the mean of the two) or ``"rnn+peers"``
    (the mean of the network and of the mean of AR, ETS and Theta)."""
    if how == "rnn":
        return net
    if how == "rnn+peers":
        return (net + (peers["ar"] + peers["ets"] + peers["theta"]) / 3) / 2
    return (net + peers[how.split("+", 1)[1]]) / 2


def _mase(pred: np.ndarray, truth: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Per-horizon MASE ``[H]`` of ``[M, H]`` forecasts (``scales [M]``)."""
    return np.nanmean(np.abs(pred - truth) / scales[:, None], axis=0)


@register
class Forecast(Task):
    """Multi-step forecasting of one series or a panel, against classical peers."""

    name = "forecast"
    summary = ("forecast H steps of a series or a panel (statsmodels, aeon, CSV) vs naive, "
               "seasonal naive, AR, ETS, Theta")
    options = (
        Option("data", str, "statsmodels:sunspots",
               "statsmodels:NAME (sunspots, nile, co2, elnino), aeon:NAME (Lynx, PBS_dataset, "
               "m1_yearly_dataset, ...) or a .csv/.tsv file"),
        Option("column", str, None, "the value column of a CSV/TSV file"),
        Option("fillna", str, None, "fill missing values instead of failing", FILLNA_METHODS),
        Option("horizon", int, None, "values forecast from each origin (default: the "
               "dataset's own horizon, else 1)"),
        Option("period", int, None, "seasonal period (default: from the data's frequency; 1 "
               "when it has none)"),
        Option("window", int, None, "past values the network reads (default from the data)"),
        Option("test_fraction", float, 0.2, "one series: the last part, forecast at the end"),
        Option("members", int, 5, "networks averaged (different initialisations)"),
        Option("combine", str, "auto", "network alone, or averaged with the best peer or with "
               "the peers' mean (auto: the best on a validation part of the training data)",
               COMBINE),
    )
    predict_options = (
        Option("series", str, None, "a panel's series to forecast (name or index; default all)"),
    )
    defaults = {"cell": "gru", "hidden": 32, "epochs": 0, "batch_size": 32, "lr": 3e-3,
                "optimizer": "adam", "clip": 1.0, "schedule": "cosine", "threads": 1}
    distributed = False

    # ---- data ---------------------------------------------------------------------------
    def _split(self, panel: Panel, horizon: int) -> tuple[list[int], list[np.ndarray]]:
        """Per series: training part length and test origins."""
        c, ys = self.cfg, panel.series
        if len(ys) == 1:
            n = train_size(len(ys[0]), c.test_fraction)
            if len(ys[0]) - n < horizon:
                raise ValueError(f"{panel.name}: a test part of {len(ys[0]) - n} values is "
                                 f"shorter than --horizon {horizon}; raise --test-fraction")
            return [n], [np.arange(n, len(ys[0]) - horizon + 1)]
        short = [i for i, y in enumerate(ys) if len(y) < horizon + 3]
        if short:
            raise ValueError(f"{panel.name}: series {panel.names[short[0]]} has "
                             f"{len(ys[short[0]])} values; need at least --horizon + 3 = "
                             f"{horizon + 3}")
        return [len(y) - horizon for y in ys], [np.array([len(y) - horizon]) for y in ys]

    def _choose(self, panel: Panel, n_trains: list[int]) -> None:
        """The defaults that depend on the data, set on ``self.cfg`` (saved in config.json)."""
        c = self.cfg
        if c.horizon is None:
            c.horizon = panel.horizon or 1
        if c.period is None:
            c.period = panel.period
        if c.horizon < 1 or c.period < 1:
            raise ValueError(f"--horizon and --period must be at least 1, got {c.horizon} and "
                             f"{c.period}")
        if c.window is None:
            c.window = int(min(max(24, 2 * c.period, 2 * c.horizon),
                               max(2, max(n_trains) // 2)))

    def build_data(self) -> TaskData:
        c = self.cfg
        panel = load_panel(c.data, column=c.column, fillna=c.fillna)
        horizon = c.horizon or panel.horizon or 1
        n_trains, test_origins = self._split(panel, horizon)
        self._choose(panel, n_trains)
        ys = panel.series
        norms = [mase_scale(y[:n], 1) for y, n in zip(ys, n_trains)]
        scales = [mase_scale(y[:n], c.period) for y, n in zip(ys, n_trains)]
        train_origins = [np.arange(1, n - c.horizon + 1) for n in n_trains]
        train = make_origin_windows(ys, norms, train_origins, c.window, c.horizon)
        if len(train) == 0:
            raise ValueError(f"{panel.name}: no training windows for --horizon {c.horizon}")
        if not c.epochs:
            c.epochs = int(min(200, max(3, round(STEPS / math.ceil(len(train) / c.batch_size)))))
        if c.combine == "auto":
            c.combine = self._validate(ys, n_trains, norms)
        test = make_origin_windows(ys, norms, test_origins, c.window, c.horizon)
        ends = [np.array([len(y)]) for y in ys]
        future = make_origin_windows(ys, norms, ends, c.window, c.horizon)
        peers_end, _ = _peer_forecasts(ys, n_trains, ends, c.horizon, c.period)
        info = {"series": panel.name, "names": panel.names, "n_series": len(ys),
                "values": [len(y) for y in ys], "n_train": n_trains, "freq": panel.freq,
                "period": c.period, "horizon": c.horizon, "window": c.window,
                "combine": c.combine, "epochs": c.epochs, "norms": norms, "scales": scales,
                "last_values": [float(y[-1]) for y in ys],
                "future_x": future.x[..., 0].tolist(), "future_lengths": future.lengths.tolist(),
                "peers_future": {k: v.tolist() for k, v in peers_end.items()}}
        data = TaskData(train=train, val=None, test=test, info=info)
        data.ys, data.test_origins = ys, test_origins                  # for the metrics
        return data

    def _validate(self, ys, n_trains, norms) -> str:
        """``combine`` with the lowest MASE on the validation part (the end of each training
        part), the network and the peers fitted on what precedes it."""
        c = self.cfg
        if len(ys) == 1:
            v = max(c.horizon, round(0.2 * n_trains[0]))
            cut = [n_trains[0] - v]
            origins = [np.arange(cut[0], n_trains[0] - c.horizon + 1)]
        else:
            # a panel validates on the series long enough to fit before their last H training
            # values; the shorter ones still give the network their windows before the cut
            cut = [n - c.horizon for n in n_trains]
            origins = [np.array([k]) if k >= 2 + c.horizon else np.array([], dtype=int)
                       for k in cut]
        if not any(len(o) for o in origins) or (len(ys) == 1 and cut[0] < 2 + c.horizon):
            return "rnn+peers"
        fit = make_origin_windows(ys, norms, [np.arange(1, k - c.horizon + 1) for k in cut],
                                  c.window, c.horizon)
        val = make_origin_windows(ys, norms, origins, c.window, c.horizon)
        torch.manual_seed(c.seed + 1)
        model = self.build_model({"horizon": c.horizon})
        _fit(model, fit, c, c.epochs)
        net = _net_forecast(model, val, ys, norms)
        peers, _ = _peer_forecasts(ys, cut, origins, c.horizon, c.period,
                                   names=("ar", "ets", "theta"))
        truth = np.stack([ys[i][o:o + c.horizon] for i, o in zip(val.series, val.origins)])
        scales = np.array([mase_scale(ys[i][:cut[i]], c.period) for i in val.series])
        best = min(peers, key=lambda k: _mase(peers[k], truth, scales).mean())
        scores = {how: float(_mase(_combine(how, net, peers), truth, scales).mean())
                  for how in ("rnn", f"rnn+{best}", "rnn+peers")}
        self.validation = {"val_" + k: v for k, v in scores.items()}
        log.info("validation MASE %s", scores)
        return min(scores, key=scores.get)

    # ---- model --------------------------------------------------------------------------
    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        c = self.cfg
        return ForecastNet(c.cell, c.hidden, c.layers, info["horizon"], c.members, c.backend,
                           c.zoneout, c.recurrent_dropout)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        return _loss(model, batch)

    # ---- measuring ----------------------------------------------------------------------
    def final_metrics(self, model: nn.Module, data: TaskData) -> dict[str, Any]:
        c, info, test = self.cfg, data.info, data.test
        ys, norms = data.ys, info["norms"]
        net = _net_forecast(model, test, ys, norms)
        peers, notes = _peer_forecasts(ys, info["n_train"], data.test_origins, c.horizon,
                                       c.period)
        pred = _combine(c.combine, net, peers)
        truth = np.stack([ys[i][o:o + c.horizon] for i, o in zip(test.series, test.origins)])
        scales = np.array([info["scales"][i] for i in test.series])
        out: dict[str, Any] = {}

        def score(key: str, p: np.ndarray) -> None:
            out[f"{key}_mase"] = float(_mase(p, truth, scales).mean())
            out[f"{key}_rmse"] = rmse(p, truth)

        score("test", pred)
        out["mase_by_h"] = [float(v) for v in _mase(pred, truth, scales)]
        out["rmse_by_h"] = [rmse(pred[:, h], truth[:, h]) for h in range(c.horizon)]
        score("rnn", net)
        for name in ("naive", "snaive", "ar", "ets", "theta"):
            score(name, peers[name])
        out["best_peer"] = min(("naive", "snaive", "ar", "ets", "theta"),
                               key=lambda k: out[f"{k}_mase"])
        if len(ys) == 1:
            out["ar_lags"] = len(notes["ar"][0].get("lags", []))
            ets = notes["ets"][0]
            out["ets"] = "".join(["A", "N" if not ets.get("trend") else
                                  ("Ad" if ets.get("damped") else "A"),
                                  {"add": "A", "mul": "M"}.get(ets.get("seasonal"), "N")]) \
                if "trend" in ets else ets.get("spec", "?")
        out.update({"period": c.period, "horizon": c.horizon, "window": c.window,
                    "combine": c.combine, "series": info["series"],
                    "n_series": len(ys), "n_test": int(truth.size),
                    **getattr(self, "validation", {})})
        return out

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """``forecast.png``: the first series, its test part, the forecasts one step ahead
        (h = 1) of the model and of the best peer."""
        c, info, test = self.cfg, data.info, data.test
        y, n = data.ys[0], info["n_train"][0]
        rows = test.series == 0
        net = _net_forecast(model, test, data.ys, info["norms"])[rows]
        fig, ax = new_figure(1, 1, size=(9.0, 4.0))
        ax = ax[0] if isinstance(ax, (list, tuple, np.ndarray)) else ax
        t = np.arange(len(y))
        ax.plot(t, y, color="0.5", lw=1, label="series")
        ax.axvspan(n - 0.5, len(y) - 0.5, color="tab:orange", alpha=0.1, label="test part")
        ax.plot(test.origins[rows], net[:, 0], "b.-", lw=1, ms=3, label="recur network, h=1")
        ax.set_title(f"{info['series']} ({info['names'][0]}): fit on the first {n}, "
                     f"horizon {c.horizon}, combine {c.combine}")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        return [save_figure(fig, Path(out_dir) / "forecast.png")]

    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> list[dict[str, Any]]:
        """The ``horizon`` values after the end of each series (or of ``--series``)."""
        names = info["names"]
        rows = list(range(len(names)))
        if args.series is not None:
            if args.series in names:
                rows = [names.index(args.series)]
            elif args.series.isdigit() and int(args.series) < len(names):
                rows = [int(args.series)]
            else:
                raise ValueError(f"--series must be one of the {len(names)} series' names or an "
                                 f"index below {len(names)}, got {args.series!r}")
        x = torch.tensor(info["future_x"], dtype=torch.float32)[rows, :, None]
        lengths = torch.tensor(info["future_lengths"])[rows]
        with torch.no_grad():
            z = model(x.to(model_device(model)), lengths).mean(0).cpu().double().numpy()
        last = np.array(info["last_values"])[rows]
        net = last[:, None] + z * np.array(info["norms"])[rows][:, None]
        peers = {k: np.asarray(v)[rows] for k, v in info["peers_future"].items()}
        pred = _combine(info["combine"], net, peers)
        return [{"series": names[r], "step": h + 1, "forecast": float(pred[k, h])}
                for k, r in enumerate(rows) for h in range(pred.shape[1])]
