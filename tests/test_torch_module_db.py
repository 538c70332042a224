"""recur against PyTorch's own test definitions of its recurrent modules.

PyTorch ships each module's sample inputs and error inputs in the wheel
(``torch.testing._internal.common_modules.module_db``). For nn.RNN, LSTM, GRU, RNNCell,
LSTMCell and GRUCell: every sample input runs through torch.nn and recur with the same
weights (recur on ``auto`` and on ``reference``), in float64, and the outputs, states and
gradients of every input and parameter must agree; every error input must raise the same
exception class with a message matching torch.nn's regex. Nothing is copied: the installed
torch's definitions are used as they are.
"""

from __future__ import annotations

import re

import pytest
import torch

import recur

common_modules = pytest.importorskip(
    "torch.testing._internal.common_modules",
    reason="the installed torch does not ship torch.testing._internal.common_modules "
           "(module_db) or its dependency expecttest is missing")

PAIRS = {torch.nn.RNN: recur.RNN, torch.nn.LSTM: recur.LSTM, torch.nn.GRU: recur.GRU,
         torch.nn.RNNCell: recur.RNNCell, torch.nn.LSTMCell: recur.LSTMCell,
         torch.nn.GRUCell: recur.GRUCell}
INFOS = {info.module_cls: info for info in common_modules.module_db
         if info.module_cls in PAIRS}
BACKENDS = ["auto", "reference"]


def _samples(info, dtype=torch.float64):
    return info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                   training=True)


def _errors(info):
    if info.module_error_inputs_func is None:
        return []
    return info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                         requires_grad=True, training=True)


def _ids(cls, items):
    return [f"{cls.__name__}-{i}" for i in range(len(items))]


SAMPLE_CASES = [(cls, i) for cls, info in INFOS.items() for i in range(len(_samples(info)))]
ERROR_CASES = [(cls, i) for cls, info in INFOS.items() for i in range(len(_errors(info)))]


def test_module_db_has_the_six_modules():
    assert set(INFOS) == set(PAIRS), f"module_db lacks {set(PAIRS) - set(INFOS)}"
    assert len(SAMPLE_CASES) >= 60 and len(ERROR_CASES) >= 10


def _clone(obj):
    """A fresh leaf copy of every tensor in ``obj`` (nested tuples / lists)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().requires_grad_(obj.requires_grad)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_clone(o) for o in obj)
    return obj


def _flatten(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _flatten(o)]
    return []


def _run(module, args, kwargs):
    """Outputs (flattened) and the gradients of every input and parameter."""
    args, kwargs = _clone(args), _clone(kwargs)
    out = _flatten(module(*args, **kwargs))
    leaves = [t for t in _flatten(args) + _flatten(list(kwargs.values())) if t.requires_grad]
    leaves += list(module.parameters())
    g = torch.Generator().manual_seed(0)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in out)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return out, grads


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls,index", SAMPLE_CASES,
                         ids=[f"{c.__name__}-{i}" for c, i in SAMPLE_CASES])
def test_sample_inputs_match_torch_nn(cls, index, backend):
    info = INFOS[cls]
    sample = _samples(info)[index]
    c_args, c_kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    torch.manual_seed(index)
    ref = cls(*c_args, **c_kwargs).to(torch.float64)
    ours = PAIRS[cls](*c_args, **c_kwargs, backend=backend).to(torch.float64)
    ours.load_state_dict(ref.state_dict())
    f_args, f_kwargs = sample.forward_input.args, sample.forward_input.kwargs
    want_out, want_grads = _run(ref, f_args, f_kwargs)
    got_out, got_grads = _run(ours, f_args, f_kwargs)
    assert len(got_out) == len(want_out)
    for got, want in zip(got_out, want_out):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    assert len(got_grads) == len(want_grads)
    for got, want in zip(got_grads, want_grads):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls,index", ERROR_CASES,
                         ids=[f"{c.__name__}-{i}" for c, i in ERROR_CASES])
def test_error_inputs_raise_like_torch_nn(cls, index):
    err = _errors(INFOS[cls])[index]
    mi = err.module_error_input
    on_construction = err.error_on == common_modules.ModuleErrorEnum.CONSTRUCTION_ERROR
    with pytest.raises(err.error_type) as exc_info:
        module = PAIRS[cls](*mi.constructor_input.args, **mi.constructor_input.kwargs)
        if on_construction:
            pytest.fail("expected an error at construction")
        module(*mi.forward_input.args, **mi.forward_input.kwargs)
    assert re.search(err.error_regex, str(exc_info.value)), (
        f"message {str(exc_info.value)!r} does not match torch.nn's {err.error_regex!r}")
