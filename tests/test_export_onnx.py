"""recur.export_onnx: ONNX's own RNN/LSTM/GRU operators, checked by running onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recur

onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install 'recur[export]'")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra (onnxruntime)")

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
    hx = tuple(torch.randn(model.num_layers * D, B, H) for _ in range(n)) if states else None
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


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("mode", list(MODES))
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


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_without_lengths_or_states_inputs(mode):
    model = _model(mode, "L2-bidir")
    proto = recur.export.build_onnx(model, lengths=False, initial_states=False)
    assert [i.name for i in proto.graph.input] == ["input"]
    _compare(model, _session(proto), T=6, B=3, lengths=None, states=False)


def test_unsupported_configurations_fail_at_export(tmp_path):
    with pytest.raises(ValueError, match="proj_size=2 is not supported.*no projection"):
        recur.export_onnx(recur.LSTM(I, H, proj_size=2), tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()

    cell = recur.cells.Cell("mine", 1, 1, lambda xg, hg, s: (torch.tanh(xg + hg),))
    with pytest.raises(ValueError, match="cell 'mine' has no ONNX operator"):
        recur.export_onnx(recur.RNNBase(cell, I, H), tmp_path / "c.onnx")

    class Variant(recur.LSTM):
        def _stack_weights(self, x):
            return super()._stack_weights(x)

    with pytest.raises(ValueError, match="Variant adds per-layer extras"):
        recur.export_onnx(Variant(I, H), tmp_path / "v.onnx")
    with pytest.raises(TypeError, match="takes a recur.RNN / LSTM / GRU module"):
        recur.export_onnx(torch.nn.LSTM(I, H), tmp_path / "t.onnx")
