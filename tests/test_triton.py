"""The ``triton`` backend of ``scan`` against the reference loop.

Without CUDA the kernels run on CPU tensors in Triton's interpreter: this module sets
``TRITON_INTERPRET=1`` for its own duration, before it imports Triton (the interpreter only
works when the variable is set before ``import triton``). With CUDA the same small matrix
runs compiled on the GPU, and the ``gpu``-marked tests add the real sizes of issue 4.

Every comparison runs with ``POISON`` on: outputs and workspaces start as NaN, so memory a
kernel forgets to write fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

from recur import testing
from recur.cells import GRU, LSTM, RNN_RELU, RNN_TANH, Cell
from recur.cells.layernorm import LAYERNORM_GRU, LAYERNORM_LSTM
from recur.ops import scan

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="triton is not installed")
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")

# ``triton.language``, bound by the fixture below once the interpreter is set up (the Triton
# functions of the user-cell test look it up in this module's globals)
tl = None

CELLS = {"rnn_tanh": RNN_TANH, "rnn_relu": RNN_RELU, "lstm": LSTM, "gru": GRU}
LN_CELLS = {"ln_lstm": LAYERNORM_LSTM, "ln_gru": LAYERNORM_GRU}


@pytest.fixture(scope="module", autouse=True)
def triton_backend():
    """Make the backend runnable here: interpreter on CPU, poisoned allocations."""
    global tl
    with pytest.MonkeyPatch.context() as mp:
        if not HAS_CUDA:
            if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
                pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set; "
                            "run `pytest tests/test_triton.py` in its own process")
            mp.setenv("TRITON_INTERPRET", "1")
        import triton.language

        from recur.ops.triton import _launch

        tl = triton.language
        mp.setattr(_launch, "POISON", True)
        yield


# --- helpers ------------------------------------------------------------------------------------

def make_inputs(cell, T, B, H, **kw):
    """:func:`recur.testing.make_inputs` on this module's device."""
    return testing.make_inputs(cell, T, B, H, **({"device": DEVICE} | kw))


def make_ln_weights(cell, H, **kw):
    return testing.make_ln_weights(cell, H, **({"device": DEVICE} | kw))


def make_masks(cell, T, B, H, **kw):
    return testing.make_masks(cell, T, B, H, **({"device": DEVICE} | kw))


run = testing.run_scan
assert_close = testing.assert_close


# --- the CPU-CI matrix (interpreter on CPU, compiled on CUDA) -----------------------------------

# (cell, T, B, H, P, lengths, reverse)
CASES = [
    ("rnn_tanh", 1, 1, 5, None, None, False),
    ("rnn_tanh", 4, 3, 7, None, [4, 1, 3], True),
    ("rnn_relu", 3, 2, 5, None, None, True),
    ("rnn_relu", 4, 3, 7, None, [2, 4, 1], False),
    ("lstm", 1, 1, 5, None, None, False),
    ("lstm", 4, 2, 7, None, None, True),
    ("lstm", 5, 3, 7, None, [5, 2, 3], False),
    ("lstm", 5, 3, 5, None, [1, 5, 3], True),
    ("lstm", 3, 2, 7, 3, None, False),
    ("lstm", 4, 3, 6, 5, [4, 2, 1], True),
    ("gru", 1, 1, 5, None, None, False),
    ("gru", 4, 2, 7, None, None, True),
    ("gru", 5, 3, 7, None, [3, 5, 1], False),
    ("gru", 5, 3, 5, None, [2, 5, 4], True),
    ("gru", 3, 17, 5, None, None, False),  # more rows than one batch tile of 16
]


def _case_id(c):
    name, T, B, H, P, lengths, reverse = c
    return (f"{name}-B{B}-T{T}-H{H}" + (f"-P{P}" if P else "") + ("-len" if lengths else "")
            + ("-rev" if reverse else "") + "-float32")


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_reference(case):
    name, T, B, H, P, lengths, reverse = case
    cell = CELLS[name]
    inputs = make_inputs(cell, T, B, H, P=P)
    lens = torch.tensor(lengths) if lengths else None
    got = run(cell, inputs, backend="triton", lengths=lens, reverse=reverse)
    want = run(cell, inputs, backend="reference", lengths=lens, reverse=reverse,
               cast=torch.float64)
    assert_close(got, want, rtol=1e-5)


# (cell, T, B, H, lengths, reverse, zoneout, h_mask)
MASK_CASES = [
    ("lstm", 4, 3, 7, None, False, "train", True),
    ("lstm", 5, 3, 5, [5, 2, 1], True, "eval", True),
    ("lstm", 4, 2, 6, [1, 4], False, "train", False),
    ("gru", 4, 3, 7, None, True, "train", True),
    ("gru", 5, 3, 5, [3, 5, 1], False, "eval", False),
    ("gru", 3, 2, 5, None, False, None, True),
    ("rnn_tanh", 4, 3, 7, [4, 1, 3], True, "train", True),
    ("rnn_relu", 3, 2, 5, None, False, "eval", True),
]


