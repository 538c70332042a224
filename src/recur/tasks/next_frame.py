"""``next-frame``: predict the next small frame of a moving pattern, then dream on.

    recur train next-frame                       # 2x2 frames
    recur train next-frame --size 3 --epochs 30
    recur predict runs/next-frame-... --direction ccw --generate 12

Encoding: a frame is a ``size x size`` grid of pixels in [0, 1], flattened to ``[S*S]``. One
lit pixel walks around the border of the grid (for 2x2: all four pixels in turn), one cell per
frame, clockwise or counter-clockwise, from a random start; the direction can only be told
from two frames or more. A sequence of ``--frames`` frames gives the input ``frames[:-1]``:
``[F-1, S*S]`` and the target ``frames[1:]``; the model (recurrent stack, linear head, sigmoid)
outputs the next frame at every step, and the loss is the MSE.

Generation: the model reads ``--context`` true frames, then each predicted frame is fed back
as the next input for ``--generate`` frames. ``metrics.json`` has "loss" (teacher-forced MSE
on validation), "gen_mse" (MSE of the generated frames) and "gen_accuracy" (share of generated
frames whose brightest pixel is the true one); ``next_frame.png`` shows true vs generated.
The teacher-forced loss cannot reach 0: after the first frame the direction is unknown, so the
best guess splits between the two neighbours (MSE 0.125 on that step, about 0.011 over the
default 11 steps); generation starts after ``--context`` frames, when the direction is known.
"""

from __future__ import annotations

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


def border_cycle(size: int) -> list[int]:
    """Flat indices of the border cells of a ``size x size`` grid, clockwise from (0, 0)."""
    if size == 1:
        return [0]
    top = [(0, c) for c in range(size)]
    right = [(r, size - 1) for r in range(1, size)]
    bottom = [(size - 1, c) for c in range(size - 2, -1, -1)]
    left = [(r, 0) for r in range(size - 2, 0, -1)]
    return [r * size + c for r, c in top + right + bottom + left]


def moving_frames(count: int, frames: int, size: int, generator: torch.Generator,
                  direction: Tensor | None = None, start: Tensor | None = None) -> Tensor:
    """``[count, frames, size*size]`` float32: one lit pixel walking the border.

    ``direction`` (``[count]``, +1 clockwise / -1 counter-clockwise) and ``start`` (``[count]``
    positions on the border) are drawn from ``generator`` when not given.
    """
    cycle = torch.tensor(border_cycle(size))
    if direction is None:
        direction = torch.randint(0, 2, (count,), generator=generator) * 2 - 1
    if start is None:
        start = torch.randint(0, len(cycle), (count,), generator=generator)
    steps = torch.arange(frames)
    position = (start[:, None] + direction[:, None] * steps[None, :]) % len(cycle)  # (N, F)
    return F.one_hot(cycle[position], size * size).float()


def generate(model: nn.Module, context: Tensor, count: int) -> Tensor:
    """Read ``context: [B, C, P]`` frames, then feed each prediction back ``count`` times.

    Returns the generated frames ``[B, count, P]``.
    """
    device = model_device(model)
    pred, state = model(context.to(device))             # (B, C, P)
    frame = pred[:, -1:]                                 # (B, 1, P)
    out = [frame]
    for _ in range(count - 1):
        frame, state = model(frame, state)
        out.append(frame)
    return torch.cat(out, dim=1).cpu()


