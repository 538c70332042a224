"""Backend names and the request: ``backend`` is one of ``"auto" | "reference" | "torch" |
"cpu" | "triton"``; an explicit choice wins, and for ``"auto"`` the environment variable
``RECUR_BACKEND`` (same values) overrides. The choice itself is made in one place,
:mod:`recur.ops.plan`.
"""

from __future__ import annotations

import os

import torch
from torch.autograd import forward_ad

BACKENDS = ("auto", "reference", "torch", "cpu", "triton")
ENV_VAR = "RECUR_BACKEND"


def check_backend_name(backend: str) -> str:
    """Return ``backend`` if it is a known name, else raise ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def requested_backend(backend: str) -> str:
    """Apply the ``RECUR_BACKEND`` override to an ``"auto"`` request (read on every call, so
    a change of the environment takes effect at the next forward)."""
    if backend == "auto":
        env = os.environ.get(ENV_VAR)
        if env and env.strip():
            env = env.strip()
            if env not in BACKENDS:
                raise ValueError(f"{ENV_VAR} must be one of {BACKENDS}, got {env!r}")
            return env
        return backend
    return check_backend_name(backend)


def opaque_kernels_refused(x: torch.Tensor) -> str | None:
    """Why recur's own compiled kernels (the ``cpu`` backend's C loop, one autograd function
    without ``jvp`` or ``setup_context``) must not run on ``x`` now, or None: forward-mode AD
    (``torch.autograd.forward_ad.dual_level``), a ``torch.func`` transform (``vmap``,
    ``grad``, ``jvp``, ...), a dispatch mode (FakeTensor, FlopCounterMode, ...: the C kernel is
    invisible to them), ``torch.jit.trace``, or ``x`` a tensor subclass. The plan then takes
    a backend built from PyTorch operators."""
    if getattr(forward_ad, "_current_level", -1) >= 0:
        return "forward-mode AD is active (its autograd function has no jvp)"
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return "a torch.func transform is active (its autograd function has no vmap rule)"
    if torch._C._len_torch_dispatch_stack() > 0:
        return "a dispatch mode is active (FakeTensor, FlopCounterMode, ...: its C kernel is " \
               "invisible to it)"
    if torch.jit.is_tracing():
        return "torch.jit.trace is running (its C kernel cannot be traced)"
    if type(x) is not torch.Tensor and not isinstance(x, torch.nn.Parameter):
        return f"the input is a {type(x).__name__}, a tensor subclass its C kernel cannot see"
    return None
