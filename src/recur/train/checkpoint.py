"""Checkpoints: everything needed to continue a run bit for bit, saved atomically.

A checkpoint is one ``torch.save`` dict of tensors and plain Python values only, so it loads
with ``torch.load(weights_only=True)`` (no pickled code is ever executed)::

    {
      "format": 1,
      "epoch": int,                      # epochs finished
      "step": int,                       # optimizer steps taken
      "model": state_dict,               # unwrapped (no "module." prefix from DDP)
      "optimizer": optimizer.state_dict(),
      "rng": [rng_state(rank 0), rng_state(rank 1), ...],   # one per process
      "history": [record, ...],          # the metrics.jsonl lines so far
    }

The data order is not stored: it is a function of (seed, epoch) (see :mod:`.loop`), so restoring
the epoch, the RNG states and the optimizer state gives the same final metrics as a run that was
never interrupted.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .rundir import atomic_write

__all__ = ["FORMAT", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint",
           "load_model_state", "seed_everything"]

FORMAT = 1


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's random states as tensors and plain values (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None, epoch: int, step: int,
                    rng: list[dict[str, Any]], history: list[dict[str, Any]]) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, ``os.replace``)."""
    payload = {
        "format": FORMAT,
        "epoch": int(epoch),
        "step": int(step),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "rng": rng,
        "history": history,
    }
    atomic_write(path, lambda f: torch.save(payload, f), binary=True)
    return Path(path)


#: keys every checkpoint of :data:`FORMAT` holds
KEYS = ("format", "epoch", "step", "model", "optimizer", "rng", "history")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; check its format.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: one line naming ``path`` when it is not a readable recur checkpoint
            (truncated, corrupt, another format, or holding objects other than tensors and
            plain values); PyTorch's own message is not repeated, since it ends in advice to
            load with ``weights_only=False``, which would execute the file's pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError:
        raise ValueError(f"{path} is not a readable recur checkpoint: expected tensors and "
                         f"plain values only, got other Python objects (not loaded: "
                         f"that would run code from the file)") from None
    except Exception as err:  # torch.load raises RuntimeError, EOFError, ... for bad bytes
        raise ValueError(f"{path} is not a readable recur checkpoint: expected a complete "
                         f"torch.save file, got a truncated or corrupt one "
                         f"({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a readable recur checkpoint: expected format "
                         f"{FORMAT}, got {found!r}")
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path} is not a readable recur checkpoint: expected the keys "
                         f"{', '.join(KEYS)}, got no {', '.join(missing)}")
    if not isinstance(payload["model"], dict):
        raise ValueError(f"{path} is not a readable recur checkpoint: expected a state dict "
                         f"under 'model', got {type(payload['model']).__name__}")
    return payload


def load_model_state(model: nn.Module, state: dict[str, Any], path: str | os.PathLike) -> None:
    """``model.load_state_dict(state)`` (strict); weights of another model (names or shapes
    that do not fit) raise ``ValueError``, one line naming ``path``, the checkpoint they came
    from, instead of PyTorch's list of every mismatch."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = detail[1] if len(detail) > 1 else (detail[0] if detail else "")
        more = f" and {len(detail) - 2} more" if len(detail) > 2 else ""
        raise ValueError(f"{path} is not a readable recur checkpoint of this run: expected the "
                         f"weights of the model its config.json describes, got others "
                         f"({first[:160]}{more})") from None
