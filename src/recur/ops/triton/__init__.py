"""The ``triton`` backend of :func:`recur.ops.scan`: fused persistent kernels, forward and
backward, for any declared cell that has a Triton pointwise.

Importing this package imports ``triton`` (``ImportError`` without it); ``recur`` itself
never imports it eagerly. Files, in order: ``_forward.py`` (forward kernels), ``_backward.py``
(backward kernels), ``_launch.py`` (paths, block sizes, launches, weight-gradient GEMMs),
``_function.py`` (the ``torch.autograd.Function``), and the public functions here.

A cell supplies its pointwise through ``Cell.triton_update`` (see :func:`pointwise_of`); the
built-in cells are found by their ``native_mode`` in ``recur.cells.triton_pointwise``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch
import triton  # ImportError here means: no Triton backend
from torch import Tensor

from ...cells import Cell, States
from ...cells.layernorm import EPS, split_weights
from ..layer import LayerSpec
from . import _launch
from ._function import FusedScan

__all__ = ["accepts", "pointwise_of", "preferred", "scan_triton", "supports", "which_path"]


def _resolve(spec, what: str):
    if isinstance(spec, str):
        mod, _, attr = spec.partition(":")
        if not attr:
            raise ValueError(f"{what}: a string must read 'package.module:NAME', got {spec!r}")
        spec = getattr(importlib.import_module(mod), attr)
    if hasattr(spec, "fwd") and hasattr(spec, "bwd"):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2:
        from ...cells.triton_pointwise import TritonPointwise

        return TritonPointwise(*spec)
    if callable(spec) and not isinstance(spec, triton.runtime.JITFunction):
        return _resolve(spec(), what)
    raise TypeError(f"{what} must be a (fwd, bwd) pair of triton.jit functions, an object with "
                    f".fwd and .bwd, a 'module:NAME' string or a loader returning one; "
                    f"got {type(spec).__name__}")


def pointwise_of(cell: Cell):
    """The cell's Triton pointwise (an object with ``.fwd`` and ``.bwd``), or ``None``.

    ``cell.triton_update`` may be a :class:`recur.cells.triton_pointwise.TritonPointwise`
    (or any ``(fwd, bwd)`` pair of ``triton.jit`` functions), a ``"module:NAME"`` string
    naming one (imported on first use), or a zero-argument callable returning one. Cells
    without one but with a ``native_mode`` use the built-in pointwise of that mode.
    """
    if cell.triton_update is not None:
        return _resolve(cell.triton_update, f"cell {cell.name!r}: triton_update")
    if cell.native_mode is not None:
        from ...cells.triton_pointwise import BY_MODE

        return BY_MODE.get(cell.native_mode)
    return None


def _device_reason(cell: Cell, x: Tensor) -> str | None:
    """Why the kernels cannot run ``cell`` on ``x``'s device and dtype at all, or None."""
    if cell.triton_update is None and cell.native_mode is None:
        return (f"cell {cell.name!r} has no Triton pointwise (declare it with triton=...; "
                "see recur.cells.triton_pointwise)")
    if cell.num_gates > _launch.MAX_GATES or cell.num_states > _launch.MAX_STATES:
        return (f"cell {cell.name!r} has {cell.num_gates} gates and {cell.num_states} states; "
                f"the kernels take at most {_launch.MAX_GATES} and {_launch.MAX_STATES}")
    if x.dtype not in _launch.DTYPES:
        return (f"dtype {x.dtype}: the kernels take "
                f"{', '.join(str(d).removeprefix('torch.') for d in _launch.DTYPES)}")
    if not (x.is_cuda or (x.device.type == "cpu" and _launch.interpreting())):
        return (f"device {x.device}: the kernels need a CUDA device (or TRITON_INTERPRET=1 on "
                "the CPU, for tests)")
    return None


def accepts(spec: LayerSpec, x: Tensor) -> str | None:
    """None when the fused kernels run the layer described by ``spec`` on ``x`` (``[T, B, *]``:
    its device, dtype and batch size matter), else the reason they do not (for
    :mod:`recur.ops.plan` and its ``explain``)."""
    return _launch_plan(spec, x)[0]


