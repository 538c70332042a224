"""How ``recur.ops.cpu.mm`` should cut its whole-sequence products into ``brgemm`` calls.

``mm`` (float32, one thread) runs the input projection and the weight gradients of the
``cpu`` backend as PyTorch's ``brgemm`` calls on blocks of ``MM_BLOCK_M`` rows,
``MM_BLOCK_K`` inner steps and ``MM_BLOCK_N`` columns. This times the products of one LSTM
layer (G = 4H gates, input I, T*B rows) under several blockings, interleaved in one process,
medians, each against the first:

- ``proj``: ``x [T*B, I] @ W_ih^T [I, G]``;          ``dx``: ``dY [T*B, G] @ W_ih [G, I]``;
- ``dW_ih^T``: ``x^T [I, T*B] @ dY [T*B, G]``;      ``dW_hh^T``: ``H^T [H, T*B] @ dY [T*B, G]``.

Blockings are ``M/K/N`` (``N`` 0: all the columns in one call, the order before 2026-11-30:
rows outermost, then inner steps; otherwise columns outermost, then rows, then inner steps).

    .venv/bin/python benchmarks/mm_blocks.py --json benchmarks/results/mm-blocks-COMMIT.json
    .venv/bin/python benchmarks/mm_blocks.py --blockings 256/256/0 512/256/512 --B 64 --H 512
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from _meta import commit, cpu_model, write_json

from recur.ops import cpu


def products(T: int, B: int, H: int, I: int) -> dict[str, tuple[int, int, int]]:
    """name -> (M, K, N) of the layer's whole-sequence products."""
    G, R = 4 * H, T * B
    return {"proj": (R, I, G), "dx": (R, G, I), "dW_ih^T": (I, R, G), "dW_hh^T": (H, R, G)}


def _knob(blocking: str):
    m, k, n = (int(v) for v in blocking.split("/"))

    def apply():
        cpu.MM_BLOCK_M, cpu.MM_BLOCK_K, cpu.MM_BLOCK_N = m, k, n or (1 << 40)
    return apply


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, nargs="+", default=[16, 64])
    p.add_argument("--H", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--T", type=int, nargs="+", default=[64])
    p.add_argument("--I", type=int, default=64)
    p.add_argument("--blockings", nargs="+", default=["256/256/0", "512/256/512"])
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    saved = cpu.MM_BLOCK_M, cpu.MM_BLOCK_K, cpu.MM_BLOCK_N
    first, *others = args.blockings
    rows = []
    try:
        for T in args.T:
            for H in args.H:
                for B in args.B:
                    for name, (M, K, N) in products(T, B, H, args.I).items():
                        a, b = torch.randn(M, K), torch.randn(K, N)
                        if cpu._mm_call(a, b) is None:
                            continue  # torch.mm: nothing to compare
                        ref = a @ b
                        got: dict[str, list[float]] = {s: [] for s in args.blockings}
                        for s in args.blockings:  # warm (JIT kernels) and check
                            _knob(s)()
                            out = cpu.mm(a, b)
                            assert torch.allclose(out, ref, rtol=1e-3, atol=1e-3), s
                        for _ in range(args.repeat):
                            for s in args.blockings:
                                _knob(s)()
                                t0 = time.perf_counter()
                                cpu.mm(a, b)
                                got[s].append(time.perf_counter() - t0)
                        med = {s: statistics.median(v) for s, v in got.items()}
                        row = {"T": T, "B": B, "H": H, "product": name, "M": M, "K": K, "N": N,
                               **{f"{s}_ms": med[s] * 1e3 for s in args.blockings},
                               **{f"{s}_over_{first}": med[s] / med[first] for s in others}}
                        rows.append(row)
                        print(f"T={T} B={B:3d} H={H:4d} {name:8s} [{M}x{K}]@[{K}x{N}] " +
                              "  ".join(f"{s} {row[s + '_ms']:8.3f} ms" for s in args.blockings)
                              + "  " + "  ".join(f"{s} / {first} {row[f'{s}_over_{first}']:.3f}"
                                                 for s in others), flush=True)
    finally:
        cpu.MM_BLOCK_M, cpu.MM_BLOCK_K, cpu.MM_BLOCK_N = saved
    meta = {"machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "commit": commit(),
            "threads": 1, "repeat": args.repeat, "blockings": args.blockings}
    print(f"\n# recur.ops.cpu.mm, float32, 1 thread, {meta['cpu']} ({meta['cpus']} CPUs), torch "
          f"{meta['torch']}, commit {meta['commit']}, {meta['date']}: time with each blocking "
          f"/ with {first} (< 1: faster)\n")
    print("| T | B | H | product | " + " | ".join(f"{s} / {first}" for s in others) + " |")
    print("|---:|---:|---:|---|" + "---:|" * len(others))
    for r in rows:
        print(f"| {r['T']} | {r['B']} | {r['H']} | {r['product']} | " +
              " | ".join(f"{r[f'{s}_over_{first}']:.3f}" for s in others) + " |")
    write_json(args.json, meta, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
