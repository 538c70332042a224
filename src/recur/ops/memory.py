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
"""

from __future__ import annotations

import ctypes
import functools
import sys

import torch
from torch import Tensor

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
    :data:`MIN_BYTES` up, with the huge-page hint (module docstring) on its aligned interior."""
    t = torch.empty(shape, dtype=like.dtype, device=like.device)
    nbytes = t.numel() * t.element_size()
    if nbytes >= MIN_BYTES and t.device.type == "cpu":
        fn = _madvise()
        if fn is not None:
            start = (t.data_ptr() + _HUGE - 1) & ~(_HUGE - 1)
            end = (t.data_ptr() + nbytes) & ~(_HUGE - 1)
            if end > start:
                fn(start, end - start, _MADV_HUGEPAGE)  # a hint: a refusal changes nothing
    return t
