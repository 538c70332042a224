"""``recur.explain(model, *inputs)``: which backend runs each recur layer of a model, and why
the others do not — what to read when a model is slower than expected.

It runs ``model(*inputs, **kwargs)`` once under ``torch.no_grad()`` with a forward pre-hook
on every recur layer, and asks each layer's planner (:mod:`recur.ops.plan`) about the input
that layer actually receives.
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import LayerSpec, explain_stack
from ._layout import to_time_major
from .rnn import RNNBase


def explain(model: nn.Module, *inputs, **kwargs) -> str:
    """A report, one block per recur layer of ``model`` (a layer itself works too): per layer
    and direction, the backend that runs and, for every other backend, why not.

    Args:
        model: any ``nn.Module`` holding recur layers (``recur.LSTM``, variants, ...).
        inputs, kwargs: what ``model`` is called with (one forward runs, without grad).

    Returns:
        The report as text (also what ``print(recur.explain(...))`` shows).
    """
    names = {m: n or type(model).__name__ for n, m in model.named_modules()}
    blocks: list[str] = []

    def hook(module: RNNBase, args, kw):
        x, _, _ = to_time_major(type(module).__name__, args[0], module.batch_first,
                                kw.get("lengths"))
        plan, layers = module._planned(x)
        specs = (module._specs(x) if layers is None
                 else [LayerSpec.of(module.cell, lw) for lw in layers])
        lines = explain_stack(module.cell, specs, x, module.backend,
                              bidirectional=module.bidirectional)
        blocks.append(f"{names[module]} ({type(module).__name__}, cell {module.cell.name!r}, "
                      f"{x.device}, {x.dtype}, T={x.shape[0]}, B={x.shape[1]}):\n"
                      + "\n".join(lines))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True)
               for m in model.modules() if isinstance(m, RNNBase)]
    if not handles:
        raise ValueError(f"{type(model).__name__} holds no recur recurrent layer "
                         "(recur.RNN / LSTM / GRU / variants / CustomRNN)")
    try:
        with torch.no_grad():
            model(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return "\n".join(blocks)
