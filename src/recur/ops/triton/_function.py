"""The autograd wrapper of the fused kernels."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _launch


class FusedScan(torch.autograd.Function):
    """``(xg, w_hh, b_hh, w_hr, h0, c0, ln_w, ln_b, lnc_w, lnc_b, lengths, cfg) -> (out,
    h_n[, c_n])`` with the fused kernels.

    Shapes: ``xg [T, B, G*H]``, ``w_hh [G*H, HO]``, ``b_hh [G*H]`` or None, ``w_hr [HO, H]``
    or None, ``h0 [B, HO]``, ``c0 [B, H]`` or None (one-state cells), ``lengths [B]`` int32
    or None; ``out [T, B, HO]``. Layer-norm cells (``cfg.norm`` ``"h"`` or ``"hc"``, see
    :class:`_launch.Norm`): ``ln_w, ln_b [G*H]`` (``b_hh`` is None: folded into ``ln_b``)
    and for ``"hc"`` ``lnc_w, lnc_b [H]``; all None otherwise. ``cfg``
    (:class:`_launch.ScanConfig`) holds the rest; its masks (recurrent dropout, zoneout) are
    constants: no gradient flows to them. First-order gradients only (use the reference
    backend for double backward).
    """

    @staticmethod
    def forward(ctx, xg: Tensor, w_hh: Tensor, b_hh: Tensor | None, w_hr: Tensor | None,
                h0: Tensor, c0: Tensor | None, ln_w: Tensor | None, ln_b: Tensor | None,
                lnc_w: Tensor | None, lnc_b: Tensor | None, lengths: Tensor | None,
                cfg: _launch.ScanConfig):
        save = any(ctx.needs_input_grad[:10])
        norm = None
        if cfg.norm is not None:
            norm = _launch.Norm(cfg.norm, ln_w.contiguous(), ln_b.contiguous(),
                                None if lnc_w is None else lnc_w.contiguous(),
                                None if lnc_b is None else lnc_b.contiguous(), cfg.eps)
        out, hn, cn, saved = _launch.forward(cfg.pw, cfg.G, cfg.NS, xg, w_hh, b_hh, w_hr, h0,
                                             c0, lengths, cfg.reverse, save, cfg.plan,
                                             cfg.masks, norm)
        ctx.set_materialize_grads(False)
        if save:
            ctx.save_for_backward(xg, w_hh, w_hr, lengths)
            ctx.ws = saved
            ctx.norm = norm
            ctx.cfg = cfg
            ctx.meta = (h0.dtype, None if c0 is None else c0.dtype, b_hh is not None)
        if cfg.NS > 1:
            return out, hn, cn
        return out, hn

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dhn, dcn=None):
        xg, w_hh, w_hr, lengths = ctx.saved_tensors
        h_dtype, c_dtype, has_bias = ctx.meta
        cfg = ctx.cfg
        need = ctx.needs_input_grad
        norm = ctx.norm
        dxg, dh0, dc0, dw_hh, db_hh, dw_hr, dnorm = _launch.backward(
            cfg.pw, cfg.G, cfg.NS, xg, w_hh, w_hr, lengths, cfg.reverse, ctx.ws, dout, dhn,
            dcn, cfg.plan, need_w=need[1], need_b=has_bias and need[2], masks=cfg.masks,
            norm=norm)
        dln = [None] * 4
        if norm is not None:
            refs = (norm.w, norm.b, norm.cw, norm.cb)
            for k, g in enumerate(dnorm):
                if need[6 + k]:
                    dln[k] = g.to(refs[k].dtype)
        return (
            dxg.to(xg.dtype) if need[0] else None,
            dw_hh.to(w_hh.dtype) if dw_hh is not None else None,
            db_hh.to(w_hh.dtype) if db_hh is not None else None,
            dw_hr.to(w_hr.dtype) if dw_hr is not None and need[3] else None,
            dh0.to(h_dtype) if need[4] else None,
            dc0.to(c_dtype) if dc0 is not None and need[5] else None,
            *dln,
            None, None,  # lengths, cfg
        )
