"""How well-conditioned the layer-norm cells are on the GPU check's cases: for each cell, size
and LN_h gain, the float32 reference loop's error against float64 (what rounding alone
costs), and the float64 loop's change when ``xg`` is perturbed by a relative 4e-3 (one
bfloat16 rounding). Where these are large the problem itself amplifies rounding, and no
kernel can be held to a float32 tolerance on it. CPU only, one seed.

    python benchmarks/ln_conditioning.py --json benchmarks/results/ln-conditioning-COMMIT.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import torch
from _meta import commit

from recur import testing
from recur.cells import LSTM
from recur.cells.layernorm import LAYERNORM_GRU, LAYERNORM_LSTM

CELLS = {"LSTM": LSTM, "LayerNormLSTM": LAYERNORM_LSTM, "LayerNormGRU": LAYERNORM_GRU}


def measure(name: str, B: int, H: int, T: int, h_gain: float, rel: float) -> dict:
    cell = CELLS[name]
    ln = cell.norm is not None
    inputs = testing.make_inputs(cell, T, B, H, bias=not ln)
    cw = testing.make_ln_weights(cell, H, h_gain=h_gain) if ln else []
    lens = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(B + T))
    kw = {"lengths": lens, "cell_weights": cw}
    want = testing.run_scan(cell, inputs, backend="reference", cast=torch.float64, **kw)
    e32 = testing.relative_errors(testing.run_scan(cell, inputs, backend="reference", **kw),
                                  want)
    xg = inputs[0].detach().double()
    noise = torch.rand(xg.shape, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(7)) * 2 - 1
    moved = (xg * (1 + rel * noise)).requires_grad_()
    ep = testing.relative_errors(
        testing.run_scan(cell, (moved,) + inputs[1:], backend="reference", cast=torch.float64,
                         **kw), want)
    return {"cell": name, "B": B, "H": H, "T": T, "h_gain": h_gain if ln else None,
            "fp32_out": e32["out"], "fp32_max": max(e32.values()),
            "fp32_worst": max(e32, key=e32.get), "perturbed_out": ep["out"],
            "perturbed_max": max(ep.values()), "perturbation": rel}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--sizes", default="16x64,64x256", help="BxH,... (the GPU check's first two)")
    ap.add_argument("--gains", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    for name in CELLS:
        for B, H in sizes:
            for g in (args.gains if CELLS[name].norm else [1.0]):
                rows.append(measure(name, B, H, args.T, g, 4e-3))
    meta = {"commit": commit(), "date": datetime.date.today().isoformat(),
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__}
    print(f"# commit {meta['commit']} | {meta['date']} | torch {meta['torch']} | T={args.T}")
    print("norm-relative error against float64; max = over outputs, states and gradients")
    print("| cell | B | H | LN_h gain | fp32 loop: out | fp32 loop: max | xg x(1+-4e-3): out "
          "| xg x(1+-4e-3): max |")
    print("|" + "---|" * 8)
    for r in rows:
        g = "-" if r["h_gain"] is None else f"{r['h_gain']:g}"
        print(f"| {r['cell']} | {r['B']} | {r['H']} | {g} | {r['fp32_out']:.1e} | "
              f"{r['fp32_max']:.1e} | {r['perturbed_out']:.1e} | {r['perturbed_max']:.1e} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
