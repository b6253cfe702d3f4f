#!/bin/bash
# The GPU checks, run on a machine with a CUDA device (CI has none): the CUDA tests (TND on the GPU
# against the CPU, every suite model trains a step there) and the speed tables on the GPU.
#   bash scripts/gpu_check.sh [OUTDIR]
# Needs torch with CUDA, ncps, mambapy and lru-pytorch (wheels in .whl/ are installed first if
# present: a machine without a package index). Results: OUTDIR/cuda_tests.txt, bench_cuda.md/.json.
set -o pipefail
out=${1:-${OUT:-runs/gpu-check}}
mkdir -p "$out"
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda_tests.txt"
tests=$?
python3 benchmarks/bench_speed.py --device cuda --threads 4 --models TND LSTM RNN CfC Transformer \
    --out "$out/bench_cuda.md" --json "$out/bench_cuda.json" 2>&1 | tail -n 60
exit $(( tests || $? ))
