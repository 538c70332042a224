"""Triton pointwise updates of the built-in cells, for the fused kernels of ``recur.ops.triton``.

This module imports ``triton``; nothing imports it eagerly. A :class:`recur.cells.Cell` names
its pointwise lazily (``triton_update="recur.cells.triton_pointwise:LSTM"``, or a
:class:`TritonPointwise` object, or a zero-argument callable returning one), and the
built-in cells (those with a ``native_mode``) are found here by mode.

The contract of a pointwise (any cell, built-in or user-declared), on fp32 register tiles
``[BB, BN]`` (a batch tile by a slice of hidden units; all tiles of one call have the same
shape):

``fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1) -> (n0, n1)``
    ``x_k`` is gate k of ``xg`` (the input part), ``r_k`` gate k of ``hg = h W_hh^T + b_hh``
    (the recurrent part), ``s0`` = h and ``s1`` the second state (c) before the step.
    Returns the new states. Gates ``k >= num_gates`` and ``s1`` of one-state cells are zero
    tiles; a one-state cell returns anything of the right shape as ``n1`` (it is ignored).

``bwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1)
-> (dx0, dx1, dx2, dx3, dr0, dr1, dr2, dr3, ds0, ds1)``
    Given the same inputs and the gradients ``d0, d1`` of the new states, the gradients of
    every input (activations are recomputed from ``x`` and ``r``, which the forward saved).
    Unused gates / states may return zero tiles.

So a cell has at most 4 gates and 2 states for the fused kernels; larger cells run on the
reference backend.
"""

from __future__ import annotations

from typing import NamedTuple

import triton
import triton.language as tl


class TritonPointwise(NamedTuple):
    """A cell's Triton pointwise: two ``triton.jit`` functions (see the module docstring)."""

    fwd: object
    bwd: object


@triton.jit
def _tanh(x):
    # tanh(x) = 2 sigmoid(2x) - 1; portable (no libdevice), absolute error ~1e-7 in fp32
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


# --- Elman RNN -----------------------------------------------------------------------------

@triton.jit
def rnn_tanh_fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1):
    return _tanh(x0 + r0), s1


@triton.jit
def rnn_tanh_bwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1):
    h = _tanh(x0 + r0)
    dp = d0 * (1.0 - h * h)
    z = tl.zeros_like(x0)
    return dp, z, z, z, dp, z, z, z, z, z


@triton.jit
def rnn_relu_fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1):
    return tl.maximum(x0 + r0, 0.0), s1


@triton.jit
def rnn_relu_bwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1):
    dp = tl.where(x0 + r0 > 0.0, d0, 0.0)
    z = tl.zeros_like(x0)
    return dp, z, z, z, dp, z, z, z, z, z


# --- LSTM (i, f, g, o); s1 = c ---------------------------------------------------------------

@triton.jit
def lstm_fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1):
    i = tl.sigmoid(x0 + r0)
    f = tl.sigmoid(x1 + r1)
    g = _tanh(x2 + r2)
    o = tl.sigmoid(x3 + r3)
    c = f * s1 + i * g
    return o * _tanh(c), c


@triton.jit
def lstm_bwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1):
    i = tl.sigmoid(x0 + r0)
    f = tl.sigmoid(x1 + r1)
    g = _tanh(x2 + r2)
    o = tl.sigmoid(x3 + r3)
    c = f * s1 + i * g
    tc = _tanh(c)
    dc = d1 + d0 * o * (1.0 - tc * tc)
    di = dc * g * i * (1.0 - i)
    df = dc * s1 * f * (1.0 - f)
    dg = dc * i * (1.0 - g * g)
    do = d0 * tc * o * (1.0 - o)
    return di, df, dg, do, di, df, dg, do, tl.zeros_like(x0), dc * f


# --- GRU (r, z, n); n = tanh(xn + r * hn) ------------------------------------------------------

@triton.jit
def gru_fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1):
    r = tl.sigmoid(x0 + r0)
    z = tl.sigmoid(x1 + r1)
    n = _tanh(x2 + r * r2)
    return (1.0 - z) * n + z * s0, s1


@triton.jit
def gru_bwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1):
    r = tl.sigmoid(x0 + r0)
    z = tl.sigmoid(x1 + r1)
    n = _tanh(x2 + r * r2)
    dpn = d0 * (1.0 - z) * (1.0 - n * n)
    dpz = d0 * (s0 - n) * z * (1.0 - z)
    dpr = dpn * r2 * r * (1.0 - r)
    zero = tl.zeros_like(x0)
    return dpr, dpz, dpn, zero, dpr, dpz, dpn * r, zero, d0 * z, zero


RNN_TANH = TritonPointwise(rnn_tanh_fwd, rnn_tanh_bwd)
RNN_RELU = TritonPointwise(rnn_relu_fwd, rnn_relu_bwd)
LSTM = TritonPointwise(lstm_fwd, lstm_bwd)
GRU = TritonPointwise(gru_fwd, gru_bwd)

BY_MODE = {"RNN_TANH": RNN_TANH, "RNN_RELU": RNN_RELU, "LSTM": LSTM, "GRU": GRU}
