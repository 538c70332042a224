"""The ``cpu`` backend (recur.ops.cpu): C step kernels generated from each cell's declaration,
checked against the reference loop in float64 (outputs, final states, every gradient), with
lengths, both directions and two layers; auto picks it on the CPU; the fallbacks."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

import recur
from recur import cells
from recur.ops import cpu, cpu_codegen, scan

pytestmark = pytest.mark.skipif(cpu_codegen.find_compiler() is None,
                                reason="no C compiler on this machine: the cpu backend's "
                                       "kernels cannot be built (the fallback is tested below)")

ROOT = Path(__file__).resolve().parents[1]


def _examples():
    spec = importlib.util.spec_from_file_location("custom_cells_ex",
                                                  ROOT / "examples" / "custom_cells.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EX = _examples()

MODELS = {
    "layernorm_lstm": lambda **k: recur.LayerNormLSTM(3, 5, **k),
    "layernorm_gru": lambda **k: recur.LayerNormGRU(3, 5, **k),
    "lstm_zoneout_rdrop": lambda **k: recur.VariantLSTM(3, 5, zoneout=(0.3, 0.2),
                                                        recurrent_dropout=0.3, **k),
    "gru_zoneout_rdrop": lambda **k: recur.VariantGRU(3, 5, zoneout=0.25,
                                                      recurrent_dropout=0.2, **k),
    "layernorm_lstm_zoneout": lambda **k: recur.LayerNormLSTM(3, 5, zoneout=0.1, **k),
    "peephole": lambda **k: recur.CustomRNN(EX.peephole_lstm, 3, 5, **k),
    "leaky": lambda **k: recur.CustomRNN(EX.leaky_tanh, 3, 5, **k),
}


def _run(model, x, lengths, seed):
    torch.manual_seed(seed)  # the same masks in both runs
    out, st = model(x, lengths=lengths)
    st = st if isinstance(st, tuple) else (st,)
    g = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    loss = loss + sum((s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum() for s in st)
    grads = torch.autograd.grad(loss, [x, *model.parameters()])
    return [out, *st, *grads]


@pytest.fixture(params=["C", "python"], ids=["loop-C", "loop-python"])
def time_loop(request, monkeypatch):
    """Both time loops: in C with a BLAS gemm (when this machine's PyTorch exports one) and
    in Python (one torch.mm and one kernel call per step)."""
    if request.param == "C":
        if cpu.time_loop_gemm(cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float64),
                              torch.float64) is None:
            pytest.skip("this PyTorch exports no BLAS dgemm: the C time loop is off here")
    else:
        monkeypatch.setattr(cpu, "C_TIME_LOOP", False)
    return request.param


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", ["L1-D1", "L2-D2-lengths"])
@pytest.mark.parametrize("name", list(MODELS))
def test_matches_the_reference_loop_float64(name, layout, train, time_loop):
    L, D = (1, 1) if layout == "L1-D1" else (2, 2)
    lengths = torch.tensor([6, 1, 4]) if "lengths" in layout else None
    torch.manual_seed(0)
    ref = MODELS[name](num_layers=L, bidirectional=D == 2, backend="reference").double()
    new = MODELS[name](num_layers=L, bidirectional=D == 2, backend="cpu").double()
    new.load_state_dict(ref.state_dict())
    ref.train(train)
    new.train(train)
    x = torch.randn(6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert new.plan(x).backend == "cpu"
    want, got = _run(ref, x, lengths, 1), _run(new, x, lengths, 1)
    assert len(want) == len(got)
    for k, (a, b) in enumerate(zip(want, got)):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11, msg=f"tensor {k}")


def test_float32_matches_and_inference_needs_no_graph(time_loop):
    torch.manual_seed(0)
    ref = recur.LayerNormLSTM(4, 33, backend="reference")
    new = recur.LayerNormLSTM(4, 33, backend="cpu")
    new.load_state_dict(ref.state_dict())
    x = torch.randn(9, 2, 4)
    with torch.no_grad():
        (o1, s1), (o2, s2) = ref(x), new(x)
    assert not o2.requires_grad
    # float32's own tolerance: the kernel's vectorised exp / tanh (libmvec, a few ulp) round
    # differently from ATen's; exactness is the float64 tests' job
    torch.testing.assert_close(o2, o1, rtol=1.3e-6, atol=1e-5)
    torch.testing.assert_close(s2, s1, rtol=1.3e-6, atol=1e-5)


def test_scan_with_given_states_reverse_and_no_bias_gradcheck(time_loop):
    torch.manual_seed(0)
    H = 3
    xg = torch.randn(4, 2, 4 * H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4 * H, H, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    p = torch.randn(3, H, dtype=torch.float64, requires_grad=True)

    def f(xg, w, h0, c0, p):
        out, (h, c) = scan(EX.peephole_lstm, xg, w, None, (h0, c0), reverse=True,
                           cell_weights=(p,), backend="cpu", lengths=torch.tensor([4, 2]))
        return out, h, c

    assert torch.autograd.gradcheck(f, (xg, w, h0, c0, p))


def test_one_buffer_serves_both_cotangents_where_the_update_gives_them_alike(time_loop,
                                                                             monkeypatch):
    """An LSTM's xg and hg are summed first, so their cotangents are one array: the kernel
    says so (``dhg_is_dxg``) and the backward allocates one buffer. Handed two buffers, the
    kernel fills both; the gradients are the same either way."""
    def shares(cell, weight_shapes=()):
        return cpu.kernel(cell, 4, 4, cell.num_gates * 4, list(weight_shapes),
                          torch.float64).dhg_is_dxg
    assert shares(cells.LSTM) and shares(cells.RNN_TANH) and shares(EX.peephole_lstm, [(3, 4)])
    assert not shares(cells.GRU)        # b_hn enters inside r * (...): not the same
    torch.manual_seed(0)
    xg = torch.randn(5, 3, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(16, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])

    def grads():
        out, (h, c) = scan(cells.LSTM, xg, w, b, lengths=lengths, backend="cpu")
        g = torch.Generator().manual_seed(1)
        loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum()
                   for t in (out, h, c))
        return torch.autograd.grad(loss, (xg, w, b))

    shared = grads()
    kernel = cpu.kernel
    monkeypatch.setattr(cpu, "kernel", lambda *a: dataclasses.replace(kernel(*a),
                                                                      dhg_is_dxg=False))
    for a, e in zip(grads(), shared):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


def test_double_backward_falls_back_to_the_reference_loop():
    torch.manual_seed(0)
    xg = torch.randn(3, 2, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def f(xg, w, b):
        return scan(cells.GRU, xg, w, b, backend="cpu")[0]

    assert torch.autograd.gradgradcheck(f, (xg, w, b))


@pytest.mark.parametrize("make", [
    lambda: recur.VariantLSTM(3, 4, zoneout=0.2, backend="cpu", dtype=torch.float64),
    lambda: recur.LayerNormGRU(3, 4, backend="cpu", dtype=torch.float64)], ids=["lstm", "ln-gru"])
def test_the_input_bias_added_in_the_kernel_has_first_and_second_derivatives(make):
    """In training the cpu backend projects without b_ih and the kernel adds it per row
    (the LSTM); a layer-norm cell's b_ih rides in LN_x's bias, which the kernel applies
    (the GRU): b_ih's gradient, and double backward through it, as the reference loop's."""
    torch.manual_seed(0)
    m = make().eval()  # zoneout's rates instead of masks: a deterministic function
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    b = m.bias_ih_l0.detach().clone().requires_grad_()
    lengths = torch.tensor([4, 3])

    def f(x, b):
        out, _ = torch.func.functional_call(m, {"bias_ih_l0": b}, (x,),
                                            {"lengths": lengths})
        return out

    ref = make().eval()
    ref.load_state_dict(m.state_dict())
    ref.backend = "reference"
    torch.testing.assert_close(
        torch.autograd.grad(f(x, b).square().sum(), (x, b)),
        torch.autograd.grad(ref(x, lengths=lengths)[0].square().sum(),
                            (x, ref.bias_ih_l0)), rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(f, (x, b))
    assert torch.autograd.gradgradcheck(f, (x, b))


def test_auto_picks_cpu_for_variants_gru_and_rnn_and_torch_for_a_plain_lstm():
    x = torch.randn(5, 2, 3)
    assert recur.LayerNormLSTM(3, 4).plan(x).backend == "cpu"
    assert recur.VariantGRU(3, 4, zoneout=0.1).plan(x).backend == "cpu"
    assert recur.LSTM(3, 4).plan(x).backend == "torch"
    assert recur.GRU(3, 4).plan(x).backend == "cpu"
    assert recur.RNN(3, 4).plan(x).backend == "cpu"
    assert recur.RNN(3, 4, nonlinearity="relu").plan(x).backend == "torch"   # NaN: test_plan
    report = recur.explain(recur.LayerNormGRU(3, 4), x)
    assert "cpu: recur's CPU kernels" in report
    assert "reference: would run, but comes after it in auto's order" in report


def test_reasons_it_does_not_take_a_layer():
    x = torch.randn(5, 2, 3)
    assert "proj_size" in recur.VariantLSTM(3, 4, proj_size=2, recurrent_dropout=0.1
                                            ).plan(x).rejected["cpu"]
    assert recur.LayerNormLSTM(3, 4).plan(x.to(torch.bfloat16)).backend == "reference"
    assert "dtype torch.bfloat16" in recur.LayerNormLSTM(3, 4).plan(
        x.to(torch.bfloat16)).rejected["cpu"]
    with pytest.raises(ValueError, match="backend='cpu' cannot run cell 'layernorm_lstm' here: "
                                         "dtype torch.bfloat16"):
        recur.LayerNormLSTM(3, 4, backend="cpu").to(torch.bfloat16)(x.to(torch.bfloat16))


def test_without_a_compiler_auto_warns_once_and_runs_the_reference_loop(monkeypatch):
    monkeypatch.setattr(cpu_codegen, "find_compiler", lambda: None)
    monkeypatch.setattr(cpu, "_warned", False)
    x = torch.randn(5, 2, 3)
    model = recur.LayerNormGRU(3, 4)
    with pytest.warns(RuntimeWarning, match="no C compiler found"):
        plan = model.plan(x)
    assert plan.backend == "reference" and "no C compiler" in plan.rejected["cpu"]
    model(x)  # no second warning (filterwarnings=error would raise)
    with pytest.raises(ValueError, match="no C compiler"):
        recur.LayerNormGRU(3, 4, backend="cpu")(x)


def test_an_update_it_cannot_translate_is_refused_at_planning():
    """Planning builds the kernel, so a cell the generator cannot translate is refused up
    front with the reason (auto takes the reference loop; nothing changes its mind later)."""
    @cells.declare(num_gates=1, name="cumsum_cell_cpu_test")
    def cumsum_cell(xg, hg, states):
        """h' = tanh(cumsum(xg + hg))"""
        return (torch.tanh(torch.cumsum(xg + hg, dim=-1)),)

    torch.manual_seed(0)
    ref = recur.CustomRNN(cumsum_cell, 3, 4, backend="reference")
    new = recur.CustomRNN(cumsum_cell, 3, 4)
    new.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3)
    plan = new.plan(x)
    assert plan.backend == "reference" and "aten.cumsum.default" in plan.rejected["cpu"]
    out, _ = new(x)  # no warning (filterwarnings=error would raise)
    torch.testing.assert_close(out, ref(x)[0])
    with pytest.raises(ValueError, match="backend='cpu' cannot run cell 'cumsum_cell_cpu_test'"
                                         ".*aten.cumsum.default"):
        recur.CustomRNN(cumsum_cell, 3, 4, backend="cpu")(x)


