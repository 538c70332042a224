"""recur.RNN / LSTM / GRU against torch.nn, over random configurations (hypothesis).

Every cell x 1-3 layers x bidirectional x batch_first x bias x proj_size x batched /
unbatched / packed / lengths= x hx given or not: outputs, final states and the gradients of
the input, the initial state and every parameter by name. float64 within 1e-10, float32
within 1e-5.

Each example runs recur's own engine (``backend="reference"``: the declared cells on the
loop, not PyTorch's kernels) and the default path (``"auto"``, which on the CPU hands the
weights to PyTorch's kernels, so it mostly checks the wrapper); a second, smaller search runs
the fused Triton kernels under the CPU interpreter (float32).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from _parity import assert_same, make_pair, run_and_grad
from hypothesis import given, settings
from hypothesis import strategies as st

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


@st.composite
def configs(draw):
    mode = draw(st.sampled_from(MODES))
    H = draw(st.integers(1, 7))
    return dict(
        mode=mode,
        I=draw(st.integers(1, 5)),
        H=H,
        L=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj=draw(st.integers(0, H - 1)) if mode == "LSTM" else 0,
        kind=draw(st.sampled_from(["batched", "unbatched", "packed", "lengths"])),
        hx_given=draw(st.booleans()),
        T=draw(st.integers(1, 6)),
        B=draw(st.integers(1, 4)),
        dtype=draw(st.sampled_from([torch.float64, torch.float32])),
        seed=draw(st.integers(0, 2**16)),
    )


def _check_against_torch_nn(cfg, backends):
    g = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    T, B, kind, dtype = cfg["T"], cfg["B"], cfg["kind"], cfg["dtype"]
    batched = kind != "unbatched"
    if not batched:
        shape = (T, cfg["I"])
    else:
        shape = (B, T, cfg["I"]) if cfg["batch_first"] else (T, B, cfg["I"])
    x = torch.randn(shape, generator=g, dtype=dtype)
    lengths = None
    if kind in ("packed", "lengths"):
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[torch.randint(0, B, (1,), generator=g)] = T  # pad_packed_sequence keeps T
    hx = None
    if cfg["hx_given"]:
        D = 2 if cfg["bidirectional"] else 1
        h_out = cfg["proj"] or cfg["H"]
        lead = (cfg["L"] * D, B) if batched else (cfg["L"] * D,)
        hx = [torch.randn(*lead, h_out, generator=g, dtype=dtype)]
        if cfg["mode"] == "LSTM":
            hx.append(torch.randn(*lead, cfg["H"], generator=g, dtype=dtype))
    weights = [torch.randn(4096, generator=g, dtype=dtype) for _ in range(3)]
    ref = None
    for backend in backends:
        ref, ours = make_pair(cfg["mode"], cfg["I"], cfg["H"], cfg["L"], cfg["bias"],
                              cfg["batch_first"], cfg["bidirectional"], cfg["proj"], dtype,
                              backend)
        out_r, st_r, gr_r = run_and_grad(ref, x, hx, kind, lengths, cfg["batch_first"],
                                         weights)
        out_o, st_o, gr_o = run_and_grad(ours, x, hx, kind, lengths, cfg["batch_first"],
                                         weights)
        assert out_o.shape == out_r.shape
        assert_same(out_o, out_r, dtype, f"{backend}: output")
        assert len(st_o) == len(st_r)
        for k, (a, b) in enumerate(zip(st_o, st_r)):
            assert_same(a, b, dtype, f"{backend}: final state {k}")
        assert gr_o.keys() == gr_r.keys()
        for name in gr_r:
            a, b = gr_o[name], gr_r[name]
            assert (a is None) == (b is None), name
            if a is not None:
                assert_same(a, b, dtype, f"{backend}: grad of {name}")


# torch.nn itself warns that oneDNN cannot run an LSTM with projections (and falls back).
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
@settings(max_examples=400, deadline=None, derandomize=True)
@given(cfg=configs())
def test_matches_torch_nn(cfg):
    _check_against_torch_nn(cfg, ["reference", "auto"])


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter run is for the CPU; on "
                    "CUDA tests/test_triton.py runs the kernels compiled")
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
@settings(max_examples=12, deadline=None, derandomize=True)
@given(cfg=configs().map(lambda c: {**c, "dtype": torch.float32}))
def test_triton_kernels_match_torch_nn(cfg):
    """The fused kernels (Triton's interpreter, float32) through the whole module."""
    _check_against_torch_nn(cfg, ["triton"])


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_init(mode):
    """Constructed under the same seed, recur and torch.nn draw identical parameters."""
    kw = dict(num_layers=2, bidirectional=True)
    if mode == "LSTM":
        kw["proj_size"] = 2
    torch.manual_seed(3)
    ref = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(mode, torch.nn.RNN)(4, 5, **kw)
    torch.manual_seed(3)
    import recur

    ours = {"LSTM": recur.LSTM, "GRU": recur.GRU}.get(mode, recur.RNN)(4, 5, **kw)
    names_r = [n for n, _ in ref.named_parameters()]
    names_o = [n for n, _ in ours.named_parameters()]
    assert names_o == names_r
    for (n, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert p.shape == q.shape and torch.equal(p, q), n
    # strict load both ways
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(ref.state_dict(), strict=True)
