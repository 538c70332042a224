"""Run a stack of recurrent layers (layers x directions) on one backend.

This is what the modules call: the input projection of each layer is one GEMM over all
steps, each direction is one :func:`scan`, directions are concatenated, and dropout runs
between layers in training mode only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell
from .dispatch import resolve_stack_backend
from .native import stack_native
from .scan import scan


class LayerWeights(NamedTuple):
    """One layer and direction: ``w_ih [G*H, I]``, ``w_hh [G*H, Hout]``, biases ``[G*H]`` or
    None, ``w_hr [P, H]`` or None.

    Optional extras, for variants and declared cells (all default to "none"; any of them
    makes the stack run on the reference loop, see :func:`recur.ops.scan`):
    ``params`` handed to every step's update, ``step_params`` (``[T, ...]``, sliced per step),
    ``h_mask [B, Hout]`` on ``h_{t-1}`` before ``W_hh``, ``zoneout`` masks (one ``[T, B, H]``
    per state, see :func:`recur.ops.scan`), and ``xg_fn`` applied once to the whole input
    projection ``xg [T, B, G*H]`` before the scan (e.g. a layer norm).

    PyTorch's kernels take none of them; the fused Triton kernels take ``h_mask``,
    ``zoneout`` and ``xg_fn`` (see :meth:`fusable`).
    """

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None = None
    b_hh: Tensor | None = None
    w_hr: Tensor | None = None
    params: tuple[Tensor, ...] = ()
    step_params: tuple[Tensor, ...] = ()
    h_mask: Tensor | None = None
    xg_fn: Callable[[Tensor], Tensor] | None = None
    zoneout: tuple[Tensor, ...] | None = None

    def flat(self) -> list[Tensor]:
        """torch.nn's weights only (``w_ih, w_hh, b_ih, b_hh, w_hr``), the Nones left out."""
        return [w for w in self[:5] if w is not None]

    def has_extras(self) -> bool:
        """Whether anything beyond torch.nn's weights takes part (PyTorch's kernels can't)."""
        return (bool(self.params) or bool(self.step_params) or self.h_mask is not None
                or self.xg_fn is not None or self.zoneout is not None)

    def fusable(self, cell: Cell) -> bool:
        """Whether the fused Triton kernels can take this layer's extras with ``cell``: all
        but ``step_params`` and ``params`` (which only the reference loop hands to an update),
        except a layer-norm cell's params (``Cell.fused_norm``), which the kernels apply."""
        if self.step_params:
            return False
        return not self.params or (cell.fused_norm is not None and self.w_hr is None
                                   and self.b_hh is None)


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
    extras = any(lw.has_extras() for lw in layers)
    if torch.onnx.is_in_onnx_export():
        # torch.onnx.export: ONNX's RNN / LSTM / GRU operators, or a Scan (see ops/onnx.py)
        from .onnx import run_stack_onnx

        return run_stack_onnx(cell, x, hx, layers, num_layers=num_layers,
                              bidirectional=bidirectional, dropout=dropout, training=training,
                              lengths=lengths)
    if torch.compiler.is_compiling() and cell.native_mode is not None and not extras:
        # torch.compile / torch.export: one opaque custom operator per layer (see custom_op)
        from .custom_op import run_stack_op

        return run_stack_op(cell.native_mode, x, hx, layers, num_layers=num_layers,
                            bidirectional=bidirectional, dropout=dropout, training=training,
                            lengths=lengths, backend=backend)
    native_ok = cell.native_mode is not None and not extras
    chosen = resolve_stack_backend(backend, cell, x, native_ok=native_ok)
    if chosen == "triton" and not all(lw.fusable(cell) for lw in layers):
        # The fused kernels hand no extra tensors to a cell's update (see recur.ops.scan).
        if backend != "auto":
            raise ValueError(f"backend='triton' cannot run cell {cell.name!r} with extra "
                             "params / step_params (it takes h_mask, zoneout, xg_fn and only "
                             "the layer-norm cells' params); use 'auto' or 'reference'")
        chosen = "reference"
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
            if lw.xg_fn is not None:
                xg = lw.xg_fn(xg)  # (T, B, G*H)
            out, states = scan(cell, xg, lw.w_hh, lw.b_hh, tuple(s[k] for s in hx),
                               w_hr=lw.w_hr, lengths=lengths, reverse=d == 1, backend=chosen,
                               params=lw.params, step_params=lw.step_params,
                               h_mask=lw.h_mask, zoneout=lw.zoneout)
            outs.append(out)
            for j, s in enumerate(states):
                finals[j].append(s)
        inp = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (T, B, D*Hout)
        if dropout > 0 and training and layer < num_layers - 1:
            inp = F.dropout(inp, p=dropout, training=True)
    return inp, tuple(torch.stack(f, dim=0) for f in finals)
