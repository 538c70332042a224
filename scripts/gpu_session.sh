#!/usr/bin/env bash
# Everything a lent GPU machine should run, in two stages that each fit one device call
# (10 minutes): logs and JSON go under $OUT (default ./gpu-out), one status line per step in
# $OUT/status.txt. Each step has its own time limit, and a failing step does not stop the
# next, so one hang or failure does not cost the rest of the device budget.
#
#   OUT=$OUT bash scripts/gpu_session.sh tests   # test_triton.py + test_autocast.py compiled
#                                                # on the GPU (gpu-marked real sizes included)
#   OUT=$OUT bash scripts/gpu_session.sh bench   # benchmarks/gpu.py and benchmarks/variants.py
#
# Runs the checkout from source (PYTHONPATH=src): the device has its own torch and Triton.
# A copy without .git: pass RECUR_COMMIT=<hash> so the benchmarks' JSON names the commit.
set -u
stage=${1:?usage: gpu_session.sh tests|bench}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date -u +%H:%M:%S))"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc" | tee -a "$OUT/status.txt"
    tail -n 5 "$OUT/$name.log"
}

echo "commit ${RECUR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
    > "$OUT/commit.txt"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
$PY -c "import torch, triton; print(torch.__version__, triton.__version__)" > "$OUT/versions.txt" 2>&1
case "$stage" in
    tests)
        step triton-tests 420 $PY -m pytest -q -rs -p no:cacheprovider tests/test_triton.py
        step autocast-tests 120 $PY -m pytest -q -rs -p no:cacheprovider tests/test_autocast.py
        ;;
    bench)
        step gpu-bench 420 $PY benchmarks/gpu.py --json "$OUT/gpu.json"
        step variants-bench 150 $PY benchmarks/variants.py --device cuda --T 256 --B 16 \
            --H 512 --min-T 4096 --json "$OUT/variants.json"
        ;;
    *)
        echo "unknown stage $stage (tests|bench)" >&2
        exit 2
        ;;
esac
