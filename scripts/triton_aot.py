"""Compile recur's grid / stream Triton kernels ahead of time for a GPU target, no GPU needed.

    .venv/bin/python scripts/triton_aot.py     # (LayerNorm) LSTM + GRU, float32 + bfloat16, sm_90
    .venv/bin/python scripts/triton_aot.py --arch 80 --json aot.json

Checks what the interpreter cannot: that the kernels lower to PTX and SASS for the target
(Triton's own ``ptxas``), and how much shared memory each compiled kernel uses, next to the
launch planner's estimate (``_launch._smem`` / ``_launch._smem_stream``), which must not be
below it (the planner uses the estimate to keep every program resident). Prints one line
per kernel; exit status 1 when a kernel fails to compile or uses more than the estimate.
Must run with ``TRITON_INTERPRET`` unset (the interpreter replaces the compiler).

``--resources``: instead, the LSTM grid kernels at H=256 (BK=256) for the batch / unit tiles
the launch planner can pick, each kernel's PTX through a ``ptxas -v`` that Triton's package
carries: registers, stack frame and spill bytes per thread (what made the float32 grid path
slow at wide tiles on an H200; see ``_launch.FP32_GRID_MAX_BB``).

    .venv/bin/python scripts/triton_aot.py --resources --json triton-resources.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10")
    p.add_argument("--quick", action="store_true", help="LSTM float32 only (for the tests)")
    p.add_argument("--json", default=None)
    p.add_argument("--resources", action="store_true",
                   help="ptxas -v report of the LSTM grid kernels per tile (see above)")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("unset TRITON_INTERPRET: the interpreter replaces the compiler")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from recur.cells.triton_pointwise import GRU, LSTM
    from recur.ops.triton import _launch
    from recur.ops.triton._backward import bwd_grid_kernel
    from recur.ops.triton._forward import fwd_grid_kernel

    target = GPUTarget("cuda", args.arch, 32)
    types = {4: "fp32", 2: "bf16"}

    def compile_one(kernel, consts, wbytes, resources=False):
        sig = {}
        for name in kernel.arg_names:
            if name in consts:
                continue
            if name in ("T", "B", "H", "HO", "HM"):
                sig[name] = "i32"
            elif name in ("zp0", "zp1"):
                sig[name] = "fp32"
            elif name in ("bar_ptr", "len_ptr"):
                sig[name] = "*i32"
            elif name in ("whh_ptr", "xg_ptr", "whr_ptr"):
                sig[name] = "*" + types[wbytes]
            else:
                sig[name] = "*fp32"
        src = ASTSource(kernel, sig, constexprs=consts)
        compiled = triton.compile(src, target=target, options={"num_warps": 8})
        return ptxas_report(compiled.asm["ptx"]) if resources else compiled.metadata.shared

    if args.resources:
        return resources(args, compile_one, _launch, fwd_grid_kernel, bwd_grid_kernel, LSTM)

    # (name, pointwise, G, NS, LN, PROJ): LN 2 / 1 are the layer-norm LSTM / GRU, PROJ the
    # LSTM with proj_size (each an extra barrier per step)
    cases = [("lstm", LSTM, 4, 2, 0, False), ("gru", GRU, 3, 1, 0, False),
             ("ln_lstm", LSTM, 4, 2, 2, False), ("ln_gru", GRU, 3, 1, 1, False),
             ("lstm_p", LSTM, 4, 2, 0, True)]
    # (wbytes, path, BB, BN, BK): the plans benchmarks/gpu.py's grid gets on an H100
    configs = [(4, "stream", 16, 16, _launch.STREAM_BK), (4, "stream", 64, 32, _launch.STREAM_BK),
               (2, "stream", 64, 16, _launch.STREAM_BK), (2, "grid", 16, 16, 512),
               (4, "grid", 16, 16, 512)]
    if args.quick:
        cases, configs = [cases[0], cases[2], cases[4]], [configs[0], configs[-1]]
    rows, ok = [], True
    for name, pw, G, NS, LN, PROJ in cases:
        for wbytes, path, BB, BN, BK in configs:
            stream = path == "stream"
            BP = 16 if PROJ else BN  # projection: entries of h per program
            BW = max(BN, BP)
            est = (_launch._smem_stream(G, BK, BW, BB, wbytes) if stream
                   else _launch._smem(G, BK, BW, BB, wbytes))
            if PROJ:  # as _launch.plan: the W_hr chunks reuse the W_hh buffers
                est = max(est, _launch._smem_stream(1, _launch.PROJ_CHUNK.value, BW, BB,
                                                    wbytes))
            common = {"G": G, "NS": NS, "HAS_LEN": True, "REVERSE": False, "HMASK": True,
                      "ZONE": 0 if PROJ else 1, "LN": LN, "EPS": 1e-5, "STREAM": stream,
                      "PROJ": PROJ, "BB": BB, "BN": BN, "BK": BK, "BP": BP,
                      "PREC": "ieee" if wbytes == 4 else "tf32"}
            row = {"cell": name, "dtype": types[wbytes], "path": path, "BB": BB, "BN": BN,
                   "BK": BK, "estimate": est}
            try:
                row["fwd_shared"] = compile_one(
                    fwd_grid_kernel, {**common, "cell_fwd": pw.fwd, "HAS_BIAS": not LN,
                                      "SAVE": True}, wbytes)
                row["bwd_shared"] = compile_one(
                    bwd_grid_kernel, {**common, "cell_fwd": pw.fwd, "cell_bwd": pw.bwd,
                                      "HAS_DOUT": True}, wbytes)
                row["ok"] = max(row["fwd_shared"], row["bwd_shared"]) <= est
            except Exception as e:  # noqa: BLE001  (report every failure, not only the first)
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                row["ok"] = False
            ok &= row["ok"]
            rows.append(row)
            print(f"{name:7} {row['dtype']} {path:6} BB={BB:<3} BN={BN:<3} BK={BK:<4} "
                  f"fwd {row.get('fwd_shared', '-')!s:>7} B  bwd {row.get('bwd_shared', '-')!s:>7} B"
                  f"  estimate {est:>7} B  {'ok' if row['ok'] else 'FAIL'}"
                  + (f"  {row['error']}" if "error" in row else ""), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"arch": args.arch, "triton": triton.__version__, "rows": rows}, fh,
                      indent=1)
    return 0 if ok else 1


def ptxas_report(ptx: str) -> dict:
    """``registers``, ``stack_bytes``, ``spill_store_bytes``, ``spill_load_bytes`` of one
    kernel's PTX, from the first ``ptxas`` in Triton's package that assembles it."""
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    import triton

    target = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1)
    bindir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        errors = []
        for exe in sorted(bindir.glob("ptxas*"), reverse=True):
            res = subprocess.run([str(exe), "-v", "--gpu-name", target, str(src), "-o",
                                  str(Path(tmp) / "k.cubin")], capture_output=True, text=True,
                                 check=False)
            if res.returncode == 0:
                text = res.stderr
                num = {k: int(re.search(pat, text).group(1)) for k, pat in (
                    ("registers", r"Used (\d+) registers"),
                    ("stack_bytes", r"(\d+) bytes stack frame"),
                    ("spill_store_bytes", r"(\d+) bytes spill stores"),
                    ("spill_load_bytes", r"(\d+) bytes spill loads"))}
                return {**num, "ptxas": exe.name}
            errors.append(f"{exe.name}: {res.stderr.strip().splitlines()[-1:]}")
    raise RuntimeError(f"no ptxas in {bindir} assembled the kernel: {errors}")


def resources(args, compile_one, _launch, fwd_grid_kernel, bwd_grid_kernel, LSTM) -> int:
    """The ``--resources`` report: LSTM grid kernels, H=256, per (dtype, BB, BN)."""
    import datetime

    import triton

    rows = []
    print("LSTM grid kernels, BK=256 (H=256), sm_%d, Triton %s; bytes per thread"
          % (args.arch, triton.__version__))
    print("| dtype | BB | BN | kernel | registers | stack | spill stores | spill loads |")
    print("|---|---|---|---|---|---|---|---|")
    for wbytes, BB, BN in ((4, 16, 16), (4, 16, 32), (4, 32, 16), (4, 64, 16), (2, 64, 16)):
        common = {"G": 4, "NS": 2, "HAS_LEN": True, "REVERSE": False, "HMASK": False,
                  "ZONE": 0, "LN": 0, "EPS": 1e-5, "STREAM": False, "PROJ": False, "BB": BB,
                  "BN": BN, "BK": 256, "BP": BN, "PREC": "ieee" if wbytes == 4 else "tf32"}
        for name, kernel, extra in (
                ("fwd", fwd_grid_kernel, {"cell_fwd": LSTM.fwd, "HAS_BIAS": True, "SAVE": True}),
                ("bwd", bwd_grid_kernel, {"cell_fwd": LSTM.fwd, "cell_bwd": LSTM.bwd,
                                          "HAS_DOUT": True})):
            rep = compile_one(kernel, {**common, **extra}, wbytes, resources=True)
            row = {"dtype": "fp32" if wbytes == 4 else "bf16", "BB": BB, "BN": BN,
                   "kernel": name, **rep}
            rows.append(row)
            print(f"| {row['dtype']} | {BB} | {BN} | {name} | {rep['registers']} | "
                  f"{rep['stack_bytes']} | {rep['spill_store_bytes']} | "
                  f"{rep['spill_load_bytes']} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"arch": args.arch, "triton": triton.__version__,
                       "date": datetime.date.today().isoformat(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
