"""What the cpu backend's buffer cache (``recur.ops.memory``) saves: a whole layer timed with
the cache on (``CACHE_BYTES`` as shipped) and off (0), and torch.nn.LSTM / GRU of the same size
as the peer, interleaved in one process, medians (``benchmarks/_ab.py``). recur's
LayerNormLSTM and LayerNormGRU and the peephole LSTM of ``variants.py`` on the ``cpu``
backend, float32, input 64, one thread; inference (``no_grad``) and forward + backward.

    .venv/bin/python benchmarks/buffer_cache.py --json benchmarks/results/buffer-cache-COMMIT.json
    .venv/bin/python benchmarks/buffer_cache.py --B 64 --H 512 --T 64 512
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from _ab import interleaved
from _meta import commit, cpu_model, write_json
from torch import nn
from variants import _once, peephole_lstm

import recur
from recur.ops import memory

CELLS = {"LayerNormLSTM": (lambda I, H: recur.LayerNormLSTM(I, H, backend="cpu"), nn.LSTM),
         "LayerNormGRU": (lambda I, H: recur.LayerNormGRU(I, H, backend="cpu"), nn.GRU),
         "peephole LSTM": (lambda I, H: recur.CustomRNN(peephole_lstm, I, H, backend="cpu"),
                           nn.LSTM)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, nargs="+", default=[16, 64])
    p.add_argument("--H", type=int, nargs="+", default=[128, 512])
    p.add_argument("--T", type=int, nargs="+", default=[64])
    p.add_argument("--I", type=int, default=64)
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--budget", type=float, default=2.0, help="seconds per size and mode")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if memory._free_check() is None:
        raise SystemExit("this PyTorch has no usable storage count: the cache is off anyway")
    shipped = memory.CACHE_BYTES

    def cache(on: bool):
        def apply():
            memory.CACHE_BYTES = shipped if on else 0
        return apply

    settings = {"on": cache(True), "off": cache(False)}
    rows = []
    try:
        for name in args.cells:
            make, peer_cls = CELLS[name]
            for T in args.T:
                for H in args.H:
                    m, peer = make(args.I, H), peer_cls(args.I, H)
                    for B in args.B:
                        x = torch.randn(T, B, args.I)
                        for mode, train in (("fwd", False), ("fwd+bwd", True)):
                            reps, med = interleaved(m, x, train, settings, args.budget)
                            nn_ms = sorted(_once(peer, x, train) for _ in range(5))[2] * 1e3
                            row = {"cell": name, "T": T, "H": H, "B": B, "mode": mode,
                                   "repeats": reps, "on_ms": med["on"] * 1e3,
                                   "off_ms": med["off"] * 1e3, "nn_ms": nn_ms,
                                   "on_over_off": med["on"] / med["off"]}
                            rows.append(row)
                            print(f"{name:14s} T={T:4d} H={H:4d} B={B:3d} {mode:8s} "
                                  f"on {row['on_ms']:9.3f} ms  off {row['off_ms']:9.3f} ms  "
                                  f"on / off {row['on_over_off']:.3f}  torch.nn "
                                  f"{nn_ms:9.3f} ms", flush=True)
    finally:
        memory.CACHE_BYTES = shipped
    meta = {"machine": platform.machine(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "commit": commit(),
            "threads": 1, "CACHE_BYTES": shipped, "CACHE_MIN_BYTES": memory.CACHE_MIN_BYTES}
    print(f"\n# recur on the cpu backend, float32, 1 thread, {meta['cpu']} ({meta['cpus']} "
          f"CPUs), torch {meta['torch']}, commit {meta['commit']}, {meta['date']}: time with "
          f"the buffer cache / without (< 1: faster with it); torch.nn.LSTM / GRU: five "
          f"calls after the A/B, median\n")
    print("| cell | mode | T | H | B | on / off | on, ms | off, ms | torch.nn, ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['cell']} | {r['mode']} | {r['T']} | {r['H']} | {r['B']} | "
              f"{r['on_over_off']:.3f} | {r['on_ms']:.2f} | {r['off_ms']:.2f} | "
              f"{r['nn_ms']:.2f} |")
    write_json(args.json, meta, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
