"""``sine-cos``: read sin(t), predict cos(t), one window after another (the classic lesson).

    recur train sine-cos
    recur predict runs/sine-cos-... --windows 3

Encoding: window ``k`` covers ``t`` in ``[k*pi, (k+1)*pi]`` sampled at ``--points`` (10)
points; the input is ``sin(t)``: ``[1, P, 1]``, the target ``cos(t)``: ``[1, P, 1]``. Windows
come in order (no shuffling, one window per step) and the recurrent state at the end of a
window is the initial state of the next one, detached: truncated backpropagation through
time, the gradient never goes further back than one window. The state is what lets the model
tell the sign of cos at a window's first point, where sin is 0 either way. An epoch is
``--windows`` consecutive windows from ``t = 0`` (the state starts at zero each epoch).

Evaluation carries the state through ``--warmup`` windows, then reports the MSE ("loss") on
the next ``--eval-windows`` windows: the picture shows input, target and prediction there.

Defaults. The lesson trains an RNN with hidden 32 for 1000 steps with SGD at lr 0.01. We
keep the RNN, hidden 32 and the 1000 steps (10 epochs x 100 windows) but not the optimizer:
measured with this task (seeds 0-5), SGD at lr 0.01 ends at an MSE of 0.6e-3 to 2.3e-3 (three
seeds of six above 1e-3; it plateaus near 1e-3 after 300 steps), Adam at a constant lr 0.01
ends anywhere from 3e-5 to 1.4e-3 (one step per window is noisy). Adam decaying to 0 on a
cosine, with the gradient norm clipped at 1, does better, but at lr 0.03 a run is chaotic:
float32 roundings in another order (``RECUR_BACKEND=torch`` against ``cpu``, the same math)
take the same seed from 2e-5 to 0.18, and 2 of 20 runs (seeds 0-9, both backends) missed
1e-3; at lr 0.02 all 20 end at or below 1.3e-4 (``benchmarks/tasks.py --only sine-cos
--backend torch cpu``, JSON in ``benchmarks/results/tasks-sine-cos-*.json``), so the defaults
are Adam at 0.02, cosine, clip 1. ``--optimizer sgd --lr 0.01 --schedule constant --clip 0``
is the lesson's exact setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..train import new_figure, save_figure
from .base import Config, Option, Task, TaskData, model_device, register
from .models import from_config


class SineCosWindows(Dataset):
    """Item ``k``: ``(sin(t), cos(t))`` on window ``k``, each ``[points, 1]`` float32."""

    def __init__(self, start: int, count: int, points: int) -> None:
        self.start, self.count, self.points = start, count, points

    def __len__(self) -> int:
        return self.count

    def window(self, k: int) -> Tensor:
        """The ``t`` values of window ``k``: ``[points]`` float64."""
        return torch.linspace(k * math.pi, (k + 1) * math.pi, self.points, dtype=torch.float64)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        t = self.window(self.start + i)
        return t.sin().float().unsqueeze(-1), t.cos().float().unsqueeze(-1)


def run_windows(model: nn.Module, windows: SineCosWindows, state: Any = None
                ) -> tuple[Tensor, Tensor, Tensor, Any]:
    """Run ``model`` over every window in order, carrying the state.

    Returns ``(x, y, prediction, state)`` with ``x, y, prediction: [windows, points]``.
    """
    device = model_device(model)
    xs, ys, preds = [], [], []
    for i in range(len(windows)):
        x, y = windows[i]
        pred, state = model(x.unsqueeze(0).to(device), state)    # (1, P, 1)
        xs.append(x[:, 0])
        ys.append(y[:, 0])
        preds.append(pred[0, :, 0].detach().cpu())
    return torch.stack(xs), torch.stack(ys), torch.stack(preds), state


@register
class SineCos(Task):
    """Carries its hidden state from one window to the next, in order"""

    name = "sine-cos"
    summary = "read sin(t), predict cos(t) over consecutive windows, state carried (TBPTT)"
    options = (
        Option("points", int, 10, "samples per window of length pi"),
        Option("windows", int, 100, "consecutive windows per epoch (one step each)"),
        Option("warmup", int, 2, "evaluation: windows to settle the state before measuring"),
        Option("eval_windows", int, 10, "evaluation: windows measured after the warm-up"),
    )
    predict_options = (Option("windows", int, 1, "windows to predict after --warmup"),)
    # threads 1: a model this small gains nothing from more (see runner.cpu_threads)
    defaults = {"cell": "rnn", "hidden": 32, "epochs": 10, "batch_size": 1,
                "optimizer": "adam", "lr": 0.02, "schedule": "cosine", "clip": 1.0,
                "threads": 1}
    shuffle = False
    distributed = False

    def build_data(self) -> TaskData:
        c = self.cfg
        if c.points < 2 or c.windows < 1 or c.warmup < 0 or c.eval_windows < 1:
            raise ValueError(f"need --points >= 2, --windows >= 1, --warmup >= 0, "
                             f"--eval-windows >= 1; got {c.points}, {c.windows}, {c.warmup}, "
                             f"{c.eval_windows}")
        if c.batch_size != 1:
            raise ValueError(f"sine-cos feeds one window per step (its state flows from window "
                             f"to window): --batch-size must be 1, got {c.batch_size}")
        train = SineCosWindows(0, c.windows, c.points)
        val = SineCosWindows(c.windows, c.warmup + c.eval_windows, c.points)
        return TaskData(train=train, val=val, info={"points": c.points})

    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        return from_config(self.cfg, 1, 1)

    def training_step(self, model: nn.Module, batch: Any, carry: Any) -> tuple[Tensor, Any]:
        x, y = batch                                   # (1, P, 1) each
        pred, state = model(x, carry)                  # (1, P, 1)
        return F.mse_loss(pred, y), state              # the trainer detaches the state

    def _measure(self, model: nn.Module, data: TaskData):
        x, y, pred, _ = run_windows(model, data.val)
        skip = self.cfg.warmup
        return x, y, pred, F.mse_loss(pred[skip:], y[skip:]).item()

    def evaluate(self, model: nn.Module, data: TaskData) -> dict[str, float]:
        return {"loss": self._measure(model, data)[3]}

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """``sine_cos.png``: input sin, target cos and prediction over the evaluation windows."""
        x, y, pred, mse = self._measure(model, data)
        val: SineCosWindows = data.val
        t = torch.cat([val.window(val.start + i) for i in range(len(val))]).numpy()
        fig, ax = new_figure(size=(8.0, 3.6))
        ax.plot(t, x.flatten().numpy(), color="0.6", lw=1, label="input sin(t)")
        ax.plot(t, y.flatten().numpy(), color="tab:blue", lw=2, label="target cos(t)")
        ax.plot(t, pred.flatten().numpy(), "o", color="tab:red", ms=3, label="prediction")
        edge = val.window(val.start + self.cfg.warmup)[0].item()
        ax.axvspan(t[0], edge, color="0.9", label="warm-up (not scored)")
        ax.set_xlabel("t")
        ax.set_title(f"sine \u2192 cosine, windows after training (MSE {mse:.2e})")
        ax.legend(loc="lower left", fontsize=8, ncols=4)
        ax.set_ylim(-1.5, 1.3)
        return [save_figure(fig, out_dir / "sine_cos.png")]

    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> dict[str, Any]:
        """From a zero state, carry it through ``--warmup`` windows, then predict the next
        ``--windows`` windows (the ones after the training windows)."""
        if args.windows < 1:
            raise ValueError(f"--windows must be >= 1, got {args.windows}")
        c = self.cfg
        points = info["points"]
        _, _, _, state = run_windows(model, SineCosWindows(c.windows, c.warmup, points))
        ahead = SineCosWindows(c.windows + c.warmup, args.windows, points)
        x, y, pred, _ = run_windows(model, ahead, state)
        t = torch.cat([ahead.window(ahead.start + i) for i in range(args.windows)])
        return {"t": t.tolist(), "input": x.flatten().tolist(), "target": y.flatten().tolist(),
                "prediction": pred.flatten().tolist(),
                "mse": F.mse_loss(pred, y).item()}
