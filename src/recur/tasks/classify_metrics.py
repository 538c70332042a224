"""Classification metrics and pictures: the confusion matrix, counted and plotted."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..train import new_figure, save_figure

__all__ = ["confusion_matrix", "plot_confusion"]


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """``[C, C]`` int64 counts; row = true class, column = predicted class."""
    flat = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_confusion(cm: Tensor, classes: list[str], path: Path, title: str) -> Path:
    """Save the confusion matrix ``cm: [C, C]`` as a PNG with counts written in the cells."""
    C = len(classes)
    size = max(3.6, 0.45 * C + 2.2)
    fig, ax = new_figure(size=(size + 0.8, size))
    image = ax.imshow(cm.numpy(), cmap="Blues")
    top = int(cm.max()) if cm.numel() else 0
    if C <= 30:
        for i in range(C):
            for j in range(C):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > top / 2 else "black")
    ax.set_xticks(range(C), classes, rotation=45 if max(map(len, classes)) > 3 else 0)
    ax.set_yticks(range(C), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="count")
    return save_figure(fig, path)
