"""The ``torch`` backend: PyTorch's own fused kernels (oneDNN / native on CPU, cuDNN on GPU).

It runs a whole stack (all layers and directions) in one call of the functional path
behind ``torch.nn.RNN/LSTM/GRU``, so it only takes the four standard cells. Padded input
with ``lengths`` goes through PyTorch's packed-sequence kernels.
"""

from __future__ import annotations

import warnings

import torch
from torch import _VF, Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

_FUNCS = {
    "LSTM": _VF.lstm,
    "GRU": _VF.gru,
    "RNN_TANH": _VF.rnn_tanh,
    "RNN_RELU": _VF.rnn_relu,
}


def stack_native(
    mode: str,
    x: Tensor,
    hx: tuple[Tensor, ...],
    flat_weights: list[Tensor],
    *,
    has_biases: bool,
    has_proj: bool = False,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
    lengths: Tensor | None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run a standard stack with PyTorch's kernels.

    Args:
        mode: ``"LSTM" | "GRU" | "RNN_TANH" | "RNN_RELU"``.
        x: ``[T, B, I]`` time-major input.
        hx: initial states, each ``[L*D, B, H*]`` (LSTM: ``(h0, c0)``).
        flat_weights: per layer and direction ``w_ih, w_hh, (b_ih, b_hh), (w_hr)``.
        has_biases, has_proj: whether the flat weights hold biases / projections ``w_hr``.
        lengths: ``[B]`` int64 on the CPU, or ``None`` for full-length rows.

    Returns:
        ``out: [T, B, D*Hout]`` (zero past each row's length) and the final states.
    """
    fn = _FUNCS[mode]
    if has_proj:
        # LSTM with a projection: PyTorch warns that oneDNN cannot run it and falls back to
        # its own kernel, which is correct; the warning is not actionable for recur's users.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
            return _run(fn, mode, x, hx, flat_weights, has_biases, num_layers, bidirectional,
                        dropout, training, lengths)
    return _run(fn, mode, x, hx, flat_weights, has_biases, num_layers, bidirectional, dropout,
                training, lengths)


def _run(fn, mode, x, hx, flat_weights, has_biases, num_layers, bidirectional, dropout,
         training, lengths):
    T = x.shape[0]
    h = hx if mode == "LSTM" else hx[0]
    if lengths is None or bool((lengths == T).all()):
        res = fn(x, h, flat_weights, has_biases, num_layers, dropout, training, bidirectional,
                 False)
        return res[0], tuple(res[1:])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    order, undo = packed.sorted_indices, packed.unsorted_indices
    if mode == "LSTM":
        h = tuple(s.index_select(1, order) for s in h)
    else:
        h = h.index_select(1, order)
    res = fn(packed.data, packed.batch_sizes, h, flat_weights, has_biases, num_layers, dropout,
             training, bidirectional)
    out_packed = torch.nn.utils.rnn.PackedSequence(res[0], packed.batch_sizes, order, undo)
    out, _ = pad_packed_sequence(out_packed, total_length=T)
    return out, tuple(s.index_select(1, undo) for s in res[1:])