@pytest.mark.parametrize("case", MASK_CASES, ids=[
    f"{c[0]}-T{c[1]}-B{c[2]}-H{c[3]}" + ("-len" if c[4] else "") + ("-rev" if c[5] else "")
    + (f"-zoneout_{c[6]}" if c[6] else "") + ("-hmask" if c[7] else "") for c in MASK_CASES])
def test_masks_match_reference(case):
    """Recurrent dropout (``h_mask``) and zoneout, fused, against the float64 loop."""
    name, T, B, H, lengths, reverse, zoneout, h_mask = case
    cell = CELLS[name]
    inputs = make_inputs(cell, T, B, H)
    hm, zo = make_masks(cell, T, B, H, zoneout=zoneout, h_mask=h_mask)
    lens = torch.tensor(lengths) if lengths else None
    got = run(cell, inputs, backend="triton", lengths=lens, reverse=reverse, h_mask=hm,
              zoneout=zo)
    want = run(cell, inputs, backend="reference", lengths=lens, reverse=reverse,
               cast=torch.float64, h_mask=hm, zoneout=zo)
    assert_close(got, want, rtol=1e-5)
    # the masks do act: without them the result is different
    plain = run(cell, inputs, backend="triton", lengths=lens, reverse=reverse)
    assert not torch.allclose(plain["out"], got["out"], atol=1e-4)


def test_variant_modules_on_the_fused_kernels(monkeypatch):
    """recur.nn's zoneout / recurrent-dropout / DropConnect / layer-norm variants with
    backend='triton' equal the same modules on the reference loop, in training (same seed,
    same masks) and in eval; other cells whose update takes parameters are refused."""
    from recur.nn.variants import LayerNormGRU, LayerNormLSTM, VariantGRU, VariantLSTM
    from recur.ops.triton import _launch

    launches = []
    real_forward = _launch.forward
    monkeypatch.setattr(_launch, "forward",
                        lambda *a, **k: launches.append(1) or real_forward(*a, **k))

    x = torch.randn(5, 3, 4, device=DEVICE)
    for cls, kw in ((VariantLSTM, {"zoneout": (0.2, 0.4), "recurrent_dropout": 0.25,
                                   "weight_drop": 0.3}),
                    (VariantGRU, {"zoneout": 0.3, "recurrent_dropout": 0.2,
                                  "bidirectional": True, "num_layers": 2}),
                    (LayerNormLSTM, {"zoneout": (0.1, 0.2), "recurrent_dropout": 0.2}),
                    (LayerNormGRU, {"weight_drop": 0.2, "bidirectional": True,
                                    "num_layers": 2})):
        torch.manual_seed(0)
        ref = cls(4, 6, backend="reference", device=DEVICE, **kw)
        fused = cls(4, 6, backend="triton", device=DEVICE, **kw)
        fused.load_state_dict(ref.state_dict())
        for train in (True, False):
            ref.train(train)
            fused.train(train)
            res = []
            for m in (ref, fused):
                m.zero_grad()
                torch.manual_seed(7)
                out, _ = m(x)
                (out * torch.linspace(-1, 1, out.numel(), device=DEVICE).view_as(out)).sum() \
                    .backward()
                res.append((out.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}))
            torch.testing.assert_close(res[1][0], res[0][0], rtol=1e-5, atol=1e-6)
            for n, want in res[0][1].items():  # atol: 1e-5 of the gradient's scale
                torch.testing.assert_close(res[1][1][n], want, rtol=1e-4,
                                           atol=1e-5 * float(want.abs().max()),
                                           msg=f"grad of {n} ({cls.__name__}, train={train})")
    assert len(launches) == 2 * (1 + 4 + 1 + 4)  # train + eval, every layer and direction
    with pytest.raises(ValueError, match=r"takes cell weights in its update \(declared "
                                         "params\\), which only the reference loop"):
        scan(LSTM, x.new_zeros(2, 1, 8), x.new_zeros(8, 2), None, backend="triton",
             cell_weights=(x.new_ones(2),))
    # a layer-norm cell handed b_hh (inside LN_h's input, which the kernels cannot fold)
    g = x.new_ones(6)
    with pytest.raises(ValueError, match="with a separate b_hh or a projection"):
        scan(LAYERNORM_GRU, x.new_zeros(2, 1, 6), x.new_zeros(6, 2), x.new_ones(6),
             backend="triton", cell_weights=(g, g, g))


# (cell, T, B, H, lengths, reverse, zoneout, h_mask)
LN_CASES = [
    ("ln_lstm", 1, 1, 5, None, False, None, False),
    ("ln_lstm", 5, 3, 7, [5, 2, 3], True, None, False),
    ("ln_lstm", 4, 3, 6, None, False, "train", True),
    ("ln_lstm", 4, 2, 5, [1, 4], True, "eval", False),
    ("ln_gru", 1, 1, 5, None, False, None, False),
    ("ln_gru", 5, 3, 7, [3, 5, 1], False, None, True),
    ("ln_gru", 4, 17, 5, None, True, "train", False),  # two batch tiles
    ("ln_gru", 3, 2, 6, [3, 1], False, "eval", True),
]


