"""Per-step latency of streaming inference (``layer.step``) on the CPU.

Feeds one time step at a time (``y, state = layer.step(x_t, state)``, batch B) and reports
the median wall time per step, for recur's layers on the default backend, next to torch.nn's
layer called on a one-step sequence and torch.nn's cell (``LSTMCell`` / ``GRUCell`` /
``RNNCell``, the kernel of one step), plus recur's layer-norm variants against the same cell.
The modules are timed interleaved in one process (medians), one thread by default.

    python benchmarks/streaming.py                    # table
    python benchmarks/streaming.py --json out.json    # table + JSON
    python benchmarks/streaming.py --hidden 128 512 --batch 1 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from _meta import commit, cpu_model

import recur


def per_step_us(step, x, state, steps: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean time of ``steps`` calls of ``step``, in µs."""
    times = []
    with torch.inference_mode():
        for _ in range(3):
            _, state = step(x, state)  # warm up
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                _, state = step(x, state)
            times.append((time.perf_counter() - t0) / steps * 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--input", type=int, default=32)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    cells = {"LSTM": torch.nn.LSTMCell, "GRU": torch.nn.GRUCell, "RNN": torch.nn.RNNCell}
    kinds = [(m, m) for m in ("LSTM", "GRU", "RNN")]
    if args.variants:
        kinds += [("LayerNormLSTM", "LSTM"), ("LayerNormGRU", "GRU")]
    for name, mode in kinds:
        for H in args.hidden:
            for B in args.batch:
                ours = getattr(recur, name)(args.input, H, num_layers=args.layers).eval()
                ref = getattr(torch.nn, mode)(args.input, H, num_layers=args.layers).eval()
                if name == mode:
                    ref.load_state_dict(ours.state_dict())
                cell = cells[mode](args.input, H).eval()
                x = torch.randn(B, args.input)
                row = {"mode": name, "hidden": H, "batch": B, "layers": args.layers}
                fns = {"recur_step_us": (ours.step, None),
                       "torch_nn_us": (lambda x, s, ref=ref: ref(x.unsqueeze(0), s), None),
                       "torch_cell_us": (lambda x, s, cell=cell: (None, cell(x, s)), None)}
                got = {k: [] for k in fns}
                for _ in range(args.repeats):  # interleaved
                    for k, (fn, s0) in fns.items():
                        got[k].append(per_step_us(fn, x, s0, args.steps, 1))
                for k, v in got.items():
                    row[k] = statistics.median(v)
                row["step_over_cell"] = row["recur_step_us"] / row["torch_cell_us"]
                rows.append(row)
    meta = {"machine": cpu_model(), "commit": commit(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}
    print(f"# streaming step latency, CPU ({meta['machine']}, {meta['threads']} threads, "
          f"torch {meta['torch']}, {meta['date']})")
    print(f"{'module':14} {'H':>5} {'B':>4} {'recur step (us)':>16} {'torch.nn T=1':>13} "
          f"{'torch.nn cell':>14} {'step/cell':>10}")
    for r in rows:
        print(f"{r['mode']:14} {r['hidden']:5d} {r['batch']:4d} {r['recur_step_us']:16.1f} "
              f"{r['torch_nn_us']:13.1f} {r['torch_cell_us']:14.1f} {r['step_over_cell']:10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
