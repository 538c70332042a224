"""torch.onnx.export (PyTorch's default, dynamo-based exporter) on whole models holding recur
layers: torch.nn's four cells become ONNX's own RNN / LSTM / GRU operators, everything else an
ONNX Scan over the cell's step; onnxruntime's outputs equal eager's (float32, 1e-5) at another
batch size and length than the export example. The translation is ``recur.ops.onnx``.

Each export takes 1-4 s on a CPU, so each test exports one model that combines several
options (layers, directions, layouts, lengths, given and default initial states).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest
import torch
from torch import nn

import recur

onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install 'recur[export]'")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra (onnxruntime)")
pytest.importorskip("onnxscript", reason="needs the export extra (onnxscript, which "
                                         "torch.onnx.export's translation uses)")

# torch.onnx.export warns about its own internals (a deprecated pytree call inside torch) and
# about axis names when one Dim is shared by several inputs (every test here shares B): noise
# about the exporter, not about recur, so it is ignored in this file only.
pytestmark = [
    pytest.mark.filterwarnings(
        r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:# The axis name:UserWarning"),
]

I, H, V = 4, 5, 11  # input size, hidden size, vocabulary


def _export(model, args, dynamic_shapes=None):
    """Export with torch.onnx.export; return the graph's operator types and a session."""
    program = torch.onnx.export(model, args, dynamic_shapes=dynamic_shapes, verbose=False)
    proto = program.model_proto
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return [n.op_type for n in proto.graph.node], sess


def _check(model, sess, *args):
    """onnxruntime on ``args`` equals the eager model (every output, within 1e-5)."""
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    assert len(feeds) == len(args)
    got = sess.run(None, feeds)
    with torch.no_grad():
        want = model(*args)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=1e-5)


def _dims():
    return torch.export.Dim("T"), torch.export.Dim("B")


