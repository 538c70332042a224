"""Declared cells through the whole module stack (layers, bidirectional, lengths, packed),
against hand-written loops (float64: outputs, states, gradients), the three documented
examples of examples/custom_cells.py, and the declaration API's errors."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
import torch
from _loops import assert_close_all, grads, loop_stack
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import recur
from recur.cells import Param, declare

f64 = torch.float64
T, B, I, H = 6, 3, 4, 5
LENGTHS = torch.tensor([6, 2, 4])

_path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_cells.py"
_spec = importlib.util.spec_from_file_location("custom_cells_example", _path)
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)


def _p(m, name, k, D):
    return getattr(m, f"{name}_l{k // D}{'_reverse' if k % D else ''}")


def _peephole_step(m, D):
    def step(k, t, x, states):
        h, c = states
        g = (x @ _p(m, "weight_ih", k, D).T + _p(m, "bias_ih", k, D)
             + h @ _p(m, "weight_hh", k, D).T + _p(m, "bias_hh", k, D))
        gi, gf, gg, go = g.chunk(4, -1)
        w = _p(m, "w_peep", k, D)
        i = torch.sigmoid(gi + w[0] * c)
        f = torch.sigmoid(gf + w[1] * c)
        c_new = f * c + i * torch.tanh(gg)
        o = torch.sigmoid(go + w[2] * c_new)
        return o * torch.tanh(c_new), c_new
    return step


def _leaky_step(m, D):
    def step(k, t, x, states):
        (h,) = states
        a = (x @ _p(m, "weight_ih", k, D).T + _p(m, "bias_ih", k, D)
             + h @ _p(m, "weight_hh", k, D).T + _p(m, "bias_hh", k, D))
        tau = torch.exp(_p(m, "log_tau", k, D))
        return (h + (torch.tanh(a) - h) / (1 + tau),)
    return step


def _cifg_step(m, D):
    def step(k, t, x, states):
        h, c = states
        g = (x @ _p(m, "weight_ih", k, D).T + _p(m, "bias_ih", k, D)
             + h @ _p(m, "weight_hh", k, D).T + _p(m, "bias_hh", k, D))
        gf, gg, go = g.chunk(3, -1)
        f = torch.sigmoid(gf)
        c_new = f * c + (1 - f) * torch.tanh(gg)
        return torch.sigmoid(go) * torch.tanh(c_new), c_new
    return step


@pytest.mark.parametrize("L,D", [(1, 1), (2, 2)], ids=["L1-D1", "L2-D2"])
@pytest.mark.parametrize("name", ["peephole", "leaky", "cifg"])
def test_example_cells_match_hand_loops(name, L, D):
    cell, make, n = {"peephole": (ex.peephole_lstm, _peephole_step, 2),
                     "leaky": (ex.leaky_tanh, _leaky_step, 1),
                     "cifg": (ex.cifg_lstm, _cifg_step, 2)}[name]
    torch.manual_seed(0)
    m = recur.CustomRNN(cell, I, H, num_layers=L, bidirectional=D == 2, dtype=f64)
    with torch.no_grad():
        for p in m.parameters():  # log_tau starts at 0: move it
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(T, B, I, dtype=f64, requires_grad=True)
    hx = tuple(torch.randn(L * D, B, H, dtype=f64) for _ in range(n))
    out, hn = m(x, hx if n > 1 else hx[0], lengths=LENGTHS)
    hn = hn if isinstance(hn, tuple) else (hn,)
    r_out, r_hn = loop_stack(make(m, D), x, LENGTHS, L, D, hx)
    assert_close_all((out, *hn), (r_out, *r_hn))
    params = [x, *m.parameters()]
    assert_close_all(grads((out, *hn), params), grads((r_out, *r_hn), params))


def test_custom_cell_packed_batch_first_unbatched():
    m = recur.CustomRNN(ex.peephole_lstm, I, H, num_layers=2, bidirectional=True,
                        batch_first=True, dtype=f64)
    x = torch.randn(B, T, I, dtype=f64)
    lo, (lh, lc) = m(x, lengths=LENGTHS)
    po, (ph, pc) = m(pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False))
    torch.testing.assert_close(pad_packed_sequence(po, batch_first=True)[0], lo)
    assert_close_all((ph, pc), (lh, lc))
    uo, (uh, uc) = m(x[1])  # unbatched [T, I]
    fo, (fh, fc) = m(x[1:2])
    assert_close_all((uo, uh, uc), (fo[0], fh[:, 0], fc[:, 0]))


def test_parameter_names_and_init():
    m = recur.CustomRNN(ex.peephole_lstm, I, H, bidirectional=True)
    names = list(m.state_dict())
    assert names[:8] == list(torch.nn.LSTM(I, H, bidirectional=True).state_dict())
    assert names[8:] == ["w_peep_l0", "w_peep_l0_reverse"]
    assert m.w_peep_l0.shape == (3, H)
    z = recur.CustomRNN(ex.leaky_tanh, I, H)
    assert torch.equal(z.log_tau_l0, torch.zeros(H))  # Param init "zeros" survives reset
    z.reset_parameters()
    assert torch.equal(z.log_tau_l0, torch.zeros(H))


def test_lesson_rnn_classifier_equals_lesson_loop():
    """The tutorial's RNN fed one letter at a time == CharClassifier on the padded batch."""
    torch.manual_seed(0)
    n_letters, n_hidden, n_classes = 7, 9, 4
    lesson = ex.LessonRNN(n_letters, n_hidden, n_classes).double()
    ours = ex.CharClassifier(n_letters, n_hidden, n_classes).double().load_lesson(lesson)
    lengths = torch.tensor([5, 1, 3])
    x = torch.zeros(5, 3, n_letters, dtype=f64)
    for b, n in enumerate(lengths.tolist()):
        x[torch.arange(n), b, torch.randint(0, n_letters, (n,))] = 1.0
    got = ours(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        hidden = torch.zeros(1, n_hidden, dtype=f64)
        for t in range(n):
            output, hidden = lesson(x[t, b:b + 1], hidden)
        torch.testing.assert_close(got[b:b + 1], output, atol=1e-12, rtol=1e-12)
    # gradients flow to the lesson-shaped weights
    params = list(ours.parameters())
    g = torch.autograd.grad(got.sum(), params, allow_unused=True)
    assert all(gi is not None for gi in g)


def test_my_own_cell_is_under_20_lines():
    import inspect

    src = inspect.getsource(ex.leaky_tanh.update)
    assert len(src.strip().splitlines()) + 1 < 20  # + the @declare line


def test_declare_as_function_and_scan():
    def tanh_cell(xg, hg, states):
        return (torch.tanh(xg + hg),)

    cell = declare(tanh_cell, num_gates=1)
    assert cell.name == "tanh_cell" and cell.native_mode is None
    ref = torch.nn.RNN(I, H, num_layers=2, bidirectional=True, dtype=f64)
    m = recur.CustomRNN(cell, I, H, num_layers=2, bidirectional=True, dtype=f64)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, dtype=f64)
    assert_close_all(m(x), ref(x))


