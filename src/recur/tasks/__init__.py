"""Tasks: one file per experiment (data + model head + loss + metrics + plots + defaults).

The registry imports a fixed list of task modules, :data:`TASK_MODULES` (an import error is
raised: every listed module exists). To add a task, write
``recur/tasks/<module>.py`` with a ``@register``-ed :class:`~recur.tasks.base.Task` subclass and
add ``<module>`` to :data:`TASK_MODULES`. The interface is documented in :mod:`recur.tasks.base`.
"""

from __future__ import annotations

import importlib

from .base import (
    COMMON_OPTIONS,
    REGISTRY,
    Callback,
    Config,
    Option,
    Task,
    TaskData,
    UnknownTaskError,
    model_device,
    register,
    resolve_config,
)

#: Modules that hold tasks, in the order ``recur tasks`` lists them.
TASK_MODULES: tuple[str, ...] = (
    "hello", "sine_cos", "lagged_sine", "next_frame",   # the classic lessons
    "sentiment", "classify", "forecast",                # real sequence data
)

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in TASK_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    _loaded = True


def all_tasks() -> dict[str, type[Task]]:
    """Every registered task, by name, in :data:`TASK_MODULES` order (tasks registered from
    other modules last), whatever order the modules were imported in."""
    _load_all()
    order = {f"{__name__}.{m}": i for i, m in enumerate(TASK_MODULES)}
    ranked = sorted(REGISTRY.items(), key=lambda kv: order.get(kv[1].__module__, len(order)))
    return dict(ranked)


def task_names() -> list[str]:
    return list(all_tasks())


def get_task(name: str) -> type[Task]:
    """The task class called ``name``; :class:`UnknownTaskError` lists the valid names."""
    tasks = all_tasks()
    if name not in tasks:
        raise UnknownTaskError(f"unknown task {name!r} (choose from {', '.join(tasks)})")
    return tasks[name]


__all__ = ["TASK_MODULES", "all_tasks", "task_names", "get_task", "Task", "TaskData", "Option",
           "Config", "Callback", "COMMON_OPTIONS", "REGISTRY", "register", "resolve_config",
           "model_device", "UnknownTaskError"]
