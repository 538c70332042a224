"""Streaming: ``step`` equals the full-sequence forward; ``stateful`` carries detached state."""

from __future__ import annotations

import pytest
import torch

import recur

I, H, T, B = 3, 5, 7, 2
CASES = {
    "RNN": lambda **kw: recur.RNN(I, H, **kw),
    "LSTM": lambda **kw: recur.LSTM(I, H, **kw),
    "LSTM-proj": lambda **kw: recur.LSTM(I, H, proj_size=2, **kw),
    "GRU": lambda **kw: recur.GRU(I, H, **kw),
}


def _peephole(xg, hg, states, w_peep):
    _, c = states
    i, f, g, o = (xg + hg).chunk(4, dim=-1)
    c_new = torch.sigmoid(f + w_peep[1] * c) * c + torch.sigmoid(i + w_peep[0] * c) * torch.tanh(g)
    return torch.sigmoid(o + w_peep[2] * c_new) * torch.tanh(c_new), c_new


PEEPHOLE = recur.cells.declare(_peephole, num_gates=4, num_states=2, name="test_stream_peep",
                               params=[recur.cells.Param("w_peep", (3, "H"))])
#: the cells torch.nn lacks: their step runs the declared update (eval: the masks are constant)
VARIANTS = {
    "LayerNormLSTM": lambda **kw: recur.LayerNormLSTM(I, H, **kw),
    "LayerNormGRU": lambda **kw: recur.LayerNormGRU(I, H, **kw),
    "LSTM-zoneout": lambda **kw: recur.VariantLSTM(I, H, zoneout=0.2, **kw),
    "GRU-recurrent-dropout": lambda **kw: recur.VariantGRU(I, H, recurrent_dropout=0.3, **kw),
    "peephole": lambda **kw: recur.CustomRNN(PEEPHOLE, I, H, **kw),
}


def _make(name, **kw):
    torch.manual_seed(0)
    return CASES[name](num_layers=2, **kw)


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_variant_steps_as_its_forward_in_float64(name, backend, monkeypatch):
    torch.manual_seed(0)
    m = VARIANTS[name](num_layers=2, backend=backend).double().eval()
    x = torch.randn(T, B, I, dtype=torch.double)
    want_out, want_state = m(x)                         # auto: the cpu backend's C kernels
    calls = []
    monkeypatch.setattr(type(m), "forward", lambda *a, **k: calls.append(1))
    state, ys = None, []
    for t in range(T):
        y, state = m.step(x[t], state)                  # the declared update, per layer
        ys.append(y)
    assert not calls                                    # no forward on a one-step sequence
    torch.testing.assert_close(torch.stack(ys), want_out)
    torch.testing.assert_close(state, want_state)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_variant_step_without_autograd_runs_the_cpu_kernel(name, train, monkeypatch):
    # no_grad + auto: one C call per layer (recur.ops.cpu); the numbers of the
    # reference loop's cell_step in float64, with the same masks in training
    from recur.ops import cpu, cpu_codegen

    if cpu_codegen.find_compiler() is None:
        pytest.skip("no C compiler: step runs the reference loop's cell_step")
    torch.manual_seed(0)
    auto = VARIANTS[name](num_layers=2).double().train(train)
    ref = VARIANTS[name](num_layers=2, backend="reference").double().train(train)
    ref.load_state_dict(auto.state_dict())
    x = torch.randn(T, B, I, dtype=torch.double)
    # one PreparedStep call per layer and step: prepared once in eval mode, per step in
    # training (step_cpu, whose masks change at every step)
    real_call, ran = cpu.PreparedStep.__call__, []
    monkeypatch.setattr(cpu.PreparedStep, "__call__",
                        lambda *a: ran.append(real_call(*a)) or ran[-1])
    with torch.no_grad():
        sa = sr = None
        for t in range(T):
            torch.manual_seed(t)
            ya, sa = auto.step(x[t], sa)
            torch.manual_seed(t)
            yr, sr = ref.step(x[t], sr)
            torch.testing.assert_close(ya, yr, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sa, sr, rtol=1e-12, atol=1e-12)
    if cpu.time_loop_gemm(cpu.kernel(recur.cells.GRU, 2, 2, 6, [], torch.float64),
                          torch.float64) is not None:
        assert len(ran) == 2 * T and all(r is not None for r in ran)


def _ln_lstm(**kw):
    torch.manual_seed(0)
    return recur.LayerNormLSTM(I, H, num_layers=2, **kw).double().eval()


def _steps(m, x, state=None):
    with torch.no_grad():
        ys = []
        for t in range(x.shape[0]):
            y, state = m.step(x[t], state)
            ys.append(y)
    return torch.stack(ys), state