def _mask_id(c):
    return (f"{c[0]}-T{c[1]}-B{c[2]}-H{c[3]}" + ("-len" if c[4] else "")
            + ("-rev" if c[5] else "") + (f"-zoneout_{c[6]}" if c[6] else "")
            + ("-hmask" if c[7] else ""))


def _ln_case(case):
    """Inputs, cell weights, lengths and masks of a layer-norm case (no b_hh: it is the last
    cell weight)."""
    name, T, B, H, lengths, reverse, zoneout, h_mask = case
    cell = LN_CELLS[name]
    inputs = make_inputs(cell, T, B, H, bias=False)
    weights = make_ln_weights(cell, H)
    hm, zo = make_masks(cell, T, B, H, zoneout=zoneout, h_mask=h_mask)
    if lengths == "random":
        lens = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(3))
    else:
        lens = torch.tensor(lengths) if lengths else None
    return cell, inputs, weights, {"lengths": lens, "reverse": reverse, "h_mask": hm,
                                  "zoneout": zo}


# LN_c over a few units amplifies float32 rounding: the float32 *reference* loop is ~1e-5
# (norm-relative) from float64 on these cases, so the fused kernels get 1e-4 here.
LN_RTOL = 1e-4


@pytest.mark.parametrize("case", LN_CASES, ids=[_mask_id(c) for c in LN_CASES])
def test_layernorm_cells_match_reference(case):
    """LayerNorm LSTM / GRU fused (LN_h, LN_c and their gains and biases in the kernels)
    against the float64 loop: outputs, states, and the gradients of every input and param."""
    cell, inputs, weights, kw = _ln_case(case)
    got = run(cell, inputs, backend="triton", cell_weights=weights, **kw)
    want = run(cell, inputs, backend="reference", cast=torch.float64, cell_weights=weights, **kw)
    assert set(got) >= {f"dcell_weights[{i}]" for i in range(len(weights))}
    assert_close(got, want, rtol=LN_RTOL)