def test_generated_kernels_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("RECUR_CACHE_DIR", str(tmp_path))
    src = "int f(void) { return 3; }\n"
    lib = cpu_codegen.compile_library(src)
    assert lib.f() == 3
    built = list((tmp_path / "cpu_kernels").glob("*.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    cpu_codegen.compile_library(src)
    assert built[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    with pytest.raises(RuntimeError, match="failed"):
        cpu_codegen.compile_library("this is not C")


def test_recur_cells_keep_their_generated_source_and_user_cells_do_not(tmp_path, monkeypatch):
    """A new process finds a built-in cell's C source on disk and skips the trace; a user's
    cell (its code not recur's to name) and an unreadable file are traced again."""
    monkeypatch.setenv("RECUR_CACHE_DIR", str(tmp_path))
    args = ((48, 48, (16,)), (), torch.float32)
    src, index = cpu_codegen.generated(cells.GRU, *args)
    assert (src, index) == cpu_codegen.generate(cells.GRU, *args)
    kept = list((tmp_path / "cpu_kernels").glob("src_*.json"))
    assert len(kept) == 1 and not list(kept[0].parent.glob("*.tmp"))
    traced = []
    real = cpu_codegen.generate
    monkeypatch.setattr(cpu_codegen, "generate", lambda *a: traced.append(a[0]) or real(*a))
    assert cpu_codegen.generated(cells.GRU, *args) == (src, index) and traced == []
    cpu_codegen.generated(cells.GRU, (48, 48, (16,)), (), torch.float64)    # another key
    kept[0].write_text("{not json")
    assert cpu_codegen.generated(cells.GRU, *args) == (src, index)
    assert traced == [cells.GRU, cells.GRU]
    monkeypatch.setattr(cpu_codegen, "_recur_sources", lambda: "recur's code changed")
    assert cpu_codegen.generated(cells.GRU, *args) == (src, index)    # a new key: traced
    assert traced == [cells.GRU] * 3

    @cells.declare(num_gates=1, name="user_cell_not_kept")
    def user_cell(xg, hg, states):
        """h' = tanh(xg + hg)"""
        return (torch.tanh(xg + hg),)

    cpu_codegen.generated(user_cell, (16, 16, (16,)), (), torch.float32)
    cpu_codegen.generated(user_cell, (16, 16, (16,)), (), torch.float32)
    assert traced[3:] == [user_cell, user_cell]
    assert len(list((tmp_path / "cpu_kernels").glob("src_*.json"))) == 3
    # recur's layer-norm cell with LN_x moved into its update (a closure over recur's cell)
    # is recur's code too; a derived cell around a user's cell is not
    from recur.cells.layernorm import with_input_norm

    assert cpu_codegen._own_cell(with_input_norm(recur.LayerNormLSTM(2, 3).cell))
    assert not cpu_codegen._own_cell(with_input_norm(user_cell))


def test_without_a_compiler_a_gru_runs_pytorchs_kernels(monkeypatch):
    monkeypatch.setattr(cpu_codegen, "find_compiler", lambda: None)
    monkeypatch.setattr(cpu, "_warned", False)
    with pytest.warns(RuntimeWarning, match="GRUs / RNNs on PyTorch's kernels"):
        plan = recur.GRU(3, 4).plan(torch.randn(5, 2, 3))
    assert plan.backend == "torch" and "no C compiler" in plan.rejected["cpu"]


def test_loading_a_kernel_leaves_the_process_floating_point_mode_alone(tmp_path, monkeypatch):
    """Kernels are compiled with -ffast-math but not linked with it: loading one must not
    switch the process to flush-to-zero (GCC's crtfastmath.o would, for PyTorch and numpy
    too). A fresh cache forces a new build and load."""
    monkeypatch.setenv("RECUR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_codegen, "_CACHE", {})
    m = recur.LayerNormGRU(3, 5, backend="cpu")
    m(torch.randn(4, 2, 3)).__getitem__(0).sum().backward()
    assert list(tmp_path.rglob("*.so")), "no kernel was built"
    tiny = torch.tensor([1e-39, 5e-324], dtype=torch.float64)[:1].float()
    assert (tiny * 1.0).item() != 0.0  # a float32 subnormal survives
    assert torch.tensor([5e-324], dtype=torch.float64).mul(1.0).item() != 0.0


@pytest.mark.parametrize("path", ["projected", "project-first"])
@pytest.mark.parametrize("name", list(MODELS))
def test_inference_without_autograd_matches_float64(name, path, monkeypatch):
    """Eval mode without autograd, two bidirectional layers with lengths, tiny blocks so that
    there are several: ``projected``, the input projection block by block with the time
    loop (cpu.scan_cpu_projected, taken for every layer and direction: eval mode draws no
    recurrent-dropout mask); ``project-first``, its fallback (the whole projection into one
    buffer, LN_x on it block by block in place: executors._project_no_grad, then
    scan_cpu). On the projected path the layer-norm cells run LN_x inside the kernel: the
    module's LN_x map is never called."""
    from recur.cells import layernorm
    from recur.ops import executors

    maps = []
    real_map = layernorm.InputNorm.__call__
    monkeypatch.setattr(layernorm.InputNorm, "__call__",
                        lambda self, xg: maps.append(1) or real_map(self, xg))
    calls = []
    real = cpu.scan_cpu_projected

    def spy(*a, **kw):
        res = real(*a, **kw) if path == "projected" else None
        calls.append(res is not None)
        return res

    monkeypatch.setattr(cpu, "scan_cpu_projected", spy)
    monkeypatch.setattr(cpu, "PROJ_BLOCK_BYTES", 64)
    monkeypatch.setattr(executors, "XG_FN_BLOCK_BYTES", 64)
    torch.manual_seed(0)
    ref = MODELS[name](num_layers=2, bidirectional=True, backend="reference").double().eval()
    new = MODELS[name](num_layers=2, bidirectional=True, backend="cpu").double().eval()
    new.load_state_dict(ref.state_dict())
    x = torch.randn(7, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 2, 5])
    with torch.no_grad():
        o1, s1 = ref(x, lengths=lengths)
        maps.clear()
        o2, s2 = new(x, lengths=lengths)
    c_loop = cpu.time_loop_gemm(cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float64),
                                torch.float64) is not None
    assert calls == [path == "projected" and c_loop] * 4
    if "layernorm" in name:
        assert (len(maps) == 0) == (path == "projected" and c_loop)
    torch.testing.assert_close(o2, o1, rtol=1e-9, atol=1e-11)
    for a, b in zip(s1 if isinstance(s1, tuple) else (s1,), s2 if isinstance(s2, tuple) else (s2,)):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape", ["full", "per-step", "per-row", "rate", "per-unit",
                                   "one-per-step"])
