"""Glue between a task and the model-agnostic trainer: train, evaluate, predict a run.

These functions are what the ``recur`` command calls, usable from Python too::

    from recur.tasks.runner import train_task, eval_run
    result = train_task("hello", {"epochs": 20, "out": "runs/hello"})
    result.metrics["prediction"]          # 'ohlol'
    eval_run("runs/hello")                # the same metrics, recomputed from the checkpoint

Under ``torchrun`` every process calls :func:`train_task`; the trainer syncs them and only
rank 0 writes the run directory (see :mod:`recur.train.distributed`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..train import (
    RunDir,
    Trainer,
    TrainerConfig,
    plot_history,
    seed_everything,
    setup,
    teardown,
    wrap,
)
from ..train.checkpoint import load_checkpoint, load_model_state
from ..train.distributed import DistInfo, env_info, gather_objects, resolve_device
from ..train.progress import Reporter
from . import get_task
from .base import COMMON_OPTIONS, Config, Task, TaskData, resolve_config

__all__ = ["RunResult", "cpu_threads", "train_task", "load_run", "eval_run", "predict_run",
           "default_out"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run left behind (``metrics`` is ``None`` on ranks other than 0)."""

    config: Config
    run_dir: Path
    metrics: dict[str, Any] | None
    history: list[dict[str, Any]]
    seconds: float
    dist: DistInfo


