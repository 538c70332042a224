"""The variants cuDNN cannot run: layer norm, zoneout, recurrent dropout, DropConnect, plus
``forget_bias`` and a bidirectional ``merge`` option.

All share one base, :class:`VariantRNN`, with the layer / direction / packing / lengths
machinery of ``recur.LSTM``; the options combine freely (e.g. a LayerNormLSTM with zoneout).

- ``zoneout=p`` (or ``(p_h, p_c)`` for the LSTM), Krueger et al. 2016. Per unit and step,
  ``s_t = m * s_{t-1} + (1 - m) * s~_t`` with ``m ~ Bernoulli(p)`` in training and ``m = p``
  in eval (the expectation).
- ``recurrent_dropout=p``, Gal & Ghahramani 2016 / Keras: one mask ``[B, Hout]`` per
  sequence, layer and direction, on ``h_{t-1}`` before ``W_hh`` at every step:
  ``hg_t = (h_{t-1} * m / (1 - p)) W_hh^T + b_hh``; training only.
- ``weight_drop=p``, DropConnect on ``W_hh`` (AWD-LSTM): a fresh mask ``[G*H, Hout]``
  (scaled by ``1 / (1 - p)``) at every training forward; the parameters and the
  ``state_dict`` keep torch.nn's names and values. PyTorch's kernels can run it.
- ``forget_bias=b`` (LSTM cells): ``b_ih`` of the forget gate starts at b and ``b_hh``'s at 0,
  so the gate starts at ``sigmoid(b)``; re-applied by ``reset_parameters()``.
- ``merge="concat" | "sum" | "mean" | "mul"``: how the two directions of the *last* layer
  are combined in ``output`` (``[T, B, 2*Hout]`` for concat, torch.nn's behaviour, else
  ``[T, B, Hout]``). Inner layers always pass the concatenation on, so the parameters keep
  torch.nn's shapes; ``h_n`` keeps one entry per direction.

Zoneout and recurrent dropout are masks the engine applies (``recur.ops.scan``'s ``zoneout``
and ``h_mask``): the reference loop and the fused Triton kernels (``backend="triton"``, for
cells with a Triton pointwise: LSTM, GRU, RNN, the layer-norm cells, declared cells) run
them, and so does ``cpu`` (C kernels generated from the cell's update). Which backend runs
is planned per forward by :mod:`recur.ops.plan` (``auto``: the fused kernels on CUDA,
``cpu`` on the CPU where a C compiler is present, else the reference loop);
``backend="torch"`` raises ``ValueError`` at the forward with the reason (PyTorch's kernels
take none of these).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .. import cells
from ..cells import Cell
from ..cells.layernorm import LAYERNORM_GRU, LAYERNORM_LSTM, LN_X, input_norm
from ..ops import LayerWeights
from ..ops.onnx import exporting_onnx
from .custom import CustomRNN

MERGES = ("concat", "sum", "mean", "mul")


class LayerMasks(NamedTuple):
    """One forward's masks for one layer and direction (None: not used).

    ``zoneout``: per state ``[T, B, H]`` (probability of keeping the old value);
    ``h_mask: [B, Hout]`` recurrent dropout; ``w_hh_mask: [G*H, Hout]`` DropConnect."""

    zoneout: tuple[Tensor, ...] | None = None
    h_mask: Tensor | None = None
    w_hh_mask: Tensor | None = None


def _rate(name: str, p, upper_open: bool = True) -> float:
    ok = isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1
    if not ok or (upper_open and p == 1):
        hi = "1)" if upper_open else "1]"
        raise ValueError(f"{name} must be a probability in [0, {hi}, got {p!r}")
    return float(p)


def _bernoulli(shape, p: float, like: Tensor) -> Tensor:
    """A mask of ``shape``, 1 with probability ``p`` and 0 otherwise, in ``like``'s dtype and
    on its device: float32 uniform draws (steps of 2^-24 whatever the dtype) compared in
    place, then converted where ``like`` is not float32 (``torch.bernoulli`` of a tensor of
    rates, which this replaces, was slower on the CPU)."""
    u = torch.rand(shape, device=like.device, dtype=torch.float32)
    return u.lt_(p).to(like.dtype)


def _bernoulli_scaled(shape, p: float, like: Tensor) -> Tensor:
    """Dropout's mask: 0 with probability ``p``, else ``1 / (1 - p)``."""
    return _bernoulli(shape, 1.0 - p, like).div_(1.0 - p)