def test_prepared_steps_follow_weight_batch_and_rate_changes():
    # eval + no_grad keeps prepared kernels between steps: whatever changes a step's numbers
    # (weights in place or replaced, batch size, zoneout rates) must show at the next step
    m = recur.VariantLSTM(I, H, num_layers=2, zoneout=0.3).double().eval()
    ref = recur.VariantLSTM(I, H, num_layers=2, zoneout=0.3, backend="reference").double().eval()
    x = torch.randn(T, B, I, dtype=torch.double)

    def check(xs):
        ref.load_state_dict(m.state_dict())
        ref.zoneout = m.zoneout
        ya, sa = _steps(m, xs)
        yr, sr = _steps(ref, xs)
        torch.testing.assert_close(ya, yr, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sa, sr, rtol=1e-12, atol=1e-12)
        return ya

    first = check(x)
    with torch.no_grad():
        m.weight_hh_l1.mul_(2)                          # in place (an optimizer step)
    assert not torch.allclose(check(x), first)
    m.load_state_dict({k: v + 0.1 for k, v in m.state_dict().items()})
    check(x)
    m.weight_ih_l0 = torch.nn.Parameter(m.weight_ih_l0.detach().clone() * 0.5)  # replaced
    check(x)
    check(torch.randn(T, B + 2, I, dtype=torch.double))  # another batch size
    m.zoneout = (0.7, 0.1)
    check(x)


def test_prepared_steps_survive_copies_and_do_not_alias_outputs():
    import copy
    import io
    import threading

    m = _ln_lstm()
    x = torch.randn(T, B, I, dtype=torch.double)
    want_y, want_s = _steps(m, x)
    clone = copy.deepcopy(m)                            # the prepared kernels are not copied
    buf = io.BytesIO()
    torch.save(m, buf)
    torch.testing.assert_close(_steps(clone, x), (want_y, want_s), rtol=0, atol=0)
    with torch.no_grad():
        y1, s1 = m.step(x[0])
        keep = (y1.clone(), s1[0].clone())
        m.step(x[1], s1)                                # must not overwrite y1 / s1
    torch.testing.assert_close((y1, s1[0]), keep, rtol=0, atol=0)
    fresh = _ln_lstm()
    with torch.inference_mode():                        # buffers made in inference mode
        torch.testing.assert_close(fresh.step(x[0]), (y1, s1), rtol=0, atol=0)
    with torch.no_grad():                               # ... are not written outside it
        torch.testing.assert_close(fresh.step(x[0]), (y1, s1), rtol=0, atol=0)
    got = {}                                            # threads get their own buffers
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, _steps(m, x)))
               for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(3):
        torch.testing.assert_close(got[i], (want_y, want_s), rtol=0, atol=0)


def test_a_variant_step_in_training_draws_its_masks_and_has_gradients():
    torch.manual_seed(0)
    m = recur.VariantLSTM(I, H, zoneout=0.5, recurrent_dropout=0.5)
    x = torch.randn(B, I)
    outs = {tuple(m.step(x)[0].flatten().tolist()) for _ in range(4)}
    assert len(outs) > 1                                # fresh masks per step
    y, (h, c) = m.step(x, (torch.randn(1, B, H), torch.randn(1, B, H)))  # h != 0: W_hh used
    y.sum().backward()
    assert m.weight_hh_l0.grad is not None and m.weight_hh_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("name", list(CASES))
def test_step_by_step_equals_forward(name, batch_first):
    m = _make(name, batch_first=batch_first)
    x = torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)
    tdim = 1 if batch_first else 0
    want_out, want_state = m(x)
    state, ys = None, []
    for t in range(T):
        y, state = m.step(x.select(tdim, t), state)  # x_t: (B, I)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, dim=tdim), want_out)
    torch.testing.assert_close(state, want_state)
    # chunks of 3, 1 and 3 steps
    state, ys = None, []
    for chunk in x.split([3, 1, 3], dim=tdim):
        y, state = m.step(chunk, state)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, dim=tdim), want_out)
    torch.testing.assert_close(state, want_state)


def test_stateful_carries_detached_state_and_resets():
    m = _make("LSTM", stateful=True)
    x = torch.randn(2 * T, B, I)
    ref = _make("LSTM")  # same seed: same weights
    want, (wh, wc) = ref(x)
    out1, _ = m(x[:T])
    out2, (h, c) = m(x[T:])
    torch.testing.assert_close(torch.cat([out1, out2]), want)
    torch.testing.assert_close((h, c), (wh, wc))
    assert m._carried[0].grad_fn is None  # detached: truncated BPTT
    out2.sum().backward()  # does not reach back into the first call's graph
    assert "_carried" not in m.state_dict()
    # a different batch size is an error, not a silent reuse
    with pytest.raises(ValueError, match="batch of 2, this input is a batch of 3.*reset_state"):
        m(torch.randn(T, 3, I))
    m.reset_state()
    torch.testing.assert_close(m(x[:T])[0], want[:T])
    # an explicit hx wins over the carried state
    hx = (torch.zeros(2, B, H), torch.zeros(2, B, H))
    torch.testing.assert_close(m(x[:T], hx)[0], want[:T])


