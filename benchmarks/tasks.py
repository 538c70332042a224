"""Full-target runs of the real-data tasks: ``recur train vowels`` and ``recur train forecast``
with their defaults, over several seeds, timed, against the targets of the task issue; and of
the ``sine-cos`` lesson against its target.

    .venv/bin/python benchmarks/tasks.py                          # 5 seeds each, prints Markdown
    .venv/bin/python benchmarks/tasks.py --seeds 10 --json tasks.json
    .venv/bin/python benchmarks/tasks.py --only vowels --set ensemble=8 --set epochs=50
    .venv/bin/python benchmarks/tasks.py --only vowels --seeds 10 --jobs 2   # 2 runs at once
    .venv/bin/python benchmarks/tasks.py --only vowels --seeds 10 --first-seed 200 --jobs 2
    .venv/bin/python benchmarks/tasks.py --only sine-cos --seeds 10 --backend torch cpu

Targets (checked per seed, every seed must meet them):

- ``vowels`` (= ``classify --data aeon:JapaneseVowels``): ``test_accuracy >= 0.98`` on the
  official UEA test split, in under 120 s of wall time on the CPU. Peers on the same split come
  from ``benchmarks/peers.py`` (1-NN DTW, MiniRocket).
- ``forecast`` (statsmodels sunspots): ``test_rmse < ar_rmse``, where ``ar_rmse`` (AR(9),
  statsmodels) and ``naive_rmse`` (last value) are computed in the same run on the same split.
- ``sine-cos`` (the lesson, not in the default set): validation MSE ``loss <= 1e-3``.

``--backend NAME...`` runs every seed once per backend (``RECUR_BACKEND``): the same math
with float32 rounding in another order, which tells whether a default's result holds or is
the luck of one sequence of roundings (a chaotic run diverges from 1e-7 differences).

Each run is exactly what ``recur train TASK --seed S`` does (the same ``train_task`` call, its
defaults, writing a run directory under a temporary folder that is removed afterwards); the
wall time includes loading the data, training, the final evaluation and the plots. The
machine, the date and the commit are printed with the table and stored in the JSON.
``--jobs N`` runs N seeds at once in separate processes (each with the task's own ``--threads``;
the vowels defaults use one thread, so two jobs on a 2-core machine do not share a core); the
JSON records the number of jobs next to the times. Use it only for one-thread runs: forecast
runs with PyTorch's default threads, and two at once on 2 cores took 42-64 s instead of 5-9 s.
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

VOWELS_TARGET = 0.98
VOWELS_SECONDS = 120.0
SINE_COS_TARGET = 1e-3
TASKS = ("vowels", "forecast", "sine-cos")


def _parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _options(task: str) -> dict:
    from recur.tasks import get_task
    from recur.tasks.base import COMMON_OPTIONS

    return {o.name: o for o in (*COMMON_OPTIONS, *get_task(task).options)}


def run_one(task: str, seed: int, overrides: dict[str, str], backend: str | None = None
            ) -> dict:
    """Train ``task`` with its defaults (plus ``overrides``) and ``seed`` (with
    ``RECUR_BACKEND=backend`` if given); metrics + seconds."""
    saved = os.environ.get("RECUR_BACKEND")
    if backend is not None:
        os.environ["RECUR_BACKEND"] = backend
    try:
        row = _run_one(task, seed, overrides)
    finally:
        if saved is None:
            os.environ.pop("RECUR_BACKEND", None)
        else:
            os.environ["RECUR_BACKEND"] = saved
    if backend is not None:
        row["backend"] = backend
    return row


def _run_one(task: str, seed: int, overrides: dict[str, str]) -> dict:
    from recur.tasks import get_task
    from recur.tasks.base import resolve_config
    from recur.tasks.runner import train_task

    cls = get_task(task)
    known = _options(task)
    overrides = {k: v for k, v in overrides.items() if k in known}  # the others: other task
    # the --set values are strings: the task's own option declarations convert them
    # (yes/no options from true/false first, which Option.check wants as bools)
    for k, v in overrides.items():
        if known[k].type is bool and isinstance(v, str):
            if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise SystemExit(f"--set {k}: expected true/false, got {v!r}")
            overrides[k] = v.lower() in ("true", "1", "yes")
    cfg = resolve_config(cls, {**overrides, "seed": seed}).to_dict()
    given = {k: cfg[k] for k in (*overrides, "seed")}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_task(task, {**given, "out": str(Path(tmp) / "run")})
        seconds = time.perf_counter() - t0
    m = result.metrics
    row = {"task": task, "seed": seed, "seconds": round(seconds, 2),
           "config": {k: result.config.to_dict()[k] for k in
                      ("cell", "hidden", "layers", "bidirectional", "epochs", "batch_size",
                       "lr", "schedule", "threads")}}
    if task == "vowels":
        row.update(test_accuracy=m["test_accuracy"], test_errors=m["test_errors"],
                   test_size=m["test_size"])
        row["met"] = m["test_accuracy"] >= VOWELS_TARGET and seconds < VOWELS_SECONDS
    elif task == "sine-cos":
        row.update(loss=m["loss"])
        row["met"] = m["loss"] <= SINE_COS_TARGET
    else:
        row.update(test_rmse=m["test_rmse"], ar_rmse=m["ar_rmse"], naive_rmse=m["naive_rmse"])
        row["met"] = m["test_rmse"] < m["ar_rmse"]
    return row


def _report(row: dict) -> dict:
    print(f"{row['task']} seed {row['seed']}: " + ", ".join(
        f"{k}={v}" for k, v in row.items() if k not in ("task", "seed", "config")),
        file=sys.stderr, flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| task | seed | backend | result | target | met | seconds |",
             "|---|---:|---|---|---|:---:|---:|"]
    for r in rows:
        if r["task"] == "vowels":
            res = f"test_accuracy {r['test_accuracy']:.4f} ({r['test_errors']}/{r['test_size']} wrong)"
            tgt = f">= {VOWELS_TARGET} in < {VOWELS_SECONDS:.0f} s"
        elif r["task"] == "sine-cos":
            res, tgt = f"loss {r['loss']:.3g}", f"<= {SINE_COS_TARGET:g}"
        else:
            res = (f"test_rmse {r['test_rmse']:.2f} (AR(9) {r['ar_rmse']:.2f}, "
                   f"naive {r['naive_rmse']:.2f})")
            tgt = "< ar_rmse"
        lines.append(f"| {r['task']} | {r['seed']} | {r.get('backend', 'auto')} | {res} | {tgt} | "
                     f"{'yes' if r['met'] else 'NO'} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = [r for r in rows if r["task"] == task]
        key = {"vowels": "test_accuracy", "sine-cos": "loss"}.get(task, "test_rmse")
        vals = [r[key] for r in rs]
        out[task] = {"metric": key, "min": min(vals), "mean": statistics.mean(vals),
                     "max": max(vals), "seconds_max": max(r["seconds"] for r in rs),
                     "met": sum(r["met"] for r in rs), "runs": len(rs)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=TASKS, default=None)
    p.add_argument("--backend", nargs="+", default=None, metavar="NAME",
                   help="run each seed once per backend (RECUR_BACKEND); default: as set")
    p.add_argument("--seeds", type=int, default=5, help="N seeds per task (default 5)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds FIRST..FIRST+N-1 (default 0; the README's validation runs "
                        "use 200)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a task option (tuning; the README table uses none)")
    p.add_argument("--json", default=None, help="write the rows and the summary here")
    p.add_argument("--jobs", type=int, default=1, help="seeds run at once (processes)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}")
    quiet()
    overrides = _parse_set(args.set)
    tasks = [args.only] if args.only else ["vowels", "forecast"]
    # each override goes to the tasks that have that option; one no task has is an error
    # (checked before anything trains)
    for key in overrides:
        if not any(key in _options(t) for t in tasks):
            raise SystemExit(f"--set {key}: no option of that name in {', '.join(tasks)}")
    import torch

    code = commit()  # the checkout as the run starts (it may move on while it runs)
    runs = [(task, seed, b) for task in tasks for b in (args.backend or [None])
            for seed in range(args.first_seed, args.first_seed + args.seeds)]
    rows = run_jobs(run_one, [(t, s, overrides, b) for t, s, b in runs], args.jobs, _report)
    info = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "commit": code, "overrides": overrides, "jobs": args.jobs,
            "first_seed": args.first_seed, "backends": args.backend}
    print(f"recur benchmarks/tasks.py, {info['date']}, commit {info['commit']}, "
          f"{info['cpus']}-CPU {info['machine']}, Python {info['python']}, torch {info['torch']}"
          + (f", overrides {overrides}" if overrides else "")
          + (f", {args.jobs} runs at once" if args.jobs > 1 else ""))
    print(table(rows))
    s = summary(rows)
    for task, v in s.items():
        print(f"{task}: {v['metric']} min {v['min']:.4f} mean {v['mean']:.4f} max {v['max']:.4f}"
              f"; target met in {v['met']}/{v['runs']} runs; slowest {v['seconds_max']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows, "summary": s},
                                              indent=2) + "\n")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
