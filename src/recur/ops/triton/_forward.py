"""Forward kernels: the whole sequence in one launch.

Layouts (all contiguous): ``xg [T, B, G*H]``, ``w_hh [G*H, HO]``, ``b_hh [G*H]``,
``w_hr [HO, H]``, ``h0 [B, HO]``, ``c0 [B, H]``, ``out [T, B, HO]``. Workspaces written when
``SAVE`` (training): ``hg_ws [T, B, G*H]`` fp32 recurrent pre-activations (bias included),
``sp_ws [T, NS, B, HM]`` fp32 states entering each step (``HM = max(H, HO)``),
``u_ws [T, B, H]`` fp32 unprojected h (projection only).

Gate k of a row lives at columns ``k*H .. k*H+H-1``; ``cell_fwd`` is the cell's Triton
pointwise (see ``recur.cells.triton_pointwise``), passed as a compile-time argument, so each
cell gets its own specialisation of the same kernel.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _load_gate(ptr, t, rb, rn, B, H, GH, k: tl.constexpr, G: tl.constexpr, mask):
    """Gate k of ``ptr[t, rb, :]`` as fp32 ``[BB, BN]`` (zeros when ``k >= G``)."""
    if k < G:
        offs = (t * B + rb[:, None]).to(tl.int64) * GH + k * H + rn[None, :]
        v = tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        v = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32)
    return v


@triton.jit
def _store_gate(ptr, v, t, rb, rn, B, H, GH, k: tl.constexpr, G: tl.constexpr, mask):
    if k < G:
        offs = (t * B + rb[:, None]).to(tl.int64) * GH + k * H + rn[None, :]
        tl.store(ptr + offs, v.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _load_wt(w_ptr, b_ptr, rk, rn, H, K, k: tl.constexpr, G: tl.constexpr,
             HAS_BIAS: tl.constexpr):
    """``W_k^T`` tile ``[BK, BN]`` (``W_k = w[k*H:(k+1)*H, :K]``) and its bias ``[BN]`` fp32."""
    if k < G:
        m = (rk[:, None] < K) & (rn[None, :] < H)
        w = tl.load(w_ptr + (k * H + rn[None, :]) * K + rk[:, None], mask=m, other=0.0)
        if HAS_BIAS:
            b = tl.load(b_ptr + k * H + rn, mask=rn < H, other=0.0).to(tl.float32)
        else:
            b = tl.zeros((rn.shape[0],), dtype=tl.float32)
    else:
        w = tl.zeros((rk.shape[0], rn.shape[0]), dtype=w_ptr.dtype.element_ty)
        b = tl.zeros((rn.shape[0],), dtype=tl.float32)
    return w, b


@triton.jit
def _mm(a, w, PREC: tl.constexpr):
    """``a @ w`` with ``a`` rounded to ``w``'s dtype and fp32 accumulation. ``PREC`` is
    ``tl.dot``'s ``input_precision``, or ``"emulate"``: the same rounding, product in fp32
    (the Triton interpreter's 16-bit ``tl.dot`` is not usable)."""
    if PREC == "emulate":
        v = tl.dot(a.to(w.dtype).to(tl.float32), w.to(tl.float32), input_precision="ieee")
    else:
        v = tl.dot(a.to(w.dtype), w, input_precision=PREC)
    return v


@triton.jit
def _rec(h, w, b, k: tl.constexpr, G: tl.constexpr, PREC: tl.constexpr):
    """``h @ W_k^T + b_k`` with fp32 accumulation (zeros when ``k >= G``)."""
    if k < G:
        r = _mm(h, w, PREC) + b[None, :]
    else:
        r = tl.zeros((h.shape[0], w.shape[1]), dtype=tl.float32)
    return r


@triton.jit
def _bias(b_ptr, rn, H, k: tl.constexpr, G: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Bias of gate k for units ``rn`` as fp32 ``[BN]`` (zeros without bias or gate)."""
    if HAS_BIAS and k < G:
        b = tl.load(b_ptr + k * H + rn, mask=rn < H, other=0.0).to(tl.float32)
    else:
        b = tl.zeros((rn.shape[0],), dtype=tl.float32)
    return b


@triton.jit
def _rec_stream(hbuf_ptr, slot, whh_ptr, rb, rn, B, H, K, b0, b1, b2, b3, G: tl.constexpr,
                BKC: tl.constexpr, PREC: tl.constexpr):
    """``h @ W_k^T + b_k`` for the units ``rn`` of every gate, streaming ``W_hh [G*H, K]``
    from global memory (L2) in chunks of ``BKC`` inputs; ``h`` is row block ``rb`` of
    ``hbuf[slot]`` (``[2, B, K]``)."""
    a0 = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32)
    a1 = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32)
    a2 = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32)
    a3 = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32)
    for k0 in range(0, K, BKC):
        rk = k0 + tl.arange(0, BKC)
        hk = tl.load(hbuf_ptr + (slot * B + rb[:, None]) * K + rk[None, :],
                     mask=(rb[:, None] < B) & (rk[None, :] < K), other=0.0, volatile=True)
        w, _ = _load_wt(whh_ptr, whh_ptr, rk, rn, H, K, 0, G, False)
        a0 += _mm(hk, w, PREC)
        if G > 1:
            w, _ = _load_wt(whh_ptr, whh_ptr, rk, rn, H, K, 1, G, False)
            a1 += _mm(hk, w, PREC)
        if G > 2:
            w, _ = _load_wt(whh_ptr, whh_ptr, rk, rn, H, K, 2, G, False)
            a2 += _mm(hk, w, PREC)
        if G > 3:
            w, _ = _load_wt(whh_ptr, whh_ptr, rk, rn, H, K, 3, G, False)
            a3 += _mm(hk, w, PREC)
    return a0 + b0[None, :], a1 + b1[None, :], a2 + b2[None, :], a3 + b3[None, :]


@triton.jit
def _proj_stream(ubuf_ptr, whr_ptr, rb, rp, B, H, HO, BKC: tl.constexpr, PREC: tl.constexpr):
    """Projection for the outputs ``rp``: ``u @ W_hr^T`` with ``u`` = row block ``rb`` of
    ``ubuf [B, H]`` (every program's units) and ``W_hr [HO, H]`` streamed in chunks of
    ``BKC`` hidden units: ``[BB, BP]`` fp32."""
    acc = tl.zeros((rb.shape[0], rp.shape[0]), dtype=tl.float32)
    for j0 in range(0, H, BKC):
        rj = j0 + tl.arange(0, BKC)
        a = tl.load(ubuf_ptr + rb[:, None] * H + rj[None, :],
                    mask=(rb[:, None] < B) & (rj[None, :] < H), other=0.0, volatile=True)
        w = tl.load(whr_ptr + rp[None, :] * H + rj[:, None],
                    mask=(rj[:, None] < H) & (rp[None, :] < HO), other=0.0)  # W_hr^T chunk
        acc += _mm(a, w, PREC)
    return acc


@triton.jit
def _zone(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, mask, ZONE: tl.constexpr,
          NS: tl.constexpr):
    """Zoneout masks of step t as fp32 ``[BB, BN]`` tiles ``(m0, m1)``: read from
    ``z*_ptr [T, B, H]`` (``ZONE == 1``) or the constant rates ``zp0, zp1`` (``ZONE == 2``,
    eval mode). ``m1`` is zeros for one-state cells."""
    if ZONE == 1:
        offs = (t * B + rb[:, None]).to(tl.int64) * H + rn[None, :]
        m0 = tl.load(z0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if NS > 1:
            m1 = tl.load(z1_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            m1 = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32)
    else:
        m0 = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32) + zp0
        m1 = tl.zeros((rb.shape[0], rn.shape[0]), dtype=tl.float32) + zp1
    return m0, m1


@triton.jit
def _zone_mix(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, mask, h, c, n0, n1,
              ZONE: tl.constexpr, NS: tl.constexpr):
    """Zoneout at step t: each unit keeps its previous state where the mask is set,
    ``n_k' = m_k * prev_k + (1 - m_k) * n_k`` (masks from :func:`_zone`)."""
    m0, m1 = _zone(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, mask, ZONE, NS)
    return m0 * h + (1.0 - m0) * n0, m1 * c + (1.0 - m1) * n1


@triton.jit
def _zone_split(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, mask, d0, d1,
                ZONE: tl.constexpr, NS: tl.constexpr):
    """Backward of :func:`_zone_mix`: the state gradients ``d0, d1`` split into the part
    reaching the new values ``(1 - m_k) d_k`` and the part carried to the previous state
    ``m_k d_k``; returns ``(d0', d1', dz0, dz1)``."""
    m0, m1 = _zone(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, mask, ZONE, NS)
    dz0 = m0 * d0
    dz1 = m1 * d1
    return d0 - dz0, d1 - dz1, dz0, dz1


# the projection's W_hr chunk (hidden units per chunk forward, outputs per chunk backward)
PROJ_CHUNK = tl.constexpr(64)


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _row_sum(r0, r1, r2, r3, G: tl.constexpr):
    """Sum over the columns of the first G tiles: ``[BB]``."""
    s = tl.sum(r0, axis=1)
    if G > 1:
        s += tl.sum(r1, axis=1)
    if G > 2:
        s += tl.sum(r2, axis=1)
    if G > 3:
        s += tl.sum(r3, axis=1)
    return s


@triton.jit
def _centre(r, mean, cm, k: tl.constexpr, G: tl.constexpr):
    """``r - mean`` on the valid entries ``cm`` of gate tile k, zero elsewhere (and for
    ``k >= G``)."""
    if k < G:
        v = tl.where(cm, r - mean[:, None], 0.0)
    else:
        v = tl.zeros_like(r)
    return v


@triton.jit
def _ln_stats(r0, r1, r2, r3, cm, n, G: tl.constexpr, EPS: tl.constexpr):
    """Layer-norm statistics of each row of the G gate tiles, over its ``n`` valid entries
    (``cm``): ``mean [BB]`` and ``rstd = 1 / sqrt(var + EPS) [BB]`` (two passes, biased
    variance, as ``torch.nn.functional.layer_norm``)."""
    mean = _row_sum(tl.where(cm, r0, 0.0), tl.where(cm, r1, 0.0), tl.where(cm, r2, 0.0),
                    tl.where(cm, r3, 0.0), G) / n
    d0 = _centre(r0, mean, cm, 0, G)
    d1 = _centre(r1, mean, cm, 1, G)
    d2 = _centre(r2, mean, cm, 2, G)
    d3 = _centre(r3, mean, cm, 3, G)
    var = _row_sum(d0 * d0, d1 * d1, d2 * d2, d3 * d3, G) / n
    return mean, 1.0 / tl.sqrt(var + EPS)


@triton.jit
def _ln_back_gate(a, n, m1, m2, rstd, cm, k: tl.constexpr, G: tl.constexpr):
    if k < G:
        v = tl.where(cm, rstd[:, None] * (a - m1[:, None] - n * m2[:, None]), 0.0)
    else:
        v = tl.zeros_like(a)
    return v


@triton.jit
def _ln_back(a0, a1, a2, a3, n0, n1, n2, n3, rstd, cm, cnt, G: tl.constexpr):
    """Backward of ``n = (r - mean) * rstd`` per row: given ``a_k = dL/dn_k`` (zero off
    ``cm``) and ``n_k``, ``dL/dr_k = rstd (a_k - mean(a) - n_k mean(a n))``, means over the
    ``cnt`` valid entries; zero off ``cm`` and for gates ``k >= G``."""
    m1 = _row_sum(a0, a1, a2, a3, G) / cnt
    m2 = _row_sum(a0 * n0, a1 * n1, a2 * n2, a3 * n3, G) / cnt
    return (_ln_back_gate(a0, n0, m1, m2, rstd, cm, 0, G),
            _ln_back_gate(a1, n1, m1, m2, rstd, cm, 1, G),
            _ln_back_gate(a2, n2, m1, m2, rstd, cm, 2, G),
            _ln_back_gate(a3, n3, m1, m2, rstd, cm, 3, G))


@triton.jit
def _ln_vectors(w_ptr, b_ptr, rn, H, G: tl.constexpr):
    """``LN_h``'s gain and bias for the units ``rn`` of each gate: ``g0..g3, e0..e3`` fp32
    ``[BN]`` (zeros for gates ``k >= G``)."""
    return (_bias(w_ptr, rn, H, 0, G, True), _bias(w_ptr, rn, H, 1, G, True),
            _bias(w_ptr, rn, H, 2, G, True), _bias(w_ptr, rn, H, 3, G, True),
            _bias(b_ptr, rn, H, 0, G, True), _bias(b_ptr, rn, H, 1, G, True),
            _bias(b_ptr, rn, H, 2, G, True), _bias(b_ptr, rn, H, 3, G, True))


@triton.jit
def _ln_normed(r0, r1, r2, r3, mean, rstd, cm, G: tl.constexpr):
    """``n_k = (r_k - mean) * rstd`` on the valid entries ``cm`` of each gate tile."""
    return (_centre(r0, mean, cm, 0, G) * rstd[:, None],
            _centre(r1, mean, cm, 1, G) * rstd[:, None],
            _centre(r2, mean, cm, 2, G) * rstd[:, None],
            _centre(r3, mean, cm, 3, G) * rstd[:, None])


@triton.jit
def _ln_scale(n0, n1, n2, n3, g0, g1, g2, g3, e0, e1, e2, e3):
    """``n_k * g_k + e_k`` per gate tile (gains and biases ``[BN]``)."""
    return (n0 * g0[None, :] + e0[None, :], n1 * g1[None, :] + e1[None, :],
            n2 * g2[None, :] + e2[None, :], n3 * g3[None, :] + e3[None, :])


@triton.jit
def _ln_apply(r0, r1, r2, r3, mean, rstd, cm, g0, g1, g2, g3, e0, e1, e2, e3,
              G: tl.constexpr):
    """``(r_k - mean) * rstd * g_k + e_k`` on the valid entries ``cm`` of each gate tile."""
    n0, n1, n2, n3 = _ln_normed(r0, r1, r2, r3, mean, rstd, cm, G)
    return _ln_scale(n0, n1, n2, n3, g0, g1, g2, g3, e0, e1, e2, e3)


@triton.jit
def _lnc_out_grads(x3, r3, chat, gc, ec, d0, keep):
    """Backward of ``h' = sigmoid(x3 + r3) tanh(chat gc + ec)`` given ``d0 = dL/dh'``: the
    gradient of the output gate's pre-activation and ``dy = dL/d(chat gc + ec)`` (zero off
    ``keep``)."""
    ty = _tanh(chat * gc[None, :] + ec[None, :])
    og = tl.sigmoid(x3 + r3)
    return d0 * ty * og * (1.0 - og), tl.where(keep, d0 * og * (1.0 - ty * ty), 0.0)


@triton.jit
def _publish2(st_ptr, slot, pid_n, NPN, rb, B, j: tl.constexpr, a, b):
    """Grid path: this program's row values ``a, b [BB]`` to ``st[slot, pid_n, rb, j:j+2]``
    (``st [2, NPN, B, 4]`` fp32), for the other programs of the batch tile to gather."""
    base = st_ptr + ((slot * NPN + pid_n) * B + rb) * 4 + j
    tl.store(base, a, mask=rb < B)
    tl.store(base + 1, b, mask=rb < B)


@triton.jit
def _gather_sum2(st_ptr, slot, NPN, rb, B, j: tl.constexpr):
    """Sums over the ``NPN`` programs, in program order (reproducible), of
    ``st[slot, :, rb, j]`` and ``st[slot, :, rb, j+1]``: two ``[BB]``."""
    s0 = tl.zeros((rb.shape[0],), dtype=tl.float32)
    s1 = tl.zeros((rb.shape[0],), dtype=tl.float32)
    for q in range(NPN):
        base = st_ptr + ((slot * NPN + q) * B + rb) * 4 + j
        s0 += tl.load(base, mask=rb < B, other=0.0, volatile=True)
        s1 += tl.load(base + 1, mask=rb < B, other=0.0, volatile=True)
    return s0, s1


@triton.jit
def _gather_moments(st_ptr, slot, NPN, rb, B, j: tl.constexpr, H, BN: tl.constexpr,
                    G: tl.constexpr):
    """Row mean and (biased) variance over all programs from each program's mean and sum
    of squared deviations ``st[slot, q, rb, j:j+2]`` over its ``G * min(BN, H - q*BN)``
    entries: Chan et al.'s pairwise combination, in program order (reproducible)."""
    n = 0.0
    mean = tl.zeros((rb.shape[0],), dtype=tl.float32)
    m2 = tl.zeros((rb.shape[0],), dtype=tl.float32)
    for q in range(NPN):
        base = st_ptr + ((slot * NPN + q) * B + rb) * 4 + j
        mq = tl.load(base, mask=rb < B, other=0.0, volatile=True)
        m2q = tl.load(base + 1, mask=rb < B, other=0.0, volatile=True)
        nq = (G * tl.minimum(BN, H - q * BN)).to(tl.float32)
        tot = n + nq
        delta = mq - mean
        mean = mean + delta * (nq / tot)
        m2 = m2 + m2q + delta * delta * (n * nq / tot)
        n = tot
    return mean, m2 / n


@triton.jit
def _local_moments(r0, r1, r2, r3, cm, cnt, G: tl.constexpr):
    """This program's row mean and sum of squared deviations over its ``cnt`` valid
    entries (``cm``) of the G gate tiles."""
    mean = _row_sum(tl.where(cm, r0, 0.0), tl.where(cm, r1, 0.0), tl.where(cm, r2, 0.0),
                    tl.where(cm, r3, 0.0), G) / cnt
    d0 = _centre(r0, mean, cm, 0, G)
    d1 = _centre(r1, mean, cm, 1, G)
    d2 = _centre(r2, mean, cm, 2, G)
    d3 = _centre(r3, mean, cm, 3, G)
    return mean, _row_sum(d0 * d0, d1 * d1, d2 * d2, d3 * d3, G)


@triton.jit
def _grid_sync(bar_ptr, target):
    """Grid barrier on a global counter (CUDA only; every program must be resident).

    Each program adds 1 once per step and spins until the counter reaches ``target``
    (= steps done x programs), so the counter never has to be reset inside the launch.
    """
    tl.debug_barrier()  # all threads of this program have issued their stores
    tl.atomic_add(bar_ptr, 1, sem="release", scope="gpu")
    cnt = tl.atomic_add(bar_ptr, 0, sem="acquire", scope="gpu")
    while cnt < target:
        cnt = tl.atomic_add(bar_ptr, 0, sem="acquire", scope="gpu")
    tl.debug_barrier()


@triton.jit
def fwd_small_kernel(
    xg_ptr, whh_ptr, bhh_ptr, whr_ptr, h0_ptr, c0_ptr, len_ptr,
    out_ptr, hn_ptr, cn_ptr, hg_ws, sp_ws, u_ws, hm_ptr, z0_ptr, z1_ptr, zp0, zp1,
    lnw_ptr, lnb_ptr, lncw_ptr, lncb_ptr, cs_ws,
    T, B, H, HO, HM,
    cell_fwd: tl.constexpr, G: tl.constexpr, NS: tl.constexpr, HAS_BIAS: tl.constexpr,
    HAS_LEN: tl.constexpr, PROJ: tl.constexpr, REVERSE: tl.constexpr, SAVE: tl.constexpr,
    HMASK: tl.constexpr, ZONE: tl.constexpr, LN: tl.constexpr, EPS: tl.constexpr,
    BB: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr,
):
    """One program per batch tile of ``BB`` rows owns all ``H`` units: no barrier.

    ``BH >= max(H, HO)`` is the padded width of every tile; ``W_hh`` (and ``W_hr``) are
    loaded once, before the time loop. ``HMASK``: ``hm [B, HO]`` multiplies ``h_{t-1}``
    before ``W_hh`` (recurrent dropout). ``ZONE`` (not with ``PROJ``): zoneout after the
    cell's update, masks from ``z0/z1 [T, B, H]`` (1) or constant rates ``zp0/zp1`` (2).
    ``LN`` (layer-norm cells, not with ``PROJ``; see :func:`_launch.forward`): 1 normalises
    ``h W_hh^T`` over its G*H entries (gain ``lnw``, bias ``lnb``) before the pointwise; 2
    also takes ``h' = sigmoid(gate 3) tanh(LN_c(c'))`` (gain ``lncw``, bias ``lncb``) with
    ``c'`` the pointwise's second state, saving ``LN_c``'s normalised ``c'`` in ``cs_ws``.
    """
    pid = tl.program_id(0)
    GH = G * H
    rb = pid * BB + tl.arange(0, BB)
    rn = tl.arange(0, BH)  # hidden unit (pointwise width H)
    rk = tl.arange(0, BH)  # recurrent input unit (width HO)
    bm = rb < B
    m_h = bm[:, None] & (rn[None, :] < H)
    m_o = bm[:, None] & (rn[None, :] < HO)

    w0, b0 = _load_wt(whh_ptr, bhh_ptr, rk, rn, H, HO, 0, G, HAS_BIAS)
    w1, b1 = _load_wt(whh_ptr, bhh_ptr, rk, rn, H, HO, 1, G, HAS_BIAS)
    w2, b2 = _load_wt(whh_ptr, bhh_ptr, rk, rn, H, HO, 2, G, HAS_BIAS)
    w3, b3 = _load_wt(whh_ptr, bhh_ptr, rk, rn, H, HO, 3, G, HAS_BIAS)
    if PROJ:
        # W_hr^T tile [BH (H), BH (HO)]
        wr = tl.load(whr_ptr + rn[None, :] * H + rk[:, None],
                     mask=(rk[:, None] < H) & (rn[None, :] < HO), other=0.0)
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

    h = tl.load(h0_ptr + rb[:, None] * HO + rn[None, :], mask=m_o, other=0.0).to(tl.float32)
    if NS > 1:
        c = tl.load(c0_ptr + rb[:, None] * H + rn[None, :], mask=m_h, other=0.0).to(tl.float32)
    else:
        c = tl.zeros((BB, BH), dtype=tl.float32)

    for step in range(T):
        if REVERSE:
            t = T - 1 - step
        else:
            t = step
        x0 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 0, G, m_h)
        x1 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 1, G, m_h)
        x2 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 2, G, m_h)
        x3 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 3, G, m_h)
        if HMASK:
            hin = h * hmk
        else:
            hin = h
        r0 = _rec(hin, w0, b0, 0, G, PREC)
        r1 = _rec(hin, w1, b1, 1, G, PREC)
        r2 = _rec(hin, w2, b2, 2, G, PREC)
        r3 = _rec(hin, w3, b3, 3, G, PREC)
        if SAVE:
            _store_gate(hg_ws, r0, t, rb, rn, B, H, GH, 0, G, m_h)
            _store_gate(hg_ws, r1, t, rb, rn, B, H, GH, 1, G, m_h)
            _store_gate(hg_ws, r2, t, rb, rn, B, H, GH, 2, G, m_h)
            _store_gate(hg_ws, r3, t, rb, rn, B, H, GH, 3, G, m_h)
            sp = sp_ws + ((t * NS) * B + rb[:, None]).to(tl.int64) * HM + rn[None, :]
            tl.store(sp, h, mask=m_o)
            if NS > 1:
                tl.store(sp + B * HM, c, mask=m_h)
        if LN > 0:
            mean, rstd = _ln_stats(r0, r1, r2, r3, m_h, G * H, G, EPS)
            r0, r1, r2, r3 = _ln_apply(r0, r1, r2, r3, mean, rstd, m_h, g0, g1, g2, g3,
                                       e0, e1, e2, e3, G)
        n0, n1 = cell_fwd(x0, x1, x2, x3, r0, r1, r2, r3, h, c)
        if LN == 2:
            cm = tl.sum(tl.where(m_h, n1, 0.0), axis=1) / H
            cd = tl.where(m_h, n1 - cm[:, None], 0.0)
            chat = cd * (1.0 / tl.sqrt(tl.sum(cd * cd, axis=1) / H + EPS))[:, None]
            if SAVE:
                tl.store(cs_ws + (t * B + rb[:, None]).to(tl.int64) * H + rn[None, :], chat,
                         mask=m_h)
            n0 = tl.sigmoid(x3 + r3) * _tanh(chat * gc[None, :] + ec[None, :])
        if ZONE > 0:
            n0, n1 = _zone_mix(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, m_h, h, c, n0, n1,
                               ZONE, NS)
        if PROJ:
            n0 = tl.where(m_h, n0, 0.0)
            if SAVE:
                tl.store(u_ws + (t * B + rb[:, None]).to(tl.int64) * H + rn[None, :], n0,
                         mask=m_h)
            n0 = _mm(n0, wr, PREC)
        n0 = tl.where(m_o, n0, 0.0)  # padded columns stay zero (and finite)
        n1 = tl.where(m_h, n1, 0.0)
        if HAS_LEN:
            valid = (t < lens)[:, None]
            h = tl.where(valid, n0, h)
            c = tl.where(valid, n1, c)
            o = tl.where(valid, h, 0.0)
        else:
            h = n0
            c = n1
            o = h
        tl.store(out_ptr + (t * B + rb[:, None]).to(tl.int64) * HO + rn[None, :],
                 o.to(out_ptr.dtype.element_ty), mask=m_o)

    tl.store(hn_ptr + rb[:, None] * HO + rn[None, :], h.to(hn_ptr.dtype.element_ty), mask=m_o)
    if NS > 1:
        tl.store(cn_ptr + rb[:, None] * H + rn[None, :], c.to(cn_ptr.dtype.element_ty),
                 mask=m_h)


