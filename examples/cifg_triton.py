"""The Triton pointwise of ``cifg_lstm`` (``examples/custom_cells.py``): what a user writes so
that a cell of their own runs in recur's fused kernels (``backend="triton"``).

Contract (``recur/cells/triton_pointwise.py``): fp32 tiles; ``x_k`` / ``r_k`` are gate k of
the input part and of ``h W_hh^T + b_hh``; ``s0 = h``, ``s1 = c``. ``fwd`` returns the new
states, ``bwd`` the gradients of every input given those of the new states. Loaded lazily
by the cell (this module imports ``triton``).
"""

import triton
import triton.language as tl

from recur.cells.triton_pointwise import TritonPointwise


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def cifg_fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1):
    f = tl.sigmoid(x0 + r0)
    g = _tanh(x1 + r1)
    o = tl.sigmoid(x2 + r2)
    c = f * s1 + (1.0 - f) * g
    return o * _tanh(c), c


@triton.jit
def cifg_bwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1):
    f = tl.sigmoid(x0 + r0)
    g = _tanh(x1 + r1)
    o = tl.sigmoid(x2 + r2)
    c = f * s1 + (1.0 - f) * g
    tc = _tanh(c)
    dc = d1 + d0 * o * (1.0 - tc * tc)
    df = dc * (s1 - g) * f * (1.0 - f)
    dg = dc * (1.0 - f) * (1.0 - g * g)
    do = d0 * tc * o * (1.0 - o)
    z = tl.zeros_like(x0)
    return df, dg, do, z, df, dg, do, z, z, dc * f


CIFG = TritonPointwise(cifg_fwd, cifg_bwd)
