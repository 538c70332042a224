"""``classify``'s data-driven defaults: the conv-rnn model, the rules that choose sizes from the
data, and a tiny end-to-end run that must learn an easy synthetic problem.

The panel accuracies (GunPoint, OSULeaf, ...) are measurements of ``benchmarks/panel.py``, too
slow for CI; here every path runs in a tiny configuration and is checked for learning.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recur.data import ClassificationData, SequenceSplit
from recur.nn import GRU, LSTM
from recur.tasks import get_task, resolve_config
from recur.tasks.classify_defaults import (
    MAX_EPOCHS,
    MAX_MEMBERS,
    MIN_STEPS,
    STEPS,
    choose,
    describe,
)
from recur.tasks.classify_model import ConvRecurrentClassifier, Ensemble, predict_proba
from recur.tasks.models import last_states
from recur.tasks.runner import eval_run, train_task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("stride,window,norm", [(1, 1, False), (2, 3, True), (3, 1, True),
                                                (1, 4, False)], ids=lambda v: str(v))
def test_conv_rnn_ignores_padding_and_uses_recur(stride, window, norm):
    torch.manual_seed(0)
    model = ConvRecurrentClassifier(2, 3, hidden=5, channels=6, stride=stride,
                                    rnn_window=window, series_norm=norm).eval()
    assert isinstance(model.rnn, GRU)
    x, lengths = torch.randn(3, 23, 2), torch.tensor([23, 10, 1])
    both = model(x, lengths)
    for b in (1, 2):
        alone = model(x[b:b + 1, :int(lengths[b])], lengths[b:b + 1])
        torch.testing.assert_close(both[b], alone[0])
    x[1, 10:] = 100.0                                          # garbage in the padding
    torch.testing.assert_close(model(x, lengths), both)


def test_series_norm_sees_shape_whatever_the_scale():
    torch.manual_seed(0)
    model = ConvRecurrentClassifier(1, 2, hidden=4, channels=4, series_norm=True).eval()
    model.blocks[0][0].weight.data[:, 0] = 0               # read the per-series channel only
    x, lengths = torch.randn(1, 20, 1), torch.tensor([20])
    torch.testing.assert_close(model(1000 * x + 7, lengths), model(x, lengths))
    model(torch.ones(1, 5, 1), torch.tensor([5]))          # a constant series: no NaN
    assert torch.isfinite(model(torch.ones(1, 5, 1), torch.tensor([5]))).all()


def test_last_states_takes_the_last_layer_both_directions():
    lstm = LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    out, state = lstm(torch.randn(2, 5, 3))
    last = last_states(state, 2)                               # (B, 2H)
    torch.testing.assert_close(last[:, :4], out[:, -1, :4])   # forward: the last step
    torch.testing.assert_close(last[:, 4:], out[:, 0, 4:])    # reverse: the first step
    torch.testing.assert_close(last_states(state[0], 1), state[0][-1])  # a bare h_n


def test_choose_adapts_to_length_and_size():
    cfg = resolve_config(get_task("classify"))
    short = choose(n_train=50, max_length=24, cfg=cfg)
    long = choose(n_train=50, max_length=1460, cfg=cfg)
    big = choose(n_train=2000, max_length=24, cfg=cfg)
    assert short["stride"] == 1 and long["stride"] == math.ceil(1460 / 256)
    assert math.ceil(math.ceil(1460 / long["stride"]) / long["rnn_window"]) <= cfg.rnn_steps
    assert short["batch_size"] == 8 and big["batch_size"] == 32
    assert big["epochs"] * big["passes"] < short["epochs"] * short["passes"]  # tiny: more
    assert short["epochs"] <= MAX_EPOCHS

    def steps(c, n):
        return c["epochs"] * math.ceil(n * c["passes"] / c["batch_size"])

    assert MIN_STEPS <= steps(long, 50) < steps(short, 50) <= STEPS + 25  # long: fewer steps
    tiny = choose(n_train=20, max_length=4, cfg=cfg)
    assert long["ensemble"] == 1 and tiny["ensemble"] == MAX_MEMBERS  # cheap: an ensemble
    mine = resolve_config(get_task("classify"), {"epochs": 3, "ensemble": 2, "stride": 5})
    assert {k: choose(n_train=50, max_length=100, cfg=mine)[k]
            for k in ("epochs", "ensemble", "stride")} == {"epochs": 3, "ensemble": 2,
                                                           "stride": 5}
    assert describe(short).startswith("stride 1,") and describe(tiny).endswith("5 members")


def _easy(seed: int = 0) -> ClassificationData:
    """Two classes of noisy series, 30-60 steps: a rising ramp vs a bump in the middle."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> SequenceSplit:
        y = torch.arange(n) % 2
        lengths = torch.from_numpy(rng.integers(30, 61, n))
        x = torch.zeros(n, 60, 1)
        for i in range(n):
            t = np.linspace(0, 1, int(lengths[i]))
            s = t if y[i] == 0 else np.exp(-((t - 0.5) / 0.1) ** 2)
            x[i, : len(t), 0] = torch.from_numpy(2 * s - 0.5 + 0.3 * rng.standard_normal(len(t)))
        return SequenceSplit(x, lengths, y)

    return ClassificationData("Easy", split(40), split(40), ["ramp", "bump"],
                              np.zeros(1), np.ones(1))


