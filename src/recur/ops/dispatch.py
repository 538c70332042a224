"""The one place where a backend is chosen.

``backend`` is one of ``"auto" | "reference" | "torch" | "triton"``. An explicit choice wins;
with ``"auto"`` the environment variable ``RECUR_BACKEND`` (same values) overrides; then
``auto`` picks PyTorch's fused kernels for the standard cells (the fastest correct backend
on a CPU), the fused Triton kernels where they are available and measured faster, and the
reference loop for everything else.
"""

from __future__ import annotations

import os

from torch import Tensor

from ..cells import Cell

BACKENDS = ("auto", "reference", "torch", "triton")
ENV_VAR = "RECUR_BACKEND"


def check_backend_name(backend: str) -> str:
    """Return ``backend`` if it is a known name, else raise ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def requested_backend(backend: str) -> str:
    """Apply the ``RECUR_BACKEND`` override to an ``"auto"`` request."""
    check_backend_name(backend)
    if backend == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            if env not in BACKENDS:
                raise ValueError(f"{ENV_VAR} must be one of {BACKENDS}, got {env!r}")
            return env
    return backend


def triton_available(cell: Cell, x: Tensor) -> bool:
    """True when the fused Triton backend can run ``cell`` on ``x``'s device."""
    if cell.triton_update is None and not _has_triton_builtin(cell):
        return False
    try:
        from . import triton as _tr  # noqa: F401  (lazy: Triton is an optional extra)
    except ImportError:
        return False
    return _tr.supports(cell, x)


def triton_unavailable_reason(cell: Cell, x: Tensor) -> str:
    """Why ``backend='triton'`` cannot run ``cell`` on ``x`` (for error messages)."""
    if cell.triton_update is None and not _has_triton_builtin(cell):
        return (f"cell {cell.name!r} has no Triton pointwise (declare it with triton_update=; "
                "cells whose update takes parameters run on the reference loop)")
    if cell.num_gates > 4 or cell.num_states > 2:
        return (f"cell {cell.name!r} has {cell.num_gates} gates and {cell.num_states} states; "
                "the fused kernels take at most 4 gates and 2 states")
    return (f"cell {cell.name!r} on device {x.device}, dtype {x.dtype} needs the triton "
            "package, float32/bfloat16/float16, and a CUDA device or TRITON_INTERPRET=1")


def _has_triton_builtin(cell: Cell) -> bool:
    return cell.native_mode is not None


def resolve_stack_backend(backend: str, cell: Cell, x: Tensor, *, native_ok: bool) -> str:
    """Choose the backend for a whole layer stack.

    Args:
        backend: the caller's request (``"auto"`` or a backend name).
        cell: the cell of every layer.
        x: the input ``[T, B, I]`` (its device and dtype matter).
        native_ok: whether PyTorch's kernels can run this configuration (a standard cell
            with nothing torch.nn lacks).
    """
    req = requested_backend(backend)
    if req == "torch":
        if not native_ok:
            raise ValueError(
                f"backend='torch' runs only torch.nn's own cells (RNN, LSTM, GRU) without "
                f"extras; got cell {cell.name!r}: use backend='reference' or 'auto'"
            )
        return "torch"
    if req == "triton":
        if not triton_available(cell, x):
            raise ValueError(f"backend='triton' is not available: "
                             f"{triton_unavailable_reason(cell, x)}")
        return "triton"
    if req == "reference":
        return "reference"
    # auto
    if x.is_cuda and triton_available(cell, x):
        from . import triton as _tr

        if _tr.preferred(cell, x, native_ok=native_ok):
            return "triton"
    if native_ok:
        return "torch"
    return "reference"
