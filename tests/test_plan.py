"""The backend plan (recur.ops.plan): one decision per forward, explained; explicit requests
run exactly that backend or raise with the reason; nothing downstream changes its mind."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

import recur
from recur import cells
from recur.ops import LayerSpec, plan_scan, plan_stack, scan
from recur.ops.cpu_codegen import find_compiler

HAS_TRITON = importlib.util.find_spec("triton") is not None


def test_plain_layer_plans_torch_and_says_why_not_the_others():
    x = torch.randn(5, 2, 3)
    plan = recur.LSTM(3, 4).plan(x)
    assert (plan.executor, plan.backend, plan.request) == ("torch", "torch", "auto")
    assert plan.rejected == {}  # torch was auto's first choice
    report = recur.explain(recur.LSTM(3, 4, 2, bidirectional=True), x)
    assert report.count("reference: would run, but comes after it in auto's order") == 4
    assert "layer 1 reverse: torch" in report


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler: the cpu backend is refused")
@pytest.mark.parametrize("name", ["GRU", "RNN"])
def test_a_plain_gru_or_rnn_plans_the_cpu_kernels_on_the_cpu(name):
    x = torch.randn(5, 2, 3)
    m = getattr(recur, name)(3, 4, 2, bidirectional=True)
    plan = m.plan(x)
    assert (plan.backend, plan.request, plan.rejected) == ("cpu", "auto", {})
    assert "torch: would run, but comes after it in auto's order" in recur.explain(m, x)


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler: the cpu backend is refused")
@pytest.mark.parametrize("name, kwargs", [("GRU", {}), ("RNN", {}),
                                          ("RNN", {"nonlinearity": "relu"})])
def test_nan_and_inf_come_out_as_in_torch_nn(name, kwargs):
    """The cpu kernel is built with -ffast-math: where a plain layer runs on it (GRU, tanh
    RNN), NaN and inf must still come out where torch.nn's do; the relu RNN, whose kernel
    would turn NaN into 0, keeps PyTorch's kernel."""
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(3, 4, 2, **kwargs)
    m = getattr(recur, name)(3, 4, 2, **kwargs)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 3)
    x[2, 0, 1], x[3, 1, 0] = float("nan"), float("inf")
    assert m.plan(x).backend == ("torch" if kwargs else "cpu")
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            got, want = m(x)[0], ref(x)[0]
        assert torch.equal(got.isnan(), want.isnan()) and got.isnan().any()
        torch.testing.assert_close(got.nan_to_num(), want.nan_to_num())


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler: the cpu backend is refused")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.* is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_dispatch_modes_jit_trace_and_other_devices_do_not_get_the_c_kernel():
    """FakeTensor and FlopCounterMode see PyTorch's ops (recur's C kernel is invisible to
    them), torch.jit.trace records them, and a plan kept for CPU input is not reused for
    another device."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    ref = torch.nn.GRU(3, 4)
    m = recur.GRU(3, 4)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3)
    assert m.plan(x).backend == "cpu"
    m(x)                                                  # the cpu plan is now kept
    with FakeTensorMode(allow_non_fake_inputs=True):
        fake = torch.randn(5, 2, 3)
        assert "dispatch mode" in m.plan(fake).rejected["cpu"]
        assert m(fake)[0].shape == (5, 2, 4)
    with FlopCounterMode(display=False) as ours:
        m(x)
    with FlopCounterMode(display=False) as theirs:
        ref(x)
    assert ours.get_total_flops() == theirs.get_total_flops() > 0
    traced = torch.jit.trace(m, (x,), check_trace=False)
    torch.testing.assert_close(traced(x)[0], ref(x)[0])
    assert m.plan(x.to("meta")).backend == "torch"         # not the plan kept for the CPU
    assert m.plan(x).backend == "cpu"


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler: the cpu backend is refused")
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_forward_ad_and_func_transforms_leave_the_cpu_kernels_to_torch():
    """recur's autograd function has no jvp: under forward-mode AD a GRU plans PyTorch's
    kernels (tangents equal torch.nn's), and plans the cpu backend again afterwards."""
    import torch.autograd.forward_ad as fwAD

    ref = torch.nn.GRU(3, 4).double()
    m = recur.GRU(3, 4).double()
    m.load_state_dict(ref.state_dict())
    x, v = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(5, 2, 3, dtype=torch.float64)
    assert m.plan(x).backend == "cpu"
    m(x)                                                  # the cpu plan is now cached
    with fwAD.dual_level():
        plan = m.plan(x)
        assert plan.backend == "torch" and "forward-mode AD" in plan.rejected["cpu"]
        out = fwAD.unpack_dual(m(fwAD.make_dual(x, v))[0]).tangent
        expected = fwAD.unpack_dual(ref(fwAD.make_dual(x, v))[0]).tangent
    torch.testing.assert_close(out, expected)
    assert m.plan(x).backend == "cpu"
    jac = torch.func.jacrev(lambda t: m(t)[0].sum())(x)  # a torch.func transform, same way
    torch.testing.assert_close(jac, torch.func.jacrev(lambda t: ref(t)[0].sum())(x))


def test_variants_plan_the_cpu_kernels_on_the_cpu_with_the_reason():
    x = torch.randn(5, 2, 3)
    plan = recur.VariantLSTM(3, 4, zoneout=0.1).plan(x)
    assert plan.backend == ("cpu" if find_compiler() else "reference")
    assert "zoneout" in plan.rejected["torch"]
    plan = recur.LayerNormGRU(3, 4).plan(x)
    assert "not one of torch.nn's four" in plan.rejected["torch"]


def test_explicit_backend_runs_it_or_raises_with_the_reason():
    x = torch.randn(5, 2, 3)
    with pytest.raises(ValueError, match="backend='torch' cannot run cell 'layernorm_lstm' "
                                         "here: cell 'layernorm_lstm' is not one of"):
        recur.LayerNormLSTM(3, 4, backend="torch")(x)
    plan = recur.GRU(3, 4, backend="reference").plan(x)
    assert plan.backend == "reference" and plan.request == "reference"
    spec = LayerSpec(cells.LSTM, 4, 4)
    with pytest.raises(ValueError, match="run whole stacks"):
        plan_scan(spec, torch.randn(5, 2, 16), "torch")


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_reasons_are_specific(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    xg = torch.randn(4, 2, 16)
    spec = LayerSpec(cells.LSTM, 4, 4, extras=frozenset({"step_inputs"}))
    with pytest.raises(ValueError, match="step_inputs"):
        plan_scan(spec, xg, "triton")
    with pytest.raises(ValueError, match="dtype torch.float64"):
        plan_scan(LayerSpec(cells.LSTM, 4, 4), xg.double(), "triton")
    declared = cells.declare(lambda xg, hg, s: (torch.tanh(xg + hg),), num_gates=1,
                             name="plan_test_cell")
    with pytest.raises(ValueError, match="has no Triton pointwise"):
        plan_scan(LayerSpec(declared, 4, 4), torch.randn(4, 2, 4), "triton")
    # and scan itself raises the same way (no silent fallback further down)
    with pytest.raises(ValueError, match="step_inputs"):
        scan(cells.LSTM, xg, torch.randn(16, 4), backend="triton",
             step_inputs=(torch.zeros(4, 2, 4),))


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_the_planned_backend_is_the_one_that_runs(monkeypatch):
    """backend='triton' (interpreter) plans triton, and the fused kernels are launched once
    per layer and direction: nothing between plan and kernel switches backend."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from recur.ops.triton import _launch

    launches = []
    real = _launch.forward
    monkeypatch.setattr(_launch, "forward", lambda *a, **k: launches.append(1) or real(*a, **k))
    m = recur.GRU(3, 4, 2, bidirectional=True, backend="triton")
    x = torch.randn(5, 2, 3)
    assert m.plan(x).backend == "triton"
    m(x)
    assert len(launches) == 4


def test_env_variable_and_requests():
    x = torch.randn(2, 1, 3)
    spec = LayerSpec(cells.GRU, 4, 4)
    assert plan_stack(cells.GRU, [spec], x, "reference").backend == "reference"
    with pytest.raises(ValueError, match="backend must be one of"):
        plan_stack(cells.GRU, [spec], x, "cudnn")


def test_custom_operator_never_plans_again():
    """The compile/export operator wraps an eager executor: it imports neither the planner
    nor run_stack (no import cycle, one layer loop)."""
    src = Path(recur.ops.custom_op.__file__).read_text()
    imported = {node.module for node in ast.walk(ast.parse(src))
                if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"stack", "plan", "scan"}
    assert "executors" in imported


def test_explain_needs_a_recur_layer():
    with pytest.raises(ValueError, match="holds no recur recurrent layer"):
        recur.explain(torch.nn.Linear(3, 4), torch.randn(2, 3))


def test_a_plain_layer_replans_when_the_request_or_input_changes(monkeypatch):
    """The plain layer's plan is kept per (device, dtype, batch, request): a new
    RECUR_BACKEND, backend attribute or dtype gives a new plan, and the cache is not saved."""
    m = recur.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    assert m.plan(x).backend == "torch"
    monkeypatch.setenv("RECUR_BACKEND", "reference")
    assert m.plan(x).backend == "reference"
    monkeypatch.delenv("RECUR_BACKEND")
    m.backend = "reference"
    assert m.plan(x).backend == "reference"
    m.backend = "auto"
    assert m.plan(x).backend == "torch"
    m(x)
    assert "_plans" in vars(m) and "_plans" not in m.__getstate__()


@pytest.mark.skipif(find_compiler() is None, reason="no C compiler: the cpu backend is refused")
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_ragged_training_on_the_cpu_runs_the_cpu_backend_with_torch_nn_numbers(mode,
                                                                              monkeypatch):
    # PyTorch packs a ragged batch; in training recur's cpu backend runs it instead, with
    # torch.nn's numbers (float64: outputs, final states, every gradient)
    from recur.ops import executors

    torch.manual_seed(0)
    ref = getattr(torch.nn, mode)(3, 4, 2, bidirectional=True).double()
    m = getattr(recur, mode)(3, 4, 2, bidirectional=True).double()
    m.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, 3, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    ran = []
    real = executors.run_eager
    monkeypatch.setattr(executors, "run_eager",
                        lambda backend, *a, **k: ran.append(backend) or real(backend, *a, **k))
    out, st = m(x, lengths=lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    want_packed, want_st = ref(packed)
    want = torch.nn.utils.rnn.pad_packed_sequence(want_packed, total_length=6)[0]
    assert ran == ["cpu"]
    st, want_st = (st, want_st) if mode == "LSTM" else ((st,), (want_st,))
    torch.testing.assert_close(out, want)
    for a, b in zip(st, want_st):
        torch.testing.assert_close(a, b)
    g = torch.randn_like(out)
    got = torch.autograd.grad((out * g).sum(), [x, *m.parameters()])
    exp = torch.autograd.grad((want * g).sum(), [x, *ref.parameters()])
    for a, b in zip(got, exp):
        torch.testing.assert_close(a, b)
    ran.clear()
    with torch.no_grad():  # inference: PyTorch's packed kernels for an LSTM, as before
        m(x, lengths=lengths)
    m(x, lengths=torch.tensor([6, 6, 6]))  # no row shorter than T: PyTorch's kernels
    assert ran == ([] if mode == "LSTM" else ["cpu", "cpu"])  # a GRU: cpu first anyway
