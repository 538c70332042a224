"""Every bad input raises torch.nn's exception class with the expected and received value."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import recur


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(hidden_size=0), ValueError, "hidden_size must be greater than zero, got 0"),
    (dict(hidden_size=-3), ValueError, "hidden_size must be greater than zero, got -3"),
    (dict(input_size=0), ValueError, "input_size must be greater than zero, got 0"),
    (dict(num_layers=0), ValueError, "num_layers must be greater than zero, got 0"),
    (dict(dropout=1.5), ValueError, r"dropout should be a number in range \[0, 1\].*got 1.5"),
    (dict(dropout=-0.1), ValueError, r"range \[0, 1\].*got -0.1"),
    (dict(dropout=True), ValueError, r"range \[0, 1\].*got True"),
    (dict(proj_size=4), ValueError, "proj_size has to be smaller than hidden_size, got "
                                    "proj_size=4 and hidden_size=4"),
    (dict(proj_size=-1), ValueError, "proj_size should be a positive integer.*got -1"),
    (dict(bias=1), TypeError, "bias should be of type bool, got: int"),
    (dict(hidden_size=4.0), TypeError, "hidden_size should be of type int, got: float"),
    (dict(backend="cudnn"), ValueError, "backend must be one of .* got 'cudnn'"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        recur.LSTM(**args)


@pytest.mark.parametrize("cls", [recur.RNN, recur.GRU])
def test_proj_size_only_for_lstm(cls):
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        cls(3, 4, proj_size=2)


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        recur.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        recur.RNNCell(3, 4, nonlinearity="gelu")


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        recur.GRU(3, 4, dropout=0.2)


@pytest.fixture
def lstm():
    return recur.LSTM(3, 4, num_layers=2)


def test_wrong_rank(lstm):
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D instead"):
        lstm(torch.randn(2, 3, 4, 3))
    with pytest.raises(ValueError, match="got 1D instead"):
        lstm(torch.randn(3))


def test_wrong_feature_size(lstm):
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. "
                                           "Expected 3, got 5"):
        lstm(torch.randn(4, 2, 5))


def test_wrong_hx_shape(lstm):
    x = torch.randn(4, 2, 3)
    h, c = torch.zeros(2, 2, 4), torch.zeros(2, 2, 4)
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 2, 4\), got \[1, 2, 4\]"):
        lstm(x, (torch.zeros(1, 2, 4), c))
    with pytest.raises(RuntimeError, match=r"Expected cell size \(2, 2, 4\), got \[2, 3, 4\]"):
        lstm(x, (h, torch.zeros(2, 3, 4)))
    with pytest.raises(RuntimeError, match="For batched 3-D input, hx should also be 3-D but "
                                           "got \\(2-D, 3-D\\)"):
        lstm(x, (torch.zeros(2, 4), c))
    with pytest.raises(RuntimeError, match="For unbatched 2-D input, hx should also be 2-D"):
        lstm(torch.randn(4, 3), (h, c))
    with pytest.raises(ValueError, match="expects hx as a tuple \\(h_0, c_0\\), got 1 tensor"):
        lstm(x, (h,))


def test_gru_hx_shape():
    gru = recur.GRU(3, 4, bidirectional=True)
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 5, 4\), got \[1, 5, 4\]"):
        gru(torch.randn(2, 5, 3), torch.zeros(1, 5, 4))


@pytest.mark.parametrize("lengths, match", [
    ([4, 0], r"lengths must lie in \[1, 4\] \(the sequence length\), got values in \[0, 4\]"),
    ([5, 2], r"lengths must lie in \[1, 4\].*got values in \[2, 5\]"),
    ([3], r"lengths must have shape \(2,\) to match the batch, got shape \(1,\)"),
    ([[3, 2]], r"lengths must have shape \(2,\).*got shape \(1, 2\)"),
    ([2.0, 3.0], "lengths must hold integers, got dtype torch.float32"),
])
def test_bad_lengths(lstm, lengths, match):
    with pytest.raises(ValueError, match=match):
        lstm(torch.randn(4, 2, 3), lengths=torch.tensor(lengths))


def test_lengths_with_packed_input(lstm):
    packed = pack_padded_sequence(torch.randn(4, 2, 3), [4, 2])
    with pytest.raises(ValueError, match="lengths= cannot be combined with a PackedSequence"):
        lstm(packed, lengths=[4, 2])


def test_empty_sequence_is_torch_nn_error(lstm):
    """torch.nn's class and message; an empty batch is fine (tests/test_torch_compat.py)."""
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        lstm(torch.randn(0, 2, 3))


