#!/usr/bin/env bash
# The GPU proof, in two phases of one command each (see ci/README.md):
#   bash ci/gpu.sh 1    # < 8 min: environment, GPU tests, the suite on the GPU, kernel cache
#   bash ci/gpu.sh 2    # < 9 min: benchmark fp32/tf32/fp16/bf16 beside PyTorch eager
# Everything goes under $OUT (default ./gpu-results). Wheels for what the GPU machine lacks
# (array-api-compat; optionally array-api-strict) are taken from .whl/ when present; a
# wheel for a package the machine already has is never installed over it.
set -uo pipefail
cd "$(dirname "$0")/.."
phase="${1:-}"
case "$phase" in
    1|2) ;;
    *) echo "usage: bash ci/gpu.sh 1|2   (phase 1: tests, phase 2: benchmark)" >&2; exit 2 ;;
esac
out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"

# ---------------------------------------------------------------- wheels from .whl/
site=/tmp/gpunn-site
pythonpath="$PWD"
if ls .whl/*.whl >/dev/null 2>&1; then
    mkdir -p "$site"
    for wheel in .whl/*.whl; do
        # Distribution name -> import name (array_api_compat-1.16.0-py3-...whl).
        module="$(basename "$wheel" | cut -d- -f1 | tr '[:upper:]' '[:lower:]')"
        if "$py" -c "import $module" >/dev/null 2>&1; then
            echo "gpu.sh: $module is already installed here; not shadowing it with $wheel"
            continue
        fi
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$site" "$wheel" || { echo "gpu.sh: could not install $wheel" >&2; exit 2; }
    done
    pythonpath="$PWD:$site"
fi
export PYTHONPATH="$pythonpath${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import array_api_compat" 2>/dev/null; then
    cat >&2 <<'EOF'
gpu.sh: array_api_compat does not import, and gpunn needs it. On a machine with a package
index, from the repository root:
    python3 -m pip download --no-deps --only-binary=:all: -d .whl array-api-compat array-api-strict
then bring .whl/ along (it is git-ignored) and run this again. See ci/README.md.
EOF
    exit 2
fi

# CuPy compiles gpunn's kernels (and its own) on first use; a cache carried from an earlier
# run (gpu-kernel-cache.tar.gz in the repository root) skips that.
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-/tmp/gpunn-cupy-cache}"
mkdir -p "$CUPY_CACHE_DIR"
if [ -f gpu-kernel-cache.tar.gz ]; then
    tar -xzf gpu-kernel-cache.tar.gz -C "$CUPY_CACHE_DIR" && echo "gpu.sh: kernel cache restored"
fi

if [ "$phase" = 1 ]; then
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
        nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap \
            --format=csv,noheader 2>&1
        "$py" - <<'EOF' 2>&1
import importlib
import sys

print("python", sys.version.split()[0])
for name in ("numpy", "cupy", "array_api_compat", "array_api_strict", "ml_dtypes", "torch",
             "scikit-learn", "hypothesis", "pandas", "mpi4py", "onnxruntime", "safetensors"):
    module = name.replace("scikit-learn", "sklearn")
    try:
        print(name, importlib.import_module(module).__version__)
    except Exception as exc:
        print(name, "missing", f"({type(exc).__name__})")
import cupy

print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion())
print("cuda driver", cupy.cuda.runtime.driverGetVersion())
EOF
        "$py" -m gpunn devices 2>&1
    } | tee "$out/environment.txt"
    # GPU-marked tests first (test_gpu.py and every backend test's cupy case), then the
    # rest of the suite, where device="auto" now means the GPU.
    timeout 150 "$py" -m pytest -p no:cacheprovider -q -rs -m gpu \
        --junitxml="$out/pytest-gpu.xml" 2>&1 | tee "$out/pytest-gpu.txt"
    gpu_status=${PIPESTATUS[0]}
    timeout 300 "$py" -m pytest -p no:cacheprovider -q -rs -m "not gpu" \
        --junitxml="$out/pytest-rest.xml" 2>&1 | tee "$out/pytest-rest.txt"
    rest_status=${PIPESTATUS[0]}
    tar -czf "$out/gpu-kernel-cache.tar.gz" -C "$CUPY_CACHE_DIR" . 2>/dev/null
    echo "pytest -m gpu exit $gpu_status, pytest -m 'not gpu' exit $rest_status" \
        | tee -a "$out/environment.txt"
    [ "$gpu_status" -eq 0 ] && [ "$rest_status" -eq 0 ]
    exit
fi

# Phase 2: the benchmark on the GPU beside PyTorch eager. Results are rewritten after every
# row, so a run stopped by the time limit keeps what it measured.
timeout 530 "$py" -m gpunn bench --device cuda --precisions fp32,tf32,fp16,bf16 \
    --repeats 3 --target-seconds 0.3 --pause 0 --profile-dir "$out/graphs" \
    --json "$out/bench.json" --markdown "$out/bench.md" --plot "$out/bench.png" 2>&1 \
    | tee "$out/bench.txt"
bench_status=${PIPESTATUS[0]}
echo "bench exit $bench_status" | tee -a "$out/bench.txt"
exit "$bench_status"
