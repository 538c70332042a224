#!/usr/bin/env bash
# Everything a lent GPU should run, in ONE command that ends within $GPU_CHECK_BUDGET seconds
# (default 420: one device call of a 15-minute lease, leaving time for a second; the dry run:
# 1200, limits x4; a step is skipped when fewer than $GPU_CHECK_MIN_STEP seconds, default 15,
# are left). Steps in priority order, each under its own time limit (cut to what is left of
# the budget), each writing its log and JSON as it goes, so a cut-off run still returns what
# it did; one status line per step in $OUT/status.txt ("STEP ok|FAIL|TIMEOUT|SKIP ... seconds").
# On a GPU (or with --bundle) the logs and JSON go to a temporary folder and, after every
# step, into ONE archive $OUT/gpu_check.tgz (the device tool returns at most 8 files from $OUT;
# the first H200 run, with some 30 files there, returned 8 of its correctness shards and none
# of its logs); the dry run writes them straight to $OUT.
#
#   OUT=$OUT bash scripts/gpu_check.sh             # on the GPU machine (H100 / H200)
#   RECUR_COMMIT=abc1234 OUT=$OUT bash scripts/gpu_check.sh   # name the commit sent (the
#                      device's copy of .git can be older than the tree: 2e6e736 ran as f149289)
#   OUT=/tmp/gc bash scripts/gpu_check.sh --dry-run  # on a CPU: Triton's interpreter, tiny sizes
#   OUT=$OUT bash scripts/gpu_check.sh --only correctness,speed   # rerun failed steps only
#   tar xzf gpu_check.tgz                          # here: the logs and JSON of every step
#
#   1 env          versions, nvidia-smi
#   2 smoke        one small LSTM forward + backward, triton against the float64 reference
#   3 correctness  small / grid / stream paths x RNN, LSTM, LSTM+proj, GRU, LayerNormLSTM,
#                  LayerNormGRU x float32, bfloat16, with lengths and reverse; one zoneout and
#                  one recurrent-dropout case; outputs and workspaces NaN-poisoned
#   4 repro        the same inputs twice: every output and gradient bitwise equal
#   5 speed        benchmarks/gpu.py: LSTM, GRU x fwd, fwd+bwd x B 16/64/256 x H 256/1024,
#                  T 512, fp32 + bf16, against cuDNN in the same process; peak memory
#   6 speed-ln     LayerNormLSTM on triton against the eager loop (and cuDNN's plain LSTM)
#   7 gpu-tests    while time is left: the gpu-marked tests of tests/test_triton.py
#
# Needs only what the GPU machine has (Python, torch with CUDA, Triton, numpy, pytest) and
# runs the checkout from source (PYTHONPATH=src). Without .git, pass RECUR_COMMIT=<hash>.
# Exit status: 0 when every step that ran passed, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
DRY=0
ONLY=""
BUNDLE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --only) ONLY=",${2:?--only needs a comma-separated list of steps},"; shift ;;
        --bundle) BUNDLE=1 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (expected --dry-run, --only STEPS, --bundle)" >&2
           exit 2 ;;
    esac
    shift
done
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export RECUR_COMMIT=${RECUR_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
PY=${PYTHON:-$(command -v python || command -v python3)}
BUDGET=${GPU_CHECK_BUDGET:-420}
SCALE=1  # per-step limits; the dry run's interpreter on a shared CPU is far slower
START=$(date +%s)
FAILED=0
if [ "$DRY" = 1 ]; then
    export TRITON_INTERPRET=1
    BUDGET=${GPU_CHECK_BUDGET:-1200}
    SCALE=4
    DRYFLAG=--dry-run
    WORKERS=2
    SPEED_SIZES=(--B 2 --H 8 --T 4)
else
    DRYFLAG=
    WORKERS=8  # Triton compiles on the CPU: 8 processes compile the cases' kernels at once
    SPEED_SIZES=(--B 16 64 256 --H 256 1024 --T 512)
    BUNDLE=1
fi
FILES=$OUT
if [ -n "$BUNDLE" ]; then
    FILES=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
fi

bundle() {  # every step's files into $OUT/gpu_check.tgz, replaced whole (never half-written)
    [ -n "$BUNDLE" ] || return 0
    cp "$OUT/status.txt" "$FILES/status.txt"
    tar czf "$OUT/.gpu_check.tgz.part" -C "$FILES" . && mv "$OUT/.gpu_check.tgz.part" "$OUT/gpu_check.tgz"
}

wanted() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }

step() {  # step NAME SECONDS COMMAND...: run within the budget, log, one status line
    local name=$1 limit=$(($2 * SCALE))
    shift 2
    wanted "$name" || return 0
    local left=$((BUDGET - ($(date +%s) - START)))
    if [ "$left" -lt "${GPU_CHECK_MIN_STEP:-15}" ]; then
        echo "$name SKIP no time left (${left} s of the budget)" | tee -a "$OUT/status.txt"
        bundle
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0
    t0=$(date +%s)
    timeout -k 5 "$limit" "$@" > "$FILES/$name.log" 2>&1
    local rc=$? word=ok
    [ "$rc" != 0 ] && word=FAIL && FAILED=1
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && word=TIMEOUT
    echo "$name $word rc=$rc $(($(date +%s) - t0)) s (limit $limit s): $(tail -n 1 "$FILES/$name.log")" \
        | tee -a "$OUT/status.txt"
    bundle
}

: > "$OUT/status.txt"
step env 20 $PY benchmarks/gpu_check.py env --out "$FILES" $DRYFLAG
step smoke 45 $PY benchmarks/gpu_check.py smoke --out "$FILES" $DRYFLAG
step correctness 120 $PY benchmarks/gpu_check.py correctness --out "$FILES" --workers "$WORKERS" $DRYFLAG
step repro 40 $PY benchmarks/gpu_check.py repro --out "$FILES" --workers "$WORKERS" $DRYFLAG
step speed 200 $PY benchmarks/gpu.py --cells LSTM GRU --dtypes float32 bfloat16 \
    "${SPEED_SIZES[@]}" --rep 50 --json "$FILES/speed.json" $DRYFLAG
step speed-ln 60 $PY benchmarks/gpu_check.py speed-ln --out "$FILES" $DRYFLAG
if [ "$DRY" = 1 ]; then
    wanted gpu-tests && echo "gpu-tests SKIP dry run (the gpu-marked tests need CUDA)" | tee -a "$OUT/status.txt"
else
    step gpu-tests 600 $PY -m pytest -q -rs -x -p no:cacheprovider -m gpu tests/test_triton.py
fi
count() { grep -c "^[^ ]* $1 " "$OUT/status.txt"; }
echo "gpu_check: $(count ok) ok, $(count FAIL) failed, $(count TIMEOUT) timed out, $(count SKIP) \
skipped in $(($(date +%s) - START)) s; logs and JSON in $OUT${BUNDLE:+/gpu_check.tgz}"
bundle
exit "$FAILED"
