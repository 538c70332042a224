"""Variants (LayerNormLSTM/GRU, zoneout, recurrent dropout, DropConnect, forget_bias, merge)
against independent loops written here from the formulas (float64: outputs, states and
every parameter gradient), plus mask rates, eval determinism and backend errors."""

from __future__ import annotations

import pytest
import torch
from _loops import assert_close_all, grads, ln, loop_stack
from torch.nn.utils.rnn import pack_padded_sequence

import recur

T, B, I, H = 6, 3, 4, 5
LENGTHS = torch.tensor([6, 4, 1])
f64 = torch.float64


def _x(seed=0):
    return torch.randn(T, B, I, generator=torch.Generator().manual_seed(seed), dtype=f64)


def _p(m, name, k, D):
    return getattr(m, f"{name}_l{k // D}{'_reverse' if k % D else ''}")


def _lstm_step(m, D, masks=None, layernorm=False):
    def step(k, t, x, states):
        h, c = states
        w_ih, w_hh = _p(m, "weight_ih", k, D), _p(m, "weight_hh", k, D)
        b = _p(m, "bias_ih", k, D) + _p(m, "bias_hh", k, D)
        hh = h
        if masks is not None and masks[k].h_mask is not None:
            hh = h * masks[k].h_mask
        if masks is not None and masks[k].w_hh_mask is not None:
            w_hh = w_hh * masks[k].w_hh_mask
        if layernorm:
            g = (ln(x @ w_ih.T, _p(m, "ln_x_weight", k, D), _p(m, "ln_x_bias", k, D))
                 + ln(hh @ w_hh.T, _p(m, "ln_h_weight", k, D), _p(m, "ln_h_bias", k, D)) + b)
        else:
            g = x @ w_ih.T + hh @ w_hh.T + b
        i, f, gg, o = g.chunk(4, -1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        c_out = ln(c_new, _p(m, "ln_c_weight", k, D), _p(m, "ln_c_bias", k, D)) if layernorm \
            else c_new
        h_new = torch.sigmoid(o) * torch.tanh(c_out)
        if masks is not None and masks[k].zoneout is not None:
            mh, mc = masks[k].zoneout[0][t], masks[k].zoneout[1][t]
            h_new = mh * h + (1 - mh) * h_new
            c_new = mc * c + (1 - mc) * c_new
        return h_new, c_new
    return step


def _gru_step(m, D, masks=None, layernorm=False):
    def step(k, t, x, states):
        (h,) = states
        w_ih, w_hh = _p(m, "weight_ih", k, D), _p(m, "weight_hh", k, D)
        hh = h if masks is None or masks[k].h_mask is None else h * masks[k].h_mask
        if masks is not None and masks[k].w_hh_mask is not None:
            w_hh = w_hh * masks[k].w_hh_mask
        xp, hp = x @ w_ih.T, hh @ w_hh.T
        if layernorm:
            xp = ln(xp, _p(m, "ln_x_weight", k, D), _p(m, "ln_x_bias", k, D))
            hp = ln(hp, _p(m, "ln_h_weight", k, D), _p(m, "ln_h_bias", k, D))
        xr, xz, xn = (xp + _p(m, "bias_ih", k, D)).chunk(3, -1)
        hr, hz, hn = (hp + _p(m, "bias_hh", k, D)).chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h_new = (1 - z) * n + z * h
        if masks is not None and masks[k].zoneout is not None:
            mh = masks[k].zoneout[0][t]
            h_new = mh * h + (1 - mh) * h_new
        return (h_new,)
    return step


def _randomise(m, seed=1):
    """Move LN gains / biases away from (1, 0) so the test sees them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _compare(m, step, n_states, lengths=LENGTHS, D=2, L=2, atol=1e-10):
    x = _x().requires_grad_()
    hx = tuple(torch.randn(L * D, B, H, dtype=f64, generator=torch.Generator().manual_seed(7 + j))
               for j in range(n_states))
    out, hn = m(x, hx if n_states > 1 else hx[0], lengths=lengths)
    hn = hn if isinstance(hn, tuple) else (hn,)
    ref_out, ref_hn = loop_stack(step, x, lengths, L, D, hx)
    assert_close_all((out, *hn), (ref_out, *ref_hn), atol=atol, rtol=atol)
    params = [x, *m.parameters()]
    assert_close_all(grads((out, *hn), params), grads((ref_out, *ref_hn), params),
                     atol=atol, rtol=atol)


@pytest.mark.parametrize("cls,n_states", [(recur.LayerNormLSTM, 2), (recur.LayerNormGRU, 1)],
                         ids=["LayerNormLSTM", "LayerNormGRU"])
def test_layernorm_matches_formula_loop(cls, n_states):
    torch.manual_seed(0)
    m = cls(I, H, num_layers=2, bidirectional=True, dtype=f64)
    _randomise(m)
    make = _lstm_step if n_states == 2 else _gru_step
    _compare(m, make(m, 2, layernorm=True), n_states)


def test_layernorm_init_and_names():
    m = recur.LayerNormLSTM(I, H, bidirectional=True)
    sd = m.state_dict()
    for name in ("ln_x_weight_l0", "ln_h_weight_l0_reverse", "ln_c_weight_l0"):
        assert torch.equal(sd[name], torch.ones_like(sd[name]))
        assert torch.equal(sd[name.replace("weight", "bias")], torch.zeros_like(sd[name]))
    assert sd["ln_x_weight_l0"].shape == (4 * H,) and sd["ln_c_weight_l0"].shape == (H,)
    # torch.nn's LSTM weights load into it by name
    ref = torch.nn.LSTM(I, H, bidirectional=True)
    missing, unexpected = m.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and all(n.startswith("ln_") for n in missing)


@pytest.mark.parametrize("cls", [recur.LayerNormLSTM, recur.LayerNormGRU],
                         ids=["LayerNormLSTM", "LayerNormGRU"])
def test_layernorm_is_declared_by_the_cell(cls):
    """The layer norm is the cell's (``Cell.norm``): ``VariantRNN`` on a layer-norm cell is the
    layer-norm module (same parameters, same outputs), with nothing set on the module."""
    torch.manual_seed(0)
    m = cls(I, H, num_layers=2, bidirectional=True, dtype=f64)
    _randomise(m)
    v = recur.VariantRNN(m.cell, I, H, num_layers=2, bidirectional=True, dtype=f64)
    assert [n for n, _ in v.named_parameters()] == [n for n, _ in m.named_parameters()]
    v.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(T, B, I, dtype=f64)
    assert_close_all(v(x), m(x), atol=0, rtol=0)
    assert m.cell.norm == ("hc" if cls is recur.LayerNormLSTM else "h")
    assert not hasattr(m.cell, "fused_norm")  # the old name of norm, removed
    # a cell pickled by value under the old field name still loads (Cell.__setstate__)
    state = dict(m.cell.__dict__)
    state["fused_norm"] = state.pop("norm")
    old = object.__new__(type(m.cell))
    old.__setstate__(state)
    assert old == m.cell and old.norm == m.cell.norm


def _fixed_masks(m, seed, zoneout=False, hdrop=False, wdrop=False, n_states=2):
    gen = torch.Generator().manual_seed(seed)
    G = m.cell.num_gates
    out = []
    for _ in range(len(m._all_weights)):
        zo = tuple(torch.bernoulli(torch.full((T, B, H), 0.3, dtype=f64), generator=gen)
                   for _ in range(n_states)) if zoneout else None
        hm = torch.bernoulli(torch.full((B, H), 0.6, dtype=f64), generator=gen) / 0.6 \
            if hdrop else None
        wm = torch.bernoulli(torch.full((G * H, H), 0.7, dtype=f64), generator=gen) / 0.7 \
            if wdrop else None
        out.append(recur.nn.variants.LayerMasks(zo, hm, wm))
    return out


@pytest.mark.parametrize("kind", ["zoneout", "recurrent_dropout", "weight_drop", "all"])
@pytest.mark.parametrize("cls,n_states", [(recur.VariantLSTM, 2), (recur.VariantGRU, 1),
                                          (recur.LayerNormLSTM, 2)],
                         ids=["LSTM", "GRU", "LayerNormLSTM"])
def test_training_masks_match_formula_loop(cls, n_states, kind):
    """With the masks fixed (sample_masks patched), training forward == the formula loop."""
    opts = dict(zoneout=0.3 if kind in ("zoneout", "all") else 0.0,
                recurrent_dropout=0.4 if kind in ("recurrent_dropout", "all") else 0.0,
                weight_drop=0.3 if kind in ("weight_drop", "all") else 0.0)
    m = cls(I, H, num_layers=2, bidirectional=True, dtype=f64, **opts)
    _randomise(m)
    masks = _fixed_masks(m, 3, zoneout=opts["zoneout"] > 0, hdrop=opts["recurrent_dropout"] > 0,
                         wdrop=opts["weight_drop"] > 0, n_states=n_states)
    m.sample_masks = lambda T_, B_, like: masks
    make = _lstm_step if n_states == 2 else _gru_step
    _compare(m, make(m, 2, masks=masks, layernorm=cls is recur.LayerNormLSTM), n_states)


@pytest.mark.parametrize("cls,n_states", [(recur.VariantLSTM, 2), (recur.VariantGRU, 1)],
                         ids=["LSTM", "GRU"])
def test_zoneout_eval_is_expectation_and_deterministic(cls, n_states):
    rates = (0.2, 0.5) if n_states == 2 else 0.2
    m = cls(I, H, num_layers=2, bidirectional=True, dtype=f64, zoneout=rates,
            recurrent_dropout=0.3, weight_drop=0.3).eval()
    p = rates if n_states == 2 else (rates,)
    masks = [recur.nn.variants.LayerMasks(tuple(torch.full((T, B, H), q, dtype=f64) for q in p))
             for _ in range(4)]
    make = _lstm_step if n_states == 2 else _gru_step
    _compare(m, make(m, 2, masks=masks), n_states)
    x = _x()
    a, b = m(x), m(x)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_training_is_random_eval_is_not():
    m = recur.VariantLSTM(I, H, zoneout=0.2, recurrent_dropout=0.2, weight_drop=0.2, dtype=f64)
    x = _x()
    assert not torch.equal(m(x)[0], m(x)[0])
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])
    # no option in eval == the plain LSTM except zoneout's expectation; without zoneout exact
    m2 = recur.VariantLSTM(I, H, recurrent_dropout=0.5, weight_drop=0.5, dtype=f64).eval()
    ref = torch.nn.LSTM(I, H, dtype=f64)
    ref.load_state_dict(m2.state_dict())
    torch.testing.assert_close(m2(x)[0], ref(x)[0], atol=1e-12, rtol=1e-12)


def test_mask_rates_and_sharing():
    """Zoneout: Bernoulli(p) per unit and step; recurrent dropout: one [B, Hout] mask per
    sequence and layer (scaled 1/(1-p)); DropConnect: [G*H, Hout] scaled, fresh each call."""
    torch.manual_seed(0)
    m = recur.VariantLSTM(I, 64, num_layers=2, zoneout=(0.1, 0.4), recurrent_dropout=0.25,
                          weight_drop=0.5)
    like = torch.empty(0, dtype=f64)
    masks = m.sample_masks(200, 32, like)
    assert len(masks) == 2
    n = 200 * 32 * 64
    for lm in masks:
        for mask, p in zip(lm.zoneout, (0.1, 0.4)):
            assert mask.shape == (200, 32, 64) and mask.dtype == f64
            assert set(mask.unique().tolist()) == {0.0, 1.0}
            assert abs(mask.mean().item() - p) < 4 * (p * (1 - p) / n) ** 0.5
        assert lm.h_mask.shape == (32, 64)  # no time axis: the same mask at every step
        assert set(lm.h_mask.unique().tolist()) <= {0.0, 1 / 0.75}
        assert abs((lm.h_mask == 0).float().mean().item() - 0.25) < 4 * (0.1875 / 2048) ** 0.5
        assert lm.w_hh_mask.shape == (4 * 64, 64)
        assert abs((lm.w_hh_mask == 0).float().mean().item() - 0.5) < 4 * (0.25 / 16384) ** 0.5
    # different layers get different masks; a second forward draws fresh ones
    assert not torch.equal(masks[0].h_mask, masks[1].h_mask)
    again = m.sample_masks(200, 32, like)
    assert not torch.equal(masks[0].w_hh_mask, again[0].w_hh_mask)


def test_zoneout_rate_end_to_end():
    """In training, a unit of h keeps its previous value with probability p_h."""
    torch.manual_seed(0)
    m = recur.VariantGRU(3, 64, zoneout=0.3, dtype=f64)
    x = torch.randn(100, 16, 3, dtype=f64)
    out, _ = m(x)
    same = (out[1:] == out[:-1]).double().mean().item()
    n = 99 * 16 * 64
    assert abs(same - 0.3) < 4 * (0.21 / n) ** 0.5


def test_recurrent_dropout_mask_is_shared_across_steps():
    """With h_{t-1}'s units dropped by one mask, a dropped unit never reaches W_hh at any
    step: zeroing W_hh's column for it changes nothing (rows of the batch share nothing)."""
    torch.manual_seed(0)
    m = recur.VariantRNN(recur.cells.RNN_TANH, 3, 8, recurrent_dropout=0.5, dtype=f64)
    masks = m.sample_masks(T, 1, torch.empty(0, dtype=f64))
    m.sample_masks = lambda *a: masks
    dropped = (masks[0].h_mask[0] == 0).nonzero().flatten()
    assert 0 < len(dropped) < 8
    x = torch.randn(T, 1, 3, dtype=f64)
    out1, _ = m(x)
    with torch.no_grad():
        m.weight_hh_l0[:, dropped] = 123.0
    out2, _ = m(x)
    torch.testing.assert_close(out1, out2, atol=0, rtol=0)


def test_weight_drop_keeps_torch_names_and_runs_on_torch_backend():
    torch.manual_seed(0)
    m = recur.VariantLSTM(I, H, num_layers=2, weight_drop=0.5, backend="torch", dtype=f64)
    ref = torch.nn.LSTM(I, H, num_layers=2, dtype=f64)
    assert list(m.state_dict()) == list(ref.state_dict())
    before = m.weight_hh_l0.detach().clone()
    x = _x()
    out1, out2 = m(x)[0], m(x)[0]
    assert not torch.equal(out1, out2)
    assert torch.equal(m.weight_hh_l0, before)  # the parameter itself is never masked


def test_forget_bias():
    m = recur.LayerNormLSTM(I, H, bidirectional=True, forget_bias=1.0)
    for sfx in ("", "_reverse"):
        b_ih, b_hh = getattr(m, f"bias_ih_l0{sfx}"), getattr(m, f"bias_hh_l0{sfx}")
        assert torch.equal(b_ih[H:2 * H], torch.ones(H))
        assert torch.equal(b_hh[H:2 * H], torch.zeros(H))
        assert not torch.equal(b_ih[:H], torch.ones(H))
    m.reset_parameters()
    assert torch.equal(m.bias_ih_l0[H:2 * H], torch.ones(H))
    with pytest.raises(ValueError, match="forget gate"):
        recur.VariantGRU(I, H, forget_bias=1.0)
    with pytest.raises(ValueError, match="bias=True"):
        recur.VariantLSTM(I, H, bias=False, forget_bias=1.0)


@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "mul"])
def test_merge_matches_torch_nn(merge):
    m = recur.VariantLSTM(I, H, num_layers=2, bidirectional=True, merge=merge, dtype=f64)
    ref = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, dtype=f64)
    ref.load_state_dict(m.state_dict())
    x = _x()
    out, (h, c) = m(x)
    r, (rh, rc) = ref(x)
    f, b = r[..., :H], r[..., H:]
    want = {"concat": r, "sum": f + b, "mean": (f + b) / 2, "mul": f * b}[merge]
    assert_close_all((out, h, c), (want, rh, rc))
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    po, _ = m(packed)
    lo, _ = m(x, lengths=LENGTHS)
    torch.testing.assert_close(torch.nn.utils.rnn.pad_packed_sequence(po)[0], lo[:6])


