"""``CustomRNN``: a multi-layer recurrent module for any declared cell.

The same machinery as ``recur.LSTM`` (layers, bidirectional, packed input, ``lengths=``,
unbatched and batch-first input, inter-layer dropout, ``proj_size``), around a cell from
:func:`recur.cells.declare` (or any :class:`recur.cells.Cell`). torch.nn's parameters are
created with torch.nn's names and shapes for G gates (``weight_ih_l{k}: [G*H, I]``, ...),
then the cell's own :class:`recur.cells.Param` tensors as ``{name}_l{k}{_reverse}``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..cells import Cell
from ..ops import LayerWeights
from .rnn import RNNBase


class CustomRNN(RNNBase):
    """Run a declared cell as a torch.nn-style recurrent module.

    Args:
        cell: a :class:`recur.cells.Cell` (typically from :func:`recur.cells.declare`).
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size, device, dtype, backend: as in :class:`recur.LSTM`.

    Forward: ``forward(input, hx=None, *, lengths=None)`` as :meth:`recur.RNNBase.forward`;
    returns ``output, h_n`` for a one-state cell, else ``output, (h_n, s1_n, ...)``, with
    ``output: [T, B, D*Hout]`` and every state ``[L*D, B, H]`` (``h_n: [L*D, B, Hout]``).

    Per layer and direction the engine runs, for t = 0..T-1::

        xg_t = x_t W_ih^T + b_ih;  hg_t = h_{t-1} W_hh^T + b_hh      # [B, G*H]
        states_t = cell.update(xg_t, hg_t, states_{t-1}, *cell_weights)
    """

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None,
                 *, backend: str = "auto") -> None:
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a recur.cells.Cell (see recur.cells.declare), "
                            f"got {type(cell).__name__}")
        super().__init__(None, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype, backend=backend,
                         cell=cell)
        factory = {"device": device, "dtype": dtype}
        D = 2 if bidirectional else 1
        # per layer and direction: the names of the module parameters made from the cell's
        # declared params (its cell weights), in update order
        self._cell_param_names: list[tuple[str, ...]] = []
        specs = getattr(cell, "params", ())
        for layer in range(num_layers):
            for direction in range(D):
                suffix = "_reverse" if direction == 1 else ""
                names = []
                for p in specs:
                    pname = f"{p.name}_l{layer}{suffix}"
                    shape = p.resolve(cell.num_gates, hidden_size)
                    setattr(self, pname, nn.Parameter(p.initialise_new(shape, hidden_size,
                                                                        **factory)))
                    names.append(pname)
                self._cell_param_names.append(tuple(names))

    def reset_parameters(self) -> None:
        """torch.nn's init for torch.nn's weights, then each cell weight's own init (its
        declared ``Param.init``)."""
        super().reset_parameters()  # note: also runs U(-1/sqrt(H), 1/sqrt(H)) on the cell weights
        specs = getattr(self.cell, "params", ())
        for names in getattr(self, "_cell_param_names", ()):
            for p, n in zip(specs, names):
                p.initialise(getattr(self, n), self.hidden_size)

    def _cell_weights(self) -> list[tuple[Tensor, ...]]:
        """Per layer and direction: the cell weights (the module parameters made from the
        cell's declared params), in update order."""
        return [tuple(getattr(self, n) for n in names) for names in self._cell_param_names]

    def _stack_weights(self, x: Tensor) -> list[LayerWeights]:
        return [lw._replace(cell_weights=ps) if ps else lw
                for lw, ps in zip(self._layer_weights(), self._cell_weights())]

    def extra_repr(self) -> str:
        return f"cell={self.cell.name!r}, " + super().extra_repr()
