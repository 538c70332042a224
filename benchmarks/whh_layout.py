"""How the cpu backend's C time loop should read ``W_hh``: transposed once per call into a
contiguous ``W_hh^T`` (``recur.ops.cpu.transposed``; MKL runs that layout faster per step at
small H) or as it is (no copy per call; the layout the streaming step and the backward read).
A whole layer is timed both ways in one process, interleaved, medians: recur's LSTM on the
``cpu`` backend (float32, one thread, input 64), inference (``no_grad``) and forward +
backward, over B, H and T. This is where ``recur.ops.cpu.WHH_AS_IS_MAX_B`` and
``WHH_AS_IS_MIN_BYTES`` come from. A third setting, as it is with ``recur.ops.cpu.WHH_GEMV``
on (a batch of one row through the loop's own ``gemv_rows`` instead of BLAS ``gemm``; the
same as "as it is" at B > 1), is timed in the same turns (``gemv_over_as_is``).

    .venv/bin/python benchmarks/whh_layout.py      # table + benchmarks/results/whh-layout-COMMIT.json
    .venv/bin/python benchmarks/whh_layout.py --B 1 4 --H 256 512 --T 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from _ab import interleaved
from _meta import commit, cpu_model

import recur
from recur.ops import cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--H", type=int, nargs="+", default=[128, 256, 512, 1024])
    p.add_argument("--T", type=int, nargs="+", default=[64, 512])
    p.add_argument("--I", type=int, default=64)
    p.add_argument("--budget", type=float, default=1.5, help="seconds per size and mode")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    saved = cpu.WHH_AS_IS_MAX_B, cpu.WHH_AS_IS_MIN_BYTES, cpu.WHH_GEMV
    # (max B, min bytes, gemv) forcing each
    layouts = {"transposed": (-1, 0, False), "as_is": (1 << 30, 0, False),
               "as_is_gemv": (1 << 30, 0, True)}

    def knobs(values):
        def apply():
            cpu.WHH_AS_IS_MAX_B, cpu.WHH_AS_IS_MIN_BYTES, cpu.WHH_GEMV = values
        return apply

    settings = {n: knobs(v) for n, v in layouts.items()}
    rows = []
    try:
        for T in args.T:
            for H in args.H:
                m = recur.LSTM(args.I, H, backend="cpu")
                for B in args.B:
                    x = torch.randn(T, B, args.I)
                    for mode, train in (("fwd", False), ("fwd+bwd", True)):
                        reps, med = interleaved(m, x, train, settings, args.budget)
                        med = {n: v * 1e3 for n, v in med.items()}
                        row = {"T": T, "H": H, "B": B, "mode": mode, "repeats": reps,
                               "transposed_ms": med["transposed"], "as_is_ms": med["as_is"],
                               "as_is_over_transposed": med["as_is"] / med["transposed"],
                               "as_is_gemv_ms": med["as_is_gemv"],
                               "gemv_over_as_is": med["as_is_gemv"] / med["as_is"],
                               "gemv_over_transposed": med["as_is_gemv"] / med["transposed"],
                               "whh_bytes": 4 * H * 4 * H}
                        rows.append(row)
                        print(f"T={T:4d} H={H:5d} B={B:3d} {mode:8s} transposed "
                              f"{row['transposed_ms']:9.3f} ms  as is {row['as_is_ms']:9.3f} ms"
                              f"  as is / transposed {row['as_is_over_transposed']:.3f}  gemv "
                              f"{row['as_is_gemv_ms']:9.3f} ms  gemv / as is "
                              f"{row['gemv_over_as_is']:.3f}",
                              flush=True)
    finally:
        cpu.WHH_AS_IS_MAX_B, cpu.WHH_AS_IS_MIN_BYTES, cpu.WHH_GEMV = saved
    code = commit()
    meta = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "commit": code, "threads": 1, "L2_bytes": cpu._l2_cache_bytes(),
            "WHH_AS_IS_MAX_B": saved[0], "WHH_AS_IS_MIN_BYTES": saved[1], "WHH_GEMV": saved[2],
            "cpu": cpu_model()}
    print(f"\n# recur.LSTM on the cpu backend, float32, 1 thread, {meta['cpus']}-CPU "
          f"{meta['machine']}, torch {meta['torch']}, commit {code}, {meta['date']}: "
          "time with W_hh read as it is / with W_hh^T made contiguous (< 1: as is faster)")
    for key in ("as_is_over_transposed", "gemv_over_as_is"):
        for mode in ("fwd", "fwd+bwd"):
            print(f"\n{key}, {mode}\n\n| T | H | " + " | ".join(f"B={b}" for b in args.B) +
                  " |")
            print("|---:|---:|" + "---:|" * len(args.B))
            for T in args.T:
                for H in args.H:
                    cells = [next(r[key] for r in rows if r["T"] == T and r["H"] == H and
                                  r["B"] == b and r["mode"] == mode) for b in args.B]
                    print(f"| {T} | {H} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    out = Path(args.json) if args.json else \
        Path(__file__).resolve().parent / "results" / f"whh-layout-{code}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
