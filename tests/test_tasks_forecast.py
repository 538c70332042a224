"""``forecast``: the peers on series whose answer is known, the split, and tiny end-to-end runs
of one series and of a panel that must learn (loss falls, the network beats naive on a seasonal
series). The full panel is ``benchmarks/panel_forecast.py``; the defaults on sunspots are one
slow test here."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from recur.data.series import Panel
from recur.tasks import forecast as forecast_mod
from recur.tasks import get_task, resolve_config
from recur.tasks.forecast import make_origin_windows
from recur.tasks.forecast_peers import (
    ar_peer,
    ets_from_states,
    ets_peer,
    mase_scale,
    naive_peer,
    snaive_peer,
    theta_peer,
)
from recur.tasks.runner import eval_run, predict_run, train_task

PNG = b"\x89PNG\r\n\x1a\n"


def _seasonal(n, period=12, noise=0.3, seed=0, trend=0.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / period) + trend * t + noise * rng.normal(size=n)


def _csv(tmp_path, values, name="s.csv"):
    path = tmp_path / name
    lines = ["t,v"] + [f"{i},{'' if np.isnan(v) else v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ---- peers ------------------------------------------------------------------------------
def test_mase_scale_is_the_mean_seasonal_difference():
    assert mase_scale(np.array([1.0, 3.0, 2.0, 6.0]), 1) == pytest.approx((2 + 1 + 4) / 3)
    assert mase_scale(np.array([1.0, 3.0, 2.0, 6.0]), 2) == pytest.approx((1 + 3) / 2)
    assert mase_scale(np.array([1.0, 3.0]), 12) == 2.0               # too short: lag 1
    assert mase_scale(np.ones(5), 1) == 1.0                          # constant


def test_naive_and_seasonal_naive_are_exact_where_they_should_be():
    y = np.tile(np.arange(12.0), 4)                                   # period 12, no noise
    origins = np.array([24, 30, 47])
    sn, note = snaive_peer(y, 24, origins, 5, 12)
    truth = np.stack([y[o:o + 5] for o in origins[:2]])
    assert note == {"period": 12} and np.array_equal(sn[:2], truth)
    nv, _ = naive_peer(y, 24, origins, 3)
    assert nv.tolist() == [[11.0] * 3, [5.0] * 3, [10.0] * 3]
    with pytest.raises(ValueError, match="horizon must be at least 1, got 0"):
        naive_peer(y, 24, origins, 0)


def test_ar_peer_finds_the_order_of_an_ar2_and_iterates_it():
    rng = np.random.default_rng(1)
    y = np.zeros(3000)
    for t in range(2, len(y)):
        y[t] = 1.0 + 0.6 * y[t - 1] - 0.3 * y[t - 2] + rng.normal()
    fc, note = ar_peer(y, 2500, np.array([2600, 2900]), 3)
    assert note["lags"] == [1, 2]
    mean = 1.0 / (1 - 0.6 + 0.3)
    one = 1.0 + 0.6 * y[2599] - 0.3 * y[2598]                         # the true model
    assert fc[0, 0] == pytest.approx(one, abs=0.15)
    two = 1.0 + 0.6 * fc[0, 0] - 0.3 * y[2599]                        # iterated
    assert fc[0, 1] == pytest.approx(two, abs=0.2)
    assert abs(fc[1, 2] - mean) < abs(y[2899] - mean) + 1.0


def test_ar_peer_reproduces_ar9_on_sunspots():
    from recur.data import load_series

    y = load_series("statsmodels:sunspots").values
    fc, note = ar_peer(y, 247, np.arange(247, 309), 1)
    assert note["lags"] == list(range(1, 10))                       # AIC picks AR(9)
    rmse = float(np.sqrt(np.mean((fc[:, 0] - y[247:]) ** 2)))
    assert rmse == pytest.approx(19.44, abs=0.01)                    # BENCHMARKS.md's number


def test_ets_forecasts_from_states_match_statsmodels_at_every_origin():
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = _seasonal(120, trend=0.1) + 20
    for spec in ({"trend": "add", "damped_trend": True, "seasonal": "mul", "seasonal_periods": 12},
                 {"trend": "add", "seasonal": "add", "seasonal_periods": 12}, {"trend": None}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ETSModel(y[:80], error="add", **spec).fit(disp=False)
            full = ETSModel(y, error="add", **spec).smooth(res.params)
            origins = np.array([80, 95, 113])
            ref = np.stack([np.asarray(ETSModel(y[:o], error="add", **spec)
                                       .smooth(res.params).forecast(14)) for o in origins])
        mine = ets_from_states(np.asarray(full.states), spec, res.params, res.param_names,
                               origins, 14)
        np.testing.assert_allclose(mine, ref, rtol=1e-9, atol=1e-9)


def test_ets_and_theta_continue_a_trend_with_a_season():
    y = _seasonal(96, noise=0.05, trend=0.5)
    origins = np.array([84])
    truth = y[84:90]
    ets, note = ets_peer(y, 72, origins, 6, 12)
    assert note["trend"] == "add" and note["seasonal"] in ("add", "mul")
    assert np.abs(ets[0] - truth).max() < 0.5
    theta, _ = theta_peer(y, 72, origins, 6, 12)
    naive, _ = naive_peer(y, 72, origins, 6)
    assert np.abs(theta[0] - truth).mean() < np.abs(naive[0] - truth).mean()


# ---- split and windows ------------------------------------------------------------------
def test_windows_are_relative_to_the_last_value_and_padded():
    y = np.arange(10.0) * 2
    w = make_origin_windows([y], [2.0], [np.array([3, 8, 10])], 4, 2)
    assert w.lengths.tolist() == [3, 4, 4]
    assert w.x[0, :, 0].tolist() == [-2.0, -1.0, 0.0, 0.0]           # padded after the end
    assert w.y[1].tolist() == [1.0, 2.0]                               # (y[8:10] - y[7]) / 2
    assert np.isnan(w.y[2].numpy()).all()                              # past the end


def test_forecast_fits_and_chooses_on_the_first_part_only(tmp_path):
    y = _seasonal(100)
    changed = y.copy()
    changed[80:] += 500.0                                              # only the test part
    task_cls = get_task("forecast")
    datas = []
    for i, values in enumerate((y, changed)):
        cfg = resolve_config(task_cls, {"data": _csv(tmp_path, values, f"{i}.csv"),
                                        "column": "v", "period": 12, "epochs": 2,
                                        "members": 1, "hidden": 4})
        datas.append((cfg, task_cls(cfg).build_data()))
    (ca, a), (cb, b) = datas
    assert a.info["n_train"] == [80] and len(a.test) == 20
    assert a.info["norms"] == b.info["norms"] and a.info["scales"] == b.info["scales"]
    assert (a.train.x == b.train.x).all() and (a.train.y == b.train.y).all()
    assert (a.train.origins + 1).max() == 80                           # targets before 80
    assert ca.combine == cb.combine and ca.window == cb.window == 24   # chosen on train only


# ---- end to end -------------------------------------------------------------------------
def test_forecast_one_series_learns_and_beats_naive(tmp_path):
    out = tmp_path / "run"
    path = _csv(tmp_path, _seasonal(180))
    result = train_task("forecast", {"data": path, "column": "v", "period": 12, "horizon": 3,
                                     "members": 1, "hidden": 16, "combine": "rnn",
                                     "epochs": 20, "batch_size": 8, "lr": 0.01,
                                     "out": str(out)})
    m, h = result.metrics, result.history
    assert h[-1]["val_loss"] < 0.95 * h[0]["val_loss"]                 # loss falls
    assert m["rnn_mase"] < 0.7 * m["naive_mase"]                     # it learned the season
    assert len(m["mase_by_h"]) == 3 and m["horizon"] == 3 and m["period"] == 12
    assert {f"{p}_mase" for p in ("naive", "snaive", "ar", "ets", "theta")} <= set(m)
    assert m["best_peer"] in ("naive", "snaive", "ar", "ets", "theta")
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["period"], cfg["window"], cfg["horizon"], cfg["combine"]) == (12, 24, 3, "rnn")
    assert (out / "forecast.png").read_bytes()[:8] == PNG
    _, again = eval_run(out, device="cpu")
    assert again["test_mase"] == pytest.approx(m["test_mase"], rel=1e-5)
    _, rows = predict_run(out, {}, device="cpu")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["forecast"]) and 5 < r["forecast"] < 15 for r in rows)


def test_forecast_panel_one_model_for_many_series(tmp_path, monkeypatch):
    series = [_seasonal(40 + 3 * i, period=4, seed=i) * (1 + i) for i in range(6)]
    panel = Panel("test:panel", series, "quarterly", 4, 4, [f"S{i}" for i in range(6)])
    monkeypatch.setattr(forecast_mod, "load_panel", lambda *a, **k: panel)
    out = tmp_path / "run"
    result = train_task("forecast", {"data": "test:panel", "members": 1, "hidden": 16,
                                     "epochs": 30, "combine": "rnn+peers", "out": str(out)})
    m, h = result.metrics, result.history
    assert m["horizon"] == 4 and m["n_series"] == 6 and m["n_test"] == 24
    assert h[-1]["val_loss"] < 0.7 * h[0]["val_loss"]
    assert m["rnn_mase"] < m["naive_mase"]
    mean = (m["rnn_mase"], m["test_mase"])                           # the mean with the peers
    assert mean[1] != mean[0] and m["combine"] == "rnn+peers"
    _, rows = predict_run(out, {"series": "S3"}, device="cpu")
    assert [(r["series"], r["step"]) for r in rows] == [("S3", k) for k in range(1, 5)]
    with pytest.raises(ValueError, match="--series must be one of the 6 series' names"):
        predict_run(out, {"series": "S99"}, device="cpu")


def test_forecast_panel_validates_on_the_series_long_enough(tmp_path, monkeypatch):
    # one series too short to hold a validation part must not switch the choice off for all
    series = [_seasonal(40, period=4, seed=i) * (1 + i) for i in range(4)] + [_seasonal(9)]
    panel = Panel("test:short", series, "quarterly", 4, 4, [f"S{i}" for i in range(5)])
    monkeypatch.setattr(forecast_mod, "load_panel", lambda *a, **k: panel)
    cfg = resolve_config(get_task("forecast"), {"data": "test:short", "members": 1,
                                                "hidden": 4, "epochs": 2})
    task = get_task("forecast")(cfg)
    task.build_data()
    assert set(task.validation) == {"val_rnn", "val_rnn+peers"} | {
        k for k in task.validation if k.startswith("val_rnn+")}
    assert len(task.validation) == 3 and cfg.combine in {k[4:] for k in task.validation}


def test_forecast_csv_with_gaps_and_short_test_part(tmp_path):
    y = np.sin(np.arange(60) / 4.0) * 5 + 10
    y[[7, 30]] = np.nan
    path = _csv(tmp_path, y)
    with pytest.raises(ValueError, match=r"2 missing value\(s\), the first at line 9"):
        train_task("forecast", {"data": path, "column": "v", "out": str(tmp_path / "a")})
    with pytest.raises(ValueError, match="a test part of 12 values is shorter than "
                                         "--horizon 13"):
        train_task("forecast", {"data": path, "column": "v", "fillna": "interpolate",
                                "horizon": 13, "out": str(tmp_path / "b")})


@pytest.mark.slow
def test_forecast_defaults_beat_every_peer_on_sunspots(tmp_path):
    m = train_task("forecast", {"out": str(tmp_path)}).metrics
    assert m["ar_rmse"] == pytest.approx(19.44, abs=0.01)
    assert m["test_mase"] < min(m[f"{p}_mase"] for p in ("naive", "ar", "ets", "theta"))
