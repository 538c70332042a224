"""``recur diagnose gradients``: see why gates matter, on the adding problem.

    recur diagnose gradients                       # T=100, RNN vs LSTM vs GRU
    recur diagnose gradients --seq-len 200 --train-steps 0 --out runs/grads

The adding problem (Hochreiter & Schmidhuber, 1997): each step carries ``(value, marker)``,
values uniform in [0, 1), exactly two markers (one in each half); the target is the sum of the
two marked values, read from the final state. Whatever the model learns, the loss at step T
depends on inputs ~T steps earlier, so the gradient must travel back through the recurrence.

Each model (recur's ``RNN`` / ``LSTM`` / ``GRU`` layer + a linear read-out) is trained for
``--train-steps`` Adam steps; its weights are then run by recur's ``RNNCell`` / ``LSTMCell`` /
``GRUCell`` unrolled step by step in float64, so that every ``h_t`` is a tensor of its own and
tiny gradients do not underflow, and we measure ``||dL/dh_t||`` (mean over the batch)
for ``t = 1..T`` and the eigenvalues of each gate block ``[H, H]`` of ``W_hh``. By the chain
rule ``dL/dh_t = dL/dh_T * prod_{k>t} dh_k/dh_{k-1}``; for the plain RNN each factor is
``diag(tanh') W_hh``, whose norm is below 1 when the spectral radius of W_hh is (torch's
init gives about 1/sqrt(3)), so the gradient shrinks geometrically, by many orders of magnitude
over 100 steps. The LSTM's cell state passes the gradient through ``diag(f_t)`` instead (no
matrix, no squashing); with the forget gate biased open (``--forget-bias``) it decays far
more slowly. Training first means the gradients are those of networks that have begun to
fit the task, not only of random ones (``--train-steps 0`` measures at initialisation).

Writes ``gradients.png`` (left: ``||dL/dh_t||`` against t, log scale; right: eigenvalues of
``W_hh`` in the complex plane with the unit circle) and ``gradients.json`` (the norms, the
early/late ratio ``||dL/dh_1|| / ||dL/dh_T||``, eigenvalues, spectral radii) to ``--out``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from ..train import RunDir, new_figure, save_figure
from .base import Option
from .runner import cpu_threads

__all__ = ["OPTIONS", "adding_problem", "diagnose_gradients", "gradient_norms"]

log = logging.getLogger(__name__)

#: The flags of ``recur diagnose gradients`` (declared as data, like a task's options).
OPTIONS: tuple[Option, ...] = (
    Option("seq_len", int, 100, "T, steps per sequence (the dependency spans up to T)"),
    Option("hidden", int, 64, "hidden units"),
    Option("batch_size", int, 64, "sequences per batch"),
    Option("train_steps", int, 100, "Adam steps (lr 1e-3) before measuring; 0 = at init"),
    Option("forget_bias", float, 1.0, "LSTM forget-gate bias at init (b_ih + b_hh)"),
    Option("cells", str, "rnn,lstm,gru", "comma-separated cells to compare"),
    Option("seed", int, 0, "random seed"),
    Option("threads", int, 1, "CPU threads for PyTorch's ops (0: PyTorch's default)"),
    Option("out", str, None, "output directory (default: runs/diagnose-gradients-DATE-TIME)"),
)

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
CELL_CLASSES = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
GATES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


def adding_problem(batch: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``x: [B, T, 2]`` (value, marker) and ``y: [B]``, the sum of the two marked values."""
    values = torch.rand(batch, seq_len, generator=generator)
    half = max(seq_len // 2, 1)
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, seq_len, (batch,), generator=generator) if seq_len > 1 \
        else first
    markers = torch.zeros(batch, seq_len)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = (values * markers).sum(1)
    return torch.stack([values, markers], dim=-1), y