def test_zoneout_masks_that_broadcast_are_not_copied_out(shape, time_loop):
    # a mask the same for every row, every step or both (eval mode's rates: one number, read
    # as such) reaches the kernel with a stride of 0; one number per step (stride 0 along
    # the units, not along time) is copied to unit stride; outputs and every gradient as
    # the reference loop's
    torch.manual_seed(0)
    T, B, H = 5, 3, 4
    full = (torch.rand(T, B, H, dtype=torch.float64) < 0.3).double()
    masks = {"full": full, "per-step": full[:, :1].expand(T, B, H),
             "per-row": full[:1].expand(T, B, H),
             "rate": torch.full((1, 1, 1), 0.2, dtype=torch.float64).expand(T, B, H),
             "per-unit": torch.rand(H, dtype=torch.float64).expand(T, B, H),
             "one-per-step": torch.rand(T, 1, 1, dtype=torch.float64).expand(T, B, H)}
    z = masks[shape]
    assert shape == "full" or z.stride(0) == 0 or z.stride(1) == 0
    zc, st, sb, sj = cpu._compact_mask(z, T)
    assert (zc is z) == (shape != "one-per-step")
    assert (st, sb, sj) == {"full": (B * H, H, 1), "per-step": (B * H, 0, 1),
                            "per-row": (0, H, 1), "rate": (0, 0, 0), "per-unit": (0, 0, 1),
                            "one-per-step": (H, 0, 1)}[shape]
    xg = torch.randn(T, B, 3 * H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3 * H, H, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    res = {}
    for backend in ("reference", "cpu"):
        out, (h,) = scan(cells.GRU, xg, w, None, (h0,), zoneout=(z,), backend=backend,
                         lengths=torch.tensor([5, 2, 4]))
        res[backend] = [out, h, *torch.autograd.grad((out.sum() + h.square().sum()),
                                                     (xg, w, h0))]
    for a, b in zip(res["reference"], res["cpu"]):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)
    # double backward re-runs the reference loop on the masks as handed to the kernel
    assert torch.autograd.gradgradcheck(
        lambda xg: scan(cells.GRU, xg, w.detach(), None, (h0.detach(),), zoneout=(z,),
                        backend="cpu")[0], (xg,))


