"""Helpers to check a backend of :func:`recur.ops.scan` against the float64 reference loop.

Used by the test suite and by ``benchmarks/gpu_check.py`` (the one-command GPU check), so
both compare the same way:

- :func:`make_inputs` / :func:`make_ln_weights` / :func:`make_masks`: random leaves with the
  scales of an initialised layer;
- :func:`run_scan`: outputs, final states and the gradient of every input, as a dict;
- :func:`relative_errors` / :func:`assert_close`: norm-relative error per entry;
- :func:`one_slice_plan` / :func:`force_plan`: make the Triton planner return a grid /
  stream plan with one slice of hidden units per batch tile, so those kernels run under the
  CPU interpreter.

Nothing here is imported by ``recur`` itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from .cells import Cell
from .ops import scan

__all__ = ["assert_close", "force_plan", "make_inputs", "make_ln_weights", "make_masks",
           "one_slice_plan", "relative_errors", "run_scan"]


def make_inputs(cell: Cell, T: int, B: int, H: int, *, P: int | None = None, bias: bool = True,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                seed: int = 0) -> tuple:
    """Random inputs with the scales of an initialised layer, all leaves needing grad:
    ``xg [T, B, G*H]``, ``w_hh [G*H, HO]``, ``b_hh [G*H]`` (None without ``bias``),
    ``state0`` (``h0 [B, HO]``, then ``c0 [B, H]`` for two-state cells), ``w_hr [P, H]``
    (None without ``P``); ``HO = P or H``."""
    g = torch.Generator().manual_seed(seed)
    G, HO = cell.num_gates, P or H
    k = HO ** -0.5

    def rnd(*shape, scale=1.0):
        t = (torch.rand(*shape, generator=g) * 2 - 1) * scale
        return t.to(device=device, dtype=dtype).requires_grad_()

    xg = rnd(T, B, G * H, scale=1.5)
    w_hh = rnd(G * H, HO, scale=k)
    b_hh = rnd(G * H, scale=k) if bias else None
    state0 = (rnd(B, HO),) + tuple(rnd(B, H) for _ in range(cell.num_states - 1))
    w_hr = rnd(P, H, scale=H ** -0.5) if P else None
    return xg, w_hh, b_hh, state0, w_hr


def make_ln_weights(cell: Cell, H: int, *, device: str | torch.device = "cpu",
                    seed: int = 4, h_gain: float = 1.0) -> list[Tensor]:
    """A layer-norm cell's cell weights (``scan``'s ``cell_weights``: gains near 1, biases
    near 0, then ``b_hh``), leaves: ``[G*H]`` gain and bias of LN_h, ``[H]`` gain and bias of
    LN_c (``cell.norm == "hc"``), ``[G*H]`` b_hh. ``h_gain`` scales LN_h's gain and bias:
    at 1 a layer-norm LSTM over long sequences is chaotic (rounding grows step by step;
    ``benchmarks/ln_conditioning.py`` measures it), at 0.5 it is as well-conditioned as the
    plain LSTM."""
    g = torch.Generator().manual_seed(seed)
    GH = cell.num_gates * H

    def rnd(n, centre, scale):
        t = centre + (torch.rand(n, generator=g) * 2 - 1) * scale
        return t.to(device).requires_grad_()

    out = [rnd(GH, h_gain, 0.3 * h_gain), rnd(GH, 0.0, 0.3 * h_gain)]
    if cell.norm == "hc":
        out += [rnd(H, 1.0, 0.3), rnd(H, 0.0, 0.3)]
    return out + [rnd(GH, 0.0, H ** -0.5)]



def make_masks(cell: Cell, T: int, B: int, H: int, *, zoneout: str | None, h_mask: bool,
               device: str | torch.device = "cpu", seed: int = 2):
    """``(h_mask, zoneout)``: a recurrent-dropout mask ``[B, H]`` (p=0.3, scaled by 1/0.7) or
    None, and zoneout masks per state: ``"train"`` Bernoulli ``[T, B, H]`` draws (rates 0.3,
    0.6), ``"eval"`` the rates expanded to ``[T, B, H]``, None for none."""
    g = torch.Generator().manual_seed(seed)
    hm = None
    if h_mask:
        hm = ((torch.rand(B, H, generator=g) > 0.3).float() / 0.7).to(device)
    rates = (0.3, 0.6)[: cell.num_states]
    zo = None
    if zoneout == "train":
        zo = tuple(torch.bernoulli(torch.full((T, B, H), p), generator=g).to(device)
                   for p in rates)
    elif zoneout == "eval":
        zo = tuple(torch.full((1, 1, 1), p, device=device).expand(T, B, H) for p in rates)
    elif zoneout is not None:
        raise ValueError(f"zoneout must be 'train', 'eval' or None, got {zoneout!r}")
    return hm, zo


def run_scan(cell: Cell, inputs: tuple, *, backend: str, lengths: Tensor | None = None,
             reverse: bool = False, cast: torch.dtype | None = None, grads: bool = True,
             h_mask: Tensor | None = None, zoneout: tuple[Tensor, ...] | None = None,
             cell_weights=()) -> dict[str, Tensor]:
    """``{"out", "state[i]", "d<leaf>"...}``: outputs ``[T, B, HO]``, final states and
    (``grads``) the gradient of every leaf of ``inputs`` (from :func:`make_inputs`) and of
    ``cell_weights``.

    The loss weighs every output and final state differently, so each gradient path counts.
    ``cast`` runs the backend on converted copies (e.g. float64 for the oracle), masks too.
    """
    xg, w_hh, b_hh, state0, w_hr = inputs
    leaves = {"xg": xg, "w_hh": w_hh, "b_hh": b_hh, "w_hr": w_hr}
    leaves.update({f"cell_weights[{i}]": p for i, p in enumerate(cell_weights)})
    leaves.update({f"state0[{i}]": s for i, s in enumerate(state0)})
    leaves = {k: v for k, v in leaves.items() if v is not None}
    args = {k: (v.detach().to(cast).requires_grad_() if cast else v) for k, v in leaves.items()}
    st0 = tuple(args[f"state0[{i}]"] for i in range(len(state0)))
    if cast is not None:
        h_mask = None if h_mask is None else h_mask.to(cast)
        zoneout = None if zoneout is None else tuple(m.to(cast) for m in zoneout)
    ws = tuple(args[f"cell_weights[{i}]"] for i in range(len(cell_weights)))
    out, states = scan(cell, args["xg"], args["w_hh"], args.get("b_hh"), st0,
                       w_hr=args.get("w_hr"), lengths=lengths, reverse=reverse, backend=backend,
                       h_mask=h_mask, zoneout=zoneout, cell_weights=ws)
    res = {"out": out.detach()}
    res.update({f"state[{i}]": s.detach() for i, s in enumerate(states)})
    if grads:
        g = torch.Generator().manual_seed(1)
        wo = torch.randn(out.shape, generator=g).to(out)
        loss = (out * wo).sum()
        for s in states:
            loss = loss + (s * torch.randn(s.shape, generator=g).to(s)).sum()
        gs = torch.autograd.grad(loss, list(args.values()))
        res.update({f"d{k}": v for k, v in zip(args, gs)})
    return res


def relative_errors(got: dict[str, Tensor], want: dict[str, Tensor]) -> dict[str, float]:
    """``||got - want|| / ||want||`` per entry (``inf`` where ``got`` is not finite or the
    shapes differ, e.g. NaN from memory a kernel never wrote)."""
    if got.keys() != want.keys():
        raise ValueError(f"entries differ: got {sorted(got)}, want {sorted(want)}")
    errs = {}
    for k, ref in want.items():
        a, b = got[k].double(), ref.double()
        if a.shape != b.shape or not bool(torch.isfinite(a).all()):
            errs[k] = float("inf")
        else:
            errs[k] = float((a - b).norm() / b.norm().clamp_min(1e-12))
    return errs


def assert_close(got: dict[str, Tensor], want: dict[str, Tensor], rtol: float) -> None:
    """Every tensor of ``want`` matches ``got`` in relative norm (and ``got`` is finite)."""
    assert got.keys() == want.keys()
    for k, ref in want.items():
        a, b = got[k].double(), ref.double()
        assert a.shape == b.shape, f"{k}: shape {tuple(a.shape)} != {tuple(b.shape)}"
        assert torch.isfinite(a).all(), f"{k}: non-finite values (unwritten memory?)"
        err = (a - b).norm() / b.norm().clamp_min(1e-12)
        assert err <= rtol, f"{k}: relative error {err:.3e} > {rtol:.1e}"


def one_slice_plan(path: str):
    """A stand-in for the Triton planner (``_launch.plan``) that returns a ``path``
    (``"grid"`` or ``"stream"``) plan with one slice of all H units per batch tile of 16 rows
    (``stream``: chunks of 16 inputs). The interpreter runs programs one after another, so a
    barrier between programs would never open; with one slice each barrier waits only for
    itself."""
    import triton

    from .ops.triton import _launch

    if path not in ("grid", "stream"):
        raise ValueError(f"path must be 'grid' or 'stream', got {path!r}")

    def one_slice(G, B, H, HO, proj, device, wbytes=4):
        BN = _launch._pow2(H)
        return _launch.Plan(path, BB=16, BN=BN, BK=16 if path == "stream" else BN,
                            BP=_launch._pow2(HO) if proj else 0, grid=(1, triton.cdiv(B, 16)))

    return one_slice


@contextlib.contextmanager
def force_plan(path: str) -> Iterator[None]:
    """Within the block, the Triton planner is :func:`one_slice_plan` ``(path)``."""
    from .ops.triton import _launch

    real, _launch.plan = _launch.plan, one_slice_plan(path)
    try:
        yield
    finally:
        _launch.plan = real
