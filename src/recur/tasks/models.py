"""Small models shared by the tasks: a recur recurrent stack with a linear head.

``SeqModel`` maps a batch-first sequence to one output per step (sequence labelling,
regression, next-step prediction); ``SeqModel(..., last=True)`` (or ``pool="last"``) maps it
to one output per sequence (classification), reading each row's state at its last valid step
when ``lengths`` is given. Both take ``--cell/--hidden/--layers/--bidirectional/--dropout/
--backend`` from a task's config through :func:`from_config`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import cells
from ..nn import GRU, LSTM, RNN, LayerNormGRU, LayerNormLSTM, VariantGRU, VariantLSTM, VariantRNN

__all__ = ["CELLS", "CELL_NAMES", "SeqModel", "from_config", "last_states", "make_recurrent",
           "recurrent_options"]

#: ``--cell`` name → recur module class (exact drop-ins for torch.nn's).
CELLS: dict[str, type[nn.Module]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
#: every cell recur ships, by its ``--cell`` name: torch.nn's (``rnn`` is tanh) and the
#: registry names of the others (``recur.cells.registry``)
CELL_NAMES: tuple[str, ...] = ("rnn", "lstm", "gru", "rnn_relu", "layernorm_lstm",
                               "layernorm_gru")


def make_recurrent(cell: str, input_size: int, hidden: int, *, layers: int = 1,
                   bidirectional: bool = False, dropout: float = 0.0,
                   backend: str = "auto", zoneout: float = 0.0,
                   recurrent_dropout: float = 0.0) -> nn.Module:
    """A batch-first recur recurrent stack (dropout only between layers, as torch.nn).

    ``cell`` is one of :data:`CELL_NAMES`: ``rnn | lstm | gru`` without ``zoneout`` /
    ``recurrent_dropout`` give recur's torch.nn drop-ins; with them, and for the layer-norm
    cells, the variant modules (``recur.VariantLSTM`` ..., ``recur.LayerNormLSTM``...)."""
    if cell not in CELL_NAMES:
        raise ValueError(f"cell must be one of {list(CELL_NAMES)}, got {cell!r}")
    kw = {"num_layers": layers, "batch_first": True, "bidirectional": bidirectional,
          "dropout": dropout if layers > 1 else 0.0, "backend": backend}
    variant = {"zoneout": zoneout, "recurrent_dropout": recurrent_dropout}
    if cell in CELLS and not zoneout and not recurrent_dropout:
        return CELLS[cell](input_size, hidden, **kw)
    if cell in ("layernorm_lstm", "layernorm_gru"):
        cls = LayerNormLSTM if cell == "layernorm_lstm" else LayerNormGRU
        return cls(input_size, hidden, **kw, **variant)
    if cell in ("lstm", "gru"):
        return (VariantLSTM if cell == "lstm" else VariantGRU)(input_size, hidden, **kw,
                                                               **variant)
    base = cells.lookup("rnn_tanh" if cell == "rnn" else cell)
    return VariantRNN(base, input_size, hidden, **kw, **variant)


def recurrent_options(cfg: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`make_recurrent` from a task config's common options
    (``--layers --bidirectional --dropout --backend --zoneout --recurrent-dropout``)."""
    return {"layers": cfg.layers, "bidirectional": cfg.bidirectional, "dropout": cfg.dropout,
            "backend": cfg.backend, "zoneout": getattr(cfg, "zoneout", 0.0),
            "recurrent_dropout": getattr(cfg, "recurrent_dropout", 0.0)}


def last_states(state: Any, directions: int) -> Tensor:
    """The last layer's final hidden state, every direction side by side.

    Args:
        state: what a recur ``RNN | GRU`` returns as its final state, ``h_n: [L*D, B, H]``,
            or an LSTM's ``(h_n, c_n)`` (``c_n`` is ignored).
        directions: D, 2 for a bidirectional stack, else 1.

    Returns:
        ``[B, D*H]``: forward direction first (with ``lengths=``, each row's state at its last
        valid step; the reverse direction's final state is the one at step 0).
    """
    h_n = state[0] if isinstance(state, tuple) else state          # (L*D, B, H)
    return torch.cat(list(h_n[-directions:]), dim=-1)              # (B, D*H)


class SeqModel(nn.Module):
    """Recurrent stack + linear head.

    Args:
        input_size: I, features per step.
        output_size: O, outputs per step (or per sequence with ``pool="last"``).
        cell, hidden, layers, bidirectional, dropout, backend, zoneout, recurrent_dropout: as
            :func:`make_recurrent`.
        pool: ``"none"`` (one output per step) or ``"last"`` (one per sequence: the final
            state of the last layer, both directions concatenated).
        out_activation: ``"none" | "sigmoid" | "tanh"`` applied to the head's output.

    Shapes:
        ``forward(x, state=None, lengths=None)`` with ``x: [B, T, I]``, ``lengths: [B]``
        returns ``(y, state)``: ``y: [B, T, O]`` (``pool="last"``: ``[B, O]``) and the final
        recurrent state (``h_n: [L*D, B, H]``; LSTM ``(h_n, c_n)``), to carry into the next
        window.
    """

    def __init__(self, input_size: int, output_size: int, *, cell: str = "lstm",
                 hidden: int = 64, layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, backend: str = "auto", pool: str = "none",
                 out_activation: str = "none", zoneout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        if pool not in ("none", "last"):
            raise ValueError(f"pool must be 'none' or 'last', got {pool!r}")
        if out_activation not in ("none", "sigmoid", "tanh"):
            raise ValueError(f"out_activation must be 'none', 'sigmoid' or 'tanh', "
                             f"got {out_activation!r}")
        self.pool = pool
        self.out_activation = out_activation
        self.rnn = make_recurrent(cell, input_size, hidden, layers=layers,
                                  bidirectional=bidirectional, dropout=dropout, backend=backend,
                                  zoneout=zoneout, recurrent_dropout=recurrent_dropout)
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(hidden * self.directions, output_size)

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None
                ) -> tuple[Tensor, Any]:
        if lengths is None:
            out, state = self.rnn(x, state)                        # (B, T, D*H)
        else:
            out, state = self.rnn(x, state, lengths=lengths)
        if self.pool == "last":
            out = last_states(state, self.directions)              # (B, D*H)
        y = self.head(out)
        if self.out_activation == "sigmoid":
            y = torch.sigmoid(y)
        elif self.out_activation == "tanh":
            y = torch.tanh(y)
        return y, state


def from_config(cfg: Any, input_size: int, output_size: int, **kwargs: Any) -> SeqModel:
    """A :class:`SeqModel` with the common options of a task config (``cfg.cell`` ...)."""
    return SeqModel(input_size, output_size, cell=cfg.cell, hidden=cfg.hidden,
                    **recurrent_options(cfg), **kwargs)
