"""Why ``vowels`` needs an ensemble: single models with the vowels defaults, which test series
they get wrong, and how often an ensemble of K of them misses the 0.98 target.

    .venv/bin/python benchmarks/vowels_members.py --models 40 --first-seed 200 --jobs 2 \\
        --json benchmarks/results/vowels-members.json

Trains ``--models`` single models (``recur train vowels --ensemble 1 --seed S`` for seeds
FIRST..FIRST+N-1, every other option at the task's defaults), keeps each one's class
probabilities on the official test split, then:

- per model: test accuracy and the test series it gets wrong;
- per test series: in how many models it is wrong (the table lists those wrong in at least a
  fifth of the models);
- per ensemble size K (``--sizes``): ``--draws`` random draws of K distinct models, their
  probabilities averaged as ``--ensemble K`` does; the mean number of errors and the share of
  draws with more than 7 of 370 wrong (test accuracy below 0.98).

Drawing from a finite pool of models shares members between draws, so the shares are an
estimate of what whole runs (``benchmarks/tasks.py``) give, not a replacement for them. The
machine, the date and the commit are printed and stored in the JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _meta import commit

TARGET = 0.98


def _quiet() -> None:
    logging.disable(logging.WARNING)  # the runs' own progress lines


def train_one(seed: int) -> dict:
    """One vowels model (``ensemble=1``): its test probabilities ``[N, C]`` as lists."""
    from recur.tasks.classify import predict_proba
    from recur.tasks.runner import load_run, train_task

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_task("vowels", {"ensemble": 1, "seed": seed,
                                       "out": str(Path(tmp) / "run")})
        seconds = time.perf_counter() - t0
        task, model, _, _ = load_run(Path(tmp) / "run", "cpu")
        test = task.build_data().test.split
        proba = predict_proba(model, test.x, test.lengths)
    return {"seed": seed, "seconds": round(seconds, 2),
            "test_accuracy": result.metrics["test_accuracy"], "proba": proba.tolist(),
            "y": test.y.tolist()}


def draws(proba, y, size: int, count: int, seed: int) -> list[int]:
    """Errors of ``count`` ensembles of ``size`` distinct models drawn from ``proba
    [M, N, C]``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        pick = torch.randperm(proba.shape[0], generator=gen)[:size]
        out.append(int((proba[pick].mean(0).argmax(-1) != y).sum()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=20, help="single models to train")
    p.add_argument("--first-seed", type=int, default=200)
    p.add_argument("--jobs", type=int, default=1, help="models trained at once (processes)")
    p.add_argument("--sizes", default="1,5,10", help="ensemble sizes to draw")
    p.add_argument("--draws", type=int, default=4000)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.models < 1 or args.jobs < 1 or args.draws < 1:
        raise SystemExit(f"--models, --jobs and --draws must be at least 1, got "
                         f"{args.models}, {args.jobs}, {args.draws}")
    if not all(1 <= k <= args.models for k in sizes):
        raise SystemExit(f"--sizes must lie in 1..{args.models} (--models), got {sizes}")
    _quiet()
    import torch

    code = commit()  # the checkout as the run starts (it may move on while it runs)
    seeds = range(args.first_seed, args.first_seed + args.models)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=ctx,
                                                initializer=_quiet) as pool:
        runs = list(pool.map(train_one, seeds))
    proba = torch.tensor([r.pop("proba") for r in runs])                  # (M, N, C)
    y = torch.tensor(runs[0].pop("y"))
    for r in runs[1:]:
        r.pop("y")
    wrong = proba.argmax(-1) != y                                         # (M, N)
    for r, w in zip(runs, wrong):
        r["wrong"] = w.nonzero().flatten().tolist()
    counts = wrong.sum(0)
    series = {int(i): int(counts[i]) for i in (counts * 5 >= args.models).nonzero().flatten()}
    ensembles = {}
    for k in sizes:
        e = draws(proba, y, k, args.draws, seed=k)
        ensembles[k] = {"mean_errors": statistics.mean(e), "max_errors": max(e),
                        "share_above_7": sum(v > 7 for v in e) / len(e)}

    info = {"machine": platform.machine(), "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "commit": code, "models": args.models,
            "first_seed": args.first_seed, "jobs": args.jobs, "draws": args.draws,
            "test_size": int(y.numel())}
    acc = [r["test_accuracy"] for r in runs]
    print(f"recur benchmarks/vowels_members.py, {info['date']}, commit {info['commit']}, "
          f"{info['cpus']}-CPU {info['machine']}, torch {info['torch']}: {args.models} single "
          f"models, seeds {args.first_seed}-{args.first_seed + args.models - 1}")
    print(f"single models: test_accuracy min {min(acc):.4f} mean {statistics.mean(acc):.4f} "
          f"max {max(acc):.4f}; below {TARGET}: {sum(a < TARGET for a in acc)}/{len(acc)}")
    print("\n| test series | wrong in models |\n|---:|---:|")
    for i, n in sorted(series.items(), key=lambda kv: -kv[1]):
        print(f"| {i} | {n}/{args.models} |")
    print("\n| ensemble size | mean errors | max errors | draws with > 7 wrong |\n"
          "|---:|---:|---:|---:|")
    for k, v in ensembles.items():
        print(f"| {k} | {v['mean_errors']:.2f} | {v['max_errors']} | "
              f"{100 * v['share_above_7']:.1f}% |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"info": info, "models": runs, "series_wrong": series,
             "ensembles": {str(k): v for k, v in ensembles.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
