"""CPU benchmark: recur's RNN / LSTM / GRU (backend "auto" and "reference") against torch.nn.

All in one process, with the same weights (torch.nn's ``state_dict`` loaded into recur) and
the same input, one layer, one direction, input size = hidden size H, time-major float32,
zero initial state:

- torch.nn: ``torch.nn.RNN / LSTM / GRU``;
- auto: ``recur.RNN / LSTM / GRU`` with the default ``backend="auto"``, which on a CPU runs
  an LSTM on PyTorch's fused kernels (so the gap to torch.nn is recur's Python overhead per
  call) and a tanh RNN or a GRU on recur's ``cpu`` backend (``recur.ops.plan.CPU_KERNEL_FIRST``);
  the JSON's ``auto_backend`` says which ran;
- reference: ``backend="reference"``, recur's plain PyTorch loop over time.

``--lengths``: ragged batches (lengths uniform in ``[T/4, T]``, one row full). torch.nn gets
the packed batch (``pack_padded_sequence`` inside the timed call, as its user would write it),
recur ``lengths=``; in fwd+bwd ``auto`` then runs recur's ``cpu`` backend (see
``recur.ops.plan.auto_order``), in fwd PyTorch's packed kernels.

Passes: ``fwd`` (forward under ``no_grad``) and ``fwd+bwd`` (forward, then ``backward()`` of
``output.sum()``; gradients are reset to None before each call). Grid: B in {1, 32, 64} x T in
{100, 200} x H in {32, 128, 256}.

How it times, for a 2-core machine shared with other work:

- one thread by default (``--threads``): with two, every OpenMP barrier stalls whenever
  another process holds the other core, and calls slow down by orders of magnitude;
- process CPU time by default (``--clock cpu``; the JSON holds wall time too), which leaves
  out the time other processes hold the core;
- the implementations run in turn, round after round (the order rotating), torch.nn and auto
  the same number of calls; a time is the median over calls after warm-up, and a ratio is the
  median over rounds of (torch.nn time / recur time) in the same round, which cancels drift.
  The number of calls adapts to each one's speed (``--budget`` seconds each, at least 7 for
  torch.nn and auto, 3 for reference).

Ratios are throughputs, torch.nn time / recur time: above 1, recur is faster; the target for
``auto`` is >= 0.95.

    python benchmarks/cpu.py                              # full grid
    python benchmarks/cpu.py --quick                      # a small grid, under a minute
    python benchmarks/cpu.py --cells LSTM --batch 64 --seq 200 --hidden 256 --json out.json
    python benchmarks/cpu.py --overhead                   # Python us per call, kernel stubbed
    python benchmarks/cpu.py --first-call                 # first call in a new process
    python benchmarks/cpu.py --lengths --no-reference     # ragged batches (torch.nn packs)
    python benchmarks/compare.py old.json new.json        # compare two runs

Before timing, each configuration checks that recur's outputs equal torch.nn's.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import recur

CELLS = {"RNN": (torch.nn.RNN, recur.RNN), "LSTM": (torch.nn.LSTM, recur.LSTM),
         "GRU": (torch.nn.GRU, recur.GRU)}
PASSES = ("fwd", "fwd+bwd")
GRID = {"batch": [1, 32, 64], "seq": [100, 200], "hidden": [32, 128, 256]}
QUICK = {"batch": [1, 32], "seq": [100], "hidden": [32, 128]}
IMPLS = ("torch", "auto", "reference")
TARGET = 0.95
ROOT = Path(__file__).resolve().parents[1]


def machine_info() -> dict:
    """Where and when the numbers were taken."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": " ".join(["python", "benchmarks/cpu.py", *sys.argv[1:]]),
    }


def _git(*args: str) -> str:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read only: never refresh the index
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT,
                             env=env, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build(cell: str, H: int) -> dict[str, torch.nn.Module]:
    """torch.nn's module and recur's two, holding the same weights."""
    torch_cls, recur_cls = CELLS[cell]
    ref = torch_cls(H, H)
    models = {"torch": ref}
    for backend in ("auto", "reference"):
        m = recur_cls(H, H, backend=backend)
        m.load_state_dict(ref.state_dict(), strict=True)
        models[backend] = m
    return models


