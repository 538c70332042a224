"""``classify``'s models: recurrent classifiers, their ensemble, its probabilities and loss.

- :class:`ConvRecurrentClassifier` (``--arch conv-rnn``, the ``classify`` default): a
  fully-convolutional stem (three conv + batch-norm + ReLU blocks, FCN of Wang et al. 2017; the
  first one strided on long series) feeds a recur recurrent layer; the head reads the conv
  features averaged over time (global average pooling), the recurrent outputs averaged over
  time and the recurrent layer's final states (LSTM-FCN, Karim et al. 2017, with the recurrent
  layer reading the conv features in time order instead of beside them).
- :class:`SequenceClassifier` (``--arch rnn``, the ``vowels`` recipe): an optional 'same'
  convolution, a recurrent layer, pooled (last / mean / both), a linear head.

Both take ``forward(x [B, T, C], lengths [B]) -> logits [B, K]``; padding past a row's length
never changes its logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import model_device
from .models import last_states, make_recurrent

__all__ = ["ConvRecurrentClassifier", "Ensemble", "SequenceClassifier", "ensemble_loss",
           "predict_proba", "valid_mask"]


def valid_mask(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """``[B, steps]`` bool: True where step ``t < lengths[b]``."""
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]


class SequenceClassifier(nn.Module):
    """Recurrent layer(s) + pooling + linear head.

    ``forward(x: [B, T, I], lengths: [B]) -> logits [B, K]``.
    """

    def __init__(self, input_size: int, num_classes: int, *, cell: str, hidden: int,
                 layers: int = 1, bidirectional: bool = False, dropout: float = 0.0,
                 pool: str = "last", head_dropout: float = 0.0, conv: int = 0,
                 backend: str = "auto", zoneout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        if pool not in ("last", "mean", "both"):
            raise ValueError(f"pool must be 'last', 'mean' or 'both', got {pool!r}")
        if conv < 0 or (conv > 0 and conv % 2 == 0):
            raise ValueError(f"conv must be 0 (none) or an odd kernel size, got {conv}")
        self.pool = pool
        self.directions = 2 if bidirectional else 1
        # optional front end: a 'same' 1-D convolution over time (+ ReLU) of width ``hidden``
        self.conv = nn.Conv1d(input_size, hidden, conv, padding=conv // 2) if conv else None
        self.rnn = make_recurrent(cell, hidden if conv else input_size, hidden, layers=layers,
                                  bidirectional=bidirectional, dropout=dropout, backend=backend,
                                  zoneout=zoneout, recurrent_dropout=recurrent_dropout)
        width = self.directions * hidden * (2 if pool == "both" else 1)
        self.drop = nn.Dropout(head_dropout)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if self.conv is not None:
            valid = valid_mask(lengths, x.shape[1], x.device)          # (B, T)
            x = x * valid[:, :, None].to(x.dtype)     # the padding reads as zeros (mean)
            x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T, H)
        out, state = self.rnn(x, lengths=lengths)                   # (B, T, D*H)
        last = last_states(state, self.directions)                  # (B, D*H)
        if self.pool == "last":
            return self.head(self.drop(last))
        mean = out.sum(1) / lengths.to(out.device, out.dtype)[:, None]  # padding is zero
        pooled = mean if self.pool == "mean" else torch.cat([last, mean], -1)
        return self.head(self.drop(pooled))


class ConvRecurrentClassifier(nn.Module):
    """Conv stem (FCN) → recur recurrent layer → [time-averaged conv features, time-averaged
    recurrent outputs, final states] → dropout → linear head.

    Args:
        input_size: C, channels per step.
        num_classes: K.
        cell, hidden, layers, bidirectional, backend: the recurrent layer (as
            :func:`~recur.tasks.models.make_recurrent`).
        channels: width of the three conv blocks.
        stride: the first block's stride (1: none); a series of length T reaches the
            recurrent layer with ``ceil(T / stride)`` steps. Its kernel widens with it
            (``max(7, 2*stride + 1)``) so that no step is skipped.
        rnn_window: the conv features are averaged over windows of this many steps (valid
            steps only) before the recurrent layer, which reads ``ceil(T' / rnn_window)`` steps.
        head_dropout: dropout on the pooled features.
        series_norm: also feed every channel standardised per series (its own mean and std
            over its valid steps) beside the train-standardised values: ``2C`` conv inputs.
            Where series differ in scale by orders of magnitude (counts) the shape survives;
            on series that are already z-normalised it is a copy.

    ``forward(x [B, T, C], lengths [B]) -> logits [B, K]``; after every block the steps past a
    row's (strided) length are set to zero and the pooling reads valid steps only.
    """

    def __init__(self, input_size: int, num_classes: int, *, cell: str = "gru",
                 hidden: int = 64, layers: int = 1, bidirectional: bool = True,
                 channels: int = 64, stride: int = 1, rnn_window: int = 1,
                 head_dropout: float = 0.0, series_norm: bool = False,
                 backend: str = "auto", zoneout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        if stride < 1 or rnn_window < 1:
            raise ValueError(f"stride and rnn_window must be at least 1, got {stride} and "
                             f"{rnn_window}")
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        self.stride, self.window, self.series_norm = stride, rnn_window, series_norm
        inputs = 2 * input_size if series_norm else input_size
        self.directions = 2 if bidirectional else 1
        first = max(7, 2 * stride + 1)
        blocks = []
        for i, (k, s) in enumerate(((first, stride), (5, 1), (3, 1))):
            blocks.append(nn.Sequential(
                nn.Conv1d(inputs if i == 0 else channels, channels, k, stride=s,
                          padding=k // 2, bias=False),
                nn.BatchNorm1d(channels), nn.ReLU()))
        self.blocks = nn.ModuleList(blocks)
        self.rnn = make_recurrent(cell, channels, hidden, layers=layers,
                                  bidirectional=bidirectional, backend=backend, zoneout=zoneout,
                                  recurrent_dropout=recurrent_dropout)
        self.drop = nn.Dropout(head_dropout)
        self.head = nn.Linear(channels + 2 * self.directions * hidden, num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        lengths = lengths.cpu()
        valid = valid_mask(lengths, x.shape[1], x.device)[:, :, None].to(x.dtype)  # (B, T, 1)
        h = x * valid
        if self.series_norm:
            n = lengths.to(x.device, x.dtype)[:, None, None]
            mu = h.sum(1, keepdim=True) / n                             # (B, 1, C)
            sd = (((h - mu) * valid) ** 2).sum(1, keepdim=True).div(n).sqrt()
            z = torch.where(sd > 1e-6, (h - mu) / sd.clamp_min(1e-6), torch.zeros_like(h))
            h = torch.cat([h, z * valid], -1)                           # (B, T, 2C)
        h = h.transpose(1, 2)                                           # (B, C', T)
        for i, block in enumerate(self.blocks):
            h = block(h)                                                # (B, F, T')
            if i == 0 and self.stride > 1:
                lengths = (lengths - 1) // self.stride + 1              # ceil(L / stride)
            h = h * valid_mask(lengths, h.shape[-1], h.device)[:, None, :].to(h.dtype)
        n = lengths.to(h.device, h.dtype)[:, None]                      # (B, 1)
        gap = h.sum(-1) / n                                             # (B, F)
        if self.window > 1:                       # mean over windows of valid steps
            w = self.window
            h = F.pad(h, (0, -h.shape[-1] % w)).unflatten(-1, (-1, w)).sum(-1)  # (B, F, T'')
            counts = (lengths[:, None] - w * torch.arange(h.shape[-1])).clamp(0, w)
            lengths = (lengths - 1) // w + 1
            h = h / counts.clamp(min=1).to(h.device, h.dtype)[:, None, :]
        out, state = self.rnn(h.transpose(1, 2), lengths=lengths)       # (B, T'', D*H)
        mean = out.sum(1) / lengths.to(out.device, out.dtype)[:, None]  # padding is zero
        pooled = torch.cat([gap, mean, last_states(state, self.directions)], -1)
        return self.head(self.drop(pooled))


class Ensemble(nn.Module):
    """``K`` independently initialised members; :func:`predict_proba` averages their
    probabilities.

    ``forward(x [B, T, I], lengths [B])``: every member reads the same batch.
    ``forward(x [K, B, T, I], lengths [K, B])``: member ``k`` reads batch ``k`` (training on
    :class:`MemberDataset` batches). Either way the result is the logits ``[K, B, C]`` (train
    each member with its own loss).
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if lengths.dim() == 1:
            return torch.stack([m(x, lengths) for m in self.members])  # (K, B, C)
        if lengths.shape[0] != len(self.members):
            raise ValueError(f"per-member batches: expected {len(self.members)} members "
                             f"(lengths [K, B]), got lengths of shape {tuple(lengths.shape)}")
        return torch.stack([m(x[k, :, :int(lengths[k].max())], lengths[k])
                            for k, m in enumerate(self.members)])


def predict_proba(model: nn.Module, x: Tensor, lengths: Tensor,
                  batch_size: int = 256) -> Tensor:
    """Mean class probabilities of the ensemble: ``[N, C]`` on the CPU, rows in ``x``'s
    order. Batches of similar lengths (the rows sorted by length), each cut to its longest
    row, so little time goes to padding."""
    device = model_device(model)
    order = torch.argsort(lengths.cpu(), descending=True, stable=True)
    chunks = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            rows = order[i:i + batch_size]
            L = lengths[rows]
            xb = x[rows, : int(L.max())]
            chunks.append(model(xb.to(device), L.to(device)).softmax(-1).mean(0).cpu())
    proba = torch.cat(chunks)
    return torch.empty_like(proba).index_copy_(0, order, proba)


def ensemble_loss(logits: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Sum over members of each member's mean cross-entropy; ``logits: [K, B, C]``, ``y``:
    ``[B]`` (the same batch for every member) or ``[K, B]`` (a batch per member)."""
    K, B = logits.shape[:2]
    y = y.expand(K, B) if y.dim() == 1 else y
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                           label_smoothing=label_smoothing) * K
