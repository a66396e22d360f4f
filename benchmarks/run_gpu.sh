#!/usr/bin/env bash
# Items 1 and 2 of the performance issue on a CUDA machine, in one command:
#   single-run throughput (ours vs plain PyTorch, compiled and eager) and batched vs sequential sweeps,
#   plus the CUDA tests of the batched trainer. JSON and logs go to $OUT if set, else benchmarks/results/.
# Usage: benchmarks/run_gpu.sh            (PYTHON=... to pick the interpreter; default .venv/bin/python, else python3)
# Takes about 15-25 minutes on one H100; every step runs even if an earlier one fails, the exit status says if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
export PYTHONPATH=.
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'run_gpu.sh: no CUDA device')" || exit 1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; git rev-parse HEAD; } > "$DEST/gpu_env.txt" 2>&1
failed=0
step() {  # step NAME ARGS...: run one benchmark, tee its log, remember a failure and go on
  local name=$1; shift
  echo "== $name: $*"
  "$PY" "$@" 2>&1 | tee "$DEST/$name.log" || failed=1
}
# Item 1: all widths compiled (the goals allow torch.compile), with the multiplier check at width 1024; eager at the
# widths of the 0.95x goal to show what compilation buys.
step bench_throughput benchmarks/bench_throughput.py --compile --params --out "$DEST/bench_throughput.json"
step bench_throughput_eager benchmarks/bench_throughput.py --no-compile --widths 768 1024 --params \
  --out "$DEST/bench_throughput_eager.json"
# Item 2: batched vs sequential at widths 128 and 256, eager and compiled.
step bench_batched benchmarks/bench_batched.py --widths 128 256 --configs 8 16 32 --out "$DEST/bench_batched.json"
step bench_batched_compile benchmarks/bench_batched.py --compile --widths 128 256 --configs 16 \
  --out "$DEST/bench_batched_compile.json"
step tests_gpu -m pytest -q tests/trainer/test_batched.py tests/trainer/test_gpu.py
echo "results in $DEST (failed=$failed)"
exit $failed
