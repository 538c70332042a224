"""The classic first RNN lesson: learn to turn "hello" into "ohlol".

The task: read the characters of "hello" one at a time and, at each step, predict the
character of "ohlol" at the same position. Encoding: the vocabulary is h, e, l, o; each input
character is a one-hot vector of size 4, each target a class index in 0..3. The model is one
recurrent layer (hidden size 8) and a linear layer from the hidden state to the 4 class scores.
(The oldest version of this lesson uses a hidden state of size 4 as the scores directly; with
tanh bounding them to [-1, 1], whether it gets past "ohlll" depends on the random seed.)

The same model is trained twice, side by side, from the same initial weights (same seed):

- ``recur.RNNCell`` stepped by hand: a Python loop feeds one character per step;
- ``recur.RNN`` over the whole sequence: one call takes all 5 steps.

Both compute the same thing, so both learn the same thing: each prints its predicted string
every epoch and both reach "ohlol". Note the "l" at steps 2 and 3 must give "l" then "o":
only the hidden state, the memory of what came before, can tell them apart.

Run::

    python examples/hello_ohlol.py     # about a second after the imports, on a CPU
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import recur

VOCAB = "helo"
SOURCE, TARGET = "hello", "ohlol"
HIDDEN = 8
EPOCHS = 10
LR = 0.1
SEED = 0


def encode() -> tuple[torch.Tensor, torch.Tensor]:
    """``x: [T, 1, V]`` one-hot inputs (time-major, batch 1) and ``y: [T]`` target indices."""
    src = torch.tensor([VOCAB.index(c) for c in SOURCE])  # (T,)
    x = F.one_hot(src, len(VOCAB)).float().unsqueeze(1)  # (T, 1, V)
    y = torch.tensor([VOCAB.index(c) for c in TARGET])  # (T,)
    return x, y


def decode(logits: torch.Tensor) -> str:
    """``logits: [T, V]`` -> the string of the highest-scoring characters."""
    return "".join(VOCAB[i] for i in logits.argmax(dim=-1).tolist())


class ByHand(nn.Module):
    """An RNNCell stepped over the sequence by a Python loop, then the linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = recur.RNNCell(len(VOCAB), HIDDEN)
        self.head = nn.Linear(HIDDEN, len(VOCAB))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, 1, V) -> logits (T, V)
        h = torch.zeros(1, HIDDEN)  # (1, H): batch 1
        hs = []
        for x_t in x:  # x_t: (1, V), one character
            h = self.cell(x_t, h)  # (1, H)
            hs.append(h)
        return self.head(torch.cat(hs))  # (T, V)


class WholeSequence(nn.Module):
    """An RNN that runs all steps in one call, then the linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = recur.RNN(len(VOCAB), HIDDEN)
        self.head = nn.Linear(HIDDEN, len(VOCAB))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, 1, V) -> logits (T, V)
        out, _ = self.rnn(x)  # (T, 1, H): every step's hidden state
        return self.head(out.squeeze(1))  # (T, V)


def main() -> dict[str, str]:
    """Train both models; returns their final predictions by name ("cell", "rnn")."""
    x, y = encode()
    models = {}
    for key, cls in (("cell", ByHand), ("rnn", WholeSequence)):
        torch.manual_seed(SEED)  # same parameter shapes, same init order: same start
        models[key] = cls()
    optims = {k: torch.optim.Adam(m.parameters(), lr=LR) for k, m in models.items()}

    print(f'learn "{SOURCE}" -> "{TARGET}": chars {", ".join(VOCAB)} one-hot, hidden size '
          f"{HIDDEN}, Adam lr {LR}")
    print(f"{'epoch':>5}  {'RNNCell, by hand':<22}  RNN, whole sequence")
    preds = {}
    for epoch in range(1, EPOCHS + 1):
        cols = []
        for key, model in models.items():
            logits = model(x)  # (T, V)
            loss = F.cross_entropy(logits, y)
            optims[key].zero_grad()
            loss.backward()
            optims[key].step()
            preds[key] = decode(logits)
            cols.append(f"{preds[key]}  loss {loss.item():.3f}")
        print(f"{epoch:>5}  {cols[0]:<22}  {cols[1]}")
    with torch.no_grad():  # after the last update
        preds = {key: decode(model(x)) for key, model in models.items()}
    print(f'final: RNNCell "{preds["cell"]}", RNN "{preds["rnn"]}"')
    return preds


if __name__ == "__main__":
    main()
