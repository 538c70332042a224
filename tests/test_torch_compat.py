"""Drop-in where users meet it (issue 17): reparametrized weights (weight_norm, the
parametrize API, pruning), empty batches, zero sizes, torch.nn's error classes, and whole
modules saved with ``torch.save`` and loaded with ``weights_only=True`` — each against
torch.nn."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize, prune

import recur
from recur.cells import declare

PAIRS = {"RNN": (torch.nn.RNN, recur.RNN), "LSTM": (torch.nn.LSTM, recur.LSTM),
         "GRU": (torch.nn.GRU, recur.GRU)}
CELL_PAIRS = {"RNNCell": (torch.nn.RNNCell, recur.RNNCell),
              "LSTMCell": (torch.nn.LSTMCell, recur.LSTMCell),
              "GRUCell": (torch.nn.GRUCell, recur.GRUCell)}


def _pair(name, *args, backend="auto", **kwargs):
    torch_cls, recur_cls = {**PAIRS, **CELL_PAIRS}[name]
    ref = torch_cls(*args, **kwargs).double()
    ours = recur_cls(*args, **kwargs, backend=backend).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _outputs_and_grads(module, x):
    x = x.detach().clone().requires_grad_()
    out = module(x)
    flat = [t for t in torch.utils._pytree.tree_leaves(out)]
    g = torch.Generator().manual_seed(0)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in flat)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return [t.detach() for t in flat], x.grad, grads


def _assert_same(ref, ours, x):
    want, want_dx, want_g = _outputs_and_grads(ref, x)
    got, got_dx, got_g = _outputs_and_grads(ours, x)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_dx, want_dx, rtol=1e-10, atol=1e-12)
    assert got_g.keys() == want_g.keys()
    for n in want_g:
        torch.testing.assert_close(got_g[n], want_g[n], rtol=1e-10, atol=1e-12, msg=n)


# --- reparametrized weights ---------------------------------------------------------------

@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("name", list(PAIRS))
def test_weight_norm(name, backend):
    ref, ours = _pair(name, 4, 6, 2, backend=backend)
    with pytest.warns(FutureWarning):  # torch.nn.utils.weight_norm is deprecated upstream
        ref = torch.nn.utils.weight_norm(ref, name="weight_hh_l0")
    with pytest.warns(FutureWarning):
        ours = torch.nn.utils.weight_norm(ours, name="weight_hh_l0")
    assert "weight_hh_l0_g" in dict(ours.named_parameters())
    _assert_same(ref, ours, torch.randn(5, 3, 4, dtype=torch.float64))


class _Scale(torch.nn.Module):
    def forward(self, w):
        return w * 0.5 + 0.1


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("name", list(PAIRS))
def test_parametrize_api(name, backend):
    ref, ours = _pair(name, 4, 6, 2, bidirectional=True, backend=backend)
    for m in (ref, ours):
        parametrize.register_parametrization(m, "weight_hh_l0_reverse", _Scale())
        parametrize.register_parametrization(m, "weight_ih_l1", _Scale())
    _assert_same(ref, ours, torch.randn(5, 3, 4, dtype=torch.float64))
    # the parametrization acts: removing it changes the output
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    before = ours(x)[0]
    parametrize.remove_parametrizations(ours, "weight_ih_l1", leave_parametrized=False)
    assert not torch.allclose(ours(x)[0], before)


@pytest.mark.parametrize("name", list(PAIRS))
def test_pruning(name):
    ref, ours = _pair(name, 4, 6)
    for m in (ref, ours):
        torch.manual_seed(0)
        prune.l1_unstructured(m, "weight_ih_l0", 0.5)
    assert torch.equal(ours.weight_ih_l0_mask, ref.weight_ih_l0_mask)
    assert int((ours.weight_ih_l0 == 0).sum()) >= ours.weight_ih_l0.numel() // 2
    _assert_same(ref, ours, torch.randn(5, 3, 4, dtype=torch.float64))


@pytest.mark.parametrize("name", list(CELL_PAIRS))
def test_cells_with_parametrized_weights(name):
    ref, ours = _pair(name, 4, 6)
    for m in (ref, ours):
        parametrize.register_parametrization(m, "weight_hh", _Scale())
    _assert_same(ref, ours, torch.randn(3, 4, dtype=torch.float64))


# --- empty batches, zero sizes, zero-length sequences -------------------------------------

@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("name", list(PAIRS))
def test_empty_batch(name, backend):
    ref, ours = _pair(name, 3, 4, 2, bidirectional=True, backend=backend)
    for batch_first, shape in ((False, (5, 0, 3)), (True, (0, 5, 3))):
        ref.batch_first = ours.batch_first = batch_first
        x = torch.zeros(shape, dtype=torch.float64)
        want = torch.utils._pytree.tree_leaves(ref(x))
        got = torch.utils._pytree.tree_leaves(ours(x))
        assert [t.shape for t in got] == [t.shape for t in want]
        xg = x.clone().requires_grad_()
        out = ours(xg)[0]
        out.sum().backward()
        assert xg.grad.shape == x.shape
    ours.batch_first = False
    out, _ = ours(torch.zeros(5, 0, 3, dtype=torch.float64), lengths=torch.zeros(0, dtype=int))
    assert out.shape == (5, 0, 8)


@pytest.mark.parametrize("cls", [recur.LayerNormLSTM, recur.LayerNormGRU, recur.VariantLSTM])
def test_empty_batch_variants(cls):
    out, _ = cls(3, 4, 2, bidirectional=True)(torch.zeros(5, 0, 3))
    assert out.shape == (5, 0, 8)


@pytest.mark.parametrize("name", list(CELL_PAIRS))
def test_cells_empty_batch_and_zero_sizes(name):
    for args, x in (((3, 4), torch.zeros(0, 3)), ((10, 0), torch.zeros(2, 10)),
                    ((0, 5), torch.zeros(2, 0))):
        ref, ours = _pair(name, *args)
        want = torch.utils._pytree.tree_leaves(ref(x.double()))
        got = torch.utils._pytree.tree_leaves(ours(x.double()))
        assert [t.shape for t in got] == [t.shape for t in want], (name, args)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list(PAIRS))
def test_zero_length_sequence_raises_like_torch_nn(name):
    torch_cls, recur_cls = PAIRS[name]
    for x in (torch.zeros(0, 2, 3), torch.zeros(0, 3)):
        with pytest.raises(RuntimeError) as want:
            torch_cls(3, 4)(x)
        with pytest.raises(RuntimeError) as got:
            recur_cls(3, 4)(x)
        assert str(got.value) == str(want.value)


@pytest.mark.parametrize("bias", ["relu", 1, np.bool_(True), 0])
@pytest.mark.parametrize("name", list(CELL_PAIRS))
def test_cells_take_any_bias_value_like_torch_nn(name, bias):
    torch_cls, recur_cls = CELL_PAIRS[name]
    ref, ours = torch_cls(10, 20, bias), recur_cls(10, 20, bias)
    assert ours.bias is ref.bias or ours.bias == ref.bias
    assert (ours.bias_ih is None) == (ref.bias_ih is None)


@pytest.mark.parametrize("name", list(CELL_PAIRS))
def test_cells_check_shapes_before_dtype(name):
    torch_cls, recur_cls = CELL_PAIRS[name]
    x = torch.zeros(2, 3, dtype=torch.float64)
    h = torch.zeros(5, 4)
    hx = (h, h) if name == "LSTMCell" else h
    with pytest.raises(RuntimeError) as want:
        torch_cls(3, 4)(x, hx)
    with pytest.raises(RuntimeError) as got:
        recur_cls(3, 4)(x, hx)
    assert str(got.value) == str(want.value)
    # shapes right, dtype wrong: a RuntimeError that names both dtypes
    hx = (torch.zeros(2, 4),) * 2 if name == "LSTMCell" else torch.zeros(2, 4)
    with pytest.raises(RuntimeError, match="float64.*float32"):
        recur_cls(3, 4)(x, hx)


# --- whole modules saved and loaded with weights_only=True --------------------------------

@declare(num_gates=1, num_states=1, name="compat_test_tanh")
def _tanh_cell(xg, hg, states):
    return (torch.tanh(xg + hg),)


MODULES = {
    "RNN": lambda: recur.RNN(3, 4, 2, nonlinearity="relu"),
    "LSTM": lambda: recur.LSTM(3, 4, 2, proj_size=2, bidirectional=True),
    "GRU": lambda: recur.GRU(3, 4, batch_first=True),
    "RNNCell": lambda: recur.RNNCell(3, 4),
    "LSTMCell": lambda: recur.LSTMCell(3, 4),
    "GRUCell": lambda: recur.GRUCell(3, 4, bias=False),
    "LayerNormLSTM": lambda: recur.LayerNormLSTM(3, 4),
    "LayerNormGRU": lambda: recur.LayerNormGRU(3, 4),
    "VariantLSTM": lambda: recur.VariantLSTM(3, 4, zoneout=0.1, forget_bias=1.0),
    "VariantGRU": lambda: recur.VariantGRU(3, 4, recurrent_dropout=0.2),
    "VariantRNN": lambda: recur.VariantRNN(recur.cells.RNN_TANH, 3, 4, zoneout=0.1),
    "CustomRNN": lambda: recur.CustomRNN(_tanh_cell, 3, 4),
    "MinGRU": lambda: recur.MinGRU(3, 4),
    "MinLSTM": lambda: recur.MinLSTM(3, 4),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_whole_module_loads_with_weights_only(name):
    module = MODULES[name]().eval()
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    with torch.serialization.safe_globals([type(module)]):  # the module class alone
        loaded = torch.load(buf, weights_only=True)
    assert type(loaded) is type(module)
    if hasattr(module, "cell"):
        assert loaded.cell is module.cell
    x = torch.randn(2, 3) if name.endswith("Cell") else torch.randn(5, 2, 3)
    for a, b in zip(torch.utils._pytree.tree_leaves(loaded(x)),
                    torch.utils._pytree.tree_leaves(module(x))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_model_holding_recur_layers_loads_like_torch_nn():
    """pytorch/examples' word_language_model pattern: the user's model class, torch.nn's
    modules and recur's module class are the only globals to allow."""
    model = torch.nn.Sequential(torch.nn.Embedding(10, 3), recur.LSTM(3, 4, 2))
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    with torch.serialization.safe_globals([torch.nn.Sequential, torch.nn.Embedding,
                                           recur.LSTM]):
        loaded = torch.load(buf, weights_only=True)
    tokens = torch.randint(0, 10, (5, 2))
    torch.testing.assert_close(loaded(tokens)[0], model(tokens)[0])


def test_loading_a_module_whose_cell_is_not_declared_says_so():
    module = recur.CustomRNN(_tanh_cell, 3, 4)
    state = module.__getstate__()
    assert state["cell"] == "compat_test_tanh"
    state["cell"] = "not_declared_anywhere"
    fresh = recur.CustomRNN.__new__(recur.CustomRNN)
    with pytest.raises(KeyError, match="not_declared_anywhere.*import the module"):
        fresh.__setstate__(state)


def test_builtin_cell_names_cannot_be_taken():
    with pytest.raises(ValueError, match="'lstm' belongs to recur's built-in cell"):
        declare(lambda xg, hg, s: (torch.tanh(xg + hg),), num_gates=1, name="lstm")
