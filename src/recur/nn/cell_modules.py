"""``RNNCell``, ``LSTMCell`` and ``GRUCell``: one time step, drop-ins for torch.nn's cells.

Same constructor, parameter names (``weight_ih [G*H, I]``, ``weight_hh [G*H, H]``,
``bias_ih``, ``bias_hh``), initialisation and forward as torch.nn. The step is the cell's
declared update (``recur.cells``); ``backend="torch"`` (what ``auto`` picks for these
standard cells) runs PyTorch's fused cell kernels instead, ``"reference"`` the declaration.
Which one runs is planned per call by :func:`recur.ops.plan.plan_step`, the planner of the
layers: an explicit backend that runs no single step (``cpu``, ``triton``: whole sequences)
is refused at construction with its ``accepts`` reason.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn

from .. import cells
from ..cells import Cell
from ..ops.dispatch import check_backend_name, requested_backend
from ..ops.layer import LayerSpec
from ..ops.plan import plan_step
from ._args import check_int
from ._pickle import CellByName

_VF_CELLS = {"RNN_TANH": _VF.rnn_tanh_cell, "RNN_RELU": _VF.rnn_relu_cell,
             "LSTM": _VF.lstm_cell, "GRU": _VF.gru_cell}


class RNNCellBase(CellByName, nn.Module):
    """One recurrent step of a declared cell with torch.nn's parameters."""

    cell: Cell

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None, *, backend: str = "auto") -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            check_int(name, value, minimum=0)  # torch.nn's cells accept 0 (outputs [B, 0])
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias  # as given: torch.nn's cells take any truthy value (e.g. 1)
        self.backend = check_backend_name(backend)
        if backend != "auto":  # an explicit backend: runs one step, or the planner says why not
            plan_step(self._spec(), backend)
        factory = {"device": device, "dtype": dtype}
        G = cell.num_gates
        self.weight_ih = nn.Parameter(torch.empty((G * hidden_size, input_size), **factory))
        self.weight_hh = nn.Parameter(torch.empty((G * hidden_size, hidden_size), **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def _spec(self) -> LayerSpec:
        """What the planner looks at: the cell and its sizes (one step, no extras)."""
        return LayerSpec(self.cell, self.hidden_size, self.hidden_size, b_hh=bool(self.bias))

    def _step_backend(self) -> str:
        """The backend of this step (:func:`recur.ops.plan.plan_step`); the plan depends only
        on the request (``backend``, ``RECUR_BACKEND``), so it is kept per request (the cache
        is not pickled, see ``CellByName``)."""
        key = (self.backend, requested_backend(self.backend))
        cache = self.__dict__.setdefault("_plans", {})
        plan = cache.get(key)
        if plan is None:
            plan = cache[key] = plan_step(self._spec(), self.backend)
        return plan.backend

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    def _step(self, input: Tensor, hx: tuple[Tensor, ...] | None) -> tuple[Tensor, ...]:
        """``input: [I]`` or ``[B, I]``; ``hx``: states ``[H]`` or ``[B, H]`` (or None).
        Returns the new states in the input's batching. Checks, classes and messages are
        torch.nn's (its Python checks, then ATen's ``check_rnn_cell_forward_*``), in its order."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            for k, h in enumerate(hx):
                if h.dim() not in (1, 2):
                    what = f"hx[{k}]" if self.cell.num_states > 1 else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {h.dim()}D "
                                     "instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        if x.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {x.shape[1]} "
                               f"expected {self.input_size}")
        B = x.shape[0]
        if hx is None:
            states = tuple(x.new_zeros(B, self.hidden_size) for _ in range(self.cell.num_states))
        else:
            states = []
            for k, h in enumerate(hx):
                if (h.dim() == 2) != batched:
                    raise RuntimeError(f"{name}: hx[{k}] must be {'2' if batched else '1'}-D "
                                       f"like the input, got {h.dim()}-D")
                h = h if batched else h.unsqueeze(0)
                if h.shape[0] != B:
                    raise RuntimeError(f"Input batch size {B} doesn't match hidden{k} batch "
                                       f"size {h.shape[0]}")
                if h.shape[1] != self.hidden_size:
                    raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got "
                                       f"{h.shape[1]}, expected {self.hidden_size}")
                states.append(h)
            states = tuple(states)
        w = self.weight_ih
        if x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type):
            raise RuntimeError(f"{name} input dtype ({x.dtype}) does not match weight dtype "
                               f"({w.dtype})")
        if x.device != w.device:
            raise RuntimeError(f"Expected input on the weights' device {w.device}, "
                               f"got input on {x.device}")
        if self._step_backend() == "torch":
            fn = _VF_CELLS[self.cell.native_mode]
            arg = states if self.cell.num_states > 1 else states[0]
            res = fn(x, arg, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
            new = tuple(res) if isinstance(res, (tuple, list)) else (res,)
        else:
            xg = F.linear(x, self.weight_ih, self.bias_ih)  # (B, G*H)
            hg = F.linear(states[0], self.weight_hh, self.bias_hh)  # (B, G*H)
            new = tuple(self.cell.update(xg, hg, states))
        return new if batched else tuple(s.squeeze(0) for s in new)


class RNNCell(RNNCellBase):
    """``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``; ``forward(input [B, I] or [I],
    hx [B, H] or [H] = zeros) -> h'``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None, *,
                 backend: str = "auto") -> None:
        modes = {"tanh": cells.RNN_TANH, "relu": cells.RNN_RELU}
        if nonlinearity not in modes:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        super().__init__(modes[nonlinearity], input_size, hidden_size, bias, device, dtype,
                         backend=backend)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, None if hx is None else (hx,))[0]


class LSTMCell(RNNCellBase):
    """One LSTM step, gates (i, f, g, o); ``forward(input, (h, c) = zeros) -> (h', c')``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, backend: str = "auto") -> None:
        super().__init__(cells.LSTM, input_size, hidden_size, bias, device, dtype,
                         backend=backend)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError(f"LSTMCell: Expected hx to be a tuple (h, c), got "
                             f"{type(hx).__name__}")
        h, c = self._step(input, hx)
        return h, c


class GRUCell(RNNCellBase):
    """One GRU step, gates (r, z, n); ``forward(input, hx = zeros) -> h'``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, backend: str = "auto") -> None:
        super().__init__(cells.GRU, input_size, hidden_size, bias, device, dtype,
                         backend=backend)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, None if hx is None else (hx,))[0]