def _forward(name: str, model: torch.nn.Module, x: torch.Tensor, lengths) -> torch.Tensor:
    """The padded output ``[T, B, H]``: torch.nn's on the packed batch when ``lengths`` is
    given (a torch.nn user packs), recur's with ``lengths=``."""
    if lengths is None:
        return model(x)[0]
    if name == "torch":
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        return pad_packed_sequence(model(packed)[0], total_length=x.shape[0])[0]
    return model(x, lengths=lengths)[0]


def check_same(models: dict[str, torch.nn.Module], x: torch.Tensor, lengths=None) -> None:
    """Raise if recur's outputs differ from torch.nn's on ``x`` (with ``lengths``)."""
    with torch.no_grad():
        want = _forward("torch", models["torch"], x, lengths)
        for name in ("auto", "reference"):
            got = _forward(name, models[name], x, lengths)
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                err = (got - want).abs().max().item()
                raise AssertionError(f"{name} differs from torch.nn by {err:.2e}")


def make_call(name: str, model: torch.nn.Module, x: torch.Tensor, pass_: str,
              lengths=None) -> Callable[[], None]:
    """One timed call: a forward under no_grad, or forward + backward of output.sum() (with
    ``lengths``: torch.nn packs the batch inside the call, recur takes ``lengths=``)."""
    if pass_ == "fwd":
        def call() -> None:
            with torch.no_grad():
                _forward(name, model, x, lengths)
        return call
    params = list(model.parameters())

    def call() -> None:
        for p in params:
            p.grad = None
        out = _forward(name, model, x, lengths)  # (T, B, H), zero past each length
        out.sum().backward()
    return call


