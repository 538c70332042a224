"""Multi-process training with PyTorch's own engine (DistributedDataParallel).

Run any task on N processes with::

    torchrun --standalone --nproc_per_node 2 -m recur train lagged-sine --epochs 3

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` sees them, joins
the process group (``gloo`` on CPU, ``nccl`` on CUDA) and pins each process to its GPU. The
trainer then wraps the model in ``DistributedDataParallel`` (gradients are averaged across
processes in ``backward``), gives each process a ``DistributedSampler`` shard of the data, and
only rank 0 writes files or reports progress. Without those variables everything here is a
no-op and :class:`DistInfo` says ``world_size == 1``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "env_info", "setup", "teardown", "resolve_device", "wrap", "unwrap",
           "all_mean", "gather_objects"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``; ``is_main`` writes the files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """The :class:`DistInfo` described by torchrun's environment variables (or a single one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ["RANK"]), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """``"auto" | "cpu" | "cuda"`` → a device; under DDP on CUDA, this process's GPU."""
    info = info or DistInfo()
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank % torch.cuda.device_count())


def setup(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group if torchrun started us; return ``(info, device)``."""
    info = env_info()
    device = resolve_device(device_name, info)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
        log.info("rank %d of %d joined the %s process group on %s", info.rank,
                 info.world_size, backend, device)
    return info, device


def teardown() -> None:
    """Leave the process group (no-op when not distributed).

    torch's gloo worker threads outlive this call; a script of yours that calls
    :func:`recur.tasks.runner.train_task` under torchrun can abort at interpreter shutdown
    (pytorch/pytorch#190489): end it with ``os._exit`` after flushing, as ``recur train`` does.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` under DDP, else ``model`` itself."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or ``model`` itself)."""
    return getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" \
        else model


def all_mean(value: float, count: int, info: DistInfo) -> float:
    """Mean over all processes of a per-process mean ``value`` of ``count`` items."""
    if not info.enabled:
        return value
    t = torch.tensor([value * count, float(count)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp_min(1))


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` when alone)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
