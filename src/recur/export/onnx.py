"""``export_onnx``: a recur ``RNN`` / ``LSTM`` / ``GRU`` as ONNX's own RNN / LSTM / GRU operators.

The graph is written directly with ``onnx.helper`` from the module's weights, one ONNX
recurrent operator per layer (both directions in one operator), so every runtime runs its
fused kernel and there is no per-step ``Loop`` / ``Scan``. Per layer::

    Y, Y_h[, Y_c] = LSTM(X, W, R, B, sequence_lens, initial_h[, initial_c])  # Y: [T, D, B, H]
    X_next = Reshape(Transpose(Y, perm=[0, 2, 1, 3]), [0, 0, -1])             # [T, B, D*H]

Weights are converted once at export: ONNX's gate orders are LSTM (i, o, f, c) and GRU
(z, r, h) against torch.nn's (i, f, g, o) and (r, z, n); torch.nn's GRU applies the reset
gate after the recurrent product, which is ONNX's ``linear_before_reset=1``; ONNX's bias
input is ``[b_ih, b_hh]`` per direction. ``lengths`` become the operators' ``sequence_lens``
(rows past their length give zero output and keep their last state, as with packing).

Not exportable (an error at export time, naming what): LSTM with ``proj_size`` (ONNX's LSTM
has no projection), cells other than torch.nn's four, variant modules with per-layer extras.
The graph is the module in eval mode: inter-layer dropout is not part of it.

Why not ``torch.onnx.export``: the fused ``_VF`` kernels do not trace, and the dynamo
exporter would need a custom translation of ``recur::rnn_layer`` with the same weight
conversion as here plus the extra ``onnxscript`` dependency; writing the graph directly is
short, exact and has no moving parts.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..nn.rnn import RNNBase

# ONNX gate block i takes torch.nn's block PERM[i]
_PERM = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN_TANH": [0], "RNN_RELU": [0]}
_OP = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}
_NP_DTYPE = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}


def check_exportable(model) -> None:
    """Raise ``ValueError`` naming what is not supported if ``model`` cannot be exported
    (``TypeError`` if it is not a recur recurrent module at all)."""
    if not isinstance(model, RNNBase):
        raise TypeError(f"export_onnx takes a recur.RNN / LSTM / GRU module, got "
                         f"{type(model).__name__}; export a model containing one with "
                         "torch.export (recur's layers are one operator each there)")
    if model.mode not in _PERM or model.cell.native_mode != model.mode:
        raise ValueError(f"export_onnx: cell {model.cell.name!r} has no ONNX operator; only "
                         "torch.nn's RNN (tanh/relu), LSTM and GRU cells export")
    if type(model)._stack_weights is not RNNBase._stack_weights:
        raise ValueError(f"export_onnx: {type(model).__name__} adds per-layer extras "
                         "(variant); only recur.RNN / LSTM / GRU export to ONNX")
    if model.proj_size > 0:
        raise ValueError(f"export_onnx: LSTM with proj_size={model.proj_size} is not "
                         "supported: ONNX's LSTM operator has no projection (W_hr); export "
                         "an LSTM without proj_size")
    dtype = model.weight_ih_l0.dtype
    if dtype not in _NP_DTYPE:
        raise ValueError(f"export_onnx: weights of dtype {dtype} are not supported; use "
                         f"one of {list(_NP_DTYPE)}")


def _gates(w: torch.Tensor, perm: list[int]) -> np.ndarray:
    blocks = w.detach().cpu().chunk(len(perm), dim=0)
    return torch.cat([blocks[p] for p in perm], dim=0).numpy()


def build_onnx(model: RNNBase, *, lengths: bool = True, initial_states: bool = True,
               opset: int = 17):
    """Build the ``onnx.ModelProto`` of ``model`` (see :func:`export_onnx`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    check_exportable(model)
    mode, H = model.mode, model.hidden_size
    L, D = model.num_layers, 2 if model.bidirectional else 1
    perm, op = _PERM[mode], _OP[mode]
    np_dtype = _NP_DTYPE[model.weight_ih_l0.dtype]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
    n_states = model.cell.num_states
    state_names = ["h0", "c0"][:n_states]
    out_state_names = ["h_n", "c_n"][:n_states]

    time_batch = ["batch", "time"] if model.batch_first else ["time", "batch"]
    inputs = [helper.make_tensor_value_info("input", elem, [*time_batch, model.input_size])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]))
    if initial_states:
        inputs += [helper.make_tensor_value_info(n, elem, [L * D, "batch", H])
                   for n in state_names]
    outputs = [helper.make_tensor_value_info("output", elem, [*time_batch, D * H])]
    outputs += [helper.make_tensor_value_info(n, elem, [L * D, "batch", H])
                for n in out_state_names]

    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    x = "input"
    if model.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["x_tm"], perm=[1, 0, 2]))
        x = "x_tm"
    const("flatten_dirs", np.array([0, 0, -1], dtype=np.int64))
    finals: list[list[str]] = [[] for _ in range(n_states)]
    for layer in range(L):
        W, R, Bs = [], [], []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            W.append(_gates(getattr(model, "weight_ih" + sfx), perm))
            R.append(_gates(getattr(model, "weight_hh" + sfx), perm))
            if model.bias:
                Bs.append(np.concatenate([_gates(getattr(model, "bias_ih" + sfx), perm),
                                          _gates(getattr(model, "bias_hh" + sfx), perm)]))
        args = [x, const(f"W_{layer}", np.stack(W).astype(np_dtype)),
                const(f"R_{layer}", np.stack(R).astype(np_dtype)),
                const(f"B_{layer}", np.stack(Bs).astype(np_dtype)) if model.bias else "",
                "lengths" if lengths else ""]
        if initial_states:
            start, end = const(f"start_{layer}", np.array([layer * D], dtype=np.int64)), \
                const(f"end_{layer}", np.array([(layer + 1) * D], dtype=np.int64))
            for name in state_names:
                nodes.append(helper.make_node("Slice", [name, start, end],
                                              [f"{name}_{layer}"]))
                args.append(f"{name}_{layer}")
        outs = [f"Y_{layer}", f"Yh_{layer}"] + ([f"Yc_{layer}"] if n_states == 2 else [])
        attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if mode == "GRU":
            attrs["linear_before_reset"] = 1
        if op == "RNN":
            attrs["activations"] = ["Relu" if mode == "RNN_RELU" else "Tanh"] * D
        nodes.append(helper.make_node(op, args, outs, name=f"{op}_{layer}", **attrs))
        for j, o in enumerate(outs[1:]):
            finals[j].append(o)
        # Y: [T, D, B, H] -> [T, B, D*H]
        nodes.append(helper.make_node("Transpose", [outs[0]], [f"Yt_{layer}"],
                                      perm=[0, 2, 1, 3]))
        last = layer == L - 1 and not model.batch_first
        x = "output" if last else f"X_{layer + 1}"
        nodes.append(helper.make_node("Reshape", [f"Yt_{layer}", "flatten_dirs"], [x]))
    if model.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
    for name, parts in zip(out_state_names, finals):
        nodes.append(helper.make_node("Concat", parts, [name], axis=0) if len(parts) > 1
                     else helper.make_node("Identity", parts, [name]))
    graph = helper.make_graph(nodes, f"recur_{type(model).__name__}", inputs, outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="recur")
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: RNNBase, path: str | os.PathLike, *, lengths: bool = True,
                initial_states: bool = True, opset: int = 17):
    """Write ``model`` (a recur ``RNN`` / ``LSTM`` / ``GRU``) to ``path`` as an ONNX graph of
    ONNX's own recurrent operators, one per layer; batch and time axes are dynamic.

    Graph inputs (in this order; the optional ones only if asked for):
        ``input``: ``[T, B, I]`` (``[B, T, I]`` if ``model.batch_first``), the model's dtype.
        ``lengths``: ``[B]`` int32 in ``[1, T]`` (if ``lengths``): ONNX's ``sequence_lens``.
        ``h0`` (and ``c0`` for LSTM): ``[L*D, B, H]`` (if ``initial_states``; else zeros).

    Graph outputs, as ``model(input, (h0, c0), lengths=lengths)`` in eval mode:
        ``output``: ``[T, B, D*H]`` (``[B, T, D*H]`` if batch_first), zero past each length;
        ``h_n`` (and ``c_n``): ``[L*D, B, H]``.

    Raises ``ValueError`` naming the reason for a configuration that ONNX cannot express
    (``proj_size``, non-standard cells, variants). Needs the ``onnx`` package
    (``pip install recur[export]``). Returns the ``onnx.ModelProto`` it wrote.

    Example:
        >>> m = recur.LSTM(8, 16, num_layers=2, bidirectional=True).eval()
        >>> recur.export_onnx(m, "lstm.onnx")
    """
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("export_onnx needs the onnx package: pip install 'recur[export]'") \
            from e
    proto = build_onnx(model, lengths=lengths, initial_states=initial_states, opset=opset)
    onnx.save(proto, os.fspath(path))
    return proto
