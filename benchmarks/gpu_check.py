"""The steps of ``scripts/gpu_check.sh`` that are not a plain benchmark: the fused Triton
kernels against the float64 reference loop, bitwise reproducibility, and LayerNormLSTM's
speed against the eager loop. Every step appends one JSON line per case to ``OUT`` as soon as
the case finishes, so a run cut off by its time limit still returns what it did.

    python benchmarks/gpu_check.py env --out DIR               # versions, nvidia-smi
    python benchmarks/gpu_check.py smoke --out DIR             # one LSTM, fwd+bwd, 20 s
    python benchmarks/gpu_check.py correctness --out DIR --workers 8
    python benchmarks/gpu_check.py repro --out DIR
    python benchmarks/gpu_check.py speed-ln --out DIR
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py STEP --out DIR --dry-run

``--dry-run``: the same cases on the CPU under Triton's interpreter at tiny sizes, the grid
and stream paths forced to one slice of hidden units (``recur.testing.one_slice_plan``),
so the check itself is tested in CI. On a GPU the sizes are chosen to reach each path
(small, grid, stream) and every case records the path that ran. Exit status: 0 when every
case passed, 1 when one failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from _meta import commit

from recur import testing
from recur.cells import GRU, LSTM, RNN_TANH
from recur.cells.layernorm import LAYERNORM_GRU, LAYERNORM_LSTM

CELLS = {"RNN": (RNN_TANH, None), "LSTM": (LSTM, None), "LSTM+proj": (LSTM, "half"),
         "GRU": (GRU, None), "LayerNormLSTM": (LAYERNORM_LSTM, None),
         "LayerNormGRU": (LAYERNORM_GRU, None)}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# LN_h's gains near 0.5, not 1: with unit gains the layer-norm LSTM at T = 128 is chaotic, so
# the float32 *reference loop* is itself up to 3e-3 from float64 and a 4e-3 change of the
# inputs moves the gradients by O(1) (benchmarks/ln_conditioning.py; the first H200 run,
# f149289, failed these cases for that reason alone); at 0.5 it is conditioned like the LSTM
LN_H_GAIN = 0.5
# norm-relative error allowed against float64 (TF32 off); layer norm over few units
# amplifies float32 rounding (see tests/test_triton.py LN_RTOL)
RTOL = {"float32": 1e-4, "bfloat16": 2e-2}
# (B, H) reaching the small, grid and stream paths on an H100 / H200 (the path that ran is
# recorded per case); T = 128
GPU_SIZES = [(16, 64), (64, 256), (16, 512), (64, 1024)]
GPU_T = 128
# dry run: one tiny size, each path taken (grid / stream forced to one slice)
DRY_SIZES = [(3, 5)]
DRY_T = 4
DRY_PATHS = ["small", "grid", "stream"]


def _device(dry: bool) -> str:
    if dry:
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("gpu_check.py --dry-run: set TRITON_INTERPRET=1 before running it "
                             "(the interpreter must be on before triton is imported)")
        return "cpu"
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: no CUDA device here (torch.cuda.is_available() is "
                         "False); use --dry-run on a CPU")
    return "cuda"


def _plan_ctx(path: str, dry: bool):
    """In a dry run, the forced grid / stream plan; on a GPU, the real planner."""
    if dry and path in ("grid", "stream"):
        return testing.force_plan(path)
    return contextlib.nullcontext()


def _which(cell, inputs) -> str | None:
    from recur.ops.triton import which_path

    xg, w_hh, _, _, w_hr = inputs
    return which_path(cell, xg, w_hh, w_hr)


# ---- cases ---------------------------------------------------------------------------------

def correctness_cases(dry: bool) -> list[dict]:
    """Each cell x dtype x size (x forced path in a dry run), lengths always, each size (and
    path) forward in one dtype and reversed in the other; then one zoneout case and one
    recurrent-dropout case."""
    sizes, T = (DRY_SIZES, DRY_T) if dry else (GPU_SIZES, GPU_T)
    paths = DRY_PATHS if dry else [None]
    cases = []
    for cell in CELLS:
        for d, dtype in enumerate(DTYPES):
            for s, (B, H) in enumerate(sizes):
                for p, path in enumerate(paths):  # each size and path both ways over dtypes
                    cases.append({"cell": cell, "dtype": dtype, "B": B, "T": T, "H": H,
                                  "force": path, "reverse": (d + s + p) % 2 == 1,
                                  "zoneout": None, "h_mask": False})
    B, H = sizes[-1] if dry else (16, 512)
    for cell, zoneout, h_mask in (("LSTM", "train", False), ("GRU", None, True)):
        cases.append({"cell": cell, "dtype": "float32", "B": B, "T": T, "H": H,
                      "force": "grid" if dry else None, "reverse": False, "zoneout": zoneout,
                      "h_mask": h_mask})
    return cases


def repro_cases(dry: bool) -> list[dict]:
    """Bitwise reruns: the plain and layer-norm LSTM, the GRU and the projected LSTM on each
    path, bfloat16 and float32."""
    sizes, T = (DRY_SIZES, DRY_T) if dry else ([(16, 64), (16, 512), (64, 1024)], 256)
    paths = DRY_PATHS if dry else [None]
    cases = []
    for cell in ("LSTM", "GRU", "LayerNormLSTM", "LSTM+proj"):
        for B, H in sizes:
            for path in paths:
                for dtype in (("float32", "bfloat16") if cell == "LSTM" else ("float32",)):
                    cases.append({"cell": cell, "dtype": dtype, "B": B, "T": T, "H": H,
                                  "force": path, "reverse": False, "zoneout": None,
                                  "h_mask": True})
    return cases


def case_id(c: dict) -> str:
    return (f"{c['cell']}-{c['dtype']}-B{c['B']}-T{c['T']}-H{c['H']}"
            + (f"-{c['force']}" if c.get("force") else "") + ("-rev" if c["reverse"] else "")
            + (f"-zoneout_{c['zoneout']}" if c["zoneout"] else "")
            + ("-hmask" if c["h_mask"] else ""))


def _build(c: dict, device: str):
    """``(cell, inputs, kwargs for run_scan)`` of a case; lengths drawn in ``[1, T]``."""
    cell, proj = CELLS[c["cell"]]
    B, T, H = c["B"], c["T"], c["H"]
    P = max(H // 2, 1) if proj else None
    ln = cell.norm is not None
    inputs = testing.make_inputs(cell, T, B, H, P=P, bias=not ln, dtype=DTYPES[c["dtype"]],
                                 device=device)
    cell_weights = (testing.make_ln_weights(cell, H, device=device, h_gain=LN_H_GAIN)
                    if ln else [])
    hm, zo = testing.make_masks(cell, T, B, P or H, zoneout=c["zoneout"], h_mask=c["h_mask"],
                                device=device)
    if zo is not None and P:
        raise ValueError("zoneout with a projection is not a case here")
    lens = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(B + T))
    return cell, inputs, {"lengths": lens, "reverse": c["reverse"], "h_mask": hm,
                          "zoneout": zo, "cell_weights": cell_weights}


def run_correctness(c: dict, device: str, dry: bool, rtol_scale: float) -> dict:
    cell, inputs, kw = _build(c, device)
    with _plan_ctx(c["force"], dry):
        path = _which(cell, inputs)
        got = testing.run_scan(cell, inputs, backend="triton", **kw)
    want = testing.run_scan(cell, inputs, backend="reference", cast=torch.float64, **kw)
    errs = testing.relative_errors(got, want)
    worst = max(errs, key=errs.get)
    rtol = RTOL[c["dtype"]] * rtol_scale
    ok = path is not None and all(e <= rtol for e in errs.values())
    return {"path": path, "max_rel_err": errs[worst], "worst": worst, "rtol": rtol, "ok": ok,
            "errors": errs}


def run_repro(c: dict, device: str, dry: bool, rtol_scale: float) -> dict:
    cell, inputs, kw = _build(c, device)
    with _plan_ctx(c["force"], dry):
        path = _which(cell, inputs)
        a = testing.run_scan(cell, inputs, backend="triton", **kw)
        b = testing.run_scan(cell, inputs, backend="triton", **kw)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    return {"path": path, "ok": path is not None and not differ, "differ": differ,
            "entries": len(a)}


STEPS = {"correctness": (correctness_cases, run_correctness),
         "repro": (repro_cases, run_repro)}


def run_cases(step: str, out: Path, dry: bool, shard: tuple[int, int], rtol_scale: float) -> int:
    """Run this shard's cases, one JSON line each to ``out/STEP-K.jsonl``; failures counted."""
    from recur.ops.triton import _launch

    device = _device(dry)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    _launch.POISON = True  # outputs and workspaces start as NaN: unwritten memory fails
    make, fn = STEPS[step]
    k, n = shard
    failed = 0
    with open(out / f"{step}-{k}.jsonl", "a") as f:
        for i, c in enumerate(make(dry)):
            if i % n != k:
                continue
            t0 = time.perf_counter()
            try:
                res = fn(c, device, dry, rtol_scale)
            except Exception as e:  # noqa: BLE001  (a crashing case is a reported failure)
                res = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
            row = {"case": case_id(c), **c, **res, "seconds": time.perf_counter() - t0}
            failed += not row["ok"]
            f.write(json.dumps(row) + "\n")
            f.flush()
    return failed


