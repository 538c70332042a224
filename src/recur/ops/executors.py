"""The eager executors: run a whole stack (layers x directions) on one backend that the
planner (:mod:`recur.ops.plan`) already chose. Nothing here chooses a backend.

- ``"torch"``: PyTorch's stack kernel (``_VF.lstm`` & co.), the whole stack in one call;
- ``"reference"`` / ``"triton"``: one input GEMM per layer and direction over all steps,
  then that backend's scan per direction, directions concatenated, inter-layer dropout in
  training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell
from .layer import LayerWeights
from .memory import empty_large
from .native import stack_native
from .reference import scan_reference


def _cpu():
    """:mod:`recur.ops.cpu`, imported at the first use (as :func:`scan_function` does: its C
    code generator is not loaded with recur), then one global lookup per call."""
    global _CPU
    if _CPU is None:
        from . import cpu

        _CPU = cpu
    return _CPU


_CPU = None


def scan_function(backend: str):
    """The scan of ``backend`` (``"reference"`` or ``"triton"``), same signature as
    :func:`recur.ops.scan_reference`."""
    if backend == "reference":
        return scan_reference
    if backend == "cpu":
        from .cpu import scan_cpu

        return scan_cpu
    if backend == "triton":
        from .triton import scan_triton  # lazy: Triton is an optional extra

        return scan_triton
    raise ValueError(f"no per-layer scan for backend {backend!r}")


def run_eager(
    backend: str,
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
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run the stack on ``backend``; arguments and returns as :func:`recur.ops.run_stack`
    (``x: [T, B, I]``; ``hx`` each ``[L*D, B, H*]``; returns ``out: [T, B, D*Hout]`` and
    the final states ``[L*D, B, H*]``)."""
    if backend == "torch":
        flat = [w for lw in layers for w in lw.flat()]
        return stack_native(cell.native_mode, x, hx, flat, has_biases=layers[0].b_ih is not None,
                            has_proj=layers[0].w_hr is not None, num_layers=num_layers,
                            bidirectional=bidirectional, dropout=float(dropout),
                            training=training, lengths=lengths)
    scan_fn = scan_function(backend)
    D = 2 if bidirectional else 1
    finals: list[list[Tensor]] = [[] for _ in range(cell.num_states)]
    inp = x
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            lw = layers[k]
            run_cell, weights = cell, lw.cell_weights
            kw: dict = {}
            folded = None  # on the cpu backend: (cell with LN_x inside, its weights) or None
            if backend == "cpu" and not _needs_grad(inp, lw):
                cpu = _cpu()
                if lw.h_mask is None and lw.w_hr is None and not lw.step_inputs:
                    # LN_x inside the kernel, b_ih added after it there: no sum of the two
                    folded = cpu.input_norm_in_kernel(cell, lw, b_ih_apart=True)
                    p_cell, p_weights = folded or (cell, lw.cell_weights)
                    res = cpu.scan_cpu_projected(
                        p_cell, inp, lw.w_ih, lw.b_ih, None if folded else lw.xg_fn,
                        lw.w_hh, lw.b_hh, tuple(s[k] for s in hx), lengths=lengths,
                        reverse=d == 1, cell_weights=p_weights, zoneout=lw.zoneout)
                    if res is not None:
                        outs.append(res[0])
                        for j, s in enumerate(res[1]):
                            finals[j].append(s)
                        continue
                xg = _project_no_grad(inp, lw)  # (T, B, G*H)
            elif backend == "cpu" and (lw.xg_fn is None or (
                    folded := _cpu().input_norm_in_kernel(cell, lw)) is not None):
                # b_ih is added per row inside the kernel (no [T, B, G*H] pass for it)
                xg = _project(inp, lw.w_ih)  # (T, B, G*H), without b_ih
                kw["b_ih"] = lw.b_ih
                if folded is not None:  # LN_x inside the kernel (the raw projection in)
                    run_cell, weights = folded
            else:
                xg = F.linear(inp, lw.w_ih, lw.b_ih)  # (T, B, G*H)
                if lw.xg_fn is not None:
                    xg = lw.xg_fn(xg)  # (T, B, G*H)
            if lw.step_inputs:
                kw["step_inputs"] = lw.step_inputs
            out, states = scan_fn(run_cell, xg, lw.w_hh, lw.b_hh, tuple(s[k] for s in hx),
                                  w_hr=lw.w_hr, lengths=lengths, reverse=d == 1,
                                  cell_weights=weights, h_mask=lw.h_mask,
                                  zoneout=lw.zoneout, **kw)
            outs.append(out)
            for j, s in enumerate(states):
                finals[j].append(s)
        inp = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (T, B, D*Hout)
        if dropout > 0 and training and layer < num_layers - 1:
            inp = F.dropout(inp, p=dropout, training=True)
    return inp, tuple(torch.stack(f, dim=0) for f in finals)


#: bytes per block of :func:`_project_no_grad`'s ``xg_fn``: a block of steps that stays in
#: cache between the projection's write and the normalisation
XG_FN_BLOCK_BYTES = 1 << 20


def _project(inp: Tensor, w_ih: Tensor) -> Tensor:
    """``inp W_ih^T`` (``[T, B, I]`` -> ``[T, B, G*H]``) as one product of the flattened steps
    (:func:`recur.ops.cpu.project`: PyTorch's ``brgemm`` where it takes it)."""
    T, B, I = inp.shape
    return _cpu().project(inp.reshape(T * B, I), w_ih).view(T, B, w_ih.shape[0])


def _needs_grad(inp: Tensor, lw: LayerWeights) -> bool:
    if not torch.is_grad_enabled():
        return False
    return inp.requires_grad or any(
        t is not None and t.requires_grad for t in (lw.w_ih, lw.b_ih)) or (
        lw.xg_fn is not None)  # the xg_fn's own parameters (LN_x) may need gradients


def _project_no_grad(inp: Tensor, lw: LayerWeights) -> Tensor:
    """``xg_fn(inp W_ih^T + b_ih)`` without autograd (``inp: [T, B, I]`` -> ``[T, B, G*H]``),
    into one fresh buffer of :func:`recur.ops.memory.empty_large`; ``xg_fn`` (a per-step map
    such as LN_x) runs block by block over time, in place, while the block is in cache."""
    T, B, I = inp.shape
    GX = lw.w_ih.shape[0]
    xg = empty_large(T, B, GX, like=inp)
    flat, x2 = xg.view(T * B, GX), inp.reshape(T * B, I)
    if lw.b_ih is None:
        torch.mm(x2, lw.w_ih.t(), out=flat)
    else:
        torch.addmm(lw.b_ih, x2, lw.w_ih.t(), out=flat)
    if lw.xg_fn is not None:
        steps = max(1, XG_FN_BLOCK_BYTES // max(1, B * GX * xg.element_size()))
        for t0 in range(0, T, steps):
            block = xg[t0:t0 + steps]
            block.copy_(lw.xg_fn(block))
    return xg