def test_packed_equals_lengths_for_variants():
    m = recur.LayerNormGRU(I, H, num_layers=2, bidirectional=True, dtype=f64, zoneout=0.2).eval()
    x = _x()
    lo, lh = m(x, lengths=LENGTHS)
    po, ph = m(pack_padded_sequence(x, LENGTHS, enforce_sorted=False))
    torch.testing.assert_close(torch.nn.utils.rnn.pad_packed_sequence(po)[0], lo)
    torch.testing.assert_close(ph, lh)


@pytest.mark.parametrize("make", [
    lambda: recur.LayerNormLSTM(I, H, backend="torch"),
    lambda: recur.LayerNormGRU(I, H, backend="torch"),
    lambda: recur.VariantLSTM(I, H, zoneout=0.1, backend="torch"),
    lambda: recur.VariantGRU(I, H, recurrent_dropout=0.1, backend="torch"),
], ids=["LayerNormLSTM", "LayerNormGRU", "zoneout", "recurrent_dropout"])
def test_torch_backend_refuses_what_it_cannot_run(make):
    """The planner refuses at the forward, naming why (no construction-time copy of it)."""
    with pytest.raises(ValueError, match="backend='torch' cannot run .*(not one of torch.nn's "
                                         "four|which PyTorch's kernels cannot run)"):
        make()(torch.randn(3, 2, I))


def test_bad_options():
    with pytest.raises(ValueError, match="zoneout"):
        recur.VariantLSTM(I, H, zoneout=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="proj_size=0"):
        recur.VariantLSTM(I, H, proj_size=2, zoneout=0.1)
    with pytest.raises(ValueError, match="recurrent_dropout"):
        recur.VariantLSTM(I, H, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="merge"):
        recur.VariantLSTM(I, H, merge="max")


def test_layernorm_lstm_with_projection():
    m = recur.LayerNormLSTM(I, H, proj_size=2, recurrent_dropout=0.2, dtype=f64)
    out, (h, c) = m(_x(), lengths=LENGTHS)
    assert out.shape == (T, B, 2) and h.shape == (1, B, 2) and c.shape == (1, B, H)
