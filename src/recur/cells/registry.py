"""The cell registry: every cell recur ships, and every cell a user declares, by name.

A module that holds a cell (``recur.LSTM``, ``recur.CustomRNN``...) pickles the cell's name,
not the cell (which holds functions), and finds the cell again here when it is loaded, so
``torch.load(path, weights_only=True)`` of a whole model needs the module classes alone in
``torch.serialization.add_safe_globals``. Run directories and the CLI name cells the same
way.

    register(cell)   # done by recur for its own cells and by recur.cells.declare
    lookup("lstm")   # -> recur.cells.LSTM
"""

from __future__ import annotations

from .base import Cell

__all__ = ["lookup", "register", "registered"]

_CELLS: dict[str, Cell] = {}
_BUILTIN: set[str] = set()


def register(cell: Cell, *, builtin: bool = False) -> Cell:
    """Make ``cell`` findable by ``cell.name`` and return it. A later cell of the same name
    replaces an earlier user cell (re-running a script re-declares its cells); the names of
    recur's own cells cannot be taken (``ValueError``)."""
    if not isinstance(cell, Cell):
        raise TypeError(f"register takes a recur.cells.Cell, got {type(cell).__name__}")
    if cell.name in _BUILTIN and _CELLS[cell.name] is not cell:
        raise ValueError(f"cell name {cell.name!r} belongs to recur's built-in cell; declare "
                         f"yours under another name (declare(..., name=...))")
    _CELLS[cell.name] = cell
    if builtin:
        _BUILTIN.add(cell.name)
    return cell


def lookup(name: str) -> Cell:
    """The registered cell called ``name`` (``KeyError`` naming the known cells if none)."""
    try:
        return _CELLS[name]
    except KeyError:
        raise KeyError(f"no recur cell is registered as {name!r}; known cells: "
                       f"{sorted(_CELLS)}. A cell of your own is registered when its "
                       "recur.cells.declare runs: import the module that declares it "
                       "first") from None


def registered() -> dict[str, Cell]:
    """Every registered cell by name (a copy)."""
    return dict(_CELLS)