def test_stateful_truncated_bptt_trains():
    """The sine->cos lesson's loop, without carrying state by hand."""
    torch.manual_seed(0)
    m, head = recur.GRU(1, 8, stateful=True), torch.nn.Linear(8, 1)
    opt = torch.optim.Adam([*m.parameters(), *head.parameters()], lr=0.02)
    t = torch.linspace(0, 12, 240).view(-1, 1, 1)
    losses = []
    for _ in range(15):
        m.reset_state()
        total = 0.0
        for xs, ys in zip(torch.sin(t).split(40), torch.cos(t).split(40)):
            loss = torch.nn.functional.mse_loss(head(m(xs)[0]), ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total)
    assert losses[-1] < 0.5 * losses[0]


def test_step_errors():
    with pytest.raises(ValueError, match="bidirectional layer cannot run step by step"):
        recur.GRU(I, H, bidirectional=True).step(torch.randn(B, I))
    with pytest.raises(ValueError, match="stateful=True needs a unidirectional"):
        recur.GRU(I, H, bidirectional=True, stateful=True)
    with pytest.raises(ValueError, match=r"\[B, I\].*got 1-D"):
        recur.GRU(I, H).step(torch.randn(I))


@pytest.mark.parametrize("name", ["LayerNormLSTM", "LayerNormGRU"])
def test_a_layer_norm_step_applies_ln_x_in_its_kernel(name, monkeypatch):
    """Eval mode without autograd: the prepared kernel takes the raw projection and applies
    LN_x itself (recur.cells.layernorm.with_input_norm: one operator call fewer per step),
    never calling the module's LN_x map; the float64 numbers of forward."""
    from recur.cells import layernorm
    from recur.ops import cpu, cpu_codegen

    if cpu_codegen.find_compiler() is None:
        pytest.skip("no C compiler: step runs the reference loop's cell_step")
    torch.manual_seed(0)
    m = VARIANTS[name](num_layers=2).double().eval()
    x = torch.randn(T, B, I, dtype=torch.double)
    with torch.no_grad():
        want_out, want_state = m(x)
    maps = []
    real_map = layernorm.InputNorm.__call__
    monkeypatch.setattr(layernorm.InputNorm, "__call__",
                        lambda self, xg: maps.append(1) or real_map(self, xg))
    got_out, got_state = _steps(m, x)
    torch.testing.assert_close(got_out, want_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_state, want_state, rtol=1e-10, atol=1e-12)
    if cpu.time_loop_gemm(cpu.kernel(recur.cells.GRU, 2, 2, 6, [], torch.float64),
                          torch.float64) is None:
        return  # no BLAS in C here: step runs the reference loop's cell_step (tested above)
    with torch.no_grad():
        layers = m._prepared_layers(x[:1])
    assert [fused for _, _, fused in layers] == [True, True]
    assert not maps


def _fused_adamw_step(m, x):
    opt = torch.optim.AdamW(m.parameters(), lr=0.1, fused=True)
    m.train()
    m(x.expand(5, *x.shape))[0].sum().backward()
    opt.step()                                    # in place, with no version bump on torch 2.13
    m.eval()


def _write_data(m, x):
    for p in m.parameters():
        p.data.mul_(0.5).add_(0.05)               # through .data: no version bump


def _write_numpy(m, x):
    for p in m.parameters():
        a = p.detach().numpy()                    # shares p's memory
        a *= -0.7


@pytest.mark.parametrize("write", [_fused_adamw_step, _write_data, _write_numpy],
                         ids=["fused-adamw", "data", "numpy"])
@pytest.mark.parametrize("batch", [2, 16])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_prepared_step_sees_writes_that_bump_no_version(name, batch, write, monkeypatch):
    # a kept step reads the weights in place and sums LN_x's bias + b_ih again at each step,
    # so whatever writes the weights (with or without a version bump) shows at the next step;
    # a packed W_hh would be a stale copy: with packing allowed for any weight size, none
    import copy

    from recur.ops import cpu

    monkeypatch.setattr(cpu, "PACK_MIN_WEIGHT_BYTES", 0)
    torch.manual_seed(0)
    m = VARIANTS[name](num_layers=2).eval()
    x = torch.randn(batch, I)
    state = tuple(torch.randn(2, batch, H) for _ in range(m.cell.num_states))  # W_hh matters
    state = state if len(state) > 1 else state[0]
    with torch.inference_mode():
        first = m.step(x, state)[0].clone()                    # prepared, kept
    write(m, x)
    ref = copy.deepcopy(m)
    ref.backend = "reference"
    with torch.inference_mode():
        want = ref.step(x, state)[0]
        assert not torch.allclose(want, first)                 # the write changed the output
        torch.testing.assert_close(m.step(x, state)[0], want)
    with torch.no_grad():                                      # and outside inference mode
        torch.testing.assert_close(m.step(x, state)[0], want)
    m.weight_hh_l1.data.zero_()                                # W_hh alone, no version bump
    ref.weight_hh_l1.data.zero_()
    with torch.no_grad():
        torch.testing.assert_close(m.step(x, state)[0], ref.step(x, state)[0])


