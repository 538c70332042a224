"""GPU benchmark of the fused Triton backend against torch.nn (cuDNN), same weights.

For RNN (tanh), LSTM and GRU x {float32, bfloat16, float16} x (B, T, H) in
{(1, 512, 256), (16, 1024, 512), (16, 1024, 768), (64, 256, 1024), (256, 128, 256)}, one
layer, one direction, input size = H:

- recur: ``x @ W_ih^T + b_ih`` (one GEMM) then ``recur.ops.scan(..., backend="triton")``;
- torch.nn: ``nn.RNN / nn.LSTM / nn.GRU`` holding the same weights (input projection
  included, as cuDNN does it).

Measured: forward under ``no_grad`` and forward + ``backward()`` of ``out.sum()``, median of
``triton.testing.do_bench``, in µs per time step; the ratio torch.nn / recur (> 1: recur is
faster); the peak memory of one training step above the inputs; the FLOPs per step.
PyTorch's defaults are kept: cuDNN may use TF32 in float32 (``torch.backends.cudnn.allow_tf32``,
True by default, recorded as ``cudnn_tf32``), while recur's float32 kernels multiply in
full float32 (TF32 off), so float32 rows compare different arithmetic.

    python benchmarks/gpu.py                       # full table
    python benchmarks/gpu.py --quick --json out.json
    python benchmarks/gpu.py --cells LSTM GRU --B 16 64 256 --H 256 512 1024 --T 512
    TRITON_INTERPRET=1 python benchmarks/gpu.py --dry-run --B 2 --H 8 --T 4

Needs a CUDA device and Triton; anywhere else it says so and exits. ``--dry-run`` runs the
same code on the CPU under Triton's interpreter (timed with ``perf_counter``, no memory
figures): it tests this script, it measures nothing worth quoting. ``--json`` is rewritten
after every row, so a run cut off by a time limit keeps the rows it finished.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch
from _meta import commit

CONFIGS = [(1, 512, 256), (16, 1024, 512), (16, 1024, 768), (64, 256, 1024), (256, 128, 256)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CELLS = {"RNN": ("RNN_TANH", torch.nn.RNN), "LSTM": ("LSTM", torch.nn.LSTM),
         "GRU": ("GRU", torch.nn.GRU)}


def flops_per_step(cell: str, B: int, H: int, train: bool) -> float:
    """Matrix FLOPs of one step (input projection + recurrence); backward ~ 2x forward."""
    from recur.cells import BY_MODE

    G = BY_MODE[CELLS[cell][0]].num_gates
    fwd = 2.0 * B * H * G * H * 2  # x W_ih^T and h W_hh^T, input size = H
    return fwd * 3 if train else fwd


def _peak_bytes(fn) -> int | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _cpu_bench(fn, warmup: int, rep: int) -> float:
    """``do_bench``'s answer (ms per call) for a dry run on the CPU: the median of 3 calls."""
    import statistics
    import time

    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_one(cell: str, dtype: torch.dtype, B: int, T: int, H: int, *, rep: int,
              dev: str = "cuda") -> dict:
    import torch.nn.functional as F

    if dev == "cuda":
        from triton.testing import do_bench
    else:
        do_bench = _cpu_bench

    from recur.cells import BY_MODE
    from recur.ops import scan
    from recur.ops.triton import which_path

    mode, module = CELLS[cell]
    c = BY_MODE[mode]
    torch.manual_seed(0)
    ref = module(H, H).to(device=dev, dtype=dtype)
    x = torch.randn(T, B, H, device=dev, dtype=dtype)
    w_ih, w_hh = ref.weight_ih_l0, ref.weight_hh_l0
    b_ih, b_hh = ref.bias_ih_l0, ref.bias_hh_l0
    state0 = tuple(torch.zeros(B, H, device=dev, dtype=dtype) for _ in range(c.num_states))

    def recur_fwd():
        xg = F.linear(x, w_ih, b_ih)  # (T, B, G*H)
        return scan(c, xg, w_hh, b_hh, state0, backend="triton")[0]

    def torch_fwd():
        return ref(x)[0]

    def train(f):
        def step():
            ref.zero_grad(set_to_none=True)
            f().sum().backward()
        return step

    def infer(f):
        def step():
            with torch.no_grad():
                f()
        return step

    row = {"cell": cell, "dtype": str(dtype).removeprefix("torch."), "B": B, "T": T, "H": H,
           "path": which_path(c, torch.empty(1, B, c.num_gates * H, device=dev, dtype=dtype),
                              w_hh)}
    for name, f in (("recur", recur_fwd), ("torch", torch_fwd)):
        for kind, wrap in (("fwd", infer), ("fwdbwd", train)):
            try:
                ms = do_bench(wrap(f), warmup=max(rep // 4, 5), rep=rep)
                row[f"{name}_{kind}_us_per_step"] = ms * 1e3 / T
            except Exception as e:  # noqa: BLE001  (a failed configuration is reported)
                row[f"{name}_{kind}_us_per_step"] = None
                row[f"{name}_{kind}_error"] = f"{type(e).__name__}: {e}"[:200]
        try:
            peak = _peak_bytes(train(f))
            row[f"{name}_peak_train_MiB"] = None if peak is None else peak / 2**20
        except Exception:  # noqa: BLE001
            row[f"{name}_peak_train_MiB"] = None
    for kind in ("fwd", "fwdbwd"):
        a, b = row.get(f"recur_{kind}_us_per_step"), row.get(f"torch_{kind}_us_per_step")
        row[f"ratio_{kind}"] = (b / a) if a and b else None
    row["flops_per_step_fwd"] = flops_per_step(cell, B, H, train=False)
    row["flops_per_step_fwdbwd"] = flops_per_step(cell, B, H, train=True)
    return row


def _fmt(v, spec=".2f") -> str:
    return "—" if v is None else format(v, spec)


def print_table(rows: list[dict], meta: dict) -> None:
    print(f"# {meta['gpu']} | torch {meta['torch']} | triton {meta['triton']} | "
          f"{meta['date']} | commit {meta['commit']} | TF32: matmul "
          f"{meta['tf32']}, cuDNN {meta.get('cudnn_tf32')} (recur's float32 kernels: off)")
    print("µs/step; ratio = torch.nn / recur (> 1: recur faster); peak = one training step")
    print("| cell | dtype | B | T | H | path | recur fwd | torch fwd | ratio | recur f+b | "
          "torch f+b | ratio | recur peak MiB | torch peak MiB | GFLOP/step f+b |")
    print("|" + "---|" * 15)
    for r in rows:
        print(f"| {r['cell']} | {r['dtype']} | {r['B']} | {r['T']} | {r['H']} | {r['path']} | "
              f"{_fmt(r.get('recur_fwd_us_per_step'))} | {_fmt(r.get('torch_fwd_us_per_step'))} "
              f"| {_fmt(r.get('ratio_fwd'))} | {_fmt(r.get('recur_fwdbwd_us_per_step'))} | "
              f"{_fmt(r.get('torch_fwdbwd_us_per_step'))} | {_fmt(r.get('ratio_fwdbwd'))} | "
              f"{_fmt(r.get('recur_peak_train_MiB'), '.1f')} | "
              f"{_fmt(r.get('torch_peak_train_MiB'), '.1f')} | "
              f"{r['flops_per_step_fwdbwd'] / 1e9:.3f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    ap.add_argument("--quick", action="store_true", help="first two (B, T, H) only")
    ap.add_argument("--rep", type=int, default=200, help="do_bench time budget per call, ms")
    ap.add_argument("--B", type=int, nargs="+", default=None, help="batch sizes (grid with "
                    "--H and --T; replaces the default configurations)")
    ap.add_argument("--H", type=int, nargs="+", default=None, help="hidden sizes")
    ap.add_argument("--T", type=int, nargs="+", default=None, help="sequence lengths")
    ap.add_argument("--dry-run", action="store_true", help="CPU, Triton's interpreter "
                    "(TRITON_INTERPRET=1): tests the script, measures nothing")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write rows here")
    args = ap.parse_args(argv)

    if args.dry_run:
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            ap.error("--dry-run needs TRITON_INTERPRET=1 in the environment")
    elif not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; nothing measured. Run it on a machine "
              "with an NVIDIA GPU and Triton installed.")
        return 0
    try:
        import triton
    except ImportError:
        print("benchmarks/gpu.py: the triton package is not installed; nothing measured.")
        return 0

    dev = "cpu" if args.dry_run else "cuda"
    meta = {"gpu": "none (dry run on the CPU)" if args.dry_run else torch.cuda.get_device_name(),
            "torch": torch.__version__, "triton": triton.__version__,
            "cudnn": torch.backends.cudnn.version(),
            "date": datetime.date.today().isoformat(), "commit": commit(),
            "tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32, "dry_run": args.dry_run}
    configs = CONFIGS[:2] if args.quick else CONFIGS
    if args.B or args.H or args.T:
        configs = [(B, T, H) for B in args.B or [16] for T in args.T or [512]
                   for H in args.H or [512]]
    rows = []
    for cell in args.cells:
        for dt in args.dtypes:
            for B, T, H in configs:
                rows.append(bench_one(cell, DTYPES[dt], B, T, H, rep=args.rep, dev=dev))
                print(f"done {cell} {dt} B={B} T={T} H={H}", file=sys.stderr, flush=True)
                if args.json is not None:  # after every row: a cut-off run keeps them
                    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print_table(rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
