"""The engine and the modules beyond plain parity: gradcheck / gradgradcheck of the reference
backend in float64, lengths= equals PackedSequence, backend="torch" equals "reference",
RECUR_BACKEND, dropout, NaN propagation, and the cells against torch.nn's cells."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import recur
from recur import cells
from recur.ops import LayerSpec, plan_stack, scan

CELLS = {"rnn_tanh": cells.RNN_TANH, "rnn_relu": cells.RNN_RELU, "lstm": cells.LSTM,
         "gru": cells.GRU}
F64 = torch.float64


def _module(mode, **kw):
    if mode == "lstm":
        return recur.LSTM(3, 4, **kw)
    if mode == "gru":
        return recur.GRU(3, 4, **kw)
    return recur.RNN(3, 4, nonlinearity=mode.split("_")[1], **kw)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("name", list(CELLS))
def test_scan_gradcheck_gradgradcheck(name, reverse):
    cell = CELLS[name]
    g = torch.Generator().manual_seed(0)
    T, B, H = 4, 3, 3
    G = cell.num_gates
    xg = torch.randn(T, B, G * H, dtype=F64, generator=g, requires_grad=True)
    w = (0.5 * torch.randn(G * H, H, dtype=F64, generator=g)).requires_grad_()
    b = torch.randn(G * H, dtype=F64, generator=g, requires_grad=True)
    s0 = [torch.randn(B, H, dtype=F64, generator=g, requires_grad=True)
          for _ in range(cell.num_states)]
    lengths = torch.tensor([4, 1, 3])

    def f(xg, w, b, *s0):
        out, states = scan(cell, xg, w, b, tuple(s0), lengths=lengths, reverse=reverse,
                           backend="reference")
        return (out,) + tuple(states)

    inputs = (xg, w, b, *s0)
    if name == "rnn_relu":  # keep pre-activations away from relu's kink
        with torch.no_grad():
            xg.add_(3.0)
    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


def test_scan_projection_gradcheck():
    g = torch.Generator().manual_seed(1)
    T, B, H, P = 3, 2, 4, 2
    xg = torch.randn(T, B, 4 * H, dtype=F64, generator=g, requires_grad=True)
    w = torch.randn(4 * H, P, dtype=F64, generator=g, requires_grad=True)
    w_hr = torch.randn(P, H, dtype=F64, generator=g, requires_grad=True)
    s0 = (torch.randn(B, P, dtype=F64, generator=g, requires_grad=True),
          torch.randn(B, H, dtype=F64, generator=g, requires_grad=True))

    def f(xg, w, w_hr, h0, c0):
        out, (h, c) = scan(cells.LSTM, xg, w, None, (h0, c0), w_hr=w_hr, backend="reference")
        return out, h, c

    assert gradcheck(f, (xg, w, w_hr, *s0))
    assert gradgradcheck(f, (xg, w, w_hr, *s0))


@pytest.mark.parametrize("mode", list(CELLS))
def test_module_gradgradcheck_reference(mode):
    torch.manual_seed(0)
    m = _module(mode, num_layers=2, bidirectional=True, dtype=F64, backend="reference")
    x = torch.randn(3, 2, 3, dtype=F64, requires_grad=True)
    if mode == "rnn_relu":
        with torch.no_grad():
            x.add_(2.0)

    def f(x):
        out, _ = m(x, lengths=[3, 2])
        return out

    assert gradcheck(f, (x,))
    assert gradgradcheck(f, (x,))


@pytest.mark.parametrize("backend", ["reference", "torch", "auto"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("mode", list(CELLS))
def test_lengths_equals_packed(mode, batch_first, backend):
    torch.manual_seed(1)
    m = _module(mode, num_layers=2, bidirectional=True, batch_first=batch_first, dtype=F64,
                backend=backend)
    lengths = torch.tensor([2, 5, 1, 4])
    x = torch.randn((4, 5, 3) if batch_first else (5, 4, 3), dtype=F64)
    out_l, st_l = m(x, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out_p, st_p = m(packed)
    out_p, lens_p = pad_packed_sequence(out_p, batch_first=batch_first, total_length=5)
    torch.testing.assert_close(out_l, out_p, atol=1e-12, rtol=0)
    for a, b in zip(st_l if isinstance(st_l, tuple) else (st_l,),
                    st_p if isinstance(st_p, tuple) else (st_p,)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    # outputs past each row's length are exactly zero
    tmajor = out_l if not batch_first else out_l.transpose(0, 1)
    for b_, n in enumerate(lengths.tolist()):
        assert torch.all(tmajor[n:, b_] == 0)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
@pytest.mark.parametrize("mode", list(CELLS))
def test_torch_backend_equals_reference(mode):
    torch.manual_seed(2)
    kw = dict(num_layers=3, bidirectional=True, dtype=F64)
    if mode == "lstm":
        kw["proj_size"] = 2
    a = _module(mode, backend="torch", **kw)
    b = _module(mode, backend="reference", **kw)
    b.load_state_dict(a.state_dict())
    x = torch.randn(6, 3, 3, dtype=F64)
    for lengths in (None, [6, 3, 1]):
        oa, sa = a(x, lengths=lengths)
        ob, sb = b(x, lengths=lengths)
        torch.testing.assert_close(oa, ob, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(sa, sb, atol=1e-12, rtol=1e-12)


def _plan(cell, x, backend="auto", extras=frozenset()):
    spec = LayerSpec(cell, 4, 4, extras=extras)
    return plan_stack(cell, [spec], x, backend)


def test_recur_backend_env_overrides_auto(monkeypatch):
    x = torch.randn(2, 1, 3)
    assert _plan(cells.LSTM, x).backend == "torch"
    monkeypatch.setenv("RECUR_BACKEND", "reference")
    assert _plan(cells.LSTM, x).backend == "reference"
    # an explicit backend= wins over the environment
    assert _plan(cells.LSTM, x, "torch").backend == "torch"
    monkeypatch.setenv("RECUR_BACKEND", "fastest")
    with pytest.raises(ValueError, match="RECUR_BACKEND must be one of .* got 'fastest'"):
        recur.LSTM(3, 4)(x)


def test_auto_without_native_kernel_uses_the_next_backend_and_says_why():
    from recur.ops.cpu_codegen import find_compiler

    nxt = "cpu" if find_compiler() else "reference"  # recur's CPU kernels need a C compiler
    x = torch.randn(2, 1, 3)
    plan = _plan(cells.LSTM, x, extras=frozenset({"h_mask"}))
    assert plan.backend == nxt
    assert "h_mask, which PyTorch's kernels cannot run" in plan.rejected["torch"]
    with pytest.raises(ValueError, match="backend='torch' cannot run cell 'lstm' here: the "
                                         "layer adds h_mask"):
        _plan(cells.LSTM, x, "torch", extras=frozenset({"h_mask"}))
    # a layer-norm GRU's update takes its LN gain and bias and b_hh ([G*H] each)
    spec = LayerSpec(cells.LAYERNORM_GRU, 4, 4, b_hh=False,
                     extras=frozenset({"cell_weights"}), weight_shapes=((12,), (12,), (12,)))
    plan = plan_stack(cells.LAYERNORM_GRU, [spec], x)
    assert plan.backend == nxt and "not one of torch.nn's four" in plan.rejected["torch"]


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_dropout_between_layers_only_in_training(backend):
    torch.manual_seed(0)
    m = recur.GRU(3, 8, num_layers=2, dropout=0.5, backend=backend)
    x = torch.randn(5, 2, 3)
    m.eval()
    o1, _ = m(x)
    o2, _ = m(x)
    assert torch.equal(o1, o2)  # eval: deterministic, no dropout
    m.train()
    o3, _ = m(x)
    o4, _ = m(x)
    assert not torch.equal(o3, o4)  # training: a fresh dropout mask per call
    single = recur.GRU(3, 8, num_layers=2, backend=backend)
    single.load_state_dict(m.state_dict())
    single.train()
    torch.testing.assert_close(single(x)[0], o1)  # dropout=0 in training == eval with dropout


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_nan_propagates(backend):
    m = recur.LSTM(3, 4, backend=backend)
    x = torch.randn(4, 2, 3)
    x[1, 0, 2] = float("nan")
    out, (h, c) = m(x)
    assert torch.isnan(out[1:, 0]).all() and torch.isnan(h[0, 0]).all()
    assert not torch.isnan(out[:, 1]).any()  # the other row is untouched
    out, (h, c) = m(x, lengths=[1, 4])  # the NaN lies in row 0's padding: never read
    assert not torch.isnan(out).any() and not torch.isnan(h).any()
    assert torch.all(out[1:, 0] == 0)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cells_match_torch_nn(kind, batched, backend):
    torch.manual_seed(4)
    if kind == "lstm":
        ref, ours = torch.nn.LSTMCell(3, 5, dtype=F64), recur.LSTMCell(3, 5, dtype=F64,
                                                                      backend=backend)
    elif kind == "gru":
        ref, ours = torch.nn.GRUCell(3, 5, dtype=F64), recur.GRUCell(3, 5, dtype=F64,
                                                                    backend=backend)
    else:
        nl = kind.split("_")[1]
        ref = torch.nn.RNNCell(3, 5, nonlinearity=nl, dtype=F64)
        ours = recur.RNNCell(3, 5, nonlinearity=nl, dtype=F64, backend=backend)
    ours.load_state_dict(ref.state_dict(), strict=True)
    lead = (2,) if batched else ()
    x = torch.randn(*lead, 3, dtype=F64, requires_grad=True)
    hx = torch.randn(*lead, 5, dtype=F64, requires_grad=True)
    cx = torch.randn(*lead, 5, dtype=F64, requires_grad=True)
    for state in (None, "given"):
        if kind == "lstm":
            arg = None if state is None else (hx, cx)
        else:
            arg = None if state is None else hx
        r, o = ref(x, arg), ours(x, arg)
        r = r if isinstance(r, tuple) else (r,)
        o = o if isinstance(o, tuple) else (o,)
        for a, b in zip(o, r):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
        ga = torch.autograd.grad(sum(t.sum() for t in o), [x, *ours.parameters()])
        gb = torch.autograd.grad(sum(t.sum() for t in r), [x, *ref.parameters()])
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_bias_false_has_no_bias_parameters():
    m = recur.LSTM(3, 4, bias=False, num_layers=2)
    assert not any("bias" in n for n, _ in m.named_parameters())
    c = recur.GRUCell(3, 4, bias=False)
    assert c.bias_ih is None and c.bias_hh is None
    torch.nn.GRUCell(3, 4, bias=False).load_state_dict(c.state_dict(), strict=True)
