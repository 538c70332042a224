"""What the input projection of a whole sequence costs on the CPU, by where it is written:
``x W_ih^T + b_ih`` for ``x: [T, B, I]`` into a fresh ``[T, B, G*H]`` buffer (as a layer
that projects first), into one buffer reused between calls, and block by block into one
small reused buffer (as :func:`recur.ops.cpu.scan_cpu_projected`, ``PROJ_BLOCK_BYTES`` per
block). Same FLOPs each way; the difference is page faults and memory traffic. Medians of
interleaved repeats, µs per time step, one thread.

    python benchmarks/projection_blocks.py --json benchmarks/results/projection-blocks-COMMIT.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch
from _meta import commit

from recur.ops import cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, default=512)
    ap.add_argument("--B", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--H", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--I", type=int, default=64)
    ap.add_argument("--gates", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for B in args.B:
        for H in args.H:
            T, I, GX = args.T, args.I, args.gates * H
            x = torch.randn(T * B, I)
            w, b = torch.randn(GX, I), torch.randn(GX)
            reused = torch.empty(T * B, GX)
            C = max(1, min(T, cpu.PROJ_BLOCK_BYTES // (B * GX * 4)))
            block = torch.empty(C * B, GX)

            def blocks():
                for t0 in range(0, T, C):
                    n = min(C, T - t0)
                    torch.addmm(b, x[t0 * B:(t0 + n) * B], w.t(), out=block[:n * B])

            ways = {"fresh": lambda: torch.addmm(b, x, w.t()),
                    "reused": lambda: torch.addmm(b, x, w.t(), out=reused),
                    "blocks": blocks}
            times = {k: [] for k in ways}
            for f in ways.values():
                f()
            for _ in range(args.repeat):
                for k, f in ways.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append((time.perf_counter() - t0) / T * 1e6)
            row = {"B": B, "H": H, "T": T, "I": I, "GX": GX, "block_steps": C,
                   **{f"{k}_us_per_step": statistics.median(v) for k, v in times.items()}}
            rows.append(row)
    meta = {"commit": commit(), "date": datetime.date.today().isoformat(),
            "machine": platform.machine(), "torch": torch.__version__, "threads": 1}
    print(f"# commit {meta['commit']} | {meta['date']} | torch {meta['torch']} | one thread")
    print("x W_ih^T + b_ih, µs per time step (median): fresh [T, B, G*H] buffer, one reused "
          "buffer, blocks of `steps` into one small buffer")
    print("| B | H | T | fresh | reused | blocks | steps per block |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['B']} | {r['H']} | {r['T']} | {r['fresh_us_per_step']:.1f} | "
              f"{r['reused_us_per_step']:.1f} | {r['blocks_us_per_step']:.1f} | "
              f"{r['block_steps']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
