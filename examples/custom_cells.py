"""Your own recurrent cell in recur: three examples of ``recur.cells.declare``.

1. a peephole LSTM (Gers & Schmidhuber 2000): gates also look at the cell state;
2. the classic tutorial ``RNN`` class that concatenates input and hidden (``i2h`` / ``i2o``
   with ``LogSoftmax``), as a character-level name classifier;
3. a cell of your own invention in under 20 lines: a leaky tanh unit with a learned
   per-unit time constant;
4. a cell with its own Triton pointwise, so that it runs in recur's fused GPU kernels
   (``backend="triton"``): the coupled input-forget gate LSTM (CIFG, Greff et al. 2017),
   pointwise in ``examples/cifg_triton.py``.

Each declared cell runs through the whole module stack (layers, bidirectional, packed
input, ``lengths=``) with ``recur.CustomRNN``. Run::

    python examples/custom_cells.py            # a few seconds on a CPU

The tests (``tests/test_custom_cell.py``) check each example against a hand-written loop.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import torch
from torch import Tensor, nn

import recur
from recur.cells import Param, declare


# --- 1. peephole LSTM ----------------------------------------------------------------------
@declare(num_gates=4, num_states=2, params=[Param("w_peep", (3, "H"))])
def peephole_lstm(xg: Tensor, hg: Tensor, states, w_peep: Tensor):
    """i = s(.. + w_ci c), f = s(.. + w_cf c), c' = f c + i tanh(g), o = s(.. + w_co c'),
    h' = o tanh(c')"""
    _, c = states  # (B, H) each
    i, f, g, o = (xg + hg).chunk(4, dim=-1)
    w_ci, w_cf, w_co = w_peep  # (H,) each
    i = torch.sigmoid(i + w_ci * c)
    f = torch.sigmoid(f + w_cf * c)
    c_new = f * c + i * torch.tanh(g)
    o = torch.sigmoid(o + w_co * c_new)
    return o * torch.tanh(c_new), c_new


# --- 2. the tutorial's i2h / i2o RNN as a character classifier -------------------------------
class LessonRNN(nn.Module):
    """The classic tutorial class, verbatim in behaviour: one step per call."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.i2o = nn.Linear(input_size + hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, input: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        combined = torch.cat((input, hidden), 1)  # (B, I + H)
        hidden = self.i2h(combined)  # (B, H)
        output = self.softmax(self.i2o(combined))  # (B, O)
        return output, hidden


@declare(num_gates=1)
def linear_cell(xg: Tensor, hg: Tensor, states):
    """h' = x W_xh^T + h W_hh^T + b  (i2h on cat(x, h): no nonlinearity, as in the lesson)"""
    return (xg + hg,)


class CharClassifier(nn.Module):
    """The lesson's model on recur: ``i2h`` is the declared ``linear_cell`` (its weight split
    into the x part ``W_ih`` and the h part ``W_hh``); ``i2o`` reads ``cat(x_t, h_{t-1})``
    and is not recurrent, so it runs once, on the last step of each sequence, after the scan.

    Args:
        input_size: alphabet size (one-hot letters); hidden_size; output_size: classes.

    ``forward(x: [T, B, I], lengths: [B] or None) -> log-probabilities [B, O]`` of each
    sequence's last valid step, equal to feeding the letters one by one to LessonRNN.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = recur.CustomRNN(linear_cell, input_size, hidden_size)
        self.i2o = nn.Linear(input_size + hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=-1)

    @torch.no_grad()
    def load_lesson(self, lesson: LessonRNN) -> CharClassifier:
        """Copy a LessonRNN's weights (i2h split into W_ih and W_hh; b_hh = 0)."""
        n_in = self.rnn.input_size
        self.rnn.weight_ih_l0.copy_(lesson.i2h.weight[:, :n_in])
        self.rnn.weight_hh_l0.copy_(lesson.i2h.weight[:, n_in:])
        self.rnn.bias_ih_l0.copy_(lesson.i2h.bias)
        self.rnn.bias_hh_l0.zero_()
        self.i2o.load_state_dict(lesson.i2o.state_dict())
        return self

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        T, B, _ = x.shape
        lengths = torch.full((B,), T) if lengths is None else torch.as_tensor(lengths)
        out, _ = self.rnn(x, lengths=lengths)  # (T, B, H): h_1 .. h_T
        hs = torch.cat([out.new_zeros(1, B, out.shape[-1]), out])  # (T+1, B, H): h_0 .. h_T
        rows = torch.arange(B)
        last = (lengths - 1).to(torch.long)
        combined = torch.cat([x[last, rows], hs[last, rows]], dim=-1)  # (B, I + H)
        return self.softmax(self.i2o(combined))  # (B, O)


