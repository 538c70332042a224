"""``recur train forecast`` with its defaults on a panel of series, several seeds, against the
classical peers of the same runs (naive, seasonal naive, AR by AIC, ETS by AIC, Theta).

    .venv/bin/python benchmarks/panel_forecast.py                      # the issue-13 panel
    .venv/bin/python benchmarks/panel_forecast.py --seeds 3 --jobs 2 aeon:Airline statsmodels:nile
    .venv/bin/python benchmarks/panel.py forecast ...                   # the same, via panel.py

Each run is exactly ``recur train forecast --data SPEC --seed S`` (``train_task``, defaults,
a temporary run directory); ``co2`` gets ``--fillna interpolate`` (it has 59 gaps). The peers
are deterministic (the same in every seed's metrics). Prints one Markdown table (series,
recur MASE mean/min/max over the seeds, each peer's MASE, the best peer, what the defaults
chose, seconds per run) and the panel means, and writes JSON (rows, table, machine, date,
commit) to ``benchmarks/results/panel-forecast-COMMIT.json`` (or ``--json PATH``); while it
runs, each finished run is appended to ``...COMMIT.rows.jsonl`` beside it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import commit

PANEL = ("statsmodels:sunspots", "statsmodels:co2", "statsmodels:elnino", "aeon:Lynx",
         "aeon:PBS_dataset", "aeon:m1_yearly_dataset")
#: the longest runs first, so that parallel jobs finish together
ORDER = ("aeon:m1_yearly_dataset", "statsmodels:co2", "statsmodels:elnino")
PEERS = ("naive", "snaive", "ar", "ets", "theta")
FILLNA = {"statsmodels:co2": "interpolate"}


def run_one(spec: str, seed: int, overrides: dict) -> dict:
    """One ``train_task('forecast')`` run: its metrics (scalars) and wall time."""
    import torch

    from recur.tasks.runner import train_task

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_task("forecast", {"data": spec, "fillna": FILLNA.get(spec), "seed": seed,
                                         **overrides, "out": str(Path(tmp) / "run")})
        seconds = time.perf_counter() - t0
    m = {k: v for k, v in result.metrics.items() if not isinstance(v, list)}
    return {"series": spec, "seed": seed, "seconds": round(seconds, 1),
            "epochs": result.config.epochs, **m}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for spec in dict.fromkeys(r["series"] for r in rows):
        rs = [r for r in rows if r["series"] == spec]
        vals = [r["test_mase"] for r in rs]
        first = rs[0]
        peers = {p: first[f"{p}_mase"] for p in PEERS}
        best = min(peers, key=peers.get)
        out.append({"series": spec, "runs": len(rs), "mean": statistics.mean(vals),
                    "min": min(vals), "max": max(vals),
                    "rnn_mean": statistics.mean(r["rnn_mase"] for r in rs), **peers,
                    "best_peer": best, "beats_all": sum(v < peers[best] for v in vals),
                    "floor_ok": all(v <= peers["snaive"] for v in vals),
                    "period": first["period"], "horizon": first["horizon"],
                    "window": first["window"],
                    "combine": sorted({r["combine"] for r in rs}),
                    "seconds": statistics.mean(r["seconds"] for r in rs)})
    return out


def table(summary: list[dict]) -> str:
    lines = [("| series | m, H, W | recur MASE mean (min-max) | network alone | naive | "
             "snaive | AR | ETS | Theta | best peer | combine chosen | s/run |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---:|"]
    for s in summary:
        mark = "**" if s["mean"] < s[s["best_peer"]] else ""
        lines.append(
            f"| {s['series']} | {s['period']}, {s['horizon']}, {s['window']} | "
            f"{mark}{s['mean']:.3f}{mark} ({s['min']:.3f}-{s['max']:.3f}) | "
            f"{s['rnn_mean']:.3f} | " + " | ".join(f"{s[p]:.3f}" for p in PEERS) +
            f" | {s['best_peer']} | {', '.join(s['combine'])} | {s['seconds']:.0f} |")
    parts = [("panel mean", summary)]
    issue = [s for s in summary if s["series"] in PANEL]
    if len(issue) == len(PANEL) < len(summary):       # the issue's six among others
        parts.append(("mean of the issue's six", issue))
    for name, part in parts:
        means = {k: statistics.mean(s[k] for s in part) for k in ("mean", "rnn_mean", *PEERS)}
        lines.append(f"| {name} | | " + f"{means['mean']:.3f} | {means['rnn_mean']:.3f} | " +
                     " | ".join(f"{means[p]:.3f}" for p in PEERS) + " | | | |")
    return "\n".join(lines)


def verdict(summary: list[dict]) -> str:
    """How many series recur wins (below every peer) and where the floor held."""
    out = []
    issue = [s for s in summary if s["series"] in PANEL]
    for name, part in (("", summary), (" (the issue's six)", issue)):
        if not out or len(part) == len(PANEL) < len(summary):   # the six among others
            wins = sum(s["mean"] < s[s["best_peer"]] for s in part)
            out.append(f"recur below every peer on {wins}/{len(part)}{name}; floor (<= "
                       f"seasonal naive) held on {sum(s['floor_ok'] for s in part)}/{len(part)}")
    return "\n".join(out)


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = int(value) if value.isdigit() else value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("series", nargs="*", default=list(PANEL),
                   help="data specs (default: the issue-13 panel)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per series (default 3)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (processes, 1 thread each)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a forecast option (tuning; the README table uses none)")
    p.add_argument("--json", default=None, help="where to write the JSON")
    p.add_argument("--table", default=None, metavar="JSON",
                   help="print the table of a JSON this script wrote, and run nothing")
    args = p.parse_args(argv)
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        info = saved["info"]
        print(f"recur benchmarks/panel_forecast.py, {info['date']}, commit {info['commit']}, "
              f"{info['cpus']}-CPU {info['machine']}, torch {info['torch']}, "
              f"{info['seeds']} seeds (from {args.table})")
        summary = summarise(saved["rows"])
        print(table(summary))
        print(verdict(summary))
        return 0
    logging.disable(logging.WARNING)
    import torch

    code = commit()
    overrides = _parse_set(args.set)
    runs = [(spec, seed) for spec in args.series for seed in range(args.seeds)]
    queue = sorted(runs, key=lambda r: ORDER.index(r[0]) if r[0] in ORDER else len(ORDER))
    path = Path(args.json) if args.json else \
        Path(__file__).resolve().parent / "results" / f"panel-forecast-{code}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".rows.jsonl")               # each run as it finishes
    partial.write_text("")
    rows = []
    with concurrent.futures.ProcessPoolExecutor(
            max(1, args.jobs), mp_context=__import__("multiprocessing").get_context("spawn")
    ) as pool:
        futures = {pool.submit(run_one, spec, seed, overrides): (spec, seed)
                   for spec, seed in queue}
        for f in concurrent.futures.as_completed(futures):
            row = f.result()
            rows.append(row)
            with partial.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{row['series']} seed {row['seed']}: MASE {row['test_mase']:.3f} "
                  f"(best peer {row['best_peer']} {row[row['best_peer'] + '_mase']:.3f}), "
                  f"combine {row['combine']}, {row['seconds']:.0f} s", file=sys.stderr,
                  flush=True)
    order = {r: i for i, r in enumerate(runs)}
    rows.sort(key=lambda r: order[(r["series"], r["seed"])])
    summary = summarise(rows)
    info = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "commit": code,
            "seeds": args.seeds, "jobs": args.jobs, "overrides": overrides}
    text = table(summary)
    print(f"recur benchmarks/panel_forecast.py, {info['date']}, commit {code}, "
          f"{info['cpus']}-CPU {info['machine']}, torch {info['torch']}, {args.seeds} seeds"
          + (f", {args.jobs} runs at once" if args.jobs > 1 else "")
          + (f", overrides {overrides}" if overrides else ""))
    print(text)
    print(verdict(summary))
    path.write_text(json.dumps({"info": info, "rows": rows, "summary": summary,
                                "table": text}, indent=2) + "\n")
    partial.unlink()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