def gather(step: str, out: Path) -> list[dict]:
    rows = []
    for p in sorted(out.glob(f"{step}-*.jsonl")):
        rows += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["case"])


def print_rows(step: str, rows: list[dict], expected: int) -> None:
    for r in rows:
        detail = (r.get("error") or
                  (f"max rel err {r['max_rel_err']:.2e} ({r['worst']}) <= {r['rtol']:.0e}?"
                   if "max_rel_err" in r else
                   f"bitwise equal: {'yes' if not r.get('differ') else 'no: ' + ', '.join(r['differ'])}"))
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['case']:<48} path={r.get('path')} {detail} "
              f"{r['seconds']:.1f} s")
    bad = sum(not r["ok"] for r in rows)
    paths = sorted({f"{r['cell']}:{r.get('path')}" for r in rows})
    print(f"{step}: {len(rows) - bad}/{expected} cases passed, {bad} failed, "
          f"{expected - len(rows)} not run; cell:path covered: {' '.join(paths)}")


def parallel(step: str, out: Path, dry: bool, workers: int, rtol_scale: float) -> int:
    """Shard the cases over ``workers`` processes (Triton compiles on the CPU, one kernel at
    a time per process: the GPU machine's cores compile in parallel)."""
    for p in out.glob(f"{step}-*.jsonl"):
        p.unlink()
    cmd = [sys.executable, __file__, step, "--out", str(out), "--rtol-scale", str(rtol_scale)]
    if dry:
        cmd.append("--dry-run")
    procs = [subprocess.Popen(cmd + ["--shard", f"{k}/{workers}"]) for k in range(workers)]
    codes = [p.wait() for p in procs]
    rows = gather(step, out)
    expected = len(STEPS[step][0](dry))
    print_rows(step, rows, expected)
    (out / f"{step}.json").write_text(json.dumps({"meta": meta(dry), "rows": rows}, indent=1))
    return int(any(codes) or len(rows) < expected or any(not r["ok"] for r in rows))


