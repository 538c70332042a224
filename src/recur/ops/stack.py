"""Run a stack of recurrent layers (layers x directions) on one backend.

This is what the modules call: the input projection of each layer is one GEMM over all
steps, each direction is one :func:`scan`, directions are concatenated, and dropout runs
between layers in training mode only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell
from .dispatch import resolve_stack_backend
from .native import stack_native
from .scan import scan


@dataclass(frozen=True)
class LayerWeights:
    """One layer and direction: ``w_ih [G*H, I]``, ``w_hh [G*H, Hout]``, biases ``[G*H]`` or
    None, ``w_hr [P, H]`` or None."""

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None = None
    b_hh: Tensor | None = None
    w_hr: Tensor | None = None

    def flat(self) -> list[Tensor]:
        return [w for w in (self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.w_hr)
                if w is not None]


def run_stack(
    cell: Cell,
    x: Tensor,
    hx: tuple[Tensor, ...],
    layers: list[LayerWeights],
    *,
    num_layers: int,
    bidirectional: bool,
    dropout: float = 0.0,
    training: bool = False,
    lengths: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``num_layers`` layers of ``cell`` (two directions each if ``bidirectional``).

    Args:
        x: ``[T, B, I]`` time-major, padded.
        hx: initial states, each ``[L*D, B, H*]`` (index ``layer * D + direction``).
        layers: ``L*D`` weights in the same order.
        lengths: ``[B]`` int64 on the CPU (values in ``[1, T]``) or None.

    Returns:
        ``out: [T, B, D*Hout]`` (zero past each row's length) and the final states, each
        ``[L*D, B, H*]``.
    """
    D = 2 if bidirectional else 1
    has_bias = layers[0].b_ih is not None
    native_ok = cell.native_mode is not None
    chosen = resolve_stack_backend(backend, cell, x, native_ok=native_ok)
    if chosen == "torch":
        flat = [w for lw in layers for w in lw.flat()]
        return stack_native(cell.native_mode, x, hx, flat, has_biases=has_bias,
                            has_proj=layers[0].w_hr is not None,
                            num_layers=num_layers, bidirectional=bidirectional,
                            dropout=float(dropout), training=training, lengths=lengths)
    finals: list[list[Tensor]] = [[] for _ in range(cell.num_states)]
    inp = x
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            lw = layers[k]
            xg = F.linear(inp, lw.w_ih, lw.b_ih)  # (T, B, G*H)
            out, states = scan(cell, xg, lw.w_hh, lw.b_hh, tuple(s[k] for s in hx),
                               w_hr=lw.w_hr, lengths=lengths, reverse=d == 1, backend=chosen)
            outs.append(out)
            for j, s in enumerate(states):
                finals[j].append(s)
        inp = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (T, B, D*Hout)
        if dropout > 0 and training and layer < num_layers - 1:
            inp = F.dropout(inp, p=dropout, training=True)
    return inp, tuple(torch.stack(f, dim=0) for f in finals)
