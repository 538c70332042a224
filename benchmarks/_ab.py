"""Timing one model under several settings of a module-level knob, interleaved in one
process (the A/B comparisons of ``whh_layout.py`` and ``step_gemm.py``)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping

import torch
from variants import _once  # one timed call, as the variants grid times it


def interleaved(model: torch.nn.Module, x: torch.Tensor, train: bool,
                settings: Mapping[str, Callable[[], None]], budget: float
                ) -> tuple[int, dict[str, float]]:
    """``(repeats, {name: median seconds})`` of one call of ``model(x)`` (``train``: forward
    + backward) under each setting (a function that sets the knobs), the settings taking
    turns within each repeat; two warm calls each first (kernels, pages); repeats from the
    warm time so that all of them take about ``budget`` seconds (5 to 41)."""
    warm = 0.0
    for apply in settings.values():
        apply()
        _once(model, x, train)
        warm = max(warm, _once(model, x, train))
    reps = max(5, min(41, int(budget / max(len(settings) * warm, 1e-6))))
    got: dict[str, list[float]] = {n: [] for n in settings}
    for _ in range(reps):
        for n, apply in settings.items():
            apply()
            got[n].append(_once(model, x, train))
    return reps, {n: statistics.median(v) for n, v in got.items()}
