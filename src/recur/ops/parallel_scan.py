"""Linear recurrences ``h_t = a_t * h_{t-1} + b_t`` (elementwise), sequential and parallel.

When the gates of a cell depend only on the input (minGRU / minLSTM, Feng et al. 2024), its
recurrence is linear and every ``h_t`` is a prefix of an associative operation on the pairs
``(a_t, b_t)``::

    (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)

so it runs in ``ceil(log2 T)`` vectorised steps instead of T. With ``a_t, b_t > 0`` the
pairs are kept as logarithms (``log a_t`` is a sum, ``log b_t`` a log-sum-exp), which is
numerically stable for long sequences; ``h_0`` may have any sign (``h_t = A_t h_0 + B_t``
with ``(A_t, B_t)`` the prefix of the pairs).

Two parallel methods, same result:

- ``"doubling"`` (Hillis-Steele): log2(T) rounds, each combining every step with the one
  ``d = 1, 2, 4, ...`` before it; O(T log T) work, log depth.
- ``"heinsen"`` (Heinsen 2023): ``A*_t = cumsum(log a)``, ``log B_t = A*_t +
  logcumsumexp(log b - A*)``; O(T) work, two of PyTorch's scan kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

METHODS = ("doubling", "heinsen")


def linear_scan_sequential(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """The reference loop: ``h_t = a_t * h_{t-1} + b_t``.

    Args:
        a, b: ``[T, B, H]``; h0: ``[B, H]``.

    Returns:
        ``h: [T, B, H]`` (``h_1 .. h_T``).
    """
    out = []
    h = h0
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]  # (B, H)
        out.append(h)
    return torch.stack(out)


def log_linear_scan(log_a: Tensor, log_b: Tensor, h0: Tensor, method: str = "doubling"
                    ) -> Tensor:
    """Parallel ``h_t = a_t * h_{t-1} + b_t`` from ``log a_t`` and ``log b_t`` (``a, b > 0``).

    Args:
        log_a, log_b: ``[T, B, H]`` finite logarithms of the coefficients.
        h0: ``[B, H]`` initial state (any sign).
        method: ``"doubling"`` or ``"heinsen"`` (see the module docstring).

    Returns:
        ``h: [T, B, H]``, equal to :func:`linear_scan_sequential` on ``exp(log_a), exp(log_b)``.

    Example:
        >>> la, lb = -torch.rand(6, 2, 3), torch.randn(6, 2, 3)
        >>> h = log_linear_scan(la, lb, torch.zeros(2, 3))
        >>> torch.allclose(h, linear_scan_sequential(la.exp(), lb.exp(), torch.zeros(2, 3)))
        True
    """
    if log_a.shape != log_b.shape or log_a.dim() != 3:
        raise ValueError(f"log_a and log_b must both be [T, B, H], got {tuple(log_a.shape)} "
                         f"and {tuple(log_b.shape)}")
    if tuple(h0.shape) != tuple(log_a.shape[1:]):
        raise ValueError(f"h0 must have shape {tuple(log_a.shape[1:])}, got {tuple(h0.shape)}")
    if method == "heinsen":
        a_star = torch.cumsum(log_a, dim=0)  # (T, B, H): log prod_{s<=t} a_s
        log_bb = a_star + torch.logcumsumexp(log_b - a_star, dim=0)  # (T, B, H)
        return a_star.exp() * h0 + log_bb.exp()
    if method != "doubling":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    la, lb = log_a, log_b
    T, d = la.shape[0], 1
    while d < T:
        # step t takes in the prefix ending at t - d: (la', lb') . (la, lb)
        lb = torch.cat([lb[:d], torch.logaddexp(la[d:] + lb[:-d], lb[d:])])
        la = torch.cat([la[:d], la[d:] + la[:-d]])
        d *= 2
    return la.exp() * h0 + lb.exp()
