"""recur.export_onnx (one layer, through torch.onnx.export and recur.ops.onnx): ONNX's own
RNN/LSTM/GRU operators for torch.nn's cells, a Scan for the rest; checked with onnxruntime.
Whole models: tests/test_export_whole_model.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recur

onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install 'recur[export]'")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra (onnxruntime)")
pytest.importorskip("onnxscript", reason="needs the export extra (onnxscript, which "
                                         "torch.onnx.export's translation uses)")

I, H = 3, 5
MODES = {
    "RNN-tanh": (recur.RNN, {}, "RNN"),
    "RNN-relu": (recur.RNN, {"nonlinearity": "relu"}, "RNN"),
    "LSTM": (recur.LSTM, {}, "LSTM"),
    "GRU": (recur.GRU, {}, "GRU"),
}
SHAPES = {  # id: (num_layers, bidirectional, bias, batch_first)
    "L1": (1, False, True, False),
    "L2-bidir": (2, True, True, False),
    "L3-nobias-bf": (3, False, False, True),
    "L2-bidir-bf": (2, True, True, True),
}


def _model(mode, shape):
    cls, kw, _ = MODES[mode]
    L, bidir, bias, bf = SHAPES[shape]
    torch.manual_seed(0)
    return cls(I, H, num_layers=L, bidirectional=bidir, bias=bias, batch_first=bf, **kw).eval()


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _compare(model, sess, T, B, lengths, states):
    x = torch.randn(B, T, I) if model.batch_first else torch.randn(T, B, I)
    n = model.cell.num_states
    D = 2 if model.bidirectional else 1
    sizes = [model.proj_size or H] + [H] * (n - 1)  # h0 [L*D, B, Hout], c0 [L*D, B, H]
    hx = tuple(torch.randn(model.num_layers * D, B, s) for s in sizes) if states else None
    feeds = {"input": x.numpy()}
    if lengths is not None:
        feeds["lengths"] = lengths.to(torch.int32).numpy()
    if states:
        feeds.update(zip(["h0", "c0"], (h.numpy() for h in hx)))
    got = sess.run(None, feeds)
    with torch.no_grad():
        out, st = model(x, None if hx is None else (hx if n == 2 else hx[0]), lengths=lengths)
    want = [out, *(st if isinstance(st, tuple) else (st,))]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=1e-5)


# every mode and every shape once (an export takes 1-3 s; whole models: the other file)
@pytest.mark.parametrize("mode, shape", [("RNN-tanh", "L3-nobias-bf"), ("RNN-relu", "L1"),
                                         ("LSTM", "L2-bidir-bf"), ("GRU", "L2-bidir")])
def test_onnxruntime_matches_pytorch(mode, shape, tmp_path):
    model = _model(mode, shape)
    path = tmp_path / "m.onnx"
    recur.export_onnx(model, path)
    proto = onnx.load(path)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count(MODES[mode][2]) == model.num_layers  # one fused operator per layer
    assert not {"Loop", "Scan", "If"} & set(ops)  # no per-step loop
    sess = _session(proto)
    # dynamic batch and time axes; variable lengths through sequence_lens
    _compare(model, sess, T=7, B=4, lengths=torch.tensor([7, 3, 1, 5]), states=True)
    _compare(model, sess, T=2, B=1, lengths=torch.tensor([2]), states=True)
    _compare(model, sess, T=11, B=3, lengths=torch.tensor([11, 11, 11]), states=True)


def test_without_lengths_or_states_inputs():
    model = _model("GRU", "L2-bidir")
    proto = recur.export.build_onnx(model, lengths=False, initial_states=False)
    assert [i.name for i in proto.graph.input] == ["input"]
    _compare(model, _session(proto), T=6, B=3, lengths=None, states=False)


@recur.cells.declare(num_gates=1)
def softsign_rnn(xg, hg, states):
    """h' = softsign(xg + hg): a cell ONNX's RNN operator does not have"""
    return (torch.nn.functional.softsign(xg + hg),)


def test_what_onnx_operators_cannot_express_exports_as_a_scan(tmp_path):
    # proj_size (ONNX's LSTM has no projection) and declared cells: a Scan per direction,
    # same inputs and outputs; the module is exported in eval mode and its mode kept
    torch.manual_seed(0)
    model = recur.LSTM(I, H, proj_size=2, bidirectional=True).train()
    proto = recur.export_onnx(model, tmp_path / "p.onnx")
    assert model.training
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Scan") == 2 and "LSTM" not in ops, ops
    assert [i.name for i in proto.graph.input] == ["input", "lengths", "h0", "c0"]
    _compare(model.eval(), _session(proto), T=6, B=3, lengths=torch.tensor([6, 1, 4]),
             states=True)

    model = recur.CustomRNN(softsign_rnn, I, H).eval()
    proto = recur.export.build_onnx(model, initial_states=False)
    assert "Scan" in [n.op_type for n in proto.graph.node]
    _compare(model, _session(proto), T=4, B=2, lengths=torch.tensor([2, 4]), states=False)


def test_what_is_not_a_recur_layer_is_refused(tmp_path):
    with pytest.raises(TypeError, match="takes a recur recurrent module.*torch.onnx.export"):
        recur.export_onnx(torch.nn.LSTM(I, H), tmp_path / "t.onnx")
    assert not (tmp_path / "t.onnx").exists()
