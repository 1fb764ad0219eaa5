#!/usr/bin/env bash
# The GPU check of the loss work, as one script: parity tests on CUDA, then the loss benchmark.
#   bash benchmarks/gpu_losses.sh OUTDIR
set -uo pipefail
out=${1:-benchmarks/results}
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_resim_fast.py tests/test_losses.py 2>&1 | tail -40
python3 benchmarks/losses.py --device cuda --out "$out/losses_cuda.json"
