"""torch.compile(fullgraph=True) and torch.export on recur's layers (recur::rnn_layer op).

``fullgraph=True`` turns any graph break into an error, so a passing compile is the
no-graph-break check. Most cases use the ``aot_eager`` backend (Dynamo + AOTAutograd, the
parts that see our operator; seconds per case on a 2-core CPU); one case runs Inductor.
"""

from __future__ import annotations

import pytest
import torch

import recur

torch.manual_seed(0)

CASES = {  # id: (class, kwargs)
    "RNN-tanh": (recur.RNN, {}),
    "RNN-relu": (recur.RNN, {"nonlinearity": "relu"}),
    "LSTM": (recur.LSTM, {}),
    "LSTM-proj": (recur.LSTM, {"proj_size": 3}),
    "GRU": (recur.GRU, {}),
}
I, H, T, B = 4, 5, 6, 3
LENS = torch.tensor([6, 2, 4])


def _make(name, **kw):
    cls, extra = CASES[name]
    torch.manual_seed(0)
    return cls(I, H, **{"num_layers": 2, "bidirectional": True, **extra, **kw})


def _flat(res):
    out, st = res
    return [out, *(st if isinstance(st, tuple) else (st,))]


def _loss(outs):
    return sum((o * torch.linspace(0.5, 1.5, o.numel()).view_as(o)).sum() for o in outs)


def _grads(module, x, hx, lengths, fn):
    x = x.detach().clone().requires_grad_(True)
    hx = tuple(h.detach().clone().requires_grad_(True) for h in hx)
    outs = _flat(fn(x, hx if len(hx) > 1 else hx[0], lengths=lengths))
    grads = torch.autograd.grad(_loss(outs), [x, *hx, *module.parameters()])
    return [o.detach() for o in outs], grads


def _hx(module, batch):
    D = 2 if module.bidirectional else 1
    shapes = module._state_shapes(batch)
    return tuple(torch.randn(s[0] if i else D * module.num_layers, batch, s[2])
                 for i, s in enumerate(shapes))


@pytest.mark.parametrize("lengths", [None, LENS], ids=["full", "lengths"])
@pytest.mark.parametrize("name", list(CASES))
def test_compile_fullgraph_matches_eager(name, lengths):
    torch._dynamo.reset()
    m = _make(name)
    x, hx = torch.randn(T, B, I), _hx(m, B)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager", dynamic=True)
    want_out, want_g = _grads(m, x, hx, lengths, m)
    got_out, got_g = _grads(m, x, hx, lengths, compiled)
    for a, b in zip(got_out + list(got_g), want_out + list(want_g)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # another T and B: dynamic shapes, same compiled code
    x2 = torch.randn(T + 3, B + 1, I)
    l2 = None if lengths is None else torch.tensor([9, 1, 5, 7])
    torch.testing.assert_close(_flat(compiled(x2, lengths=l2)), _flat(m(x2, lengths=l2)))


def test_compile_reference_backend_and_batch_first():
    """The operator's backward recomputes on whatever backend the module asks for."""
    torch._dynamo.reset()
    m = _make("LSTM", backend="reference", batch_first=True, num_layers=1)
    x, hx = torch.randn(B, T, I), _hx(m, B)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    want_out, want_g = _grads(m, x, hx, LENS, m)
    got_out, got_g = _grads(m, x, hx, LENS, compiled)
    for a, b in zip(got_out + list(got_g), want_out + list(want_g)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# Inductor's import path touches torch.jit.script_method, deprecated in torch itself.
@pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")
def test_compile_inductor_in_a_model():
    """A recur layer and a head under the default Inductor backend."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    rnn, head = recur.GRU(I, H, num_layers=2), torch.nn.Linear(H, 2)

    def f(x, lengths):
        out, h = rnn(x, lengths=lengths)
        return head(out[-1] + h[-1])

    compiled = torch.compile(f, fullgraph=True)
    x = torch.randn(T, B, I)
    torch.testing.assert_close(compiled(x, LENS), f(x, LENS), atol=1e-6, rtol=1e-5)


def test_compile_training_dropout_runs_and_backprops():
    """Inter-layer dropout stays outside the operator (traced F.dropout): with p=1 the second
    layer sees zeros, so the output is layer 1 run on zeros and layer 0 gets zero gradient."""
    torch._dynamo.reset()
    m = _make("LSTM", dropout=1.0).train()
    out, _ = torch.compile(m, fullgraph=True, backend="aot_eager")(torch.randn(T, B, I))
    top = recur.LSTM(2 * H, H, bidirectional=True)
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in m.state_dict().items()
                         if "_l1" in k})
    torch.testing.assert_close(out, top(torch.zeros(T, B, 2 * H))[0])
    out.sum().backward()
    assert torch.count_nonzero(m.weight_ih_l0.grad) == 0
    assert torch.count_nonzero(m.bias_ih_l1.grad) > 0  # (its input is zero: W_ih gets 0)


class _Wrap(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, lengths):
        return self.rnn(x, lengths=lengths)


@pytest.mark.parametrize("name", list(CASES))
def test_export_runs_and_matches_eager(name):
    m = _make(name).eval()
    x = torch.randn(T, B, I)
    Td, Bd = torch.export.Dim("T"), torch.export.Dim("B")
    ep = torch.export.export(_Wrap(m), (x, LENS),
                             dynamic_shapes={"x": {0: Td, 1: Bd}, "lengths": {0: Bd}})
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count("recur.rnn_layer.default") == 2  # one per layer
    assert not any("lstm" in t or "gru" in t or "rnn_tanh" in t for t in targets)
    for x2, l2 in ((x, LENS), (torch.randn(9, 5, I), torch.tensor([9, 3, 1, 8, 9]))):
        torch.testing.assert_close(_flat(ep.module()(x2, l2)), _flat(m(x2, lengths=l2)))


def test_export_without_lengths_and_saved_program(tmp_path):
    m = _make("LSTM-proj").eval()

    class NoLens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = m

        def forward(self, x):
            return self.rnn(x)

    x = torch.randn(T, B, I)
    ep = torch.export.export(NoLens(), (x,), dynamic_shapes={"x": {0: torch.export.Dim("T")}})
    torch.export.save(ep, tmp_path / "lstm.pt2")
    loaded = torch.export.load(tmp_path / "lstm.pt2")
    x2 = torch.randn(11, B, I)
    torch.testing.assert_close(_flat(loaded.module()(x2)), _flat(m(x2)))
