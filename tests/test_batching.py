"""LengthBuckets: random batches of similar-length items (recur.train.batching)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from recur.train import Trainer, TrainerConfig
from recur.train.batching import LengthBuckets

LENGTHS = torch.randint(1, 60, (203,), generator=torch.Generator().manual_seed(0))


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_item_once_per_epoch_and_batches_sorted_within_windows():
    s = LengthBuckets(LENGTHS, batch_size=16, window=4, seed=1)
    batches = _epoch(s, 0)
    assert len(batches) == len(s) == 13                       # 3 windows of 4, then 11 items
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert sorted(len(b) for b in batches)[:2] == [11, 16]    # 203 = 12 * 16 + 11
    spread = [int(LENGTHS[b].max() - LENGTHS[b].min()) for b in batches]
    plain = LengthBuckets(LENGTHS, batch_size=16, window=1, seed=1)
    plain_spread = [int(LENGTHS[b].max() - LENGTHS[b].min()) for b in _epoch(plain, 0)]
    assert sum(spread) < 0.5 * sum(plain_spread)              # tighter batches than random


def test_order_is_a_function_of_seed_and_epoch():
    a, b = LengthBuckets(LENGTHS, 16, 4, seed=3), LengthBuckets(LENGTHS, 16, 4, seed=3)
    assert _epoch(a, 2) == _epoch(b, 2)
    assert _epoch(a, 2) != _epoch(a, 3)
    assert _epoch(a, 2) != _epoch(LengthBuckets(LENGTHS, 16, 4, seed=4), 2)


@pytest.mark.parametrize("world", [2, 3])
def test_processes_share_the_batches_and_take_the_same_number_of_steps(world):
    shards = [_epoch(LengthBuckets(LENGTHS, 16, 4, seed=1, rank=r, world=world), 5)
              for r in range(world)]
    assert {len(s) for s in shards} == {len(LengthBuckets(LENGTHS, 16, 4, world=world))}
    seen = sorted(i for s in shards for b in s for i in b)
    assert sorted(set(seen)) == list(range(203))              # every item, some twice (padding)
    everything = _epoch(LengthBuckets(LENGTHS, 16, 4, seed=1), 5)
    assert all(b in everything for s in shards for b in s)    # the same batches, sharded


@pytest.mark.parametrize("n, world", [(5, 3), (20, 8), (5, 8)])
def test_more_processes_than_batches_still_step_together(n, world):
    """Fewer batches than processes: batches repeat so no process is left without a step
    (one would otherwise wait forever in the others' gradient all-reduce)."""
    shards = [list(LengthBuckets(torch.arange(n), 8, 1, rank=r, world=world))
              for r in range(world)]
    assert [len(s) for s in shards] == [1] * world
    assert sorted(set(i for s in shards for b in s for i in b)) == list(range(n))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="1-D"):
        LengthBuckets(torch.zeros(2, 2), 4, 1)
    with pytest.raises(ValueError, match="at least 1, got 0 and 1"):
        LengthBuckets(LENGTHS, 0, 1)
    with pytest.raises(ValueError, match=r"rank must lie in \[0, world=2\), got 2"):
        LengthBuckets(LENGTHS, 4, 1, rank=2, world=2)


def test_trainer_batches_by_length_when_asked():
    x = torch.arange(203.0)[:, None]
    data = TensorDataset(x, LENGTHS)
    model = torch.nn.Linear(1, 1)
    seen = []

    def step(m, batch, carry):
        seen.append(batch[1])
        return m(batch[0]).sum() * 0.0, None

    trainer = Trainer(model, data, TrainerConfig(epochs=1, batch_size=16, bucket=4, seed=1),
                      step=step, lengths=LENGTHS)
    trainer.fit()
    expected = _epoch(LengthBuckets(LENGTHS, 16, 4, seed=1), 0)
    assert [b.tolist() for b in seen] == [LENGTHS[b].tolist() for b in expected]
    with pytest.raises(ValueError, match="needs the training items' lengths .* got no lengths"):
        Trainer(model, data, TrainerConfig(bucket=4), step=step)
    with pytest.raises(ValueError, match="203 items, 5 lengths"):
        Trainer(model, data, TrainerConfig(bucket=4), step=step, lengths=LENGTHS[:5])
