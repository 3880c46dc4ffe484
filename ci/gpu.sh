#!/usr/bin/env bash
# The GPU proof in one command (budget and files: ci/README.md):
#   bash ci/gpu.sh            # < 7 min on an H100/H200: environment, GPU tests, CPU/GPU
#                             # agreement, benchmark beside PyTorch eager, kernel cache
#   bash ci/gpu.sh rest       # optional, < 10 min: the rest of the suite on the GPU
#   bash ci/gpu.sh --dry-run  # (or GPUNN_PROOF_DRY=1) the same sequence on the CPU with
#                             # tiny sizes: no GPU needed; checks the order, files, guards
# Results go under $OUT (default ./gpu-results) as each step ends; steps.txt (rest:
# steps-rest.txt) gets a line per step. Every step runs under `timeout`, so one hang
# cannot eat the budget; GPUNN_PROOF_STEPS=pytest-gpu,bench (say) reruns only those.
# Wheels for what the GPU machine lacks (array-api-compat; optionally array-api-strict)
# are taken from .whl/; a wheel for a package the machine already has is never installed
# over it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

usage() {
    echo "usage: bash ci/gpu.sh [rest] [--dry-run]   (no argument: the GPU proof)" >&2
}
mode=proof
dry="${GPUNN_PROOF_DRY:-0}"
for arg in "$@"; do
    case "$arg" in
        rest) mode=rest ;;
        --dry-run) dry=1 ;;
        1|2) echo "gpu.sh: the two phases are now one command: bash ci/gpu.sh" >&2
             usage; exit 2 ;;
        *) usage; exit 2 ;;
    esac
done
[ "$dry" = 0 ] || dry=1

out="${OUT:-gpu-results}"
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
# The whole command's budget (seconds, machine start excluded) and each step's cap. A step
# runs for at most its cap, and never past the budget less the time kept for the steps
# after it (`later`); see the table in ci/README.md.
if [ "$mode" = rest ]; then default_budget=580; else default_budget=420; fi
budget="${GPUNN_PROOF_BUDGET:-$default_budget}"
cap() {  # cap NAME DEFAULT: GPUNN_PROOF_CAP_<NAME> overrides the default
    local var="GPUNN_PROOF_CAP_$1"
    echo "${!var:-$2}"
}
started=$SECONDS
steps="$out/steps$([ "$mode" = rest ] && echo -rest).txt"
run_line="== gpu.sh $mode$([ "$dry" = 1 ] && echo ' --dry-run') at $(date -u +%FT%TZ)"
echo "$run_line${GPUNN_PROOF_STEPS:+, steps $GPUNN_PROOF_STEPS}" >> "$steps"
failed=0

# step NAME CAP LATER COMMAND...: COMMAND under `timeout` (SIGTERM, then SIGKILL $grace s
# later: the bench and pytest report what they have on SIGTERM), its output in
# $out/NAME.txt. LATER: seconds kept for the steps after it.
grace=5
step() {
    local name="$1" limit="$2" later="$3"
    shift 3
    if [ -n "${GPUNN_PROOF_STEPS:-}" ] && [[ ",$GPUNN_PROOF_STEPS," != *",$name,"* ]]; then
        return 0  # not asked for (a rerun of what failed)
    fi
    local left=$((budget - (SECONDS - started) - later - grace))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -le 0 ]; then
        printf '%-12s skipped: no time left in the %ss budget\n' "$name" "$budget" \
            | tee -a "$steps"
        failed=1
        return 0
    fi
    local t0=$SECONDS
    echo "== gpu.sh: $name (at $((t0 - started)) s, limit $limit s)"
    timeout -k "$grace" "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    local status=${PIPESTATUS[0]}
    local took=$((SECONDS - t0)) verdict=ok
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        verdict="timed out"
    elif [ "$status" -ne 0 ]; then
        verdict="failed"
    fi
    [ "$verdict" = ok ] || failed=1
    printf '%-12s %-9s exit %3d  %4d s of %4d s  (ended at %d s)\n' "$name" "$verdict" \
        "$status" "$took" "$limit" "$((SECONDS - started))" | tee -a "$steps"
}

