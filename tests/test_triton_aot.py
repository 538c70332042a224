"""The GPU-only kernel paths (grid, stream) compiled ahead of time for sm_90 on the CPU.

The interpreter checks what the kernels compute; only a compiler checks that they lower
(``tl.dot`` shapes and layouts, the barrier's atomics, shared memory). Triton compiles for
a CUDA target without a GPU (its wheel ships ``ptxas``), so this runs in CPU CI:
``scripts/triton_aot.py --quick`` in a subprocess (``TRITON_INTERPRET`` unset there), which
also checks the launch planner's shared-memory estimate against the compiled kernels.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _has_nvidia_backend() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    probe = "import triton.backends as b; import sys; sys.exit(0 if 'nvidia' in b.backends else 1)"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-c", probe], env=env, check=False).returncode == 0


@pytest.mark.skipif(not _has_nvidia_backend(),
                    reason="triton (with its NVIDIA backend) is not installed")
def test_grid_and_stream_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # Triton 3.9 warns when unset
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "triton_aot.py"), "--quick"],
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    # LSTM, LayerNorm LSTM and LSTM with projection, float32, one stream and one grid plan
    assert len(lines) == 6 and all(ln.endswith("ok") for ln in lines), res.stdout
