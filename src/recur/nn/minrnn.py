"""``MinGRU`` and ``MinLSTM`` (Feng et al. 2024, "Were RNNs All We Needed?").

Their gates depend only on ``x_t``, so the recurrence is linear in h and every step runs in
parallel (:func:`recur.ops.parallel_scan.log_linear_scan`, log depth in T)::

    minGRU:   z = s(x W_z^T + b_z);  h~ = g(x W_h^T + b_h)
              h_t = (1 - z_t) h_{t-1} + z_t h~_t
    minLSTM:  f = s(x W_f^T + b_f);  i = s(x W_i^T + b_i);  h~ = g(x W_h^T + b_h)
              f' = f / (f + i);  i' = i / (f + i);  h_t = f'_t h_{t-1} + i'_t h~_t

with ``g(v) = v + 1/2`` for ``v >= 0`` and ``sigmoid(v)`` otherwise (positive, so the scan
runs on logarithms: ``log(1 - z) = -softplus(k)``, ``log z = -softplus(-k)``). Stacks of
layers, inter-layer dropout, ``batch_first``, unbatched, packed input and ``lengths=`` as in
``recur.GRU`` (unidirectional only: the parallel form is causal, so padded steps never
affect valid ones; outputs past a row's length are zero and ``h_n`` is its state at its
last valid step). Parameters per layer k: ``weight_l{k}: [G*H, I_k]`` (G = 2: z, h~;
G = 3: f, i, h~) and ``bias_l{k}: [G*H]``, init U(-1/sqrt(H), 1/sqrt(H)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..ops.parallel_scan import METHODS, linear_scan_sequential, log_linear_scan
from ._args import check_dropout, check_int
from ._layout import from_time_major, to_time_major


def g(v: Tensor) -> Tensor:
    """``v + 1/2`` for ``v >= 0``, ``sigmoid(v)`` below: continuous, positive."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_g(v: Tensor) -> Tensor:
    """``log g(v)``, computed stably."""
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


#: how a MinGRU / MinLSTM runs its linear recurrence: the parallel scans of
#: :mod:`recur.ops.parallel_scan` (``"doubling"``, ``"heinsen"``) or the loop (``"sequential"``)
MIN_METHODS = (*METHODS, "sequential")