def test_the_c_time_loop_is_used_where_a_gemm_passes_its_self_test(monkeypatch):
    import ctypes

    k = cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float32)
    real = cpu_codegen.blas_gemm(torch.float32)
    monkeypatch.setattr(cpu, "_GEMMS", {})
    monkeypatch.setattr(cpu_codegen, "blas_gemm", lambda dtype: None)
    assert cpu.time_loop_gemm(k, torch.float32) is None  # none found: the Python loop
    # a gemm that leaves its output alone fails the self-test: the Python loop
    vp = ctypes.c_void_p
    noop = ctypes.CFUNCTYPE(None, *[vp] * 13)(lambda *args: None)
    monkeypatch.setattr(cpu, "_GEMMS", {})
    monkeypatch.setattr(cpu_codegen, "blas_gemm",
                        lambda dtype: ctypes.cast(noop, vp).value)
    assert cpu.time_loop_gemm(k, torch.float32) is None
    if real is None:
        pytest.skip("this PyTorch exports no BLAS sgemm")
    monkeypatch.setattr(cpu, "_GEMMS", {})
    monkeypatch.setattr(cpu_codegen, "blas_gemm", lambda dtype: real)
    assert cpu.time_loop_gemm(k, torch.float32) == real


@pytest.mark.parametrize("dtype,name", [(torch.float32, "sgemm_64_"), (torch.float64, "dgemm_64_")])
def test_a_blas_with_64_bit_integers_reads_the_loops_integers_too(dtype, name, monkeypatch):
    # the loops store their integers in 64 bits: an ILP64 gemm (MKL exports both) passes the
    # self-test and runs the layer with the same numbers
    import ctypes

    path = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    fn = getattr(ctypes.CDLL(str(path)), name, None) if path.exists() else None
    if fn is None:
        pytest.skip(f"this PyTorch exports no {name}")
    addr = ctypes.cast(fn, ctypes.c_void_p).value
    monkeypatch.setattr(cpu, "_GEMMS", {})
    monkeypatch.setattr(cpu_codegen, "blas_gemm", lambda d: addr)
    assert cpu.time_loop_gemm(cpu.kernel(cells.GRU, 2, 2, 6, [], dtype), dtype) == addr
    torch.manual_seed(0)
    ref = recur.LayerNormLSTM(3, 5, backend="reference").to(dtype)
    new = recur.LayerNormLSTM(3, 5, backend="cpu").to(dtype)
    new.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, 3, dtype=dtype, requires_grad=True)
    want, got = _run(ref, x, torch.tensor([6, 1, 4]), 1), _run(new, x, torch.tensor([6, 1, 4]), 1)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, **tol)


