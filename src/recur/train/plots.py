"""Pictures of a run, saved as PNG with matplotlib's object API (no pyplot global state).

:func:`plot_history` draws the loss curve from ``metrics.jsonl`` records; tasks draw their own
pictures with :func:`new_figure` and :func:`save_figure`. matplotlib is imported lazily (it is
in the ``tasks`` extra), with the non-interactive Agg canvas, so nothing opens a window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["new_figure", "save_figure", "plot_history"]


def new_figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (6.4, 4.0),
               **subplot_kw: Any):
    """``(figure, axes)``: a figure detached from pyplot; ``axes`` as ``Figure.subplots``
    returns it (one ``Axes`` for 1x1, else an array ``[nrows, ncols]`` squeezed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, **subplot_kw)
    return fig, axes


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG at ``path`` (written to a temp file, then renamed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from .rundir import atomic_write

    FigureCanvasAgg(fig)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi), binary=True)
    return Path(path)


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for record in history:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            xs.append(int(record["epoch"]))
            ys.append(float(value))
    return xs, ys


def plot_history(history: Sequence[dict[str, Any]], path: str | os.PathLike, *,
                 title: str = "") -> Path:
    """Loss curve: ``train_loss`` and ``val_loss`` per epoch (log scale when all positive),
    with any other ``val_*`` metric (accuracy, ...) on a second panel."""
    others = sorted({k for r in history for k, v in r.items()
                     if k.startswith("val_") and k != "val_loss"
                     and isinstance(v, (int, float)) and not isinstance(v, bool)})
    fig, axes = new_figure(1, 2 if others else 1, size=(9.6 if others else 6.4, 4.0))
    ax = axes[0] if others else axes
    positive = True
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=label)
            positive = positive and min(ys) > 0
    if positive and history:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss")
    ax.grid(True, alpha=0.3)
    if history:
        ax.legend()
    if others:
        for key in others:
            xs, ys = _series(history, key)
            axes[1].plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=key[4:])
        axes[1].set_xlabel("epoch")
        axes[1].set_title("validation metrics")
        axes[1].grid(True, alpha=0.3)
        axes[1].legend()
    return save_figure(fig, path)
