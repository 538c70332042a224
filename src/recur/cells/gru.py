"""GRU cell, torch.nn's gate order (r, z, n) and formula.

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

The input part (xg) and the recurrent part (hg) stay separate because r multiplies only
the recurrent part of n.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Cell, States


def _gru_update(xg: Tensor, hg: Tensor, states: States) -> States:
    h = states[0]  # (B, H)
    xr, xz, xn = xg.chunk(3, dim=-1)  # each (B, H)
    hr, hz, hn = hg.chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


GRU = Cell(
    "gru", num_gates=3, num_states=1, update=_gru_update, native_mode="GRU",
    doc="r, z = s(.), n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = (1-z) n + z h",
)
