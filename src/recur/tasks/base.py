"""The Task interface and the task registry.

A *task* is one experiment: how its data is made, which model it trains, its loss and
metrics, its pictures, and (optionally) what ``recur predict`` does with a trained run. A task
knows nothing about the command line: it declares its options as data (:class:`Option`), and
the CLI turns those into flags. The trainer (:mod:`recur.train`) knows nothing about tasks: the
runner (:mod:`recur.tasks.runner`) glues the two together.

Writing a task::

    @register
    class Echo(Task):
        name = "echo"                                   # `recur train echo`
        summary = "copy a sequence, one line for `recur tasks`"
        options = (Option("seq_len", int, 20, "steps per sequence"),)   # --seq-len
        defaults = {"cell": "gru", "hidden": 32, "epochs": 5}           # common-option defaults

        def build_data(self) -> TaskData:              # deterministic given self.cfg
            ...
            return TaskData(train=train_set, val=val_set, info={"vocab": 10})

        def build_model(self, info) -> nn.Module:      # from info only (predict has no data)
            return EchoNet(info["vocab"], self.cfg.hidden, cell=self.cfg.cell)

        def loss(self, model, batch) -> Tensor:        # scalar; batch is already on the device
            x, y = batch
            return F.cross_entropy(model(x).flatten(0, 1), y.flatten())

Life of a run (``recur train TASK``; see :func:`recur.tasks.runner.train_task`):

1. ``cfg = resolve_config(TaskClass, overrides)``: common defaults < ``Task.defaults`` <
   task option defaults < command-line values. ``cfg`` is a :class:`Config` (attribute access:
   ``cfg.hidden``, ``cfg.seq_len``); it is saved as ``config.json``.
2. ``task = TaskClass(cfg)``; ``data = task.build_data()``; ``model = task.build_model(data.info)``.
   ``data.info`` (JSON-able) is saved as ``info.json`` so that ``eval``/``predict`` can rebuild the
   model without rebuilding the data.
3. The trainer runs ``cfg.epochs`` epochs over ``data.train`` (``cfg.batch_size`` items per batch,
   reshuffled each epoch when ``Task.shuffle``, sharded across processes under DDP). Each step
   calls ``task.training_step(model, batch, carry)``; after each epoch it calls
   ``task.evaluate(model, data)`` (its keys are logged to ``metrics.jsonl`` as ``val_<key>``)
   and every callback of ``task.callbacks(data)``.
4. ``metrics.json`` = ``task.final_metrics(model, data)``; ``task.plots(model, data, run_dir)``
   saves the task's PNGs (the runner adds ``loss.png``).

``recur eval RUN_DIR`` rebuilds ``task``, ``data`` and ``model`` from ``config.json``, loads the
checkpoint and prints ``task.final_metrics(model, data)``. ``recur predict RUN_DIR [flags]`` parses
``Task.predict_options`` and prints ``task.predict(model, info, args, run_dir)``.

Rules: a task never prints (use ``logging``); ``build_data`` is deterministic given ``cfg``
(seed your own ``torch.Generator`` from ``cfg.seed``); in ``training_step`` call the model only
as ``model(...)`` (it may be wrapped in ``DistributedDataParallel``); in ``evaluate`` and later
hooks the model is unwrapped and in ``eval()`` mode. Find the device with :func:`model_device`.
Bad user input (a malformed file, a missing column, an impossible option value) raises
``ValueError`` with the expected and the received value: the CLI prints it as one line,
``recur train TASK: error: ...``, without usage or traceback (exit status 2). ``evaluate``/``final_metrics``/``plots``/``predict``
run under ``torch.no_grad()``; ``batch_len`` (used by the default ``evaluate``) assumes
batch-first batches. Models: :class:`recur.tasks.models.SeqModel` (recur ``RNN``/``LSTM``/``GRU``
+ linear head, per step or pooled at each row's last valid step with ``lengths=``) and
:func:`recur.tasks.models.from_config` build one from the common options.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..ops.dispatch import BACKENDS
from ..train.loop import to_device
from .models import CELL_NAMES

__all__ = ["Option", "Config", "COMMON_OPTIONS", "TaskData", "Callback", "Task", "register",
           "REGISTRY", "resolve_config", "model_device", "UnknownTaskError"]


@dataclass(frozen=True)
class Option:
    """One option of a task, declared as data (the CLI makes the flag ``--seq-len`` from it).

    Args:
        name: a Python identifier, the key in :class:`Config` (``"seq_len"``).
        type: ``int | float | str | bool``; a ``bool`` option becomes ``--flag / --no-flag``.
        default: value when not given (``None`` allowed: "not set").
        help: one line for ``--help``.
        choices: allowed values, or ``None`` for any.
        multiple: the flag may be repeated; the value is the list of the values given.
    """

    name: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple | None = None
    multiple: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """Convert ``value`` to ``self.type`` and check ``choices``; raise ``ValueError``.
        A ``multiple`` option takes a list (or one value) and returns a list."""
        if value is None:
            return None
        if self.multiple:
            values = value if isinstance(value, (list, tuple)) else [value]
            return [replace(self, multiple=False).check(v) for v in values]
        if self.type is bool and not isinstance(value, bool):
            raise ValueError(f"{self.flag}: expected true/false, got {value!r}")
        if self.type in (int, float) and isinstance(value, bool):
            raise ValueError(f"{self.flag}: expected {self.type.__name__}, got {value!r}")
        try:
            value = self.type(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.flag}: expected {self.type.__name__}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.flag}: invalid choice {value!r} "
                             f"(choose from {', '.join(map(str, self.choices))})")
        return value


#: Options every task has (``recur train TASK --hidden 64 ...``); tasks change their defaults
#: through ``Task.defaults``. ``out`` and ``resume`` belong to the run, not to the model.
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("cell", str, "lstm", "recurrent cell (every cell recur ships)", CELL_NAMES),
    Option("hidden", int, 64, "hidden units per layer"),
    Option("layers", int, 1, "stacked recurrent layers"),
    Option("bidirectional", bool, False, "run a reversed direction too"),
    Option("dropout", float, 0.0, "dropout between recurrent layers"),
    Option("zoneout", float, 0.0, "zoneout: probability of keeping each state unit's old "
           "value per step (0: off)"),
    Option("recurrent_dropout", float, 0.0, "drop probability of the per-sequence mask on "
           "h_{t-1} (0: off)"),
    Option("epochs", int, 10, "passes over the training set"),
    Option("batch_size", int, 32, "items per batch (per process under DDP)"),
    Option("lr", float, 1e-3, "learning rate"),
    Option("optimizer", str, "adam", "optimizer", ("adam", "adamw", "sgd")),
    Option("momentum", float, 0.0, "SGD momentum"),
    Option("weight_decay", float, 0.0, "weight decay"),
    Option("clip", float, 0.0, "clip the gradient norm to this value (0: off)"),
    Option("schedule", str, "constant", "learning rate over the run: constant, or cosine "
           "decay to 0 at the last step", ("constant", "cosine")),
    Option("seed", int, 0, "random seed (data, init, order, dropout)"),
    Option("device", str, "auto", "where to train", ("auto", "cpu", "cuda")),
    Option("threads", int, 0, "CPU threads for PyTorch's ops (0: PyTorch's default); "
           "small models run fastest with 1"),
    Option("backend", str, "auto", "recur backend (see recur.explain)", BACKENDS),
    Option("out", str, None, "run directory (default: runs/TASK-DATE-TIME)"),
    Option("resume", bool, False, "continue the run in --out from its checkpoint"),
)


class Config(types.SimpleNamespace):
    """The resolved configuration of a run: ``cfg.hidden``, ``cfg.seq_len``, ``cfg.task``."""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def resolve_config(task_cls: type[Task], overrides: Mapping[str, Any] | None = None) -> Config:
    """Common defaults < ``task_cls.defaults`` < task option defaults < ``overrides``.

    ``overrides`` may hold only known names (``ValueError`` names the unknown one and the
    valid ones); ``None`` values in ``overrides`` mean "not given". Adds ``cfg.task``.
    """
    options = {o.name: o for o in (*COMMON_OPTIONS, *task_cls.options)}
    values = {o.name: o.default for o in COMMON_OPTIONS}
    for key, value in task_cls.defaults.items():
        if key not in options:
            raise ValueError(f"task {task_cls.name!r}: default for unknown option {key!r}")
        values[key] = value
    values.update({o.name: o.default for o in task_cls.options})
    for key, value in (overrides or {}).items():
        if key == "task":
            continue
        if key not in options:
            raise ValueError(f"unknown option {key!r} for task {task_cls.name!r}; "
                             f"valid: {', '.join(sorted(options))}")
        if value is not None:
            values[key] = value
    checked = {key: options[key].check(value) for key, value in values.items()}
    return Config(task=task_cls.name, **checked)


@dataclass
class TaskData:
    """What ``Task.build_data`` returns.

    Attributes:
        train: map-style dataset of training items (batched by ``collate``).
        val: evaluated after every epoch; ``None`` evaluates on ``train``.
        test: optional held-out set for ``final_metrics``.
        collate: ``DataLoader`` collate function (``None``: PyTorch's default).
        info: JSON-able facts the model and ``predict`` need (sizes, vocabulary, scaling);
            saved as ``info.json`` in the run directory.
        lengths: ``[len(train)]`` each training item's length, for tasks with a ``bucket``
            option (batches of similar-length items, :mod:`recur.train.batching`).
    """

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    collate: Callable | None = None
    info: dict[str, Any] = field(default_factory=dict)
    lengths: Tensor | None = None


class Callback:
    """A hook the trainer calls; a returned string is a message the CLI shows to the user."""

    def on_epoch_end(self, epoch: int, model: nn.Module, record: dict[str, Any]) -> str | None:
        """After epoch ``epoch`` (1-based) was evaluated. ``model`` is unwrapped and in eval
        mode; ``record`` (the ``metrics.jsonl`` line) may be extended with JSON-able values."""
        return None


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class Task:
    """Base class of all tasks; subclass, set the class attributes, override the hooks."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    predict_options: ClassVar[tuple[Option, ...]] = ()
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: the value of an option a run saved before the option existed (its config.json lacks
    #: it), where that differs from today's default: such a run loads, resumes and predicts
    #: as it was trained
    saved_before: ClassVar[Mapping[str, Any]] = {}
    #: reshuffle the training set every epoch (False: items in order, e.g. carried state)
    shuffle: ClassVar[bool] = True
    #: False when the task cannot be sharded across processes (DDP refuses it with a reason)
    distributed: ClassVar[bool] = True

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    # ---- data and model -----------------------------------------------------------------
    def build_data(self) -> TaskData:
        raise NotImplementedError

    def build_model(self, info: Mapping[str, Any]) -> nn.Module:
        raise NotImplementedError

    # ---- training -----------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Scalar loss of one batch (already on the model's device)."""
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any, carry: Any) -> tuple[Tensor, Any]:
        """One step: ``(loss, carry)``. ``carry`` is what the previous step of this epoch
        returned (``None`` at the start of an epoch); the trainer detaches its tensors, which is
        truncated backpropagation through time. Default: ``(self.loss(model, batch), None)``."""
        return self.loss(model, batch), None

    def callbacks(self, data: TaskData) -> list[Callback]:
        return []

    # ---- measuring ----------------------------------------------------------------------
    def evaluate(self, model: nn.Module, data: TaskData) -> dict[str, float]:
        """Metrics on ``data.val`` (or ``data.train``) after each epoch; must include "loss".
        Default: the mean of ``self.loss`` over batches, weighted by batch size."""
        dataset = data.val if data.val is not None else data.train
        loader = DataLoader(dataset, batch_size=self.cfg.batch_size, collate_fn=data.collate)
        device = model_device(model)
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in loader:
                batch = to_device(batch, device)
                n = batch_len(batch)
                total += float(self.loss(model, batch)) * n
                count += n
        return {"loss": total / max(count, 1)}

    def final_metrics(self, model: nn.Module, data: TaskData) -> dict[str, Any]:
        """The content of ``metrics.json`` (JSON-able). Default: ``self.evaluate(model, data)``."""
        return self.evaluate(model, data)

    def plots(self, model: nn.Module, data: TaskData, out_dir: Path) -> list[Path]:
        """Save the task's own PNGs into ``out_dir``; return their paths."""
        return []

    # ---- using a trained run ------------------------------------------------------------
    def predict(self, model: nn.Module, info: Mapping[str, Any], args: Config,
                run_dir: Path) -> dict[str, Any]:
        """``recur predict RUN_DIR``: ``args`` holds ``predict_options``; returns JSON-able."""
        raise NotImplementedError(f"task {self.name!r} has no predict")


def batch_len(batch: Any) -> int:
    """Number of items in a batch: the first dimension of its first tensor (batches are
    batch-first; a task with time-major batches overrides ``evaluate``)."""
    if isinstance(batch, Tensor):
        return batch.shape[0] if batch.dim() else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    for value in batch:
        if isinstance(value, (Tensor, dict, list, tuple)):
            return batch_len(value)
    return 1


class UnknownTaskError(ValueError):
    """``recur train NAME`` with a name no task has; the message lists the valid names."""


#: name → task class, filled by :func:`register` when a task module is imported.
REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: add a task to :data:`REGISTRY` under ``cls.name``."""
    if not cls.name or not cls.summary:
        raise ValueError(f"{cls.__name__}: a task needs a name and a one-line summary")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"two tasks named {cls.name!r}: {REGISTRY[cls.name]} and {cls}")
    REGISTRY[cls.name] = cls
    return cls
