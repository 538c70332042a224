"""The classic first RNN lesson: learn to turn "hello" into "ohlol".

The task: read the characters of "hello" one at a time and, at each step, predict the
character of "ohlol" at the same position. Encoding: the vocabulary is h, e, l, o; each input
character is a one-hot vector of size 4, each target a class index in 0..3. The hidden state
has size 4 too and serves directly as the 4 class scores (logits), so the whole model is one
recurrent layer with 4 + 4 + 4 + 4 = ... 40 parameters: no output layer.

The same model is trained twice, side by side, from the same initial weights (same seed):

- ``recur.RNNCell`` stepped by hand: a Python loop feeds one character per step;
- ``recur.RNN`` over the whole sequence: one call takes all 5 steps.

Both compute the same thing, so both learn the same thing: each prints its predicted string
every epoch and both reach "ohlol". Note the input of "l" at steps 2 and 3 must give "l" then
"o": only the hidden state (the memory of what came before) can tell them apart.

Run::

    python examples/hello_ohlol.py     # about a second after the imports, on a CPU
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import recur

VOCAB = "helo"
SOURCE, TARGET = "hello", "ohlol"
EPOCHS = 15
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


def cell_step(cell: recur.RNNCell, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, str]:
    """One epoch's forward with the cell stepped by hand; returns the mean loss and prediction."""
    h = torch.zeros(1, len(VOCAB))  # (1, V): batch 1, hidden = V class scores
    logits = []
    for x_t in x:  # x_t: (1, V), one character
        h = cell(x_t, h)  # (1, V)
        logits.append(h)
    logits = torch.cat(logits)  # (T, V)
    return F.cross_entropy(logits, y), decode(logits)


def rnn_step(rnn: recur.RNN, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, str]:
    """One epoch's forward with the RNN over the whole sequence; mean loss and prediction."""
    out, _ = rnn(x)  # (T, 1, V): every step's hidden state
    logits = out.squeeze(1)  # (T, V)
    return F.cross_entropy(logits, y), decode(logits)


def main() -> dict[str, str]:
    """Train both models; returns their final predictions by name ("cell", "rnn")."""
    x, y = encode()
    V = len(VOCAB)
    torch.manual_seed(SEED)
    cell = recur.RNNCell(V, V)
    torch.manual_seed(SEED)
    rnn = recur.RNN(V, V)  # same parameter shapes and init order: same starting weights
    models = {"cell": (cell, cell_step), "rnn": (rnn, rnn_step)}
    optims = {k: torch.optim.Adam(m.parameters(), lr=LR) for k, (m, _) in models.items()}

    print(f'learn "{SOURCE}" -> "{TARGET}": chars {", ".join(VOCAB)} one-hot, hidden size {V} '
          f"= the class scores; Adam lr {LR}")
    print(f"{'epoch':>5}  {'RNNCell, by hand':<24}  {'RNN, whole sequence':<24}")
    preds = {}
    for epoch in range(1, EPOCHS + 1):
        cols = []
        for key, (model, step) in models.items():
            loss, preds[key] = step(model, x, y)
            optims[key].zero_grad()
            loss.backward()
            optims[key].step()
            cols.append(f"{preds[key]}  loss {loss.item():.3f}")
        print(f"{epoch:>5}  {cols[0]:<24}  {cols[1]:<24}")
    with torch.no_grad():  # after the last update
        preds = {key: step(model, x, y)[1] for key, (model, step) in models.items()}
    print(f'final: RNNCell "{preds["cell"]}", RNN "{preds["rnn"]}"')
    return preds


if __name__ == "__main__":
    main()
