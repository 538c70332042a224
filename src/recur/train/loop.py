"""The training loop. Nothing in this file knows which model or task it trains.

The trainer is given a model, a map-style dataset and two functions::

    step(model, batch, carry) -> (loss, carry)     # one batch; carry: state kept across steps
    evaluate(model) -> {"loss": ..., ...}          # after every epoch, model unwrapped, eval()

and runs ``epochs`` epochs of ``batch_size`` items. ``carry`` starts as ``None`` in each epoch
and its tensors are detached between steps (truncated backpropagation through time for tasks
that carry a hidden state from one window to the next). Callbacks may add to an epoch's record
and return a message for the user; the :class:`~recur.train.progress.Reporter` hears about
steps, epochs and messages (the trainer never prints).

Reproducibility: the order of the data in epoch ``e`` is a function of ``(seed, e)`` only
(``DistributedSampler.set_epoch``, also used with one process, or the same of
:class:`~recur.train.batching.LengthBuckets`), and the checkpoint written after
every epoch holds the model, the optimizer and every process's RNG states. So a run stopped
after epoch k and resumed ends bit for bit where an uninterrupted run ends.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from .batching import LengthBuckets
from .checkpoint import load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state
from .distributed import DistInfo, all_mean, gather_objects, unwrap
from .progress import Reporter
from .rundir import RunDir

__all__ = ["TrainerConfig", "Trainer", "make_optimizer", "scheduled_lr", "to_device", "detach"]

log = logging.getLogger(__name__)

StepFn = Callable[[nn.Module, Any, Any], "tuple[Tensor, Any]"]


@dataclass
class TrainerConfig:
    """Knobs of the loop (the CLI's common options map onto these one to one)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"          # adam | adamw | sgd
    momentum: float = 0.0            # sgd only
    weight_decay: float = 0.0
    clip: float = 0.0                # max gradient norm; 0 = no clipping
    schedule: str = "constant"       # constant | cosine (lr -> 0 at the last step of the run)
    seed: int = 0                    # data order
    shuffle: bool = True             # reshuffle the training set each epoch
    bucket: int = 0                  # > 0 with item lengths: batches of similar length drawn
                                     # from sorted windows of this many batches (batching.py)


def make_optimizer(params, cfg: TrainerConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` with ``cfg.lr``/``momentum``/``weight_decay``.

    Adam and AdamW use PyTorch's fused kernels (``fused=True``) where every parameter is a
    floating-point tensor on a device that has them (the CPU and CUDA since torch 2.4): the
    same update, one kernel over each tensor instead of a dozen operators, which matters
    where the for-loop update would dominate a step: a model with a large embedding table
    (the sentiment task's). Elsewhere the default.
    A resumed run keeps the setting its checkpoint's optimizer state was saved with
    (``Optimizer.load_state_dict`` restores each group's ``fused``): the same update either
    way.
    """
    if cfg.optimizer in ("adam", "adamw"):
        if not isinstance(params, Tensor):       # a bare tensor: torch's own TypeError below
            params = [{**p, "params": _listed(p["params"])} if isinstance(p, dict) else p
                      for p in params]
        kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        kw = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
        if _fusable(params):
            return kind(params, fused=True, **kw)
        return kind(params, **kw)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {cfg.optimizer!r}")


def _listed(params) -> list:
    """A group's ``params`` as a list (one tensor, as torch.optim takes it, or an iterable)."""
    return [params] if isinstance(params, Tensor) else list(params)


def _fusable(params) -> bool:
    """Whether PyTorch's fused Adam / AdamW takes ``params`` (tensors, ``(name, tensor)``
    pairs or groups of them, as listed by :func:`make_optimizer`)."""
    if isinstance(params, Tensor):
        return False
    items = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    tensors = [t[1] if isinstance(t, tuple) else t for t in items]
    return bool(tensors) and all(
        isinstance(t, Tensor) and t.is_floating_point() and t.device.type in ("cpu", "cuda")
        for t in tensors)


def scheduled_lr(cfg: TrainerConfig, step: int, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``: a function of
    the step alone, so a resumed run needs no scheduler state."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))
    raise ValueError(f"schedule must be 'constant' or 'cosine', got {cfg.schedule!r}")


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested tuple / list / dict / namedtuple) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def detach(value: Any) -> Any:
    """``value`` with every tensor detached from the graph (nested tuples / lists / dicts)."""
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {k: detach(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [detach(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


class Trainer:
    """Fits ``model`` on ``train_set``; rank 0 writes ``metrics.jsonl`` and checkpoints.

    Args:
        model: the model to train, already on ``device`` (wrapped in DDP when distributed).
        train_set: map-style dataset; items are batched by ``collate``.
        config: :class:`TrainerConfig`.
        step: ``step(model, batch, carry) -> (loss, carry)``.
        evaluate: ``evaluate(unwrapped_model) -> dict`` after every epoch (logged as
            ``val_<key>``); ``None`` logs only the training loss.
        device: where batches go.
        collate: the ``DataLoader`` collate function (``None``: PyTorch's default).
        lengths: ``[N]`` each training item's length; with ``config.bucket > 0`` the batches
            are :class:`~recur.train.batching.LengthBuckets` of similar-length items.
        callbacks: objects with ``on_epoch_end(epoch, model, record) -> str | None``.
        reporter: progress hooks (rank 0 only); silent by default.
        run: where rank 0 writes ``metrics.jsonl`` and ``checkpoint.pt`` (``None``: nowhere);
            give it to every rank (all ranks take part in gathering the RNG states).
        dist: this process's place in a DDP group.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, config: TrainerConfig, *,
                 step: StepFn, evaluate: Callable[[nn.Module], dict] | None = None,
                 device: torch.device | str = "cpu", collate: Callable | None = None,
                 lengths: Tensor | None = None,
                 callbacks: Sequence[Any] = (), reporter: Reporter | None = None,
                 run: RunDir | None = None, dist: DistInfo | None = None) -> None:
        self.model = model
        self.config = config
        self.step_fn = step
        self.evaluate_fn = evaluate
        self.device = torch.device(device)
        self.callbacks = list(callbacks)
        self.dist = dist or DistInfo()
        self.reporter = reporter if (reporter is not None and self.dist.is_main) else Reporter()
        self.run = run            # every rank holds it; only rank 0 writes
        if config.bucket > 0:
            if lengths is None or not config.shuffle:
                raise ValueError(f"bucket={config.bucket} needs the training items' lengths "
                                 f"and shuffled batches, got "
                                 f"{'no lengths' if lengths is None else 'lengths'} and "
                                 f"shuffle={config.shuffle}")
            self.sampler = LengthBuckets(lengths, config.batch_size, config.bucket,
                                         seed=config.seed, rank=self.dist.rank,
                                         world=self.dist.world_size)
            if len(self.sampler.lengths) != len(train_set):
                raise ValueError(f"lengths must give one length per training item: "
                                 f"{len(train_set)} items, {len(self.sampler.lengths)} "
                                 f"lengths")
            self.loader = DataLoader(train_set, batch_sampler=self.sampler, collate_fn=collate)
        else:
            self.sampler = DistributedSampler(train_set, num_replicas=self.dist.world_size,
                                              rank=self.dist.rank, shuffle=config.shuffle,
                                              seed=config.seed, drop_last=False)
            self.loader = DataLoader(train_set, batch_size=config.batch_size,
                                     sampler=self.sampler, collate_fn=collate)
        self.optimizer = make_optimizer(model.parameters(), config)
        self.epoch = 0          # epochs finished
        self.global_step = 0    # optimizer steps taken
        self.history: list[dict[str, Any]] = []

    # ---- checkpoints ----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Checkpoint after an epoch; every rank must call it (RNG states are gathered)."""
        states = gather_objects(rng_state(), self.dist)
        if self.dist.is_main:
            save_checkpoint(path, model=unwrap(self.model), optimizer=self.optimizer,
                            epoch=self.epoch, step=self.global_step, rng=states,
                            history=self.history)

    def restore(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimizer, epoch, history, RNG states."""
        ckpt = load_checkpoint(path, map_location=self.device)
        load_model_state(unwrap(self.model), ckpt["model"], path)
        if ckpt["optimizer"]:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.global_step = ckpt["epoch"], ckpt["step"]
        self.history = list(ckpt["history"])
        states = ckpt["rng"]
        if len(states) != self.dist.world_size:
            log.warning("checkpoint has RNG states of %d processes, this run has %d: dropout "
                        "streams will differ from an uninterrupted run", len(states),
                        self.dist.world_size)
        set_rng_state(states[self.dist.rank % len(states)])
        if self.run is not None and self.dist.is_main:
            self.run.write_history(self.history)
        log.info("resumed from %s after epoch %d (step %d)", path, self.epoch, self.global_step)

    # ---- the loop -------------------------------------------------------------------------
    def train_epoch(self) -> float:
        """One pass over this process's shard; returns the mean loss over all processes."""
        cfg, model = self.config, self.model
        self.sampler.set_epoch(self.epoch)
        model.train()
        carry, total, count = None, 0.0, 0
        total_steps = cfg.epochs * len(self.loader)
        for i, batch in enumerate(self.loader, 1):
            if cfg.schedule != "constant":
                for group in self.optimizer.param_groups:
                    group["lr"] = scheduled_lr(cfg, self.global_step, total_steps)
            batch = to_device(batch, self.device)
            loss, carry = self.step_fn(model, batch, carry)
            value = loss.detach().item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at epoch {self.epoch + 1}, "
                                         f"step {i}: lower --lr or set --clip")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            self.optimizer.step()
            carry = detach(carry)
            self.global_step += 1
            total += value
            count += 1
            self.reporter.on_step(epoch=self.epoch + 1, step=i, loss=value)
        return all_mean(total / max(count, 1), count, self.dist)

    def fit(self, resume_from: str | Path | None = None) -> list[dict[str, Any]]:
        """Train until ``config.epochs`` epochs are done; returns the history of records."""
        if resume_from is not None:
            self.restore(resume_from)
        cfg = self.config
        self.reporter.on_fit_start(start_epoch=self.epoch, epochs=cfg.epochs,
                                   steps_per_epoch=len(self.loader))
        while self.epoch < cfg.epochs:
            started = time.perf_counter()
            train_loss = self.train_epoch()
            self.epoch += 1
            record: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step,
                                      "train_loss": train_loss}
            inner = unwrap(self.model)
            inner.eval()
            with torch.no_grad():
                metrics = self.evaluate_fn(inner) if self.evaluate_fn is not None else {}
            record.update({f"val_{k}": v for k, v in metrics.items()})
            for callback in self.callbacks:
                text = callback.on_epoch_end(self.epoch, inner, record)
                if text:
                    self.reporter.message(text)
            record["seconds"] = round(time.perf_counter() - started, 4)
            self.history.append(record)
            if self.run is not None:
                if self.dist.is_main:
                    self.run.append_history(record)
                self.save(self.run.checkpoint)
            self.reporter.on_epoch_end(record)
        self.reporter.on_fit_end(self.history)
        return self.history
