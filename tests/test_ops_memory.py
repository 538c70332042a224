"""recur.ops.memory: the cache of large CPU buffers hands a buffer out again only once
nothing else holds it, keeps to its byte cap and lets go on release; a layer's results do not
change when its buffers come from the cache (retain_graph included). The huge-page hint on
large CPU buffers is asked on the buffer's own aligned interior only, never on small ones,
and the tensor is torch.empty's."""

from __future__ import annotations

import pytest
import torch

import recur
from recur.ops import memory

needs_count = pytest.mark.skipif(memory._free_check() is None,
                                 reason="no usable storage reference count in this PyTorch "
                                        "(torch._C._storage_Use_Count): the cache is off")


@pytest.fixture
def cache(monkeypatch):
    """An empty cache of its own for the test (the process's buffers set aside)."""
    monkeypatch.setattr(memory, "_cache", [])
    monkeypatch.setattr(memory, "CACHE_BYTES", 64 << 20)
    monkeypatch.setattr(memory, "CACHE_MIN_BYTES", 1 << 20)
    return memory


@needs_count
def test_a_buffer_is_handed_out_again_only_once_nothing_holds_it(cache):
    like = torch.empty(0)
    a = cache.empty_large(256, 1024, like=like)            # 1 MiB
    pa = a.data_ptr()
    b = cache.empty_large(256, 1024, like=like)
    assert b.data_ptr() != pa                               # a is held
    del a
    c = cache.empty_large(512, 512, like=like)              # same bytes, other shape
    assert c.data_ptr() == pa and c.shape == (512, 512) and c.dtype == torch.float32
    view = c[3]
    del c
    d = cache.empty_large(256, 1024, like=like)
    assert d.data_ptr() not in (pa, b.data_ptr())           # a view still holds it
    del view
    e = cache.empty_large(128, 1024, like=torch.empty(0, dtype=torch.float64))
    assert e.data_ptr() == pa and e.dtype == torch.float64  # any dtype of the same bytes
    assert cache.cached_bytes() == 3 << 20
    storage = e.untyped_storage()                           # one reference, nothing else
    del e
    f = cache.empty_large(256, 1024, like=like)
    assert f.data_ptr() != pa
    del storage
    h = cache.empty_large(256, 1024, like=like)
    assert h.data_ptr() == pa
    alias = torch.empty(0, dtype=torch.uint8).set_(h.untyped_storage())  # one more tensor
    del h
    assert cache.empty_large(256, 1024, like=like).data_ptr() != pa
    del alias
    assert cache.empty_large(256, 1024, like=like).data_ptr() == pa


@needs_count
def test_saved_tensors_hold_a_buffer(cache):
    x = cache.empty_large(256, 1024, like=torch.empty(0)).normal_()
    w = torch.ones(1024, requires_grad=True)
    y = (x * w).sum()                                        # autograd saves x
    px = x.data_ptr()
    del x
    z = cache.empty_large(256, 1024, like=torch.empty(0))
    assert z.data_ptr() != px
    y.backward()
    del y
    assert cache.empty_large(256, 1024, like=torch.empty(0)).data_ptr() == px


