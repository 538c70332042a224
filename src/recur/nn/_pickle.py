"""Pickling of modules that hold a cell: the cell goes by its registered name.

A :class:`recur.cells.Cell` holds functions, which ``torch.load(..., weights_only=True)``
refuses; a pickled recur module holds what torch.nn's do (tensors, numbers, strings), so a
user allow-lists the module class alone (``torch.serialization.add_safe_globals``).
"""

from __future__ import annotations

from typing import Any

from ..cells import Cell, lookup, registered


class CellByName:
    """Mixin (before ``nn.Module``): ``self.cell`` pickles as its name when that name is
    registered to this very cell (:mod:`recur.cells.registry`), and is looked up on load.
    An unregistered cell pickles as itself (loadable with ``weights_only=False`` only)."""

    cell: Cell

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_plans", None)  # RNNBase's per-input plan cache: recomputed on demand
        cell = state.get("cell")
        if isinstance(cell, Cell) and registered().get(cell.name) is cell:
            state["cell"] = cell.name
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("cell"), str):
            state = {**state, "cell": lookup(state["cell"])}
        super().__setstate__(state)
