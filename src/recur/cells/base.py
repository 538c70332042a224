"""The declaration of a recurrent cell: its gates, its states and its pointwise update.

Every classic recurrent cell has the same shape. Per step t, with G gates of H units::

    xg_t = x_t @ W_ih^T + b_ih          # [B, G*H]  computed by the caller for all t at once
    hg_t = h_{t-1} @ W_hh^T + b_hh      # [B, G*H]  the only sequential matrix product
    states_t = update(xg_t, hg_t, states_{t-1})

``states[0]`` is always the hidden state h (before any projection); further states (the
LSTM's cell state c) follow. A cell is declared once here; the engine (``recur.ops``) runs
it on every backend and no backend re-implements its math.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import Tensor

States = tuple[Tensor, ...]
UpdateFn = Callable[[Tensor, Tensor, States], States]


@dataclass(frozen=True)
class Cell:
    """A recurrent cell declared by its pointwise update.

    Args:
        name: short identifier, e.g. ``"lstm"``.
        num_gates: G, the number of gate blocks of H units in ``xg`` / ``hg``.
        num_states: number of state tensors (1 for RNN/GRU: h; 2 for LSTM: h, c).
        update: ``update(xg, hg, states) -> new_states`` with ``xg, hg: [B, G*H]`` and each
            state ``[B, H]``; written with torch operations (differentiable, any dtype).
        native_mode: the ``torch.nn`` mode (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``,
            ``"RNN_RELU"``) when the cell is exactly torch.nn's cell, so that PyTorch's fused
            kernels may run it; ``None`` for any other cell.
        triton_update: optional Triton pointwise of the same update, forward and backward,
            for the fused kernels (``recur.ops.triton``): a pair ``(fwd, bwd)`` of
            ``triton.jit`` functions (contract in ``recur.cells.triton_pointwise``), a
            ``"module:NAME"`` string naming one (imported on first use, so declaring a cell
            never imports Triton), or a zero-argument callable returning one. Cells with a
            ``native_mode`` use the built-in pointwise of that mode when this is ``None``.
        doc: one line describing the math, for error messages and docs.
        norm: the cell's layer normalisation (Ba et al. 2016; ``recur.cells.layernorm``),
            declared once here and read by the layers and the backends; ``None``: none.
            ``"h"``: ``LN_x`` on the input projection (``LN_x(x W_ih^T) + b_ih`` for all
            steps before the scan; its gain and bias ``[G*H]`` belong to the module, see
            ``layernorm.LN_X``), and ``LN_h`` on the recurrent product, which the engine
            hands to the update without ``b_hh``: the update's cell weights are
            ``(ln_h_weight [G*H], ln_h_bias [G*H], b_hh [G*H])`` and it computes
            ``triton_update``'s cell on ``xg`` and ``LN_h(hg) + b_hh``. ``"hc"``: also
            ``LN_c``, ``h' = sigmoid(gate 3) tanh(LN_c(c'))`` with ``c'`` the second state,
            and cell weights ``(ln_h_weight, ln_h_bias, ln_c_weight [H], ln_c_bias [H],
            b_hh)``. ``recur.VariantRNN`` adds ``LN_x`` and routes ``b_hh`` from it; the
            fused Triton kernels compute the norms themselves around the plain pointwise
            instead of calling the update (their ``LN`` flag); the reference loop, ``cpu``
            and ONNX call the update.
        forget_gate: index of the gate block that is a forget gate, if any.
    """

    name: str
    num_gates: int
    num_states: int
    update: UpdateFn
    native_mode: str | None = None
    triton_update: object | None = field(default=None, compare=False, repr=False)
    doc: str = ""
    norm: str | None = None
    forget_gate: int | None = None

    def __post_init__(self) -> None:
        if self.num_gates < 1:
            raise ValueError(f"num_gates must be >= 1, got {self.num_gates}")
        if self.num_states < 1:
            raise ValueError(f"num_states must be >= 1, got {self.num_states}")
        if self.norm not in (None, "h", "hc"):
            raise ValueError(f"norm must be None, 'h' or 'hc', got {self.norm!r}")
        if self.forget_gate is not None and not 0 <= self.forget_gate < self.num_gates:
            raise ValueError(f"forget_gate must index one of the {self.num_gates} gate blocks, "
                             f"got {self.forget_gate}")
        if self.norm == "hc" and (self.num_gates < 4 or self.num_states < 2):
            raise ValueError("norm='hc' needs an LSTM-shaped cell (4 gates, 2 states), "
                             f"got {self.num_gates} gates and {self.num_states} states")

    def __setstate__(self, state: dict) -> None:
        # a cell pickled by value before ``fused_norm`` became ``norm``
        if "fused_norm" in state:
            state = {**state, "norm": state.get("norm", state["fused_norm"])}
            del state["fused_norm"]
        self.__dict__.update(state)
