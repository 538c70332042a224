"""One recurrent layer as a PyTorch custom operator, for ``torch.compile`` and ``torch.export``.

Dynamo cannot trace PyTorch's fused RNN kernels (``_VF.lstm`` & co. graph-break, and
``torch.export`` fails on them), and tracing recur's reference loop would unroll T steps
into the graph and specialise on T. So under compilation / export :func:`recur.ops.run_stack`
runs each layer (both directions) as one opaque operator::

    torch.ops.recur.rnn_layer(x, hx, weights, lengths, mode, bidirectional, has_bias,
                              has_proj, backend) -> [out, *final_states]

with a fake (shape-only) implementation, so Dynamo and ``torch.export`` see one node per
layer with symbolic T and B, and an autograd formula: ``recur::rnn_layer_backward``, itself
an opaque operator, recomputes the layer's forward with autograd on and returns every input's
gradient. Inter-layer dropout stays outside the operator, as ordinary traced ``F.dropout``,
so the recomputation is deterministic. The real implementation is the eager executor
(:func:`recur.ops.executors.run_eager`) of the backend the planner chose before tracing
(PyTorch's kernels on a CPU); the operator never plans again.

Only the standard cells (``cell.native_mode`` set, no variant extras) go through the
operator: the operator names its cell by that mode string. Double backward is not supported
through it (the eager path supports it).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import cells
from .executors import run_eager
from .layer import LayerWeights

_AUTOGRAD_KEYS = (torch._C.DispatchKey.AutogradFunctionality, torch._C.DispatchKey.AutogradOther,
                  torch._C.DispatchKey.AutogradNestedTensor)
_SIG = ("Tensor x, Tensor[] hx, Tensor[] weights, Tensor? lengths, str mode, "
        "bool bidirectional, bool has_bias, bool has_proj, str backend")


def _layers(weights: list[Tensor], D: int, has_bias: bool, has_proj: bool) -> list[LayerWeights]:
    """Split one layer's flat weights (per direction ``w_ih, w_hh, [b_ih, b_hh], [w_hr]``)."""
    per = 2 + 2 * has_bias + has_proj
    out = []
    for d in range(D):
        w = list(weights[d * per:(d + 1) * per])
        w_ih, w_hh = w[0], w[1]
        b_ih, b_hh = (w[2], w[3]) if has_bias else (None, None)
        w_hr = w[-1] if has_proj else None
        out.append(LayerWeights(w_ih, w_hh, b_ih, b_hh, w_hr))
    return out


def _run_layer(x, hx, weights, lengths, mode, bidirectional, has_bias, has_proj, backend):
    D = 2 if bidirectional else 1
    out, finals = run_eager(backend, cells.BY_MODE[mode], x, tuple(hx),
                            _layers(weights, D, has_bias, has_proj), num_layers=1,
                            bidirectional=bidirectional, lengths=lengths)
    return [out, *finals]


@contextlib.contextmanager
def _autograd_on():
    """Turn autograd back on inside an operator's kernel.

    Custom-op kernels run below the Autograd dispatch key (it is excluded in thread-local
    state), so a recomputation inside ``rnn_layer_backward`` would build no graph. Un-exclude
    the Autograd keys for the block and restore the thread-local key sets afterwards.
    """
    with torch._C._PreserveDispatchKeyGuard(), torch.enable_grad():
        for key in _AUTOGRAD_KEYS:
            torch._C._dispatch_tls_set_dispatch_key_excluded(key, False)
        yield


def _fresh(results: list[Tensor], inputs: list[Tensor]) -> list[Tensor]:
    """Clone any result that shares storage with an input (custom ops may not alias)."""
    ptrs = {t.untyped_storage().data_ptr() for t in inputs if t is not None}
    return [r.clone() if r.untyped_storage().data_ptr() in ptrs else r for r in results]


@torch.library.custom_op("recur::rnn_layer", mutates_args=(), schema=f"({_SIG}) -> Tensor[]")
def rnn_layer(x, hx, weights, lengths, mode, bidirectional, has_bias, has_proj, backend):
    """One layer of a standard cell, both directions if ``bidirectional``.

    Args:
        x: ``[T, B, I]`` time-major input.
        hx: the layer's initial states, each ``[D, B, H*]`` (LSTM: ``h0, c0``).
        weights: per direction ``w_ih, w_hh, [b_ih, b_hh], [w_hr]`` (torch.nn's order).
        lengths: ``[B]`` int64 on the CPU, or None.
        mode: ``"LSTM" | "GRU" | "RNN_TANH" | "RNN_RELU"``.
        backend: the eager backend the planner chose (``"torch" | "reference" | "triton"``).

    Returns:
        ``[out, *finals]``: ``out: [T, B, D*Hout]``, finals shaped like ``hx``.
    """
    with torch.no_grad():
        res = _run_layer(x, hx, weights, lengths, mode, bidirectional, has_bias, has_proj,
                         backend)
    return _fresh(res, [x, *hx, *weights])


