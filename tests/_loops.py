"""An independent plain-PyTorch loop over layers, directions and time, for the variant and
custom-cell tests. It knows nothing of recur: each test writes its cell's step from the
formulas and this file only handles layers, directions, lengths (freeze a row after its
length, zero outputs past it) and concatenation."""

from __future__ import annotations

import torch


def loop_stack(step, x, lengths, L, D, state0):
    """Run ``step(k, t, x_t, states) -> new states`` (k = layer * D + direction).

    Args:
        x: ``[T, B, I]``; lengths: ``[B]`` or None; state0: tuple of ``[L*D, B, *]``.

    Returns:
        ``out [T, B, D*H]`` and the final states, each ``[L*D, B, *]``.
    """
    T, B = x.shape[0], x.shape[1]
    lengths = torch.full((B,), T) if lengths is None else torch.as_tensor(lengths)
    inp = x
    finals = [[] for _ in state0]
    for layer in range(L):
        outs = []
        for d in range(D):
            k = layer * D + d
            states = tuple(s[k] for s in state0)
            out = [None] * T
            for t in (range(T - 1, -1, -1) if d == 1 else range(T)):
                new = step(k, t, inp[t], states)
                valid = (t < lengths).unsqueeze(-1)  # (B, 1)
                states = tuple(torch.where(valid, n, s) for n, s in zip(new, states))
                out[t] = torch.where(valid, states[0], torch.zeros_like(states[0]))
            outs.append(torch.stack(out))
            for j, s in enumerate(states):
                finals[j].append(s)
        inp = torch.cat(outs, dim=-1)
    return inp, tuple(torch.stack(f) for f in finals)


def ln(v, w, b, eps=1e-5):
    """Layer norm over the last dimension, from the formula."""
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    return (v - mu) / torch.sqrt(var + eps) * w + b


def grads(outputs, params):
    """Gradients of a fixed random projection of ``outputs`` w.r.t. ``params``."""
    gen = torch.Generator().manual_seed(123)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    return torch.autograd.grad(loss, params, allow_unused=False)


def assert_close_all(a, b, atol=1e-10, rtol=1e-10):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=atol, rtol=rtol)
