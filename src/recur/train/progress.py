"""What the trainer tells the outside world while it runs, without printing anything itself.

The trainer calls a :class:`Reporter`'s hooks; the command line (``recur.cli``) implements one
that draws a tqdm bar on a terminal and plain lines otherwise. Library users get
:class:`LogReporter` (the ``logging`` module, logger ``recur.train``) or :class:`Reporter`
(silent). Processes other than rank 0 always get a silent one.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["Reporter", "LogReporter", "format_record", "format_value"]

log = logging.getLogger("recur.train")


def format_value(value: Any) -> str:
    """Short human form: floats to 4 significant digits, the rest with ``str``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_record(record: dict[str, Any], skip: tuple[str, ...] = ("epoch", "step")) -> str:
    """``"train_loss=0.1234 val_loss=0.2"`` for the keys of ``record`` not in ``skip``."""
    return " ".join(f"{k}={format_value(v)}" for k, v in record.items() if k not in skip)


class Reporter:
    """Silent base: override any hook. All hooks are called on rank 0 only."""

    def on_fit_start(self, *, start_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        """Before the first epoch; ``start_epoch`` > 0 when a run resumes."""

    def on_step(self, *, epoch: int, step: int, loss: float) -> None:
        """After every optimizer step (``step`` counts from 1 within the epoch)."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """After an epoch with its ``metrics.jsonl`` record."""

    def message(self, text: str) -> None:
        """A message from a task callback (a string its ``on_epoch_end`` returned)."""

    def on_fit_end(self, history: list[dict[str, Any]]) -> None:
        """After the last epoch."""


class LogReporter(Reporter):
    """Reports epochs and messages through ``logging`` at INFO level."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_fit_start(self, *, start_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        self.epochs = epochs
        log.info("training epochs %d..%d, %d steps each", start_epoch + 1, epochs,
                 steps_per_epoch)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        log.info("epoch %d/%d %s", record["epoch"], self.epochs, format_record(record))

    def message(self, text: str) -> None:
        log.info("%s", text)
