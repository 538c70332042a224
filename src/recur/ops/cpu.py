"""The ``cpu`` backend: any declared cell on the CPU, one autograd function per sequence.

Per step the sequential work is one GEMM (``hg_t = h_{t-1} W_hh^T`` with ``W_hh^T`` made
contiguous once per sequence: that layout runs faster than the transposed view, except for
one row and a large ``W_hh``, read as it is: :data:`WHH_AS_IS_MAX_B`) and one call of a C
kernel that adds ``b_hh`` and runs the cell's whole pointwise update for every row (plus
lengths, zoneout and the recurrent-dropout mask). The time loop itself runs in C (``seq_fwd``
/ ``seq_bwd`` of the generated library, no Python per step) where PyTorch's library exports a
BLAS ``sgemm`` / ``dgemm`` that passes a self-test (its x86 builds, with MKL:
:func:`time_loop_gemm`); elsewhere the loop is Python's, with ``torch.mm`` per step. In
float32 the per-step products, and with one thread the whole-sequence ones (the input
projection, the weight gradients: :func:`mm`), run on PyTorch's ``brgemm`` (oneDNN's JIT
micro-kernel) where it is exported and passes its self-test (:data:`BRGEMM_MIN_B`).
The kernel is generated from the cell's single declaration (:mod:`recur.ops.cpu_codegen`:
``cell.update`` and its vjp traced to aten ops, translated to C, compiled once and cached), so a
user's declared cell gets it too. No autograd graph is built per step: the forward keeps ``hg``
and the states of every step; the backward walks the steps in reverse, one kernel call (the
update's vjp, forward recomputed in registers) and one ``dh = dhg_t W_hh`` GEMM per step, then
the weight gradients as one GEMM over all steps (``dW_hh = dHG^T H_prev``).

What it does not take (:func:`accepts` says why, and ``auto`` runs the reference loop):
tensors off the CPU, dtypes other than float32 / float64, a projection (``w_hr``),
``step_inputs``, a cell whose update uses an op the generator does not translate, a machine
without a C compiler (then a one-time warning says so), and torch.compile tracing. Double
backward (``create_graph=True``) recomputes the gradients on the reference loop, which is
differentiable: slower, same numbers.
"""

from __future__ import annotations

import ctypes
import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell, States
from ..cells.layernorm import InputNorm, with_input_norm
from . import cpu_codegen
from .dispatch import opaque_kernels_refused
from .layer import LayerSpec, LayerWeights
from .memory import empty_large
from .reference import scan_reference

DTYPES = (torch.float32, torch.float64)
_warned = False


def accepts(spec: LayerSpec, x: Tensor) -> str | None:
    """None when the ``cpu`` backend runs the layer ``spec`` on ``x``, else why not."""
    global _warned
    if x.device.type != "cpu":
        return f"it runs CPU tensors, the input is on {x.device}"
    if x.dtype not in DTYPES:
        return f"dtype {x.dtype} (it runs float32 and float64)"
    if spec.proj:
        return "proj_size (a projection of h) is not in its kernel"
    if "step_inputs" in spec.extras:
        return "step_inputs (per-step tensors of a cell) are not in its kernel"
    if torch.compiler.is_compiling():
        return "torch.compile cannot trace its compiled kernel"
    refused = opaque_kernels_refused(x)
    if refused is not None:
        return refused
    if cpu_codegen.find_compiler() is None:
        if not _warned:
            _warned = True
            warnings.warn("recur: no C compiler found ($CC, cc, gcc or clang); on the CPU "
                          "the cells PyTorch has no kernel for run on the slower reference "
                          "loop, and GRUs / RNNs on PyTorch's kernels instead of recur's "
                          "faster ones", RuntimeWarning, stacklevel=2)
        return "no C compiler found ($CC, cc, gcc or clang on PATH) to build its kernels"
    # the kernel itself: traced from the cell's update and compiled here, at planning (once
    # per cell, sizes and dtype; cached), so a cell it cannot translate is refused up front
    H = spec.hidden_size
    try:
        kernel(spec.cell, H, spec.recurrent_size, spec.cell.num_gates * H, spec.weight_shapes,
               x.dtype)
    except ValueError as e:
        return str(e).removeprefix("backend 'cpu': ").removesuffix("; use backend='reference'")
    return None


def kernel(cell: Cell, H: int, HO: int, GX: int, weight_shapes, dtype) -> cpu_codegen.Kernel:
    """The compiled kernel for ``cell`` at these sizes (cached per process and on disk,
    failures too); ``ValueError`` naming the reason when it cannot be built."""
    widths = (GX, cell.num_gates * H, (HO,) + (H,) * (cell.num_states - 1))
    try:
        return cpu_codegen.kernel_for(cell, widths, weight_shapes, dtype)
    except (cpu_codegen.Unsupported, RuntimeError) as e:
        raise ValueError(f"backend 'cpu': its kernel for cell {cell.name!r} could not be "
                         f"built: {e}; use backend='reference'") from e


#: the forward time loops read ``W_hh`` as it is, instead of a contiguous ``W_hh^T`` made
#: at every call (MKL's faster layout per step), for batches of at most this many rows
#: where ``W_hh`` holds at least :data:`WHH_AS_IS_MIN_BYTES`: there the copy costs more than
#: its layout saves. ``benchmarks/whh_layout.py``, recur's LSTM: on an Intel Xeon with MKL's
#: sgemm per step (``whh-layout-69292b1.json``), as it is, B=1 and B=2 took 0.75-1.00x the
#: time at H=512 and 1024 (W_hh 4 and 16 MiB) over T=64 and 512, inference and training;
#: 1.08-1.53x at B=1 from H=256 down, 1.03-1.61x at B=4. On an AMD EPYC with the transposed
#: weight read by ``brgemm`` (:data:`BRGEMM_MIN_B`; ``whh-layout-918ac8a.json``, T=64, H
#: 256-1024), as it is took 0.74-0.91x at B=1, 1.10-1.35x at B=2, 1.34-2.29x at B=4; at B=1
#: and T=512 too, 0.87-1.04x (``whh-layout-B1-7c76b53.json``): one row
WHH_AS_IS_MAX_B = 1
WHH_AS_IS_MIN_BYTES = 4 << 20


#: in float32, a batch of one row times ``W_hh`` read as it is, at every size, through the
#: loop's own ``gemv_rows`` (four rows of ``W_hh`` per pass, vectorised by the C compiler)
#: instead of BLAS ``gemm``. ``benchmarks/whh_layout.py`` (``whh-layout-B1-gemv-d10de9d.json``:
#: 2-core AMD EPYC, one thread, recur's LSTM, B=1, H 64-1024, T 64 and 512): 0.57-0.75x the
#: time of MKL's ``gemm`` on the same layout in inference, 0.78-0.90x in training; against
#: ``W_hh^T`` on ``brgemm`` (what B=1 took below 4 MiB), 0.49-0.90x and 0.75-0.96x
WHH_GEMV = True


def _as_is_mode(as_is: bool, dtype: torch.dtype) -> int:
    """``seq_fwd``'s ``w_is_whh``: 0 (``W_hh^T``), 1 (``W_hh`` through ``gemm``) or 2
    (``W_hh``, one row through ``gemv_rows``: :data:`WHH_GEMV`, float32)."""
    return 0 if not as_is else 2 if WHH_GEMV and dtype == torch.float32 else 1


