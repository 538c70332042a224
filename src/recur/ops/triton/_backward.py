"""Backward kernels: reverse time from the saved activations, one launch.

Per step (in the reverse of the forward's order), for the rows valid at that step::

    d_new0 = dh + dout[t]                       # grad of the new h (projected if PROJ)
    d_u    = d_new0 @ W_hr          (PROJ)      # grad of the unprojected h
    dx, dr, ds0, ds1 = cell_bwd(x_t, r_t, states_{t-1}, d_u, dc)
    dh     = ds0 + sum_k dr_k @ W_k             # W_k = w_hh[k*H:(k+1)*H]: W_hh^T applied
    dc     = ds1

Rows past their length pass ``dh, dc`` through unchanged and get zero ``dx, dr``. The kernel
writes ``dxg [T, B, G*H]``, ``dhg_ws [T, B, G*H]`` fp32 (the ``dr``), ``dhp_ws [T, B, HO]``
fp32 (``d_new0``, projection only), ``dh0 [B, HO]``, ``dc0 [B, H]``; the weight gradients
are GEMMs over those after the launch (see ``_launch.py``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._forward import (
    PROJ_CHUNK,
    _bias,
    _gather_sum2,
    _grid_sync,
    _ln_back,
    _ln_back_gate,
    _ln_normed,
    _ln_scale,
    _ln_stats,
    _ln_vectors,
    _lnc_out_grads,
    _load_gate,
    _mm,
    _publish2,
    _row_sum,
    _store_gate,
    _zone_split,
)


@triton.jit
def _load_w(w_ptr, rj, rk, H, K, k: tl.constexpr, G: tl.constexpr):
    """``W_k`` tile ``[BJ, BK]`` (rows = hidden units of gate k, columns = h inputs)."""
    if k < G:
        m = (rj[:, None] < H) & (rk[None, :] < K)
        w = tl.load(w_ptr + (k * H + rj[:, None]) * K + rk[None, :], mask=m, other=0.0)
    else:
        w = tl.zeros((rj.shape[0], rk.shape[0]), dtype=w_ptr.dtype.element_ty)
    return w


@triton.jit
def _back(dr, w, k: tl.constexpr, G: tl.constexpr, PREC: tl.constexpr):
    """``dr_k @ W_k`` in fp32 (zeros when ``k >= G``)."""
    if k < G:
        v = _mm(dr, w, PREC)
    else:
        v = tl.zeros((dr.shape[0], w.shape[1]), dtype=tl.float32)
    return v


@triton.jit
def _back_stream(drbuf_ptr, slot, whh_ptr, rb, rn, B, H, K, GH, G: tl.constexpr,
                 BKC: tl.constexpr, PREC: tl.constexpr):
    """``sum_k dr_k @ W_k`` for the inputs ``rn`` (of ``K``), with the whole ``dr`` (row block
    ``rb`` of ``drbuf[slot]``) and ``W_hh [G*H, K]`` streamed from global memory in chunks of
    ``BKC`` hidden units."""
    acc = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32)
    for j0 in range(0, H, BKC):
        rj = j0 + tl.arange(0, BKC)
        m_j = (rb[:, None] < B) & (rj[None, :] < H)
        base = drbuf_ptr + ((slot * B + rb[:, None]).to(tl.int64) * GH + rj[None, :])
        a = tl.load(base, mask=m_j, other=0.0, volatile=True)
        acc += _mm(a, _load_w(whh_ptr, rj, rn, H, K, 0, G), PREC)
        if G > 1:
            a = tl.load(base + H, mask=m_j, other=0.0, volatile=True)
            acc += _mm(a, _load_w(whh_ptr, rj, rn, H, K, 1, G), PREC)
        if G > 2:
            a = tl.load(base + 2 * H, mask=m_j, other=0.0, volatile=True)
            acc += _mm(a, _load_w(whh_ptr, rj, rn, H, K, 2, G), PREC)
        if G > 3:
            a = tl.load(base + 3 * H, mask=m_j, other=0.0, volatile=True)
            acc += _mm(a, _load_w(whh_ptr, rj, rn, H, K, 3, G), PREC)
    return acc


@triton.jit
def _proj_back_stream(dpbuf_ptr, whr_ptr, rb, rn, B, H, HO, BKC: tl.constexpr,
                      PREC: tl.constexpr):
    """Gradient of the unprojected h for the units ``rn``: ``d @ W_hr[:, rn]`` with ``d`` =
    row block ``rb`` of ``dpbuf [B, HO]`` (every program's outputs) and ``W_hr [HO, H]``
    streamed in chunks of ``BKC`` outputs: ``[BB, BN]`` fp32."""
    acc = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32)
    for p0 in range(0, HO, BKC):
        rq = p0 + tl.arange(0, BKC)
        a = tl.load(dpbuf_ptr + rb[:, None] * HO + rq[None, :],
                    mask=(rb[:, None] < B) & (rq[None, :] < HO), other=0.0, volatile=True)
        w = tl.load(whr_ptr + rq[:, None] * H + rn[None, :],
                    mask=(rq[:, None] < HO) & (rn[None, :] < H), other=0.0)
        acc += _mm(a, w, PREC)
    return acc


@triton.jit
def bwd_small_kernel(
    xg_ptr, whh_ptr, whr_ptr, len_ptr, dout_ptr, dhn_ptr, dcn_ptr,
    hg_ws, sp_ws, dxg_ptr, dhg_ws, dhp_ws, dh0_ptr, dc0_ptr,
    hm_ptr, z0_ptr, z1_ptr, zp0, zp1,
    lnw_ptr, lnb_ptr, lncw_ptr, lncb_ptr, dln_ws, dlc_ws,
    T, B, H, HO, HM,
    cell_fwd: tl.constexpr, cell_bwd: tl.constexpr, G: tl.constexpr, NS: tl.constexpr,
    HAS_LEN: tl.constexpr, PROJ: tl.constexpr, REVERSE: tl.constexpr, HAS_DOUT: tl.constexpr,
    HMASK: tl.constexpr, ZONE: tl.constexpr, LN: tl.constexpr, EPS: tl.constexpr,
    BB: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr,
):
    """One program per batch tile, all H units, ``W_hh`` (and ``W_hr``) loaded once.

    ``HMASK``: ``dh_{t-1}`` gets ``hm * (sum_k dr_k @ W_k)``. ``ZONE``: with ``s = m s_prev +
    (1 - m) s~``, the cell sees ``(1 - m) d`` and ``s_prev`` gets ``m d`` directly.
    ``LN`` as in the forward: the statistics are recomputed from the saved (raw) ``h W_hh^T``;
    ``dln_ws [T, B, G*H]`` gets the gradient of the normalised-and-scaled product and
    ``dlc_ws [T, B, H]`` (``LN == 2``) that of ``LN_c``'s output (the gain and bias gradients
    are reductions over them after the launch); ``dhg_ws`` gets the raw product's gradient.
    """
    pid = tl.program_id(0)
    GH = G * H
    rb = pid * BB + tl.arange(0, BB)
    rn = tl.arange(0, BH)
    bm = rb < B
    m_h = bm[:, None] & (rn[None, :] < H)
    m_o = bm[:, None] & (rn[None, :] < HO)

    w0 = _load_w(whh_ptr, rn, rn, H, HO, 0, G)
    w1 = _load_w(whh_ptr, rn, rn, H, HO, 1, G)
    w2 = _load_w(whh_ptr, rn, rn, H, HO, 2, G)
    w3 = _load_w(whh_ptr, rn, rn, H, HO, 3, G)
    if PROJ:
        # W_hr tile [BH (HO), BH (H)]
        wr = tl.load(whr_ptr + rn[:, None] * H + rn[None, :],
                     mask=(rn[:, None] < HO) & (rn[None, :] < H), other=0.0)
    if HAS_LEN:
        lens = tl.load(len_ptr + rb, mask=bm, other=0)
    if HMASK:
        hmk = tl.load(hm_ptr + rb[:, None] * HO + rn[None, :], mask=m_o, other=0.0)
        hmk = hmk.to(tl.float32)
    if LN > 0:
        g0, g1, g2, g3, e0, e1, e2, e3 = _ln_vectors(lnw_ptr, lnb_ptr, rn, H, G)
    if LN == 2:
        gc = _bias(lncw_ptr, rn, H, 0, 1, True)
        ec = _bias(lncb_ptr, rn, H, 0, 1, True)

    dh = tl.load(dhn_ptr + rb[:, None] * HO + rn[None, :], mask=m_o, other=0.0).to(tl.float32)
    if NS > 1:
        dc = tl.load(dcn_ptr + rb[:, None] * H + rn[None, :], mask=m_h, other=0.0)
        dc = dc.to(tl.float32)
    else:
        dc = tl.zeros((BB, BH), dtype=tl.float32)

    for step in range(T):
        if REVERSE:
            t = step
        else:
            t = T - 1 - step
        d0 = dh
        if HAS_DOUT:
            dy = tl.load(dout_ptr + (t * B + rb[:, None]).to(tl.int64) * HO + rn[None, :],
                         mask=m_o, other=0.0)
            d0 = d0 + dy.to(tl.float32)
        if HAS_LEN:
            valid = (t < lens)[:, None]
        else:
            valid = bm[:, None]
        if PROJ:
            tl.store(dhp_ws + (t * B + rb[:, None]).to(tl.int64) * HO + rn[None, :],
                     tl.where(valid, d0, 0.0), mask=m_o)
            d0 = _mm(d0, wr, PREC)
        x0 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 0, G, m_h)
        x1 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 1, G, m_h)
        x2 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 2, G, m_h)
        x3 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 3, G, m_h)
        r0 = _load_gate(hg_ws, t, rb, rn, B, H, GH, 0, G, m_h)
        r1 = _load_gate(hg_ws, t, rb, rn, B, H, GH, 1, G, m_h)
        r2 = _load_gate(hg_ws, t, rb, rn, B, H, GH, 2, G, m_h)
        r3 = _load_gate(hg_ws, t, rb, rn, B, H, GH, 3, G, m_h)
        sp = sp_ws + ((t * NS) * B + rb[:, None]).to(tl.int64) * HM + rn[None, :]
        s0 = tl.load(sp, mask=m_o, other=0.0)
        if NS > 1:
            s1 = tl.load(sp + B * HM, mask=m_h, other=0.0)
        else:
            s1 = tl.zeros((BB, BH), dtype=tl.float32)
        d1 = dc
        if ZONE > 0:
            d0, d1, dz0, dz1 = _zone_split(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, m_h, d0,
                                           d1, ZONE, NS)
        vh = valid & m_h
        if LN > 0:
            mean, rstd = _ln_stats(r0, r1, r2, r3, m_h, G * H, G, EPS)
            n0, n1, n2, n3 = _ln_normed(r0, r1, r2, r3, mean, rstd, m_h, G)
            r0, r1, r2, r3 = _ln_scale(n0, n1, n2, n3, g0, g1, g2, g3, e0, e1, e2, e3)
        if LN == 2:
            # h' = sigmoid(o) tanh(y), y = chat gc + ec, chat = LN_c(c'): d0 flows to o and,
            # through chat, into c' (joining d1); the pointwise then sees d0 = 0
            _, cn = cell_fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1)
            cmean = tl.sum(tl.where(m_h, cn, 0.0), axis=1) / H
            cd = tl.where(m_h, cn - cmean[:, None], 0.0)
            crstd = 1.0 / tl.sqrt(tl.sum(cd * cd, axis=1) / H + EPS)
            chat = cd * crstd[:, None]
            do_pre, dyc = _lnc_out_grads(x3, r3, chat, gc, ec, d0, vh)
            tl.store(dlc_ws + (t * B + rb[:, None]).to(tl.int64) * H + rn[None, :], dyc,
                     mask=m_h)
            a = dyc * gc[None, :]
            am1 = tl.sum(a, axis=1) / H
            am2 = tl.sum(a * chat, axis=1) / H
            d1 = d1 + tl.where(m_h, crstd[:, None] * (a - am1[:, None] - chat * am2[:, None]),
                               0.0)
            d0 = tl.zeros_like(d0)
        dx0, dx1, dx2, dx3, dr0, dr1, dr2, dr3, ds0, ds1 = cell_bwd(
            x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1)
        if LN == 2:
            dx3 = dx3 + do_pre
            dr3 = dr3 + do_pre
        if ZONE > 0:
            ds0 = ds0 + dz0
            ds1 = ds1 + dz1
        # invalid rows and padded columns: zero (keeps the products below finite)
        dr0 = tl.where(vh, dr0, 0.0)
        dr1 = tl.where(vh, dr1, 0.0)
        dr2 = tl.where(vh, dr2, 0.0)
        dr3 = tl.where(vh, dr3, 0.0)
        if LN > 0:
            # dr_k: gradient of the normalised, scaled product; to the raw product
            _store_gate(dln_ws, dr0, t, rb, rn, B, H, GH, 0, G, m_h)
            _store_gate(dln_ws, dr1, t, rb, rn, B, H, GH, 1, G, m_h)
            _store_gate(dln_ws, dr2, t, rb, rn, B, H, GH, 2, G, m_h)
            _store_gate(dln_ws, dr3, t, rb, rn, B, H, GH, 3, G, m_h)
            dr0, dr1, dr2, dr3 = _ln_back(dr0 * g0[None, :], dr1 * g1[None, :],
                                          dr2 * g2[None, :], dr3 * g3[None, :],
                                          n0, n1, n2, n3, rstd, m_h, G * H, G)
        _store_gate(dxg_ptr, tl.where(vh, dx0, 0.0), t, rb, rn, B, H, GH, 0, G, m_h)
        _store_gate(dxg_ptr, tl.where(vh, dx1, 0.0), t, rb, rn, B, H, GH, 1, G, m_h)
        _store_gate(dxg_ptr, tl.where(vh, dx2, 0.0), t, rb, rn, B, H, GH, 2, G, m_h)
        _store_gate(dxg_ptr, tl.where(vh, dx3, 0.0), t, rb, rn, B, H, GH, 3, G, m_h)
        _store_gate(dhg_ws, dr0, t, rb, rn, B, H, GH, 0, G, m_h)
        _store_gate(dhg_ws, dr1, t, rb, rn, B, H, GH, 1, G, m_h)
        _store_gate(dhg_ws, dr2, t, rb, rn, B, H, GH, 2, G, m_h)
        _store_gate(dhg_ws, dr3, t, rb, rn, B, H, GH, 3, G, m_h)
        dprev = (_back(dr0, w0, 0, G, PREC) + _back(dr1, w1, 1, G, PREC)
                 + _back(dr2, w2, 2, G, PREC) + _back(dr3, w3, 3, G, PREC))
        if HMASK:
            dprev = dprev * hmk
        dprev = tl.where(m_o, dprev + ds0, 0.0)
        dh = tl.where(valid, dprev, dh)
        dc = tl.where(valid & m_h, ds1, dc)

    tl.store(dh0_ptr + rb[:, None] * HO + rn[None, :], dh.to(dh0_ptr.dtype.element_ty),
             mask=m_o)
    if NS > 1:
        tl.store(dc0_ptr + rb[:, None] * H + rn[None, :], dc.to(dc0_ptr.dtype.element_ty),
                 mask=m_h)


@triton.jit
def bwd_grid_kernel(
    xg_ptr, whh_ptr, len_ptr, dout_ptr, dhn_ptr, dcn_ptr,
    hg_ws, sp_ws, dxg_ptr, dhg_ws, dh0_ptr, dc0_ptr, drbuf_ptr, bar_ptr,
    hm_ptr, z0_ptr, z1_ptr, zp0, zp1,
    lnw_ptr, lnb_ptr, lncw_ptr, lncb_ptr, dln_ws, dlc_ws, st_ws, lnst_ws,
    whr_ptr, dhp_ws, dpbuf_ptr,
    T, B, H, HO, HM,
    cell_fwd: tl.constexpr, cell_bwd: tl.constexpr, G: tl.constexpr, NS: tl.constexpr,
    HAS_LEN: tl.constexpr, REVERSE: tl.constexpr, HAS_DOUT: tl.constexpr,
    HMASK: tl.constexpr, ZONE: tl.constexpr, LN: tl.constexpr, EPS: tl.constexpr,
    STREAM: tl.constexpr, PROJ: tl.constexpr,
    BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr,
    PREC: tl.constexpr,
):
    """Large H (CUDA only), mirror of ``fwd_grid_kernel``: program ``(n, b)`` owns hidden
    units ``n*BN ..``. Each step it publishes its ``dr`` (all gates) to
    ``drbuf [2, B, G*H]`` fp32, meets the other programs of its batch tile at the grid
    barrier, then forms its own slice of ``dh = sum_k dr_k @ W_k`` from the whole ``dr``
    with its column slice of ``W_hh`` (``[BK, BP]`` per gate, read once) for its entries
    ``n*BP ..`` of h. ``PROJ``: the gradient of h (its ``BP`` entries per program) is
    published to ``dpbuf [B, HO]`` and, after one more barrier, each program forms the
    gradient of its units of the unprojected h from all of it (``W_hr`` streamed);
    ``dhp_ws [T, B, HO]`` gets it for ``dW_hr``.
    ``HMASK`` and ``ZONE`` as in :func:`bwd_small_kernel`. ``STREAM``: ``W_hh`` is streamed
    from global memory in chunks of ``BK`` rows each step instead of kept on chip.
    ``LN``: the statistics come from the forward's ``lnst_ws``; the row means the layer
    norms' backward needs are exchanged through ``st_ws`` at one more barrier per norm.
    """
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1)
    NPN = tl.num_programs(0)
    GH = G * H
    rb = pid_b * BB + tl.arange(0, BB)
    rn = pid_n * BN + tl.arange(0, BN)
    rp = pid_n * BP + tl.arange(0, BP)  # this program's entries of h (rp == rn without PROJ)
    rj = tl.arange(0, BK)
    bm = rb < B
    m_n = bm[:, None] & (rn[None, :] < H)
    m_p = bm[:, None] & (rp[None, :] < HO)
    m_j = bm[:, None] & (rj[None, :] < H)

    if not STREAM:
        w0 = _load_w(whh_ptr, rj, rp, H, HO, 0, G)
        w1 = _load_w(whh_ptr, rj, rp, H, HO, 1, G)
        w2 = _load_w(whh_ptr, rj, rp, H, HO, 2, G)
        w3 = _load_w(whh_ptr, rj, rp, H, HO, 3, G)
    if HAS_LEN:
        lens = tl.load(len_ptr + rb, mask=bm, other=0)
    if HMASK:  # this program's slice of the mask, [BB, BP]
        hmk = tl.load(hm_ptr + rb[:, None] * HO + rp[None, :], mask=m_p, other=0.0)
        hmk = hmk.to(tl.float32)
    NSYNC: tl.constexpr = 1 + LN + PROJ
    if LN > 0:
        g0, g1, g2, g3, e0, e1, e2, e3 = _ln_vectors(lnw_ptr, lnb_ptr, rn, H, G)
    if LN == 2:
        gc = _bias(lncw_ptr, rn, H, 0, 1, True)
        ec = _bias(lncb_ptr, rn, H, 0, 1, True)

    dh = tl.load(dhn_ptr + rb[:, None] * HO + rp[None, :], mask=m_p, other=0.0).to(tl.float32)
    if NS > 1:
        dc = tl.load(dcn_ptr + rb[:, None] * H + rn[None, :], mask=m_n, other=0.0)
        dc = dc.to(tl.float32)
    else:
        dc = tl.zeros((BB, BN), dtype=tl.float32)

    for step in range(T):
        if REVERSE:
            t = step
        else:
            t = T - 1 - step
        slot = step % 2
        d0 = dh
        if HAS_DOUT:
            dy = tl.load(dout_ptr + (t * B + rb[:, None]).to(tl.int64) * HO + rp[None, :],
                         mask=m_p, other=0.0)
            d0 = d0 + dy.to(tl.float32)
        if HAS_LEN:
            valid = (t < lens)[:, None]
        else:
            valid = bm[:, None]
        if PROJ:  # d0: gradient of this program's entries of h -> of its units of u
            tl.store(dhp_ws + (t * B + rb[:, None]).to(tl.int64) * HO + rp[None, :],
                     tl.where(valid, d0, 0.0), mask=m_p)
            tl.store(dpbuf_ptr + rb[:, None] * HO + rp[None, :], d0, mask=m_p)
            _grid_sync(bar_ptr + pid_b, (step * NSYNC + 1) * NPN)
            d0 = _proj_back_stream(dpbuf_ptr, whr_ptr, rb, rn, B, H, HO, PROJ_CHUNK, PREC)
        x0 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 0, G, m_n)
        x1 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 1, G, m_n)
        x2 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 2, G, m_n)
        x3 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 3, G, m_n)
        r0 = _load_gate(hg_ws, t, rb, rn, B, H, GH, 0, G, m_n)
        r1 = _load_gate(hg_ws, t, rb, rn, B, H, GH, 1, G, m_n)
        r2 = _load_gate(hg_ws, t, rb, rn, B, H, GH, 2, G, m_n)
        r3 = _load_gate(hg_ws, t, rb, rn, B, H, GH, 3, G, m_n)
        sp = sp_ws + ((t * NS) * B + rb[:, None]).to(tl.int64) * HM + rn[None, :]
        if PROJ:
            s0 = tl.zeros((BB, BN), dtype=tl.float32)  # a projected cell's update ignores h
        else:
            s0 = tl.load(sp, mask=m_n, other=0.0)
        if NS > 1:
            s1 = tl.load(sp + B * HM, mask=m_n, other=0.0)
        else:
            s1 = tl.zeros((BB, BN), dtype=tl.float32)
        d1 = dc
        if ZONE > 0:
            d0, d1, dz0, dz1 = _zone_split(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, m_n, d0,
                                           d1, ZONE, NS)
        vn = valid & m_n
        if LN > 0:
            st = lnst_ws + (t * B + rb) * 4
            mean = tl.load(st, mask=bm, other=0.0)
            rstd = tl.load(st + 1, mask=bm, other=0.0)
            n0, n1, n2, n3 = _ln_normed(r0, r1, r2, r3, mean, rstd, m_n, G)
            r0, r1, r2, r3 = _ln_scale(n0, n1, n2, n3, g0, g1, g2, g3, e0, e1, e2, e3)
        if LN == 2:  # as in bwd_small_kernel, with the row means over all programs
            _, cn = cell_fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0, s1)
            cmean = tl.load(st + 2, mask=bm, other=0.0)
            crstd = tl.load(st + 3, mask=bm, other=0.0)
            chat = tl.where(m_n, (cn - cmean[:, None]) * crstd[:, None], 0.0)
            do_pre, dyc = _lnc_out_grads(x3, r3, chat, gc, ec, d0, vn)
            tl.store(dlc_ws + (t * B + rb[:, None]).to(tl.int64) * H + rn[None, :], dyc,
                     mask=m_n)
            a = dyc * gc[None, :]
            _publish2(st_ws, slot, pid_n, NPN, rb, B, 0, tl.sum(a, axis=1),
                      tl.sum(a * chat, axis=1))
            _grid_sync(bar_ptr + pid_b, (step * NSYNC + PROJ + 1) * NPN)
            am1, am2 = _gather_sum2(st_ws, slot, NPN, rb, B, 0)
            d1 = d1 + tl.where(m_n, crstd[:, None] * (a - am1[:, None] / H
                                                       - chat * am2[:, None] / H), 0.0)
            d0 = tl.zeros_like(d0)
        dx0, dx1, dx2, dx3, dr0, dr1, dr2, dr3, ds0, ds1 = cell_bwd(
            x0, x1, x2, x3, r0, r1, r2, r3, s0, s1, d0, d1)
        if LN == 2:
            dx3 = dx3 + do_pre
            dr3 = dr3 + do_pre
        if ZONE > 0:
            ds0 = ds0 + dz0
            ds1 = ds1 + dz1
        dr0 = tl.where(vn, dr0, 0.0)
        dr1 = tl.where(vn, dr1, 0.0)
        dr2 = tl.where(vn, dr2, 0.0)
        dr3 = tl.where(vn, dr3, 0.0)
        if LN > 0:
            _store_gate(dln_ws, dr0, t, rb, rn, B, H, GH, 0, G, m_n)
            _store_gate(dln_ws, dr1, t, rb, rn, B, H, GH, 1, G, m_n)
            _store_gate(dln_ws, dr2, t, rb, rn, B, H, GH, 2, G, m_n)
            _store_gate(dln_ws, dr3, t, rb, rn, B, H, GH, 3, G, m_n)
            a0 = dr0 * g0[None, :]
            a1 = dr1 * g1[None, :]
            a2 = dr2 * g2[None, :]
            a3 = dr3 * g3[None, :]
            _publish2(st_ws, slot, pid_n, NPN, rb, B, 2, _row_sum(a0, a1, a2, a3, G),
                      _row_sum(a0 * n0, a1 * n1, a2 * n2, a3 * n3, G))
            _grid_sync(bar_ptr + pid_b, (step * NSYNC + PROJ + LN) * NPN)
            m1, m2 = _gather_sum2(st_ws, slot, NPN, rb, B, 2)
            m1 = m1 / GH
            m2 = m2 / GH
            dr0 = _ln_back_gate(a0, n0, m1, m2, rstd, m_n, 0, G)
            dr1 = _ln_back_gate(a1, n1, m1, m2, rstd, m_n, 1, G)
            dr2 = _ln_back_gate(a2, n2, m1, m2, rstd, m_n, 2, G)
            dr3 = _ln_back_gate(a3, n3, m1, m2, rstd, m_n, 3, G)
        _store_gate(dxg_ptr, tl.where(vn, dx0, 0.0), t, rb, rn, B, H, GH, 0, G, m_n)
        _store_gate(dxg_ptr, tl.where(vn, dx1, 0.0), t, rb, rn, B, H, GH, 1, G, m_n)
        _store_gate(dxg_ptr, tl.where(vn, dx2, 0.0), t, rb, rn, B, H, GH, 2, G, m_n)
        _store_gate(dxg_ptr, tl.where(vn, dx3, 0.0), t, rb, rn, B, H, GH, 3, G, m_n)
        _store_gate(dhg_ws, dr0, t, rb, rn, B, H, GH, 0, G, m_n)
        _store_gate(dhg_ws, dr1, t, rb, rn, B, H, GH, 1, G, m_n)
        _store_gate(dhg_ws, dr2, t, rb, rn, B, H, GH, 2, G, m_n)
        _store_gate(dhg_ws, dr3, t, rb, rn, B, H, GH, 3, G, m_n)
        # publish dr to slot `slot` of drbuf ([2, B, G*H]), then gather all of it
        _store_gate(drbuf_ptr, dr0, slot, rb, rn, B, H, GH, 0, G, m_n)
        _store_gate(drbuf_ptr, dr1, slot, rb, rn, B, H, GH, 1, G, m_n)
        _store_gate(drbuf_ptr, dr2, slot, rb, rn, B, H, GH, 2, G, m_n)
        _store_gate(drbuf_ptr, dr3, slot, rb, rn, B, H, GH, 3, G, m_n)
        _grid_sync(bar_ptr + pid_b, (step + 1) * NSYNC * NPN)
        if STREAM:
            dprev = _back_stream(drbuf_ptr, slot, whh_ptr, rb, rp, B, H, HO, GH, G, BK, PREC)
        else:
            dprev = tl.zeros((BB, BP), dtype=tl.float32)
            base = drbuf_ptr + ((slot * B + rb[:, None]).to(tl.int64) * GH + rj[None, :])
            a0 = tl.load(base, mask=m_j, other=0.0, volatile=True)
            dprev += _back(a0, w0, 0, G, PREC)
            if G > 1:
                a1 = tl.load(base + H, mask=m_j, other=0.0, volatile=True)
                dprev += _back(a1, w1, 1, G, PREC)
            if G > 2:
                a2 = tl.load(base + 2 * H, mask=m_j, other=0.0, volatile=True)
                dprev += _back(a2, w2, 2, G, PREC)
            if G > 3:
                a3 = tl.load(base + 3 * H, mask=m_j, other=0.0, volatile=True)
                dprev += _back(a3, w3, 3, G, PREC)
        if HMASK:
            dprev = dprev * hmk
        if PROJ:
            dprev = tl.where(m_p, dprev, 0.0)
        else:
            dprev = tl.where(m_n, dprev + ds0, 0.0)
        dh = tl.where(valid, dprev, dh)
        dc = tl.where(vn, ds1, dc)

    tl.store(dh0_ptr + rb[:, None] * HO + rp[None, :], dh.to(dh0_ptr.dtype.element_ty),
             mask=m_p)
    if NS > 1:
        tl.store(dc0_ptr + rb[:, None] * H + rn[None, :], dc.to(dc0_ptr.dtype.element_ty),
                 mask=m_n)