def _launch_plan(spec: LayerSpec, x: Tensor) -> tuple[str | None, _launch.Plan | None]:
    """``(None, launch plan)`` when the kernels take ``spec`` on ``x``, else ``(reason, None)``."""
    cell = spec.cell
    reason = _device_reason(cell, x)
    if reason is not None:
        return reason, None
    if "step_inputs" in spec.extras:
        return ("per-step tensors (step_inputs) are handed to the update by the reference "
                "loop only"), None
    if "cell_weights" in spec.extras:
        if cell.norm is None:
            return (f"cell {cell.name!r} takes cell weights in its update (declared params), "
                    "which only the reference loop and cpu hand to it (the kernels apply only "
                    "the layer-norm cells')"), None
        if spec.b_hh or spec.proj:
            return (f"layer-norm cell {cell.name!r} with a separate b_hh or a projection: the "
                    "kernels fold b_hh into LN_h's bias and have no projection here"), None
    p = _launch.plan(cell.num_gates, x.shape[1], spec.hidden_size, spec.recurrent_size,
                     spec.proj, x.device, x.element_size())
    if p is None:
        return (f"no kernel plan fits B={x.shape[1]}, H={spec.hidden_size} on {x.device} (more "
                "programs than SMs, or too much shared memory even when streamed)"), None
    if spec.proj and p.path != "small" and cell.native_mode != "LSTM":
        return (f"cell {cell.name!r} with a projection beyond the small path: the grid "
                "kernels' projection mode hands the update no h, so only the LSTM takes "
                "it"), None
    return None, p


def supports(cell: Cell, x: Tensor) -> bool:
    """True when the fused kernels can run ``cell`` on ``x``'s device and dtype at some size
    (:func:`accepts` answers for one configuration, with the reason)."""
    return _device_reason(cell, x) is None


def which_path(cell: Cell, xg: Tensor, w_hh: Tensor, w_hr: Tensor | None = None) -> str | None:
    """``"small"`` (one program per batch tile, no barrier), ``"grid"`` (programs own slices
    of hidden units and meet at a grid barrier each step; CUDA only), ``"stream"`` (the grid
    kernels reading ``W_hh`` from L2 every step, when it does not fit on chip), or ``None``
    (the kernels do not take this configuration: :func:`accepts` says why).

    Args:
        xg: ``[T, B, G*H]``; w_hh: ``[G*H, HO]``; w_hr: ``[HO, H]`` or None.
    """
    p = _launch_plan(LayerSpec.of_tensors(cell, w_hh, None, w_hr), xg)[1]
    return None if p is None else p.path


#: where the fused kernels were measured faster than cuDNN (``benchmarks/gpu.py`` on an H200,
#: 2026-11-29, ``benchmarks/results/gpu-speed-h200-2e6e736.json``; one layer, T=512, input
#: size H): bfloat16 LSTM and GRU at H=256, B 16/64/256, forward 1.74-3.94x and forward +
#: backward 1.17-3.55x cuDNN's speed. Elsewhere in that run they were slower (float32 at
#: every size, 0.01-1.04x; bfloat16 at H=1024 in training, 0.38-1.73x) or not measured.
PREFERRED_DTYPES = (torch.bfloat16,)
PREFERRED_MODES = ("LSTM", "GRU")
PREFERRED_H = (129, 256)


def measured_faster(cell: Cell, dtype: torch.dtype, specs: Sequence[LayerSpec]) -> bool:
    """Whether the GPU run above found the fused kernels faster than cuDNN for ``cell`` in
    ``dtype`` with the layers ``specs`` (:class:`recur.ops.layer.LayerSpec`): a plain LSTM
    or GRU (no projection, nothing added), every layer's H in ``PREFERRED_H``."""
    lo, hi = PREFERRED_H
    return (dtype in PREFERRED_DTYPES and cell.native_mode in PREFERRED_MODES and bool(specs)
            and all(not s.proj and not s.extras and lo <= s.hidden_size <= hi for s in specs))


def preferred(cell: Cell, x: Tensor, specs: Sequence[LayerSpec] = ()) -> bool:
    """Whether ``auto`` should try the fused kernels before PyTorch's (cuDNN) on CUDA for a
    cell PyTorch can run: only where a GPU run measured them faster
    (:func:`measured_faster`); ``auto`` must never pick a slower backend than torch.nn.
    (Cells PyTorch cannot run get the kernels on CUDA regardless.)"""
    return x.is_cuda and measured_faster(cell, x.dtype, specs)


