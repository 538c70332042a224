"""The engine: ``scan`` runs one declared cell over a sequence; ``run_stack`` runs layers and
directions on one backend (reference loop, PyTorch's fused kernels, or fused Triton kernels)."""

from . import custom_op  # noqa: F401  (registers torch.ops.recur.*)
from .dispatch import BACKENDS, ENV_VAR, resolve_stack_backend
from .reference import scan_reference
from .scan import scan
from .stack import LayerWeights, run_stack

__all__ = ["scan", "scan_reference", "run_stack", "LayerWeights", "BACKENDS", "ENV_VAR",
           "resolve_stack_backend"]
