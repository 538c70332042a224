"""The public way to declare your own recurrent cell.

A cell is its gate count G, its state count and its pointwise ``update``; the engine computes
the two matrix products (``xg = x W_ih^T + b_ih`` for all steps at once, ``hg = h W_hh^T +
b_hh`` per step) and hands them to the update::

    import recur

    @recur.cells.declare(num_gates=2, num_states=1)
    def gated_tanh(xg, hg, states):               # xg, hg: [B, 2H]; states[0] = h: [B, H]
        a, z = (xg + hg).chunk(2, dim=-1)         # each (B, H)
        z = torch.sigmoid(z)
        return ((1 - z) * states[0] + z * torch.tanh(a),)

    rnn = recur.CustomRNN(gated_tanh, input_size=8, hidden_size=16, num_layers=2,
                          bidirectional=True)

A cell may also own extra learnable tensors per layer and direction (a peephole vector, a
time constant), declared with :class:`Param` (``declare(params=[...])``, ``cell.params``);
the module creates one tensor per declared param (named ``{name}_l{k}{_reverse}``), and the
engine passes these *cell weights* to the update after the states, in declaration order:
``update(xg, hg, states, *cell_weights)`` (``recur.ops.scan(..., cell_weights=...)``).

Triton hook: ``triton=`` takes the cell's fused-kernel pointwise (a
``recur.cells.triton_pointwise.TritonPointwise``, a ``(fwd, bwd)`` pair of ``triton.jit``
functions, a ``"module:NAME"`` string, or a loader returning one; contract in
``recur/cells/triton_pointwise.py``). It is stored as ``Cell.triton_update`` and used by the
Triton backend where that backend can run the cell (<= 4 gates, <= 2 states, no params);
everywhere else the torch ``update`` runs on the reference loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Cell
from .registry import register

Init = str | Callable[[Tensor, int], None]
_INITS = ("uniform", "zeros", "ones")


@dataclass(frozen=True)
class Param:
    """An extra learnable tensor of a cell, one per layer and direction.

    Args:
        name: parameter name stem; the module registers ``{name}_l{k}`` (``_reverse``).
        shape: entries are ints or the symbols ``"H"`` (hidden size) and ``"G*H"``.
        init: ``"uniform"`` (torch.nn's U(-1/sqrt(H), 1/sqrt(H)), the default), ``"zeros"``,
            ``"ones"``, or a callable ``init(tensor, hidden_size)`` filling it in place.
    """

    name: str
    shape: tuple[int | str, ...] = ("H",)
    init: Init = "uniform"

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"Param name must be a Python identifier, got {self.name!r}")
        for s in self.shape:
            if not (isinstance(s, int) and s > 0) and s not in ("H", "G*H"):
                raise ValueError(f"Param {self.name!r}: shape entries must be positive ints, "
                                 f"'H' or 'G*H', got {s!r}")
        if isinstance(self.init, str) and self.init not in _INITS:
            raise ValueError(f"Param {self.name!r}: init must be one of {_INITS} or a "
                             f"callable, got {self.init!r}")

    def resolve(self, num_gates: int, hidden_size: int) -> tuple[int, ...]:
        """The concrete shape for G gates of H units."""
        sub = {"H": hidden_size, "G*H": num_gates * hidden_size}
        return tuple(sub.get(s, s) if isinstance(s, str) else s for s in self.shape)

    def initialise_new(self, shape: tuple[int, ...], hidden_size: int, **factory) -> Tensor:
        """A new tensor of ``shape`` filled by this init (``factory``: device, dtype)."""
        t = torch.empty(shape, **factory)
        self.initialise(t, hidden_size)
        return t

    def initialise(self, tensor: Tensor, hidden_size: int) -> None:
        """Fill ``tensor`` in place (under ``torch.no_grad``)."""
        with torch.no_grad():
            if callable(self.init):
                self.init(tensor, hidden_size)
            elif self.init == "zeros":
                tensor.zero_()
            elif self.init == "ones":
                tensor.fill_(1.0)
            else:
                stdv = 1.0 / math.sqrt(hidden_size)
                tensor.uniform_(-stdv, stdv)


@dataclass(frozen=True)
class DeclaredCell(Cell):
    """A :class:`Cell` that may own extra per-layer tensors: ``params``, their declarations
    (:class:`Param`), see :func:`declare`."""

    params: tuple[Param, ...] = ()


def declare(
    update: Callable | None = None,
    *,
    num_gates: int,
    num_states: int = 1,
    params: tuple[Param, ...] | list[Param] = (),
    name: str | None = None,
    triton: object | None = None,
    doc: str = "",
    check: bool = True,
    forget_gate: int | None = None,
):
    """Declare a cell from its pointwise update; usable as a decorator or a function.

    Args:
        update: ``update(xg, hg, states, *cell_weights) -> new_states`` written with torch
            operations: ``xg = x_t W_ih^T + b_ih`` and ``hg = h_{t-1} W_hh^T + b_hh`` are
            ``[B, G*H]``; ``states`` is a tuple of ``num_states`` tensors ``[B, H]`` with
            ``states[0] = h``; ``cell_weights`` one tensor per declared param, with its
            resolved shape. Returns the new states
            (a tuple or list of ``num_states`` tensors ``[B, H]``).
        num_gates: G, gate blocks of H units in ``xg`` / ``hg`` (weights are ``[G*H, *]``).
        num_states: number of states (1: h only; 2: h and c; ...).
        params: the declarations (:class:`Param`) of the cell's extra learnable tensors,
            in update order.
        name: identifier (default: the function's name).
        triton: optional Triton pointwise for the fused GPU kernels (see the module doc).
        doc: one line of math for messages and docs (default: the update's first doc line).
        check: run the update once on tiny zero inputs (B=2, H=3, float64) to catch a wrong
            signature or wrong output shapes here rather than deep inside a forward pass.
        forget_gate: index of the gate block that is a forget gate, if any (lets
            ``recur.VariantRNN(..., forget_bias=)`` initialise its bias).

    Returns:
        A :class:`DeclaredCell` (or, used as ``@declare(...)``, a decorator returning one),
        registered under its name (:mod:`recur.cells.registry`: a saved module holding it
        loads again by that name).
    """
    def build(fn: Callable) -> DeclaredCell:
        if not callable(fn):
            raise TypeError(f"update must be callable, got {type(fn).__name__}")
        line = (fn.__doc__ or "").strip().splitlines()
        cell = DeclaredCell(name or getattr(fn, "__name__", "cell"), num_gates, num_states,
                            fn, native_mode=None, triton_update=triton,
                            doc=doc or (line[0] if line else ""), params=tuple(params),
                            forget_gate=forget_gate)
        if check:
            check_cell(cell)
        return register(cell)

    return build if update is None else build(update)


def check_cell(cell: Cell, hidden_size: int = 3, batch: int = 2) -> None:
    """Run ``cell.update`` once on zeros and raise ``ValueError`` if its result is not
    ``num_states`` tensors of shape ``[batch, hidden_size]``."""
    G, H, B = cell.num_gates, hidden_size, batch
    z = torch.zeros(B, G * H, dtype=torch.float64)
    states = tuple(torch.zeros(B, H, dtype=torch.float64) for _ in range(cell.num_states))
    extra = []
    for p in getattr(cell, "params", ()):
        t = torch.empty(p.resolve(G, H), dtype=torch.float64)
        p.initialise(t, H)
        extra.append(t)
    out = cell.update(z, z.clone(), states, *extra)
    if not isinstance(out, (tuple, list)) or len(out) != cell.num_states:
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
        raise ValueError(f"cell {cell.name!r}: update must return a tuple of "
                         f"{cell.num_states} state tensor(s), got {got}")
    for k, s in enumerate(out):
        if not isinstance(s, Tensor) or tuple(s.shape) != (B, H):
            shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(f"cell {cell.name!r}: state {k} returned by update must have "
                             f"shape [B, H] = {(B, H)} (for G={G}, H={H}), got {shape}")