# ---- torch.nn's four cells: ONNX's own operators --------------------------------------------
class Tagger(nn.Module):
    """Embedding -> recur.LSTM -> Linear: ``tokens [T, B]`` -> logits ``[T, B, 3]``."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, I)
        self.lstm = recur.LSTM(I, H)
        self.head = nn.Linear(H, 3)

    def forward(self, tokens):
        out, _ = self.lstm(self.emb(tokens))  # (T, B, H)
        return self.head(out)


def test_embedding_lstm_linear_with_the_default_arguments(tmp_path):
    torch.manual_seed(0)
    model = Tagger().eval()
    tokens = torch.randint(0, V, (6, 3))
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (tokens,), path)  # the user's call, every argument default
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("LSTM") == 1 and not {"Scan", "Loop"} & set(ops), ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _check(model, sess, tokens)


STANDARD = {  # id: (class, kwargs, ONNX operator)
    "RNN-tanh": (recur.RNN, {}, "RNN"),
    "RNN-relu": (recur.RNN, {"nonlinearity": "relu"}, "RNN"),
    "LSTM": (recur.LSTM, {}, "LSTM"),
    "GRU": (recur.GRU, {}, "GRU"),
}


class TwoStacks(nn.Module):
    """A 2-layer bidirectional batch-first stack with given initial states, then a 1-layer
    time-major one with default (zero) states, both with ``lengths``.

    ``forward(x [B, T, I], lengths [B], *hx [4, B, H]) -> (logits [T, B, 3], *final states of
    the first stack, h_n of the second)``."""

    def __init__(self, cls, kw) -> None:
        super().__init__()
        self.first = cls(I, H, num_layers=2, bidirectional=True, batch_first=True, **kw)
        self.second = cls(2 * H, H, **kw)
        self.head = nn.Linear(H, 3)

    def forward(self, x, lengths, *hx):
        out, st = self.first(x, hx[0] if len(hx) == 1 else hx, lengths=lengths)  # (B, T, 2H)
        out, st2 = self.second(out.transpose(0, 1), lengths=lengths)  # (T, B, H)
        st = st if isinstance(st, tuple) else (st,)
        st2 = st2 if isinstance(st2, tuple) else (st2,)
        return (self.head(out), *st, st2[0])


def _inputs(n_states, B, T, lengths):
    return (torch.randn(B, T, I), torch.tensor(lengths),
            *(torch.randn(4, B, H) for _ in range(n_states)))


@pytest.mark.parametrize("mode", list(STANDARD))
def test_standard_cells_become_onnx_recurrent_operators(mode):
    cls, kw, op = STANDARD[mode]
    torch.manual_seed(0)
    model = TwoStacks(cls, kw).eval()
    n = model.first.cell.num_states
    T, B = _dims()
    ops, sess = _export(model, _inputs(n, 3, 5, [5, 2, 4]),
                        dynamic_shapes=({0: B, 1: T}, {0: B}, ({1: B},) * n))
    assert ops.count(op) == 3, ops  # one node per layer, both directions in one
    assert not {"Scan", "Loop"} & set(ops), ops
    _check(model, sess, *_inputs(n, 2, 8, [8, 3]))  # other batch size and length
    _check(model, sess, *_inputs(n, 4, 2, [1, 2, 2, 1]))


# ---- what ONNX's operators cannot express: a Scan over the cell's step ----------------------
def _peephole_cell():
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_cells.py"
    spec = importlib.util.spec_from_file_location("custom_cells_example_onnx", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the exporter looks the cell's module up by name
    spec.loader.exec_module(module)
    return module.peephole_lstm


class Chain(nn.Module):
    """Recurrent modules in a row, each with ``lengths``; the first takes the given initial
    states. ``forward(x [T, B, I], lengths [B], *hx) -> (output of the last, its final h,
    every final state of the first)``."""

    def __init__(self, *layers) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, lengths, *hx):
        first_states = ()
        for k, layer in enumerate(self.layers):
            given = None if k or not hx else (hx[0] if len(hx) == 1 else hx)
            x, st = layer(x, given, lengths=lengths)
            st = st if isinstance(st, tuple) else (st,)
            first_states = first_states or st
        return (x, st[0], *first_states)


def _scan_model(name):
    """(model, number of given initial states, expected counts of operators)."""
    if name == "proj_size":  # bidirectional: the reverse direction's Scan with lengths
        return Chain(recur.LSTM(I, H, proj_size=3, bidirectional=True)), 2, {"Scan": 2}
    if name == "layernorm":
        return (Chain(recur.LayerNormLSTM(I, H), recur.LayerNormGRU(H, H)), 2,
                {"Scan": 2, "LayerNormalization": 2})
    if name == "variants":  # forget_bias only sets biases and the dropouts are off in eval:
        # the first layer is a plain LSTM (ONNX's operator); zoneout needs the Scan
        return (Chain(recur.VariantLSTM(I, H, forget_bias=1.0, recurrent_dropout=0.25,
                                        weight_drop=0.2),
                      recur.VariantLSTM(H, H, zoneout=(0.2, 0.1), recurrent_dropout=0.3),
                      recur.VariantGRU(H, H, zoneout=0.15, recurrent_dropout=0.2)), 2,
                {"LSTM": 1, "Scan": 2})
    if name == "declared":
        return Chain(recur.CustomRNN(_peephole_cell(), I, H)), 2, {"Scan": 1}
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["proj_size", "layernorm", "variants", "declared"])
def test_other_cells_become_a_scan_over_the_cells_step(name):
    torch.manual_seed(0)
    model, n, counts = _scan_model(name)
    model.eval()
    first = model.layers[0]
    D = 2 if first.bidirectional else 1
    sizes = [first.proj_size or H] + [H] * (n - 1)

    def inputs(B, T, lengths):
        return (torch.randn(T, B, I), torch.tensor(lengths),
                *(torch.randn(D, B, s) for s in sizes))

    Td, Bd = _dims()
    ops, sess = _export(model, inputs(3, 5, [5, 2, 4]),
                        dynamic_shapes=({0: Td, 1: Bd}, {0: Bd}, ({1: Bd},) * n))
    for op, count in counts.items():
        assert ops.count(op) == count, ops
    assert "Loop" not in ops, ops
    _check(model, sess, *inputs(2, 8, [8, 3]))
    _check(model, sess, *inputs(4, 2, [1, 2, 2, 1]))


@pytest.mark.filterwarnings("ignore:Exporting a model while it is in training mode:UserWarning")
def test_random_masks_in_training_mode_fail_at_export_naming_them():
    model = Chain(recur.VariantGRU(I, H, zoneout=0.1, recurrent_dropout=0.2)).train()
    with pytest.raises(torch.onnx.errors.OnnxExporterError) as info:
        torch.onnx.export(model, (torch.randn(5, 3, I), torch.tensor([5, 2, 4])), verbose=False)
    cause = info.value.__cause__
    assert isinstance(cause, ValueError), repr(cause)
    assert "training mode" in str(cause) and "zoneout, recurrent dropout" in str(cause)
    assert "call model.eval()" in str(cause)


@pytest.mark.filterwarnings("ignore:Exporting a model while it is in training mode")
def test_weight_drop_in_training_mode_fails_at_export(tmp_path):
    """DropConnect draws a mask on W_hh at every forward in training: refused, with why."""
    m = recur.VariantLSTM(3, 4, weight_drop=0.3).train()
    with pytest.raises(Exception) as info:
        torch.onnx.export(m, (torch.randn(5, 2, 3),), str(tmp_path / "m.onnx"))
    chain, e = [], info.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("DropConnect mask on W_hh (weight_drop=0.3)" in c and "model.eval()" in c
               for c in chain), chain
