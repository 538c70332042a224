"""``hello``: learn to turn "hello" into "ohlol", one character per step (the classic lesson).

    recur train hello                      # the predicted string in every epoch's line
    recur predict runs/hello-... --text hello

Encoding: the vocabulary is the sorted set of characters of both strings (``e h l o``); each
input character is a one-hot vector ``[V]``, the sequence ``x: [1, T, V]`` goes through a
recurrent layer and a linear head to logits ``[1, T, V]``, and the loss is cross-entropy
against the target character at every step (``T = 5``, one sequence, one batch per epoch).

Defaults follow the lesson (an ``RNN`` with a hidden state of 4, Adam with lr 0.1, 15
epochs): with so few parameters a large learning rate is what makes 15 steps enough.
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

from ..train import new_figure, save_figure
from .base import Callback, Config, Option, Task, TaskData, model_device, register
from .models import from_config

log = logging.getLogger(__name__)


def encode(text: str, vocab: list[str]) -> Tensor:
    """Indices of ``text``'s characters in ``vocab``: ``[T]`` int64 (``ValueError`` for an
    unknown character, naming the vocabulary)."""
    bad = sorted(set(text) - set(vocab))
    if bad:
        raise ValueError(f"characters {bad} are not in the vocabulary {''.join(vocab)!r}")
    return torch.tensor([vocab.index(c) for c in text], dtype=torch.long)


class OneHotTagger(nn.Module):
    """Characters → one-hot → recurrent stack → logits per step.

    ``forward(idx: [B, T] int64) -> logits [B, T, V]``.
    """

    def __init__(self, vocab_size: int, cfg: Config) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.net = from_config(cfg, vocab_size, vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        x = F.one_hot(idx, self.vocab_size).float()   # (B, T, V)
        logits, _ = self.net(x)                       # (B, T, V)
        return logits


def predict_string(model: nn.Module, idx: Tensor, vocab: list[str]) -> tuple[str, Tensor]:
    """``(string, probabilities [T, V])`` the model predicts for the indices ``idx: [T]``."""
    logits = model(idx.unsqueeze(0).to(model_device(model)))[0]   # (T, V)
    chars = "".join(vocab[i] for i in logits.argmax(-1).tolist())
    return chars, logits.detach().softmax(-1).cpu()


class PrintPrediction(Callback):
    """After every epoch: the predicted string, added to the record (``prediction=...``), which
    is the epoch's one line on the terminal (returning it as a message too would print it
    twice)."""

    def __init__(self, source: Tensor, vocab: list[str]) -> None:
        self.source, self.vocab = source, vocab

    def on_epoch_end(self, epoch: int, model: nn.Module, record: dict[str, Any]) -> None:
        with torch.no_grad():
            text, _ = predict_string(model, self.source, self.vocab)
        record["prediction"] = text


@register
class Hello(Task):
    """Character sequence to sequence: "hello" -> "ohlol"."""

    name = "hello"
    summary = 'character seq2seq: learn "hello" -> "ohlol", printing the guess every epoch'
    options = (
        Option("source", str, "hello", "input string"),
        Option("target", str, "ohlol", "target string (same length as --source)"),
    )
    predict_options = (Option("text", str, None, "string to transform (default: --source)"),)
    # threads 1: a model this small gains nothing from more (see runner.cpu_threads)
    defaults = {"cell": "rnn", "hidden": 4, "epochs": 15, "lr": 0.1, "batch_size": 1,
                "optimizer": "adam", "threads": 1}

    def _vocab(self) -> list[str]:
        return sorted(set(self.cfg.source) | set(self.cfg.target))

    def build_data(self) -> TaskData:
        src, tgt = self.cfg.source, self.cfg.target
        if len(src) != len(tgt) or not src:
            raise ValueError(f"--source and --target must be non-empty and of equal length, "
                             f"got {src!r} ({len(src)}) and {tgt!r} ({len(tgt)})")
        vocab = self._vocab()
        x, y = encode(src, vocab), encode(tgt, vocab)
        dataset = TensorDataset(x.unsqueeze(0), y.unsqueeze(0))   # one item: ([T], [T])
        return TaskData(train=dataset, val=dataset, info={"vocab": vocab})

    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        return OneHotTagger(len(info["vocab"]), self.cfg)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = batch                                  # (B, T), (B, T)
        logits = model(x)                             # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())

    def callbacks(self, data: TaskData) -> list[Callback]:
        x, _ = data.train[0]
        return [PrintPrediction(x, data.info["vocab"])]

    def final_metrics(self, model: nn.Module, data: TaskData) -> dict[str, Any]:
        x, y = data.train[0]
        vocab = data.info["vocab"]
        text, _ = predict_string(model, x, vocab)
        target = "".join(vocab[i] for i in y.tolist())
        accuracy = sum(a == b for a, b in zip(text, target, strict=True)) / len(target)
        # train_: hello's one sequence is its training set (classify's key for the same thing)
        return {"prediction": text, "loss": self.evaluate(model, data)["loss"],
                "train_accuracy": accuracy}

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """``hello.png``: the probability of every character at every step, target circled."""
        x, y = data.train[0]
        vocab = data.info["vocab"]
        text, probs = predict_string(model, x, vocab)
        fig, ax = new_figure(size=(5.0, 3.6))
        image = ax.imshow(probs.T.numpy(), vmin=0, vmax=1, cmap="Blues", aspect="auto")
        ax.scatter(range(len(y)), y.tolist(), s=300, facecolors="none", edgecolors="crimson",
                   linewidths=2, label="target")
        ax.set_xticks(range(len(x)), [f"{self.cfg.source[t]}\u2192{text[t]}"
                                      for t in range(len(x))])
        ax.set_yticks(range(len(vocab)), vocab)
        ax.set_xlabel("input \u2192 predicted character")
        ax.set_ylabel("output character")
        ax.set_title(f"{self.cfg.source!r} \u2192 {text!r} (target {self.cfg.target!r})")
        ax.legend(loc="upper right", fontsize=8)
        fig.colorbar(image, ax=ax, label="probability")
        return [save_figure(fig, out_dir / "hello.png")]

    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> dict[str, Any]:
        text = args.text if args.text is not None else self.cfg.source
        if not text:
            raise ValueError("--text must not be empty")
        prediction, _ = predict_string(model, encode(text, list(info["vocab"])),
                                       list(info["vocab"]))
        return {"input": text, "prediction": prediction}