def test_a_step_sees_writes_to_a_parameter_that_is_not_contiguous():
    torch.manual_seed(0)
    m = recur.LayerNormLSTM(I, H).eval()
    w = m.weight_hh_l0.detach()
    m.weight_hh_l0 = torch.nn.Parameter(w.t().contiguous().t())  # same values, transposed layout
    assert not m.weight_hh_l0.is_contiguous()
    x, state = torch.randn(B, I), (torch.randn(1, B, H), torch.randn(1, B, H))
    with torch.no_grad():
        first = m.step(x, state)[0].clone()
        m.weight_hh_l0.data.mul_(3)                               # no version bump
        ref = recur.LayerNormLSTM(I, H, backend="reference").eval()
        ref.load_state_dict(m.state_dict())
        want = ref.step(x, state)[0]
        assert not torch.allclose(want, first)
        torch.testing.assert_close(m.step(x, state)[0], want)


def test_a_module_made_under_inference_mode_steps():
    torch.manual_seed(0)
    with torch.inference_mode():                  # parameters without a version counter
        m = recur.LayerNormLSTM(4, 8).eval()
    ref = recur.LayerNormLSTM(4, 8, backend="reference").eval()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 4)
    with torch.inference_mode():
        for _ in range(2):                        # prepared, then kept
            torch.testing.assert_close(m.step(x, None)[0], ref.step(x, None)[0])


@pytest.mark.parametrize("hook", ["prune", "weight_norm", "spectral_norm"])
@pytest.mark.parametrize("name", ["LSTM-zoneout", "LayerNormGRU"])
def test_a_step_sees_weights_that_a_forward_hook_recomputes(name, hook):
    # pruning and the old-style weight_norm / spectral_norm put a tensor they recompute at
    # each forward in place of the parameter: a kept step must not read the old one
    import copy

    from torch.nn.utils import prune

    torch.manual_seed(0)
    m = VARIANTS[name](dtype=torch.float64).eval()
    if hook == "prune":
        prune.random_unstructured(m, "weight_hh_l0", amount=0.4)
    else:
        import warnings

        with warnings.catch_warnings():                     # deprecated, still in use
            warnings.simplefilter("ignore", FutureWarning)
            getattr(torch.nn.utils, hook)(m, "weight_hh_l0")
    x = torch.randn(2, I, dtype=torch.float64)
    state = tuple(torch.randn(1, 2, H, dtype=torch.float64) for _ in range(m.cell.num_states))
    state = state if len(state) > 1 else state[0]
    with torch.no_grad():
        first = m.step(x, state)[0].clone()
        for p in m.parameters():
            p.add_(0.3)                                     # as an optimizer step would
        m(x[None])                                          # the hook makes weight_hh_l0 anew
        ref = copy.deepcopy(m)
        ref.backend = "reference"
        want = ref.step(x, state)[0]
        assert not torch.allclose(want, first)
        torch.testing.assert_close(m.step(x, state)[0], want, rtol=1e-12, atol=1e-12)


def test_a_step_with_ln_x_outside_the_kernel_is_not_kept_and_sees_writes(monkeypatch):
    # where LN_x cannot run inside the kernel, the step maps the projection with LN_x's bias
    # + b_ih summed when prepared: such a stack is prepared at every step, never kept
    from recur.nn import streaming
    from recur.ops import cpu

    monkeypatch.setattr(cpu, "input_norm_in_kernel", lambda *a, **k: None)
    torch.manual_seed(0)
    m = recur.LayerNormLSTM(I, H).double().eval()
    x = torch.randn(B, I, dtype=torch.double)
    with torch.no_grad():
        first = m.step(x)[0].clone()
        assert m._prepared_layers(x[None]) is not None          # the C step runs ...
        assert streaming._PREPARED.modules.get(m) is None       # ... and is not kept
        m.bias_ih_l0.data.add_(0.5)                             # no version bump
        ref = recur.LayerNormLSTM(I, H, backend="reference").double().eval()
        ref.load_state_dict(m.state_dict())
        want = ref.step(x)[0]
        assert not torch.allclose(want, first)
        torch.testing.assert_close(m.step(x)[0], want, rtol=1e-12, atol=1e-12)
