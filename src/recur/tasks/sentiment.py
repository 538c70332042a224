"""``sentiment``: text classification from a CSV, TSV or JSONL file with a text and a label.

    recur train sentiment                                   # the tiny sample shipped with recur
    recur train sentiment --data reviews.csv --text-column review --label-column stars
    recur predict runs/sentiment-... --text "the soup was cold"

Data: any file :func:`recur.data.read_labelled_text` reads (``.csv``, ``.tsv``, ``.jsonl``);
labels are strings, any number of classes. Without ``--data`` the task trains on
``recur/data/samples/sentiment_sample.csv``: a *tiny* hand-written sample (502 short
positive / negative sentences, 251 of each) meant for tests and demos, not a benchmark; its
held-out accuracy (about 0.7-0.85 by seed) says little about real text.

Split: a seeded shuffle (``--seed``) keeps ``--val-fraction`` of the examples (per class, so
every class is in both parts) as the held-out split; the vocabulary (``--min-freq``) is built
from the training part only, so held-out words never seen in training map to ``<unk>``.

Encoding: lower-case word tokens → indices ``[B, T]`` (0 = padding) → embedding ``[B, T, E]``
→ (bi)LSTM run with ``lengths=`` (no padding enters the state) → mean of the outputs over the
real tokens, concatenated with the final states → dropout → linear class logits.

``metrics.json``: ``test_accuracy`` and ``test_loss`` on the held-out split (the keys
``classify`` uses for its test split), ``majority_accuracy`` (what always answering the most
frequent training label scores there); ``confusion.png`` shows the held-out confusion matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ..data import Vocabulary, read_labelled_text, sample_path, tokenize
from .base import Config, Option, Task, TaskData, model_device, register
from .classify import confusion_matrix, plot_confusion
from .models import make_recurrent

__all__ = ["Sentiment", "TextClassifier", "stratified_split"]

log = logging.getLogger(__name__)


def stratified_split(labels: list[int], fraction: float,
                     generator: torch.Generator) -> tuple[list[int], list[int]]:
    """``(train_idx, heldout_idx)``: about ``fraction`` of each class held out (at least one
    item of a class with two or more), shuffled by ``generator``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--val-fraction must be in (0, 1), got {fraction}")
    train, held = [], []
    for c in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == c]
        order = torch.randperm(len(idx), generator=generator).tolist()
        k = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        held += [idx[j] for j in order[:k]]
        train += [idx[j] for j in order[k:]]
    return sorted(train), sorted(held)


class TextClassifier(nn.Module):
    """Embedding → recurrent layer(s) with ``lengths`` → [mean of outputs, final states] →
    dropout → linear.

    ``forward(ids: [B, T] int64, lengths: [B]) -> logits [B, K]``.
    """

    def __init__(self, vocab_size: int, num_classes: int, cfg: Config) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed, padding_idx=0)
        self.rnn = make_recurrent(cfg.cell, cfg.embed, cfg.hidden, layers=cfg.layers,
                                  bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                                  backend=cfg.backend)
        self.directions = 2 if cfg.bidirectional else 1
        self.drop = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(2 * self.directions * cfg.hidden, num_classes)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        out, state = self.rnn(self.embed(ids), lengths=lengths.cpu())  # (B, T, D*H)
        h_n = state[0] if isinstance(state, tuple) else state          # (L*D, B, H)
        last = torch.cat(list(h_n[-self.directions:]), dim=-1)         # (B, D*H)
        mean = out.sum(1) / lengths.to(out.device, out.dtype)[:, None]  # padding is zero
        return self.head(self.drop(torch.cat([mean, last], dim=-1)))