def default_out(task_name: str) -> Path:
    """``runs/<task>-<YYYYmmdd-HHMMSS>`` under the current directory."""
    return Path("runs") / f"{task_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _saved_options(task_cls: type[Task], run: RunDir) -> dict[str, Any]:
    """The option values stored in ``run``'s config.json (facts about the run dropped)."""
    saved = run.read_json(RunDir.CONFIG)
    if saved.get("task") != task_cls.name:
        raise ValueError(f"{run.path} holds a run of task {saved.get('task')!r}, "
                         f"not {task_cls.name!r}")
    names = {o.name for o in (*COMMON_OPTIONS, *task_cls.options)}
    return {**task_cls.saved_before, **{k: v for k, v in saved.items() if k in names}}


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block (0 leaves PyTorch's setting).

    Small recurrent models gain nothing from more intra-op threads, and on a busy machine
    OpenMP threads that wait for each other can make each step 100x slower (measured on a
    loaded 2-core machine: lagged-sine, 21 s per epoch with 2 threads, 0.1 s with 1).
    """
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _trainer_config(cfg: Config, task_cls: type[Task]) -> TrainerConfig:
    return TrainerConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                         optimizer=cfg.optimizer, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay, clip=cfg.clip, schedule=cfg.schedule,
                         seed=cfg.seed, shuffle=task_cls.shuffle,
                         bucket=getattr(cfg, "bucket", 0))


def train_task(name: str, overrides: Mapping[str, Any] | None = None, *,
               reporter: Reporter | None = None) -> RunResult:
    """Train task ``name`` with option values ``overrides`` (``None`` = "not given").

    With ``resume=True`` the run in ``out`` continues: its config.json is the base, options
    given here override it (typically ``epochs``), and training restarts after the last
    finished epoch from its checkpoint. Raises ``ValueError`` for bad options, an existing run
    directory without ``resume``, or a task that cannot run distributed under torchrun.
    """
    started = time.perf_counter()
    task_cls = get_task(name)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given.get("resume"):
        if not given.get("out"):
            raise ValueError("--resume needs --out RUN_DIR (the run to continue)")
        run = RunDir(given["out"])
        if not run.checkpoint.is_file():
            raise ValueError(f"--resume: no checkpoint in {run.path} to continue from")
        given = {**_saved_options(task_cls, run), **given}
    cfg = resolve_config(task_cls, given)

    if env_info().enabled and not task_cls.distributed:
        raise ValueError(f"task {name!r} cannot be split across processes "
                         f"({task_cls.__doc__.strip().splitlines()[0].lower()}); run it in "
                         f"one process")
    dist, device = setup(cfg.device)
    try:
        with cpu_threads(cfg.threads):
            run, metrics, history = _run(task_cls, cfg, dist, device, reporter)
    finally:
        teardown()
    return RunResult(cfg, run.path, metrics, history, time.perf_counter() - started, dist)


def _run(task_cls: type[Task], cfg: Config, dist: DistInfo, device: torch.device,
         reporter: Reporter | None) -> tuple[RunDir, dict[str, Any] | None, list[dict]]:
    """Build, train, measure and plot (every rank; only rank 0 writes)."""
    out = cfg.out or str(default_out(task_cls.name))
    cfg.out = gather_objects(out, dist)[0]  # every rank uses rank 0's directory
    run = RunDir(cfg.out)
    if not cfg.resume and run.checkpoint.exists():
        raise ValueError(f"{run.path} already holds a run: pass --resume to continue it "
                         f"or choose another --out")

    seed_everything(cfg.seed)
    task = task_cls(cfg)
    data = task.build_data()
    model = task.build_model(data.info).to(device)
    if dist.enabled:  # same initial weights everywhere, a different dropout stream per rank
        torch.manual_seed(cfg.seed + 1_000_003 * dist.rank)
    if dist.is_main:
        run.write_json(RunDir.CONFIG, {**cfg.to_dict(), "world_size": dist.world_size,
                                       "device_used": str(device)})
        run.write_json(RunDir.INFO, data.info)

    trainer = Trainer(wrap(model, dist, device), data.train, _trainer_config(cfg, task_cls),
                      step=task.training_step, evaluate=lambda m: task.evaluate(m, data),
                      device=device, collate=data.collate, lengths=data.lengths,
                      callbacks=task.callbacks(data),
                      reporter=reporter, run=run, dist=dist)
    history = trainer.fit(resume_from=run.checkpoint if cfg.resume else None)

    metrics = None
    if dist.is_main:
        model.eval()
        with torch.no_grad():
            metrics = task.final_metrics(model, data)
            run.write_json(RunDir.METRICS, metrics)
            plot_history(history, run / "loss.png", title=f"{task_cls.name}: loss")
            task.plots(model, data, run.path)
    return run, metrics, history


def load_run(run_dir: str | Path, device: str = "auto"
             ) -> tuple[Task, nn.Module, dict[str, Any], RunDir]:
    """``(task, model, info, run)`` of a finished run: the model has its trained weights and
    is in eval mode on ``device``."""
    run = RunDir(run_dir)
    saved = run.read_json(RunDir.CONFIG)
    task_cls = get_task(saved.get("task", ""))
    cfg = resolve_config(task_cls, {**_saved_options(task_cls, run), "device": device})
    torch_device = resolve_device(cfg.device)
    task = task_cls(cfg)
    info = run.read_json(RunDir.INFO)
    model = task.build_model(info)
    load_model_state(model, load_checkpoint(run.checkpoint)["model"], run.checkpoint)
    return task, model.to(torch_device).eval(), info, run


def eval_run(run_dir: str | Path, device: str = "auto") -> tuple[Config, dict[str, Any]]:
    """Rebuild the data of a run, load its checkpoint and recompute its final metrics."""
    task, model, _, _ = load_run(run_dir, device)
    seed_everything(task.cfg.seed)
    with cpu_threads(task.cfg.threads), torch.no_grad():
        data: TaskData = task.build_data()
        metrics = task.final_metrics(model, data)
    return task.cfg, metrics


def predict_run(run_dir: str | Path, args: Mapping[str, Any],
                device: str = "auto") -> tuple[Task, dict[str, Any]]:
    """``task.predict`` of a trained run; ``args`` are values of ``Task.predict_options``."""
    task, model, info, run = load_run(run_dir, device)
    options = {o.name: o for o in task.predict_options}
    values = {name: o.default for name, o in options.items()}
    for key, value in args.items():
        if key not in options:
            raise ValueError(f"task {task.name!r} has no predict option {key!r}; "
                             f"valid: {', '.join(options) or 'none'}")
        if value is not None:
            values[key] = value
    checked = Config(**{k: options[k].check(v) for k, v in values.items()})
    with cpu_threads(task.cfg.threads), torch.no_grad():
        return task, task.predict(model, info, checked, run.path)
