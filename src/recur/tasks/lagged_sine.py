"""``lagged-sine``: output the input wave as it was ``--lag`` steps ago (the classic lesson).

    recur train lagged-sine
    recur train lagged-sine --lag 10 --cell gru
    recur predict runs/lagged-sine-... --freq 0.3

Encoding: each sequence samples ``s_t = sin(w t + phi)`` for ``t = 0 .. T + lag - 1`` with
the angular frequency ``w`` uniform in ``[--min-freq, --max-freq]`` radians per step and the
phase ``phi`` uniform in ``[0, 2 pi)``, plus Gaussian ``--noise``. The input is the last ``T``
samples ``x: [T, 1]``, the label the same wave ``lag`` steps earlier, ``y_t = x_{t - lag}``:
``[T, 1]``. The first ``lag`` labels are not scored (the model has not seen them yet); the
loss is the MSE over the rest, so the model must hold the last ``lag`` values in its state.
Data are made once from ``--seed`` (``--samples`` training and ``--samples // 4`` validation
sequences).

Defaults: an LSTM with 32 hidden units, Adam at lr 0.01, 15 epochs of 1000 sequences of 40
steps with lag 5: a few seconds on a laptop CPU, validation MSE well below 1e-2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ..train import new_figure, save_figure
from .base import Config, Option, Task, TaskData, model_device, register
from .models import from_config


def lagged_sines(count: int, seq_len: int, lag: int, min_freq: float, max_freq: float,
                 noise: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(x, y)``, each ``[count, seq_len, 1]`` float32, with ``y[:, t] = x[:, t - lag]`` for
    ``t >= lag`` and the wave's earlier samples before."""
    w = min_freq + (max_freq - min_freq) * torch.rand(count, 1, generator=generator)
    phi = 2 * math.pi * torch.rand(count, 1, generator=generator)
    t = torch.arange(seq_len + lag, dtype=torch.float32)
    s = torch.sin(w * t + phi)                                     # (N, T + lag)
    if noise > 0:
        s = s + noise * torch.randn(s.shape, generator=generator)
    return s[:, lag:].unsqueeze(-1), s[:, :seq_len].unsqueeze(-1)


def masked_mse(pred: Tensor, y: Tensor, lag: int) -> Tensor:
    """MSE over steps ``t >= lag`` of ``[B, T, 1]`` tensors."""
    return F.mse_loss(pred[:, lag:], y[:, lag:])


@register
class LaggedSine(Task):
    """Copies a sine wave with a delay"""

    name = "lagged-sine"
    summary = "output a sampled sine as it was --lag steps earlier (memory of recent inputs)"
    options = (
        Option("lag", int, 5, "delay of the label, in steps"),
        Option("seq_len", int, 40, "steps per sequence"),
        Option("samples", int, 1000, "training sequences (validation: a quarter as many)"),
        Option("min_freq", float, 0.1, "lowest angular frequency, radians per step"),
        Option("max_freq", float, 0.6, "highest angular frequency, radians per step"),
        Option("noise", float, 0.0, "standard deviation of Gaussian noise on the wave"),
    )
    predict_options = (
        Option("freq", float, 0.3, "angular frequency of the wave to copy"),
        Option("phase", float, 0.0, "its phase, radians"),
        Option("steps", int, None, "its length (default: --seq-len of the run)"),
    )
    # threads 1: a model this small gains nothing from more (see runner.cpu_threads)
    defaults = {"cell": "lstm", "hidden": 32, "epochs": 15, "lr": 0.01, "batch_size": 32,
                "threads": 1}

    def build_data(self) -> TaskData:
        c = self.cfg
        if c.lag < 0 or c.seq_len <= c.lag or c.samples < 4:
            raise ValueError(f"need 0 <= --lag < --seq-len and --samples >= 4; got lag {c.lag}, "
                             f"seq_len {c.seq_len}, samples {c.samples}")
        if not 0 < c.min_freq <= c.max_freq:
            raise ValueError(f"need 0 < --min-freq <= --max-freq, got {c.min_freq}, {c.max_freq}")
        gen = torch.Generator().manual_seed(c.seed)

        def make(n: int) -> TensorDataset:
            return TensorDataset(*lagged_sines(n, c.seq_len, c.lag, c.min_freq, c.max_freq,
                                               c.noise, gen))

        train, val = make(c.samples), make(c.samples // 4)
        return TaskData(train=train, val=val, info={"lag": c.lag, "seq_len": c.seq_len})

    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        return from_config(self.cfg, 1, 1)

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = batch                                   # (B, T, 1) each
        pred, _ = model(x)                             # (B, T, 1)
        return masked_mse(pred, y, self.cfg.lag)

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """``lagged_sine.png``: three validation sequences, input / target / prediction."""
        x, y = data.val[:3]
        pred, _ = model(x.to(model_device(model)))
        pred = pred.cpu()
        lag = self.cfg.lag
        fig, axes = new_figure(3, 1, size=(8.0, 6.0), sharex=True)
        for i, ax in enumerate(axes):
            ax.plot(x[i, :, 0].numpy(), color="0.6", lw=1, label="input x_t")
            ax.plot(y[i, :, 0].numpy(), color="tab:blue", lw=2, label=f"target x_(t-{lag})")
            ax.plot(pred[i, :, 0].numpy(), "o", ms=3, color="tab:red", label="prediction")
            ax.axvspan(-0.5, lag - 0.5, color="0.9")
            mse = masked_mse(pred[i:i + 1], y[i:i + 1], lag).item()
            ax.set_ylabel(f"MSE {mse:.1e}", fontsize=8)
        axes[0].legend(loc="upper right", fontsize=8, ncols=3)
        axes[0].set_title(f"lagged sine: the wave {lag} steps ago (shaded steps not scored)")
        axes[-1].set_xlabel("step t")
        return [save_figure(fig, out_dir / "lagged_sine.png")]

    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> dict[str, Any]:
        steps = args.steps if args.steps is not None else int(info["seq_len"])
        lag = int(info["lag"])
        if steps <= lag:
            raise ValueError(f"--steps must be more than the lag {lag}, got {steps}")
        t = torch.arange(steps + lag, dtype=torch.float32)
        s = torch.sin(args.freq * t + args.phase)
        x, y = s[lag:].view(1, -1, 1), s[:steps].view(1, -1, 1)
        pred, _ = model(x.to(model_device(model)))
        pred = pred.cpu()
        return {"input": x.flatten().tolist(), "target": y.flatten().tolist(),
                "prediction": pred.flatten().tolist(), "mse": masked_mse(pred, y, lag).item()}