@needs_count
def test_the_cap_and_release(cache, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_BYTES", 3 << 20)
    like = torch.empty(0)
    a = cache.empty_large(256, 1024, like=like)
    b = cache.empty_large(512, 1024, like=like)             # 1 + 2 MiB: full
    c = cache.empty_large(256, 1024, like=like)             # all in use: not kept
    assert cache.cached_bytes() == 3 << 20 and c.shape == (256, 1024)
    del a
    d = cache.empty_large(768, 1024, like=like)             # 3 MiB: b in use, so not kept
    assert cache.cached_bytes() == 3 << 20
    del b, c, d
    e = cache.empty_large(768, 1024, like=like)             # the free ones go, LRU first
    assert cache.cached_bytes() == 3 << 20 and len(cache._cache) == 1
    assert cache.release() == 0                              # e holds the only one
    del e
    assert cache.release() == 3 << 20 and cache.cached_bytes() == 0
    small = cache.empty_large(10, like=like)                 # below CACHE_MIN_BYTES
    assert small.shape == (10,) and cache.cached_bytes() == 0


@needs_count
def test_the_count_is_checked_under_inference_mode_too(monkeypatch):
    # the check runs autograd once: asked first under no_grad / inference_mode, it must not
    # conclude that saved tensors are not counted
    memory._free_check.cache_clear()
    try:
        with torch.inference_mode():
            assert memory._free_check() is not None
        memory._free_check.cache_clear()
        with torch.no_grad():
            assert memory._free_check() is not None
    finally:
        memory._free_check.cache_clear()


@needs_count
def test_a_buffer_made_under_inference_mode_serves_training(cache):
    # made first under inference_mode, the buffer must not be an inference tensor that
    # autograd then refuses to save: an eval pass, then training on the same sizes
    torch.manual_seed(0)
    m = recur.LayerNormLSTM(3, 8, backend="cpu")
    x = torch.randn(7, 4, 3)
    cache.CACHE_MIN_BYTES = 0
    with torch.inference_mode():
        want = m(x)[0].clone()
        assert cache.cached_bytes() > 0 and not any(b.is_inference() for b in cache._cache)
    got = m(x)[0]
    got.sum().backward()
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
    assert all(p.grad is not None for p in m.parameters())


@needs_count
def test_under_deterministic_algorithms_a_cached_buffer_is_filled_as_torch_empty(cache):
    like = torch.empty(0)
    a = cache.empty_large(256, 1024, like=like).fill_(1.0)
    pa = a.data_ptr()
    del a
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        b = cache.empty_large(256, 1024, like=like)
        assert b.data_ptr() == pa and bool(torch.isnan(b).all()) == bool(
            torch.isnan(torch.empty(4)).all())
    finally:
        torch.use_deterministic_algorithms(previous)
    del b
    c = cache.empty_large(256, 1024, like=like)
    assert c.data_ptr() == pa  # outside the mode: no pass over it


def test_off_it_is_torch_empty(cache, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_BYTES", 0)
    t = cache.empty_large(512, 1024, like=torch.empty(0))
    assert t.shape == (512, 1024) and cache.cached_bytes() == 0


@needs_count
def test_a_layer_on_cached_buffers_gives_the_same_numbers(cache):
    # small buffers cached too, so that every buffer of the layer comes from the cache; two
    # graphs alive at once (retain_graph), a second backward of the first after the second
    # forward, against the same with the cache off
    torch.manual_seed(0)
    m = recur.LayerNormLSTM(3, 8, num_layers=2, bidirectional=True, backend="cpu")
    x = torch.randn(7, 4, 3, requires_grad=True)

    def grads(out):
        g = torch.autograd.grad(out.square().sum(), [x, *m.parameters()], retain_graph=True)
        return [t.clone() for t in g]

    def run():
        out1 = m(x)[0]
        g1 = grads(out1)
        out2 = m(x * 2)[0]
        g2 = grads(out2)
        return out1.detach().clone(), out2.detach().clone(), g1, g2, grads(out1), grads(out2)

    cache.CACHE_MIN_BYTES = 0
    hot = run()
    assert cache.cached_bytes() > 0
    cache.CACHE_BYTES = 0
    cold = run()
    for a, b in zip(hot[:2], cold[:2]):
        assert torch.equal(a, b)
    for ga, gb in zip(hot[2:], cold[2:]):
        assert all(torch.equal(u, v) for u, v in zip(ga, gb))
    for u, v in zip(hot[2], hot[4]):                        # the first graph, backward again
        assert torch.equal(u, v)


def test_large_buffers_get_the_hint_on_their_aligned_interior(cache, monkeypatch):
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


def test_without_madvise_it_is_torch_empty(cache, monkeypatch):
    monkeypatch.setattr(memory, "_madvise", lambda: None)
    t = memory.empty_large(2, 3 << 20, like=torch.zeros(1))
    t.fill_(1.5)
    assert t.shape == (2, 3 << 20) and bool((t == 1.5).all())


def test_the_hint_is_off_by_default(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_madvise", lambda: lambda a, n, advice: calls.append(a))
    t = memory.empty_large(4, 1 << 20, like=torch.empty(0))
    assert t.shape == (4, 1 << 20) and not calls
