"""``LayerWeights``: what one layer and direction of a stack hands to a backend;
``LayerSpec``: what a backend looks at to accept it."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor

from ..cells import Cell

EXTRAS = ("cell_weights", "step_inputs", "h_mask", "xg_fn", "zoneout")


class LayerWeights(NamedTuple):
    """One layer and direction: ``w_ih [G*H, I]``, ``w_hh [G*H, Hout]``, biases ``[G*H]`` or
    None, ``w_hr [P, H]`` or None.

    Optional extras, for variants and declared cells (all default to "none"; which backend
    takes which is each backend's ``accepts``, see :mod:`recur.ops.plan`): ``cell_weights`` handed
    to every step's update, ``step_inputs`` (``[T, ...]``, sliced per step), ``h_mask
    [B, Hout]`` on ``h_{t-1}`` before ``W_hh``, ``zoneout`` masks (one ``[T, B, H]`` per
    state, see :func:`recur.ops.scan`), and ``xg_fn`` applied once to the whole input
    projection ``xg [T, B, G*H]`` before the scan (e.g. a layer norm).
    """

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None = None
    b_hh: Tensor | None = None
    w_hr: Tensor | None = None
    cell_weights: tuple[Tensor, ...] = ()
    step_inputs: tuple[Tensor, ...] = ()
    h_mask: Tensor | None = None
    xg_fn: Callable[[Tensor], Tensor] | None = None
    zoneout: tuple[Tensor, ...] | None = None

    def flat(self) -> list[Tensor]:
        """torch.nn's weights only (``w_ih, w_hh, b_ih, b_hh, w_hr``), the Nones left out."""
        return [w for w in self[:5] if w is not None]

    def extras(self) -> frozenset[str]:
        """The names (of :data:`EXTRAS`) of the extras this layer uses; empty for a plain
        torch.nn layer."""
        return extras_of(**{name: getattr(self, name) for name in EXTRAS})


def extras_of(**given) -> frozenset[str]:
    """The names of the :data:`EXTRAS` among ``given`` that are present (not None, not an
    empty tuple)."""
    return frozenset(name for name in EXTRAS if _present(given.get(name)))


def _present(value) -> bool:
    return value is not None and not (isinstance(value, tuple) and not value)


class LayerSpec(NamedTuple):
    """What a backend needs to know to accept one layer and direction (see
    :mod:`recur.ops.plan`): the cell, ``H`` units, the recurrent width ``HO`` (``P`` with a
    projection), whether there is a projection / a recurrent bias, the extras used, and the
    shapes of the tensors handed to the update (``cell_weights``)."""

    cell: Cell
    hidden_size: int
    recurrent_size: int
    proj: bool = False
    b_hh: bool = True
    extras: frozenset[str] = frozenset()
    weight_shapes: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of(cls, cell: Cell, lw: LayerWeights) -> LayerSpec:
        """The spec of one layer's weights and extras."""
        return cls.of_tensors(cell, lw.w_hh, lw.b_hh, lw.w_hr,
                              **{name: getattr(lw, name) for name in EXTRAS})

    @classmethod
    def of_tensors(cls, cell: Cell, w_hh: Tensor, b_hh: Tensor | None, w_hr: Tensor | None,
                   **extras) -> LayerSpec:
        """The spec from ``w_hh [G*H, HO]``, ``b_hh``, ``w_hr`` and the extras by name
        (``cell_weights=``, ``h_mask=``, ... as :func:`recur.ops.scan` takes them)."""
        return cls(cell, w_hh.shape[0] // cell.num_gates, w_hh.shape[1], w_hr is not None,
                   b_hh is not None, extras_of(**extras),
                   tuple(tuple(p.shape) for p in extras.get("cell_weights", ())))