def test_mismatched_dtypes(lstm):
    with pytest.raises(ValueError, match=r"RNN input dtype \(torch.float64\) does not match "
                                         r"weight dtype \(torch.float32\)"):
        lstm(torch.randn(4, 2, 3, dtype=torch.float64))
    h = torch.zeros(2, 2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"hx dtype \(torch.float64\) does not match input "
                                         r"dtype \(torch.float32\)"):
        lstm(torch.randn(4, 2, 3), (h, h.float()))


def test_mismatched_devices(lstm):
    meta = torch.randn(4, 2, 3, device="meta")
    with pytest.raises(RuntimeError, match="Expected input on the weights' device cpu, got "
                                           "input on meta"):
        lstm(meta)


@pytest.mark.parametrize("cls, hx", [
    (recur.RNNCell, torch.zeros(2, 5)), (recur.GRUCell, torch.zeros(3, 4)),
])
def test_cell_errors(cls, hx):
    cell = cls(3, 4)
    with pytest.raises(ValueError, match=f"{cls.__name__}: Expected input to be 1D or 2D, "
                                         "got 3D instead"):
        cell(torch.randn(1, 2, 3))
    with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 5 "
                                           "expected 3"):
        cell(torch.randn(2, 5))
    with pytest.raises(RuntimeError, match=r"Input batch size 2 doesn't match hidden0 batch "
                                           r"size \d|hidden0 has inconsistent hidden_size: "
                                           r"got 5, expected 4"):
        cell(torch.randn(2, 3), hx)


def test_lstm_cell_hx_must_be_pair():
    with pytest.raises(ValueError, match="LSTMCell: Expected hx to be a tuple \\(h, c\\), got "
                                         "Tensor"):
        recur.LSTMCell(3, 4)(torch.randn(2, 3), torch.zeros(2, 4))


def test_cell_modules_refuse_triton():
    """The refusal is the planner's (``recur.ops.plan.accepts`` for one step), raised at
    construction for an explicit backend; ``RECUR_BACKEND`` naming a backend that runs no
    single step leaves ``auto``'s choice (PyTorch's cell kernel)."""
    from recur.ops.layer import LayerSpec
    from recur.ops.plan import accepts, plan_step

    for name in ("triton", "cpu"):
        reason = accepts(name, LayerSpec(recur.cells.LSTM, 4, 4), None, unit="step")
        assert "run whole sequences" in reason
        with pytest.raises(ValueError, match=f"backend='{name}' cannot run cell 'lstm' here: "
                                             ".*run whole sequences.*not one step"):
            recur.LSTMCell(3, 4, backend=name)
    assert plan_step(LayerSpec(recur.cells.GRU, 4, 4), "reference").backend == "reference"


@pytest.mark.parametrize("env,runs", [("triton", "torch"), ("cpu", "torch"),
                                      ("reference", "reference"), ("torch", "torch")])
def test_cell_modules_under_recur_backend(monkeypatch, env, runs):
    cell = recur.GRUCell(3, 4)
    assert cell._step_backend() == "torch"
    monkeypatch.setenv("RECUR_BACKEND", env)  # read at every call, as by the layers
    assert cell._step_backend() == runs
    ref = torch.nn.GRUCell(3, 4)
    ref.load_state_dict(cell.state_dict())
    x = torch.randn(2, 3)
    torch.testing.assert_close(cell(x), ref(x))