# ---- env, smoke and speed ------------------------------------------------------------------

def env(out: Path, dry: bool) -> int:
    """Versions and ``nvidia-smi`` (not in a dry run), printed and written to env.json."""
    info = meta(dry) | {"python": sys.version.split()[0], "cuda": torch.version.cuda}
    smi = "not run (dry run)"
    if not dry:
        try:
            smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True,
                                 timeout=15, check=False).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            smi = f"nvidia-smi failed: {e}"
    info["nvidia_smi"] = smi
    (out / "env.json").write_text(json.dumps(info, indent=1))
    print(smi)
    print(" | ".join(f"{k} {v}" for k, v in info.items() if k != "nvidia_smi"))
    return 0 if dry or torch.cuda.is_available() else 1


def smoke(out: Path, dry: bool) -> int:
    """One small LSTM (T=32, B=4, H=32; dry run T=3, B=2, H=5), forward and backward on
    ``triton`` against the float64 reference."""
    from recur.ops.triton import _launch

    device = _device(dry)
    _launch.POISON = True
    T, B, H = (3, 2, 5) if dry else (32, 4, 32)
    inputs = testing.make_inputs(LSTM, T, B, H, device=device)
    t0 = time.perf_counter()
    got = testing.run_scan(LSTM, inputs, backend="triton")
    first = time.perf_counter() - t0
    want = testing.run_scan(LSTM, inputs, backend="reference", cast=torch.float64)
    errs = testing.relative_errors(got, want)
    ok = max(errs.values()) <= 1e-4
    row = {"ok": ok, "T": T, "B": B, "H": H, "path": _which(LSTM, inputs),
           "first_call_seconds": first, "errors": errs, "meta": meta(dry)}
    (out / "smoke.json").write_text(json.dumps(row, indent=1))
    print(f"smoke: LSTM T={T} B={B} H={H} path={row['path']} max rel err "
          f"{max(errs.values()):.2e} (first call incl. compile {first:.1f} s): "
          f"{'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


def _timer(device: str, rep_ms: int):
    """``time(fn) -> ms`` per call: ``triton.testing.do_bench`` on CUDA, else the median of
    a few ``perf_counter`` runs."""
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=max(rep_ms // 4, 5), rep=rep_ms)

    from gpu import _cpu_bench  # benchmarks/gpu.py's dry-run timer

    return lambda fn: _cpu_bench(fn, 0, rep_ms)


def speed_ln(out: Path, dry: bool, rep_ms: int) -> int:
    """recur.LayerNormLSTM on ``triton`` against the same module on ``reference`` (the eager
    PyTorch loop a user would write) and torch.nn.LSTM (cuDNN, no layer norm) for scale:
    forward and forward+backward, µs per step, peak training memory on CUDA."""
    import recur

    device = _device(dry)
    grid = [(2, 8, 6)] if dry else [(16, 512, 256), (16, 512, 512), (64, 512, 512),
                                    (64, 512, 1024)]
    time_ms = _timer(device, rep_ms)
    failed = 0
    path_json = out / "speed-ln.jsonl"
    path_json.unlink(missing_ok=True)
    for B, T, H in grid:
        torch.manual_seed(0)
        x = torch.randn(T, B, H, device=device)
        mods = {"triton": recur.LayerNormLSTM(H, H, backend="triton", device=device),
                "eager": recur.LayerNormLSTM(H, H, backend="reference", device=device),
                "cudnn": torch.nn.LSTM(H, H, device=device)}
        mods["eager"].load_state_dict(mods["triton"].state_dict())
        row = {"B": B, "T": T, "H": H}
        for name, m in mods.items():
            def fwd(m=m, x=x):
                with torch.no_grad():
                    m(x)

            def fwdbwd(m=m, x=x):
                m.zero_grad(set_to_none=True)
                m(x)[0].sum().backward()

            for kind, fn in (("fwd", fwd), ("fwdbwd", fwdbwd)):
                try:
                    row[f"{name}_{kind}_us_per_step"] = time_ms(fn) * 1e3 / T
                except Exception as e:  # noqa: BLE001  (reported, the rest still runs)
                    row[f"{name}_{kind}_us_per_step"] = None
                    row[f"{name}_{kind}_error"] = f"{type(e).__name__}: {e}"[:200]
                    failed += 1
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                fwdbwd()
                torch.cuda.synchronize()
                row[f"{name}_peak_train_MiB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        for kind in ("fwd", "fwdbwd"):
            a, b = row.get(f"triton_{kind}_us_per_step"), row.get(f"eager_{kind}_us_per_step")
            row[f"eager_over_triton_{kind}"] = b / a if a and b else None
        with open(path_json, "a") as f:
            f.write(json.dumps(row) + "\n")

        def fmt(v):
            return "—" if v is None else f"{v:.2f}"

        print(f"LayerNormLSTM B={B} T={T} H={H} µs/step fwd: triton {fmt(row['triton_fwd_us_per_step'])} "
              f"eager {fmt(row['eager_fwd_us_per_step'])} (cuDNN plain LSTM "
              f"{fmt(row['cudnn_fwd_us_per_step'])}); fwd+bwd: triton "
              f"{fmt(row['triton_fwdbwd_us_per_step'])} eager {fmt(row['eager_fwdbwd_us_per_step'])}"
              f" (cuDNN {fmt(row['cudnn_fwdbwd_us_per_step'])})", flush=True)
    return int(failed > 0)


def meta(dry: bool) -> dict:
    info = {"date": datetime.date.today().isoformat(), "commit": commit(),
            "torch": torch.__version__, "dry_run": dry}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available() and not dry:
        info["gpu"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["env", "smoke", "correctness", "repro", "speed-ln"])
    ap.add_argument("--out", type=Path, required=True, help="folder for the JSON (made)")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, Triton interpreter (TRITON_INTERPRET=1), tiny sizes")
    ap.add_argument("--workers", type=int, default=1, help="processes for correctness/repro")
    ap.add_argument("--shard", default=None, metavar="K/N", help="(internal) run every N-th case")
    ap.add_argument("--rep", type=int, default=50, help="speed-ln: do_bench budget, ms")
    ap.add_argument("--rtol-scale", type=float, default=1.0,
                    help="multiply every tolerance (0 makes every case fail: tests the checker)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "env":
        return env(args.out, args.dry_run)
    if args.step == "smoke":
        return smoke(args.out, args.dry_run)
    if args.step == "speed-ln":
        return speed_ln(args.out, args.dry_run, args.rep)
    if args.shard is not None:
        k, _, n = args.shard.partition("/")
        return int(run_cases(args.step, args.out, args.dry_run, (int(k), int(n)),
                             args.rtol_scale) > 0)
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    return parallel(args.step, args.out, args.dry_run, args.workers, args.rtol_scale)


if __name__ == "__main__":
    sys.exit(main())
