"""What ``recur train classify`` chooses from the data when an option is left at 0 (auto).

Every rule reads only the shape of the *train* split (number of series N, longest series T,
channels C, classes K); the test split is never looked at. The rules and their constants were
chosen by cross-validation on the train splits of aeon datasets outside the issue's panel
(``docs/classify-defaults.md`` says which and what was compared):

- ``stride``: the first conv block's stride, ``ceil(T / 256)``: long series reach the conv
  stack at <= 256 steps (OSULeaf 427 -> 2, ACSF1 1460 -> 6); shorter ones at full resolution.
- ``rnn_window``: the conv features are averaged over windows of this many steps before the
  recurrent layer, ``ceil(T_conv / rnn_steps)``: the recurrent layer reads at most
  ``rnn_steps`` (32) steps; it is the slow part on a CPU (one step after the other).
- ``batch_size``: ``clamp(N // 8, 8, 32)``: small training sets still get several steps per
  epoch.
- ``passes`` (with ``epochs`` at 0): passes over the train split per epoch, enough for
  ``EPOCH_STEPS`` steps: the trainer evaluates and checkpoints after every epoch, which on a
  tiny training set would cost more than the training itself.
- ``epochs``: enough for ``STEPS`` optimizer steps, or as many as fit ``BUDGET_S`` seconds by
  the cost model below (at least ``MIN_STEPS``): tiny training sets get many passes (cosine
  schedule to zero at the end), long series fewer steps.
- ``ensemble``: members trained side by side until the estimated training time reaches
  ``BUDGET_S`` seconds (1 to ``MAX_MEMBERS``): cheap problems get an ensemble, expensive ones
  one model.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["BUDGET_S", "EPOCH_STEPS", "MAX_EPOCHS", "MAX_MEMBERS", "MIN_STEPS", "STEPS", "choose",
           "describe", "step_seconds"]

STEPS = 1000          # optimizer steps per member at most
MIN_STEPS = 300       # ... and at least, whatever the estimated cost
EPOCH_STEPS = 25      # at least this many steps per epoch (auto epochs)
MAX_EPOCHS = 400
MAX_MEMBERS = 5
BUDGET_S = 120.0      # estimated training seconds (all members) on the busy 2-core machine
CONV_LENGTH = 256     # at most this many steps into the conv stack
# cost model of one optimizer step, fitted to steps timed on the 2-core machine (one thread,
# while 3-4 other jobs shared it): the recurrent layer per step it reads (latency bound at
# these batch sizes) and the conv stack per series-step (64 channels; scales with channels^2)
_RNN_S, _CONV_S = 3.0e-3, 4.0e-5


def step_seconds(*, batch: int, conv_len: int, rnn_len: int, channels: int = 64) -> float:
    """Estimated seconds of one training step of one member (the cost model above)."""
    return _RNN_S * rnn_len + _CONV_S * batch * conv_len * (channels / 64) ** 2


def choose(*, n_train: int, max_length: int, cfg: Any) -> dict[str, int]:
    """The auto values (options at 0) for a train split of ``n_train`` series of at most
    ``max_length`` steps; options the user set are returned as given."""
    stride = cfg.stride or math.ceil(max_length / CONV_LENGTH)
    conv_len = math.ceil(max_length / stride)
    window = math.ceil(conv_len / cfg.rnn_steps) if cfg.rnn_steps else 1
    rnn_len = math.ceil(conv_len / window)
    batch = cfg.batch_size or min(32, max(8, n_train // 8), n_train)
    step_s = step_seconds(batch=batch, conv_len=conv_len, rnn_len=rnn_len,
                          channels=cfg.channels)
    passes = cfg.passes or (1 if cfg.epochs else
                            max(1, math.ceil(EPOCH_STEPS * batch / n_train)))
    per_epoch = math.ceil(n_train * passes / batch)
    steps = min(STEPS, max(MIN_STEPS, int(BUDGET_S / step_s)))
    epochs = cfg.epochs or max(1, min(MAX_EPOCHS, math.ceil(steps / per_epoch)))
    members = cfg.ensemble or max(1, min(MAX_MEMBERS,
                                         int(BUDGET_S / (epochs * per_epoch * step_s))))
    return {"stride": stride, "rnn_window": window, "batch_size": batch, "passes": passes,
            "epochs": epochs, "ensemble": members}


def describe(chosen: dict[str, Any]) -> str:
    """One line for the summary: ``"stride 2, rnn window 4, batch 25, 40 epochs of 4 passes,
    1 member"``."""
    m = chosen["ensemble"]
    return (f"stride {chosen['stride']}, rnn window {chosen['rnn_window']}, "
            f"batch {chosen['batch_size']}, {chosen['epochs']} epochs of "
            f"{chosen['passes']} pass{'es' if chosen['passes'] != 1 else ''}, "
            f"{m} member{'s' if m != 1 else ''}")