def test_classify_defaults_learn_an_easy_problem(tmp_path, monkeypatch):
    from recur.tasks import classify

    monkeypatch.setattr(classify, "load_aeon_classification", lambda name: _easy())
    out = tmp_path / "run"
    # the defaults except the run's length: 6 epochs, 16 channels
    result = train_task("classify", {"data": "aeon:Easy", "epochs": 6, "channels": 16,
                                     "hidden": 16, "out": str(out)})
    m = result.metrics
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert m["test_accuracy"] >= 0.9 and m["test_size"] == 40
    config = json.loads((out / "config.json").read_text())
    chosen = json.loads((out / "info.json").read_text())["chosen"]
    assert (config["arch"], config["epochs"], config["batch_size"]) == ("conv-rnn", 6, 8)
    assert config["ensemble"] == chosen["ensemble"] >= 1 and config["stride"] == 1
    assert m["chosen"].startswith("conv-rnn, stride 1") and "batch 8, 6 epochs of 1 pass" in m["chosen"]
    _, again = eval_run(out, device="cpu")                    # rebuilt from config.json
    assert again["test_accuracy"] == pytest.approx(m["test_accuracy"])


def test_classify_rejects_negative_auto_options(tmp_path):
    for key in ("stride", "ensemble", "epochs"):
        with pytest.raises(ValueError, match=f"--{key} must be at least 0"):
            train_task("classify", {"data": "aeon:GunPoint", key: -1,
                                    "out": str(tmp_path / key)})


def test_predict_proba_gives_each_row_its_own_answer_in_the_callers_order():
    """Rows are batched by length internally; each row's probabilities are the ones it gets
    alone, returned in the order given."""
    torch.manual_seed(0)

    seen = []

    class Reader(torch.nn.Module):              # logits from the real steps of each row
        def __init__(self):
            super().__init__()
            self.rnn = GRU(2, 3, batch_first=True, dtype=torch.float64)

        def forward(self, x, lengths):
            seen.append((x.shape[1], lengths.tolist()))
            out, _ = self.rnn(x, lengths=lengths)
            return out.sum(1)

    model = Ensemble([Reader(), Reader()]).eval()
    lengths = torch.tensor([3, 9, 1, 7, 9, 2, 5])
    x = torch.randn(7, 9, 2, dtype=torch.float64)
    got = predict_proba(model, x, lengths, batch_size=3)
    # batches of similar lengths, longest first, each cut to its longest row
    assert seen[::2] == [(9, [9, 9, 7]), (5, [5, 3, 2]), (1, [1])]
    alone = torch.cat([predict_proba(model, x[i:i + 1, :int(n)], lengths[i:i + 1])
                       for i, n in enumerate(lengths)])
    torch.testing.assert_close(got, alone, rtol=1e-12, atol=1e-12)
