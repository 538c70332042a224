"""Layer-normalised LSTM and GRU cells (Ba et al. 2016), torch.nn's gate orders: the whole
description of their layer norm, which the cells declare as ``Cell.norm`` (``"hc"``: LN_x,
LN_h and LN_c; ``"h"``: LN_x and LN_h) and every layer and backend reads.

The input part is normalised for all steps at once, before the scan (:func:`input_norm`,
``xg = LN_x(x W_ih^T) + b_ih``, gain and bias :data:`LN_X` owned by the module); the engine
hands the update the raw recurrent product ``hg = h W_hh^T`` (no bias), which the update
normalises, then adds ``b_hh``, its last cell weight::

    LSTM:  i, f, g, o = split(xg + LN_h(hg) + b_hh)                       # each (B, H)
           c' = s(f) c + s(i) tanh(g);   h' = s(o) tanh(LN_c(c'))
    GRU:   r = s(xg_r + LN_h(hg)_r + b_hr);  z = s(xg_z + LN_h(hg)_z + b_hz)
           n = tanh(xg_n + r (LN_h(hg)_n + b_hn));   h' = (1 - z) n + z h

Each LN has a learnable gain and bias and normalises the whole G*H vector (H for c).
The fused Triton kernels run these cells without calling the update: they normalise ``hg``
(and c') in the kernel and apply the plain LSTM / GRU pointwise (``Cell.norm`` says which
norms; the weights are those below, with ``b_hh`` folded into LN_h's bias).
Update signature: ``update(xg, hg, states, ln_h_weight, ln_h_bias, [ln_c_weight,
ln_c_bias,] b_hh)`` with ``b_hh: [G*H]`` (zeros for a bias-free module).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Cell, States
from .declare import DeclaredCell, Param

EPS = 1e-5


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """LN over the last dimension with gain ``weight`` and ``bias`` (eps 1e-5)."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, EPS)


#: LN_x's gain and bias (``[G*H]`` each) of a cell with a ``norm``, per layer and direction:
#: owned by the module (``ln_x_weight_l{k}``, ``ln_x_bias_l{k}``), not handed to the update,
#: because LN_x runs once on the whole input projection (:func:`input_norm`)
LN_X = (Param("ln_x_weight", ("G*H",), "ones"), Param("ln_x_bias", ("G*H",), "zeros"))


class InputNorm:
    """LN_x as a map of the input projection (:func:`input_norm`): ``xg -> layer_norm(xg,
    weight, bias)``, ``weight, bias: [G*H]`` (``bias`` with ``b_ih`` in it; ``parts``: the
    LN_x bias and ``b_ih`` it is summed from, or None where ``bias`` is LN_x's own). The sum
    is made at the first read of ``bias`` (in the grad mode of that read, once): a kernel
    that reads the parts apart (:func:`with_input_norm` with ``b_ih_after``) never makes it."""

    __slots__ = ("weight", "_bias", "parts")

    def __init__(self, weight: Tensor, bias: Tensor | None,
                 parts: tuple[Tensor, Tensor] | None = None) -> None:
        if bias is None and parts is None:
            raise ValueError("InputNorm needs a bias or the parts of one")
        self.weight, self._bias, self.parts = weight, bias, parts

    @property
    def bias(self) -> Tensor:
        if self._bias is None:
            self._bias = self.parts[0] + self.parts[1]
        return self._bias

    def __call__(self, xg: Tensor) -> Tensor:
        return layer_norm(xg, self.weight, self.bias)


def input_norm(weight: Tensor, bias: Tensor, b_ih: Tensor | None) -> InputNorm:
    """LN_x as a map of the input projection: ``xg -> LN_x(xg) + b_ih`` with ``xg = x
    W_ih^T: [..., G*H]`` (without its bias), ``weight, bias, b_ih: [G*H]`` (``b_ih`` None: no
    bias). ``b_ih`` joins LN_x's bias, once (at the first use, see :class:`InputNorm`): each
    call is one pass over ``xg`` (same sum, same gradients), however many blocks or steps the
    caller maps."""
    if b_ih is None:
        return InputNorm(weight, bias)
    return InputNorm(weight, None, (bias, b_ih))


_WITH_INPUT_NORM: dict[tuple[Cell, bool], Cell] = {}