@pytest.mark.parametrize("name", ["layernorm_lstm", "gru_zoneout_rdrop", "peephole"])
def test_packed_weights_give_the_numbers_of_the_unpacked_loop(name, monkeypatch):
    # float32, B >= PACK_MIN_B, T >= PACK_MIN_T (and any weight size here): MKL's packed
    # GEMM, W_hh packed once per
    # sequence (forward: W_hh^T, backward: W_hh), both directions, two layers, lengths;
    # against the same loop with plain sgemm per step and against the reference loop
    pg = cpu.packed_gemm(cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float32), torch.float32)
    if pg is None:
        pytest.skip("this PyTorch exports no MKL packed sgemm (or it failed its self-test)")
    monkeypatch.setattr(cpu, "PACK_MIN_WEIGHT_BYTES", 0)   # these weights are tiny
    monkeypatch.setattr(cpu, "BRGEMM_MIN_B", None)         # brgemm would take precedence
    real, packed = cpu._packed_weight, []
    monkeypatch.setattr(cpu, "_packed_weight",
                        lambda *a, **k: packed.append(real(*a, **k)) or packed[-1])
    T, B = cpu.PACK_MIN_T + 3, cpu.PACK_MIN_B + 1
    torch.manual_seed(0)
    ref = MODELS[name](num_layers=2, bidirectional=True, backend="reference")
    new = MODELS[name](num_layers=2, bidirectional=True, backend="cpu")
    new.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, 3, requires_grad=True)
    lengths = torch.tensor([T, 1, T - 4, 7, T][:B] + [T] * (B - 5))
    got = _run(new, x, lengths, 1)
    assert len(packed) == 8 and all(p is not None for p in packed)  # 4 layers, fwd + bwd
    monkeypatch.setattr(cpu, "PACK_MIN_B", 10 ** 9)
    plain = _run(new, x, lengths, 1)
    want = _run(ref, x, lengths, 1)
    for k, (a, b, c) in enumerate(zip(want, got, plain)):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-5,
                                   msg=lambda m, k=k: f"tensor {k} vs sgemm: {m}")
        # a sanity check only: float32 gradients through 67 steps, two layers and both
        # directions differ from the reference loop's float32 by up to ~2e-3 (its own
        # rounding order; packed and sgemm agree to 1e-5 above; exactness: the float64 tests)
        torch.testing.assert_close(b, a, rtol=5e-3, atol=5e-3,
                                   msg=lambda m, k=k: f"tensor {k} vs reference: {m}")


def test_a_packed_gemm_that_fails_its_self_test_is_not_used(monkeypatch):
    import ctypes

    k = cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float32)
    real = cpu_codegen.blas_packed(torch.float32)
    if real is None:
        pytest.skip("this PyTorch exports no MKL packed sgemm")
    noop = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 13)(lambda *args: None)
    broken = cpu_codegen.PackedGemm(real.size, real.pack,
                                    ctypes.cast(noop, ctypes.c_void_p).value)
    monkeypatch.setattr(cpu, "_PACKED", {})
    monkeypatch.setattr(cpu_codegen, "blas_packed", lambda dtype: broken)
    assert cpu.packed_gemm(k, torch.float32) is None
    monkeypatch.setattr(cpu, "PACK_MIN_WEIGHT_BYTES", 0)
    assert cpu._packed_weight(k, torch.randn(6, 2), 64, 64, backward=False) is None
    monkeypatch.setattr(cpu, "_PACKED", {})
    monkeypatch.setattr(cpu_codegen, "blas_packed", lambda dtype: real)
    assert cpu.packed_gemm(k, torch.float32) is real
    assert cpu.packed_gemm(cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float64),
                           torch.float64) is None  # MKL packs float32 only


@pytest.mark.parametrize("block", [None, 6])
@pytest.mark.parametrize("name", ["layernorm_lstm", "gru_zoneout_rdrop", "peephole"])
def test_brgemm_gives_the_numbers_of_the_gemm_loop(name, block, monkeypatch):
    # float32: the C loop's per-step products through PyTorch's brgemm (forward h W_hh^T,
    # backward dhg W_hh), both directions, two layers, lengths, training and no_grad; against
    # the same loop on BLAS sgemm and against the reference loop. block: the forward's
    # products on column panels of 6 of W_hh^T and the backward's on slices of 6 rows of W_hh,
    # added up (G*H = 15 or 20: a narrower block at the end)
    if cpu.time_loop_brgemm(cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float32), torch.float32,
                            1) is None:
        pytest.skip("this PyTorch exports no float brgemm (or it failed its self-test)")
    real, used = cpu.time_loop_brgemm, []
    monkeypatch.setattr(cpu, "time_loop_brgemm",
                        lambda *a: used.append(real(*a)) or used[-1])
    monkeypatch.setattr(cpu, "BRGEMM_MIN_B", 1)
    monkeypatch.setattr(cpu, "BRGEMM_BLOCK_N", block)
    monkeypatch.setattr(cpu, "BRGEMM_BLOCK_K", block)
    monkeypatch.setattr(cpu, "BRGEMM_BLOCK_MIN_B", 2)
    monkeypatch.setattr(cpu, "_l2_cache_bytes", lambda: 0)  # blocked however small W_hh is
    # the whole-sequence products (cpu.mm) too, in small blocks; the inference projection
    # block by block
    monkeypatch.setattr(cpu, "MM_MIN_MACS", 0)
    monkeypatch.setattr(cpu, "MM_BLOCK_M", 4)
    monkeypatch.setattr(cpu, "MM_BLOCK_K", 3)
    monkeypatch.setattr(cpu, "MM_BLOCK_N", 5)
    monkeypatch.setattr(cpu, "PROJ_BLOCK_BYTES", 64)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    mms, real_mm = [], cpu.mm
    monkeypatch.setattr(cpu, "mm", lambda *a, **k: mms.append(1) or real_mm(*a, **k))
    T, B = 9, 5
    torch.manual_seed(0)
    ref = MODELS[name](num_layers=2, bidirectional=True, backend="reference")
    new = MODELS[name](num_layers=2, bidirectional=True, backend="cpu")
    new.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, 3, requires_grad=True)
    lengths = torch.tensor([T, 1, T - 4, 7, T])
    got = _run(new, x, lengths, 1)
    with torch.no_grad():
        got_eval = new.eval()(x, lengths=lengths)[0]
    assert sum(u is not None for u in used) >= 8         # 4 layers, fwd + bwd, then eval
    assert len(mms) >= 16                                 # projection, dX, dW_ih, dW_hh, ...
    monkeypatch.setattr(cpu, "BRGEMM_MIN_B", None)
    plain = _run(new.train(), x, lengths, 1)
    with torch.no_grad():
        plain_eval = new.eval()(x, lengths=lengths)[0]
    want = _run(ref, x, lengths, 1)
    torch.testing.assert_close(got_eval, plain_eval, rtol=1e-5, atol=1e-6)
    for k, (a, b, c) in enumerate(zip(want, got, plain)):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-5,
                                   msg=lambda m, k=k: f"tensor {k} vs sgemm: {m}")
        torch.testing.assert_close(b, a, rtol=5e-3, atol=5e-3,  # float32 (as packed's above)
                                   msg=lambda m, k=k: f"tensor {k} vs reference: {m}")


