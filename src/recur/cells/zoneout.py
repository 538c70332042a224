"""Zoneout (Krueger et al. 2016) as a transformation of any declared cell.

With per-step masks ``m_k: [B, H]`` for each state k (given to the update after every other
extra tensor), the wrapped update is::

    s~ = cell.update(xg, hg, states, *params)          # the cell's own new states
    s_k' = m_k * s_k + (1 - m_k) * s~_k                 # keep the old value where m_k = 1

In training ``m_k ~ Bernoulli(p_k)`` per unit and step; in eval ``m_k = p_k`` (the
expectation). For the LSTM this is the paper's form: h~ = o tanh(c~) uses the un-zoned c~.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from .base import Cell, States


def with_zoneout(cell: Cell) -> Cell:
    """Return ``cell`` with zoneout on every state; the update takes ``num_states`` extra
    trailing mask tensors ``[B, H]`` (one per state, probability of keeping the old value)."""
    inner = cell.update
    k = cell.num_states

    def update(xg: Tensor, hg: Tensor, states: States, *extra: Tensor) -> States:
        params, masks = extra[:-k], extra[-k:]
        new = inner(xg, hg, states, *params)
        return tuple(m * s + (1 - m) * n for m, s, n in zip(masks, states, new))

    return dataclasses.replace(cell, name=f"{cell.name}+zoneout", update=update,
                               native_mode=None, triton_update=None)
