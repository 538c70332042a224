"""``recur.data.text``: CSV / TSV / JSONL readers, their errors, tokeniser, vocabulary."""

from __future__ import annotations

import json

import pytest
import torch

from recur.data import Vocabulary, read_labelled_text, sample_path, tokenize


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
