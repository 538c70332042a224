"""Helpers shared by the parity tests: build a torch.nn twin, run both, compare everything."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import recur

TOL = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-5)}


def make_pair(mode, I, H, L, bias, batch_first, bidirectional, proj, dtype, backend, dropout=0.0):
    """A torch.nn module and a recur module with the same weights (loaded strictly)."""
    kw = dict(num_layers=L, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
              dtype=dtype, dropout=dropout)
    if mode == "LSTM":
        ref = torch.nn.LSTM(I, H, proj_size=proj, **kw)
        ours = recur.LSTM(I, H, proj_size=proj, backend=backend, **kw)
    elif mode == "GRU":
        ref = torch.nn.GRU(I, H, **kw)
        ours = recur.GRU(I, H, backend=backend, **kw)
    else:
        nl = "tanh" if mode == "RNN_TANH" else "relu"
        ref = torch.nn.RNN(I, H, nonlinearity=nl, **kw)
        ours = recur.RNN(I, H, nonlinearity=nl, backend=backend, **kw)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def run_and_grad(module, inp, hx, kind, lengths, batch_first, weights):
    """Forward + backward of a weighted sum of every output; returns outputs and grads.

    kind: "batched" | "unbatched" | "packed" | "lengths". For "lengths" a recur module gets
    the padded input and ``lengths=``, a torch.nn module gets the packed input.
    """
    x = inp.detach().clone().requires_grad_(True)
    hxs = None
    if hx is not None:
        hxs = tuple(h.detach().clone().requires_grad_(True) for h in hx)
    arg_hx = None if hxs is None else (hxs if len(hxs) == 2 else hxs[0])
    is_recur = isinstance(module, (recur.RNNBase,))
    if kind == "packed" or (kind == "lengths" and not is_recur):
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, state = module(packed, arg_hx)
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    elif kind == "lengths":
        out, state = module(x, arg_hx, lengths=lengths)
    else:
        out, state = module(x, arg_hx)
    states = state if isinstance(state, tuple) else (state,)
    loss = (out * weights[0][: out.numel()].view_as(out)).sum()
    for k, s in enumerate(states):
        loss = loss + (s * weights[k + 1][: s.numel()].view_as(s)).sum()
    params = dict(module.named_parameters())
    wrt = [x] + list(hxs or ()) + list(params.values())
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    names = ["input"] + [f"hx{k}" for k in range(len(hxs or ()))] + list(params)
    return out, states, dict(zip(names, grads))


def assert_same(a, b, dtype, what):
    tol = TOL[dtype]
    torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{what}: {m}")