def test_gather_moments_combines_uneven_slices(monkeypatch):
    """The grid path's cross-program layer-norm statistics: Chan's pairwise combination of
    per-slice (mean, M2) over slices of BN units (the last one short) equals the mean and
    variance over all entries. (Under the interpreter the grid tests run one slice only.)"""
    import triton

    from recur.ops.triton import _forward

    # the test kernel looks its helpers up in this module's globals
    monkeypatch.setitem(globals(), "_gather_moments", _forward._gather_moments)
    monkeypatch.setitem(globals(), "_local_moments", _forward._local_moments)

    @triton.jit
    def kernel(r_ptr, st_ptr, mean_ptr, var_ptr, B, H, NPN, G: tl.constexpr,
               BB: tl.constexpr, BN: tl.constexpr):
        rb = tl.arange(0, BB)
        for q in range(NPN):  # publish each slice's local moments, as the programs do
            rn = q * BN + tl.arange(0, BN)
            cm = (rb[:, None] < B) & (rn[None, :] < H)
            base = r_ptr + rb[:, None] * (G * H) + rn[None, :]
            r0 = tl.load(base, mask=cm, other=0.0)
            r1 = tl.load(base + H, mask=cm & (G > 1), other=0.0)
            r2 = tl.load(base + 2 * H, mask=cm & (G > 2), other=0.0)
            r3 = tl.load(base + 3 * H, mask=cm & (G > 3), other=0.0)
            lm, lm2 = _local_moments(r0, r1, r2, r3, cm,  # noqa: F821 (set above)
                                     G * tl.minimum(BN, H - q * BN), G)
            tl.store(st_ptr + (q * B + rb) * 4, lm, mask=rb < B)
            tl.store(st_ptr + (q * B + rb) * 4 + 1, lm2, mask=rb < B)
        mean, var = _gather_moments(st_ptr, 0, NPN, rb, B, 0, H, BN, G)  # noqa: F821
        tl.store(mean_ptr + rb, mean, mask=rb < B)
        tl.store(var_ptr + rb, var, mask=rb < B)

    B, BN = 3, 16
    for G, H in ((4, 37), (3, 16), (1, 50)):
        r = torch.randn(B, G * H, device=DEVICE) * 3 + 5
        npn = triton.cdiv(H, BN)
        st = torch.full((2, npn, B, 4), float("nan"), device=DEVICE)
        mean = torch.empty(B, device=DEVICE)
        var = torch.empty(B, device=DEVICE)
        kernel[(1,)](r, st, mean, var, B, H, npn, G=G, BB=4, BN=BN)
        torch.testing.assert_close(mean, r.mean(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(var, r.var(1, unbiased=False), rtol=1e-4, atol=1e-5)


GRID_CASES = [
    ("lstm", 4, 3, 7, None, False, None, False),
    ("lstm", 5, 19, 5, "random", True, "train", True),   # two batch tiles of 16
    ("gru", 4, 3, 7, [4, 1, 3], False, "eval", True),
    ("gru", 5, 19, 5, "random", True, "train", False),
    ("rnn_tanh", 4, 3, 7, None, True, None, True),
    ("rnn_relu", 3, 2, 5, [1, 3], False, "train", False),
    ("lstm", 3, 4, 37, "random", False, "train", True),  # three chunks of 16 when streaming
    ("gru", 3, 4, 21, None, True, None, True),
]


def force_one_slice(monkeypatch, path: str) -> None:
    """:func:`recur.testing.one_slice_plan` for the rest of the test."""
    from recur.ops.triton import _launch

    monkeypatch.setattr(_launch, "plan", testing.one_slice_plan(path))


@pytest.mark.skipif(HAS_CUDA, reason="forces a one-slice grid plan, for the interpreter; on "
                    "CUDA the gpu tests run the grid path with many programs")
@pytest.mark.parametrize("path", ["grid", "stream"])
@pytest.mark.parametrize("case", GRID_CASES, ids=[
    f"{c[0]}-T{c[1]}-B{c[2]}-H{c[3]}" + ("-len" if c[4] else "") + ("-rev" if c[5] else "")
    + (f"-zoneout_{c[6]}" if c[6] else "") + ("-hmask" if c[7] else "") for c in GRID_CASES])
def test_grid_kernels_one_slice(case, path, monkeypatch):
    """The grid path's kernels (hidden-unit slices exchanged through global buffers and a
    grid barrier) under the interpreter. The interpreter runs programs one after another, so
    a barrier between programs would never open: the plan is forced to one slice of all H
    units per batch tile (``grid = (1, tiles)``), where each barrier waits only for itself.
    What this covers: the kernels' indexing, the double buffers of h and dr, the barrier
    counter, lengths, reverse, masks, and (``stream``) ``W_hh`` read in chunks of 16 inputs
    every step. Programs meeting each other: :func:`test_grid_kernels_many_programs`.
    """
    name, T, B, H, lengths, reverse, zoneout, h_mask = case
    cell = CELLS[name]

    force_one_slice(monkeypatch, path)
    inputs = make_inputs(cell, T, B, H)
    hm, zo = make_masks(cell, T, B, H, zoneout=zoneout, h_mask=h_mask)
    if lengths == "random":
        lens = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(3))
    else:
        lens = torch.tensor(lengths) if lengths else None
    from recur.ops.triton import which_path

    assert which_path(cell, inputs[0], inputs[1]) == path
    got = run(cell, inputs, backend="triton", lengths=lens, reverse=reverse, h_mask=hm,
              zoneout=zo)
    want = run(cell, inputs, backend="reference", lengths=lens, reverse=reverse,
               cast=torch.float64, h_mask=hm, zoneout=zo)
    assert_close(got, want, rtol=1e-5)


@pytest.mark.skipif(HAS_CUDA, reason="CPU-interpreter harness; on CUDA the gpu tests run the "
                    "grid path with many programs")
@pytest.mark.parametrize("path", ["grid", "stream"])
def test_grid_kernels_many_programs(path):
    """The grid / stream kernels with 3 programs per batch tile (and two tiles), each program
    in its own thread under the interpreter (``tests/_threaded_interpreter.py``): programs
    really meet at the barrier and exchange h, dr, the unprojected h (LSTM with projection)
    and the layer-norm statistics. Runs
    ``tests/_grid_threads.py`` in a subprocess, so a broken barrier times out instead of
    hanging the suite."""
    import subprocess

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_grid_threads.py")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    try:
        res = subprocess.run([sys.executable, script, path], capture_output=True, text=True,
                             timeout=600, env=env, check=False)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out (a barrier that never opens?): {e.stdout}")
    if res.returncode == 3:
        pytest.skip(res.stdout.strip())
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 6 and all(line.endswith(" ok") for line in lines), res.stdout


# (T, B, H, P, lengths, reverse, h_mask)
PROJ_GRID_CASES = [
    (4, 3, 7, 3, None, False, False),
    (5, 19, 21, 17, "random", True, True),
    (3, 4, 37, 20, [3, 1, 2, 3], False, True),
]


@pytest.mark.skipif(HAS_CUDA, reason="forces a one-slice grid plan, for the interpreter; on "
                    "CUDA the gpu tests run the grid path with many programs")
@pytest.mark.parametrize("path", ["grid", "stream"])
@pytest.mark.parametrize("case", PROJ_GRID_CASES, ids=[
    f"lstm-T{c[0]}-B{c[1]}-H{c[2]}-P{c[3]}" + ("-len" if c[4] else "") + ("-rev" if c[5] else "")
    + ("-hmask" if c[6] else "") for c in PROJ_GRID_CASES])
def test_projection_grid_kernels_one_slice(case, path, monkeypatch):
    """LSTM with ``proj_size`` on the grid / stream kernels (the unprojected h published and
    projected after one more barrier per step), one slice per batch tile."""
    from recur.ops.triton import which_path

    T, B, H, P, lengths, reverse, h_mask = case
    force_one_slice(monkeypatch, path)
    inputs = make_inputs(LSTM, T, B, H, P=P)
    hm, _ = make_masks(LSTM, T, B, P, zoneout=None, h_mask=h_mask)
    if lengths == "random":
        lens = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(3))
    else:
        lens = torch.tensor(lengths) if lengths else None
    assert which_path(LSTM, inputs[0], inputs[1], inputs[4]) == path
    got = run(LSTM, inputs, backend="triton", lengths=lens, reverse=reverse, h_mask=hm)
    want = run(LSTM, inputs, backend="reference", lengths=lens, reverse=reverse,
               cast=torch.float64, h_mask=hm)
    assert_close(got, want, rtol=1e-5)