class ForwardWeight(NamedTuple):
    """``W_hh`` as the forward C loop reads it: ``w`` (contiguous), ``as_is`` (``w`` is
    ``W_hh [G*H, HO]`` itself, else ``W_hh^T``) and ``nb`` (``W_hh^T`` stored as column
    panels of ``nb``, :func:`panels`; 0: ``W_hh^T [HO, G*H]`` row-major)."""

    w: Tensor
    as_is: bool
    nb: int


def _forward_weight(k: cpu_codegen.Kernel, w_hh: Tensor, B: int) -> ForwardWeight:
    """``W_hh`` (``w_hh: [G*H, HO]``) as the forward loop reads it at batch ``B``: as it is
    where :data:`WHH_AS_IS_MAX_B` says so, or at B=1 in float32 with :data:`WHH_GEMV`
    (measured in float32; the rule is in bytes, so float64 takes it from half the units);
    else ``W_hh^T``, in column panels (:func:`panels`) where the loop's ``brgemm`` products
    run on them (:func:`panel_width`)."""
    gemv = WHH_GEMV and B == 1 and w_hh.dtype == torch.float32
    if B <= WHH_AS_IS_MAX_B and (gemv or
                                 w_hh.numel() * w_hh.element_size() >= WHH_AS_IS_MIN_BYTES):
        return ForwardWeight(w_hh.contiguous(), True, 0)
    nb = panel_width(B, w_hh) if time_loop_brgemm(k, w_hh.dtype, B) else 0
    return ForwardWeight(panels(w_hh, nb) if nb else transposed(w_hh), False, nb)


