"""The engine: ``scan`` runs one declared cell over a sequence; ``run_stack`` runs layers and
directions on one backend (reference loop, PyTorch's fused kernels, or fused Triton kernels)."""

from . import custom_op  # noqa: F401  (registers torch.ops.recur.*)
from .dispatch import BACKENDS, ENV_VAR
from .layer import LayerSpec, LayerWeights
from .plan import Plan, explain_stack, plan_scan, plan_stack
from .reference import scan_reference
from .scan import scan
from .stack import run_stack

__all__ = ["scan", "scan_reference", "run_stack", "LayerWeights", "LayerSpec", "BACKENDS",
           "ENV_VAR", "Plan", "plan_stack", "plan_scan", "explain_stack"]
