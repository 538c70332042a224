"""``scan``: run one declared cell over a whole sequence, one layer and one direction."""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells import Cell, States
from .layer import LayerSpec
from .plan import plan_scan
from .reference import scan_reference


def _check(cell: Cell, xg: Tensor, w_hh: Tensor, b_hh: Tensor | None, state0: States | None,
           w_hr: Tensor | None, lengths: Tensor | None) -> tuple[States, Tensor | None]:
    if xg.dim() != 3:
        raise ValueError(f"xg must be 3-D [T, B, G*H], got {xg.dim()}-D {tuple(xg.shape)}")
    T, B, GH = xg.shape
    if T == 0:  # an empty batch (B == 0) is fine: empty outputs, as in torch.nn
        raise ValueError(f"xg must have T >= 1, got shape {tuple(xg.shape)}")
    if GH % cell.num_gates:
        raise ValueError(f"xg.size(-1) must be a multiple of num_gates={cell.num_gates}, got {GH}")
    H = GH // cell.num_gates
    h_out = w_hr.shape[0] if w_hr is not None else H
    if tuple(w_hh.shape) != (GH, h_out):
        raise ValueError(f"w_hh must have shape {(GH, h_out)}, got {tuple(w_hh.shape)}")
    if b_hh is not None and tuple(b_hh.shape) != (GH,):
        raise ValueError(f"b_hh must have shape {(GH,)}, got {tuple(b_hh.shape)}")
    if w_hr is not None and tuple(w_hr.shape) != (h_out, H):
        raise ValueError(f"w_hr must have shape {(h_out, H)}, got {tuple(w_hr.shape)}")
    shapes = [(B, h_out)] + [(B, H)] * (cell.num_states - 1)
    if state0 is None:
        state0 = tuple(xg.new_zeros(s) for s in shapes)
    else:
        state0 = tuple(state0)
        if len(state0) != cell.num_states:
            raise ValueError(f"cell {cell.name!r} has {cell.num_states} states, got {len(state0)}")
        for k, (s, want) in enumerate(zip(state0, shapes)):
            if tuple(s.shape) != want:
                raise ValueError(f"state0[{k}] must have shape {want}, got {tuple(s.shape)}")
    if lengths is not None:
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.shape[0] != B:
            raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
        if lengths.is_floating_point() or lengths.is_complex():
            raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
        lo, hi = (int(lengths.min()), int(lengths.max())) if B else (1, T)
        if lo < 1 or hi > T:
            raise ValueError(f"lengths must lie in [1, {T}], got values in [{lo}, {hi}]")
    return state0, lengths


def _check_zoneout(cell: Cell, zoneout, xg: Tensor, w_hr: Tensor | None) -> tuple[Tensor, ...]:
    zoneout = tuple(zoneout)
    if len(zoneout) != cell.num_states:
        raise ValueError(f"zoneout needs one mask per state ({cell.num_states} for cell "
                         f"{cell.name!r}), got {len(zoneout)}")
    if w_hr is not None:
        raise ValueError("zoneout mixes h_{t-1} and the new h unit by unit, which needs no "
                         "projection (w_hr=None)")
    T, B, GH = xg.shape
    want = (T, B, GH // cell.num_gates)
    for k, m in enumerate(zoneout):
        if not isinstance(m, Tensor) or tuple(m.shape) != want:
            got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"zoneout[{k}] must have shape {want} [T, B, H], got {got}")
        if not m.is_floating_point() or m.device != xg.device:
            raise ValueError(f"zoneout[{k}] must be a floating tensor on {xg.device}, got "
                             f"{m.dtype} on {m.device}")
    return zoneout


