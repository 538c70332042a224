"""Training-only augmentations of a padded batch of series (``x: [B, T, C]``, ``lengths: [B]``).

Each returns a new ``(x', lengths')`` with zeros past every row's new length, so the model keeps
reading only valid steps through ``lengths=``. Used by ``classify`` (``--crop``, ``--warp``,
``--jitter``); the official test split never goes through them.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["jitter", "random_crop", "random_warp"]


def jitter(x: Tensor, std: float) -> Tensor:
    """``x`` plus Gaussian noise of standard deviation ``std`` (padding is never read)."""
    return x + std * torch.randn_like(x) if std > 0 else x


def random_crop(x: Tensor, lengths: Tensor, share: float) -> tuple[Tensor, Tensor]:
    """Random crops of a padded batch: row ``b`` loses ``k_b = floor(u * share * L_b)`` steps
    (``u ~ U[0, 1)``, at least one step is kept), a random part of them from its start and the
    rest from its end. ``x: [B, T, C]``, ``lengths: [B]`` -> ``(x' [B, T, C], lengths' [B])``;
    steps past a row's new length are zero."""
    B, T = x.shape[:2]
    L = lengths.to(x.device)
    drop = (torch.rand(B, device=x.device) * share * L).long().clamp(max=L - 1)
    start = (torch.rand(B, device=x.device) * (drop + 1)).long().clamp(max=drop)
    new = L - drop
    t = torch.arange(T, device=x.device)
    idx = (start[:, None] + t).clamp(max=T - 1)                      # (B, T)
    out = x.gather(1, idx[:, :, None].expand(-1, -1, x.shape[2]))
    out = out * (t[None, :] < new[:, None]).to(x.dtype)[:, :, None]
    return out, new.to(lengths.dtype).to(lengths.device)


def random_warp(x: Tensor, lengths: Tensor, share: float) -> tuple[Tensor, Tensor]:
    """Random time warps of a padded batch: row ``b`` is resampled (linear interpolation
    between neighbouring steps) to ``round(s_b * L_b)`` steps, ``s_b ~ U[1 - share, 1 + share]``
    (at least one step). ``x: [B, T, C]``, ``lengths: [B]`` -> ``(x' [B, T', C], lengths' [B])``
    with ``T' = max(lengths')``; steps past a row's new length are zero."""
    B = x.shape[0]
    L = lengths.to(x.device)
    s = 1 + share * (2 * torch.rand(B, device=x.device, dtype=x.dtype) - 1)
    new = (L.to(x.dtype) * s).round().long().clamp(min=1)
    T2 = int(new.max())
    t = torch.arange(T2, device=x.device, dtype=x.dtype)
    # position of output step t in the input: t * (L - 1) / (new - 1) (0 when new == 1)
    scale = (L - 1).to(x.dtype) / (new - 1).clamp(min=1).to(x.dtype)
    u = (t[None, :] * scale[:, None]).clamp(max=(L - 1).to(x.dtype)[:, None])   # (B, T2)
    lo = u.floor().long()
    hi = (lo + 1).clamp(max=(L - 1)[:, None])
    w = (u - lo.to(x.dtype))[:, :, None]
    C = x.shape[2]
    out = (x.gather(1, lo[:, :, None].expand(-1, -1, C)) * (1 - w)
           + x.gather(1, hi[:, :, None].expand(-1, -1, C)) * w)
    out = out * (t[None, :] < new[:, None]).to(x.dtype)[:, :, None]
    return out, new.to(lengths.dtype).to(lengths.device)
