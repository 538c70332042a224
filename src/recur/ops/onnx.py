"""Run a stack of recurrent layers as ONNX operators, during ``torch.onnx.export``.

:func:`recur.ops.run_stack` calls :func:`run_stack_onnx` instead of any backend while
``torch.onnx.is_in_onnx_export()`` is true, so a whole model holding recur layers exports with
PyTorch's default (dynamo-based) exporter and its default arguments. Each layer becomes one of
two things:

- **ONNX's own RNN / LSTM / GRU operator** (both directions in one node) for torch.nn's four
  cells with nothing added (``cell.native_mode`` set, no variant extras, no projection),
  written with :func:`torch.onnx.ops.symbolic_multi_out`. Per layer::

      Y, Y_h[, Y_c] = LSTM(X, W, R, B, sequence_lens, initial_h[, initial_c])  # Y: [T, D, B, H]
      X_next = Y.permute(0, 2, 1, 3).reshape(T, B, D*H)

  Weights are reordered to ONNX's gate order with a constant row index (the exporter folds
  it into the initializers): LSTM (i, o, f, c) from torch.nn's (i, f, g, o), GRU (z, r, h)
  from (r, z, n) with ``linear_before_reset=1`` (torch.nn applies the reset gate after the
  recurrent product); the bias input is ``[b_ih, b_hh]`` per direction. ``lengths`` become
  ``sequence_lens`` (int32); rows past their length give zero output and keep their state.
- **An ONNX ``Scan``** over the cell's step (one per layer and direction) for everything
  else: declared cells, the layer-norm cells, LSTM with ``proj_size``, zoneout in eval mode.
  The step is the reference loop's :func:`recur.ops.reference.cell_step` (the cell's single
  declared ``update`` with its cell weights, zoneout rates and projection), traced once through
  ``torch._higher_order_ops.scan``, which the exporter translates to ``Scan`` with a dynamic
  number of steps. ``lengths`` work by masking inside the step (the step index is a scanned
  input): a row past its length keeps its state and outputs zero, in both directions.

What cannot export raises ``ValueError`` naming it: random masks drawn at every forward in
training mode (inter-layer dropout, zoneout, recurrent dropout): call ``model.eval()`` first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell
from .reference import cell_step

# mode -> ONNX operator and gate permutation (ONNX gate block i is torch.nn's block PERM[i])
ONNX_OPERATORS = {"LSTM": ("LSTM", (0, 3, 1, 2)), "GRU": ("GRU", (1, 0, 2)),
                  "RNN_TANH": ("RNN", (0,)), "RNN_RELU": ("RNN", (0,))}


try:  # the exporters' own flags (private; read as module attributes, once per call)
    from torch.onnx._internal.exporter import _flags as _dynamo_flags
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS as _ts_globals
except ImportError:  # pragma: no cover - depends on the installed torch
    _dynamo_flags = _ts_globals = None


def exporting_onnx() -> bool:
    """Whether ``torch.onnx.export`` is running, in both of its capture strategies.

    ``torch.onnx.is_in_onnx_export()`` answers in the first (non-strict ``torch.export``); the
    exporter retries a model that fails there with Dynamo (strict), which constant-folds that
    function to False, so the exporter's own flag is read too (private: absent, the answer is
    the public function's). Without it, a recur layer would take the compile path there
    (``recur::rnn_layer``, which the exporter cannot translate) and hide the first error.
    Read directly, the flags cost well under a microsecond: this runs on every forward."""
    if _dynamo_flags is None:  # pragma: no cover - depends on the installed torch
        return torch.onnx.is_in_onnx_export()
    if getattr(_dynamo_flags, "_is_onnx_exporting", False):
        return True
    if torch.compiler.is_compiling():  # Dynamo may not trace the TorchScript exporter's
        return False                   # globals (and that exporter never compiles)
    return bool(getattr(_ts_globals, "_in_onnx_export", False))


def uses_onnx_operator(cell: Cell, layers) -> bool:
    """Whether a stack of ``cell`` with ``layers`` (``LayerWeights``) exports as ONNX's own
    recurrent operators (else as ``Scan``): torch.nn's four cells, no extras, no projection."""
    return (cell.native_mode in ONNX_OPERATORS
            and not any(lw.extras() or lw.w_hr is not None for lw in layers))


