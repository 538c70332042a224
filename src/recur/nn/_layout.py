"""Normalise the caller's input layout to the engine's, and back.

The engine works on time-major padded tensors ``[T, B, I]`` with optional ``lengths [B]``.
Callers may pass batch-first, unbatched 2-D input, or a ``PackedSequence``; this file turns
each into the engine's layout once, and restores the caller's layout on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence


@dataclass
class Layout:
    """How the caller laid out the input, so the output can be laid out the same way."""

    batched: bool
    batch_first: bool
    packed: PackedSequence | None = None


def to_time_major(
    name: str, input: Tensor | PackedSequence, batch_first: bool, lengths
) -> tuple[Tensor, Tensor | None, Layout]:
    """Return ``x: [T, B, I]``, ``lengths: [B]`` int64 on the CPU (or None) and the layout.

    Raises the errors torch.nn raises for a wrong input rank or an empty sequence (an empty
    batch is fine, as in torch.nn), plus clear errors for bad ``lengths``.
    """
    if isinstance(input, PackedSequence):
        if lengths is not None:
            raise ValueError("lengths= cannot be combined with a PackedSequence input, which "
                             "carries its own lengths; pass one or the other")
        x, lens = pad_packed_sequence(input)  # (T, B, I), original batch order
        return x, lens, Layout(batched=True, batch_first=False, packed=input)
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: expected input to be a Tensor or PackedSequence, "
                        f"got {type(input).__name__}")
    if input.dim() not in (2, 3):
        raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D instead")
    batched = input.dim() == 3
    if not batched:
        x = input.unsqueeze(1)  # (T, 1, I)
    elif batch_first:
        x = input.transpose(0, 1)  # (T, B, I)
    else:
        x = input
    T, B = x.shape[0], x.shape[1]
    if T == 0:  # torch.nn's class and message (an empty batch is fine, as in torch.nn)
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    lens = None if lengths is None else check_lengths(lengths, T, B, batched)
    return x, lens, Layout(batched=batched, batch_first=batch_first)


def check_lengths(lengths, T: int, B: int, batched: bool) -> Tensor:
    """Validate ``lengths`` (``[B]`` integers in ``[1, T]``; a scalar for unbatched input) and
    return it as an int64 CPU tensor of shape ``[B]``."""
    lens = torch.as_tensor(lengths)
    if lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
        raise ValueError(f"lengths must hold integers, got dtype {lens.dtype}")
    if not batched and lens.dim() == 0:
        lens = lens.reshape(1)
    if lens.dim() != 1 or lens.shape[0] != B:
        want = "a scalar or shape (1,)" if not batched else f"shape ({B},)"
        raise ValueError(f"lengths must have {want} to match the batch, "
                         f"got shape {tuple(lens.shape)}")
    lens = lens.to(device="cpu", dtype=torch.int64)
    if torch.compiler.is_compiling() or B == 0:
        return lens  # values are data: checked in eager calls, not traced (torch.compile)
    lo, hi = int(lens.min()), int(lens.max())
    if lo < 1 or hi > T:
        raise ValueError(f"lengths must lie in [1, {T}] (the sequence length), "
                         f"got values in [{lo}, {hi}]")
    return lens


def from_time_major(out: Tensor, layout: Layout) -> Tensor | PackedSequence:
    """Lay ``out: [T, B, F]`` out as the caller's input was laid out."""
    if layout.packed is not None:
        p = layout.packed
        sorted_out = out if p.sorted_indices is None else out.index_select(1, p.sorted_indices)
        rows = torch.arange(out.shape[1], device=p.batch_sizes.device)
        keep = (rows.unsqueeze(0) < p.batch_sizes.unsqueeze(1)).to(out.device)  # (T, B)
        return PackedSequence(sorted_out[keep], p.batch_sizes, p.sorted_indices,
                              p.unsorted_indices)
    if not layout.batched:
        return out.squeeze(1)  # (T, F)
    if layout.batch_first:
        return out.transpose(0, 1)  # (B, T, F)
    return out