class VariantRNN(CustomRNN):
    """A recurrent module for any cell, with the regularisers and options of this file.

    Args:
        cell: a :class:`recur.cells.Cell` (``recur.cells.LSTM``, a declared cell, ...). A
            cell with a layer norm (``Cell.norm``, e.g. ``recur.cells.LAYERNORM_LSTM``) gets
            its LN_x gain and bias (``ln_x_weight_l{k}``, ``ln_x_bias_l{k}``) and takes
            ``b_hh`` after LN_h, as ``recur.cells.layernorm`` describes.
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size, device, dtype, backend: as in :class:`recur.LSTM`.
        zoneout: probability of keeping each state unit's old value per step, a float for
            every state or one per state (LSTM: ``(p_h, p_c)``); 0 disables. Not with
            ``proj_size``.
        recurrent_dropout: drop probability of the per-sequence mask on ``h_{t-1}``.
        weight_drop: DropConnect drop probability on ``W_hh`` (fresh mask every forward).
        forget_bias: initial forget-gate bias (cells with a forget gate only), or None.
        merge: ``"concat" | "sum" | "mean" | "mul"`` for the last layer's two directions.

    Forward as :meth:`recur.RNNBase.forward`; returns ``output, h_n`` (more states:
    ``output, (h_n, c_n, ...)``).
    """

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, zoneout: float | tuple[float, ...] = 0.0, recurrent_dropout: float = 0.0,
                 weight_drop: float = 0.0, forget_bias: float | None = None,
                 merge: str = "concat", backend: str = "auto") -> None:
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a recur.cells.Cell, got {type(cell).__name__}")
        rates = zoneout if isinstance(zoneout, (tuple, list)) else (zoneout,) * cell.num_states
        if len(rates) != cell.num_states:
            raise ValueError(f"zoneout needs one rate per state ({cell.num_states} for cell "
                             f"{cell.name!r}), got {len(rates)}")
        self.zoneout = tuple(_rate("zoneout", p, upper_open=False) for p in rates)
        self.recurrent_dropout = _rate("recurrent_dropout", recurrent_dropout)
        self.weight_drop = _rate("weight_drop", weight_drop)
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        self.merge = merge
        zoned = any(p > 0 for p in self.zoneout)
        if zoned and proj_size > 0:
            raise ValueError("zoneout mixes h_{t-1} and the new h unit by unit, which needs "
                             f"proj_size=0, got proj_size={proj_size}")
        if forget_bias is not None:
            if cell.forget_gate is None:
                raise ValueError(f"forget_bias needs a cell with a forget gate (LSTM), got "
                                 f"{type(self).__name__} with cell {cell.name!r}")
            if not bias:
                raise ValueError(f"forget_bias={forget_bias} needs bias=True, got bias=False")
        self.forget_bias = forget_bias
        super().__init__(cell, input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, proj_size,
                         device, dtype, backend=backend)
        # a cell with a layer norm (Cell.norm): LN_x's gain and bias, which the module owns
        self._ln_x_names: list[tuple[str, str]] = []
        if self.cell.norm is not None:
            for layer in range(num_layers):
                for suffix in ("", "_reverse")[: 2 if bidirectional else 1]:
                    names = tuple(f"{p.name}_l{layer}{suffix}" for p in LN_X)
                    for p, n in zip(LN_X, names):
                        shape = p.resolve(self.cell.num_gates, hidden_size)
                        setattr(self, n, nn.Parameter(p.initialise_new(
                            shape, hidden_size, device=device, dtype=dtype)))
                    self._ln_x_names.append(names)
        self._apply_forget_bias()

    # parameters ----------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """torch.nn's init, the cell weights' own inits, LN_x = (1, 0), then forget_bias."""
        super().reset_parameters()
        for names in getattr(self, "_ln_x_names", ()):
            for p, n in zip(LN_X, names):
                p.initialise(getattr(self, n), self.hidden_size)
        self._apply_forget_bias()

    def _apply_forget_bias(self) -> None:
        fb = getattr(self, "forget_bias", None)
        if fb is None or not hasattr(self, "_cell_param_names"):
            return
        H, k = self.hidden_size, self.cell.forget_gate
        with torch.no_grad():
            for names in self._all_weights:
                for n in names:
                    if n.startswith("bias_ih"):
                        getattr(self, n)[k * H:(k + 1) * H] = fb
                    elif n.startswith("bias_hh"):
                        getattr(self, n)[k * H:(k + 1) * H] = 0.0

    # masks -----------------------------------------------------------------------------
    def sample_masks(self, T: int, B: int, like: Tensor) -> list[LayerMasks]:
        """Draw this forward's masks, one :class:`LayerMasks` per layer and direction
        (index ``layer * D + direction``), with ``like``'s dtype and device. In eval mode:
        zoneout masks are the rates (expanded, no copy) and the dropout masks are None."""
        H = self.hidden_size
        h_out = self.proj_size if self.proj_size > 0 else H
        GH = self.cell.num_gates * H
        out = []
        for _ in range(len(self._all_weights)):
            zo = None
            if any(p > 0 for p in self.zoneout):
                if self.training:
                    zo = tuple(_bernoulli((T, B, H), p, like) for p in self.zoneout)
                else:
                    zo = tuple(like.new_full((1, 1, 1), p).expand(T, B, H)
                               for p in self.zoneout)
            hm = wm = None
            if self.training and self.recurrent_dropout > 0:
                hm = _bernoulli_scaled((B, h_out), self.recurrent_dropout, like)
            if self.training and self.weight_drop > 0:
                wm = _bernoulli_scaled((GH, h_out), self.weight_drop, like)
            out.append(LayerMasks(zo, hm, wm))
        return out

    # forward ---------------------------------------------------------------------------
    def _stack_weights(self, x: Tensor) -> list[LayerWeights]:
        T, B = x.shape[0], x.shape[1]
        if self.training and self.weight_drop > 0 and exporting_onnx():
            # the DropConnect mask is drawn here, on W_hh: an exported graph would freeze one
            raise ValueError(f"{type(self).__name__} in training mode draws a random "
                             f"DropConnect mask on W_hh (weight_drop={self.weight_drop}) at "
                             "every forward, which an ONNX graph cannot; call model.eval() "
                             "before torch.onnx.export")
        masks = self.sample_masks(T, B, x)
        GH = self.cell.num_gates * self.hidden_size
        out = []
        for k, (lw, ps) in enumerate(zip(self._layer_weights(), self._cell_weights())):
            m = masks[k]
            b_ih, b_hh, xg_fn, cell_weights = lw.b_ih, lw.b_hh, None, tuple(ps)
            if self.cell.norm is not None:  # LN_x before the scan, b_hh after LN_h (layernorm.py)
                w_name, b_name = self._ln_x_names[k]
                xg_fn = input_norm(getattr(self, w_name), getattr(self, b_name), b_ih)
                cell_weights += (b_hh if b_hh is not None else lw.w_hh.new_zeros(GH),)
                b_ih = b_hh = None
            w_hh = lw.w_hh if m.w_hh_mask is None else lw.w_hh * m.w_hh_mask
            out.append(LayerWeights(lw.w_ih, w_hh, b_ih, b_hh, lw.w_hr, cell_weights=cell_weights,
                                    h_mask=m.h_mask, xg_fn=xg_fn, zoneout=m.zoneout))
        return out

    def forward(self, input: Tensor | PackedSequence, hx=None, *, lengths=None):
        """As :meth:`recur.RNNBase.forward`, then the ``merge`` of the two directions."""
        output, h = super().forward(input, hx, lengths=lengths)
        if self.bidirectional and self.merge != "concat":
            if isinstance(output, PackedSequence):
                output = output._replace(data=self._merge(output.data))
            else:
                output = self._merge(output)
        return output, h

    def _merge(self, out: Tensor) -> Tensor:
        fwd, bwd = out.chunk(2, dim=-1)  # each (..., Hout)
        if self.merge == "sum":
            return fwd + bwd
        if self.merge == "mean":
            return (fwd + bwd) * 0.5
        return fwd * bwd

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if any(p > 0 for p in self.zoneout):
            s += f", zoneout={self.zoneout}"
        for name in ("recurrent_dropout", "weight_drop"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        if self.forget_bias is not None:
            s += f", forget_bias={self.forget_bias}"
        if self.merge != "concat":
            s += f", merge={self.merge!r}"
        return s



class VariantLSTM(VariantRNN):
    """torch.nn's LSTM with the options of :class:`VariantRNN` (zoneout ``(p_h, p_c)``,
    recurrent_dropout, weight_drop, forget_bias, merge). Without options it equals
    ``recur.LSTM``; its ``state_dict`` is torch.nn.LSTM's."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(cells.LSTM, *args, **kwargs)


class VariantGRU(VariantRNN):
    """torch.nn's GRU with the options of :class:`VariantRNN` (zoneout on h,
    recurrent_dropout, weight_drop, merge). No ``proj_size``."""

    def __init__(self, *args, **kwargs) -> None:
        _no_proj(kwargs)
        super().__init__(cells.GRU, *args, **kwargs)


class LayerNormLSTM(VariantRNN):
    """Layer-normalised LSTM::

        g = LN_x(x W_ih^T) + LN_h(h W_hh^T) + b_ih + b_hh;   i, f, g~, o = split(g)
        c' = s(f) c + s(i) tanh(g~);   h' = s(o) tanh(LN_c(c'))

    LN_x, LN_h over the whole 4H vector, LN_c over H, each with a gain (init 1) and a bias
    (init 0): ``ln_x_weight_l{k}``, ``ln_x_bias_l{k}``, ``ln_h_…``, ``ln_c_…`` beside
    torch.nn's parameters. Takes every option of :class:`VariantRNN`; the same as
    ``VariantRNN(recur.cells.LAYERNORM_LSTM, ...)``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(LAYERNORM_LSTM, *args, **kwargs)


class LayerNormGRU(VariantRNN):
    """torch.nn's GRU with LN_x on ``x W_ih^T`` and LN_h on ``h W_hh^T`` (over 3H)::

        r = s(LN_x(.)_r + b_ir + LN_h(.)_r + b_hr);  z likewise
        n = tanh(LN_x(.)_n + b_in + r (LN_h(.)_n + b_hn));  h' = (1 - z) n + z h

    ``VariantRNN(recur.cells.LAYERNORM_GRU, ...)`` without ``proj_size``.
    """

    def __init__(self, *args, **kwargs) -> None:
        _no_proj(kwargs)
        super().__init__(LAYERNORM_GRU, *args, **kwargs)


def _no_proj(kwargs) -> None:
    if kwargs.get("proj_size", 0):
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
