"""The grid / stream kernels with several programs per batch tile, under the interpreter with
one thread per program (``_threaded_interpreter.py``), against the float64 reference loop.

    python tests/_grid_threads.py grid|stream

Prints one line per case and exits 0 when all match, 1 when one does not, 3 (with a line
"SKIP: reason") when this Triton's interpreter cannot be threaded. Run by
``tests/test_triton.py::test_grid_kernels_many_programs`` in a subprocess with a timeout.
"""

from __future__ import annotations

import os
import sys
import time

os.environ["TRITON_INTERPRET"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _threaded_interpreter  # noqa: E402

try:
    _threaded_interpreter.install(jitter=float(os.environ.get("RECUR_THREAD_JITTER", "2e-4")))
except RuntimeError as e:
    print(f"SKIP: {e}")
    sys.exit(3)

import test_triton as tt  # noqa: E402  (its helpers: inputs, masks, run, assert_close)
import torch  # noqa: E402
import triton  # noqa: E402

from recur.ops.triton import _launch, which_path  # noqa: E402

BN = 16  # hidden units per program: H = 33..40 gives 3 programs per batch tile

# (cell, T, B, H, lengths, reverse, zoneout, h_mask[, P]); B = 18: two batch tiles of 16
CASES = [
    ("lstm", 4, 18, 37, "random", True, None, True, 20),  # projection: 2 of 3 programs own h
    ("lstm", 4, 18, 37, "random", True, "train", True),
    ("gru", 4, 5, 33, [4, 1, 3, 2, 4], False, "eval", True),
    ("rnn_tanh", 3, 3, 40, None, False, None, False),
    ("ln_lstm", 4, 18, 37, "random", True, "train", True),
    ("ln_gru", 4, 5, 33, "random", False, "eval", False),
]


def main(path: str) -> int:
    _launch.POISON = True

    def many(G, B, H, HO, proj, device, wbytes=4):
        npn = triton.cdiv(H, BN)
        return _launch.Plan(path, BB=16, BN=BN, BK=16 if path == "stream" else _launch._pow2(H),
                            BP=max(16, _launch._pow2(triton.cdiv(HO, npn))) if proj else 0,
                            grid=(npn, triton.cdiv(B, 16)))

    _launch.plan = many
    failed = 0
    for case in CASES:
        t0 = time.perf_counter()
        if case[0] in tt.LN_CELLS:
            cell, inputs, weights, kw = tt._ln_case(case)
            rtol = tt.LN_RTOL
        else:
            name, T, B, H, lengths, reverse, zoneout, h_mask = case[:8]
            P = case[8] if len(case) > 8 else None
            cell, weights = tt.CELLS[name], []
            inputs = tt.make_inputs(cell, T, B, H, P=P)
            hm, zo = tt.make_masks(cell, T, B, P or H, zoneout=zoneout, h_mask=h_mask)
            if lengths == "random":
                lens = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(3))
            else:
                lens = torch.tensor(lengths) if lengths else None
            kw = {"lengths": lens, "reverse": reverse, "h_mask": hm, "zoneout": zo}
            rtol = 1e-5
        assert which_path(cell, inputs[0], inputs[1], inputs[4]) == path
        got = tt.run(cell, inputs, backend="triton", cell_weights=weights, **kw)
        want = tt.run(cell, inputs, backend="reference", cast=torch.float64,
                      cell_weights=weights, **kw)
        try:
            tt.assert_close(got, want, rtol=rtol)
            status = "ok"
        except AssertionError as e:
            failed += 1
            status = f"FAIL {e}"
        programs = triton.cdiv(case[3], BN) * triton.cdiv(case[2], 16)
        label = tt._mask_id(case) + (f"-P{case[8]}" if len(case) > 8 else "")
        print(f"{path} {label} programs={programs} "
              f"{time.perf_counter() - t0:.1f}s {status}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