def with_input_norm(cell: Cell, b_ih_after: bool = False) -> Cell:
    """``cell`` with LN_x inside its update, for a kernel that takes the raw projection
    ``x W_ih^T`` (one operator call fewer per streaming step): ``update(xg, hg, states,
    *cell_weights, ln_x_weight, ln_x_bias) = cell.update(layer_norm(xg, ln_x_weight,
    ln_x_bias), hg, states, *cell_weights)``, the last two as :class:`InputNorm` holds them.
    ``b_ih_after``: one more weight, ``b_ih``, added after LN_x (``..., ln_x_weight,
    ln_x_bias, b_ih``), for a holder that must read LN_x's bias and ``b_ih`` themselves
    rather than their sum (a kept streaming step). One derived cell per cell and form
    (kernels are cached per cell)."""
    hit = _WITH_INPUT_NORM.get((cell, b_ih_after))
    if hit is None:
        if b_ih_after:
            def update(xg, hg, states, *weights):
                *rest, w, b, b_ih = weights
                return cell.update(layer_norm(xg, w, b) + b_ih, hg, states, *rest)
        else:
            def update(xg, hg, states, *weights):
                *rest, w, b = weights
                return cell.update(layer_norm(xg, w, b), hg, states, *rest)

        name = f"{cell.name}+ln_x" + ("+b_ih" if b_ih_after else "")
        hit = _WITH_INPUT_NORM[cell, b_ih_after] = Cell(
            name, cell.num_gates, cell.num_states, update,
            doc=f"LN_x{', b_ih' if b_ih_after else ''}, then {cell.doc or cell.name}")
    return hit


def split_weights(norm: str, cell_weights) -> tuple[Tensor, Tensor, Tensor | None,
                                                    Tensor | None, Tensor]:
    """``(ln_h_weight, ln_h_bias, ln_c_weight, ln_c_bias, b_hh)`` from the cell weights of a
    cell whose ``Cell.norm`` is ``norm`` (the LN_c pair is None for ``"h"``)."""
    if norm == "h":
        w, b, b_hh = cell_weights
        return w, b, None, None, b_hh
    w, b, cw, cb, b_hh = cell_weights
    return w, b, cw, cb, b_hh


def _ln_lstm_update(xg: Tensor, hg: Tensor, states: States, ln_h_w: Tensor, ln_h_b: Tensor,
                    ln_c_w: Tensor, ln_c_b: Tensor, b_hh: Tensor) -> States:
    c = states[1]  # (B, H)
    gates = xg + layer_norm(hg, ln_h_w, ln_h_b) + b_hh  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(layer_norm(c_new, ln_c_w, ln_c_b))
    return h_new, c_new


def _ln_gru_update(xg: Tensor, hg: Tensor, states: States, ln_h_w: Tensor, ln_h_b: Tensor,
                   b_hh: Tensor) -> States:
    h = states[0]  # (B, H)
    hg = layer_norm(hg, ln_h_w, ln_h_b) + b_hh  # (B, 3H)
    xr, xz, xn = xg.chunk(3, dim=-1)
    hr, hz, hn = hg.chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


_LN_H = (Param("ln_h_weight", ("G*H",), "ones"), Param("ln_h_bias", ("G*H",), "zeros"))

LAYERNORM_LSTM = DeclaredCell(
    "layernorm_lstm", num_gates=4, num_states=2, update=_ln_lstm_update,
    params=_LN_H + (Param("ln_c_weight", ("H",), "ones"), Param("ln_c_bias", ("H",), "zeros")),
    triton_update="recur.cells.triton_pointwise:LSTM", norm="hc", forget_gate=1,
    doc="g = LN_x(x W_ih^T) + LN_h(h W_hh^T) + b; c' = s(f) c + s(i) tanh(g); "
        "h' = s(o) tanh(LN_c(c'))",
)
LAYERNORM_GRU = DeclaredCell(
    "layernorm_gru", num_gates=3, num_states=1, update=_ln_gru_update, params=_LN_H,
    triton_update="recur.cells.triton_pointwise:GRU", norm="h",
    doc="torch.nn's GRU with LN_x on x W_ih^T and LN_h on h W_hh^T",
)