class AddingModel(nn.Module):
    """A recur ``RNN | LSTM | GRU`` layer (fast, for training) and a linear read-out.

    ``forward(x: [B, T, I]) -> y: [B]``; :meth:`unrolled` runs the same weights as a
    ``*Cell`` step by step in float64 and also returns every ``h_t: [B, H]``.
    """

    def __init__(self, cell: str, input_size: int, hidden: int, forget_bias: float) -> None:
        super().__init__()
        self.kind = cell
        self.hidden = hidden
        self.rnn = CELLS[cell](input_size, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        if cell == "lstm":
            with torch.no_grad():  # gate order i, f, g, o: split the bias over b_ih and b_hh
                self.rnn.bias_ih_l0[hidden:2 * hidden].fill_(forget_bias / 2)
                self.rnn.bias_hh_l0[hidden:2 * hidden].fill_(forget_bias / 2)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)                       # (B, T, H)
        return self.head(out[:, -1]).squeeze(-1)   # (B,)

    def unrolled(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(y [B], [h_1 ... h_T])`` from the same weights, one ``*Cell`` call per step."""
        cell = CELL_CLASSES[self.kind](self.rnn.input_size, self.hidden).double()
        cell.load_state_dict({name: getattr(self.rnn, f"{name}_l0").detach().double()
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        head = nn.Linear(self.hidden, 1).double()
        head.load_state_dict({k: v.double() for k, v in self.head.state_dict().items()})
        x = x.double()
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        states = []
        for t in range(x.shape[1]):
            if self.kind == "lstm":
                h, c = cell(x[:, t], (h, c))
            else:
                h = cell(x[:, t], h)
            states.append(h)
        return head(h).squeeze(-1), states


def gradient_norms(model: AddingModel, x: Tensor, y: Tensor) -> tuple[list[float], float]:
    """``(||dL/dh_t|| for t = 1..T (batch mean), loss)`` with ``L`` the MSE at step T,
    computed in float64 so that gradients of 1e-40 do not underflow to zero."""
    pred, states = model.unrolled(x)
    for h in states:
        h.retain_grad()
    loss = F.mse_loss(pred, y.double())
    loss.backward()
    norms = [float(h.grad.norm(dim=-1).mean()) for h in states]
    return norms, loss.item()


def eigenvalues(model: AddingModel) -> dict[str, list[list[float]]]:
    """Eigenvalues ``[[re, im], ...]`` of each gate block ``[H, H]`` of ``W_hh``."""
    w = model.rnn.weight_hh_l0.detach().double()
    blocks = w.split(model.hidden, dim=0)
    return {gate: torch.view_as_real(torch.linalg.eigvals(block)).tolist()
            for gate, block in zip(GATES[model.kind], blocks, strict=True)}


def _train(model: AddingModel, steps: int, batch: int, seq_len: int, gen: torch.Generator) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        x, y = adding_problem(batch, seq_len, gen)
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


def diagnose_gradients(*, seq_len: int = 100, hidden: int = 64, batch_size: int = 64,
                       train_steps: int = 100, forget_bias: float = 1.0,
                       cells: str = "rnn,lstm,gru", seed: int = 0, threads: int = 1,
                       out: str | None = None) -> dict[str, Any]:
    """Measure, plot and save; returns what ``gradients.json`` holds (plus ``"out"``).

    Per cell: ``norms`` (``[T]``), ``ratio`` = ``||dL/dh_1|| / ||dL/dh_T||``, ``loss``,
    ``eigenvalues`` per gate block and their ``spectral_radius`` (max over blocks).
    """
    names = [c.strip() for c in cells.split(",") if c.strip()]
    bad = [c for c in names if c not in CELL_CLASSES]
    if bad or not names:
        raise ValueError(f"--cells: unknown {bad or cells!r}; "
                         f"choose from {', '.join(CELL_CLASSES)}")
    if seq_len < 2 or hidden < 1 or batch_size < 1 or train_steps < 0:
        raise ValueError(f"need --seq-len >= 2, --hidden >= 1, --batch-size >= 1, "
                         f"--train-steps >= 0; got {seq_len}, {hidden}, {batch_size}, "
                         f"{train_steps}")
    run = RunDir(out or Path("runs") / f"diagnose-gradients-{time.strftime('%Y%m%d-%H%M%S')}")
    with cpu_threads(threads):
        results = {name: _measure(name, seq_len, hidden, batch_size, train_steps, forget_bias,
                                  seed) for name in names}
    report = {"seq_len": seq_len, "hidden": hidden, "batch_size": batch_size,
              "train_steps": train_steps, "forget_bias": forget_bias, "seed": seed,
              "cells": results}
    run.write_json("gradients.json", report)
    _plot(results, seq_len, train_steps, run.path / "gradients.png")
    return {**report, "out": str(run.path)}


def _measure(name: str, seq_len: int, hidden: int, batch_size: int, train_steps: int,
             forget_bias: float, seed: int) -> dict[str, Any]:
    """Train one cell's model, then measure its gradient norms and eigenvalues."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AddingModel(name, 2, hidden, forget_bias)
    _train(model, train_steps, batch_size, seq_len, gen)
    x, y = adding_problem(batch_size, seq_len, torch.Generator().manual_seed(seed + 1))
    norms, loss = gradient_norms(model, x, y)
    eig = eigenvalues(model)
    radius = {g: max(math.hypot(re, im) for re, im in v) for g, v in eig.items()}
    ratio = norms[0] / norms[-1] if norms[-1] else 0.0
    log.info("%s: ratio %.3g, %.1f s", name, ratio, time.perf_counter() - started)
    return {"norms": norms, "ratio": ratio, "loss": loss,
            "eigenvalues": eig, "spectral_radius_by_gate": radius,
            "spectral_radius": max(radius.values())}


def _plot(results: dict[str, Any], seq_len: int, train_steps: int, path: Path) -> Path:
    n = len(results)
    fig = new_figure(size=(4.2 + 3.2 * n, 4.2))[0]
    fig.clear()
    grid = fig.add_gridspec(1, n + 1, width_ratios=[1.6] + [1] * n)
    ax = fig.add_subplot(grid[0, 0])
    colors = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    for name, r in results.items():
        ax.semilogy(range(1, seq_len + 1), [max(v, 1e-45) for v in r["norms"]],
                    color=colors[name], label=f"{name.upper()} (ratio {r['ratio']:.1e})")
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||  (loss at t = T)")
    ax.set_title(f"adding problem, T={seq_len}, after {train_steps} steps")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    circle = torch.linspace(0, 2 * math.pi, 200)
    for i, (name, r) in enumerate(results.items(), 1):
        eax = fig.add_subplot(grid[0, i])
        eax.plot(circle.cos(), circle.sin(), color="0.6", lw=1, ls="--")
        for gate, values in r["eigenvalues"].items():
            re, im = zip(*values, strict=True)
            eax.scatter(re, im, s=8, alpha=0.7, label=gate)
        eax.set_aspect("equal")
        eax.set_title(f"eig(W_hh) {name.upper()}\nspectral radius {r['spectral_radius']:.2f}",
                      fontsize=9)
        eax.set_xlabel("Re")
        eax.set_ylabel("Im")
        eax.grid(True, alpha=0.3)
        if len(r["eigenvalues"]) > 1:
            eax.legend(fontsize=7, markerscale=1.5, loc="upper right")
    return save_figure(fig, path)