def test_a_brgemm_that_fails_its_self_test_is_not_used(monkeypatch):
    import ctypes

    k = cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float32)
    lookup = cpu_codegen.blas_brgemm
    assert lookup(torch.float64) is None                       # float32 only
    real = lookup(torch.float32)
    if real is None:
        pytest.skip("this PyTorch exports no float brgemm")
    noop = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 6, ctypes.c_bool, *[ctypes.c_void_p] * 3,
                            ctypes.c_bool)(lambda *args: None)
    monkeypatch.setattr(cpu, "_BRGEMMS", {})
    monkeypatch.setattr(cpu_codegen, "blas_brgemm",
                        lambda dtype: ctypes.cast(noop, ctypes.c_void_p).value)
    assert cpu.time_loop_brgemm(k, torch.float32, 64) is None
    monkeypatch.setattr(cpu, "_BRGEMMS", {})
    monkeypatch.setattr(cpu_codegen, "blas_brgemm", lambda dtype: real)
    assert cpu.time_loop_brgemm(k, torch.float32, 64) == real
    monkeypatch.setattr(cpu, "BRGEMM_MIN_B", 65)
    assert cpu.time_loop_brgemm(k, torch.float32, 64) is None  # below the batch size


# --- inference with the input projection block by block (scan_cpu_projected) -------------

def _ln_xg_fn(GX):
    g = torch.Generator().manual_seed(5)
    w = 1 + 0.3 * torch.rand(GX, generator=g, dtype=torch.float64)
    b = 0.3 * torch.rand(GX, generator=g, dtype=torch.float64)
    return cells.layernorm.input_norm(w, b, None)


PROJECTED = {  # cell, layer norm (LN_h / LN_c weights, LN_x as xg_fn), the cell's own weight
    "lstm": (cells.LSTM, False, None),
    "gru": (cells.GRU, False, None),
    "layernorm_lstm": (cells.layernorm.LAYERNORM_LSTM, True, None),
    "peephole": (EX.peephole_lstm, False, (3,)),
}


