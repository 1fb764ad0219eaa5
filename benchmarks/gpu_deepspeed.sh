#!/usr/bin/env bash
# The GPU check of the DeepSpeed path, for a GPU box with torch and accelerate but no network: installs the
# carried wheels (deepspeed, hjson, pydantic and its deps) and jasper, then runs the CUDA DeepSpeed test
# (one GPU, ZeRO-2 accelerate config, bf16 autocast, a kill and a resume).
#   bash benchmarks/gpu_deepspeed.sh CARRY
set -uo pipefail
carry=${1:-.devcarry}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi -L
python3 -m pip install -q --no-deps --no-index "$carry"/wheels/*.whl
python3 -m pip install -q --no-deps --no-build-isolation -e .
python3 -m pip list 2>/dev/null | grep -iE "^(deepspeed|accelerate|torch) "
python3 -m pytest -q -s -p no:cacheprovider --tb=short tests/test_distributed.py -k cuda 2>&1 | grep -vE "it/s|step/s|^\s*$" | tail -40