def test_projection_grid_only_for_cells_that_ignore_h(monkeypatch):
    """A projected GRU (square W_hr: its update reads the projected h) must not take the grid
    kernels' projection mode, which hands the update no h: the triton backend refuses it
    there with the reason (auto then plans the reference loop), and the small path (which
    passes h) still runs it fused."""
    from recur.ops.triton import which_path

    inputs = make_inputs(GRU, 3, 3, 7, P=7)
    lens = torch.tensor([3, 1, 2])
    assert which_path(GRU, inputs[0], inputs[1], inputs[4]) == "small"
    want = run(GRU, inputs, backend="reference", lengths=lens, cast=torch.float64)
    assert_close(run(GRU, inputs, backend="triton", lengths=lens), want, rtol=1e-5)
    force_one_slice(monkeypatch, "grid")
    assert which_path(GRU, inputs[0], inputs[1], inputs[4]) is None
    assert which_path(LSTM, *make_inputs(LSTM, 3, 3, 7, P=7)[:2],
                      make_inputs(LSTM, 3, 3, 7, P=7)[4]) == "grid"
    with pytest.raises(ValueError, match="only the LSTM takes it"):
        run(GRU, inputs, backend="triton", lengths=lens)


LN_GRID_CASES = [
    ("ln_lstm", 4, 3, 7, [4, 1, 3], False, None, False),
    ("ln_lstm", 5, 19, 5, "random", True, "train", True),
    ("ln_lstm", 3, 4, 37, None, False, "eval", False),
    ("ln_gru", 4, 3, 7, None, True, "train", True),
    ("ln_gru", 3, 19, 21, "random", False, None, False),
]


@pytest.mark.skipif(HAS_CUDA, reason="forces a one-slice grid plan, for the interpreter; on "
                    "CUDA the gpu tests run the grid path with many programs")
@pytest.mark.parametrize("path", ["grid", "stream"])
@pytest.mark.parametrize("case", LN_GRID_CASES, ids=[_mask_id(c) for c in LN_GRID_CASES])
def test_layernorm_grid_kernels_one_slice(case, path, monkeypatch):
    """The layer-norm cells on the grid / stream kernels (statistics published, gathered
    after an extra barrier per norm, saved for the backward) with one slice per batch tile,
    as in :func:`test_grid_kernels_one_slice`."""
    from recur.ops.triton import which_path

    force_one_slice(monkeypatch, path)
    cell, inputs, weights, kw = _ln_case(case)
    assert which_path(cell, inputs[0], inputs[1]) == path
    got = run(cell, inputs, backend="triton", cell_weights=weights, **kw)
    want = run(cell, inputs, backend="reference", cast=torch.float64, cell_weights=weights, **kw)
    assert_close(got, want, rtol=LN_RTOL)


