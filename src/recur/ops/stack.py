"""Run a stack of recurrent layers (layers x directions): plan once, then run the plan.

This is what the modules call. :mod:`recur.ops.plan` chooses the executor (PyTorch's stack
kernel, the per-layer loop on the reference or Triton scan, the compile/export custom
operator, or ONNX operators while exporting); :mod:`recur.ops.executors` runs it.
"""

from __future__ import annotations

from torch import Tensor

from ..cells import Cell
from .layer import LayerSpec, LayerWeights
from .plan import plan_stack, ragged_grad, run_plan

__all__ = ["LayerWeights", "run_stack"]


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
        backend: ``"auto"`` or a backend name (see :mod:`recur.ops.plan`).

    Returns:
        ``out: [T, B, D*Hout]`` (zero past each row's length) and the final states, each
        ``[L*D, B, H*]``.
    """
    ragged = ragged_grad(x, lengths, [w for lw in layers for w in lw.flat()])
    plan = plan_stack(cell, [LayerSpec.of(cell, lw) for lw in layers], x, backend,
                      ragged_grad=ragged)
    return run_plan(plan, cell, x, hx, layers, num_layers=num_layers,
                    bidirectional=bidirectional, dropout=dropout, training=training,
                    lengths=lengths)
