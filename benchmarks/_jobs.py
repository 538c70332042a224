"""Running a benchmark's independent runs one after another or in spawned processes."""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
from collections.abc import Callable, Iterable


def quiet() -> None:
    """Silence the runs' own progress lines (library logging below WARNING)."""
    logging.disable(logging.WARNING)


def run_jobs(fn: Callable[..., dict], runs: Iterable[tuple], jobs: int,
             report: Callable[[dict], dict] = lambda row: row) -> list[dict]:
    """``[report(fn(*run)) for run in runs]`` in order; with ``jobs > 1`` the runs go to that
    many spawned processes (each quieted), results collected in the runs' order."""
    runs = list(runs)
    if jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {jobs}")
    if jobs == 1:
        return [report(fn(*run)) for run in runs]
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=quiet) as pool:
        futures = [pool.submit(fn, *run) for run in runs]
        return [report(f.result()) for f in futures]
