"""``recur env``: what this machine offers recur (versions, devices, backends)."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys

__all__ = ["report"]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def report() -> dict[str, str]:
    """``{"python": "3.12.3", "torch": "2.x", "cuda": "...", "backends": "...", ...}``."""
    import torch

    from .. import __version__
    from ..ops.dispatch import BACKENDS, ENV_VAR

    info: dict[str, str] = {
        "recur": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "torch": torch.__version__,
        "triton": _version("triton"),
    }
    for package in ("numpy", "matplotlib", "tqdm", "safetensors", "aeon", "statsmodels",
                    "onnx", "onnxruntime"):   # the tasks extra, then the export extra
        info[package] = _version(package)
    if _version("onnxscript") != "not installed":  # torch.onnx's exporter, when present
        info["onnxscript"] = _version("onnxscript")
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = f"{torch.version.cuda}, {len(names)} device(s): {', '.join(names)}"
        info["cudnn"] = str(torch.backends.cudnn.version())
    else:
        info["cuda"] = f"not available (torch built with CUDA {torch.version.cuda})"
    info["cpu threads"] = str(torch.get_num_threads())
    info["mkldnn (oneDNN)"] = str(torch.backends.mkldnn.is_available())
    info["distributed"] = ", ".join(
        name for name, ok in (("gloo", torch.distributed.is_gloo_available()),
                              ("nccl", torch.distributed.is_nccl_available()))
        if ok) if torch.distributed.is_available() else "not available"
    # the planner's answer for a standard and a layer-norm LSTM on the default device, asked
    # by the modules themselves (each plans from its own cell and weights, as in a forward)
    from ..nn import LSTM, LayerNormLSTM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.zeros(1, 16, 128, device=device)
    for cls in (LSTM, LayerNormLSTM):
        key = f"plan ({cls.__name__}, B=16, H=128, {device})"
        try:
            info[key] = cls(128, 128, device=device).plan(x).describe()
        except ValueError as err:  # RECUR_BACKEND names a backend that cannot run it
            info[key] = str(err)
    info["backends"] = ", ".join(b for b in BACKENDS if b != "auto")
    info[ENV_VAR] = os.environ.get(ENV_VAR) or "unset (backend='auto' picks per device)"
    return info
