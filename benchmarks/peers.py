"""Peers of recur's real-data tasks, measured on exactly the splits the tasks use.

    .venv/bin/python benchmarks/peers.py                     # both tables, prints Markdown
    .venv/bin/python benchmarks/peers.py --json peers.json   # also write the numbers as JSON
    .venv/bin/python benchmarks/peers.py --only forecast     # just the sunspots baselines

Classification (``recur train vowels`` = ``classify --data aeon:JapaneseVowels``): the official
UEA train/test split shipped with aeon, per-channel normalisation fitted on train (what the
task feeds its model; ``--raw``: the values as shipped), then

- 1-NN DTW (aeon ``KNeighborsTimeSeriesClassifier``, full window) on the unequal-length series;
- MiniRocket (aeon ``MiniRocketClassifier``, 10k kernels, ridge) on series edge-padded to the
  longest length (repeating each series' last value), since MiniRocket needs equal length;
  its kernels are random, so it runs with ``--seeds`` seeds and the table shows the mean.

Forecasting (``recur train forecast --data statsmodels:sunspots``): the first 80% of the
series fits, the last 20% is forecast one step ahead from the true past values, RMSE in the
series' units:

- naive: the previous value;
- AR(p): statsmodels ``AutoReg`` with a constant, fitted on the first 80% only (p = 9).

The data loading and the split come from ``recur.data`` (the same functions the tasks call),
and the baselines from ``recur.tasks.forecast`` (the same code that fills metrics.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings

import numpy as np


def edge_pad(series: list[np.ndarray], length: int) -> np.ndarray:
    """``[N, C, length]``: each ``[C, T_i]`` series followed by copies of its last step."""
    out = np.empty((len(series), series[0].shape[0], length))
    for i, s in enumerate(series):
        out[i, :, : s.shape[1]] = s
        out[i, :, s.shape[1]:] = s[:, -1:]
    return out


def classification_peers(name: str, seeds: list[int], normalize: bool) -> dict:
    from recur.data import fit_channel_norm, load_aeon_series

    raw = load_aeon_series(name)
    train, test = raw.train, raw.test
    if normalize:
        mean, std = fit_channel_norm(raw.train)
        train, test = ([(s - mean[:, None]) / std[:, None] for s in ss] for ss in (train, test))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        from aeon.classification.convolution_based import MiniRocketClassifier
        from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
    try:  # aeon's numba kernels warn about an int cast on every compile; nothing to act on
        from numba.core.errors import NumbaTypeSafetyWarning
        warnings.filterwarnings("ignore", category=NumbaTypeSafetyWarning)
    except ImportError:
        pass

    rows = {}
    t0 = time.perf_counter()
    knn = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1)
    knn.fit(train, raw.y_train)
    acc = float(np.mean(knn.predict(test) == raw.y_test))
    rows["1-NN DTW"] = {"test_accuracy": acc, "seconds": time.perf_counter() - t0}

    length = max(s.shape[1] for s in train + test)
    accs, seconds = [], []
    for s in seeds:
        t0 = time.perf_counter()
        mr = MiniRocketClassifier(random_state=s)
        mr.fit(edge_pad(train, length), raw.y_train)
        accs.append(float(np.mean(mr.predict(edge_pad(test, length)) == raw.y_test)))
        seconds.append(time.perf_counter() - t0)
    rows["MiniRocket (edge-padded)"] = {"test_accuracy": float(np.mean(accs)),
                                        "per_seed": dict(zip(seeds, accs)),
                                        "seconds": float(np.mean(seconds))}
    return {"data": f"aeon:{raw.name}", "normalized": normalize,
            "train": len(train), "test": len(test),
            "channels": int(train[0].shape[0]),
            "lengths": [int(min(s.shape[1] for s in train + test)), int(length)],
            "peers": rows}


def forecast_peers(spec: str, lags: int, test_fraction: float) -> dict:
    from recur.data import load_series, train_size
    from recur.tasks.forecast import ar_forecast, naive_forecast, rmse

    series = load_series(spec)
    y = series.values
    n_train = train_size(len(y), test_fraction)
    truth = y[n_train:]
    rows = {}
    t0 = time.perf_counter()
    rows["naive (last value)"] = {"test_rmse": rmse(naive_forecast(y, n_train), truth),
                                  "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    rows[f"AR({lags})"] = {"test_rmse": rmse(ar_forecast(y, n_train, lags), truth),
                           "seconds": time.perf_counter() - t0}
    return {"data": series.name, "values": len(y), "train": n_train, "test": len(truth),
            "peers": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("classify", "forecast"), default=None)
    p.add_argument("--classify-data", default="JapaneseVowels", help="aeon dataset name")
    p.add_argument("--forecast-data", default="statsmodels:sunspots")
    p.add_argument("--lags", type=int, default=9, help="AR order for the forecast peer")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seeds", type=int, default=5,
                   help="MiniRocket runs with random_state 0..N-1; the table shows the mean")
    p.add_argument("--raw", action="store_true",
                   help="classification peers on the raw values (default: per-channel "
                        "normalisation fitted on train, as the task does)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    args = p.parse_args(argv)

    import torch

    result = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
              "torch": torch.__version__, "machine": platform.machine(),
              "processor": platform.processor() or platform.machine(), "tasks": []}
    lines = ["| data | peer | metric | value | seconds |", "|---|---|---|---|---|"]
    if args.only in (None, "classify"):
        r = classification_peers(args.classify_data, list(range(args.seeds)),
                                 normalize=not args.raw)
        result["tasks"].append(r)
        scale = "normalised on train" if r["normalized"] else "raw values"
        for peer, m in r["peers"].items():
            spread = ""
            if len(m.get("per_seed", {})) > 1:
                values = list(m["per_seed"].values())
                spread = f" (seeds: {min(values):.3f}-{max(values):.3f})"
            lines.append(f"| {r['data']} ({r['train']} train / {r['test']} test, {scale}) | "
                         f"{peer} | test accuracy | {m['test_accuracy']:.3f}{spread} | "
                         f"{m['seconds']:.1f} |")
    if args.only in (None, "forecast"):
        r = forecast_peers(args.forecast_data, args.lags, args.test_fraction)
        result["tasks"].append(r)
        for peer, m in r["peers"].items():
            lines.append(f"| {r['data']} ({r['train']} fit / {r['test']} test) | {peer} | "
                         f"test RMSE | {m['test_rmse']:.2f} | {m['seconds']:.2f} |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