# ---------------------------------------------------------------- wheels from .whl/
site=/tmp/gpunn-site
pythonpath="$PWD:$PWD/ci"
# shellcheck disable=SC2329  # run through `bash -c`, below
install_wheels() {
    local wheel module
    mkdir -p "$site"
    for wheel in .whl/*.whl; do
        # Distribution name -> import name (array_api_compat-1.16.0-py3-...whl).
        module="$(basename "$wheel" | cut -d- -f1 | tr '[:upper:]' '[:lower:]')"
        if "$py" -c "import $module" >/dev/null 2>&1; then
            echo "gpu.sh: $module is already installed here; not shadowing it with $wheel"
            continue
        fi
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$site" "$wheel" || echo "gpu.sh: could not install $wheel" >&2
    done
}
if ls .whl/*.whl >/dev/null 2>&1; then
    export -f install_wheels
    export py site
    timeout 60 bash -c install_wheels
    pythonpath="$pythonpath:$site"
fi
export PYTHONPATH="$pythonpath${PYTHONPATH:+:$PYTHONPATH}"

# CuPy compiles gpunn's kernels (and its own) on first use; a cache carried from an earlier
# run (gpu-kernel-cache.tar.gz in the repository root) skips that.
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-/tmp/gpunn-cupy-cache}"
mkdir -p "$CUPY_CACHE_DIR"
if [ -f gpu-kernel-cache.tar.gz ]; then
    timeout 30 tar -xzf gpu-kernel-cache.tar.gz -C "$CUPY_CACHE_DIR" \
        && echo "gpu.sh: kernel cache restored"
fi

# ---------------------------------------------------------------- 1. environment
# shellcheck disable=SC2329  # run through `bash -c`, below
environment() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "mode: $mode$([ "$dry" = 1 ] && echo ', dry run on the CPU')"
    if command -v nvidia-smi >/dev/null 2>&1; then
        local fields=name,driver_version,memory.total,compute_cap,clocks.max.sm,power.limit
        timeout 20 nvidia-smi --format=csv --query-gpu="$fields" 2>&1
        timeout 20 nvidia-smi 2>&1
    else
        echo "nvidia-smi: not found"
    fi
    "$py" - <<'EOF' 2>&1
import importlib.metadata as md
import sys

print("python", sys.version.split()[0])
# Versions from the installed packages' metadata: importing PyTorch and the others would
# take seconds, and this step runs before the check that there is a GPU at all.
for name in ("numpy", "array-api-compat", "array-api-strict", "ml_dtypes", "torch",
             "scikit-learn", "hypothesis", "pytest", "matplotlib", "pandas", "mpi4py",
             "onnxruntime", "safetensors"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "missing")
gpus = 0
try:
    import cupy  # its distribution is named after the CUDA version (cupy-cuda12x)

    print("cupy", cupy.__version__)
    gpus = cupy.cuda.runtime.getDeviceCount()
    print("cuda devices", gpus)
    print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion())
    print("cuda driver", cupy.cuda.runtime.driverGetVersion())
    from cupy.cuda import nccl

    print("nccl", nccl.get_version())
except Exception as exc:
    print("cupy/cuda:", f"{type(exc).__name__}: {exc}")
if gpus:
    try:
        import torch

        print("torch cuda", torch.version.cuda, "available", torch.cuda.is_available(),
              "cudnn", torch.backends.cudnn.version())
    except Exception as exc:
        print("torch cuda: not usable", f"({type(exc).__name__}: {exc})")
EOF
    "$py" -m gpunn devices 2>&1
    return 0
}
# The gate: gpunn must import (array-api-compat), and, unless dry, see a usable GPU.
gate() {
    if ! "$py" -c "import array_api_compat" 2>/dev/null; then
        cat >&2 <<'EOF'
gpu.sh: array_api_compat does not import, and gpunn needs it. On a machine with a package
index, from the repository root:
    python3 -m pip download --no-deps --only-binary=:all: -d .whl array-api-compat array-api-strict
then bring .whl/ along (it is git-ignored) and run this again. See ci/README.md.
EOF
        return 2
    fi
    [ "$dry" = 1 ] && return 0
    local reason
    reason="$(timeout 60 "$py" -c '
from gpunn.backend import cuda_status
s = cuda_status()
print("ok" if s.usable else s.reason)' 2>&1 | tail -n 1)"
    if [ "$reason" != ok ]; then
        cat >&2 <<EOF
gpu.sh: no usable GPU here: ${reason:-the CUDA probe timed out}.
This command is the GPU proof; it needs CuPy and a CUDA GPU. On a machine without one,
'bash ci/gpu.sh --dry-run' runs the same sequence on the CPU with tiny sizes.
EOF
        return 3
    fi
}

if [ "$mode" = proof ]; then
    export -f environment
    export py mode dry
    step environment "$(cap ENVIRONMENT 45)" 0 bash -c environment
fi
gate
gate_status=$?
if [ "$gate_status" -ne 0 ]; then
    echo "gate         failed    exit $gate_status (see the message above)" >> "$steps"
    exit "$gate_status"
fi

# ---------------------------------------------------------------- the optional second command
if [ "$mode" = rest ]; then
    # Everything not marked gpu, where device="auto" now means the GPU.
    read -r -a tests <<< "${GPUNN_PROOF_TESTS:-tests}"
    step pytest-rest "$(cap REST 560)" 0 "$py" -m pytest -p no:cacheprovider \
        -p sigterm_ends_session -q -rfEs --durations=15 -o faulthandler_timeout=120 \
        -m "not gpu" --junitxml="$out/pytest-rest.xml" "${tests[@]}"
    exit "$failed"
fi

# ---------------------------------------------------------------- 2. the GPU tests
# The most valuable files first, so a run cut short loses the least: tests/test_gpu.py (the
# dense kernels, then the convolution, pooling and normalisation kernels), NCCL on one
# GPU, the layers' cupy cases, then the cupy case of every other backend test. Verbose, so
# a killed run still shows which test was running; faulthandler dumps the stacks of a
# test stuck for a minute.
first=(tests/test_gpu.py tests/test_distributed_nccl.py tests/test_layers_conv.py
       tests/test_layers_pooling.py tests/test_layers_norm.py)
if [ -n "${GPUNN_PROOF_TESTS:-}" ]; then
    read -r -a tests <<< "$GPUNN_PROOF_TESTS"
elif [ "$dry" = 1 ]; then
    tests=(tests/test_gpu.py)  # every test skips on the CPU: the plumbing only
else
    tests=("${first[@]}")
    for file in tests/test_*.py; do
        [[ " ${first[*]} " == *" $file "* ]] || tests+=("$file")
    done
fi
step pytest-gpu "$(cap TESTS 180)" 35 "$py" -m pytest -p no:cacheprovider \
    -p sigterm_ends_session -v -rfEs --durations=15 -o faulthandler_timeout=60 -m gpu \
    --junitxml="$out/pytest-gpu.xml" "${tests[@]}"

# ---------------------------------------------------------------- 3. agreement and benchmark
if [ "$dry" = 1 ]; then
    device=cpu
    bench_args=(--sizes "micro,cnn" --impls "gpunn,reference" --precisions fp32
                --repeats 1 --target-seconds 0.02 --max-load 100)
else
    device=cuda:0
    # Trimmed to fit: three dense sizes (tiny, medium, large: GEMM-bound) and the two
    # convolutional ones, four precisions, three repeats of ~0.2 s epochs.
    bench_args=(--sizes "tiny,medium,large,cnn,lenet" --impls "gpunn,reference,torch"
                --precisions "fp32,tf32,fp16,bf16" --repeats 3 --target-seconds 0.2
                --max-load 50)
fi
# CPU-trained vs GPU-trained, after save and load across the devices.
step agreement "$(cap AGREEMENT 45)" 35 "$py" -m gpunn bench --agreement --device "$device" \
    --json "$out/agreement.json" --markdown "$out/agreement.md"
# bench.json, bench.md rewritten after every row and bench.png after every size.
step bench "$(cap BENCH 240)" 35 "$py" -m gpunn bench --device "$device" "${bench_args[@]}" \
    --pause 0 --profile-dir "$out/graphs" \
    --json "$out/bench.json" --markdown "$out/bench.md" --plot "$out/bench.png"

# Each target of the proof, from bench.json and agreement.json: targets.md.
step targets "$(cap TARGETS 15)" 20 "$py" -m gpunn.bench.targets "$out"

# ---------------------------------------------------------------- 4. the kernel cache
step kernel-cache "$(cap CACHE 20)" 0 tar -czf "$out/gpu-kernel-cache.tar.gz" \
    -C "$CUPY_CACHE_DIR" .

echo "== gpu.sh: done in $((SECONDS - started)) s (budget $budget s)" | tee -a "$steps"
exit "$failed"