@pytest.mark.parametrize("blocks", ["3-step", "one"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("extras", ["plain", "zoneout-lengths"])
@pytest.mark.parametrize("name", list(PROJECTED))
def test_projected_inference_matches_the_reference_float64(name, extras, reverse, blocks,
                                                            monkeypatch):
    """``x W_ih^T + b_ih`` (and LN_x) and the time loop block by block over time, blocks of
    3 steps over T=10 (the last one short; or the whole sequence as one block), the states
    other than h in a ring: the same outputs and final states as projecting everything
    first and running the reference loop, with zoneout masks that differ per step (each
    block's masks found by address) and lengths ending inside blocks."""
    from recur import testing

    cell, ln, own = PROJECTED[name]
    T, B, I, H = 10, 4, 3, 5
    GX = cell.num_gates * H
    if blocks == "3-step":
        monkeypatch.setattr(cpu, "PROJ_BLOCK_BYTES", 3 * B * GX * 8)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    w_ih = torch.randn(GX, I, generator=g, dtype=torch.float64) * 0.5
    b_ih = None if ln else torch.randn(GX, generator=g, dtype=torch.float64) * 0.5
    xg_fn = _ln_xg_fn(GX) if ln else None
    _, w_hh, b_hh, state0, _ = testing.make_inputs(cell, T, B, H, bias=not ln,
                                                   dtype=torch.float64)
    w_hh, b_hh = w_hh.detach(), None if b_hh is None else b_hh.detach()
    state0 = tuple(s.detach() for s in state0)
    weights = tuple(p.detach().double() for p in testing.make_ln_weights(cell, H)) if ln else ()
    if own:
        weights = (0.5 * torch.randn(*own, H, generator=g, dtype=torch.float64),)
    zoneout = lengths = None
    if extras == "zoneout-lengths":
        zoneout = tuple(torch.bernoulli(torch.full((T, B, H), p, dtype=torch.float64),
                                        generator=g) for p in (0.3, 0.6)[:cell.num_states])
        lengths = torch.tensor([10, 2, 7, 4])
    with torch.no_grad():
        got = cpu.scan_cpu_projected(cell, x, w_ih, b_ih, xg_fn, w_hh, b_hh, state0,
                                     lengths=lengths, reverse=reverse, cell_weights=weights,
                                     zoneout=zoneout)
        xg = torch.nn.functional.linear(x, w_ih, b_ih)
        xg = xg if xg_fn is None else xg_fn(xg)
        want = scan(cell, xg, w_hh, b_hh, state0, lengths=lengths, reverse=reverse,
                    cell_weights=weights, zoneout=zoneout, backend="reference")
    if got is None:
        pytest.skip("this PyTorch exports no BLAS dgemm: the projected path needs the C loop")
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-12)
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_frozen_input_weights_still_train_the_rest():
    """Autograd on, but neither the input nor the input weights need gradients (a cell
    without LN_x, whose own parameters would): the projection needs none, yet ``W_hh`` and
    ``h0`` do, so the layer must not take the no-autograd path (cpu.scan_cpu_projected
    declines while grad mode is on)."""
    torch.manual_seed(0)
    ref = recur.VariantLSTM(3, 5, zoneout=0.2, backend="reference").double().eval()
    new = recur.VariantLSTM(3, 5, zoneout=0.2, backend="cpu").double().eval()
    new.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    grads = []
    for m in (ref, new):
        for name, p in m.named_parameters():
            p.requires_grad_(not name.startswith(("weight_ih", "bias_ih")))
        h0 = torch.zeros(1, 2, 5, dtype=torch.float64, requires_grad=True)
        out, _ = m(x, (h0, torch.zeros(1, 2, 5, dtype=torch.float64)))
        trainable = [p for p in m.parameters() if p.requires_grad]
        grads.append(torch.autograd.grad(out.square().sum(), [h0, *trainable]))
    assert len(grads[1]) > 1
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", ["layernorm_lstm", "layernorm_gru", "layernorm_lstm_zoneout"])
def test_training_applies_ln_x_in_the_kernel(name, monkeypatch):
    """With autograd, the cpu backend runs LN_x inside the generated kernel, forward and
    backward (the scan of cells.layernorm.with_input_norm on the raw projection): the
    module's LN_x map is never called, and outputs, states and every gradient (LN_x's
    gain and bias included) are the reference loop's in float64."""
    from recur.cells import layernorm

    if cpu.time_loop_gemm(cpu.kernel(cells.GRU, 2, 2, 6, [], torch.float64),
                          torch.float64) is None:
        pytest.skip("this PyTorch exports no BLAS dgemm")
    torch.manual_seed(0)
    ref = MODELS[name](num_layers=2, bidirectional=True, backend="reference").double()
    new = MODELS[name](num_layers=2, bidirectional=True, backend="cpu").double()
    new.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 1, 4])
    want = _run(ref, x, lengths, seed=3)
    maps = []
    real_map = layernorm.InputNorm.__call__
    monkeypatch.setattr(layernorm.InputNorm, "__call__",
                        lambda self, xg: maps.append(1) or real_map(self, xg))
    got = _run(new, x, lengths, seed=3)
    assert not maps
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("mkl", [True, False, None], ids=["mkl", "torch", "by-vendor"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transposed_is_the_contiguous_transpose(dtype, mkl, monkeypatch):
    # the time loops' W_hh^T: MKL's copy-transpose where found and chosen, else PyTorch's
    # strided copy
    monkeypatch.setattr(cpu, "MKL_TRANSPOSE", mkl)
    w = torch.randn(12, 5, dtype=dtype)
    for src in (w, w[:, 1:4], w[:0], torch.randn(1, 9, dtype=dtype), w.t()):
        got = cpu.transposed(src)
        assert got.is_contiguous() and got.dtype == dtype
        assert torch.equal(got, src.t())
    monkeypatch.setitem(cpu._OMATCOPY, dtype, None)        # no MKL: the same numbers
    assert torch.equal(cpu.transposed(w), w.t())


@pytest.mark.parametrize("layout", ["transposed", "as_is"])
@pytest.mark.parametrize("name", ["layernorm_lstm", "gru_zoneout"])
def test_forward_loop_reads_w_hh_either_way(name, layout, monkeypatch):
    """The forward time loop on a contiguous W_hh^T made per call, or on W_hh as it is (small
    batches, large weights: cpu.WHH_AS_IS_MAX_B / WHH_AS_IS_MIN_BYTES, here forced): outputs,
    final states and every gradient as the reference loop's, float64, training and no_grad,
    B=1 and B=3."""
    if layout == "as_is":
        monkeypatch.setattr(cpu, "WHH_AS_IS_MAX_B", 1 << 30)
        monkeypatch.setattr(cpu, "WHH_AS_IS_MIN_BYTES", 0)
    else:
        monkeypatch.setattr(cpu, "WHH_AS_IS_MAX_B", -1)
    torch.manual_seed(0)
    make = {"layernorm_lstm": lambda b: recur.LayerNormLSTM(3, 5, backend=b),
            "gru_zoneout": lambda b: recur.VariantGRU(3, 5, zoneout=0.3, backend=b)}[name]
    ref, new = make("reference").double().eval(), make("cpu").double().eval()
    new.load_state_dict(ref.state_dict())
    for B in (1, 3):
        x = torch.randn(6, B, 3, dtype=torch.float64, requires_grad=True)
        res = []
        for m in (ref, new):
            out, h = m(x)
            h = h if isinstance(h, tuple) else (h,)
            loss = out.square().sum() + sum(s.sum() for s in h)
            grads = torch.autograd.grad(loss, (x, *m.parameters()))
            with torch.no_grad():
                res.append((out, *h, *grads, m(x)[0]))
        for a, b in zip(*res):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("how", ["as_is", "packed", "transposed", "brgemm"])
def test_projected_inference_takes_a_non_contiguous_w_hh(how, monkeypatch):
    """scan_cpu_projected with W_hh a transposed view: the same numbers as with its
    contiguous copy, whichever way the loop reads it (as it is, packed, or W_hh^T through
    sgemm or brgemm)."""
    monkeypatch.setattr(cpu, "WHH_AS_IS_MAX_B", 1 << 30 if how == "as_is" else -1)
    monkeypatch.setattr(cpu, "WHH_AS_IS_MIN_BYTES", 0)
    monkeypatch.setattr(cpu, "BRGEMM_MIN_B", 1 if how == "brgemm" else None)
    if how == "packed":
        monkeypatch.setattr(cpu, "PACK_MIN_B", 1)
        monkeypatch.setattr(cpu, "PACK_MIN_T", 1)
        monkeypatch.setattr(cpu, "PACK_MIN_WEIGHT_BYTES", 0)
    g = torch.Generator().manual_seed(0)
    T, B, I, H = 6, 3, 4, 5
    x = torch.randn(T, B, I, generator=g)
    w_ih = torch.randn(4 * H, I, generator=g) * 0.5
    w_hh_t = torch.randn(H, 4 * H, generator=g) * 0.5       # W_hh^T; its .t() is a view
    state0 = (torch.zeros(B, H), torch.zeros(B, H))
    with torch.no_grad():
        got = cpu.scan_cpu_projected(cells.LSTM, x, w_ih, None, None, w_hh_t.t(), None, state0)
        want = cpu.scan_cpu_projected(cells.LSTM, x, w_ih, None, None,
                                      w_hh_t.t().contiguous(), None, state0)
    if got is None:
        pytest.skip("this PyTorch exports no BLAS sgemm: the projected path needs the C loop")
    assert not w_hh_t.t().is_contiguous()
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_mm_and_project_through_brgemm_match_torch(monkeypatch):
    # cpu.mm in blocks of rows and inner steps (remainders included), into a given buffer;
    # cpu.project's forward, backward and double backward against PyTorch's products
    if cpu._brgemm_call(torch.float32) is None:
        pytest.skip("this PyTorch exports no float brgemm (or it failed its self-test)")
    monkeypatch.setattr(cpu, "MM_MIN_MACS", 0)
    monkeypatch.setattr(cpu, "MM_BLOCK_M", 4)
    monkeypatch.setattr(cpu, "MM_BLOCK_K", 3)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(10, 7, generator=g), torch.randn(7, 5, generator=g)
    torch.testing.assert_close(cpu.mm(a, b), a @ b)
    out = torch.full((10, 5), float("nan"))
    assert cpu.mm(a, b, out=out) is out
    torch.testing.assert_close(out, a @ b)
    bt = torch.randn(5, 7, generator=g)                    # a non-contiguous operand
    torch.testing.assert_close(cpu.mm(a, bt.t()), a @ bt.t())
    used = []
    real = cpu._Project.forward
    monkeypatch.setattr(cpu._Project, "forward", staticmethod(
        lambda ctx, x, w: used.append(1) or real(ctx, x, w)))
    x = torch.randn(10, 7, generator=g, requires_grad=True)
    w = torch.randn(6, 7, generator=g, requires_grad=True)
    y = cpu.project(x, w)
    assert used, "project did not take brgemm"
    gy = torch.randn(10, 6, generator=g)
    dx, dw = torch.autograd.grad(y, (x, w), gy, create_graph=True)
    x2, w2 = x.detach().requires_grad_(), w.detach().requires_grad_()
    y2 = x2 @ w2.t()
    dx2, dw2 = torch.autograd.grad(y2, (x2, w2), gy, create_graph=True)
    for p, q in ((y, y2), (dx, dx2), (dw, dw2)):
        torch.testing.assert_close(p, q)
    gg = torch.autograd.grad((dx.square().sum() + dw.square().sum()), (x, w), allow_unused=True)
    gg2 = torch.autograd.grad((dx2.square().sum() + dw2.square().sum()), (x2, w2),
                              allow_unused=True)
    for p, q in zip(gg, gg2):
        assert (p is None) == (q is None)
        if p is not None:
            torch.testing.assert_close(p, q)
    y3 = cpu.project(x.detach(), w)                  # only W_ih needs a gradient
    (dw3,) = torch.autograd.grad(y3, (w,), gy)
    torch.testing.assert_close(dw3, dw2)


@pytest.mark.parametrize("name", ["layernorm_lstm", "gru_zoneout_rdrop", "peephole"])
def test_one_row_through_the_loops_gemv_matches_gemm_and_the_reference(name, monkeypatch):
    # float32, a batch of one row, W_hh read as it is: the loop's own gemv_rows (4 rows of
    # W_hh per pass; G*H = 15 or 20, so a GRU leaves a remainder of 3) against the same loop
    # on BLAS gemm and against the reference loop: training (both directions, two layers),
    # no_grad, and a streaming step
    used = []
    real = cpu._as_is_mode
    monkeypatch.setattr(cpu, "_as_is_mode", lambda *a: used.append(real(*a)) or used[-1])
    monkeypatch.setattr(cpu, "WHH_AS_IS_MIN_BYTES", 0)
    torch.manual_seed(0)
    ref = MODELS[name](num_layers=2, bidirectional=True, backend="reference")
    new = MODELS[name](num_layers=2, bidirectional=True, backend="cpu")
    new.load_state_dict(ref.state_dict())
    x = torch.randn(7, 1, 3, requires_grad=True)
    runs = {}
    for gemv in (True, False):
        monkeypatch.setattr(cpu, "WHH_GEMV", gemv)
        used.clear()
        train = _run(new.train(), x, None, 1)
        with torch.no_grad():
            runs[gemv] = (new.eval()(x)[0], *train)
        if (2 if gemv else 1) not in used:
            pytest.skip("this PyTorch exports no BLAS sgemm: no C loop to take the gemv")
    want = (ref.eval()(x)[0].detach(), *_run(ref.train(), x, None, 1))
    for k, (a, b, c) in enumerate(zip(want, runs[True], runs[False])):
        torch.testing.assert_close(b, c, rtol=1e-4, atol=1e-4,  # float32, another sum order
                                   msg=lambda m, k=k: f"tensor {k} vs gemm: {m}")
        torch.testing.assert_close(b, a, rtol=5e-3, atol=5e-3,  # float32 (as brgemm's above)
                                   msg=lambda m, k=k: f"tensor {k} vs reference: {m}")
    monkeypatch.setattr(cpu, "WHH_GEMV", True)
    one = MODELS[name](backend="cpu").eval()
    ref_one = MODELS[name](backend="reference").eval()
    ref_one.load_state_dict(one.state_dict())
    used.clear()
    with torch.no_grad():
        step = one.step(x[0].detach())[0]
        torch.testing.assert_close(step, ref_one.step(x[0].detach())[0], rtol=1e-5, atol=1e-6)
    assert 2 in used                                    # the step took the gemv too
