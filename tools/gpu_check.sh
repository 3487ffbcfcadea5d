#!/usr/bin/env bash
# All of refnet's GPU checks in one run (issue 8), for a machine with CuPy, PyTorch and a
# CUDA device (the device tool's H100/H200 image has both; nothing is installed here).
#
#   bash tools/gpu_check.sh [OUT_DIR]        results and logs under OUT_DIR ($OUT, or gpu_results/)
#   bash tools/gpu_check.sh --cpu [OUT_DIR]  the CPU-safe dry run: the CuPy API check, the
#                                            agreement script on NumPy, a short CPU train
#
# Steps (each with its own time limit; a failing step is reported and the rest still run):
#   env        nvidia-smi, driver/runtime/library versions
#   tests      the whole test suite with CuPy present (the gpu-marked cases run)
#   agreement  CuPy vs NumPy for every layer and the whole network (tools/gpu_agreement.py),
#              both columns in two device contexts (both device 0 on a one-GPU machine)
#   train      a short python -m refnet.train on the demo set on the GPU
#   bench      python -m refnet.bench on the GPU against PyTorch+cuDNN on the same card:
#              alexnet, batch 128, float32; then again with TF32 allowed on both sides
# The limits add up to under 9 minutes, so the whole script fits one 10-minute call of the
# device tool (run it with timeout_s=600, then give the machine back).
# Exit status: 0 if every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=gpu
if [ "${1:-}" = "--cpu" ]; then mode=cpu; shift; fi
out=${1:-${OUT:-gpu_results}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export REFNET_CACHE="$out/cache" MPLBACKEND=Agg CI=true   # CI=true: Hypothesis "ci" profile
py=${PYTHON:-python3}
failed=()

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "== $name ($limit s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: rc=$rc in $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || failed+=("$name")
}

if [ $mode = gpu ]; then
    step env 30 bash -c "nvidia-smi; $py -c 'import numpy, cupy, torch, h5py
print(\"numpy\", numpy.__version__, \"cupy\", cupy.__version__, \"torch\", torch.__version__,
      \"cuda\", torch.version.cuda, \"cudnn\", torch.backends.cudnn.version())
r = cupy.cuda.runtime
print(\"devices\", r.getDeviceCount(), \"driver\", r.driverGetVersion(), \"runtime\", r.runtimeGetVersion())'"
    step tests 200 "$py" -m pytest -q -p no:cacheprovider -x
    step agreement 60 "$py" tools/gpu_agreement.py --arch demo --batch 8
    step train 70 "$py" -m refnet.train --device gpu --epochs 2 --out "$out/run" --quiet
    step bench 130 "$py" -m refnet.bench --device gpu --arch alexnet --batch 128 \
        --parts step,forward,layers --repeats 10 --json "$out/bench_gpu.json"
    step bench_tf32 50 "$py" -m refnet.bench --device gpu --arch alexnet --batch 128 \
        --parts step,forward --repeats 10 --tf32 --json "$out/bench_gpu_tf32.json"
else
    step cupy_api 120 "$py" -m pytest -q -p no:cacheprovider tests/test_cupy_api.py
    step agreement 300 "$py" tools/gpu_agreement.py --backend numpy --arch tiny --batch 4
    step train 300 "$py" -m refnet.train --device cpu --epochs 1 --out "$out/run" --quiet
fi

if [ ${#failed[@]} -eq 0 ]; then
    echo "gpu_check ($mode): all steps passed; logs in $out"
else
    echo "gpu_check ($mode): FAILED steps: ${failed[*]}; logs in $out"
    exit 1
fi
