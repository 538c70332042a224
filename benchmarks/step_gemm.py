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
    .venv/bin/python benchmarks/step_gemm.py --blocks 0 128 --neighbour --B 16 64

``--blocks 0 64 128`` compares instead the forward loop's ``brgemm`` products in one call (0)
with the same on column panels of 64 and 128 of ``W_hh^T``, each stored contiguous
(``recur.ops.cpu.BRGEMM_BLOCK_N``; up to commit bbfd256, column blocks read in place: the
``step-gemm-blocks-*`` results before it), each against the first value (JSON:
``step-gemm-blocks-COMMIT.json``; the run at 4653b90 is kept as
``step-gemm-panels-4653b90.json``). ``--neighbour`` runs, for the whole
measurement, a second process that copies a 64 MiB buffer over and over (one thread): a
neighbour that shares the last-level cache and the memory bus, as on a shared machine
(``-neighbour`` joins the JSON's name).

``--kblocks 0 256 512`` compares the backward loop's ``brgemm`` products (``dh = dhg W_hh``)
in one call (0) with the same on slices of 256 and 512 rows of ``W_hh``, added up
(``recur.ops.cpu.BRGEMM_BLOCK_K``), forward + backward only (JSON:
``step-gemm-kblocks-COMMIT.json``). Both options time the blocks from B=1 on, wherever
``W_hh`` is larger than the L2 cache (panels: at least as large).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
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
    p.add_argument("--blocks", type=int, nargs="+", default=None,
                   help="compare the forward's brgemm on these column panels (0: one call)")
    p.add_argument("--kblocks", type=int, nargs="+", default=None,
                   help="compare the backward's brgemm on these slices of W_hh (0: one call)")
    p.add_argument("--neighbour", action="store_true",
                   help="a second process streams through 64 MiB meanwhile")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    saved, saved_block, saved_block_b, saved_block_k = cpu.BRGEMM_MIN_B, cpu.BRGEMM_BLOCK_N, \
        cpu.BRGEMM_BLOCK_MIN_B, cpu.BRGEMM_BLOCK_K
    saved_panel_b = cpu.BRGEMM_PANEL_MIN_B
    probe = cpu.kernel(recur.cells.GRU, 2, 2, 6, [], torch.float32)
    if cpu.time_loop_gemm(probe, torch.float32) is None or \
            cpu.time_loop_brgemm(probe, torch.float32, 1) is None:
        raise SystemExit("this PyTorch lacks a BLAS sgemm or a float brgemm: nothing to compare")

    def knob(value, block=None, kblock=None):
        def apply():
            cpu.BRGEMM_MIN_B, cpu.BRGEMM_BLOCK_N, cpu.BRGEMM_BLOCK_MIN_B = value, block, 1
            cpu.BRGEMM_BLOCK_K, cpu.BRGEMM_PANEL_MIN_B = kblock, 1
        return apply

    modes = (("fwd", False), ("fwd+bwd", True))
    if args.kblocks:
        settings = {f"kb{b}": knob(1, saved_block, b or None) for b in args.kblocks}
        modes = modes[1:]
    elif args.blocks:
        settings = {f"nb{b}": knob(1, b or None) for b in args.blocks}
    else:
        settings = {"sgemm": knob(None), "brgemm": knob(1)}
    first, *others = settings
    rows = []
    neighbour = subprocess.Popen(
        [sys.executable, "-c", "import torch; torch.set_num_threads(1); "
         "a = torch.ones(1 << 24); b = torch.empty_like(a)\nwhile True: b.copy_(a)"]
    ) if args.neighbour else None
    try:
        for name in args.cells:
            for T in args.T:
                for H in args.H:
                    m = CELLS[name](args.I, H, backend="cpu")
                    for B in args.B:
                        x = torch.randn(T, B, args.I)
                        for mode, train in modes:
                            reps, med = interleaved(m, x, train, settings, args.budget)
                            row = {"cell": name, "T": T, "H": H, "B": B, "mode": mode,
                                   "repeats": reps,
                                   **{f"{n}_ms": med[n] * 1e3 for n in settings},
                                   **{f"{n}_over_{first}": med[n] / med[first]
                                      for n in others}}
                            rows.append(row)
                            print(f"{name:14s} T={T:4d} H={H:4d} B={B:3d} {mode:8s} " +
                                  "  ".join(f"{n} {row[n + '_ms']:9.3f} ms" for n in settings)
                                  + "  " + "  ".join(f"{n} / {first} "
                                                     f"{row[f'{n}_over_{first}']:.3f}"
                                                     for n in others), flush=True)
    finally:
        cpu.BRGEMM_MIN_B, cpu.BRGEMM_BLOCK_N, cpu.BRGEMM_BLOCK_MIN_B = \
            saved, saved_block, saved_block_b
        cpu.BRGEMM_BLOCK_K, cpu.BRGEMM_PANEL_MIN_B = saved_block_k, saved_panel_b
        if neighbour is not None:
            neighbour.kill()
    code = commit()
    meta = {"machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "commit": code,
            "threads": args.threads, "L2_bytes": cpu._l2_cache_bytes(), "BRGEMM_MIN_B": saved,
            "BRGEMM_BLOCK_N": saved_block, "BRGEMM_BLOCK_MIN_B": saved_block_b,
            "BRGEMM_BLOCK_K": saved_block_k, "BRGEMM_PANEL_MIN_B": saved_panel_b,
            "neighbour": args.neighbour,
            "PACK_MIN_B": cpu.PACK_MIN_B, "PACK_MIN_T": cpu.PACK_MIN_T}
    print(f"\n# recur on the cpu backend, float32, {args.threads} thread(s), {meta['cpu']} "
          f"({meta['cpus']} CPUs), torch {meta['torch']}, commit {code}, {meta['date']}: "
          f"{'with a neighbour streaming memory, ' if args.neighbour else ''}"
          f"time with each setting / with {first} (< 1: faster than {first})")
    for name in args.cells:
        for mode, _ in modes:
            for n in others:
                print(f"\n{name}, {mode}, {n} / {first}\n\n| T | H | " +
                      " | ".join(f"B={b}" for b in args.B) + " |")
                print("|---:|---:|" + "---:|" * len(args.B))
                for T in args.T:
                    for H in args.H:
                        cells = [next(r[f"{n}_over_{first}"] for r in rows
                                      if r["cell"] == name and r["T"] == T and r["H"] == H and
                                      r["B"] == b and r["mode"] == mode) for b in args.B]
                        print(f"| {T} | {H} | " + " | ".join(f"{c:.3f}" for c in cells) +
                              " |")
    tag = ("-kblocks" if args.kblocks else "-blocks" if args.blocks else "") + \
        ("-neighbour" if args.neighbour else "")
    out = Path(args.json) if args.json else \
        Path(__file__).resolve().parent / "results" / f"step-gemm{tag}-{code}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