def _time(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all of this process's threads) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def measure(calls: dict[str, Callable[[], None]], budget: float, min_reps: dict[str, int],
            max_reps: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds per call of each callable, interleaved round by round.

    Warm-up: one call each, then two more timed to estimate the cost; each callable then gets
    ``budget / cost`` calls, clamped to ``[min_reps, max_reps]``, except that "torch" and "auto"
    get the same number, so that every one of their calls has a partner in the same round.
    """
    names = list(calls)
    reps = {}
    for name in names:
        calls[name]()
        est = min(_time(calls[name])[0] for _ in range(2))
        reps[name] = max(min_reps[name], min(max_reps, int(budget / max(est, 1e-6))))
    if "torch" in reps and "auto" in reps:
        reps["torch"] = reps["auto"] = max(reps["torch"], reps["auto"])
    times = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(max(reps.values())):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if len(times[name]["wall"]) < reps[name]:
                wall, cpu = _time(calls[name])
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
    return times


def paired_ratio(base: list[float], other: list[float]) -> float:
    """Median over rounds of ``base[i] / other[i]`` (calls of the same round side by side),
    which cancels drift slower than a round."""
    return statistics.median(b / o for b, o in zip(base, other))


def ragged_lengths(T: int, B: int) -> torch.Tensor:
    """``[B]`` lengths drawn uniformly from ``[T // 4, T]`` (seed 0), the first row full."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(max(1, T // 4), T + 1, (B,), generator=g)
    lengths[0] = T
    return lengths


def run_row(cell: str, pass_: str, B: int, T: int, H: int, impls: tuple[str, ...],
            budget: float, max_reps: int, clock: str, ragged: bool = False) -> dict:
    torch.manual_seed(0)
    models = build(cell, H)
    x = torch.randn(T, B, H)  # (T, B, I), I = H
    lengths = ragged_lengths(T, B) if ragged else None
    check_same(models, x, lengths)
    calls = {name: make_call(name, models[name], x, pass_, lengths) for name in impls}
    min_reps = {"torch": 7, "auto": 7, "reference": 3}
    gc.collect()
    times = measure(calls, budget, min_reps, max_reps)
    row = {"cell": cell, "pass": pass_, "B": B, "T": T, "H": H, "input_size": H,
           "clock": clock, "lengths": ragged}
    if "auto" in models:                          # which backend auto ran on these calls
        with torch.set_grad_enabled(pass_ == "fwd+bwd"):
            row["auto_backend"] = models["auto"].plan(x, lengths).backend
    for name, by_clock in times.items():
        for clk, ts in by_clock.items():
            q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
            key = name if clk == clock else f"{name}_{clk}"
            row[f"{key}_ms"] = 1e3 * statistics.median(ts)
            row[f"{key}_iqr_ms"] = 1e3 * (q[2] - q[0])
        row[f"{name}_n"] = len(by_clock["wall"])
    for name in ("auto", "reference"):
        if name in times:
            row[f"ratio_{name}"] = paired_ratio(times["torch"][clock], times[name][clock])
    return row


def python_overhead(rounds: int = 25, block: int = 2000) -> dict[str, dict[str, float]]:
    """Microseconds of Python per forward call, torch.nn's and recur auto's, with the kernel
    replaced by a stub that returns a cached result (T=1, B=1, H=8, no_grad): what each module
    spends around the kernel. The best (minimum) block mean of ``rounds`` interleaved blocks."""
    import types

    import torch.nn.modules.rnn as torch_rnn

    from recur.ops import native

    saved = torch_rnn._VF, dict(native._FUNCS)
    result = {}
    try:
        for cell in CELLS:
            models = build(cell, 8)
            x = torch.randn(1, 1, 8)  # (T, B, I)
            with torch.no_grad():
                out, state = models["torch"](x)
            cached = (out, *state) if isinstance(state, tuple) else (out, state)

            def stub(*args, _cached=cached, **kwargs):
                return _cached
            torch_rnn._VF = types.SimpleNamespace(lstm=stub, gru=stub, rnn_tanh=stub,
                                                  rnn_relu=stub)
            native._FUNCS.update({k: stub for k in native._FUNCS})
            # recur's own Python around PyTorch's kernel: where auto runs the cpu backend
            # (GRU, tanh RNN), the stub could not stand in for its kernel, so the module asks
            # for PyTorch's kernels explicitly (the same Python path)
            models["auto"].backend = "torch"
            calls = {"torch": models["torch"], "auto": models["auto"]}
            best = {k: float("inf") for k in calls}
            with torch.no_grad():
                for m in calls.values():
                    for _ in range(200):
                        m(x)
                for _ in range(rounds):
                    for k, m in calls.items():
                        t0 = time.perf_counter()
                        for _ in range(block):
                            m(x)
                        best[k] = min(best[k], (time.perf_counter() - t0) / block * 1e6)
            result[cell] = {"torch_us": best["torch"], "auto_us": best["auto"],
                            "extra_us": best["auto"] - best["torch"]}
    finally:
        torch_rnn._VF = saved[0]
        native._FUNCS.clear()
        native._FUNCS.update(saved[1])
    return result


HEADER = ("| cell | pass | B | T | H | torch.nn ms | auto ms | torch/auto | auto ran | "
          "reference ms | torch/ref |\n|---|---|---|---|---|---|---|---|---|---|---|")


def format_row(row: dict) -> str:
    def ms(key: str) -> str:
        return f"{row[key]:.3g}" if key in row else "-"

    ratio_auto = row.get("ratio_auto")
    mark = "" if ratio_auto is None or ratio_auto >= TARGET else " **<**"
    ra = "-" if ratio_auto is None else f"{ratio_auto:.2f}{mark}"
    rr = f"{row['ratio_reference']:.2f}" if "ratio_reference" in row else "-"
    return (f"| {row['cell']} | {row['pass']} | {row['B']} | {row['T']} | {row['H']} | "
            f"{ms('torch_ms')} | {ms('auto_ms')} | {ra} | {row.get('auto_backend', '-')} | "
            f"{ms('reference_ms')} | {rr} |")


FIRST_CALL = """
import sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
import recur
t1 = time.perf_counter()
name = sys.argv[1]
m = (getattr(torch.nn, name[3:]) if name.startswith("nn.") else getattr(recur, name))(32, 32)
x = torch.randn(20, 4, 32)
t2 = time.perf_counter()
m(x)[0].sum().backward()
t3 = time.perf_counter()
m(x)[0].sum().backward()
t4 = time.perf_counter()
print(t1 - t0, t3 - t2, t4 - t3)
"""


def first_call(names: tuple[str, ...] = ("nn.GRU", "GRU", "nn.LSTM", "LSTM", "LayerNormLSTM"),
               rounds: int = 3) -> list[dict]:
    """Seconds of the first forward + backward in a fresh process (T=20, B=4, H=32), which
    for recur's ``cpu`` backend includes building its kernel: ``cold`` with an empty kernel
    cache (trace + compile), ``warm`` with the kernels and sources a previous process left on
    disk; the second call and the imports for scale. Median over ``rounds`` processes."""
    import tempfile

    rows = []
    for name in names:
        got: dict[str, list[float]] = {"cold": [], "warm": [], "second": [], "imports": []}
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, RECUR_CACHE_DIR=cache, PYTHONPATH=str(ROOT / "src"))
                for kind in ("cold", "warm"):
                    out = subprocess.run([sys.executable, "-c", FIRST_CALL, name], env=env,
                                         capture_output=True, text=True, check=True)
                    imports, first, second = map(float, out.stdout.split())
                    got[kind].append(first)
                    if kind == "warm":
                        got["second"].append(second)
                        got["imports"].append(imports)
        rows.append({"module": name, **{f"{k}_s": statistics.median(v) for k, v in got.items()}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--passes", nargs="+", default=list(PASSES), choices=list(PASSES))
    ap.add_argument("--batch", nargs="+", type=int, help=f"default {GRID['batch']}")
    ap.add_argument("--seq", nargs="+", type=int, help=f"default {GRID['seq']}")
    ap.add_argument("--hidden", nargs="+", type=int, help=f"default {GRID['hidden']}")
    ap.add_argument("--quick", action="store_true",
                    help=f"grid {QUICK} (explicit --batch/--seq/--hidden still win)")
    ap.add_argument("--no-reference", action="store_true", help="time torch.nn and auto only")
    ap.add_argument("--budget", type=float, default=0.3,
                    help="seconds of timed calls per implementation and row (default 0.3)")
    ap.add_argument("--max-reps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default 1, see the docstring); 0: torch's default")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="what the table reports: process CPU time (default) or wall time; "
                         "the JSON holds both")
    ap.add_argument("--first-call", action="store_true",
                    help="seconds of the first call in a new process, cold and warm kernel "
                         "cache (recur's cpu backend builds its kernel there)")
    ap.add_argument("--overhead", action="store_true",
                    help="only measure the Python time per forward call around the kernel "
                         "(torch.nn vs auto, the kernel stubbed out)")
    ap.add_argument("--lengths", action="store_true",
                    help="ragged batches: lengths uniform in [T/4, T] (one row full); torch.nn "
                         "gets the packed batch (packing timed), recur lengths=")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="write rows here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = QUICK if args.quick else GRID
    Bs, Ts, Hs = (args.batch or grid["batch"], args.seq or grid["seq"],
                  args.hidden or grid["hidden"])
    impls = ("torch", "auto") if args.no_reference else IMPLS
    meta = machine_info()
    meta["clock"] = args.clock
    print(f"# {meta['date']}  {meta['cpu']}  ({meta['threads']} threads)  torch "
          f"{meta['torch']}  commit {meta['commit']}{' (dirty)' if meta['dirty'] else ''}")
    if args.first_call:
        rows = first_call()
        print("# seconds of the first forward + backward in a new process (T=20, B=4, H=32), "
              "median of 3 processes")
        print("| module | cold cache | warm cache | second call | imports |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['module']} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | "
                  f"{r['second_s']:.4f} | {r['imports_s']:.2f} |")
        if args.json is not None:
            args.json.write_text(json.dumps({"meta": meta, "first_call": rows}, indent=1))
        return
    if args.overhead:
        res = python_overhead()
        print("# Python us per forward call around the kernel (stubbed), T=1 B=1 H=8, no_grad")
        print("| cell | torch.nn us/call | auto us/call | auto - torch.nn us |\n|---|---|---|---|")
        for cell, r in res.items():
            print(f"| {cell} | {r['torch_us']:.1f} | {r['auto_us']:.1f} | {r['extra_us']:+.1f} |")
        if args.json is not None:
            args.json.write_text(json.dumps({"meta": meta, "overhead": res}, indent=1))
        return
    print(f"# median {args.clock} ms per call; ratio = torch.nn time / recur time (>= {TARGET} "
          "is the target for auto); input size = H; **<** marks auto below target")
    print(HEADER, flush=True)
    rows = []
    start = time.perf_counter()
    for cell in args.cells:
        for pass_ in args.passes:
            for B in Bs:
                for T in Ts:
                    for H in Hs:
                        row = run_row(cell, pass_, B, T, H, impls, args.budget, args.max_reps,
                                      args.clock, ragged=args.lengths)
                        rows.append(row)
                        print(format_row(row), flush=True)
    meta["wall_s"] = round(time.perf_counter() - start, 1)
    below = [r for r in rows if r.get("ratio_auto", 1.0) < TARGET]
    print(f"# {len(rows)} rows in {meta['wall_s']} s; auto below {TARGET}x torch.nn on "
          f"{len(below)} row(s)")
    if args.json is not None:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
