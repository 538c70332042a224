"""``RNN``, ``LSTM`` and ``GRU``: drop-ins for torch.nn's recurrent layers on recur's engine.

Same constructor arguments and defaults, parameter names and registration order
(``weight_ih_l{k}{_reverse}``, ``weight_hh_l{k}…``, ``bias_ih_l{k}…``, ``bias_hh_l{k}…``,
``weight_hr_l{k}…``), shapes, initialisation U(-1/sqrt(H), 1/sqrt(H)) and return values, so
``load_state_dict`` works strictly in both directions between recur and torch.nn. Beyond
torch.nn: ``forward(..., lengths=)`` for padded input without packing, and ``backend=``.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .. import cells
from ..cells import Cell
from ..ops import LayerSpec, LayerWeights, Plan, plan_stack
from ..ops.dispatch import check_backend_name, opaque_kernels_refused, requested_backend
from ..ops.native import stack_native
from ..ops.onnx import exporting_onnx
from ..ops.plan import ragged_grad, run_plan
from ._args import check_bool, check_dropout, check_int
from ._layout import from_time_major, to_time_major
from ._pickle import CellByName
from .streaming import StreamingMixin


class RNNBase(CellByName, StreamingMixin, nn.Module):
    """Base of the multi-layer recurrent modules; the cell is the only per-class difference.

    Args:
        mode: ``"RNN_TANH" | "RNN_RELU" | "LSTM" | "GRU"`` (torch.nn's names and meaning:
            a string, kept as ``self.mode``), or None with ``cell``.
        input_size: I, features of the input.
        hidden_size: H, features of the hidden state.
        num_layers: stacked layers (default 1).
        bias: whether the layers have ``b_ih`` and ``b_hh`` (default True).
        batch_first: input and output are ``[B, T, *]`` instead of ``[T, B, *]``.
        dropout: dropout on the outputs of every layer but the last, in training only.
        bidirectional: run a second, reversed direction per layer; outputs concatenated.
        proj_size: LSTM only: project h to this size (``h = h W_hr^T``); 0 disables.
        backend: ``"auto" | "reference" | "torch" | "triton"`` (see ``recur.ops.dispatch``).
        stateful: a forward without ``hx`` starts from the previous call's final state,
            detached (truncated BPTT); ``reset_state()`` forgets it. See ``step`` too
            (``recur.nn.streaming``).
        cell: any :class:`recur.cells.Cell` (G gates give weights ``[G*H, *]``) instead of a
            torch.nn ``mode``; ``self.mode`` is then the cell's torch.nn mode or its name.

    Under ``torch.autocast`` the recurrence runs, and the states are kept, in the weights'
    dtype (float32): input and ``hx`` are cast to it and autocast is off inside the layer.
    """

    cell: Cell

    def __init__(self, mode: str | None, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, backend: str = "auto", stateful: bool = False,
                 cell: Cell | None = None) -> None:
        super().__init__()
        # any declared ``cell`` (variants, user cells): the layers, directions, packing and
        # lengths machinery below is the same for every cell
        if cell is not None:
            if not isinstance(cell, Cell):
                raise TypeError(f"cell must be a recur.cells.Cell, got {type(cell).__name__}")
            if mode is not None:
                raise ValueError(f"pass a torch.nn mode or a cell, not both: got mode={mode!r} "
                                 f"and cell {cell.name!r}")
            mode = cell.native_mode or cell.name
        elif mode in cells.BY_MODE:
            cell = cells.BY_MODE[mode]
        else:
            raise ValueError(f"Unrecognized RNN mode: {mode!r}; expected one of "
                             f"{sorted(cells.BY_MODE)} (or cell=, a recur.cells.Cell)")
        _check_args(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size)
        self.mode = mode
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.backend = check_backend_name(backend)
        self.stateful = stateful
        if stateful:
            self._stateful_hx(None)  # raises for a bidirectional layer
        factory = {"device": device, "dtype": dtype}
        gate_size = self.cell.num_gates * hidden_size
        h_out = proj_size if proj_size > 0 else hidden_size
        D = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        # per layer and direction: names of (w_ih, w_hh, b_ih, b_hh, w_hr), None if absent
        self._layer_names: list[tuple[str | None, ...]] = []
        for layer in range(num_layers):
            for direction in range(D):
                suffix = "_reverse" if direction == 1 else ""
                layer_in = input_size if layer == 0 else h_out * D
                shapes = {"weight_ih": (gate_size, layer_in), "weight_hh": (gate_size, h_out)}
                if bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for base, shape in shapes.items():
                    pname = f"{base}_l{layer}{suffix}"
                    setattr(self, pname, nn.Parameter(torch.empty(shape, **factory)))
                    names.append(pname)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
                self._layer_names.append(tuple(
                    f"{base}_l{layer}{suffix}" if base in shapes else None
                    for base in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")))
        # a standard cell whose subclass adds no per-layer extras: the fast path in ``_run``
        self._plain_native = (cell.native_mode is not None
                              and type(self)._stack_weights is RNNBase._stack_weights)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, in registration order (torch.nn's)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    # torch.nn compatibility ------------------------------------------------------------
    @property
    def _flat_weights(self) -> list[Tensor]:
        return [self._weight(n) for n in self._flat_weights_names]

    def _weight(self, name: str) -> Tensor:
        """The weight ``name`` as an attribute lookup sees it, so that parametrizations,
        ``weight_norm`` and pruning (which replace the registered parameter) take part; the
        plain parameter straight from ``_parameters`` otherwise (forward's hot path)."""
        w = self._parameters.get(name)
        return w if w is not None else getattr(self, name)

    @property
    def all_weights(self) -> list[list[Tensor]]:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """Kept for torch.nn compatibility; recur reads its weights as they are."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    # forward ---------------------------------------------------------------------------
    def _layer_weights(self) -> list[LayerWeights]:
        return [LayerWeights(*(self._weight(n) if n else None for n in names))
                for names in self._layer_names]

    def _stack_weights(self, x: Tensor) -> list[LayerWeights]:
        """The per-layer weights for one forward on ``x: [T, B, I]`` (time-major). Subclasses
        (variants) override this to add cell weights, masks or masked weights."""
        return self._layer_weights()

    def _state_shapes(self, B: int) -> list[tuple[int, int, int]]:
        LD = self.num_layers * (2 if self.bidirectional else 1)
        h_out = self.proj_size if self.proj_size > 0 else self.hidden_size
        return [(LD, B, h_out)] + [(LD, B, self.hidden_size)] * (self.cell.num_states - 1)

    def _check_input(self, x: Tensor) -> None:
        w = self._weight("weight_ih_l0")
        if x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"RNN input dtype ({x.dtype}) does not match weight dtype "
                             f"({w.dtype}). Convert input: input.to({w.dtype}), or convert "
                             f"model: model.to({x.dtype})")
        if x.device != w.device:
            raise RuntimeError(f"Expected input on the weights' device {w.device}, "
                               f"got input on {x.device}")
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {x.shape[-1]}")

    def _prepare_hx(self, hx, x: Tensor, batched: bool) -> tuple[Tensor, ...]:
        shapes = self._state_shapes(x.shape[1])
        if hx is None:
            return tuple(x.new_zeros(s) for s in shapes)
        hx = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        if len(hx) != len(shapes):
            raise ValueError(f"{type(self).__name__} expects hx as "
                             f"{'a tuple (h_0, c_0)' if len(shapes) == 2 else 'one tensor'}, "
                             f"got {len(hx)} tensor(s)")
        want_dim = 3 if batched else 2
        for h in hx:
            if h.dim() != want_dim:
                kind = "batched 3-D" if batched else "unbatched 2-D"
                dims = ", ".join(f"{t.dim()}-D" for t in hx)
                raise RuntimeError(f"For {kind} input, hx should also be {want_dim}-D but got "
                                   f"({dims}) tensor(s)")
        if not batched:
            hx = tuple(h.unsqueeze(1) for h in hx)
        for k, (h, want) in enumerate(zip(hx, shapes)):
            if tuple(h.shape) != want:
                which = "hidden size" if k == 0 else "cell size"
                raise RuntimeError(f"Expected {which} {want}, got {list(h.shape)}")
            if h.dtype != x.dtype:
                raise ValueError(f"hx dtype ({h.dtype}) does not match input dtype ({x.dtype})")
            if h.device != x.device:
                raise RuntimeError(f"Expected hx on the input's device {x.device}, got {h.device}")
        return hx

    def forward(self, input: Tensor | PackedSequence, hx=None, *, lengths=None):
        """Run the layers over a sequence.

        Args:
            input: ``[T, B, I]`` (``[B, T, I]`` if batch_first), unbatched ``[T, I]``, or a
                ``PackedSequence``.
            hx: initial state ``[L*D, B, Hout]`` (unbatched ``[L*D, Hout]``); LSTM: the tuple
                ``(h_0, c_0)`` with ``c_0: [L*D, B, H]``. Zeros if None.
            lengths: optional ``[B]`` integers in ``[1, T]`` for padded input: each row's final
                state is its state at its last valid step and its outputs past it are zero
                (identical to packing the input).

        Returns:
            ``output, h_n`` (LSTM: ``output, (h_n, c_n)``): ``output: [T, B, D*Hout]`` in the
            input's layout (a PackedSequence for packed input); ``h_n: [L*D, B, Hout]``.
        """
        if self.stateful and hx is None:
            hx = self._stateful_hx(input)
        x, lens, layout = to_time_major(type(self).__name__, input, self.batch_first, lengths)
        self._check_input(x)
        amp = torch.is_autocast_enabled(x.device.type)
        if amp:  # the recurrence and its states in the weights' dtype (float32), autocast off
            x, hx = _cast_inputs(x, hx, self._weight("weight_ih_l0").dtype)
        states = self._prepare_hx(hx, x, layout.batched)
        if amp:
            with torch.autocast(x.device.type, enabled=False):
                out, finals = self._run(x, states, lens)
        else:
            out, finals = self._run(x, states, lens)
        if not layout.batched:
            finals = tuple(s.squeeze(1) for s in finals)
        output = from_time_major(out, layout)
        state = finals[0] if self.cell.num_states == 1 else finals
        if self.stateful:
            self._carry(state)
        return output, state

    def _specs(self, x: Tensor) -> list[LayerSpec]:
        """What the planner looks at, per layer and direction (no extras for a plain layer;
        variants override :meth:`_stack_weights` and are planned from their weights)."""
        H = self.hidden_size
        h_out = self.proj_size if self.proj_size > 0 else H
        spec = LayerSpec(self.cell, H, h_out, self.proj_size > 0, self.bias)
        return [spec] * len(self._layer_names)

    def _planned(self, x: Tensor, lengths: Tensor | None = None
                 ) -> tuple[Plan, list[LayerWeights] | None]:
        """The plan for ``x: [T, B, I]`` (with ``lengths``, if given) and, for a layer with
        extras, the weights it was planned from (a plain layer's are built only if the plan
        needs them). A plain layer's plan depends only on the device, dtype and batch of ``x``,
        the request and :func:`recur.ops.plan.ragged_grad`: it is kept per such key
        (forward's hot path), except while exporting or compiling, under forward AD, a
        ``torch.func`` transform, a dispatch mode or ``torch.jit.trace``, and for a tensor
        subclass (:func:`recur.ops.dispatch.opaque_kernels_refused`): planned afresh then. A
        layer with extras (a variant) is kept the same way, its specs (:class:`LayerSpec`: the
        extras and cell-weight shapes of this forward) added to the key."""
        if self._plain_native:
            ragged = ragged_grad(x, lengths, self._flat_weights)
            if (exporting_onnx() or torch.compiler.is_compiling()
                    or opaque_kernels_refused(x) is not None):
                return plan_stack(self.cell, self._specs(x), x, self.backend,
                                  ragged_grad=ragged), None
            key = (None if x.is_cpu else x.device, x.dtype, x.shape[1],
                   requested_backend(self.backend), ragged)
            cache = self.__dict__.setdefault("_plans", {})
            plan = cache.get(key)
            if plan is None:
                plan = cache[key] = plan_stack(self.cell, self._specs(x), x, self.backend,
                                               ragged_grad=ragged)
            return plan, None
        layers = self._stack_weights(x)
        specs = tuple(LayerSpec.of(self.cell, lw) for lw in layers)
        if (exporting_onnx() or torch.compiler.is_compiling()
                or opaque_kernels_refused(x) is not None):
            return plan_stack(self.cell, list(specs), x, self.backend), layers
        # a layer with extras: planned from its specs (the extras this forward uses and the
        # shapes of its cell weights), so they are part of the key
        key = (None if x.is_cpu else x.device, x.dtype, x.shape[1],
               requested_backend(self.backend), specs)
        cache = self.__dict__.setdefault("_plans", {})
        plan = cache.get(key)
        if plan is None:
            plan = cache[key] = plan_stack(self.cell, list(specs), x, self.backend)
        return plan, layers

    def plan(self, x: Tensor, lengths: Tensor | None = None) -> Plan:
        """The backend plan for a forward on ``x: [T, B, I]`` (time-major) with ``lengths``
        (``[B]``, optional), in the current grad mode; see :func:`recur.explain`. (A variant
        draws its masks to plan, as a forward would.)"""
        return self._planned(x, lengths)[0]

    def _run(self, x: Tensor, states: tuple[Tensor, ...], lens: Tensor | None):
        """``x: [T, B, I]`` through the stack; returns ``out, finals`` as ``run_stack``."""
        kw = {"num_layers": self.num_layers, "bidirectional": self.bidirectional,
              "dropout": self.dropout, "training": self.training, "lengths": lens}
        plan, layers = self._planned(x, lens)
        if layers is None:
            if plan.executor == "torch":
                # torch.nn's own cell with nothing added: its flat weights go straight to
                # PyTorch's kernels, without building LayerWeights (a few us per call)
                return stack_native(self.cell.native_mode, x, states, self._flat_weights,
                                    has_biases=self.bias, has_proj=self.proj_size > 0, **kw)
            layers = self._layer_weights()
        return run_plan(plan, self.cell, x, states, layers, **kw)


def _cast_inputs(x: Tensor, hx, dtype: torch.dtype):
    """``x: [T, B, I]`` and ``hx`` (None, a tensor or a tuple) cast to ``dtype``."""
    if hx is not None:
        hx = hx.to(dtype) if isinstance(hx, Tensor) else tuple(h.to(dtype) for h in hx)
    return x.to(dtype), hx


def _check_args(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size):
    check_dropout(dropout)
    check_bool("bias", bias)
    check_bool("batch_first", batch_first)
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
        check_int(name, value)
    check_int("proj_size", proj_size, minimum=None)  # torch.nn's own message just below
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable "
                         f"projections, got {proj_size}")
    if proj_size >= hidden_size:
        raise ValueError(f"proj_size has to be smaller than hidden_size, got "
                         f"proj_size={proj_size} and hidden_size={hidden_size}")
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                      f"non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", stacklevel=4)


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, act tanh or relu.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None, *,
    backend='auto')``; forward as :meth:`RNNBase.forward`, returns ``output, h_n``.
    """

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if self.nonlinearity not in modes:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from "
                             "'tanh' or 'relu'.")
        super().__init__(modes[self.nonlinearity], *args, **kwargs)


class LSTM(RNNBase):
    """LSTM with torch.nn's gate order (i, f, g, o) and optional projection ``proj_size``.

    ``c_t = s(f) c_{t-1} + s(i) tanh(g)``, ``h_t = s(o) tanh(c_t)`` (then ``h_t W_hr^T`` if
    proj_size > 0). Returns ``output, (h_n, c_n)``; ``c_n: [L*D, B, H]``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """GRU with torch.nn's gate order (r, z, n) and ``n = tanh(W_in x + b_in + r (W_hn h +
    b_hn))``, ``h_t = (1 - z) n + z h_{t-1}``. Returns ``output, h_n``."""

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)