def run_stack_onnx(
    cell: Cell,
    x: Tensor,
    hx: tuple[Tensor, ...],
    layers: list,
    *,
    num_layers: int,
    bidirectional: bool,
    dropout: float = 0.0,
    training: bool = False,
    lengths: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """:func:`recur.ops.run_stack` for ``torch.onnx.export``: same arguments and returns.

    Args:
        x: ``[T, B, I]`` time-major, padded (T and B may be symbolic).
        hx: initial states, each ``[L*D, B, H*]`` (index ``layer * D + direction``).
        layers: ``L*D`` ``LayerWeights`` in the same order.
        lengths: ``[B]`` integers in ``[1, T]`` or None.

    Returns:
        ``out: [T, B, D*Hout]`` and the final states, each ``[L*D, B, H*]``.

    Raises:
        ValueError: in training mode with random masks (inter-layer dropout, zoneout,
            recurrent dropout), which an exported graph cannot reproduce.
    """
    D = 2 if bidirectional else 1
    _check_deterministic(cell, layers, num_layers, dropout, training)
    # Dynamo (the exporter's strict retry) skips torch.onnx.ops: every layer is a Scan there
    native = uses_onnx_operator(cell, layers) and not torch.compiler.is_dynamo_compiling()
    finals: list[list[Tensor]] = [[] for _ in range(cell.num_states)]
    inp = x
    for layer in range(num_layers):
        lws = layers[layer * D:(layer + 1) * D]
        states0 = tuple(s[layer * D:(layer + 1) * D] for s in hx)  # each (D, B, H*)
        if native:
            inp, states = _onnx_rnn_layer(cell.native_mode, inp, states0, lws, lengths)
        else:
            inp, states = _scan_layer(cell, inp, states0, lws, lengths)
        for j, s in enumerate(states):
            finals[j].append(s)  # (D, B, H*)
    return inp, tuple(torch.cat(f, dim=0) for f in finals)


def _check_deterministic(cell: Cell, layers, num_layers: int, dropout: float,
                         training: bool) -> None:
    if not training:
        return
    drawn = []
    if dropout > 0 and num_layers > 1:
        drawn.append(f"inter-layer dropout={dropout}")
    if any(lw.zoneout is not None for lw in layers):
        drawn.append("zoneout")
    if any(lw.h_mask is not None for lw in layers):
        drawn.append("recurrent dropout")
    if drawn:
        raise ValueError(f"torch.onnx.export: a recurrent layer of cell {cell.name!r} is in "
                         f"training mode and draws random masks at every forward "
                         f"({', '.join(drawn)}), which an exported graph cannot reproduce; "
                         "call model.eval() before exporting (eval mode: no dropout, zoneout "
                         "by its rates)")


# ---- ONNX's own RNN / LSTM / GRU operators --------------------------------------------------
def _gates(w: Tensor, perm: tuple[int, ...]) -> Tensor:
    """Reorder the gate blocks of ``w: [G*H, ...]`` (or ``[G*H]``) to ONNX's order."""
    if perm == tuple(range(len(perm))):
        return w
    H = w.shape[0] // len(perm)
    rows = torch.tensor([p * H + j for p in perm for j in range(H)], device=w.device)
    return w.index_select(0, rows)  # (G*H, ...): a constant index, folded at export


def _onnx_rnn_layer(mode: str, x: Tensor, states0: tuple[Tensor, ...], lws,
                    lengths: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, both directions, as one ONNX operator. ``x: [T, B, I]``, each state
    ``[D, B, H]``; returns ``[T, B, D*H]`` and the final states ``[D, B, H]``."""
    op, perm = ONNX_OPERATORS[mode]
    T, B = x.shape[0], x.shape[1]
    D, H = len(lws), lws[0].w_hh.shape[1]
    W = torch.stack([_gates(lw.w_ih, perm) for lw in lws])  # (D, G*H, I)
    R = torch.stack([_gates(lw.w_hh, perm) for lw in lws])  # (D, G*H, H)
    bias = None
    if lws[0].b_ih is not None:
        bias = torch.stack([torch.cat([_gates(lw.b_ih, perm), _gates(lw.b_hh, perm)])
                            for lw in lws])  # (D, 2*G*H)
    seq = None if lengths is None else lengths.to(device=x.device, dtype=torch.int32)  # (B,)
    attrs: dict = {"hidden_size": int(H), "direction": "bidirectional" if D == 2 else "forward"}
    if mode == "GRU":
        attrs["linear_before_reset"] = 1
    if op == "RNN":
        attrs["activations"] = ["Relu" if mode == "RNN_RELU" else "Tanh"] * D
    n = len(states0)
    outs = torch.onnx.ops.symbolic_multi_out(
        op, [x, W, R, bias, seq, *states0], attrs, dtypes=[x.dtype] * (1 + n),
        shapes=[[T, D, B, H]] + [[D, B, H]] * n)
    y = outs[0].permute(0, 2, 1, 3).reshape(T, B, D * H)  # (T, B, D*H)
    return y, tuple(outs[1:])


# ---- an ONNX Scan over the cell's step ------------------------------------------------------
def _scan_operator():
    try:
        from torch._higher_order_ops.scan import scan
    except ImportError as e:  # pragma: no cover - depends on the installed torch
        raise RuntimeError(
            "exporting a recur layer that ONNX's RNN / LSTM / GRU operators cannot express "
            "(declared or layer-norm cells, proj_size, zoneout) needs torch's scan operator "
            "(torch._higher_order_ops.scan, which recent exporters translate to ONNX Scan; "
            f"tested with torch 2.13), not found in torch {torch.__version__}") from e
    return scan


def _scan_layer(cell: Cell, x: Tensor, states0: tuple[Tensor, ...], lws,
                lengths: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer as one ``Scan`` per direction. ``x: [T, B, I]``, each state ``[D, B, H*]``;
    returns ``[T, B, D*Hout]`` and the final states ``[D, B, H*]``."""
    outs, finals = [], []
    for d, lw in enumerate(lws):
        xg = F.linear(x, lw.w_ih, lw.b_ih)  # (T, B, G*H)
        if lw.xg_fn is not None:
            xg = lw.xg_fn(xg)  # (T, B, G*H)
        out, states = _scan_direction(cell, xg, tuple(s[d] for s in states0), lw, lengths,
                                      reverse=d == 1)
        outs.append(out)
        finals.append(states)
    y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)  # (T, B, D*Hout)
    return y, tuple(torch.stack(f, dim=0) for f in zip(*finals))


def _scan_direction(cell: Cell, xg: Tensor, state0: tuple[Tensor, ...], lw,
                    lengths: Tensor | None, reverse: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``xg: [T, B, G*H]``, ``state0``: each ``[B, H*]``; returns ``out: [T, B, Hout]`` and
    the final states, as :func:`recur.ops.scan` does."""
    scan = _scan_operator()
    # Detached: an exported graph has no backward, and tensors that need grad make the scan
    # operator also trace its autograd formula (several seconds per Scan, for nothing).
    xg, state0 = xg.detach(), tuple(s.detach() for s in state0)
    lw = lw._replace(**{k: _detach(getattr(lw, k)) for k in ("w_hh", "b_hh", "w_hr",
                        "cell_weights", "step_inputs", "h_mask", "zoneout")})
    T = xg.shape[0]
    xs: dict[str, object] = {"xg": xg, "step_inputs": tuple(lw.step_inputs)}
    if lw.zoneout is not None:
        xs["zoneout"] = tuple(m.expand(T, *m.shape[1:]) for m in lw.zoneout)  # each (T, B, H)
    if lengths is not None:
        xs["t"] = torch.arange(T, device=xg.device)  # (T,): the step index, for the masks
        lens = lengths.to(device=xg.device)  # (B,)

    def step(states, inp):
        valid = None if lengths is None else (inp["t"] < lens).unsqueeze(-1)  # (B, 1)
        # the cell weights copied inside the body: a view of a closed-over tensor (e.g. an
        # update that unpacks ``w_a, w_b = weight``) would otherwise be lifted as a second,
        # aliasing input
        cell_weights = tuple(p.clone() for p in lw.cell_weights)
        new, out = cell_step(cell, inp["xg"], tuple(states), lw.w_hh, lw.b_hh, w_hr=lw.w_hr,
                             cell_weights=cell_weights, step_inputs=tuple(inp["step_inputs"]),
                             h_mask=lw.h_mask, zoneout=inp.get("zoneout"), valid=valid)
        # Scan's body may not return one tensor twice (carry and output): copy the output
        return tuple(new), out.clone() if any(out is s for s in new) else out

    init = tuple(s.clone() for s in state0)  # (B, H*) each; not views of the caller's hx
    final, out = scan(step, init, xs, reverse=reverse)
    return out, tuple(final)  # out: (T, B, Hout)


def _detach(v):
    if v is None:
        return None
    return tuple(t.detach() for t in v) if isinstance(v, tuple) else v.detach()
