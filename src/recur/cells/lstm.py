"""LSTM cell, torch.nn's gate order (i, f, g, o).

    i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h' = sigmoid(o) * tanh(c')

The optional projection of torch.nn (``proj_size``: h' <- h' W_hr^T) is not part of the
pointwise update; the engine applies it after the update.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Cell, States


def _lstm_update(xg: Tensor, hg: Tensor, states: States) -> States:
    c = states[1]  # (B, H)
    i, f, g, o = (xg + hg).chunk(4, dim=-1)  # each (B, H)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    return h_new, c_new


LSTM = Cell(
    "lstm", num_gates=4, num_states=2, update=_lstm_update, native_mode="LSTM",
    doc="c' = s(f) c + s(i) tanh(g); h' = s(o) tanh(c')", forget_gate=1,
)
