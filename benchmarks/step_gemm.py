"""Which product the cpu backend's C time loop should run per step: BLAS ``sgemm`` (MKL in
PyTorch's x86 builds; packed once per sequence where ``recur.ops.cpu.PACK_MIN_*`` say so) or
PyTorch's float32 ``brgemm`` (oneDNN's JIT micro-kernel, ``recur.ops.cpu.time_loop_brgemm``).
A whole layer is timed both ways in one process, interleaved, medians: recur's LayerNormLSTM
and LayerNormGRU on the ``cpu`` backend (float32, input 64), inference (``no_grad``) and
forward + backward, over B, H and T. This is where ``recur.ops.cpu.BRGEMM_MIN_B`` comes from;
after commit 91fe98d, the switch also takes the whole-sequence products (the input
projection, the weight gradients: ``recur.ops.cpu.mm``) through ``brgemm`` with one thread.

    .venv/bin/python benchmarks/step_gemm.py     # table + benchmarks/results/step-gemm-COMMIT.json
    .venv/bin/python benchmarks/step_gemm.py --B 1 2 --H 512 --T 64 --threads 2
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

CELLS = {"LayerNormLSTM": recur.LayerNormLSTM, "LayerNormGRU": recur.LayerNormGRU}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, nargs="+", default=[1, 2, 4, 16, 64])
    p.add_argument("--H", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--T", type=int, nargs="+", default=[64])
    p.add_argument("--I", type=int, default=64)
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget", type=float, default=1.5, help="seconds per size and mode")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    saved = cpu.BRGEMM_MIN_B
    probe = cpu.kernel(recur.cells.GRU, 2, 2, 6, [], torch.float32)
    if cpu.time_loop_gemm(probe, torch.float32) is None or \
            cpu.time_loop_brgemm(probe, torch.float32, 1) is None:
        raise SystemExit("this PyTorch lacks a BLAS sgemm or a float brgemm: nothing to compare")

    def knob(value):
        def apply():
            cpu.BRGEMM_MIN_B = value
        return apply

    settings = {"sgemm": knob(None), "brgemm": knob(1)}
    rows = []
    try:
        for name in args.cells:
            for T in args.T:
                for H in args.H:
                    m = CELLS[name](args.I, H, backend="cpu")
                    for B in args.B:
                        x = torch.randn(T, B, args.I)
                        for mode, train in (("fwd", False), ("fwd+bwd", True)):
                            reps, med = interleaved(m, x, train, settings, args.budget)
                            row = {"cell": name, "T": T, "H": H, "B": B, "mode": mode,
                                   "repeats": reps, "sgemm_ms": med["sgemm"] * 1e3,
                                   "brgemm_ms": med["brgemm"] * 1e3,
                                   "brgemm_over_sgemm": med["brgemm"] / med["sgemm"]}
                            rows.append(row)
                            print(f"{name:14s} T={T:4d} H={H:4d} B={B:3d} {mode:8s} sgemm "
                                  f"{row['sgemm_ms']:9.3f} ms  brgemm {row['brgemm_ms']:9.3f} "
                                  f"ms  brgemm / sgemm {row['brgemm_over_sgemm']:.3f}",
                                  flush=True)
    finally:
        cpu.BRGEMM_MIN_B = saved
    code = commit()
    meta = {"machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "commit": code,
            "threads": args.threads, "L2_bytes": cpu._l2_cache_bytes(), "BRGEMM_MIN_B": saved,
            "PACK_MIN_B": cpu.PACK_MIN_B, "PACK_MIN_T": cpu.PACK_MIN_T}
    print(f"\n# recur on the cpu backend, float32, {args.threads} thread(s), {meta['cpu']} "
          f"({meta['cpus']} CPUs), torch {meta['torch']}, commit {code}, {meta['date']}: "
          "time with brgemm / with sgemm per step (< 1: brgemm faster)")
    for name in args.cells:
        for mode in ("fwd", "fwd+bwd"):
            print(f"\n{name}, {mode}\n\n| T | H | " + " | ".join(f"B={b}" for b in args.B) +
                  " |")
            print("|---:|---:|" + "---:|" * len(args.B))
            for T in args.T:
                for H in args.H:
                    cells = [next(r["brgemm_over_sgemm"] for r in rows if r["cell"] == name and
                                  r["T"] == T and r["H"] == H and r["B"] == b and
                                  r["mode"] == mode) for b in args.B]
                    print(f"| {T} | {H} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    out = Path(args.json) if args.json else \
        Path(__file__).resolve().parent / "results" / f"step-gemm-{code}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