# --- 3. a cell of your own invention (< 20 lines) ------------------------------------------
@declare(num_gates=1, params=[Param("log_tau", ("H",), "zeros")])
def leaky_tanh(xg: Tensor, hg: Tensor, states, log_tau: Tensor):
    """h' = h + sigmoid(-log_tau) (tanh(xg + hg) - h): a leaky unit, learned time constant"""
    h = states[0]  # (B, H)
    step = torch.sigmoid(-log_tau)  # (H,) in (0, 1): 1 / (1 + tau)
    return (h + step * (torch.tanh(xg + hg) - h),)


# --- 4. a cell with a fused GPU kernel -----------------------------------------------------
@functools.cache
def _cifg_pointwise():
    """The Triton pointwise, loaded on first use (needs triton) and once: the kernels are
    compiled for it."""
    spec = importlib.util.spec_from_file_location(
        "cifg_triton", Path(__file__).with_name("cifg_triton.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CIFG


@declare(num_gates=3, num_states=2, triton=_cifg_pointwise)
def cifg_lstm(xg: Tensor, hg: Tensor, states):
    """f, g, o = split(xg + hg); c' = s(f) c + (1 - s(f)) tanh(g); h' = s(o) tanh(c')"""
    f, g, o = (xg + hg).chunk(3, dim=-1)  # (B, H) each
    f = torch.sigmoid(f)
    c = f * states[1] + (1 - f) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


# --- demo ----------------------------------------------------------------------------------
def _toy_names(n: int, gen: torch.Generator) -> tuple[list[str], Tensor]:
    """Two made-up 'languages': words over 'aeiklmn' vs over 'ouzrtsx', lengths 2..8."""
    alph = ("aeiklmn", "ouzrtsx")
    labels = torch.randint(0, 2, (n,), generator=gen)
    words = []
    for y in labels.tolist():
        k = int(torch.randint(2, 9, (1,), generator=gen))
        idx = torch.randint(0, 7, (k,), generator=gen).tolist()
        words.append("".join(alph[y][i] for i in idx))
    return words, labels


def _one_hot(words: list[str], letters: str) -> tuple[Tensor, Tensor]:
    T = max(len(w) for w in words)
    x = torch.zeros(T, len(words), len(letters))
    for b, w in enumerate(words):
        for t, ch in enumerate(w):
            x[t, b, letters.index(ch)] = 1.0
    return x, torch.tensor([len(w) for w in words])


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(7, 3, 5)  # (T, B, I)
    for cell in (peephole_lstm, linear_cell, leaky_tanh, cifg_lstm):
        m = recur.CustomRNN(cell, 5, 8, num_layers=2, bidirectional=True)
        out, _ = m(x, lengths=torch.tensor([7, 4, 2]))
        print(f"{cell.name:>14}: output {tuple(out.shape)}, params "
              f"{sum(p.numel() for p in m.parameters())}")

    letters = "aeiklmnouzrtsx"
    gen = torch.Generator().manual_seed(0)
    model = CharClassifier(len(letters), 32, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(150):
        words, y = _toy_names(64, gen)
        xb, lens = _one_hot(words, letters)
        loss = nn.functional.nll_loss(model(xb, lens), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    words, y = _toy_names(500, gen)
    xb, lens = _one_hot(words, letters)
    acc = (model(xb, lens).argmax(-1) == y).float().mean().item()
    print(f"char classifier (lesson's i2h/i2o RNN on recur): loss {loss.item():.3f}, "
          f"held-out accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