def test_no_bias_and_final_state_only_gradient():
    """b_hh=None and a loss on the final state alone (no gradient flows into ``out``)."""
    inputs = make_inputs(LSTM, 4, 2, 5, bias=False)
    xg, w_hh, _, (h0, c0), _ = inputs
    got, want = [], []
    for backend, dst in (("triton", got), ("reference", want)):
        _, (_, c) = scan(LSTM, xg, w_hh, None, (h0, c0), backend=backend)
        dst.extend(torch.autograd.grad(c.sum(), [xg, w_hh, h0, c0]))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_inference_under_no_grad():
    inputs = make_inputs(GRU, 3, 2, 5)
    with torch.no_grad():
        got = run(GRU, inputs, backend="triton", grads=False)
        want = run(GRU, inputs, backend="reference", grads=False)
    assert not got["out"].requires_grad
    assert_close(got, want, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_inputs(dtype):
    """16-bit inputs, fp32 accumulation: close to the float64 oracle, outputs in ``dtype``."""
    inputs = make_inputs(LSTM, 4, 3, 7, dtype=dtype)
    got = run(LSTM, inputs, backend="triton", lengths=torch.tensor([4, 2, 3]))
    want = run(LSTM, inputs, backend="reference", lengths=torch.tensor([4, 2, 3]),
               cast=torch.float64)
    assert got["out"].dtype == dtype and got["dw_hh"].dtype == dtype
    assert_close(got, want, rtol=2e-2)


def test_user_cell_gets_the_fused_kernel():
    """A cell declared outside the library, with its own Triton pointwise (issue 5's path):
    a leaky tanh RNN, h' = 0.5 h + 0.5 tanh(x + r). The pointwise is given lazily, as a
    'module:NAME' string, and as a direct pair."""
    import triton

    def leaky(xg, hg, states):
        return (0.5 * states[0] + 0.5 * torch.tanh(xg + hg),)

    @triton.jit
    def fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1):
        a = 2.0 * tl.sigmoid(2.0 * (x0 + r0)) - 1.0
        return 0.5 * s0 + 0.5 * a, s1

    @triton.jit
    def bwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1):
        a = 2.0 * tl.sigmoid(2.0 * (x0 + r0)) - 1.0
        dp = 0.5 * d0 * (1.0 - a * a)
        z = tl.zeros_like(x0)
        return dp, z, z, z, dp, z, z, z, 0.5 * d0, z

    from recur.ops.triton import pointwise_of, which_path

    cell = Cell("leaky", num_gates=1, num_states=1, update=leaky, triton_update=(fwd, bwd))
    lazy = Cell("lstm_lazy", num_gates=4, num_states=2, update=LSTM.update,
                triton_update="recur.cells.triton_pointwise:LSTM")
    assert pointwise_of(lazy).fwd is pointwise_of(LSTM).fwd
    assert pointwise_of(Cell("plain", 1, 1, leaky)) is None
    inputs = make_inputs(cell, 4, 3, 5)
    assert which_path(cell, inputs[0], inputs[1]) == "small"
    lens = torch.tensor([4, 1, 3])
    got = run(cell, inputs, backend="triton", lengths=lens, reverse=True)
    want = run(cell, inputs, backend="reference", lengths=lens, reverse=True, cast=torch.float64)
    assert_close(got, want, rtol=1e-5)


def test_example_cifg_cell_runs_fused():
    """examples/custom_cells.py's CIFG LSTM, whose Triton pointwise the user writes in
    examples/cifg_triton.py (loaded lazily by the cell): the fused kernels equal the float64
    loop, and the module on backend='triton' equals it on 'reference'."""
    import importlib.util
    import pathlib

    import recur
    from recur.ops.triton import which_path

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_cells.py"
    spec = importlib.util.spec_from_file_location("custom_cells_example_triton", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    cell = ex.cifg_lstm
    inputs = make_inputs(cell, 5, 3, 7)
    assert which_path(cell, inputs[0], inputs[1]) == "small"
    lens = torch.tensor([5, 2, 4])
    for reverse in (False, True):
        got = run(cell, inputs, backend="triton", lengths=lens, reverse=reverse)
        want = run(cell, inputs, backend="reference", lengths=lens, reverse=reverse,
                   cast=torch.float64)
        assert_close(got, want, rtol=1e-5)
    torch.manual_seed(0)
    ref = recur.CustomRNN(cell, 4, 6, num_layers=2, bidirectional=True, backend="reference",
                          device=DEVICE)
    fused = recur.CustomRNN(cell, 4, 6, num_layers=2, bidirectional=True, backend="triton",
                            device=DEVICE)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(5, 3, 4, device=DEVICE)
    torch.testing.assert_close(fused(x, lengths=lens)[0], ref(x, lengths=lens)[0],
                               rtol=1e-5, atol=1e-6)


def test_reproducible_run_to_run():
    inputs = make_inputs(GRU, 4, 3, 7)
    a = run(GRU, inputs, backend="triton", lengths=torch.tensor([4, 2, 3]))
    b = run(GRU, inputs, backend="triton", lengths=torch.tensor([4, 2, 3]))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_checker_catches_a_wrong_result():
    """``assert_close`` must fail on a wrong gradient or an unwritten (NaN) output."""
    inputs = make_inputs(RNN_TANH, 3, 2, 5)
    got = run(RNN_TANH, inputs, backend="triton")
    want = run(RNN_TANH, inputs, backend="reference", cast=torch.float64)
    bad = dict(want, dw_hh=want["dw_hh"].clone())
    bad["dw_hh"][0, 0] += 1e-2 * bad["dw_hh"].norm()
    with pytest.raises(AssertionError, match="dw_hh"):
        assert_close(got, bad, rtol=1e-5)
    nan = dict(got, out=got["out"].clone())
    nan["out"][-1, 0, 0] = float("nan")
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close(nan, want, rtol=1e-5)


def test_supports_and_preferred():
    from recur.ops.triton import preferred, supports

    x = torch.zeros(2, 2, 4, device=DEVICE)
    assert supports(LSTM, x)
    assert not supports(LSTM, x.double())  # float64 stays on the reference loop
    big = Cell("five", num_gates=5, num_states=1, update=RNN_TANH.update,
               triton_update="recur.cells.triton_pointwise:RNN_TANH")
    assert not supports(big, x)
    assert not supports(Cell("plain", 1, 1, RNN_TANH.update), x)
    # auto tries the kernels first only where a GPU run measured them faster than cuDNN:
    # bfloat16 LSTM / GRU at H = 256, nothing added (never on the CPU or in float32)
    from recur.ops.layer import LayerSpec
    from recur.ops.triton import measured_faster

    def spec(cell, H, **kw):
        return LayerSpec(cell, H, H, **kw)

    assert preferred(LSTM, x) is False and preferred(LSTM, x, [spec(LSTM, 256)]) is False
    bf16 = torch.bfloat16
    assert measured_faster(LSTM, bf16, [spec(LSTM, 256)] * 2)
    assert measured_faster(GRU, bf16, [spec(GRU, 200)])
    assert not measured_faster(LSTM, torch.float32, [spec(LSTM, 256)])
    assert not measured_faster(LSTM, bf16, [spec(LSTM, 256), spec(LSTM, 1024)])
    assert not measured_faster(LSTM, bf16, [spec(LSTM, 64)])  # not measured
    assert not measured_faster(LSTM, bf16, [spec(LSTM, 256, proj=True)])
    assert not measured_faster(LSTM, bf16, [spec(LSTM, 256, extras=frozenset({"zoneout"}))])
    assert not measured_faster(RNN_TANH, bf16, [spec(RNN_TANH, 256)])
    assert not measured_faster(LSTM, bf16, [])


# --- GPU: real sizes (issue 4), a CUDA device only -------------------------------------------

GPU_SIZES = [(B, H) for H in (64, 256, 512, 768, 1024) for B in (1, 16, 64, 256)]
GPU_DTYPES = {"float32": (torch.float32, 1e-4), "bfloat16": (torch.bfloat16, 2e-2),
              "float16": (torch.float16, 2e-2)}
GPU_CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


@gpu
@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("dtype_name", list(GPU_DTYPES))
@pytest.mark.parametrize("B,H", GPU_SIZES, ids=[f"B{B}-T128-H{H}" for B, H in GPU_SIZES])
@pytest.mark.parametrize("name", GPU_CELLS)
def test_gpu_real_sizes(name, B, H, dtype_name, monkeypatch):
    dtype, rtol = GPU_DTYPES[dtype_name]
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cell, T = CELLS[name], 128
    inputs = make_inputs(cell, T, B, H, dtype=dtype)
    lens = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(B))
    for reverse in (False, True):
        got = run(cell, inputs, backend="triton", lengths=lens, reverse=reverse)
        want = run(cell, inputs, backend="reference", lengths=lens, reverse=reverse,
                   cast=torch.float64)
        assert_close(got, want, rtol=rtol)


