"""One backend plan per forward call: the single place that decides what runs, and says why.

A stack of layers (``run_stack``, the modules) or a single scan (``scan``) is planned once,
from the cell, each layer's extras (:class:`recur.ops.layer.LayerSpec`), the input (device,
dtype, batch) and the request (``backend=``, then ``RECUR_BACKEND`` for ``"auto"``):

    plan = plan_stack(cell, specs, x, backend)      # -> Plan: executor + why not the others
    out, states = run_plan(plan, cell, x, hx, layers, ...)

Each backend answers one question, ``accepts(spec, x, unit) -> None | reason``, for a whole
stack (``unit="stack"``), one ``scan`` (``"scan"``) or one step of a cell module
(``"step"``: ``recur.LSTMCell`` & co., planned by :func:`plan_step`):

- ``torch``: PyTorch's kernels (``_VF.lstm`` & co.; oneDNN / native on CPU, cuDNN on GPU):
  torch.nn's four cells with nothing added, whole stacks or one step (``_VF.lstm_cell``);
- ``cpu``: recur's C kernels (:func:`recur.ops.cpu.accepts`), whole sequences;
- ``triton``: the fused kernels (:func:`recur.ops.triton.accepts`: a Triton pointwise, the
  dtype, CUDA or the interpreter, the extras they fuse, a launch plan that fits), whole
  sequences;
- ``reference``: the PyTorch loop over time (or the cell's update, for one step): anything.

``auto`` takes the first backend that accepts every layer, in the order of
:func:`auto_order` (CPU: torch, cpu, reference, with cpu first for a GRU or a tanh RNN
and for a training call with ragged ``lengths``; CUDA: torch, triton, reference, with triton
first where :func:`recur.ops.triton.preferred` says it was measured faster). An explicit
backend runs exactly that backend or raises ``ValueError`` with its reason; nothing further
down changes the decision. Executors: PyTorch's stack kernel, the per-layer loop on the
reference or Triton scan (:mod:`recur.ops.executors`), the compile/export custom operator
(:mod:`recur.ops.custom_op`, wrapping an eager executor) and, while ``torch.onnx.export``
runs, ONNX operators (:mod:`recur.ops.onnx`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..cells import Cell
from .dispatch import requested_backend
from .layer import LayerSpec, LayerWeights
from .onnx import exporting_onnx

NAMES = {"torch": "PyTorch's fused kernels", "triton": "recur's fused Triton kernels",
         "cpu": "recur's CPU kernels (C generated from the cell's update, one step per call)",
         "reference": "the reference loop (PyTorch ops, one step at a time)"}


#: torch.nn modes whose plain layers ``auto`` runs on recur's ``cpu`` backend before
#: PyTorch's kernels on the CPU: measured faster there for the GRU and the tanh RNN, in inference
#: and training (``benchmarks/cpu.py``, docs/benchmarks-cpu.md); PyTorch's LSTM (oneDNN) was
#: not beaten, so an LSTM keeps PyTorch's kernels unless a training call is ragged. Not the
#: relu RNN: the kernel is built with -ffast-math, under which relu maps NaN to 0 where
#: torch.nn passes it on (tanh and the GRU pass NaN on as torch.nn does; tested)
CPU_KERNEL_FIRST = ("GRU", "RNN_TANH")


def auto_order(cell: Cell, x: Tensor, *, ragged_grad: bool = False,
               specs: list[LayerSpec] | tuple = ()) -> tuple[str, ...]:
    """The backends ``auto`` tries, fastest first, on ``x``'s device for the layers ``specs``
    (on CUDA, :func:`recur.ops.triton.preferred` reads them). ``ragged_grad``: the
    call has ``lengths`` that are not all ``T`` and needs gradients; on the CPU, PyTorch then
    packs the batch and runs its packed-sequence kernels, which recur's ``cpu`` backend
    (lengths inside its loop) beats in training (``benchmarks/cpu.py --lengths``). On the CPU
    a plain GRU or tanh RNN (:data:`CPU_KERNEL_FIRST`) also tries ``cpu`` first."""
    if not x.is_cuda:
        if ragged_grad or cell.native_mode in CPU_KERNEL_FIRST:
            return ("cpu", "torch", "reference")
        return ("torch", "cpu", "reference")
    try:
        from .triton import preferred
    except ImportError:
        return ("torch", "reference")
    if preferred(cell, x, specs):
        return ("triton", "torch", "reference")
    return ("torch", "triton", "reference")


#: what ``accepts`` is asked about: a module's whole stack, one ``recur.scan``, or one step of
#: a cell module
UNITS = ("stack", "scan", "step")
#: the backends that run one step of a cell module, in ``auto``'s order
STEP_ORDER = ("torch", "reference")
_WHOLE_SEQUENCES = {
    "cpu": "recur's CPU kernels run whole sequences (one autograd function per sequence: "
           "recur.RNN / LSTM / GRU, the variants, recur.scan)",
    "triton": "recur's fused Triton kernels run whole sequences (recur.RNN / LSTM / GRU, the "
              "variants, recur.scan)"}


def accepts(backend: str, spec: LayerSpec, x: Tensor | None, *, unit: str = "stack"
            ) -> str | None:
    """None when ``backend`` runs the layer ``spec`` on ``x`` (``[T, B, *]``) as ``unit``
    (``"stack"``: a module's layers; ``"scan"``: one :func:`recur.ops.scan`; ``"step"``: one
    step of a cell module, for which ``x`` is not looked at and may be None), else why not."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    cell = spec.cell
    if backend == "reference":
        return None
    if unit == "step" and backend in _WHOLE_SEQUENCES:
        return f"{_WHOLE_SEQUENCES[backend]}, not one step of a cell module"
    if backend == "torch":
        if unit == "scan":
            return "PyTorch's kernels run whole stacks (recur.RNN/LSTM/GRU), not a single scan"
        if cell.native_mode is None:
            return f"cell {cell.name!r} is not one of torch.nn's four (no PyTorch kernel)"
        if spec.extras:
            return (f"the layer adds {', '.join(sorted(spec.extras))}, which PyTorch's kernels "
                    "cannot run")
        return None
    if backend == "cpu":
        from .cpu import accepts as cpu_accepts

        return cpu_accepts(spec, x)
    if backend == "triton":
        try:
            from .triton import accepts as triton_accepts
        except ImportError:
            return "the triton package is not installed (pip install 'recur[triton]')"
        return triton_accepts(spec, x)
    raise ValueError(f"unknown backend {backend!r}")


