"""The reference backend: a plain PyTorch loop over time.

It is the oracle of every other backend and of every test: any declared cell, any device,
any dtype (float64 included), and it supports double backward because it is nothing but
differentiable torch operations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell, States


def scan_reference(
    cell: Cell,
    xg: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    state0: States,
    *,
    w_hr: Tensor | None = None,
    lengths: Tensor | None = None,
    reverse: bool = False,
    cell_weights: tuple[Tensor, ...] = (),
    step_inputs: tuple[Tensor, ...] = (),
    h_mask: Tensor | None = None,
    zoneout: tuple[Tensor, ...] | None = None,
) -> tuple[Tensor, States]:
    """Run ``cell`` over time with a Python loop. Arguments as in :func:`recur.ops.scan`.

    Per step t: ``hg = (h_{t-1} * h_mask) W_hh^T + b_hh`` (no mask if ``h_mask`` is None),
    ``new = cell.update(xg[t], hg, states_{t-1}, *cell_weights, *(p[t] for p in step_inputs))``,
    then with ``zoneout`` masks ``m_k [T, B, H]``: ``states_t[k] = m_k[t] * states_{t-1}[k] +
    (1 - m_k[t]) * new[k]``.

    Returns ``out: [T, B, Hout]`` and the final states.
    """
    T = xg.shape[0]
    states = tuple(state0)
    valid = None
    if lengths is not None:
        steps_idx = torch.arange(T, device=xg.device).unsqueeze(1)  # (T, 1)
        valid = (steps_idx < lengths.to(xg.device).unsqueeze(0)).unsqueeze(-1)  # (T, B, 1)
    outs: list[Tensor | None] = [None] * T
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        states, outs[t] = cell_step(
            cell, xg[t], states, w_hh, b_hh, w_hr=w_hr, cell_weights=cell_weights,
            step_inputs=tuple(p[t] for p in step_inputs), h_mask=h_mask,
            zoneout=None if zoneout is None else tuple(m[t] for m in zoneout),
            valid=None if valid is None else valid[t])
    return torch.stack(outs), states  # (T, B, Hout)


def cell_step(
    cell: Cell,
    xg_t: Tensor,
    states: States,
    w_hh: Tensor,
    b_hh: Tensor | None,
    *,
    w_hr: Tensor | None = None,
    cell_weights: tuple[Tensor, ...] = (),
    step_inputs: tuple[Tensor, ...] = (),
    h_mask: Tensor | None = None,
    zoneout: tuple[Tensor, ...] | None = None,
    valid: Tensor | None = None,
) -> tuple[States, Tensor]:
    """One step of the reference loop: the single place where the engine applies a cell's
    update with its extras (the loop above and the ONNX ``Scan`` of ``recur.ops.onnx`` both
    call it).

    Args:
        xg_t: ``[B, G*H]`` this step's input projection; ``states``: the states of step t-1
            (``h: [B, Hout]``, the others ``[B, H]``).
        step_inputs: this step's slices ``p[t]`` of ``scan``'s ``step_inputs``.
        zoneout: this step's masks, one ``[B, H]`` per state (or broadcastable), or None.
        valid: ``[B, 1]`` bool, False for rows past their length (state kept, output zero),
            or None (every row runs).
        Others as in :func:`recur.ops.scan`.

    Returns:
        The states of step t and this step's output ``[B, Hout]``.
    """
    h = states[0] if h_mask is None else states[0] * h_mask  # (B, Hout)
    hg = F.linear(h, w_hh, b_hh)  # (B, G*H)
    new = cell.update(xg_t, hg, states, *cell_weights, *step_inputs)
    if zoneout is not None:
        new = tuple(m * s + (1 - m) * n for m, s, n in zip(zoneout, states, new))
    if w_hr is not None:
        new = (F.linear(new[0], w_hr),) + tuple(new[1:])  # h: (B, P)
    if valid is None:
        return tuple(new), new[0]
    new = tuple(torch.where(valid, n, s) for n, s in zip(new, states))
    return new, torch.where(valid, new[0], torch.zeros_like(new[0]))