@register
class NextFrame(Task):
    """Predicts the next frame of a moving pattern"""

    name = "next-frame"
    summary = "predict the next 2x2 frame of a moving pixel, then generate by feeding back"
    options = (
        Option("size", int, 2, "frames are size x size pixels"),
        Option("frames", int, 12, "frames per training sequence"),
        Option("samples", int, 512, "training sequences (validation: a quarter as many)"),
        Option("context", int, 3, "generation: true frames read before feeding back"),
        Option("generate", int, 8, "generation: frames produced by feeding predictions back"),
    )
    predict_options = (
        Option("direction", str, "cw", "direction of the walk", ("cw", "ccw")),
        Option("start", int, 0, "start position on the border"),
        Option("generate", int, None, "frames to generate (default: the run's --generate)"),
    )
    # threads 1: a model this small gains nothing from more (see runner.cpu_threads)
    defaults = {"cell": "gru", "hidden": 32, "epochs": 20, "lr": 0.01, "batch_size": 32,
                "threads": 1}

    def build_data(self) -> TaskData:
        c = self.cfg
        if c.size < 2 or c.frames < 3 or c.samples < 4 or c.context < 2 or c.generate < 1:
            raise ValueError(f"need --size >= 2, --frames >= 3, --samples >= 4, --context >= 2, "
                             f"--generate >= 1; got {c.size}, {c.frames}, {c.samples}, "
                             f"{c.context}, {c.generate}")
        gen = torch.Generator().manual_seed(c.seed)
        train = moving_frames(c.samples, c.frames, c.size, gen)
        val = moving_frames(max(c.samples // 4, 2), c.context + c.generate, c.size, gen)
        return TaskData(train=TensorDataset(train[:, :-1], train[:, 1:]),
                        val=TensorDataset(val[:, :-1], val[:, 1:]),
                        info={"size": c.size, "context": c.context, "generate": c.generate})

    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        pixels = int(info["size"]) ** 2
        return from_config(self.cfg, pixels, pixels, out_activation="sigmoid")

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        x, y = batch                                    # (B, F-1, P) each
        pred, _ = model(x)                              # (B, F-1, P)
        return F.mse_loss(pred, y)

    def _generated(self, model: nn.Module, data: TaskData) -> tuple[Tensor, Tensor]:
        """``(true, generated)`` frames after the context, each ``[B, generate, P]``."""
        x, y = data.val[:]                              # (B, C+G-1, P)
        c = self.cfg.context
        return y[:, c - 1:], generate(model, x[:, :c], self.cfg.generate)

    def final_metrics(self, model: nn.Module, data: TaskData) -> dict[str, Any]:
        true, made = self._generated(model, data)
        hits = (made.argmax(-1) == true.argmax(-1)).float().mean().item()
        return {"loss": self.evaluate(model, data)["loss"],
                "gen_mse": F.mse_loss(made, true).item(), "gen_accuracy": hits}

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """``next_frame.png``: for two validation walks, the true frames and the frames the
        model generated from its own predictions after the context."""
        c, g = self.cfg.context, self.cfg.generate
        x, _ = data.val[:]
        true, made = self._generated(model, data)
        size = self.cfg.size
        rows = []
        for i in range(2):
            rows.append(("true", torch.cat([x[i, :c], true[i]])))
            rows.append(("generated", torch.cat([x[i, :c], made[i]])))
        fig, axes = new_figure(len(rows), c + g, size=(1.0 * (c + g) + 1, 1.1 * len(rows) + 0.6))
        for r, (label, frames) in enumerate(rows):
            for f in range(c + g):
                ax = axes[r, f]
                ax.imshow(frames[f].view(size, size).numpy(), vmin=0, vmax=1, cmap="magma")
                ax.set_xticks([])
                ax.set_yticks([])
                if f < c:
                    for spine in ax.spines.values():
                        spine.set_edgecolor("tab:blue")
                        spine.set_linewidth(2)
                if r == len(rows) - 1:
                    ax.set_xlabel("context" if f < c else f"+{f - c + 1}", fontsize=8)
            axes[r, 0].set_ylabel(label, fontsize=8)
        fig.suptitle(f"next frame: {c} context frames (blue), then {g} generated by feeding "
                     f"predictions back", fontsize=9)
        return [save_figure(fig, out_dir / "next_frame.png")]

    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> dict[str, Any]:
        size, c = int(info["size"]), int(info["context"])
        g = args.generate if args.generate is not None else int(info["generate"])
        if g < 1:
            raise ValueError(f"--generate must be >= 1, got {g}")
        walk = moving_frames(1, c + g, size, torch.Generator(),
                             direction=torch.tensor([1 if args.direction == "cw" else -1]),
                             start=torch.tensor([args.start]))
        made = generate(model, walk[:, :c], g)

        def grid(frames: Tensor) -> list:
            return frames.view(-1, size, size).double().round(decimals=3).tolist()

        return {"context": grid(walk[0, :c]), "true": grid(walk[0, c:]),
                "generated": grid(made[0]),
                "gen_accuracy": (made.argmax(-1) == walk[:, c:].argmax(-1)).float().mean().item()}
