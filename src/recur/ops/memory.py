"""Large CPU buffers of the ``cpu`` backend, with a transparent-huge-page hint.

A tensor of tens of MB (the input projection ``[T, B, G*H]``, the per-step states
``[T+1, B, H]`` a sequence keeps for its backward) is fresh memory from the system at every
forward: the kernel maps it page by page on first touch, one fault per 4 KiB. On Linux,
:func:`empty_large` asks for 2 MiB pages on the buffer's aligned interior
(``madvise(MADV_HUGEPAGE)``, before anything is written), which takes most of that cost away
where the system leaves huge pages to the program (``/sys/kernel/mm/transparent_hugepage/
enabled`` set to ``madvise`` or ``always``; with ``never`` the hint does nothing). It is a hint
on memory the tensor owns: values, strides and lifetime are those of ``torch.empty``, and where
the call is unavailable (not Linux, no libc) nothing is asked.

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
import sys

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


def empty_large(*shape: int, like: Tensor) -> Tensor:
    """``torch.empty(shape)`` with ``like``'s dtype and device; on the CPU and from
    :data:`MIN_BYTES` up and with :data:`HINT` on, with the huge-page hint (module docstring)
    on its aligned interior."""
    t = torch.empty(shape, dtype=like.dtype, device=like.device)
    nbytes = t.numel() * t.element_size()
    if HINT and nbytes >= MIN_BYTES and t.device.type == "cpu":
        fn = _madvise()
        if fn is not None:
            start = (t.data_ptr() + _HUGE - 1) & ~(_HUGE - 1)
            end = (t.data_ptr() + nbytes) & ~(_HUGE - 1)
            if end > start:
                fn(start, end - start, _MADV_HUGEPAGE)  # a hint: a refusal changes nothing
    return t