def test_declare_errors():
    with pytest.raises(ValueError, match="state 0 returned by update must have shape"):
        declare(lambda xg, hg, s: (xg,), num_gates=2)
    with pytest.raises(ValueError, match="tuple of 2 state"):
        declare(lambda xg, hg, s: (xg[:, :3],), num_gates=1, num_states=2)
    with pytest.raises(ValueError, match="shape entries"):
        Param("w", ("K",))
    with pytest.raises(ValueError, match="init"):
        Param("w", ("H",), "normal")
    with pytest.raises(TypeError, match="recur.cells.Cell"):
        recur.CustomRNN("lstm", I, H)


def test_backends_for_custom_cells():
    with pytest.raises(ValueError, match="backend='torch'"):
        recur.CustomRNN(ex.leaky_tanh, I, H, backend="torch")(torch.randn(T, B, I))
    with pytest.raises(ValueError, match="backend='triton'"):
        recur.CustomRNN(ex.leaky_tanh, I, H, backend="triton")(torch.randn(T, B, I))
    # a cell that names a Triton pointwise keeps it for the fused backend
    cell = declare(lambda xg, hg, s: (torch.tanh(xg + hg),), num_gates=1, name="t",
                   triton="recur.cells.triton_pointwise:RNN_TANH")
    assert cell.triton_update == "recur.cells.triton_pointwise:RNN_TANH"
