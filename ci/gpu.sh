#!/usr/bin/env bash
# Run on a CUDA machine: the whole test suite (cupy backend included) and the benchmark,
# with everything written to $OUT (default ./gpu-results). One command, so a scarce GPU
# lease is spent in one go:
#   bash ci/gpu.sh            # on the GPU machine, from the repo root
# Wheels missing from the GPU image are installed first from .whl/: array-api-compat is
# required; array-api-strict, hypothesis, tqdm, scikit-learn (+scipy, joblib,
# threadpoolctl) and matplotlib are optional — tests needing a missing one are skipped
# with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    python3 -c "import sys, numpy, cupy; print('python', sys.version.split()[0]); \
print('numpy', numpy.__version__); print('cupy', cupy.__version__); \
print('cuda runtime', cupy.cuda.runtime.runtimeGetVersion()); \
print('cuda driver', cupy.cuda.runtime.driverGetVersion())" 2>&1
    python3 -m gpunn devices 2>&1
} | tee "$out/environment.txt"

python3 -m pytest -p no:cacheprovider -q -rs 2>&1 | tee "$out/pytest-gpu.txt"
test_status=${PIPESTATUS[0]}

bench_status=0
if [ -f bench/bench.py ]; then
    python3 bench/bench.py --json "$out/bench.json" --markdown "$out/bench.md" 2>&1 \
        | tee "$out/bench.txt"
    bench_status=${PIPESTATUS[0]}
fi
echo "pytest exit $test_status, bench exit $bench_status" | tee -a "$out/environment.txt"
[ "$test_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
