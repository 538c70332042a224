"""Batches of items of similar length (bucketing), for training on ragged sequences.

A batch of texts runs as long as its longest text (padding costs time even when ``lengths=``
keeps it out of the state). :class:`LengthBuckets` is a batch sampler for ``DataLoader`` that
keeps batches random but their lengths close: in each epoch the items are shuffled, cut into
windows of ``window`` batches, each window is sorted by length and cut into batches, and the
batches of all windows are shuffled. ``window=1`` is plain random batching; a larger window
gives tighter batches and less randomness in which items meet in a batch.

The order is a function of ``(seed, epoch)`` only (``set_epoch``, as ``DistributedSampler``),
so a resumed run sees the batches an uninterrupted run would. Across ``world`` processes,
process ``rank`` takes every ``world``-th batch; when the batches do not divide evenly they
are repeated from the first (cyclically, more than once if there are fewer batches than
processes) so that every process takes the same number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

__all__ = ["LengthBuckets"]


class LengthBuckets(Sampler[list[int]]):
    """Random batches of similar-length items.

    Args:
        lengths: ``[N]`` the length of each item (any sortable numbers).
        batch_size: items per batch (the last batch of the last window may be smaller).
        window: batches per sorted window, at least 1.
        seed: with the epoch, fixes the order.
        rank, world: this process's share when training runs in ``world`` processes.
    """

    def __init__(self, lengths: Tensor, batch_size: int, window: int, *, seed: int = 0,
                 rank: int = 0, world: int = 1) -> None:
        lengths = torch.as_tensor(lengths).cpu()
        if lengths.dim() != 1 or lengths.numel() == 0:
            raise ValueError(f"lengths must be a non-empty 1-D tensor, got shape "
                             f"{tuple(lengths.shape)}")
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size and window must be at least 1, got {batch_size} "
                             f"and {window}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must lie in [0, world={world}), got {rank}")
        self.lengths, self.batch_size, self.window = lengths, batch_size, window
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        """Every batch of this epoch, in order, before sharding."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g)
        span = self.window * self.batch_size
        batches = []
        for start in range(0, len(order), span):
            items = order[start:start + span]
            items = items[torch.argsort(self.lengths[items], stable=True)]
            batches += [items[i:i + self.batch_size].tolist()
                        for i in range(0, len(items), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def __len__(self) -> int:
        span = self.window * self.batch_size
        full, rest = divmod(len(self.lengths), span)
        count = full * self.window + -(-rest // self.batch_size)
        return -(-count // self.world)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        total = len(self) * self.world             # every rank the same count: repeat batches
        batches = (batches * -(-total // len(batches)))[:total]
        return iter(batches[self.rank::self.world])
