"""Model-agnostic training: the loop, checkpoints, DDP, progress hooks, plots, run directories.

Nothing here knows about tasks or the command line (``recur.tasks`` and ``recur.cli`` sit
above); nothing here prints (progress goes to a :class:`Reporter`, the rest to ``logging``).
"""

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .distributed import DistInfo, resolve_device, setup, teardown, unwrap, wrap
from .loop import Trainer, TrainerConfig, detach, make_optimizer, to_device
from .plots import new_figure, plot_history, save_figure
from .progress import LogReporter, Reporter, format_record, format_value
from .rundir import RunDir, atomic_write, jsonable

__all__ = ["Trainer", "TrainerConfig", "make_optimizer", "to_device", "detach",
           "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "seed_everything",
           "DistInfo", "setup", "teardown", "resolve_device", "wrap", "unwrap",
           "Reporter", "LogReporter", "format_record", "format_value",
           "new_figure", "save_figure", "plot_history", "RunDir", "atomic_write", "jsonable"]
