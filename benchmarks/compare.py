"""Compare two runs of ``benchmarks/cpu.py`` (its ``--json`` files), row by row.

For every (cell, pass, B, T, H) present in both runs: each run's auto and reference times and
their ratios to torch.nn, and how the auto ratio moved. Ratios, not times, are what carry over
between runs on a shared machine: torch.nn is timed beside recur in each run.

    python benchmarks/cpu.py --json before.json
    # ... change recur ...
    python benchmarks/cpu.py --json after.json
    python benchmarks/compare.py before.json after.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEY = ("cell", "pass", "B", "T", "H")


def load(path: Path) -> tuple[dict, dict[tuple, dict]]:
    data = json.loads(path.read_text())
    return data["meta"], {tuple(r[k] for k in KEY): r for r in data["rows"]}


def fmt(row: dict, key: str, spec: str) -> str:
    return format(row[key], spec) if key in row else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    (meta_a, rows_a), (meta_b, rows_b) = load(args.before), load(args.after)
    for tag, meta in (("before", meta_a), ("after", meta_b)):
        print(f"# {tag}: {meta['date']} commit {meta['commit']}{' (dirty)' if meta['dirty'] else ''}"
              f", {meta['threads']} thread(s), torch {meta['torch']}, clock {meta.get('clock')}")
    print("| cell | pass | B | T | H | auto ms before | after | torch/auto before | after | "
          "change | torch/ref before | after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    common = [k for k in rows_a if k in rows_b]
    for k in common:
        a, b = rows_a[k], rows_b[k]
        change = (f"{b['ratio_auto'] / a['ratio_auto'] - 1:+.1%}"
                  if "ratio_auto" in a and "ratio_auto" in b else "-")
        print(f"| {' | '.join(str(v) for v in k)} | {fmt(a, 'auto_ms', '.3g')} | "
              f"{fmt(b, 'auto_ms', '.3g')} | {fmt(a, 'ratio_auto', '.2f')} | "
              f"{fmt(b, 'ratio_auto', '.2f')} | {change} | {fmt(a, 'ratio_reference', '.2f')} | "
              f"{fmt(b, 'ratio_reference', '.2f')} |")
    only = len(rows_a) + len(rows_b) - 2 * len(common)
    print(f"# {len(common)} rows in both runs; {only} in only one (left out)")


if __name__ == "__main__":
    main()
