"""Under torch.autocast recur's layers run, and keep their states, in float32."""

from __future__ import annotations

import pytest
import torch

import recur

I, H, T, B = 4, 6, 5, 3
CASES = {
    "RNN": lambda **kw: recur.RNN(I, H, **kw),
    "LSTM": lambda **kw: recur.LSTM(I, H, **kw),
    "LSTM-proj": lambda **kw: recur.LSTM(I, H, proj_size=3, **kw),
    "GRU": lambda **kw: recur.GRU(I, H, **kw),
}


def _states(st):
    return st if isinstance(st, tuple) else (st,)


AMP = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=pytest.mark.gpu),
    pytest.param("cuda", torch.float16, id="cuda-fp16", marks=pytest.mark.gpu),
]


@pytest.mark.parametrize("device, amp_dtype", AMP)
@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("name", list(CASES))
def test_autocast_runs_in_float32(name, backend, device, amp_dtype):
    torch.manual_seed(0)
    m = CASES[name](num_layers=2, bidirectional=True, backend=backend, device=device)
    proj = torch.nn.Linear(I, I, device=device)
    x = torch.randn(T, B, I, device=device)
    lens = torch.tensor([5, 2, 4])
    with torch.autocast(device, dtype=amp_dtype):
        xb = proj(x)  # half precision under autocast, as a real model's input would be
        assert xb.dtype == amp_dtype
        out, st = m(xb, lengths=lens)
        # the state fed back (float32) with a bfloat16 input is accepted
        out2, st2 = m(xb, st, lengths=lens)
    assert out.dtype == torch.float32 and out2.dtype == torch.float32
    assert all(s.dtype == torch.float32 for s in _states(st) + _states(st2))
    # same numbers as a float32 run on the (rounded) bfloat16 input
    want, want_st = m(xb.float(), lengths=lens)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(_states(st), _states(want_st))
    (out.sum() + out2.sum()).backward()
    assert m.weight_hh_l0.grad.dtype == torch.float32
    assert torch.isfinite(m.weight_hh_l0.grad).all()


def test_without_autocast_a_dtype_mismatch_still_raises():
    with pytest.raises(ValueError, match="input dtype"):
        recur.GRU(I, H)(torch.randn(T, B, I, dtype=torch.bfloat16))


def test_autocast_step_keeps_float32_state():
    m = recur.LSTM(I, H)
    state = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for t in range(3):
            y, state = m.step(torch.randn(B, I).bfloat16(), state)
    assert y.dtype == torch.float32 and state[1].dtype == torch.float32
