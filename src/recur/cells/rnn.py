"""Elman RNN cells: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), one gate block."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Cell, States


def _tanh_update(xg: Tensor, hg: Tensor, states: States) -> States:
    return (torch.tanh(xg + hg),)  # (B, H)


def _relu_update(xg: Tensor, hg: Tensor, states: States) -> States:
    return (torch.relu(xg + hg),)  # (B, H)


RNN_TANH = Cell(
    "rnn_tanh", num_gates=1, num_states=1, update=_tanh_update, native_mode="RNN_TANH",
    doc="h' = tanh(W_ih x + b_ih + W_hh h + b_hh)",
)
RNN_RELU = Cell(
    "rnn_relu", num_gates=1, num_states=1, update=_relu_update, native_mode="RNN_RELU",
    doc="h' = relu(W_ih x + b_ih + W_hh h + b_hh)",
)