@gpu
@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("tf32", [False, True], ids=["tf32off", "tf32on"])
@pytest.mark.parametrize("P", [None, 128], ids=["noproj", "P128"])
def test_gpu_long_lstm(P, tf32, monkeypatch):
    """T=1024, B=16, H=512 (the latency regime), float32, TF32 off (<= 1e-4) and on (5e-3)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)
    inputs = make_inputs(LSTM, 1024, 16, 512 if P is None else 256, P=P)
    got = run(LSTM, inputs, backend="triton")
    want = run(LSTM, inputs, backend="reference", cast=torch.float64)
    assert_close(got, want, rtol=5e-3 if tf32 else 1e-4)


@gpu
@needs_cuda
@pytest.mark.parametrize("name", GPU_CELLS)
@pytest.mark.parametrize("B,H", [(16, 64), (16, 512)], ids=["B16-T128-H64", "B16-T128-H512"])
def test_gpu_masks_real_sizes(name, B, H, monkeypatch):
    """Zoneout and recurrent dropout on both kernel paths (small and grid) at real sizes."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cell = CELLS[name]
    inputs = make_inputs(cell, 128, B, H)
    lens = torch.randint(1, 129, (B,), generator=torch.Generator().manual_seed(0))
    for zoneout in ("train", "eval"):
        hm, zo = make_masks(cell, 128, B, H, zoneout=zoneout, h_mask=True)
        got = run(cell, inputs, backend="triton", lengths=lens, h_mask=hm, zoneout=zo)
        want = run(cell, inputs, backend="reference", lengths=lens, cast=torch.float64,
                   h_mask=hm, zoneout=zo)
        assert_close(got, want, rtol=1e-4)


@gpu
@needs_cuda
@pytest.mark.parametrize("B,H,P", [(16, 1024, 512), (64, 768, 256), (16, 512, 128)],
                         ids=["B16-T128-H1024-P512", "B64-T128-H768-P256",
                              "B16-T128-H512-P128"])
def test_gpu_projection_grid(B, H, P, monkeypatch):
    """LSTM with projection beyond the small path (grid / stream PROJ mode, many programs)
    against the float64 loop, TF32 off, with lengths and recurrent dropout; bitwise rerun."""
    from recur.ops.triton import which_path

    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    inputs = make_inputs(LSTM, 128, B, H, P=P)
    assert which_path(LSTM, inputs[0], inputs[1], inputs[4]) in ("grid", "stream")
    lens = torch.randint(1, 129, (B,), generator=torch.Generator().manual_seed(0))
    hm, _ = make_masks(LSTM, 128, B, P, zoneout=None, h_mask=True)
    got = run(LSTM, inputs, backend="triton", lengths=lens, h_mask=hm)
    want = run(LSTM, inputs, backend="reference", cast=torch.float64, lengths=lens, h_mask=hm)
    assert_close(got, want, rtol=1e-4)
    again = run(LSTM, inputs, backend="triton", lengths=lens, h_mask=hm)
    for k in got:
        assert torch.equal(got[k], again[k]), f"{k} differs between two runs"


