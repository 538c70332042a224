"""What every benchmark script records about the code it measured."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def commit() -> str:
    """The short commit hash of this checkout; ``$RECUR_COMMIT`` when set (for copies
    without ``.git``, e.g. a lent GPU machine), else ``"unknown"`` when git cannot tell."""
    if os.environ.get("RECUR_COMMIT"):
        return os.environ["RECUR_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else ``platform.processor()``, else
    ``"unknown"``: machines of the same kind have differed in it between sessions."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(path: str | None, meta: dict, rows: list[dict]) -> None:
    """``{"meta": meta, "rows": rows}`` into ``path`` (nothing where None), and a line
    saying where."""
    if path:
        import json

        with open(path, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        print(f"\nJSON: {path}")