def scan(
    cell: Cell,
    xg: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None = None,
    state0: States | None = None,
    *,
    w_hr: Tensor | None = None,
    lengths: Tensor | None = None,
    reverse: bool = False,
    backend: str = "auto",
    cell_weights: tuple[Tensor, ...] = (),
    step_inputs: tuple[Tensor, ...] = (),
    h_mask: Tensor | None = None,
    zoneout: tuple[Tensor, ...] | None = None,
) -> tuple[Tensor, States]:
    """Run ``cell`` over all T steps of one layer in one direction.

    Args:
        cell: a :class:`recur.cells.Cell` declaration (G gates, its states, its update).
        xg: ``[T, B, G*H]`` the input projection ``x @ W_ih^T + b_ih`` for every step,
            computed by the caller in one GEMM.
        w_hh: ``[G*H, Hout]`` recurrent weights (``Hout = P`` with a projection, else ``H``).
        b_hh: ``[G*H]`` recurrent bias, or ``None``.
        state0: initial states, ``h0: [B, Hout]`` then the others ``[B, H]``; zeros if None.
        w_hr: ``[P, H]`` projection of h after each update (LSTM ``proj_size``), or None.
        lengths: ``[B]`` integers in ``[1, T]``: row b runs steps ``0..lengths[b]-1``; its state
            freezes after that and its outputs past it are zero. None: every row runs T steps.
        reverse: run from the last valid step of each row down to step 0.
        backend: ``"auto" | "reference" | "cpu" | "triton"`` (``RECUR_BACKEND`` overrides ``auto``).
            PyTorch's fused kernels run whole stacks, not a single scan: see ``run_stack``.
        cell_weights: the cell's weights (one tensor per declared ``Param``, e.g. layer-norm
            gains), handed to every step's update after the states
            (``cell.update(xg_t, hg_t, states, *cell_weights, *step_slices)``).
        step_inputs: extra ``[T, ...]`` tensors of which step t's slice ``p[t]`` is handed to
            the update after ``cell_weights``, e.g. per-step zoneout masks ``[T, B, H]``.
        h_mask: ``[B, Hout]`` multiplied onto ``h_{t-1}`` before ``W_hh`` at every step (a
            recurrent-dropout mask), or None.
        zoneout: one mask ``[T, B, H]`` per state (``[T, B, H]``-broadcastable views such as
            ``p.expand(T, B, H)`` are fine), or None: after the update,
            ``s_k = m_k[t] * s_k(t-1) + (1 - m_k[t]) * new_k`` (Krueger et al. 2016; 1 keeps
            the old value). Not with ``w_hr``.

        ``cell_weights`` and ``step_inputs`` run on the reference loop (and ``cpu``, which
        takes ``cell_weights``) only; ``backend="triton"`` raises, except for the layer-norm
        cells' ``cell_weights`` (``Cell.norm``), which the fused kernels take;
        ``h_mask`` and ``zoneout`` run on every backend but ``torch``.

    Returns:
        ``out: [T, B, Hout]`` every step's h (zero past a row's length) and the final states
        (each row's state at its last valid step).

    Example:
        >>> from recur.cells import LSTM
        >>> xg = torch.randn(5, 2, 4 * 3)          # T=5, B=2, H=3
        >>> out, (h, c) = scan(LSTM, xg, torch.randn(12, 3))
        >>> out.shape, h.shape
        (torch.Size([5, 2, 3]), torch.Size([2, 3]))
    """
    state0, lengths = _check(cell, xg, w_hh, b_hh, state0, w_hr, lengths)
    if h_mask is not None and tuple(h_mask.shape) != tuple(state0[0].shape):
        raise ValueError(f"h_mask must have shape {tuple(state0[0].shape)}, "
                         f"got {tuple(h_mask.shape)}")
    if h_mask is not None and (not h_mask.is_floating_point() or h_mask.device != xg.device):
        raise ValueError(f"h_mask must be a floating tensor on {xg.device}, got "
                         f"{h_mask.dtype} on {h_mask.device}")
    for k, p in enumerate(step_inputs):
        if p.shape[0] != xg.shape[0]:
            raise ValueError(f"step_inputs[{k}] must have T={xg.shape[0]} rows, "
                             f"got shape {tuple(p.shape)}")
    if zoneout is not None:
        zoneout = _check_zoneout(cell, zoneout, xg, w_hr)
    spec = LayerSpec.of_tensors(cell, w_hh, b_hh, w_hr, cell_weights=tuple(cell_weights),
                                step_inputs=tuple(step_inputs), h_mask=h_mask, zoneout=zoneout)
    plan = plan_scan(spec, xg, backend)
    if plan.backend == "triton" and xg.shape[1] > 0:
        from .triton import scan_triton

        return scan_triton(cell, xg, w_hh, b_hh, state0, w_hr=w_hr, lengths=lengths,
                           reverse=reverse, h_mask=h_mask, zoneout=zoneout,
                           cell_weights=tuple(cell_weights))
    if plan.backend == "cpu" and xg.shape[1] > 0:
        from .cpu import scan_cpu

        return scan_cpu(cell, xg, w_hh, b_hh, state0, lengths=lengths, reverse=reverse,
                        cell_weights=tuple(cell_weights), h_mask=h_mask, zoneout=zoneout)
    # the reference loop (an empty batch has no step to run on any backend)
    return scan_reference(cell, xg, w_hh, b_hh, state0, w_hr=w_hr, lengths=lengths,
                          reverse=reverse, cell_weights=tuple(cell_weights),
                          step_inputs=tuple(step_inputs), h_mask=h_mask, zoneout=zoneout)