def scan_triton(
    cell: Cell,
    xg: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    state0: States,
    *,
    w_hr: Tensor | None = None,
    lengths: Tensor | None = None,
    reverse: bool = False,
    h_mask: Tensor | None = None,
    zoneout: tuple[Tensor, ...] | None = None,
    cell_weights: tuple[Tensor, ...] = (),
) -> tuple[Tensor, States]:
    """Run ``cell`` over the sequence with the fused kernels; same contract as
    :func:`recur.ops.scan_reference` (arguments already checked by :func:`recur.ops.scan`).

    Args:
        xg: ``[T, B, G*H]``; w_hh: ``[G*H, HO]``; b_hh: ``[G*H]`` or None;
        state0: ``h0 [B, HO]`` then ``c0 [B, H]`` for two-state cells;
        w_hr: ``[HO, H]`` or None; lengths: ``[B]`` integers in ``[1, T]`` or None;
        h_mask: ``[B, HO]`` recurrent-dropout mask or None; zoneout: one ``[T, B, H]`` mask
        per state or None (expanded constants, eval mode's rates, are passed as scalars);
        cell_weights: the layer-norm cells' cell weights (see ``Cell.norm``; ``b_hh`` must
        then be None and there is no ``w_hr``), ``()`` for every other cell.

    Returns:
        ``out [T, B, HO]`` (zero past each row's length) and the final states.
    """
    T, B, GH = xg.shape
    G, NS = cell.num_gates, cell.num_states
    if B == 0:  # an empty batch: nothing to launch, the (empty) result of any backend
        from ..reference import scan_reference

        return scan_reference(cell, xg, w_hh, b_hh, state0, w_hr=w_hr, lengths=lengths,
                              reverse=reverse, cell_weights=tuple(cell_weights), h_mask=h_mask,
                              zoneout=zoneout)
    spec = LayerSpec.of_tensors(cell, w_hh, b_hh, w_hr, cell_weights=tuple(cell_weights),
                                h_mask=h_mask, zoneout=zoneout)
    reason, p = _launch_plan(spec, xg)
    if reason is not None:  # no silent fallback: the planner (recur.ops.plan) asked first
        raise ValueError(f"backend='triton' cannot run this scan: {reason}")
    pw = pointwise_of(cell)
    ln = _norm_weights(cell, cell_weights, b_hh, w_hr, GH // G)
    lens = None
    if lengths is not None:
        lens = torch.as_tensor(lengths).to(device=xg.device, dtype=torch.int32)
        if bool((lens >= T).all()):
            lens = None
    c0 = state0[1].contiguous() if NS > 1 else None
    cfg = _launch.ScanConfig(bool(reverse), pw, G, NS, p, _masks(h_mask, zoneout, NS),
                             norm=ln[0], eps=EPS)
    res = FusedScan.apply(
        xg.contiguous(), w_hh.contiguous(), None if b_hh is None else b_hh.contiguous(),
        None if w_hr is None else w_hr.contiguous(), state0[0].contiguous(), c0,
        *ln[1:], lens, cfg)
    return res[0], tuple(res[1:])


def _norm_weights(cell: Cell, cell_weights: tuple[Tensor, ...], b_hh: Tensor | None,
                  w_hr: Tensor | None, H: int) -> tuple:
    """``(kind, ln_w, ln_b, lnc_w, lnc_b)`` for :class:`FusedScan` from a layer-norm cell's
    ``cell_weights`` (``kind`` is ``cell.norm``; the weights are laid out as
    ``recur.cells.layernorm`` declares them, shapes from the cell's ``params`` then ``b_hh
    [G*H]``, and ``b_hh`` is folded into ``ln_b``); ``(None, None, None, None, None)``
    without a norm."""
    if not cell_weights and cell.norm is None:
        return (None, None, None, None, None)
    if cell.norm is None:
        raise ValueError(f"cell {cell.name!r}: the fused kernels take cell weights only for "
                         "layer-norm cells (Cell.norm)")
    G = cell.num_gates
    shapes = [p.resolve(G, H) for p in getattr(cell, "params", ())] + [(G * H,)]
    if len(cell_weights) != len(shapes):
        raise ValueError(f"cell {cell.name!r} (norm={cell.norm!r}) expects "
                         f"{len(shapes)} cell weights, got {len(cell_weights)}")
    if b_hh is not None or w_hr is not None:
        raise ValueError(f"cell {cell.name!r}: b_hh goes last in cell_weights (not as b_hh) "
                         "and there is no projection")
    for k, (t, shape) in enumerate(zip(cell_weights, shapes)):
        if tuple(t.shape) != shape:
            raise ValueError(f"cell {cell.name!r}: cell_weights[{k}] must have shape {shape}, "
                             f"got {tuple(t.shape)}")
    ln_w, ln_b, lnc_w, lnc_b, b = split_weights(cell.norm, cell_weights)
    return (cell.norm, ln_w, ln_b + b, lnc_w, lnc_b)


def _masks(h_mask: Tensor | None, zoneout: tuple[Tensor, ...] | None, NS: int) -> _launch.Masks:
    """The kernels' view of the masks: contiguous, detached (masks are constants); zoneout
    masks that are expanded scalars (``p.expand(T, B, H)``, eval mode) become rates."""
    hm = None if h_mask is None else h_mask.detach().contiguous()
    if zoneout is None:
        return _launch.Masks(h_mask=hm)
    if all(m.stride() == (0, 0, 0) for m in zoneout):
        rates = [float(m.reshape(-1)[0]) for m in zoneout] + [0.0]
        return _launch.Masks(h_mask=hm, zoneout="rates", p0=rates[0], p1=rates[1])
    z = [m.detach().contiguous() for m in zoneout]
    return _launch.Masks(h_mask=hm, zoneout="masks", z0=z[0],
                         z1=z[1] if NS > 1 else None)
