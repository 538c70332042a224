"""Large CPU buffers of the ``cpu`` backend: kept for the next call, and a huge-page hint.

A tensor of tens of MB (the input projection ``[T, B, G*H]``, the per-step states
``[T+1, B, H]`` a sequence keeps for its backward, the cotangents of its backward) is fresh
memory from the system at every call of ``torch.empty``: the kernel maps it page by page on
first touch, one fault and one zeroed page per 4 KiB, which took about a fifth of a training
call of a layer at B=64, H=512 (``perf``, 2026-11-30). :func:`empty_large` therefore keeps
the buffers it made (up to :data:`CACHE_BYTES` in all) and hands one out again once nothing
else holds it, whatever its shape and dtype (the same number of bytes): the next call of the
same size reuses pages already mapped, as PyTorch's caching allocator does on CUDA
(``benchmarks/buffer_cache.py``, ``buffer-cache-79dc411.json``: in training, 0.65-0.87x the
time where it mattered, LayerNormLSTM and at B=64, H=512; 0.98-1.02x elsewhere). A buffer
is free when its storage has no other reference than the cache's own (views, autograd's saved
tensors, the caller's outputs all count), so nothing a caller still holds is ever handed out
twice. :func:`release` lets go of every free one (the memory returns to the system when the
last user drops it); :data:`CACHE_BYTES` = 0 turns the cache off. The count is PyTorch's
private ``torch._C._storage_Use_Count``, checked once per process (:func:`_free_check`):
where it is missing or does not count views and saved tensors as expected, the cache is
off.

On Linux, :func:`empty_large` can also ask for 2 MiB pages on a new buffer's aligned interior
(``madvise(MADV_HUGEPAGE)``, before anything is written), where the system leaves huge pages
to the program (``/sys/kernel/mm/transparent_hugepage/enabled`` set to ``madvise`` or
``always``; with ``never`` the hint does nothing). It is a hint on memory the tensor owns:
values, strides and lifetime are those of ``torch.empty``, and where the call is unavailable
(not Linux, no libc) nothing is asked.

The hint is **off by default** (:data:`HINT`). Over the issue-16 grid
(``benchmarks/variants.py``, 2-core x86_64, 2026-11-29) recur's summed time was 45.4 s with
it and 26.2 s without in training, 9.75 s and 7.80 s in inference
(``variants-cpu-T*-08c3ddd.json`` against ``variants-cpu-T*-nohugepages-d0cf236.json``):
timed in one process with torch.nn and a hand loop interleaved, 2 MiB pages cost far more
than they saved at T=512 (the LSTM with zoneout at B=64, H=512: 3.61-4.13 s per training
call with it, ``variants-cpu-T512-B64-H512-dcd915e.json``, 2.74 s without,
``variants-cpu-T512-B64-H512-nohugepages-deba259.json``). Set ``HINT = True`` to ask for
them.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
import threading

import torch
from torch import Tensor

#: ask for huge pages at all (module docstring: off, measured slower on balance)
HINT = False
#: buffers at least this large get the hint (smaller ones rarely cover an aligned 2 MiB page)
MIN_BYTES = 4 << 20
_HUGE = 2 << 20
_MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux (every architecture)


@functools.lru_cache(maxsize=1)
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _default_cap() -> int:
    """1 GiB, or an eighth of the machine's memory where that is less (POSIX ``sysconf``)."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 1 << 30
    return min(1 << 30, ram // 8) if ram > 0 else 1 << 30


#: keep buffers of :func:`empty_large` for the next call, up to this many bytes in all
#: (those in use included; 0: no cache): 1 GiB, or an eighth of the machine's memory
CACHE_BYTES = _default_cap()
#: buffers at least this large go through the cache (smaller ones: ``torch.empty``)
CACHE_MIN_BYTES = 1 << 20
_cache: list[Tensor] = []  # flat uint8 buffers, the most recently handed out last
_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _free_check():
    """``buf -> bool``: whether nothing but the cache's own tensor holds ``buf``'s storage,
    or None (no cache) where PyTorch lacks ``torch._C._storage_Use_Count`` or it does not
    count as measured here. Two counts, each against its value for a lone tensor (which
    PyTorch builds differ on): the storage's references (every tensor on it, a view handed
    out or one autograd saved, holds one) and the Python references of its storage object
    (one object per storage: someone holding ``untyped_storage()`` holds that). Each must
    rise for its holder and come back when the holder goes."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    if count is None:
        return None

    def refs(t: Tensor) -> tuple[int, int]:
        st = t.untyped_storage()
        return count(st._cdata), sys.getrefcount(st)

    try:  # the first call may come under no_grad or inference_mode
        with torch.inference_mode(False), torch.enable_grad():
            t = torch.empty(4)
            c0, p0 = base = refs(t)
            view = t[1:]
            with_view = refs(t)
            y = (view * torch.ones(3, requires_grad=True)).sum()  # autograd saves the view
            del view
            with_saved = refs(t)
            del y
            st = t.untyped_storage()
            with_storage = refs(t)
            del st
            ok = (with_view[0] == c0 + 1 and with_saved[0] == c0 + 1
                  and with_storage == (c0, p0 + 1) and refs(t) == base)
    except (RuntimeError, TypeError, AttributeError):
        return None
    return (lambda buf: refs(buf) == base) if ok else None


def release() -> int:
    """Let go of every cached buffer that nothing else holds; returns the bytes let go."""
    free_fn = _free_check()
    with _lock:
        free = [free_fn is None or free_fn(b) for b in _cache]
        gone = sum(b.numel() for b, f in zip(_cache, free) if f)
        _cache[:] = [b for b, f in zip(_cache, free) if not f]
    return gone


def cached_bytes() -> int:
    """Bytes the cache holds (the buffers in use included)."""
    with _lock:
        return sum(b.numel() for b in _cache)


def _cached(nbytes: int) -> Tensor | None:
    """A flat uint8 buffer of ``nbytes`` from the cache (a free one, or a new one kept in
    it), or None where the cache is off or full of buffers in use."""
    free_fn = _free_check()
    if free_fn is None or CACHE_BYTES <= 0 or nbytes < CACHE_MIN_BYTES:
        return None
    with _lock:
        for i, buf in enumerate(_cache):
            if buf.numel() == nbytes and free_fn(buf):
                _cache.append(_cache.pop(i))
                return buf.view(nbytes)  # a view: the storage is held before the lock ends
        free = [free_fn(b) for b in _cache]
        total = sum(b.numel() for b in _cache)
        held = sum(b.numel() for b, f in zip(_cache, free) if not f)
        if held + nbytes > CACHE_BYTES:
            return None                             # would not fit: torch.empty, not kept
        keep = []
        for b, f in zip(_cache, free):              # free ones go, least recently used first
            if f and total + nbytes > CACHE_BYTES:
                total -= b.numel()
            else:
                keep.append(b)
        _cache[:] = keep
        with torch.inference_mode(False):  # a normal tensor, whatever mode asks first
            buf = _hinted(torch.empty(nbytes, dtype=torch.uint8))
        _cache.append(buf)
        return buf.view(nbytes)


def empty_large(*shape: int, like: Tensor) -> Tensor:
    """``torch.empty(shape)`` with ``like``'s dtype and device (values undefined, or NaN as
    ``torch.empty`` gives them under deterministic algorithms); on the CPU from
    :data:`CACHE_MIN_BYTES` up, a buffer of the cache (module docstring), and with
    :data:`HINT` on, the huge-page hint on a new buffer's aligned interior."""
    if like.device.type == "cpu":
        nbytes = math.prod(shape) * like.element_size()
        buf = _cached(nbytes)
        if buf is not None:
            out = buf.view(like.dtype).view(shape)
            if _fills_uninitialized() and out.is_floating_point():
                out.fill_(float("nan"))  # as torch.empty does in this mode
            return out
    return _hinted(torch.empty(shape, dtype=like.dtype, device=like.device))


def _fills_uninitialized() -> bool:
    """Whether ``torch.empty`` fills its memory (deterministic algorithms on, with
    ``torch.utils.deterministic.fill_uninitialized_memory``): a cached buffer is then filled
    the same way, NaN for floating dtypes."""
    if not torch.are_deterministic_algorithms_enabled():
        return False
    det = getattr(torch.utils, "deterministic", None)
    return bool(getattr(det, "fill_uninitialized_memory", False))


def _hinted(t: Tensor) -> Tensor:
    """``t`` (new, nothing written yet), with the huge-page hint on its aligned interior
    where :data:`HINT` is on and it is a CPU tensor of at least :data:`MIN_BYTES`."""
    nbytes = t.numel() * t.element_size()
    if HINT and nbytes >= MIN_BYTES and t.device.type == "cpu":
        fn = _madvise()
        if fn is not None:
            start = (t.data_ptr() + _HUGE - 1) & ~(_HUGE - 1)
            end = (t.data_ptr() + nbytes) & ~(_HUGE - 1)
            if end > start:
                fn(start, end - start, _MADV_HUGEPAGE)  # a hint: a refusal changes nothing
    return t