class _MinRNN(nn.Module):
    num_gates: int

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 device=None, dtype=None, *, method: str = "doubling") -> None:
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
            check_int(name, v)
        check_dropout(dropout, upper_open=True)
        if method not in MIN_METHODS:
            raise ValueError(f"method must be one of {MIN_METHODS}, got {method!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.method = method
        factory = {"device": device, "dtype": dtype}
        GH = self.num_gates * hidden_size
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            setattr(self, f"weight_l{k}", nn.Parameter(torch.empty(GH, n_in, **factory)))
            if bias:
                setattr(self, f"bias_l{k}", nn.Parameter(torch.empty(GH, **factory)))
        self.reset_parameters()

    def __setstate__(self, state: dict) -> None:
        # a module pickled before method= took "sequential" holds mode= beside method= (the
        # mode= argument itself is gone; such a module still loads, with the matching method)
        if state.pop("mode", None) == "sequential":
            state["method"] = "sequential"
        super().__setstate__(state)

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every parameter."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            nn.init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"method={self.method!r}")

    def _coefficients(self, k: Tensor, log: bool) -> tuple[Tensor, Tensor]:
        """``(a, b)`` (or their logs) of ``h_t = a_t h_{t-1} + b_t`` from ``k: [T, B, G*H]``."""
        raise NotImplementedError

    def _layer(self, x: Tensor, h0: Tensor, k: int) -> Tensor:
        proj = F.linear(x, getattr(self, f"weight_l{k}"), getattr(self, f"bias_l{k}", None))
        if self.method == "sequential":
            a, b = self._coefficients(proj, log=False)
            return linear_scan_sequential(a, b, h0)
        log_a, log_b = self._coefficients(proj, log=True)
        return log_linear_scan(log_a, log_b, h0, self.method)

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None, *,
                lengths=None) -> tuple[Tensor | PackedSequence, Tensor]:
        """Run the layers.

        Args:
            input: ``[T, B, I]`` (``[B, T, I]`` if batch_first), unbatched ``[T, I]``, or a
                PackedSequence.
            hx: ``[L, B, H]`` (unbatched ``[L, H]``) initial states; zeros if None.
            lengths: optional ``[B]`` integers in ``[1, T]`` for padded input.

        Returns:
            ``output: [T, B, H]`` in the input's layout and ``h_n: [L, B, H]``.
        """
        x, lens, layout = to_time_major(type(self).__name__, input, self.batch_first, lengths)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")
        T, B = x.shape[0], x.shape[1]
        L, H = self.num_layers, self.hidden_size
        if hx is None:
            hx = x.new_zeros(L, B, H)
        else:
            want = (L, B, H) if layout.batched else (L, H)  # in the caller's layout
            if tuple(hx.shape) != want:
                kind = "batched 3-D" if layout.batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, expected hidden size {want}, got "
                                   f"{list(hx.shape)}")
            if hx.dtype != x.dtype or hx.device != x.device:
                raise ValueError(f"hx must match the input's dtype and device "
                                 f"({x.dtype}, {x.device}), got ({hx.dtype}, {hx.device})")
            if not layout.batched:
                hx = hx.unsqueeze(1)
        finals = []
        inp = x
        for k in range(L):
            out = self._layer(inp, hx[k], k)  # (T, B, H)
            if lens is not None:
                rows = torch.arange(B, device=x.device)
                finals.append(out[(lens - 1).to(x.device), rows])  # (B, H)
                valid = torch.arange(T).unsqueeze(1) < lens.unsqueeze(0)  # (T, B)
                out = out * valid.unsqueeze(-1).to(out.device, out.dtype)
            else:
                finals.append(out[-1])
            inp = out
            if self.dropout > 0 and self.training and k < L - 1:
                inp = F.dropout(inp, self.dropout, training=True)
        h_n = torch.stack(finals)  # (L, B, H)
        if not layout.batched:
            h_n = h_n.squeeze(1)
        return from_time_major(inp, layout), h_n


class MinGRU(_MinRNN):
    """minGRU: ``h_t = (1 - z_t) h_{t-1} + z_t g(h~_t)`` with ``[z, h~] = x W^T + b``.

    ``MinGRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, device=None, dtype=None, *, method='doubling')``: ``method`` is the parallel
    scan (``'doubling'`` or ``'heinsen'``, see :mod:`recur.ops.parallel_scan`) or
    ``'sequential'``, the same math as a loop (the reference). (A module pickled with the
    old argument ``mode='parallel' | 'sequential'`` still loads, with the matching
    ``method``.) Forward returns ``output [T, B, H], h_n [L, B, H]``. Parameters ``weight_l{k}: [2H, I_k]``,
    ``bias_l{k}``.
    """

    num_gates = 2

    def _coefficients(self, k: Tensor, log: bool) -> tuple[Tensor, Tensor]:
        kz, kh = k.chunk(2, dim=-1)  # (T, B, H) each
        if log:
            return -F.softplus(kz), -F.softplus(-kz) + log_g(kh)
        z = torch.sigmoid(kz)
        return 1 - z, z * g(kh)


class MinLSTM(_MinRNN):
    """minLSTM: ``h_t = f'_t h_{t-1} + i'_t g(h~_t)``, ``f' = f / (f + i)``, ``i' = i / (f +
    i)``, ``f, i = sigmoid(.)`` and ``[f, i, h~] = x W^T + b``. Same arguments as
    :class:`MinGRU`; parameters ``weight_l{k}: [3H, I_k]``, ``bias_l{k}: [3H]``."""

    num_gates = 3

    def _coefficients(self, k: Tensor, log: bool) -> tuple[Tensor, Tensor]:
        kf, ki, kh = k.chunk(3, dim=-1)  # (T, B, H) each
        if log:
            diff = F.softplus(-kf) - F.softplus(-ki)
            return -F.softplus(diff), -F.softplus(-diff) + log_g(kh)
        f, i = torch.sigmoid(kf), torch.sigmoid(ki)
        return f / (f + i), i / (f + i) * g(kh)
