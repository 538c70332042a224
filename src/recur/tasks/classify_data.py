"""``classify``'s datasets: the ``--data aeon:NAME`` spec, the split as items, ensemble batches.

A :class:`~recur.data.SequenceSplit` holds padded series ``x: [N, T, C]``, their ``lengths: [N]``
and labels ``y: [N]``; :class:`SplitDataset` serves it one series at a time and
:class:`MemberDataset` one series per ensemble member (each member its own order).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data import SequenceSplit, aeon_classification_names

__all__ = ["MemberDataset", "SplitDataset", "parse_aeon_spec"]


def parse_aeon_spec(spec: str | None) -> str:
    """``"aeon:NAME"`` → ``"NAME"``; anything else is a ``ValueError`` listing the valid names."""
    if not spec or not spec.startswith("aeon:") or not spec[5:]:
        raise ValueError(f"--data must be aeon:NAME, got {spec!r}; datasets shipped with the "
                         f"installed aeon: {', '.join(aeon_classification_names())}")
    return spec[5:]


class SplitDataset(Dataset):
    """Items ``(x [T, C], length [], y [])`` of a :class:`~recur.data.SequenceSplit`."""

    def __init__(self, split: SequenceSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        s = self.split
        return s.x[i], s.lengths[i], s.y[i]


class MemberDataset(Dataset):
    """One item per ensemble member: item ``i`` is ``(x [K, T, C], length [K], y [K])``,
    member ``k`` reading series ``order_k[i]`` of the split (``order_0`` is the identity,
    the others fixed random permutations drawn from ``seed``). The sampler shuffles ``i``
    every epoch, so each member sees its own batches in its own order: members trained on
    the same batches make correlated errors. ``repeats`` R > 1 makes one epoch R passes over
    the split (item ``i`` reads position ``i mod N``): a tiny training set still gets a few
    dozen steps per epoch, so the per-epoch evaluation and checkpoint stay a small cost."""

    def __init__(self, split: SequenceSplit, members: int, seed: int, repeats: int = 1) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        self.split, self.repeats = split, repeats
        n = len(split)
        gen = torch.Generator().manual_seed(seed)
        self.order = torch.stack([torch.arange(n)]
                                 + [torch.randperm(n, generator=gen) for _ in range(members - 1)])

    def __len__(self) -> int:
        return len(self.split) * self.repeats

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        s, j = self.split, self.order[:, i % len(self.split)]
        return s.x[j], s.lengths[j], s.y[j]