@triton.jit
def fwd_grid_kernel(
    xg_ptr, whh_ptr, bhh_ptr, h0_ptr, c0_ptr, len_ptr,
    out_ptr, hn_ptr, cn_ptr, hg_ws, sp_ws, hbuf_ptr, bar_ptr,
    hm_ptr, z0_ptr, z1_ptr, zp0, zp1,
    lnw_ptr, lnb_ptr, lncw_ptr, lncb_ptr, cs_ws, st_ws, lnst_ws,
    whr_ptr, u_ws, ubuf_ptr,
    T, B, H, HO, HM,
    cell_fwd: tl.constexpr, G: tl.constexpr, NS: tl.constexpr, HAS_BIAS: tl.constexpr,
    HAS_LEN: tl.constexpr, REVERSE: tl.constexpr, SAVE: tl.constexpr,
    HMASK: tl.constexpr, ZONE: tl.constexpr, LN: tl.constexpr, EPS: tl.constexpr,
    STREAM: tl.constexpr, PROJ: tl.constexpr,
    BB: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr,
    PREC: tl.constexpr,
):
    """Large H (CUDA only): program ``(n, b)`` owns hidden units ``n*BN ..`` with all their
    gates, for batch tile ``b``, and the entries ``n*BP ..`` of h (``BP == BN`` without
    projection); the programs of one batch tile exchange h through ``hbuf [2, B, HO]`` fp32
    (double buffer; slot 0 holds h0) and meet at a grid barrier on ``bar_ptr[b]`` after every
    step. ``PROJ`` (``HO < H``, LSTM ``proj_size``): each program publishes its slice of the
    unprojected h (``u``) to ``ubuf [B, H]``, meets the others at one more barrier, and
    projects the whole ``u`` onto its ``BP`` outputs (``W_hr`` streamed from L2); not with
    ``ZONE`` or ``LN``. ``STREAM`` false: each
    program keeps its ``[BK, BN]`` slice of every gate's ``W_hh^T`` on chip (``BK >= HO``);
    true: it streams them from global memory (L2) each step in chunks of ``BK`` inputs (any
    H; for weights too large for shared memory). ``HMASK``: ``hbuf`` holds ``h * hm`` (the
    only reader of ``hbuf`` is the recurrent product). ``ZONE`` as in :func:`fwd_small_kernel`.
    ``LN`` as in :func:`fwd_small_kernel`: the row statistics of ``LN_h`` (and ``LN_c``) span
    all programs of the batch tile, so each program publishes its partial moments to
    ``st_ws [2, NPN, B, 4]``, meets the others at one more barrier per norm, and combines
    them in program order; with ``SAVE`` the statistics go to ``lnst_ws [T, B, 4]`` (mean and
    rstd of ``LN_h``, then of ``LN_c``) for the backward.
    """
    pid_n = tl.program_id(0)
    pid_b = tl.program_id(1)
    NPN = tl.num_programs(0)
    GH = G * H
    rb = pid_b * BB + tl.arange(0, BB)
    rn = pid_n * BN + tl.arange(0, BN)
    rp = pid_n * BP + tl.arange(0, BP)  # this program's entries of h (rp == rn without PROJ)
    rk = tl.arange(0, BK)
    bm = rb < B
    m_n = bm[:, None] & (rn[None, :] < H)
    m_p = bm[:, None] & (rp[None, :] < HO)
    m_k = bm[:, None] & (rk[None, :] < HO)

    if STREAM:
        b0 = _bias(bhh_ptr, rn, H, 0, G, HAS_BIAS)
        b1 = _bias(bhh_ptr, rn, H, 1, G, HAS_BIAS)
        b2 = _bias(bhh_ptr, rn, H, 2, G, HAS_BIAS)
        b3 = _bias(bhh_ptr, rn, H, 3, G, HAS_BIAS)
    else:
        # this program's slice of W_hh^T, read once: G tiles [BK, BN]
        w0, b0 = _load_wt(whh_ptr, bhh_ptr, rk, rn, H, HO, 0, G, HAS_BIAS)
        w1, b1 = _load_wt(whh_ptr, bhh_ptr, rk, rn, H, HO, 1, G, HAS_BIAS)
        w2, b2 = _load_wt(whh_ptr, bhh_ptr, rk, rn, H, HO, 2, G, HAS_BIAS)
        w3, b3 = _load_wt(whh_ptr, bhh_ptr, rk, rn, H, HO, 3, G, HAS_BIAS)
    if HAS_LEN:
        lens = tl.load(len_ptr + rb, mask=bm, other=0)
    if HMASK:  # the mask of this program's entries of h, [BB, BP]: hbuf gets h * mask
        hmk = tl.load(hm_ptr + rb[:, None] * HO + rp[None, :], mask=m_p, other=0.0)
        hmk = hmk.to(tl.float32)
    # barriers per step: one per norm, one for the projection, then the h exchange
    NSYNC: tl.constexpr = 1 + LN + PROJ
    if LN > 0:
        g0, g1, g2, g3, e0, e1, e2, e3 = _ln_vectors(lnw_ptr, lnb_ptr, rn, H, G)
        ncol = tl.minimum(BN, H - pid_n * BN)  # this program's hidden units
        st_m = bm & (rb * 0 + pid_n == 0)  # one program writes the saved statistics
    if LN == 2:
        gc = _bias(lncw_ptr, rn, H, 0, 1, True)
        ec = _bias(lncb_ptr, rn, H, 0, 1, True)

    h = tl.load(h0_ptr + rb[:, None] * HO + rp[None, :], mask=m_p, other=0.0).to(tl.float32)
    if NS > 1:
        c = tl.load(c0_ptr + rb[:, None] * H + rn[None, :], mask=m_n, other=0.0).to(tl.float32)
    else:
        c = tl.zeros((BB, BN), dtype=tl.float32)
    if PROJ:
        s0_in = tl.zeros((BB, BN), dtype=tl.float32)  # a projected cell's update ignores h

    for step in range(T):
        if REVERSE:
            t = T - 1 - step
        else:
            t = step
        slot = step % 2
        x0 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 0, G, m_n)
        x1 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 1, G, m_n)
        x2 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 2, G, m_n)
        x3 = _load_gate(xg_ptr, t, rb, rn, B, H, GH, 3, G, m_n)
        if STREAM:
            r0, r1, r2, r3 = _rec_stream(hbuf_ptr, slot, whh_ptr, rb, rn, B, H, HO, b0, b1,
                                         b2, b3, G, BK, PREC)
        else:
            hfull = tl.load(hbuf_ptr + (slot * B + rb[:, None]) * HO + rk[None, :], mask=m_k,
                            other=0.0, volatile=True)
            r0 = _rec(hfull, w0, b0, 0, G, PREC)
            r1 = _rec(hfull, w1, b1, 1, G, PREC)
            r2 = _rec(hfull, w2, b2, 2, G, PREC)
            r3 = _rec(hfull, w3, b3, 3, G, PREC)
        if SAVE:
            _store_gate(hg_ws, r0, t, rb, rn, B, H, GH, 0, G, m_n)
            _store_gate(hg_ws, r1, t, rb, rn, B, H, GH, 1, G, m_n)
            _store_gate(hg_ws, r2, t, rb, rn, B, H, GH, 2, G, m_n)
            _store_gate(hg_ws, r3, t, rb, rn, B, H, GH, 3, G, m_n)
            sp = sp_ws + ((t * NS) * B + rb[:, None]).to(tl.int64) * HM
            tl.store(sp + rp[None, :], h, mask=m_p)
            if NS > 1:
                tl.store(sp + B * HM + rn[None, :], c, mask=m_n)
        if LN > 0:
            lmean, lm2 = _local_moments(r0, r1, r2, r3, m_n, G * ncol, G)
            _publish2(st_ws, slot, pid_n, NPN, rb, B, 0, lmean, lm2)
            _grid_sync(bar_ptr + pid_b, (step * NSYNC + 1) * NPN)
            mean, var = _gather_moments(st_ws, slot, NPN, rb, B, 0, H, BN, G)
            rstd = 1.0 / tl.sqrt(var + EPS)
            if SAVE:
                tl.store(lnst_ws + (t * B + rb) * 4, mean, mask=st_m)
                tl.store(lnst_ws + (t * B + rb) * 4 + 1, rstd, mask=st_m)
            r0, r1, r2, r3 = _ln_apply(r0, r1, r2, r3, mean, rstd, m_n, g0, g1, g2, g3,
                                       e0, e1, e2, e3, G)
        if PROJ:
            n0, n1 = cell_fwd(x0, x1, x2, x3, r0, r1, r2, r3, s0_in, c)
        else:
            n0, n1 = cell_fwd(x0, x1, x2, x3, r0, r1, r2, r3, h, c)
        if LN == 2:
            lmean, lm2 = _local_moments(n1, n1, n1, n1, m_n, ncol, 1)
            _publish2(st_ws, slot, pid_n, NPN, rb, B, 2, lmean, lm2)
            _grid_sync(bar_ptr + pid_b, (step * NSYNC + 2) * NPN)
            cmean, cvar = _gather_moments(st_ws, slot, NPN, rb, B, 2, H, BN, 1)
            crstd = 1.0 / tl.sqrt(cvar + EPS)
            chat = tl.where(m_n, (n1 - cmean[:, None]) * crstd[:, None], 0.0)
            if SAVE:
                tl.store(lnst_ws + (t * B + rb) * 4 + 2, cmean, mask=st_m)
                tl.store(lnst_ws + (t * B + rb) * 4 + 3, crstd, mask=st_m)
                tl.store(cs_ws + (t * B + rb[:, None]).to(tl.int64) * H + rn[None, :], chat,
                         mask=m_n)
            n0 = tl.sigmoid(x3 + r3) * _tanh(chat * gc[None, :] + ec[None, :])
        if ZONE > 0:
            n0, n1 = _zone_mix(z0_ptr, z1_ptr, zp0, zp1, t, rb, rn, B, H, m_n, h, c, n0, n1,
                               ZONE, NS)
        n0 = tl.where(m_n, n0, 0.0)
        n1 = tl.where(m_n, n1, 0.0)
        if PROJ:  # u: publish this program's units, then project all of u onto rp
            if SAVE:
                tl.store(u_ws + (t * B + rb[:, None]).to(tl.int64) * H + rn[None, :], n0,
                         mask=m_n)
            tl.store(ubuf_ptr + rb[:, None] * H + rn[None, :], n0, mask=m_n)
            _grid_sync(bar_ptr + pid_b, (step * NSYNC + LN + 1) * NPN)
            n0 = tl.where(m_p, _proj_stream(ubuf_ptr, whr_ptr, rb, rp, B, H, HO, PROJ_CHUNK,
                                            PREC), 0.0)
        if HAS_LEN:
            valid = (t < lens)[:, None]
            h = tl.where(valid, n0, h)
            c = tl.where(valid, n1, c)
            o = tl.where(valid, h, 0.0)
        else:
            h = n0
            c = n1
            o = h
        tl.store(out_ptr + (t * B + rb[:, None]).to(tl.int64) * HO + rp[None, :],
                 o.to(out_ptr.dtype.element_ty), mask=m_p)
        if HMASK:
            hpub = h * hmk
        else:
            hpub = h
        tl.store(hbuf_ptr + ((1 - slot) * B + rb[:, None]) * HO + rp[None, :], hpub, mask=m_p)
        _grid_sync(bar_ptr + pid_b, (step + 1) * NSYNC * NPN)

    tl.store(hn_ptr + rb[:, None] * HO + rp[None, :], h.to(hn_ptr.dtype.element_ty),
             mask=m_p)
    if NS > 1:
        tl.store(cn_ptr + rb[:, None] * H + rn[None, :], c.to(cn_ptr.dtype.element_ty),
                 mask=m_n)
