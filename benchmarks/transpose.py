"""The transpose of ``W_hh [G*H, H]`` that recur's C time loops make at every call (their
per-step product reads ``W_hh^T`` contiguous): PyTorch's strided copy ``w.t().contiguous()``
against ``recur.ops.cpu.transposed`` with MKL's copy-transpose forced
(``recur.ops.cpu.MKL_TRANSPOSE = True``; by default recur takes it on Intel CPUs only), and
next to them one step's product ``h [B, H] @ W_hh^T`` for scale. One thread, medians of
interleaved repeats.

    .venv/bin/python benchmarks/transpose.py      # table + benchmarks/results/transpose-COMMIT.json
    .venv/bin/python benchmarks/transpose.py --H 128 512 --gates 3 --dtype float64
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
from _meta import commit, cpu_model
from packed_gemm import per_call_us

from recur.ops import cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--H", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--gates", type=int, nargs="+", default=[3, 4], help="G (4: LSTM, 3: GRU)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    dt = getattr(torch, args.dtype)
    cpu.MKL_TRANSPOSE = True                                    # the column measures MKL's
    rows = []
    for G in args.gates:
        for H in args.H:
            w = torch.randn(G * H, H, dtype=dt)
            h, out = torch.randn(1, H, dtype=dt), torch.empty(1, G * H, dtype=dt)
            if not torch.equal(cpu.transposed(w), w.t()):
                raise SystemExit("recur.ops.cpu.transposed disagrees with Tensor.t")
            wt = w.t().contiguous()
            fns = {"torch_us": lambda: w.t().contiguous(),
                   "recur_us": lambda: cpu.transposed(w),
                   "step_mm_B1_us": lambda: torch.mm(h, wt, out=out)}
            calls = max(5, int(2e5 / (G * H * H / 1e3 + 10)))
            got = {n: [] for n in fns}
            for f in fns.values():
                per_call_us(f, 3)
            for _ in range(args.repeats):
                for n, f in fns.items():
                    got[n].append(per_call_us(f, calls))
            row = {"G": G, "H": H, **{n: statistics.median(v) for n, v in got.items()}}
            row["torch_over_recur"] = row["torch_us"] / row["recur_us"]
            rows.append(row)
    code = commit()
    mkl = cpu.cpu_codegen.blas_omatcopy(dt) is not None
    meta = {"machine": platform.machine(), "processor": cpu_model(),
            "recur_default_mkl": cpu._intel_cpu(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "commit": code, "threads": 1, "dtype": args.dtype, "mkl_omatcopy": mkl}
    print(f"# W_hh [G*H, H] -> W_hh^T contiguous, {args.dtype}, 1 thread, {meta['cpus']}-CPU "
          f"{meta['machine']}, torch {meta['torch']}, commit {code}, {meta['date']}, MKL "
          f"copy-transpose {'found' if mkl else 'absent (both columns are PyTorch)'}")
    print("| G |    H | w.t().contiguous() (us) | MKL copy-transpose (us) | torch / MKL | "
          "one step h @ W^T, B=1 (us) |")
    print("|--:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['G']} | {r['H']:4d} | {r['torch_us']:23.1f} | {r['recur_us']:23.1f} | "
              f"{r['torch_over_recur']:11.2f} | {r['step_mm_B1_us']:26.1f} |")
    out = Path(args.json) if args.json else \
        Path(__file__).resolve().parent / "results" / f"transpose-{code}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
