"""recur's defaults on a panel of datasets, against the classical peers, in one table.

    .venv/bin/python benchmarks/panel.py classify GunPoint ItalyPowerDemand OSULeaf \\
        PickupGestureWiimoteZ JapaneseVowels --seeds 3 --jobs 2
    .venv/bin/python benchmarks/panel.py classify ArrowHead --seeds 1 --json out.json
    .venv/bin/python benchmarks/panel.py forecast ...      # see benchmarks/panel_forecast.py

``classify``: for every dataset (an aeon-shipped UCR/UEA name), ``recur train classify --data
aeon:NAME --seed S`` with nothing else given, for seeds ``FIRST .. FIRST+N-1`` (exactly what the
command line runs: the same ``train_task`` call, a run directory in a temporary folder that is
removed afterwards; the seconds are the wall time of the whole run: loading, choosing,
training, the final evaluation and the plots), then the peers of ``benchmarks/peers.py`` on the
same official split (1-NN DTW; MiniRocket, mean over ``--peer-seeds`` seeds). One row per
dataset: recur's mean / min / max test accuracy over the seeds, the peers, recur's slowest run
in seconds and what the defaults chose from the data. ``--jobs N`` runs N trainings at once in
separate processes (the classify defaults use one thread each; on a 2-core machine use at most
2); the peers run afterwards in the main process. The JSON (default
``benchmarks/results/panel-classify-COMMIT.json``) holds every run, the peers, the machine, the
date and the commit as the run started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _jobs import quiet, run_jobs
from _meta import commit

RESULTS = Path(__file__).resolve().parent / "results"


def run_one(name: str, seed: int, overrides: dict[str, str]) -> dict:
    """``recur train classify --data aeon:NAME --seed SEED`` (+ overrides): metrics, seconds."""
    from recur.tasks.runner import train_task

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_task("classify", {**overrides, "data": f"aeon:{name}", "seed": seed,
                                         "out": str(Path(tmp) / "run")})
        seconds = time.perf_counter() - t0
    m = result.metrics
    return {"dataset": name, "seed": seed, "seconds": round(seconds, 1),
            "test_accuracy": m["test_accuracy"], "train_accuracy": m["train_accuracy"],
            "chosen": m.get("chosen", ""),
            "config": {k: v for k, v in result.config.to_dict().items() if k != "out"}}


def _report(row: dict) -> dict:
    print(f"{row['dataset']} seed {row['seed']}: test_accuracy {row['test_accuracy']:.4f} "
          f"({row['seconds']:.0f} s; {row['chosen']})", file=sys.stderr, flush=True)
    return row


def _parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def classify(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="panel.py classify",
                                description="recur train classify (defaults) vs peers")
    p.add_argument("datasets", nargs="+", help="aeon dataset names (e.g. GunPoint)")
    p.add_argument("--seeds", type=int, default=3, help="recur runs per dataset (default 3)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--peer-seeds", type=int, default=3, help="MiniRocket seeds (default 3)")
    p.add_argument("--no-peers", action="store_true", help="recur only")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (processes)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a classify option (exploration; the README uses none)")
    p.add_argument("--json", default=None, help="where to write the JSON (default: "
                   "benchmarks/results/panel-classify-COMMIT.json)")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.seeds < 1:
        raise SystemExit(f"--jobs and --seeds must be at least 1, got {args.jobs}, {args.seeds}")
    quiet()
    overrides = _parse_set(args.set)
    import torch

    code = commit()  # the checkout as the run starts
    runs = [(d, s) for d in args.datasets
            for s in range(args.first_seed, args.first_seed + args.seeds)]
    rows = run_jobs(run_one, [(d, s, overrides) for d, s in runs], args.jobs, _report)
    peers = {}
    if not args.no_peers:
        from peers import classification_peers

        torch.set_num_threads(1)
        for d in args.datasets:
            peers[d] = classification_peers(d, list(range(args.peer_seeds)), normalize=True)
            print(f"{d} peers: " + ", ".join(f"{k} {v['test_accuracy']:.3f}"
                                             for k, v in peers[d]["peers"].items()),
                  file=sys.stderr, flush=True)
    info = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "commit": code,
            "overrides": overrides, "jobs": args.jobs, "seeds": args.seeds,
            "first_seed": args.first_seed, "peer_seeds": args.peer_seeds}
    summary = []
    for d in args.datasets:
        rs = [r for r in rows if r["dataset"] == d]
        acc = [r["test_accuracy"] for r in rs]
        pr = peers.get(d, {}).get("peers", {})
        summary.append({"dataset": d, "mean": statistics.mean(acc), "min": min(acc),
                        "max": max(acc), "seconds_max": max(r["seconds"] for r in rs),
                        "dtw": pr.get("1-NN DTW", {}).get("test_accuracy"),
                        "minirocket": pr.get("MiniRocket (edge-padded)", {}).get("test_accuracy"),
                        "chosen": sorted({r["chosen"] for r in rs})})
    print(f"recur benchmarks/panel.py classify, {info['date']}, commit {code}, "
          f"{info['cpus']}-CPU {info['machine']}, torch {info['torch']}, seeds "
          f"{args.first_seed}..{args.first_seed + args.seeds - 1}, {args.jobs} runs at once"
          + (f", overrides {overrides}" if overrides else ""))
    print(table(summary))
    out = Path(args.json) if args.json else RESULTS / f"panel-classify-{code}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"info": info, "summary": summary, "rows": rows, "peers": peers},
                              indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(summary: list[dict]) -> str:
    """Markdown: dataset, recur mean / min / max, the peers, slowest seconds, what ran."""
    lines = [("| dataset | recur mean | min | max | 1-NN DTW | MiniRocket | seconds (max) | "
              "chosen |"), "|---|---:|---:|---:|---:|---:|---:|---|"]
    for s in summary:
        lines.append(f"| {s['dataset']} | {s['mean']:.3f} | {s['min']:.3f} | {s['max']:.3f} | "
                     f"{_f(s['dtw'])} | {_f(s['minirocket'])} | {s['seconds_max']:.0f} | "
                     f"{'; '.join(s['chosen'])} |")
    if len(summary) > 1:
        mean = statistics.mean
        dtw = [s["dtw"] for s in summary]
        mr = [s["minirocket"] for s in summary]
        lines.append(f"| panel mean | {mean(s['mean'] for s in summary):.3f} | "
                     f"{mean(s['min'] for s in summary):.3f} | "
                     f"{mean(s['max'] for s in summary):.3f} | "
                     f"{_f(mean(dtw) if None not in dtw else None)} | "
                     f"{_f(mean(mr) if None not in mr else None)} | | |")
    return "\n".join(lines)


def forecast(argv: list[str]) -> int:
    import panel_forecast  # benchmarks/panel_forecast.py: the forecasting panel

    return panel_forecast.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"classify": classify, "forecast": forecast}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        print(f"usage: panel.py {{classify,forecast}} ...; got {argv[:1] or 'nothing'}",
              file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