@gpu
@needs_cuda
@pytest.mark.parametrize("name", list(LN_CELLS))
@pytest.mark.parametrize("B,H", [(16, 64), (16, 512), (64, 1024)],
                         ids=["B16-T128-H64", "B16-T128-H512", "B64-T128-H1024"])
def test_gpu_layernorm_real_sizes(name, B, H, monkeypatch):
    """The layer-norm cells on the small, grid and stream paths at real sizes (many programs
    exchanging statistics), float32 with TF32 off, against the float64 loop; then bitwise
    equal on a second run."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cell, T = LN_CELLS[name], 128
    inputs = make_inputs(cell, T, B, H, bias=False)
    weights = make_ln_weights(cell, H)
    lens = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(0))
    hm, zo = make_masks(cell, T, B, H, zoneout="train", h_mask=True)
    kw = {"lengths": lens, "h_mask": hm, "zoneout": zo, "cell_weights": weights}
    got = run(cell, inputs, backend="triton", **kw)
    want = run(cell, inputs, backend="reference", cast=torch.float64, **kw)
    assert_close(got, want, rtol=1e-4)
    again = run(cell, inputs, backend="triton", **kw)
    for k in got:
        assert torch.equal(got[k], again[k]), f"{k} differs between two runs"


@gpu
@needs_cuda
@pytest.mark.parametrize("name", GPU_CELLS)
@pytest.mark.parametrize("B,H", [(16, 64), (16, 512), (256, 1024)],
                         ids=["B16-T256-H64", "B16-T256-H512", "B256-T256-H1024"])
def test_gpu_bitwise_reproducible(name, B, H):
    cell = CELLS[name]
    inputs = make_inputs(cell, 256, B, H, dtype=torch.bfloat16)
    lens = torch.randint(1, 257, (B,), generator=torch.Generator().manual_seed(0))
    a = run(cell, inputs, backend="triton", lengths=lens)
    b = run(cell, inputs, backend="triton", lengths=lens)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between two runs"


@gpu
@needs_cuda
def test_gpu_paths():
    from recur.ops.triton import which_path

    def path(cell, B, H, dtype, P=None):
        xg, w_hh, _, _, w_hr = make_inputs(cell, 2, B, H, P=P, dtype=dtype)
        return which_path(cell, xg, w_hh, w_hr)

    assert path(LSTM, 16, 64, torch.float32) == "small"
    assert path(LSTM, 16, 512, torch.bfloat16) == "grid"
    assert path(GRU, 256, 256, torch.float16) == "grid"
    # W_hh slices too large for shared memory: streamed from L2 every step
    assert path(LSTM, 64, 1024, torch.float32) == "stream"
    assert path(LSTM, 16, 768, torch.float32) == "stream"
    assert path(LAYERNORM_LSTM, 16, 512, torch.float32) in ("grid", "stream")
    # projection beyond the small path: the grid kernels' PROJ mode
    assert path(LSTM, 16, 1024, torch.float32, P=512) in ("grid", "stream")


def test_float32_grid_plan_keeps_batch_tiles_small(monkeypatch):
    """On an H200-like device (132 SMs, 227 KiB of shared memory) the float32 grid path
    takes batch tiles of 16 rows and more programs (wider tiles gave ptxas stack frames and
    a 15x slower step at B=64, docs/triton.md); 16-bit keeps its wide tiles, and the
    program count never exceeds the SMs (the grid barrier needs every program resident)."""
    from recur.ops.triton import _launch

    monkeypatch.setattr(_launch, "_sm_count", lambda device: 132)
    monkeypatch.setattr(_launch, "_smem_limit", lambda device: 227 * 1024)
    cuda = torch.device("cuda")
    for B, H in ((64, 256), (256, 256), (64, 512)):
        p32 = _launch.plan(4, B, H, H, False, cuda, wbytes=4)
        p16 = _launch.plan(4, B, H, H, False, cuda, wbytes=2)
        assert p32.path == p16.path == "grid", (B, H, p32, p16)
        assert p32.BB == 16 and p16.BB == 64, (B, H, p32, p16)
        for p in (p32, p16):
            assert p.grid[0] * p.grid[1] <= 132
    assert _launch.plan(4, 64, 256, 256, False, cuda, wbytes=4).BN == 16
    assert _launch.plan(4, 256, 256, 256, False, cuda, wbytes=4).BN == 32
    # the stream path (H=1024) is unchanged: its float32 kernels compile without spills
    assert _launch.plan(4, 64, 1024, 1024, False, cuda, wbytes=4).BB == 64