@register
class Sentiment(Task):
    """Text classification from a CSV / TSV / JSONL file (default: a tiny shipped sample)."""

    name = "sentiment"
    summary = "text classification from CSV/TSV/JSONL (default: a tiny shipped sample)"
    options = (
        Option("data", str, None, "a .csv/.tsv/.jsonl file (default: the tiny shipped sample)"),
        Option("text_column", str, "text", "column (or JSON key) holding the text"),
        Option("label_column", str, "label", "column (or JSON key) holding the label"),
        Option("val_fraction", float, 0.2, "share of each class held out for accuracy"),
        Option("max_len", int, 64, "tokens kept per text"),
        Option("min_freq", int, 2, "keep words seen at least this often in training"),
        Option("embed", int, 32, "embedding size"),
        Option("head_dropout", float, 0.3, "dropout before the classifier"),
        Option("word_dropout", float, 0.1, "share of training tokens replaced by <unk>"),
    )
    predict_options = (Option("text", str, None, "text to classify"),)
    defaults = {"cell": "lstm", "hidden": 32, "bidirectional": True, "epochs": 25,
                "batch_size": 16, "lr": 3e-3, "optimizer": "adam"}

    def build_data(self) -> TaskData:
        c = self.cfg
        path = c.data or sample_path("sentiment_sample.csv")
        ex = read_labelled_text(path, c.text_column, c.label_column)
        classes = sorted(set(ex.labels))
        if len(classes) < 2:
            raise ValueError(f"{path}: need at least two different labels in column "
                             f"{c.label_column!r}, found {classes}")
        labels = [classes.index(v) for v in ex.labels]
        gen = torch.Generator().manual_seed(c.seed)
        tr, held = stratified_split(labels, c.val_fraction, gen)
        tokens = [tokenize(t) for t in ex.texts]
        vocab = Vocabulary.build((tokens[i] for i in tr), min_freq=c.min_freq)

        def encode(idx: list[int]) -> TensorDataset:
            ids, lengths = vocab.encode_batch([tokens[i] for i in idx], max_len=c.max_len)
            return TensorDataset(ids, lengths, torch.tensor([labels[i] for i in idx]))

        counts = torch.bincount(torch.tensor([labels[i] for i in tr]), minlength=len(classes))
        info = {"source": str(path), "classes": classes, "vocab": vocab.itos,
                "train_size": len(tr), "heldout_size": len(held),
                "majority_class": classes[int(counts.argmax())]}
        log.info("sentiment: %d train / %d held-out examples, %d classes, vocabulary %d",
                 len(tr), len(held), len(classes), len(vocab))
        heldout = encode(held)
        return TaskData(train=encode(tr), val=heldout, test=heldout, info=info)

    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        return TextClassifier(len(info["vocab"]), len(info["classes"]), self.cfg)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        ids, lengths, y = batch                                # (B, T), (B,), (B,)
        ids = ids[:, : int(lengths.max())]
        if model.training and self.cfg.word_dropout > 0:
            drop = torch.rand(ids.shape, device=ids.device) < self.cfg.word_dropout
            ids = ids.masked_fill(drop & (ids > 0), 1)         # 1 = <unk>
        return F.cross_entropy(model(ids, lengths), y)

    def _predict(self, model: nn.Module, dataset: TensorDataset) -> tuple[Tensor, Tensor]:
        ids, lengths, y = dataset.tensors
        device = model_device(model)
        with torch.no_grad():
            logits = model(ids.to(device), lengths.to(device)).cpu()
        return logits, y

    def evaluate(self, model: nn.Module, data: TaskData) -> dict[str, float]:
        logits, y = self._predict(model, data.val)
        return {"loss": F.cross_entropy(logits, y).item(),
                "accuracy": (logits.argmax(-1) == y).float().mean().item()}

    def final_metrics(self, model: nn.Module, data: TaskData) -> dict[str, Any]:
        held = self.evaluate(model, data)
        logits, y = self._predict(model, data.train)
        majority = data.info["classes"].index(data.info["majority_class"])
        y_held = data.test.tensors[2]
        return {"test_accuracy": held["accuracy"], "test_loss": held["loss"],
                "train_accuracy": (logits.argmax(-1) == y).float().mean().item(),
                "majority_accuracy": (y_held == majority).float().mean().item(),
                "test_size": len(data.test), "vocab_size": len(data.info["vocab"])}

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """``confusion.png``: the held-out confusion matrix."""
        logits, y = self._predict(model, data.test)
        classes = data.info["classes"]
        cm = confusion_matrix(y, logits.argmax(-1), len(classes))
        acc = float(cm.diag().sum()) / max(1, int(cm.sum()))
        title = f"sentiment: held-out accuracy {acc:.3f} ({int(cm.sum())} texts)"
        return [plot_confusion(cm, classes, Path(out_dir) / "confusion.png", title)]

    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> dict[str, Any]:
        """The label and class probabilities of ``--text``."""
        if not args.text or not args.text.strip():
            raise ValueError("--text must be a non-empty string")
        vocab = Vocabulary(info["vocab"][2:])
        tokens = tokenize(args.text)
        ids, lengths = vocab.encode_batch([tokens], max_len=self.cfg.max_len)
        with torch.no_grad():
            proba = model(ids.to(model_device(model)), lengths).softmax(-1)[0].cpu()
        classes = info["classes"]
        return {"text": args.text, "label": classes[int(proba.argmax())],
                "probabilities": {c: round(float(p), 4) for c, p in zip(classes, proba)},
                "unknown_words": [t for t in tokens if t not in vocab.stoi]}
