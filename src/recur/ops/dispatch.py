"""Backend names and the request: ``backend`` is one of ``"auto" | "reference" | "torch" |
"cpu" | "triton"``; an explicit choice wins, and for ``"auto"`` the environment variable
``RECUR_BACKEND`` (same values) overrides. The choice itself is made in one place,
:mod:`recur.ops.plan`.
"""

from __future__ import annotations

import os

import torch

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


def function_transforms_active() -> bool:
    """Whether forward-mode AD (``torch.autograd.forward_ad.dual_level``) or a ``torch.func``
    transform (``vmap``, ``grad``, ``jvp``, ...) is active: recur's own autograd functions
    (the ``cpu`` backend's) have no ``jvp`` and no ``setup_context``, so the plan then leaves
    them to the backends built from PyTorch operators."""
    from torch.autograd import forward_ad

    return (getattr(forward_ad, "_current_level", -1) >= 0
            or torch._C._functorch.peek_interpreter_stack() is not None)