def _stack_reason(backend: str, specs: list[LayerSpec], x: Tensor | None, unit: str
                  ) -> str | None:
    for k, spec in enumerate(specs):
        reason = accepts(backend, spec, x, unit=unit)
        if reason is not None:
            return reason if len(specs) == 1 or backend == "torch" else f"layer {k}: {reason}"
    return None


@dataclass(frozen=True)
class Plan:
    """What runs a forward call. ``executor``: ``"onnx"`` (while exporting), ``"custom_op"``
    (under torch.compile / torch.export; wraps ``backend``'s eager executor), or the eager
    ``backend`` itself. ``rejected``: each backend tried before it and why not."""

    executor: str
    backend: str
    request: str
    rejected: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: what runs and why not the others."""
        what = {"onnx": "ONNX operators (torch.onnx.export)",
                "custom_op": f"the recur::rnn_layer operator (torch.compile / export) around "
                             f"{NAMES[self.backend]}"}.get(self.executor, NAMES[self.backend])
        how = "requested" if self.request != "auto" else "auto"
        line = f"{self.backend}: {what} [{how}]"
        for name, reason in self.rejected.items():
            line += f"; not {name}: {reason}"
        return line


def _choose(request: str, cell: Cell, specs: list[LayerSpec], x: Tensor | None,
            unit: str, ragged_grad: bool = False) -> tuple[str, dict[str, str]]:
    if request == "auto" and unit == "step":
        order = STEP_ORDER
    elif request == "auto":
        order = auto_order(cell, x, ragged_grad=ragged_grad, specs=specs)
        if unit == "scan":
            order = tuple(b for b in order if b != "torch")
    else:
        order = (request,)
    rejected: dict[str, str] = {}
    for name in order:
        reason = _stack_reason(name, specs, x, unit)
        if reason is None:
            return name, rejected
        rejected[name] = reason
    raise ValueError(f"backend={request!r} cannot run cell {cell.name!r} here: "
                     f"{rejected[request]}; use backend='auto' or 'reference'")


def plan_stack(cell: Cell, specs: list[LayerSpec], x: Tensor, backend: str = "auto", *,
               ragged_grad: bool = False) -> Plan:
    """The plan of a stack forward on ``x: [T, B, I]`` (one spec per layer and direction);
    ``ragged_grad``: see :func:`auto_order` (:func:`ragged_grad` computes it)."""
    request = requested_backend(backend)
    if exporting_onnx():
        return Plan("onnx", "reference", request)
    chosen, rejected = _choose(request, cell, specs, x, unit="stack", ragged_grad=ragged_grad)
    if (torch.compiler.is_compiling() and cell.native_mode is not None
            and not any(s.extras for s in specs)):
        return Plan("custom_op", chosen, request, rejected)
    return Plan(chosen, chosen, request, rejected)


def ragged_grad(x: Tensor, lengths: Tensor | None, weights) -> bool:
    """Whether a stack call on ``x: [T, B, I]`` with ``lengths`` has rows shorter than ``T``
    and needs gradients (of ``x`` or of any tensor in ``weights``) on the CPU. Always False
    while torch.compile / export or ONNX export trace the call (the cpu backend's kernel is
    not traced, and reading the lengths there would be a data-dependent branch)."""
    if (lengths is None or x.is_cuda or not torch.is_grad_enabled()
            or torch.compiler.is_compiling() or exporting_onnx()):
        return False
    if not (x.requires_grad or any(w is not None and w.requires_grad for w in weights)):
        return False
    return bool((lengths != x.shape[0]).any())


def plan_scan(spec: LayerSpec, xg: Tensor, backend: str = "auto") -> Plan:
    """The plan of one :func:`recur.ops.scan` on ``xg: [T, B, G*H]``."""
    request = requested_backend(backend)
    chosen, rejected = _choose(request, spec.cell, [spec], xg, unit="scan")
    return Plan(chosen, chosen, request, rejected)


def plan_step(spec: LayerSpec, backend: str = "auto") -> Plan:
    """The plan of one step of a cell module (``recur.RNNCell`` / ``LSTMCell`` / ``GRUCell``,
    ``spec``: its cell and sizes): ``torch`` (PyTorch's cell kernel) or ``reference`` (the
    cell's declared update). An explicit ``backend=`` runs exactly that backend or raises
    ``ValueError`` with :func:`accepts`' reason (``cpu`` and ``triton`` run whole sequences
    only); ``RECUR_BACKEND`` naming a backend that runs no single step leaves the choice to
    ``auto``, so a whole-model override (``RECUR_BACKEND=triton``) still runs a model's cell
    modules."""
    request = requested_backend(backend)
    if (backend == "auto" and request != "auto"
            and accepts(request, spec, None, unit="step") is not None):
        request = "auto"
    chosen, rejected = _choose(request, spec.cell, [spec], None, unit="step")
    return Plan(chosen, chosen, request, rejected)


def explain_stack(cell: Cell, specs: list[LayerSpec], x: Tensor, backend: str = "auto", *,
                  bidirectional: bool = False) -> list[str]:
    """Per layer and direction: the backend that runs and, for every other backend, why it
    does not (or that it would run but comes later in ``auto``'s order)."""
    plan = plan_stack(cell, specs, x, backend)
    D = 2 if bidirectional else 1
    lines = [f"plan: {plan.describe()}"]
    for k, spec in enumerate(specs):
        where = f"layer {k // D}" + (" reverse" if D == 2 and k % 2 else "")
        others = []
        for name in ("torch", "cpu", "triton", "reference"):
            if name == plan.backend:
                continue
            reason = accepts(name, spec, x)
            others.append(f"{name}: {reason}" if reason is not None else
                          f"{name}: would run, "
                          f"{_later(plan, name, auto_order(cell, x, specs=specs))}")
        lines.append(f"  {where}: {plan.backend}; " + "; ".join(others))
    return lines


def _later(plan: Plan, name: str, order: tuple[str, ...]) -> str:
    if plan.request != "auto":
        return f"but backend={plan.request!r} was requested"
    if name not in order:  # e.g. the Triton interpreter on a CPU: tests only
        return "but auto does not try it on this device"
    return "but comes after it in auto's order on this device"


def run_plan(plan: Plan, cell: Cell, x: Tensor, hx: tuple[Tensor, ...],
             layers: list[LayerWeights], *, num_layers: int, bidirectional: bool,
             dropout: float = 0.0, training: bool = False, lengths: Tensor | None = None
             ) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run ``plan``; arguments and returns as :func:`recur.ops.run_stack`."""
    kw = {"num_layers": num_layers, "bidirectional": bidirectional, "dropout": dropout,
          "training": training, "lengths": lengths}
    if plan.executor == "onnx":
        from .onnx import run_stack_onnx

        return run_stack_onnx(cell, x, hx, layers, **kw)
    if plan.executor == "custom_op":
        from .custom_op import run_stack_op

        return run_stack_op(cell.native_mode, x, hx, layers, backend=plan.backend, **kw)
    from .executors import run_eager

    return run_eager(plan.backend, cell, x, hx, layers, **kw)