def panels(w: Tensor, nb: int) -> Tensor:
    """``w^T`` (``w: [N, K]`` -> ``[N * K]``, flat) as column panels of ``nb``: panel ``j``
    holds columns ``j..j+nb`` of ``w^T`` (rows of ``w``; the last panel narrower) as a
    contiguous row-major ``[K, width]`` at offset ``j * K``, the layout the C loops'
    ``brgemm_panels`` reads."""
    N, K = w.shape
    full = N - N % nb
    parts = [w[:full].view(full // nb, nb, K).transpose(1, 2).reshape(-1)]
    if full < N:
        parts.append(w[full:].t().reshape(-1))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _seq_fwd(k: cpu_codegen.Kernel, P, B: int, T: int, reverse: bool, grad: bool, gemm: int,
             packed: tuple[int, Tensor] | None, w: ForwardWeight | None) -> None:
    """The forward time loop in C over ``T`` steps of the table ``P``: on ``W_hh^T`` packed
    once (``packed``, :func:`_packed_weight`) or else on ``w`` (:func:`_forward_weight`)."""
    if packed is not None:
        k.seq_fwd(P, B, T, reverse, grad, gemm, None, 0, packed[0], packed[1].data_ptr(), None,
                  0)
    else:
        k.seq_fwd(P, B, T, reverse, grad, gemm, w.w.data_ptr(), _as_is_mode(w.as_is, w.w.dtype),
                  None, None, time_loop_brgemm(k, w.w.dtype, B), w.nb)


class _Scan(torch.autograd.Function):
    """One layer and direction over the whole sequence (see the module docstring)."""

    @staticmethod
    def forward(ctx, meta, xg, w_hh, b_hh, b_ih, *rest):
        _cell, k, reverse, NS, NP, has_len, has_hm, has_z, grad, zstrides = meta
        state0 = rest[:NS]
        cell_weights = rest[NS:NS + NP]
        h_mask = rest[NS + NP] if has_hm else None
        zoneout = rest[NS + NP + has_hm:NS + NP + has_hm + (NS if has_z else 0)]
        lengths = rest[-1] if has_len else None
        T, B, _ = xg.shape
        GH = w_hh.shape[0]
        W = [s.shape[-1] for s in state0]
        S = [empty_large(T + 1, B, w, like=xg) for w in W]
        s_first = T if reverse else 0
        for buf, s in zip(S, state0):
            buf[s_first] = s
        HIN = None
        if h_mask is not None:
            HIN = empty_large(T + 1, B, W[0], like=xg)
            torch.mul(state0[0], h_mask, out=HIN[s_first])
        OUT = empty_large(T, B, W[0], like=xg) if lengths is not None else None
        HG = empty_large(T if grad else 1, B, GH, like=xg)
        P = _table(k, xg=xg, hg=HG, S=S, hin=HIN, out=OUT, cell_weights=cell_weights,
                   zoneout=zoneout, zstrides=zstrides, h_mask=h_mask, lengths=lengths, b_hh=b_hh,
                   b_ih=b_ih)
        gemm = time_loop_gemm(k, xg.dtype)
        if gemm is not None:  # the whole loop in C
            packed = _packed_weight(k, w_hh, B, T, backward=False)
            _seq_fwd(k, P, B, T, reverse, grad, gemm, packed,
                     None if packed is not None else _forward_weight(k, w_hh, B))
        else:
            w_t = transposed(w_hh)  # (Hout, G*H) row-major: MKL's faster layout per step
            gemm_in = (HIN if HIN is not None else S[0]).unbind(0)
            hg_views = HG.unbind(0)
            fwd = k.fwd
            order = range(T - 1, -1, -1) if reverse else range(T)
            for t in order:
                prev, nxt = (t + 1, t) if reverse else (t, t + 1)
                th = t if grad else 0
                torch.mm(gemm_in[prev], w_t, out=hg_views[th])  # b_hh: added by the kernel
                fwd(P, B, t, th, prev, nxt)
        out = OUT if OUT is not None else (S[0][:T] if reverse else S[0][1:])
        s_last = 0 if reverse else T
        finals = tuple(buf[s_last].clone() for buf in S)
        if grad:
            ctx.meta = meta
            ctx.k = k
            ctx.save_for_backward(xg, w_hh, b_hh, HG, HIN, b_ih, *S, *state0, *cell_weights,
                                  h_mask, *zoneout, lengths)
        return (out,) + finals

    @staticmethod
    def backward(ctx, gout, *gfinal):
        cell, k, reverse, NS, NP, _, _, has_z, _, zstrides = ctx.meta
        saved = ctx.saved_tensors
        xg, w_hh, b_hh, HG, HIN, b_ih = saved[:6]
        S = saved[6:6 + NS]
        state0 = saved[6 + NS:6 + 2 * NS]
        cell_weights = saved[6 + 2 * NS:6 + 2 * NS + NP]
        h_mask = saved[6 + 2 * NS + NP]
        zoneout = saved[7 + 2 * NS + NP:7 + 2 * NS + NP + (NS if has_z else 0)]
        lengths = saved[-1]
        if torch.is_grad_enabled():  # create_graph=True: the differentiable loop
            return _double_backward(ctx, cell, reverse, xg, w_hh, b_hh, b_ih, state0,
                                    cell_weights, h_mask, zoneout, lengths, gout, gfinal)
        T, B, GX = xg.shape
        GH = w_hh.shape[0]
        G = [torch.zeros_like(s) if g is None else g.contiguous().clone()
             for g, s in zip(gfinal, state0)]
        DH = xg.new_zeros(B, S[0].shape[-1])
        DXG = empty_large(T, B, GX, like=xg)
        DHG = DXG if k.dhg_is_dxg else empty_large(T, B, GH, like=xg)  # an LSTM's: the same
        DP = [torch.zeros_like(p) for p in cell_weights]
        gout = None if gout is None else gout.contiguous()
        P = _table(k, xg=xg, hg=HG, S=S, hin=HIN, out=None, cell_weights=cell_weights,
                   zoneout=zoneout, zstrides=zstrides, h_mask=h_mask, lengths=lengths, dxg=DXG,
                   dhg=DHG, G=G, gout=gout, dh=DH, dweights=DP, b_hh=None, b_ih=b_ih)
        gemm = time_loop_gemm(k, xg.dtype)
        packed = _packed_weight(k, w_hh, B, T, backward=True) if gemm is not None else None
        if gemm is not None:  # the whole loop in C (W_hh packed once, where it pays)
            k.seq_bwd(P, B, T, reverse, gemm, w_hh.data_ptr(),
                      *((None, None) if packed is None else (packed[0], packed[1].data_ptr())),
                      time_loop_brgemm(k, xg.dtype, B), slice_rows(B, w_hh))
        else:
            dhg_views = DHG.unbind(0)
            bwd = k.bwd
            order = range(T) if reverse else range(T - 1, -1, -1)
            for i, t in enumerate(order):
                prev, nxt = (t + 1, t) if reverse else (t, t + 1)
                bwd(P, B, t, t, prev, nxt, i == 0)
                torch.mm(dhg_views[t], w_hh, out=DH)
        G[0] += DH if h_mask is None else DH * h_mask
        gemm_in = HIN if HIN is not None else S[0]
        h_prev = gemm_in[1:] if reverse else gemm_in[:T]  # (T, B, HO)
        need = ctx.needs_input_grad
        d_w = None
        if need[2]:
            hp, dhg = h_prev.reshape(T * B, -1), DHG.view(T * B, GH)
            d_w = (transposed(mm(transposed(hp), dhg)) if _mm_call(hp.t(), dhg) is not None
                   else dhg.t() @ hp)  # brgemm: (H_prev^T DHG)^T, the smaller transpose
        d_b = DHG.view(T * B, GH).sum(0) if b_hh is not None and need[3] else None
        d_bih = None
        if b_ih is not None and need[4]:  # one sum where the cotangents are one buffer
            d_bih = d_b.clone() if DHG is DXG and d_b is not None else DXG.view(T * B, GX).sum(0)
        grads = [None, DXG, d_w, d_b, d_bih] + G + DP
        grads += [None] * (len(need) - len(grads))
        return tuple(grads)


#: run the time loop in C with a BLAS gemm when one passes the self-test (False: the loop
#: in Python, one ``torch.mm`` and one kernel call per step; the tests run both)
C_TIME_LOOP = True
_GEMMS: dict = {}


def time_loop_gemm(k: cpu_codegen.Kernel, dtype: torch.dtype) -> int | None:
    """The address of the BLAS ``gemm`` the C time loop calls (``dtype``'s), or None: off
    (:data:`C_TIME_LOOP`), none found (:func:`recur.ops.cpu_codegen.blas_gemm`), or its
    self-test (a small product against ``torch.mm``, once per process and dtype) failed."""
    if not C_TIME_LOOP:
        return None
    return _self_tested(_GEMMS, dtype, cpu_codegen.blas_gemm, k.gemm_rows)


def _self_tested(cache: dict, dtype: torch.dtype, find, rows) -> int | None:
    """``find(dtype)``'s address once it computed a product through ``rows(address, M, N, K,
    A, B, C)`` (the loops' own call; :func:`_computes_a_product`), else None; kept per dtype
    in ``cache``."""
    if dtype not in cache:
        addr = find(dtype)
        if addr is not None and not _computes_a_product(dtype, lambda a, b, c: rows(
                addr, 3, 7, 5, a.data_ptr(), b.data_ptr(), c.data_ptr())):
            addr = None
        cache[dtype] = addr
    return cache[dtype]


#: the C time loop's per-step products through PyTorch's float32 ``brgemm`` (oneDNN's JIT
#: micro-kernel; :func:`recur.ops.cpu_codegen.blas_brgemm`) instead of BLAS ``gemm``, from
#: this batch size on, where it passed its self-test (None: never; the tests run both).
#: Measured with ``benchmarks/step_gemm.py`` (``step-gemm-91fe98d.json``: 2-core AMD EPYC,
#: one thread; LayerNormLSTM / LayerNormGRU, T=64): 0.45-1.01x the time with sgemm over B in
#: {1, 2, 4, 16, 64} and H in {32, 128, 512}, inference and training; B=1 0.93-1.01x. With
#: :func:`mm` (the input projection and the weight gradients), which follows the same
#: switch: 0.32-1.05x, B=1 0.93-1.05x (``step-gemm-aaf456f.json``)
BRGEMM_MIN_B: int | None = 1
_BRGEMMS: dict = {}


def time_loop_brgemm(k: cpu_codegen.Kernel, dtype: torch.dtype, B: int) -> int | None:
    """The address of PyTorch's ``brgemm`` for the C time loop's products at batch size
    ``B``, or None: below :data:`BRGEMM_MIN_B` (or it None), not float32, none found, or its
    self-test (``k.brgemm_rows``, the loops' own call, against ``torch.mm``, once per process)
    failed."""
    if BRGEMM_MIN_B is None or B < BRGEMM_MIN_B:
        return None
    return _self_tested(_BRGEMMS, dtype, cpu_codegen.blas_brgemm, k.brgemm_rows)


#: the forward C time loop's ``brgemm`` products on column panels of this many columns of
#: ``W_hh^T`` (None: one call over all the columns), each panel stored contiguous
#: (:func:`panels`, made at every call in place of the transposed copy), from
#: :data:`BRGEMM_PANEL_MIN_B` rows on and where ``W_hh`` holds at least the L2 cache's size
#: (:func:`panel_width`), so that a panel of the weight stays in the core's own cache while
#: every row passes over it and is read from memory in order. ``benchmarks/step_gemm.py
#: --blocks 0 64 128`` (2-core AMD EPYC, 1 MiB of L2 per core, one thread; LayerNormLSTM and
#: LayerNormGRU, T=64, B 2-64; ``step-gemm-panels-4653b90.json``): panels of 64 took
#: 0.65-0.89x the time of one call in inference at H=512 for the LSTM (``W_hh`` 4 MiB),
#: 0.87-1.03x for the GRU (3 MiB), and 0.88-0.98x and 0.84-1.03x in training; the LSTM at
#: H=256 (``W_hh`` 1 MiB) 0.76-0.85x and 0.87-0.96x; at H=128 (not paneled) 0.96-1.01x.
#: (Column blocks read in place, the rows of a block 8 KiB apart, had taken 0.93-0.99x in
#: inference at H=512: ``step-gemm-blocks-16af945.json``.)
BRGEMM_BLOCK_N: int | None = 64
#: the forward's panels (:data:`BRGEMM_BLOCK_N`) from this many rows on
BRGEMM_PANEL_MIN_B = 2
#: the backward's slices (:data:`BRGEMM_BLOCK_K`) from this many rows on
BRGEMM_BLOCK_MIN_B = 16


def panel_width(B: int, w: Tensor) -> int:
    """:data:`BRGEMM_BLOCK_N` where the forward loop's ``brgemm`` products at batch ``B`` on
    ``W_hh`` (``w``) run on column panels, else 0 (one call on ``W_hh^T``)."""
    if not BRGEMM_BLOCK_N or B < BRGEMM_PANEL_MIN_B or \
            w.numel() * w.element_size() < _l2_cache_bytes():
        return 0
    return BRGEMM_BLOCK_N


#: the backward C time loop's ``brgemm`` products (``dh = dhg W_hh``) on slices of this many
#: rows of ``W_hh`` (the inner dimension; None: one call), each added to the last, from
#: :data:`BRGEMM_BLOCK_MIN_B` rows on and where ``W_hh`` is larger than the L2 cache
#: (:func:`slice_rows`), so that a slice of the weight stays in the core's own cache while
#: every row passes over it. ``benchmarks/step_gemm.py --kblocks``
#: (2-core AMD EPYC, one thread; LayerNormLSTM and LayerNormGRU, forward + backward): at
#: H=512, B 16 and 64, T 64 and 512, slices of 256 took 0.92-1.00x the time of one call in
#: two processes (``step-gemm-kblocks-H512-03103f0.json``, ``-H512-run2-``); over B 1-64 and
#: H 128-512, slices of 128, 256 and 512 took 0.95-1.06x (``step-gemm-kblocks-03103f0.json``,
#: noise at the sizes left whole). The one call is bimodal on this machine: a loop of its
#: products alone took 36-52 ms at B=64, H=512, T=64, the sliced one 35-36 ms
BRGEMM_BLOCK_K: int | None = 256


def slice_rows(B: int, w: Tensor) -> int:
    """:data:`BRGEMM_BLOCK_K` where the backward loop's ``brgemm`` products at batch ``B`` on
    ``W_hh`` (``w``) run on slices of its rows, else 0 (one call)."""
    if not BRGEMM_BLOCK_K or B < BRGEMM_BLOCK_MIN_B or \
            w.numel() * w.element_size() <= _l2_cache_bytes():
        return 0
    return BRGEMM_BLOCK_K


#: rows, inner-dimension steps and columns per ``brgemm`` call in :func:`mm` (bounded shapes:
#: oneDNN JIT-compiles and keeps a kernel per shape and leading dimensions), column blocks
#: outermost, then rows, then inner steps (each added to the last). ``benchmarks/mm_blocks.py``
#: (2-core AMD EPYC, one thread; one LSTM layer's whole-sequence products, T=64, B 16 and 64,
#: H 128-1024; ``mm-blocks-fdd923b.json``): against 256 rows and 256 steps over all the
#: columns (before 2026-11-30), 0.69-0.89x the time on the weight gradients from H=256 on,
#: 0.73-1.03x on the input projection and ``dx``, 0.96-1.00x at H=128 (512 columns: one block)
MM_BLOCK_M, MM_BLOCK_K, MM_BLOCK_N = 512, 256, 512
#: products smaller than this many multiply-adds stay with ``torch.mm`` in :func:`mm`
MM_MIN_MACS = 1 << 20
_MM: dict = {}


def _brgemm_call(dtype: torch.dtype):
    """PyTorch's float32 ``brgemm`` as a ctypes function, self-tested once per process (as
    :func:`time_loop_brgemm`), or None."""
    if dtype not in _MM:
        addr = cpu_codegen.blas_brgemm(dtype)
        fn = None
        if addr is not None:
            i64, vp, flag = ctypes.c_int64, ctypes.c_void_p, ctypes.c_bool
            fn = ctypes.CFUNCTYPE(None, i64, i64, i64, i64, i64, i64, flag, vp, vp, vp,
                                  flag)(addr)
            if not _computes_a_product(dtype, lambda a, b, c: fn(
                    3, 7, 5, 5, 7, 7, False, a.data_ptr(), b.data_ptr(), c.data_ptr(), False)):
                fn = None
        _MM[dtype] = fn
    return _MM[dtype]


def _mm_call(a: Tensor, b: Tensor):
    """:func:`_brgemm_call` where :func:`mm` of these operands (``[M, K]``, ``[K, N]``; only
    their shapes, dtypes and device are read) takes it, else None."""
    if (BRGEMM_MIN_B is None or a.dtype != torch.float32 or b.dtype != torch.float32
            or a.shape[0] * a.shape[1] * b.shape[1] < MM_MIN_MACS or a.device.type != "cpu"
            or torch.get_num_threads() != 1):
        return None
    return _brgemm_call(a.dtype)


def mm(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``a @ b`` (``a: [M, K]``, ``b: [K, N]`` -> ``[M, N]``, CPU): through PyTorch's float32
    ``brgemm`` in blocks of :data:`MM_BLOCK_M` rows and :data:`MM_BLOCK_K` inner steps where
    both are float32, the product has at least :data:`MM_MIN_MACS` multiply-adds, one
    intra-op thread runs (MKL threads its own), :data:`BRGEMM_MIN_B` is not None and
    ``brgemm`` passed its self-test; else ``torch.mm``. ``benchmarks/step_gemm.py`` times a
    layer with and without it (:data:`BRGEMM_MIN_B` switches both)."""
    fn = _mm_call(a, b)
    if fn is None or (out is not None and not out.is_contiguous()):
        return torch.mm(a, b, out=out)
    a, b = a.contiguous(), b.contiguous()
    M, K = a.shape
    N = b.shape[1]
    out = empty_large(M, N, like=a) if out is None else out
    pa, pb, pc = a.data_ptr(), b.data_ptr(), out.data_ptr()
    for n0 in range(0, N, MM_BLOCK_N):
        n = min(MM_BLOCK_N, N - n0)
        for m0 in range(0, M, MM_BLOCK_M):
            m = min(MM_BLOCK_M, M - m0)
            for k0 in range(0, K, MM_BLOCK_K):
                fn(m, n, min(MM_BLOCK_K, K - k0), K, N, N, k0 > 0, pa + 4 * (m0 * K + k0),
                   pb + 4 * (k0 * N + n0), pc + 4 * (m0 * N + n0), False)
    return out


class _Project(torch.autograd.Function):
    """``x W_ih^T`` (``x: [N, I]``, ``w_ih: [G, I]`` -> ``[N, G]``) with its products through
    :func:`mm`: forward ``x (W_ih^T)``, backward ``dX = dY W_ih`` and ``dW_ih = (x^T
    dY)^T``; under ``create_graph`` the backward is PyTorch's own products (differentiable)."""

    @staticmethod
    def forward(ctx, x, w_ih):
        ctx.save_for_backward(x, w_ih)
        return mm(x, transposed(w_ih))

    @staticmethod
    def backward(ctx, gy):
        x, w_ih = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward
            return gy @ w_ih, gy.t() @ x
        gy = gy.contiguous()
        dx = mm(gy, w_ih) if ctx.needs_input_grad[0] else None
        dw = transposed(mm(transposed(x), gy)) if ctx.needs_input_grad[1] else None
        return dx, dw


def project(x: Tensor, w_ih: Tensor) -> Tensor:
    """``x W_ih^T`` for ``x: [N, I]`` and ``w_ih: [G, I]`` -> ``[N, G]`` (differentiable):
    through :class:`_Project` where :func:`mm` takes PyTorch's ``brgemm`` for the forward
    product, else ``torch.mm``."""
    if _mm_call(x, w_ih.t()) is None:
        return torch.mm(x, w_ih.t())
    return _Project.apply(x.contiguous(), w_ih.contiguous())


def _computes_a_product(dtype: torch.dtype, run) -> bool:
    """Whether ``run(a, b, c)`` writes ``a @ b`` into ``c`` (``a: [3, 5]``, ``b: [5, 7]``,
    ``c: [3, 7]`` filled with NaN): the self-test of a BLAS entry point before the loops
    call it."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, dtype=dtype, generator=g)
    b = torch.randn(5, 7, dtype=dtype, generator=g)
    c = torch.full((3, 7), float("nan"), dtype=dtype)
    run(a, b, c)
    return torch.allclose(c, a @ b, rtol=1e-4, atol=1e-5)


#: pack W_hh once for MKL's packed GEMM (:func:`packed_gemm`) from this batch size and this
#: many steps on, and only a weight larger than :data:`PACK_MIN_WEIGHT_BYTES`. Measured with
#: ``benchmarks/packed_gemm.py`` (``packed-gemm-wide-480a2a9.json``): while the weight fits in
#: the core's L2 cache the packed product is 8% slower to 7% faster per step; beyond it 4-21%
#: faster from B = 8 on, and packing costs 2-53 steps' worth of that saving.
PACK_MIN_B, PACK_MIN_T = 8, 64
#: the weight size from which packing pays; None: the size of this CPU's L2 cache
PACK_MIN_WEIGHT_BYTES: int | None = None
_PACKED: dict = {}


def packed_gemm(k: cpu_codegen.Kernel, dtype: torch.dtype) -> cpu_codegen.PackedGemm | None:
    """MKL's packed GEMM for the C time loop (:func:`recur.ops.cpu_codegen.blas_packed`), or
    None: off (:data:`C_TIME_LOOP`), not float32, none found, or its self-test (products
    through ``k.packed_rows``, the loops' own call, against ``torch.mm``, with the operand
    packed as it is and transposed; once per process) failed."""
    if not C_TIME_LOOP:
        return None
    if dtype not in _PACKED:
        pg = cpu_codegen.blas_packed(dtype)

        def packed(trans: bool):
            def run(a, b, c):  # b packed as it is, or from its transpose read transposed
                src = b.t().contiguous() if trans else b
                buf = torch.empty(pg.size(3, 7, 5), dtype=torch.uint8)
                pg.pack(buf.data_ptr(), src.data_ptr(), trans, 3, 7, 5, src.shape[1])
                k.packed_rows(pg.compute, buf.data_ptr(), 3, 7, 5, a.data_ptr(), c.data_ptr())
            return run

        if pg is not None and not all(_computes_a_product(dtype, packed(t))
                                      for t in (False, True)):
            pg = None
        _PACKED[dtype] = pg
    return _PACKED[dtype]


_OMATCOPY: dict = {}
#: transpose through MKL's copy-transpose (:func:`transposed`): None, on Intel CPUs only
#: (``benchmarks/transpose.py``: 1.5-2.8x faster than PyTorch's strided copy from H=128 on
#: an Intel Xeon, ``transpose-41ad517.json``; 1.4-2.5x slower on an AMD EPYC, where MKL does
#: not run its tuned code, ``transpose-ac0afd3.json``); True / False force it
MKL_TRANSPOSE: bool | None = None


@functools.lru_cache(maxsize=1)
def _intel_cpu() -> bool:
    """Whether the CPU's vendor is Intel (Linux ``/proc/cpuinfo``; False where unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("vendor_id") and "GenuineIntel" in line for line in f)
    except OSError:
        return False


def transposed(w: Tensor) -> Tensor:
    """``w.t().contiguous()`` for a contiguous CPU ``w: [R, C]`` (-> ``[C, R]``), through MKL's
    copy-transpose where :data:`MKL_TRANSPOSE` says so, PyTorch's library has it and it
    passed its self-test (against ``Tensor.t``, once per process and dtype): the time loops
    transpose one layer's ``W_hh`` at every call."""
    dtype = w.dtype
    if not (_intel_cpu() if MKL_TRANSPOSE is None else MKL_TRANSPOSE):
        return w.t().contiguous()
    if dtype not in _OMATCOPY:
        fn = cpu_codegen.blas_omatcopy(dtype)
        if fn is not None:
            a = torch.arange(35, dtype=dtype).reshape(5, 7)
            out = torch.full((7, 5), -1.0, dtype=dtype)
            fn(a.data_ptr(), out.data_ptr(), 5, 7)
            if not torch.equal(out, a.t()):
                fn = None
        _OMATCOPY[dtype] = fn
    fn = _OMATCOPY[dtype]
    if fn is None or not w.is_contiguous() or w.dim() != 2 or w.numel() == 0:
        return w.t().contiguous()
    out = w.new_empty(w.shape[1], w.shape[0])
    fn(w.data_ptr(), out.data_ptr(), w.shape[0], w.shape[1])
    return out


@functools.lru_cache(maxsize=1)
def _l2_cache_bytes() -> int:
    """The first CPU's L2 cache size from sysfs (Linux), else 1 MiB."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(root.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
                return int(size.rstrip("KMG")) * scale
    except (OSError, ValueError):
        pass
    return 1 << 20


def _packed_weight(k: cpu_codegen.Kernel, w_hh: Tensor, B: int, T: int, *, backward: bool
                   ) -> tuple[int, Tensor] | None:
    """``(compute address, packed buffer)`` of ``w_hh: [G*H, Hout]`` (contiguous) as the C
    loop's per-step product reads it: forward ``h [B, Hout] @ W_hh^T``, backward ``dhg [B,
    G*H] @ W_hh``; None below :data:`PACK_MIN_B`, :data:`PACK_MIN_T` or
    :data:`PACK_MIN_WEIGHT_BYTES`, where the loop runs on ``brgemm`` (:func:`time_loop_brgemm`)
    or without :func:`packed_gemm`. The buffer must stay bound
    until the loop returns."""
    if B < PACK_MIN_B or T < PACK_MIN_T or time_loop_brgemm(k, w_hh.dtype, B) is not None:
        return None
    least = _l2_cache_bytes() if PACK_MIN_WEIGHT_BYTES is None else PACK_MIN_WEIGHT_BYTES
    if w_hh.numel() * w_hh.element_size() <= least:
        return None
    pg = packed_gemm(k, w_hh.dtype)
    if pg is None:
        return None
    GH, HO = w_hh.shape
    n, kk = (HO, GH) if backward else (GH, HO)
    buf = torch.empty(pg.size(B, n, kk), dtype=torch.uint8)
    pg.pack(buf.data_ptr(), w_hh.data_ptr(), not backward, B, n, kk, HO)
    return pg.compute, buf


def _compact_mask(z: Tensor, T: int) -> tuple[Tensor, int, int, int]:
    """A zoneout mask ``z: [T, B, W]`` as ``(tensor, step stride, row stride, unit stride)``
    as the kernel reads it: ``z`` itself where it is one number broadcast to every step, row
    and unit (eval mode's rates: all strides 0, the kernel reads that number) or has unit
    stride along ``W`` (a drawn mask); else a copy with unit stride along ``W`` in which a
    dimension ``z`` broadcasts (stride 0) stays a stride of 0 instead of being copied out."""
    if z.dim() != 3 or z.shape[0] != T:
        raise ValueError(f"backend 'cpu': a zoneout mask must be [T={T}, B, W], got "
                         f"{tuple(z.shape)}")
    st = 0 if z.shape[0] == 1 else z.stride(0)                 # a size-1 dimension: stride 0
    sb = 0 if z.shape[1] == 1 else z.stride(1)
    sj = 1 if z.shape[2] == 1 else z.stride(2)                 # one unit: read as its own
    if sj == 1 or st == sb == sj == 0:
        return z, st, sb, sj
    zc = z if st != 0 else z.narrow(0, 0, 1)
    zc = (zc if sb != 0 else zc.narrow(1, 0, 1)).contiguous()
    return zc, (zc.stride(0) if st != 0 else 0), (zc.stride(1) if sb != 0 else 0), 1


def _compact_masks(masks, T: int) -> tuple[list[Tensor], tuple[int, ...]]:
    """:func:`_compact_mask` of each mask: the tensors, then the strides as the kernel's
    table takes them (every step stride, then every row stride, then every unit stride)."""
    packed = [_compact_mask(z, T) for z in masks]
    return [p[0] for p in packed], tuple(p[i] for i in (1, 2, 3) for p in packed)


def _table(k: cpu_codegen.Kernel, *, xg, hg, S, hin, out, cell_weights, zoneout, zstrides,
           h_mask, lengths, b_hh=None, b_ih=None, dxg=None, dhg=None, G=(), gout=None, dh=None,
           dweights=()) -> ctypes.Array:
    """The kernel's pointer table (``k.index``: name -> slot, see
    :func:`recur.ops.cpu_codegen._step_functions`): each tensor's address (NULL for None), the
    zoneout strides as integers."""
    index = k.index
    table = (ctypes.c_void_p * len(index))()          # every slot NULL until set
    for name, t in (("XG", xg), ("HG", hg), ("HIN", hin), ("BHH", b_hh), ("BIH", b_ih),
                    ("OUT", out), ("HM", h_mask), ("LEN", lengths), ("DXG", dxg),
                    ("DHG", dhg), ("GOUT", gout), ("DH", dh)):
        if t is not None:
            table[index[name]] = t.data_ptr()
    for prefix, tensors in (("S", S), ("PR", cell_weights), ("Z", zoneout), ("G", G),
                            ("DP", dweights)):
        for i, t in enumerate(tensors):
            table[index[prefix + str(i)]] = t.data_ptr()
    n = len(zoneout)
    for i in range(n):  # integers, not tensors
        table[index[f"ZST{i}"]] = zstrides[i]
        table[index[f"ZSB{i}"]] = zstrides[n + i]
        table[index[f"ZSJ{i}"]] = zstrides[2 * n + i]
    return table


def _double_backward(ctx, cell, reverse, xg, w_hh, b_hh, b_ih, state0, cell_weights, h_mask,
                     zoneout, lengths, gout, gfinal):
    need = ctx.needs_input_grad
    T, B = xg.shape[:2]
    zoneout = tuple(z.expand(T, B, z.shape[-1]) for z in zoneout)  # undo _compact_mask
    inputs = [xg, w_hh, b_hh, b_ih, *state0, *cell_weights]
    flags = need[1:5] + need[5:5 + len(state0) + len(cell_weights)]
    xg_b = xg if b_ih is None else xg + b_ih
    out, finals = scan_reference(cell, xg_b, w_hh, b_hh, tuple(state0), lengths=lengths,
                                 reverse=reverse, cell_weights=tuple(cell_weights), h_mask=h_mask,
                                 zoneout=tuple(zoneout) or None)
    outs = [out, *finals]
    grads_out = [gout, *gfinal]
    pairs = [(o, g) for o, g in zip(outs, grads_out) if g is not None]
    wanted = [t for t, f in zip(inputs, flags) if f and t is not None]
    got = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                   create_graph=True, allow_unused=True))
    res = [next(got) if f and t is not None else None for t, f in zip(inputs, flags)]
    grads = [None] + res
    grads += [None] * (len(need) - len(grads))
    return tuple(grads)


def scan_cpu(
    cell: Cell,
    xg: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    state0: States,
    *,
    w_hr: Tensor | None = None,
    lengths: Tensor | None = None,
    reverse: bool = False,
    cell_weights: tuple[Tensor, ...] = (),
    step_inputs: tuple[Tensor, ...] = (),
    h_mask: Tensor | None = None,
    zoneout: tuple[Tensor, ...] | None = None,
    b_ih: Tensor | None = None,
) -> tuple[Tensor, States]:
    """Run ``cell`` over time on the ``cpu`` backend; arguments and returns as
    :func:`recur.ops.scan_reference` (``xg: [T, B, G*H]``, states ``[B, H]``; returns
    ``out: [T, B, H]`` and the final states). The masks (``h_mask``, ``zoneout``) and
    ``lengths`` are constants: no gradient flows into them. ``b_ih: [G*H]`` (this backend's
    own): the update reads ``xg + b_ih``, the sum made per row inside the kernel, so a
    projection made without its bias needs no ``[T, B, G*H]`` pass to add it."""
    if w_hr is not None or step_inputs:
        raise ValueError("backend 'cpu' takes no projection (w_hr) and no step_inputs; "
                         f"got w_hr={'a tensor' if w_hr is not None else None}, "
                         f"{len(step_inputs)} step_inputs")
    dtype = xg.dtype
    if any(t is not None and t.dtype != dtype for t in (w_hh, b_hh, b_ih, *cell_weights)):
        for name, t in [("w_hh", w_hh), ("b_hh", b_hh), ("b_ih", b_ih),
                        *((f"cell_weights[{i}]", p) for i, p in enumerate(cell_weights))]:
            if t is not None and t.dtype != dtype:
                raise ValueError(f"backend 'cpu': {name} must have the input's dtype {dtype}, "
                                 f"got {t.dtype}")
    T, B, GX = xg.shape
    H = GX // cell.num_gates
    HO = w_hh.shape[1]
    # built at planning (cached); where it cannot be, kernel() raises with the reason
    k = (_built(cell, GX, HO, tuple(map(Tensor.size, cell_weights)), dtype)
         or kernel(cell, H, HO, GX, [tuple(p.shape) for p in cell_weights], dtype))
    if b_ih is not None and tuple(b_ih.shape) != (GX,):
        raise ValueError(f"backend 'cpu': b_ih must be [{GX}] (xg's last size), got "
                         f"{tuple(b_ih.shape)}")
    if B == 0:
        if b_ih is not None:
            xg = xg + b_ih
        return scan_reference(cell, xg, w_hh, b_hh, state0, lengths=lengths, reverse=reverse,
                              cell_weights=cell_weights, h_mask=h_mask, zoneout=zoneout)
    c = Tensor.contiguous
    state0 = tuple(c(s) for s in state0)
    rest = [*state0, *(c(p) for p in cell_weights)]
    if h_mask is not None:
        rest.append(c(h_mask.detach().to(dtype).expand(B, HO)))
    zstrides: tuple[int, ...] = ()
    if zoneout is not None:
        zs, zstrides = _compact_masks([z.detach().to(dtype) for z in zoneout], T)
        rest += zs
    if lengths is not None:
        rest.append(c(lengths.to(device="cpu", dtype=torch.int64)))
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (xg, w_hh, b_hh, b_ih, *state0,
                                                    *cell_weights))
    meta = (cell, k, reverse, cell.num_states, len(cell_weights), lengths is not None,
            h_mask is not None, zoneout is not None, grad, zstrides)
    res = _Scan.apply(meta, c(xg), c(w_hh), None if b_hh is None else c(b_hh),
                      None if b_ih is None else c(b_ih), *rest)
    return res[0], tuple(res[1:])


_KERNELS: dict = {}


def _built(cell: Cell, GX: int, HO: int, weight_shapes: tuple, dtype: torch.dtype
           ) -> cpu_codegen.Kernel | None:
    """:func:`kernel` at these sizes, or None where it cannot be built (cached per process:
    one dict lookup per call or step). ``weight_shapes``: tuples or ``torch.Size``."""
    key = (cell, GX, HO, weight_shapes, dtype)
    hit = _KERNELS.get(key, False)
    if hit is False:
        try:
            hit = kernel(cell, GX // cell.num_gates, HO, GX, list(weight_shapes), dtype)
        except ValueError:
            hit = None
        _KERNELS[key] = hit
    return hit


def _loop_kernel(cell: Cell, GX: int, HO: int, weight_shapes: tuple, dtype: torch.dtype):
    """``(kernel, gemm address)`` of the C time loop (:func:`scan_cpu_projected`, a step), or
    None where either is missing (:func:`_built`, :func:`time_loop_gemm`)."""
    k = _built(cell, GX, HO, weight_shapes, dtype)
    gemm = None if k is None else time_loop_gemm(k, dtype)
    return None if gemm is None else (k, gemm)


def input_norm_in_kernel(cell: Cell, lw: LayerWeights, *, b_ih_apart: bool = False
                         ) -> tuple[Cell, tuple[Tensor, ...]] | None:
    """``(with_input_norm(cell), (*lw.cell_weights, LN_x's weight, LN_x's bias))`` where the
    layer's ``xg_fn`` is LN_x (:class:`recur.cells.layernorm.InputNorm`) and that cell's
    kernel builds: a scan or step of it takes the raw projection ``x W_ih^T`` and runs LN_x
    per row inside the kernel, forward and backward; else None (LN_x stays a map of the
    projection). ``b_ih_apart``: where LN_x's bias holds ``b_ih``, the kernel reads the two
    apart instead of their sum (``with_input_norm(cell, b_ih_after=True)``, weights ``(...,
    LN_x's weight, LN_x's bias, b_ih)``): only parameters, for a kept streaming step."""
    if not isinstance(lw.xg_fn, InputNorm):
        return None
    if b_ih_apart and lw.xg_fn.parts is not None:
        fused = with_input_norm(cell, b_ih_after=True)
        weights = (*lw.cell_weights, lw.xg_fn.weight, *lw.xg_fn.parts)
    else:
        fused = with_input_norm(cell)
        weights = (*lw.cell_weights, lw.xg_fn.weight, lw.xg_fn.bias)
    if _built(fused, lw.w_ih.shape[0], lw.w_hh.shape[1], tuple(map(Tensor.size, weights)),
              lw.w_hh.dtype) is None:
        return None
    return fused, weights


#: bytes of input projection per block of :func:`scan_cpu_projected`: each block of steps is
#: projected, then run by the time loop, while it is still in cache
PROJ_BLOCK_BYTES = 1 << 20


def scan_cpu_projected(
    cell: Cell,
    x: Tensor,
    w_ih: Tensor,
    b_ih: Tensor | None,
    xg_fn,
    w_hh: Tensor,
    b_hh: Tensor | None,
    state0: States,
    *,
    lengths: Tensor | None = None,
    reverse: bool = False,
    cell_weights: tuple[Tensor, ...] = (),
    zoneout: tuple[Tensor, ...] | None = None,
) -> tuple[Tensor, States] | None:
    """One layer and direction without autograd, input projection included: ``xg =
    xg_fn(x W_ih^T + b_ih)`` (``xg_fn`` None: no map) and the time loop of :func:`scan_cpu`,
    block by block over time (:data:`PROJ_BLOCK_BYTES` of ``xg`` per block, one buffer
    reused), so the projection is read from cache and no ``[T, B, G*H]`` buffer is made; the
    states other than ``h`` live in a ring of one block. The result of projecting first,
    then :func:`scan_cpu`, to rounding (``x: [T, B, I]``, states ``[B, W_k]``; returns
    ``out: [T, B, W_0]`` and the final states, which are views of ``out`` and of the ring: the
    caller copies them, as :func:`recur.ops.executors.run_eager`'s stack does), or None where
    this path does not apply (a dtype or device the kernels do not take, no kernel, no BLAS
    in C); the caller then does that.
    The recurrent-dropout mask and projections are not taken here."""
    T, B, I = x.shape
    dtype = x.dtype
    if (dtype not in DTYPES or T == 0 or B == 0 or torch.is_grad_enabled()
            or any(t is not None and (t.dtype != dtype or not t.is_cpu)
                   for t in (x, w_ih, b_ih, w_hh, b_hh, *state0, *cell_weights))):
        return None
    GX, (GH, HO) = w_ih.shape[0], w_hh.shape
    w_hh = w_hh.contiguous()                                   # the loop reads its rows
    hit = _loop_kernel(cell, GX, HO, tuple(map(Tensor.size, cell_weights)), dtype)
    if hit is None:
        return None
    k, gemm = hit
    size = x.element_size()
    C = max(1, min(T, PROJ_BLOCK_BYTES // (B * GX * size)))  # steps per block
    W = [s.shape[-1] for s in state0]
    # blocks share one projection buffer; one block is the projection's own result
    xgbuf = torch.empty(C * B, GX, dtype=dtype) if C < T else None
    S0 = empty_large(T + 1, B, W[0], like=x)                   # h of every step: the output
    rings = [torch.empty(C + 1, B, w, dtype=dtype) for w in W[1:]]
    OUT = empty_large(T, B, W[0], like=x) if lengths is not None else None
    lens = lens_blk = None
    if lengths is not None:
        lens = lengths.to(device="cpu", dtype=torch.int64)
        lens_blk = torch.empty_like(lens)                      # lengths - the block's start
    zs, zstrides = [], ()
    if zoneout is not None:
        zs, zstrides = _compact_masks([z.to(dtype) for z in zoneout], T)
    # every tensor whose address is in the table stays bound to a name until the loop ends
    HG = torch.empty(1, B, GH, dtype=dtype)
    weights = tuple(p.contiguous() for p in cell_weights)
    bias = None if b_hh is None else b_hh.contiguous()
    # b_ih: added per row by the kernel (the projection then one mm, no pass for the bias),
    # unless a map of the projection (xg_fn) must see it first
    b_in = None if b_ih is None or xg_fn is not None else b_ih.contiguous()
    b_proj = b_ih if xg_fn is not None else None
    P = _table(k, xg=xgbuf, hg=HG, S=[S0, *rings], hin=None, out=OUT, cell_weights=weights,
               zoneout=zs, zstrides=zstrides, h_mask=None, lengths=lens_blk, b_hh=bias,
               b_ih=b_in)
    slot = k.index
    packed = _packed_weight(k, w_hh, B, T, backward=False)
    w = None if packed is not None else _forward_weight(k, w_hh, B)
    S0[T if reverse else 0] = state0[0]
    carry = list(state0[1:])                                    # states entering the block
    step_bytes = B * W[0] * size                                # one step of h in S0 / OUT
    starts = range(0, T, C)
    w_t = None                                                  # W_ih^T [I, GX] for brgemm
    if _mm_call(x.new_empty(()).expand(C * B, I), w_ih.t()) is not None:  # shapes only
        w_t = transposed(w_ih.contiguous())
    for t0 in (reversed(starts) if reverse else starts):
        n = min(C, T - t0)
        rows = x[t0:t0 + n].reshape(n * B, I)
        if w_t is not None:                                     # through mm: [n * B, GX]
            xb = mm(rows, w_t, out=None if xgbuf is None else xgbuf[:n * B])
            if b_proj is not None:
                xb += b_proj
        elif xgbuf is None:                                     # the whole sequence: [T, B, GX]
            xb = F.linear(x, w_ih, b_proj).contiguous()
        else:                                                   # steps t0..t0+n: [n * B, GX]
            xb = xgbuf[:n * B]
            if b_proj is None:
                torch.mm(rows, w_ih.t(), out=xb)
            else:
                torch.addmm(b_proj, rows, w_ih.t(), out=xb)
        if xg_fn is not None:
            xb = xg_fn(xb).contiguous()                         # a fresh map of the block
        P[slot["XG"]] = xb.data_ptr()
        enter = n if reverse else 0
        for ring, s in zip(rings, carry):
            ring[enter] = s
        P[slot["S0"]] = S0.data_ptr() + t0 * step_bytes        # block slots 0..n: steps
        if OUT is not None:                                     # t0..t0+n of h
            P[slot["OUT"]] = OUT.data_ptr() + t0 * step_bytes
        if lens is not None:
            torch.sub(lens, t0, out=lens_blk)
        for i, z in enumerate(zs):
            P[slot[f"Z{i}"]] = z.data_ptr() + t0 * zstrides[i] * size
        _seq_fwd(k, P, B, n, reverse, 0, gemm, packed, w)
        carry = [ring[0 if reverse else n] for ring in rings]
    out = OUT if OUT is not None else (S0[:T] if reverse else S0[1:])
    return out, (S0[0 if reverse else T], *carry)  # views: the caller copies them


class PreparedStep:
    """One step of a cell on fixed weights, masks and batch size, ready to call many times
    (streaming inference, :func:`prepare_step_cpu`): the kernel's pointer table, the state
    buffers ``[2, B, W_k]`` (in, out) and the gate buffer are made once.

    ``step(xg, states)``: ``xg: [B, G*H]`` contiguous, ``states`` each ``[B, W_k]`` -> the new
    states, each ``[B, W_k]``, *views of this object's buffers*, overwritten by the next call
    (copy them, e.g. with ``torch.stack``, before calling again).
    """

    __slots__ = ("_k", "_gemm", "_w", "_as_is", "_B", "_S", "_ins", "_outs", "_hin", "_h_mask",
                 "_table", "_xg_slot", "_keep")

    def __init__(self, k, gemm, w_hh, b_hh, widths, B, dtype, cell_weights, h_mask, zoneout):
        c = Tensor.contiguous
        self._k, self._gemm, self._B = k, gemm, B
        self._S = [torch.empty(2, B, w, dtype=dtype) for w in widths]
        self._ins, self._outs = [s[0] for s in self._S], tuple(s[1] for s in self._S)
        HO = w_hh.shape[1]
        self._h_mask = self._hin = None
        if h_mask is not None:
            self._h_mask = c(h_mask.to(dtype).expand(B, HO))
            self._hin = torch.empty(2, B, HO, dtype=dtype)
        zs, zstrides = [], ()
        if zoneout is not None:
            zs, zstrides = _compact_masks(
                [z.to(dtype).expand(B, w).unsqueeze(0) for z, w in zip(zoneout, widths)], 1)
        w, bias = c(w_hh), None if b_hh is None else c(b_hh)
        cell_weights = tuple(c(p) for p in cell_weights)
        hg = torch.empty(1, B, w_hh.shape[0], dtype=dtype)
        # every tensor whose address is in the table stays bound as long as this object
        self._keep = (w, bias, cell_weights, zs, hg)
        self._w, self._as_is = w.data_ptr(), _as_is_mode(True, dtype)
        self._table = _table(k, xg=None, hg=hg, S=self._S, hin=self._hin, out=None,
                             cell_weights=cell_weights, zoneout=zs, zstrides=zstrides,
                             h_mask=self._h_mask, lengths=None, b_hh=bias)
        self._xg_slot = k.index["XG"]

    def __call__(self, xg: Tensor, states: States) -> States:
        for buf, s in zip(self._ins, states):
            buf.copy_(s)
        if self._hin is not None:
            torch.mul(states[0], self._h_mask, out=self._hin[0])
        self._table[self._xg_slot] = xg.data_ptr()
        self._k.seq_fwd(self._table, self._B, 1, 0, 0, self._gemm, self._w, self._as_is, None,
                        None, None, 0)
        return self._outs


def prepare_step_cpu(
    cell: Cell,
    GX: int,
    w_hh: Tensor,
    b_hh: Tensor | None,
    widths: Sequence[int],
    B: int,
    dtype: torch.dtype,
    *,
    cell_weights: tuple[Tensor, ...] = (),
    h_mask: Tensor | None = None,
    zoneout: tuple[Tensor, ...] | None = None,
) -> PreparedStep | None:
    """A :class:`PreparedStep` of ``cell`` for batches of ``B`` in ``dtype`` (``GX`` = the
    width of the input projection, ``widths`` = the state widths ``W_k``; masks as in
    :func:`step_cpu`), or None where this path cannot run it: a tensor off the CPU or of
    another dtype, no C compiler, a cell the generator cannot translate, no BLAS gemm.
    The step reads ``w_hh``, ``b_hh`` and ``cell_weights`` in place at every call where they
    are contiguous, so it sees every write to them, with or without a version bump (no
    packed copy of ``W_hh``: one would go stale), and copies any that is not."""
    if (dtype not in DTYPES or not w_hh.is_cpu or w_hh.dtype != dtype or B == 0
            or any(p.dtype != dtype or not p.is_cpu for p in cell_weights)
            or (b_hh is not None and b_hh.dtype != dtype)):
        return None
    hit = _loop_kernel(cell, GX, w_hh.shape[1], tuple(map(Tensor.size, cell_weights)), dtype)
    if hit is None:
        return None
    return PreparedStep(*hit, w_hh, b_hh, widths, B, dtype, cell_weights, h_mask, zoneout)


def step_cpu(
    cell: Cell,
    xg: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    states: States,
    *,
    cell_weights: tuple[Tensor, ...] = (),
    h_mask: Tensor | None = None,
    zoneout: tuple[Tensor, ...] | None = None,
) -> States | None:
    """One step of ``cell`` without autograd (streaming inference): ``xg: [B, G*H]`` this
    step's input projection, ``states`` each ``[B, W_k]``, ``h_mask`` ``[B, Hout]`` (or
    broadcastable), ``zoneout`` one ``[B, H]`` mask per state (or broadcastable). Returns the
    new states (each ``[B, W_k]``), the numbers of :func:`recur.ops.reference.cell_step`, or
    None where this path cannot run the step (the caller then runs ``cell_step``): gradients
    wanted, a tensor off the CPU or of another dtype, no C compiler, a cell the generator
    cannot translate, no BLAS gemm for the C loop. A caller that steps many times with the
    same weights and masks keeps a :func:`prepare_step_cpu` instead."""
    if (torch.is_grad_enabled() or not xg.is_cpu or xg.dim() != 2 or xg.dtype != w_hh.dtype
            or torch.compiler.is_compiling()):
        return None
    step = prepare_step_cpu(cell, xg.shape[1], w_hh, b_hh, [s.shape[-1] for s in states],
                            xg.shape[0], xg.dtype, cell_weights=cell_weights, h_mask=h_mask,
                            zoneout=zoneout)
    return None if step is None else step(xg.contiguous(), states)
