"""The real-data tasks end to end with tiny settings: classify / vowels, forecast, sentiment.

The full-accuracy runs (vowels >= 0.98) are measurements reported with the defaults; the
forecast task's tests live in tests/test_tasks_forecast.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from _cli import run_cli

from recur.data import SequenceSplit
from recur.nn import GRU
from recur.tasks import get_task, resolve_config
from recur.tasks.classify import (
    Ensemble,
    MemberDataset,
    SequenceClassifier,
    confusion_matrix,
    random_crop,
    random_warp,
)
from recur.tasks.runner import eval_run, predict_run, train_task

PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- classify / vowels ------------------------------------------------------------------
def test_vowels_is_classify_on_japanese_vowels_with_tuned_defaults():
    cfg = resolve_config(get_task("vowels"))
    assert (cfg.data, cfg.cell, cfg.bidirectional, cfg.ensemble) == \
        ("aeon:JapaneseVowels", "gru", True, 10)
    assert (cfg.conv, cfg.pool, cfg.head_dropout, cfg.jitter, cfg.warp, cfg.epochs) == \
        (3, "both", 0.3, 0.1, 0.2, 30)
    plain = resolve_config(get_task("classify"))
    assert plain.data is None and (plain.ensemble, plain.warp, plain.conv) == (0, 0.0, 0)
    assert (cfg.arch, plain.arch, plain.epochs, plain.batch_size) == ("rnn", "conv-rnn", 0, 0)


def test_classifier_uses_lengths_so_padding_changes_nothing():
    torch.manual_seed(0)
    for pool, conv in (("last", 0), ("mean", 0), ("both", 0), ("both", 3), ("last", 5)):
        model = SequenceClassifier(3, 4, cell="gru", hidden=5, bidirectional=True, pool=pool,
                                   conv=conv)
        assert isinstance(model.rnn, GRU)                     # recur's module, not torch.nn's
        x = torch.randn(2, 9, 3)
        lengths = torch.tensor([9, 4])
        both = model(x, lengths)
        alone = model(x[1:, :4], torch.tensor([4]))
        torch.testing.assert_close(both[1], alone[0])
        x[1, 4:] = 100.0                                       # garbage in the padding
        torch.testing.assert_close(model(x, lengths), both)


def test_random_crop_keeps_a_contiguous_part_of_each_row():
    torch.manual_seed(0)
    B, T = 64, 12
    lengths = torch.randint(1, T + 1, (B,))
    x = torch.arange(1, T + 1, dtype=torch.float32).repeat(B, 1)[:, :, None] * \
        (torch.arange(T)[None, :] < lengths[:, None]).float()[:, :, None]     # (B, T, 1)
    out, new = random_crop(x, lengths, 0.5)
    assert out.shape == x.shape and new.dtype == lengths.dtype
    assert bool((new >= 1).all()) and bool((new <= lengths).all())
    assert bool((lengths - new <= (0.5 * lengths).floor()).all())    # drops < share * L
    assert bool((new < lengths).any())
    for b in range(B):
        kept = out[b, : new[b], 0]
        start = int(kept[0]) - 1
        assert torch.equal(kept, x[b, start:start + int(new[b]), 0])   # a contiguous run
        assert start + int(new[b]) <= int(lengths[b])                  # inside the series
        assert not out[b, new[b]:].any()                               # zero past it
    same, same_len = random_crop(x, lengths, 0.0)
    assert torch.equal(same, x) and torch.equal(same_len, lengths)


def test_random_warp_resamples_each_row_to_a_new_length():
    torch.manual_seed(0)
    B, T = 64, 12
    lengths = torch.randint(1, T + 1, (B,))
    valid = (torch.arange(T)[None, :] < lengths[:, None]).double()
    ramp = torch.arange(T, dtype=torch.float64)[None, :] * 3 + torch.arange(B)[:, None]
    x = torch.stack([ramp, -ramp], -1) * valid[:, :, None]                  # (B, T, 2)
    out, new = random_warp(x, lengths, 0.4)
    assert new.dtype == lengths.dtype and out.shape == (B, int(new.max()), 2)
    assert bool((new >= 1).all())
    assert bool((new >= (0.6 * lengths).floor()).all())
    assert bool((new <= (1.4 * lengths).ceil()).all())
    assert bool((new != lengths).any())
    for b in range(B):
        L, n = int(lengths[b]), int(new[b])
        # a linear series stays linear: output step t sits at t (L - 1) / (n - 1) in the input
        pos = torch.arange(n, dtype=torch.float64) * ((L - 1) / (n - 1) if n > 1 else 0.0)
        expected = pos * 3 + b
        torch.testing.assert_close(out[b, :n, 0], expected)
        torch.testing.assert_close(out[b, :n, 1], -expected)
        assert float(out[b, 0, 0]) == float(x[b, 0, 0])                    # ends kept
        if n > 1:
            torch.testing.assert_close(out[b, n - 1, 0], x[b, L - 1, 0])
        assert not out[b, n:].any()                                        # zero past it
    same, same_len = random_warp(x, lengths, 0.0)
    assert torch.equal(same, x[:, :int(lengths.max())]) and torch.equal(same_len, lengths)


def test_member_dataset_gives_each_member_its_own_order():
    K, n = 3, 10
    split = SequenceSplit(torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, 2, 1),
                          torch.full((n,), 2), torch.arange(n))
    ds = MemberDataset(split, K, seed=0)
    x, lengths, y = ds[4]
    assert x.shape == (K, 2, 1) and lengths.shape == (K,) and y.shape == (K,)
    assert int(y[0]) == 4                                      # member 0: identity order
    order = torch.stack([ds[i][2] for i in range(n)], 1)      # (K, n)
    for k in range(K):
        assert sorted(order[k].tolist()) == list(range(n))     # each member sees every item
    assert not torch.equal(order[1], order[2])                 # in different orders
    assert torch.equal(MemberDataset(split, K, seed=0).order, ds.order)   # from the seed
    torch.testing.assert_close(x[:, 0, 0], y.float())          # x and y stay paired


def test_ensemble_per_member_batches():
    torch.manual_seed(0)
    members = [SequenceClassifier(3, 4, cell="gru", hidden=5) for _ in range(2)]
    ens = Ensemble(members)
    x = torch.randn(2, 5, 7, 3)                                # (K, B, T, C)
    lengths = torch.tensor([[7, 3, 2, 5, 1], [4, 4, 6, 1, 2]])
    out = ens(x, lengths)
    assert out.shape == (2, 5, 4)
    for k in range(2):
        torch.testing.assert_close(out[k], members[k](x[k], lengths[k]))
    with pytest.raises(ValueError, match="expected 2 members"):
        ens(x[:1], lengths[:1])


def test_classify_rejects_bad_regularisers(tmp_path):
    for key, value in (("crop", 1.0), ("warp", -0.1), ("label_smoothing", -0.1),
                       ("conv", 4)):
        with pytest.raises(ValueError, match=key.replace("_", "-") if key != "conv" else
                           "odd kernel size"):
            train_task("classify", {"data": "aeon:JapaneseVowels", "hidden": 4, "epochs": 1,
                                    key: value, "out": str(tmp_path / key)})


def test_classify_end_to_end_tiny(tmp_path):
    out = tmp_path / "run"
    result = train_task("classify", {"data": "aeon:JapaneseVowels", "hidden": 8, "epochs": 2,
                                     "ensemble": 2, "conv": 3, "arch": "rnn", "crop": 0.2,
                                     "warp": 0.2, "label_smoothing": 0.1, "jitter": 0.05,
                                     "out": str(out)})
    m = result.metrics
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["test_size"] == 370
    assert len(m["member_test_accuracy"]) == 2
    assert m["test_errors"] == round((1 - m["test_accuracy"]) * 370)
    assert (out / "confusion.png").read_bytes()[:8] == PNG
    info = json.loads((out / "info.json").read_text())
    assert info["input_size"] == 12 and (info["min_length"], info["max_length"]) == (7, 29)
    _, again = eval_run(out, device="cpu")
    assert again["test_accuracy"] == pytest.approx(m["test_accuracy"])


def test_classify_univariate_equal_length(tmp_path):
    result = train_task("classify", {"data": "aeon:GunPoint", "hidden": 4, "epochs": 1,
                                     "ensemble": 1, "channels": 4,
                                     "bidirectional": False, "out": str(tmp_path)})
    assert result.metrics["test_size"] == 150 and "member_test_accuracy" not in result.metrics


def test_confusion_matrix_counts():
    cm = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


# ---- forecast: tests/test_tasks_forecast.py ------------------------------------------


# ---- sentiment --------------------------------------------------------------------------
def test_sentiment_on_the_shipped_sample_tiny(tmp_path):
    out = tmp_path / "run"
    result = train_task("sentiment", {"data": "sample", "min_steps": 0, "epochs": 2,
                                      "hidden": 8, "embed": 8, "out": str(out)})
    m = result.metrics
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["test_size"] == 100
    assert m["majority_test_accuracy"] == 0.5
    assert (out / "confusion.png").read_bytes()[:8] == PNG
    _, rows = predict_run(out, {"text": "great food, friendly staff"}, device="cpu")
    assert [r["label"] in ("positive", "negative") for r in rows] == [True]
    assert 0.5 <= rows[0]["probability"] <= 1.0


def test_sentiment_jsonl_three_classes(tmp_path):
    rows = [{"review": f"{w} {w} thing number {i}", "mood": m}
            for i in range(12) for w, m in (("good", "up"), ("bad", "down"), ("meh", "flat"))]
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = train_task("sentiment", {"data": str(path), "text_column": "review",
                                      "label_column": "mood", "min_steps": 0,
                                      "epochs": 15, "hidden": 8, "embed": 8,
                                      "word_dropout": 0.0, "embed_dropout": 0.0,
                                      "lr": 0.01, "batch_size": 8,
                                      "out": str(tmp_path / "run")})
    assert result.metrics["test_accuracy"] == 1.0              # one word decides the class


@pytest.mark.parametrize("argv, message", [
    (["train", "classify", "--data", "aeon:Nope"],
     ("unknown aeon dataset 'Nope'; the classification datasets shipped with the installed "
      "aeon are: ")),
    (["train", "classify"], "--data must be aeon:NAME"),
    (["train", "forecast", "--data", "statsmodels:moon"], "valid: statsmodels:sunspots"),
    (["train", "forecast", "--data", "{tmp}/s.csv", "--column", "price"],
     "no column 'price'; columns found: ['t', 'v']"),
    (["train", "forecast", "--data", "{tmp}/s.csv", "--column", "v"],
     "missing value(s), the first at line 3"),
    (["train", "sentiment", "--data", "{tmp}/bad.csv"], "bad.csv, line 3: malformed line"),
    (["train", "sentiment", "--data", "{tmp}/bad.csv", "--text-column", "body"],
     "no column 'body'; columns found: ['text', 'label']"),
], ids=["aeon-unknown", "aeon-missing", "statsmodels-unknown", "csv-column", "csv-nan",
        "text-malformed", "text-column"])
def test_bad_input_exits_2_with_a_message(capsys, tmp_path, argv, message):
    (tmp_path / "s.csv").write_text("t,v\n0,1\n1,nan\n2,3\n")
    (tmp_path / "bad.csv").write_text('text,label\nfine,pos\n"oops" x,neg\n')
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--out", str(tmp_path / "r")]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err + out
    if argv[1] == "classify":                                  # the valid names are listed
        assert "BasicMotions, " in err and "JapaneseVowels" in err
