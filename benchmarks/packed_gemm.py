"""One time step's recurrent product on the CPU, ``h [B, Hout] @ W_hh^T`` with ``W_hh [G*H,
Hout]``, as recur's C time loop can run it: BLAS ``sgemm_`` on ``W_hh`` read transposed, on
``W_hh^T`` made contiguous (the loop's default), and MKL's packed GEMM on a weight packed once
(``cblas_sgemm_compute``; what the loop uses from ``recur.ops.cpu.PACK_MIN_B`` /
``PACK_MIN_T`` on), plus the time to pack the weight once. float32, one thread, each call
through the generated library's own self-test entry points (``gemm_rows`` / ``packed_rows``),
medians of interleaved repeats. This is where the packing thresholds come from.

    .venv/bin/python benchmarks/packed_gemm.py          # table + benchmarks/results/packed-gemm-COMMIT.json
    .venv/bin/python benchmarks/packed_gemm.py --B 1 4 16 --H 128 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from _meta import commit

from recur import cells
from recur.ops import cpu


def per_call_us(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--H", type=int, nargs="+", default=[128, 512])
    p.add_argument("--gates", type=int, default=4, help="G (4: LSTM)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    dt = torch.float32
    k = cpu.kernel(cells.GRU, 2, 2, 6, [], dt)   # any kernel: its library has the entries
    gemm, pg = cpu.time_loop_gemm(k, dt), cpu.packed_gemm(k, dt)
    if gemm is None or pg is None:
        raise SystemExit("this PyTorch has no BLAS sgemm or no MKL packed sgemm that passes "
                         "the self-test: nothing to compare")
    rows = []
    for H in args.H:
        GH = args.gates * H
        w = torch.randn(GH, H)
        wt = w.t().contiguous()
        for B in args.B:
            h, out = torch.randn(B, H), torch.empty(B, GH)
            buf = torch.empty(pg.size(B, GH, H), dtype=torch.uint8)

            def pack():
                pg.pack(buf.data_ptr(), w.data_ptr(), True, B, GH, H, H)

            pack()
            fns = {
                "sgemm_contiguous_us": lambda: k.gemm_rows(gemm, B, GH, H, h.data_ptr(),
                                                           wt.data_ptr(), out.data_ptr()),
                "packed_us": lambda: k.packed_rows(pg.compute, buf.data_ptr(), B, GH, H,
                                                   h.data_ptr(), out.data_ptr()),
                "pack_once_us": pack,
            }
            calls = max(5, int(2e4 / (B * H * GH / 1e6 + 1)))  # ~a few ms per measurement
            got = {n: [] for n in fns}
            for f in fns.values():
                per_call_us(f, 3)
            for _ in range(args.repeats):
                for n, f in fns.items():
                    got[n].append(per_call_us(f, calls if n != "pack_once_us" else 5))
            torch.testing.assert_close(out, h @ w.t(), rtol=1e-4, atol=1e-4)
            row = {"B": B, "H": H, "GH": GH, **{n: statistics.median(v) for n, v in got.items()}}
            row["packed_over_sgemm"] = row["packed_us"] / row["sgemm_contiguous_us"]
            saved = row["sgemm_contiguous_us"] - row["packed_us"]
            row["pack_in_steps_saved"] = row["pack_once_us"] / saved if saved > 0 else None
            rows.append(row)
    code = commit()
    meta = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
            "cpus": os.cpu_count(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "commit": code, "threads": 1, "PACK_MIN_B": cpu.PACK_MIN_B,
            "PACK_MIN_T": cpu.PACK_MIN_T}
    print(f"# one step's h @ W_hh^T, float32, 1 thread, {meta['cpus']}-CPU {meta['machine']}, "
          f"torch {meta['torch']}, commit {code}, {meta['date']}")
    print("|   B |    H | sgemm W^T contiguous (us) | packed (us) | packed / sgemm | pack once "
          "(us) | pack = steps saved |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['B']:3d} | {r['H']:4d} | {r['sgemm_contiguous_us']:25.1f} | "
              f"{r['packed_us']:11.1f} | {r['packed_over_sgemm']:14.2f} | "
              f"{r['pack_once_us']:14.1f} | " + (
                  "never" if r["pack_in_steps_saved"] is None
                  else f"{r['pack_in_steps_saved']:.1f}").rjust(18) + " |")
    out = Path(args.json) if args.json else \
        Path(__file__).resolve().parent / "results" / f"packed-gemm-{code}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