@rnn_layer.register_fake
def _(x, hx, weights, lengths, mode, bidirectional, has_bias, has_proj, backend):
    T, B = x.shape[0], x.shape[1]
    D = 2 if bidirectional else 1
    h_out = hx[0].shape[-1]
    return [x.new_empty(T, B, D * h_out)] + [torch.empty_like(h) for h in hx]


@torch.library.custom_op("recur::rnn_layer_backward", mutates_args=(),
                         schema=f"(Tensor[] grads, {_SIG}) -> Tensor[]")
def rnn_layer_backward(grads, x, hx, weights, lengths, mode, bidirectional, has_bias,
                       has_proj, backend):
    """Gradients of ``rnn_layer`` by recomputation: ``[d x, *d hx, *d weights]``, given the
    gradients ``grads`` of ``[out, *finals]``."""
    inputs = [t.detach().requires_grad_(True) for t in (x, *hx, *weights)]
    n_hx = len(hx)
    with _autograd_on():
        outs = _run_layer(inputs[0], inputs[1:1 + n_hx], inputs[1 + n_hx:], lengths, mode,
                          bidirectional, has_bias, has_proj, backend)
        got = torch.autograd.grad(outs, inputs, grads, allow_unused=True)
    res = [torch.zeros_like(t) if g is None else g for g, t in zip(got, inputs)]
    return _fresh(res, [*grads, x, *hx, *weights])


@rnn_layer_backward.register_fake
def _(grads, x, hx, weights, lengths, mode, bidirectional, has_bias, has_proj, backend):
    return [torch.empty_like(t) for t in (x, *hx, *weights)]


def _setup_context(ctx, inputs, output):
    x, hx, weights, lengths, mode, bidirectional, has_bias, has_proj, backend = inputs
    extra = [] if lengths is None else [lengths]
    ctx.save_for_backward(x, *hx, *weights, *output, *extra)
    ctx.n = (len(hx), len(weights), len(output))
    ctx.args = (mode, bidirectional, has_bias, has_proj, backend)


def _backward(ctx, grads):
    n_hx, n_w, n_out = ctx.n
    saved = ctx.saved_tensors
    x, hx, weights = saved[0], saved[1:1 + n_hx], saved[1 + n_hx:1 + n_hx + n_w]
    outputs = saved[1 + n_hx + n_w:1 + n_hx + n_w + n_out]
    lengths = saved[-1] if len(saved) > 1 + n_hx + n_w + n_out else None
    grads = [torch.zeros_like(o) if g is None else g for g, o in zip(grads, outputs)]
    res = torch.ops.recur.rnn_layer_backward(grads, x, list(hx), list(weights), lengths,
                                             *ctx.args)
    return (res[0], list(res[1:1 + n_hx]), list(res[1 + n_hx:]), None, None, None, None,
            None, None)


rnn_layer.register_autograd(_backward, setup_context=_setup_context)


def run_stack_op(
    mode: str,
    x: Tensor,
    hx: tuple[Tensor, ...],
    layers: list[LayerWeights],
    *,
    num_layers: int,
    bidirectional: bool,
    dropout: float = 0.0,
    training: bool = False,
    lengths: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """:func:`recur.ops.run_stack` for a standard cell, one ``recur::rnn_layer`` per layer.

    Same arguments and returns as ``run_stack`` (``x: [T, B, I]``, ``hx`` each
    ``[L*D, B, H*]``; returns ``out: [T, B, D*Hout]`` and the final states ``[L*D, B, H*]``).
    """
    D = 2 if bidirectional else 1
    has_bias = layers[0].b_ih is not None
    has_proj = layers[0].w_hr is not None
    finals: list[list[Tensor]] = [[] for _ in hx]
    inp = x
    for layer in range(num_layers):
        k = layer * D
        weights = [w for lw in layers[k:k + D] for w in lw.flat()]
        res = torch.ops.recur.rnn_layer(inp, [s[k:k + D] for s in hx], weights, lengths, mode,
                                        bidirectional, has_bias, has_proj, backend)
        inp = res[0]  # (T, B, D*Hout)
        for j, s in enumerate(res[1:]):
            finals[j].append(s)
        if dropout > 0 and training and layer < num_layers - 1:
            inp = F.dropout(inp, p=dropout, training=True)
    return inp, tuple(torch.cat(f, dim=0) for f in finals)
