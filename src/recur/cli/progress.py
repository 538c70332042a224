"""How ``recur train`` shows progress: a tqdm bar on a terminal, plain lines otherwise.

On a terminal (stderr is a TTY) a single bar counts optimizer steps over the whole run, with
the epoch and the running loss; epoch summaries and task messages are written above it. When
the output goes to a file or a pipe (CI, ``| tee``) there is no bar, only one line per epoch
and one per message, so logs stay readable.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..train.progress import Reporter, format_record

__all__ = ["TerminalReporter"]


class TerminalReporter(Reporter):
    """Prints progress for the ``recur`` command (the only place in recur that prints).

    Args:
        out: where epoch lines and messages go (default ``sys.stdout``).
        bar: draw a tqdm bar on ``sys.stderr``; ``None`` decides by ``sys.stderr.isatty()``.
    """

    def __init__(self, out: TextIO | None = None, bar: bool | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.use_bar = sys.stderr.isatty() if bar is None else bar
        self.bar = None
        self.epochs = 0
        self.loss_ema: float | None = None

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)

    def on_fit_start(self, *, start_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        self.epochs = epochs
        if start_epoch:
            self._write(f"resuming after epoch {start_epoch}")
        if self.use_bar and epochs > start_epoch:
            from tqdm.auto import tqdm

            total = (epochs - start_epoch) * steps_per_epoch
            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=False,
                            file=sys.stderr)

    def on_step(self, *, epoch: int, step: int, loss: float) -> None:
        if self.bar is None:
            return
        self.loss_ema = loss if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * loss
        self.bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)
        self.bar.set_postfix(loss=f"{self.loss_ema:.4g}", refresh=False)
        self.bar.update(1)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self._write(f"epoch {record['epoch']}/{self.epochs} {format_record(record)}")

    def message(self, text: str) -> None:
        self._write(text)

    def on_fit_end(self, history: list[dict[str, Any]]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
