"""``export_onnx``: one recur recurrent layer as an ONNX file, through ``torch.onnx.export``.

There is one way to translate a recur layer to ONNX, :mod:`recur.ops.onnx`, used by
``torch.onnx.export`` on any model that holds recur layers. This file only wraps a single
layer in a module whose inputs are the layer's ``input``, ``lengths`` and initial states, and
exports it with dynamic batch and time axes:

- torch.nn's four cells (RNN tanh / relu, LSTM, GRU; any layers, bidirectional, bias or not)
  become ONNX's own ``RNN`` / ``LSTM`` / ``GRU`` operators, one per layer (both directions in
  one node), ``lengths`` their ``sequence_lens``: no per-step loop;
- everything else (LSTM with ``proj_size``, declared cells, the layer-norm cells, variants
  with zoneout or recurrent dropout) becomes an ONNX ``Scan`` over the cell's step.

The graph is the layer in eval mode (no dropout; zoneout by its rates). Needs the ``export``
extra (``onnx``, ``onnxscript``; ``onnxruntime`` to run the result).
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor, nn

from ..nn.rnn import RNNBase

_DTYPES = (torch.float32, torch.float64, torch.float16)

# Warnings torch's exporter raises about its own internals or about how this wrapper names its
# axes (one Dim shared by several inputs), not about the user's layer: kept out of the output.
_EXPORTER_NOISE = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    (UserWarning, r"# The axis name: .* will not be used, since it shares the same shape"),
)


def check_exportable(model) -> None:
    """Raise ``TypeError`` if ``model`` is not a recur recurrent module (``RNN``, ``LSTM``,
    ``GRU``, a variant or a ``CustomRNN``), ``ValueError`` if its weights' dtype has no ONNX
    recurrent kernel in onnxruntime."""
    if not isinstance(model, RNNBase):
        raise TypeError(f"export_onnx takes a recur recurrent module (recur.RNN / LSTM / GRU, "
                        f"a variant or a CustomRNN), got {type(model).__name__}; export a "
                        "model containing one with torch.onnx.export(model, args, path)")
    dtype = model.weight_ih_l0.dtype
    if dtype not in _DTYPES:
        raise ValueError(f"export_onnx: weights of dtype {dtype} are not supported; use one "
                         f"of {list(_DTYPES)}")


def state_names(num_states: int) -> tuple[list[str], list[str]]:
    """Graph input and output names of the states: ``h0`` / ``h_n``, then ``c0`` / ``c_n`` for
    an LSTM-shaped cell (two states), else ``s1_0`` / ``s1_n``, ..."""
    rest = range(1, num_states)
    if num_states == 2:
        return ["h0", "c0"], ["h_n", "c_n"]
    return ["h0"] + [f"s{k}_0" for k in rest], ["h_n"] + [f"s{k}_n" for k in rest]


class _LayerGraph(nn.Module):
    """``forward(input, [lengths], [*initial states]) -> (output, *final states)``: the
    layer's own forward with its inputs as separate graph inputs (which ones: the flags)."""

    def __init__(self, layer: RNNBase, lengths: bool, initial_states: bool) -> None:
        super().__init__()
        self.layer, self.lengths, self.initial_states = layer, lengths, initial_states

    def forward(self, input: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        lens = rest[0] if self.lengths else None
        states = rest[1:] if self.lengths else rest
        hx = None
        if self.initial_states:
            hx = states[0] if len(states) == 1 else tuple(states)
        out, final = self.layer(input, hx, lengths=lens)
        return (out, *(final if isinstance(final, tuple) else (final,)))


def build_onnx(model: RNNBase, *, lengths: bool = True, initial_states: bool = True,
               opset: int | None = None):
    """Export ``model`` with ``torch.onnx.export`` (see :func:`export_onnx`) and return the
    ``onnx.ModelProto``."""
    check_exportable(model)
    L, D = model.num_layers, 2 if model.bidirectional else 1
    n = model.cell.num_states
    T, B = 3, 2  # the example's sizes; both axes are dynamic in the graph
    w = model.weight_ih_l0
    x = torch.zeros((B, T, model.input_size) if model.batch_first else (T, B, model.input_size),
                    dtype=w.dtype, device=w.device)
    time, batch = torch.export.Dim("time"), torch.export.Dim("batch")
    args, shapes = [x], [{0: batch, 1: time} if model.batch_first else {0: time, 1: batch}]
    in_names, out_names = ["input"], ["output"]
    if lengths:
        args.append(torch.full((B,), T, dtype=torch.int32))
        shapes.append({0: batch})
        in_names.append("lengths")
    s_in, s_out = state_names(n)
    if initial_states:
        h_out = model.proj_size if model.proj_size > 0 else model.hidden_size
        for k in range(n):
            args.append(torch.zeros(L * D, B, h_out if k == 0 else model.hidden_size,
                                    dtype=w.dtype, device=w.device))
            shapes.append({1: batch})
        in_names += s_in
    out_names += s_out
    # forward(input, *rest): one entry for input, one tuple for rest (if any)
    dynamic = (shapes[0], tuple(shapes[1:])) if len(shapes) > 1 else (shapes[0],)
    graph = _LayerGraph(model, lengths, initial_states)
    was_training = model.training
    graph.eval()
    try:
        with warnings.catch_warnings():
            for category, message in _EXPORTER_NOISE:
                warnings.filterwarnings("ignore", message=message, category=category)
            program = torch.onnx.export(graph, tuple(args), input_names=in_names,
                                        output_names=out_names, opset_version=opset,
                                        dynamic_shapes=dynamic, verbose=False)
    finally:
        model.train(was_training)
    return program.model_proto


def export_onnx(model: RNNBase, path: str | os.PathLike, *, lengths: bool = True,
                initial_states: bool = True, opset: int | None = None):
    """Write ``model`` (a recur recurrent module) to ``path`` as an ONNX graph; batch and
    time axes are dynamic. Built by ``torch.onnx.export`` with recur's translation
    (:mod:`recur.ops.onnx`): ONNX's own RNN / LSTM / GRU operators for torch.nn's four cells,
    an ONNX ``Scan`` over the cell's step for any other configuration.

    Graph inputs (in this order; the optional ones only if asked for):
        ``input``: ``[T, B, I]`` (``[B, T, I]`` if ``model.batch_first``), the model's dtype.
        ``lengths``: ``[B]`` int32 in ``[1, T]`` (if ``lengths``).
        ``h0: [L*D, B, Hout]``, then ``c0: [L*D, B, H]`` for an LSTM (if ``initial_states``;
            else zeros). A declared cell's further states are ``s1_0``, ``s2_0``, ...

    Graph outputs, as ``model(input, (h0, c0), lengths=lengths)`` in eval mode:
        ``output``: ``[T, B, D*Hout]`` (``[B, T, D*Hout]`` if batch_first), zero past each
        length; ``h_n`` (and ``c_n``, or ``s1_n``, ...): ``[L*D, B, H*]``.

    ``opset``: the ONNX opset; None takes ``torch.onnx.export``'s default (opset 20 with torch
    2.13). Opsets below the exporter's own are reached by the ONNX version converter, which
    does not convert a ``Scan``'s body: give one only for torch.nn's four cells.

    Raises ``TypeError`` for a module that is not a recur recurrent module. Needs the
    ``export`` extra (``pip install 'recur[export]'``: onnx, onnxscript, onnxruntime).
    Returns the ``onnx.ModelProto`` it wrote.

    Example:
        >>> m = recur.LSTM(8, 16, num_layers=2, bidirectional=True).eval()
        >>> recur.export_onnx(m, "lstm.onnx")
    """
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx.export's translation needs it)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("export_onnx needs the onnx and onnxscript packages: "
                          "pip install 'recur[export]'") from e
    proto = build_onnx(model, lengths=lengths, initial_states=initial_states, opset=opset)
    onnx.save(proto, os.fspath(path))
    return proto
