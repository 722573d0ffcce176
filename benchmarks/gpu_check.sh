#!/usr/bin/env bash
# The prepared GPU check: the GPU engine's parity tests and figures on a GPU machine, in at most 8 minutes.
#
# On the GPU machine, from the repository root, with .gpu-wheels carried (bash benchmarks/gpu_wheels.sh makes it):
#     OUT=<folder> bash benchmarks/gpu_check.sh
# Dry run on a CPU (numba-cuda's simulator, small sizes: it checks this script, not the speed):
#     OUT=/tmp/gpu-dry bash benchmarks/gpu_check.sh --dry-run
#
# Steps: record the machine; install what the image lacks from .gpu-wheels (no package index there); compile the 12
# rule kernels into numba-cuda's disk cache in parallel; run the GPU parity tests (tests/test_gpu_kernel.py and the
# cupy-engine cases of tests/test_backtest.py); run benchmarks/bench_gpu.py on the 1.37M grid (engine alone, end to
# end, the Numba CPU engine in the same run, one kernel timed with CUDA events) and then on 13.7M configurations.
# Every figure and log goes under $OUT (gpu_check.log is the summary); no step starts with under 20 s left of the
# budget (BUDGET_S, default 450 s; a dry run 1500 s), and each step's timeout is capped at what is left. Exit 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the figures and logs}"
mkdir -p "$OUT"
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
budget=${BUDGET_S:-$((dry ? 1500 : 450))}  # a dry run on 2 CPU cores compiles 12 kernels to PTX
start=$SECONDS
failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
export NUMBA_CACHE_DIR="$work/numba-cache"  # the compiled kernels stay out of $OUT
unset NUMBA_ENABLE_CUDASIM  # the dry run's simulator is switched on per step below

log() { printf '[%4ds] %s\n' $((SECONDS - start)) "$*" | tee -a "$OUT/gpu_check.log"; }

step() {  # step NAME LIMIT_S COMMAND...: output to $OUT/NAME.log, the last lines echoed to the summary
  local name=$1 limit=$2 rest rc
  shift 2
  rest=$((budget - (SECONDS - start)))
  if [ "$rest" -lt 20 ]; then log "skipped $name: ${rest} s left"; failed=1; return 124; fi
  [ "$limit" -gt "$rest" ] && limit=$rest
  log "start $name (limit ${limit} s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  log "end $name: exit $rc"
  [ "$rc" -eq 0 ] || failed=1
  tail -n 4 "$OUT/$name.log" | sed 's/^/        /' | tee -a "$OUT/gpu_check.log"
  return $rc
}

log "gpu_check: dry run $dry, budget ${budget} s, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
{ nvidia-smi 2>&1 || echo "nvidia-smi: not found"; python -V; python -m pip list 2>/dev/null; } > "$OUT/machine.txt"
log "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no GPU')"

missing=()
python -c "import numba_cuda" 2>/dev/null || missing+=(numba-cuda)
python -c "import pandas" 2>/dev/null || missing+=(pandas)
python -c "import pytest" 2>/dev/null || missing+=(pytest)
if [ ${#missing[@]} -gt 0 ]; then
  if [ ! -d .gpu-wheels ]; then
    log "error: ${missing[*]} missing and no .gpu-wheels here: run bash benchmarks/gpu_wheels.sh and carry .gpu-wheels"
    exit 4
  fi
  step install 120 python -m pip install --no-index --find-links .gpu-wheels "${missing[@]}" || exit 4
fi
if [ "$dry" -eq 0 ] && ! python -c "from numba.cuda.cudadrv.nvvm import NVVM; NVVM()" > /dev/null 2>&1; then
  [ -f .gpu-wheels/nvvm.tar.xz ] || { log "error: no NVVM and no .gpu-wheels/nvvm.tar.xz"; exit 4; }
  tar -C "$work" -xJf .gpu-wheels/nvvm.tar.xz && ln -s libnvvm.so "$work/nvvm/lib64/libnvvm.so.4"
  export CUDA_HOME="$work"
  python -c "from numba.cuda.cudadrv.nvvm import NVVM; NVVM()" > "$OUT/nvvm.log" 2>&1 \
    || { log "error: NVVM unusable, even from .gpu-wheels/nvvm.tar.xz (see nvvm.log)"; exit 3; }
  log "NVVM from .gpu-wheels/nvvm.tar.xz (CUDA_HOME=$CUDA_HOME)"
fi

# every rule and short mode; the dry run compiles them to PTX only (NVVM needs no driver), in parallel either way
step precompile $((dry ? 900 : 150)) python -c "
import multiprocessing as mp
from alphasignal.backtest import strategies as s
from alphasignal.backtest.gpu import precompile
pairs = [(k, b, $dry) for k in s.RULES for b in (0, 1)]
with mp.get_context('spawn').Pool(len(pairs)) as pool:
    pool.starmap(precompile, pairs)
print(f'{len(pairs)} kernels compiled', 'to PTX' if $dry else 'into the disk cache')"

if [ "$dry" -eq 1 ]; then  # the simulator parity tests and the PTX compile; no device for the rest
  step parity 300 python -m pytest -q -p no:cacheprovider -rs -m "not slow" tests/test_gpu_kernel.py \
    --junitxml="$OUT/parity.xml"
  step bench_small 240 env NUMBA_ENABLE_CUDASIM=1 python -m benchmarks.bench_gpu --small --out "$OUT/bench_small.json"
else
  step parity 200 python -m pytest -q -p no:cacheprovider -rs -m "not slow" tests/test_gpu_kernel.py \
    tests/test_backtest.py -k "gpu or cupy or simulated or ptx" --junitxml="$OUT/parity.xml"
  step bench_1m 200 python -m benchmarks.bench_gpu --grids 1m --out "$OUT/bench_1m.json"
  step bench_10m 150 python -m benchmarks.bench_gpu --grids 10m --repeats 2 --out "$OUT/bench_10m.json"
fi
log "not run: one epoch of the chart CNN on CUDA (it trains on the CPU only: no CUDA backend yet) and a 20-step" \
    "--backend hf LoRA run on CUDA (this check has no time left for it in 8 minutes)"
log "done in $((SECONDS - start)) s, every step passed: $([ "$failed" -eq 0 ] && echo yes || echo no);" \
    "figures: $(cd "$OUT" && ls ./*.json 2>/dev/null | tr '\n' ' ')"
exit "$failed"
