"""recur.ops.memory: the huge-page hint on large CPU buffers is asked on the buffer's own
aligned interior only, never on small ones, and the tensor is torch.empty's."""

from __future__ import annotations

import torch

from recur.ops import memory


def test_large_buffers_get_the_hint_on_their_aligned_interior(monkeypatch):
    monkeypatch.setattr(memory, "HINT", True)
    calls = []
    monkeypatch.setattr(memory, "_madvise", lambda: lambda a, n, advice: calls.append(
        (a, n, advice)) or 0)
    like = torch.zeros(1, dtype=torch.float64)
    t = memory.empty_large(3, 1 << 20, like=like)  # 24 MiB
    assert t.shape == (3, 1 << 20) and t.dtype == torch.float64 and t.is_contiguous()
    (a, n, advice), = calls
    lo, hi = t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()
    assert advice == 14 and a % (2 << 20) == 0 and n % (2 << 20) == 0
    assert lo <= a and a + n <= hi and n >= (hi - lo) - 2 * (2 << 20)
    calls.clear()
    small = memory.empty_large(10, like=like)
    assert small.shape == (10,) and calls == []


def test_without_madvise_it_is_torch_empty(monkeypatch):
    monkeypatch.setattr(memory, "_madvise", lambda: None)
    t = memory.empty_large(2, 3 << 20, like=torch.zeros(1))
    t.fill_(1.5)
    assert t.shape == (2, 3 << 20) and bool((t == 1.5).all())


def test_the_hint_is_off_by_default(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_madvise", lambda: lambda a, n, advice: calls.append(a))
    t = memory.empty_large(4, 1 << 20, like=torch.empty(0))
    assert t.shape == (4, 1 << 20) and not calls
