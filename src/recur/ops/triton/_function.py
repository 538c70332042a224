"""The autograd wrapper of the fused kernels."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _launch


class FusedScan(torch.autograd.Function):
    """``(xg, w_hh, b_hh, w_hr, h0, c0, ln_w, ln_b, lnc_w, lnc_b) -> (out, h_n[, c_n])`` with
    the fused kernels.

    Shapes: ``xg [T, B, G*H]``, ``w_hh [G*H, HO]``, ``b_hh [G*H]`` or None, ``w_hr [HO, H]``
    or None, ``h0 [B, HO]``, ``c0 [B, H]`` or None (one-state cells); ``out [T, B, HO]``.
    Layer-norm cells (``ln_mode`` 1 or 2, see :class:`_launch.Norm`): ``ln_w, ln_b [G*H]``
    (``b_hh`` is None: folded into ``ln_b``) and for mode 2 ``lnc_w, lnc_b [H]``; all None
    otherwise. ``masks`` (recurrent dropout, zoneout) are constants: no gradient flows to
    them. First-order gradients only (use the reference backend for double backward).
    """

    @staticmethod
    def forward(ctx, xg: Tensor, w_hh: Tensor, b_hh: Tensor | None, w_hr: Tensor | None,
                h0: Tensor, c0: Tensor | None, ln_w: Tensor | None, ln_b: Tensor | None,
                lnc_w: Tensor | None, lnc_b: Tensor | None, lengths: Tensor | None,
                reverse: bool, pw, G: int, NS: int, p: _launch.Plan, masks: _launch.Masks,
                ln_mode: int = 0, eps: float = 1e-5):
        save = any(ctx.needs_input_grad[:10])
        norm = None
        if ln_mode:
            norm = _launch.Norm(ln_mode, ln_w.contiguous(), ln_b.contiguous(),
                                None if lnc_w is None else lnc_w.contiguous(),
                                None if lnc_b is None else lnc_b.contiguous(), eps)
        out, hn, cn, saved = _launch.forward(pw, G, NS, xg, w_hh, b_hh, w_hr, h0, c0, lengths,
                                             reverse, save, p, masks, norm)
        ctx.set_materialize_grads(False)
        if save:
            ctx.save_for_backward(xg, w_hh, w_hr, lengths)
            ctx.ws = saved
            ctx.norm = norm
            ctx.meta = (reverse, pw, G, NS, p, h0.dtype, None if c0 is None else c0.dtype,
                        b_hh is not None, masks)
        if NS > 1:
            return out, hn, cn
        return out, hn

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dhn, dcn=None):
        xg, w_hh, w_hr, lengths = ctx.saved_tensors
        reverse, pw, G, NS, p, h_dtype, c_dtype, has_bias, masks = ctx.meta
        need = ctx.needs_input_grad
        norm = ctx.norm
        dxg, dh0, dc0, dw_hh, db_hh, dw_hr, dnorm = _launch.backward(
            pw, G, NS, xg, w_hh, w_hr, lengths, reverse, ctx.ws, dout, dhn, dcn, p,
            need_w=need[1], need_b=has_bias and need[2], masks=masks, norm=norm)
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
            None, None, None, None, None, None, None, None, None,
        )
