#!/usr/bin/env bash
# The GPU check of teacher encoding, as one script for a GPU box with torch and sentence-transformers but
# no network: CUDA tests of the fast path, then benchmarks/teach.py on the GPU.
#   bash benchmarks/gpu_teach.sh CARRY OUTDIR
# CARRY holds wheels/ (pydantic and its deps), minilm16/ (all-MiniLM-L6-v2 with weights rounded to float16,
# to fit the transfer limit; restored to a float32 checkpoint here) and corpus.txt (the built-in corpus's
# first 5,000 sentences: gensim is not on the box).
set -uo pipefail
carry=${1:-.devcarry}
out=${2:-benchmarks/results}
export PYTHONPATH=src:/tmp/jasper-deps PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi -L
python3 -m pip install -q --no-deps --no-index --target /tmp/jasper-deps "$carry"/wheels/*.whl
python3 - "$carry" <<'PY'
import shutil, sys
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]) / "minilm16", Path("/tmp/minilm32")
shutil.copytree(src, dst, dirs_exist_ok=True)
weights = load_file(src / "model.safetensors")
save_file({k: v.float() for k, v in weights.items()}, dst / "model.safetensors", metadata={"format": "pt"})
print("torch", torch.__version__, torch.cuda.get_device_name(0))
PY
python3 -m pip list 2>/dev/null | grep -iE "^(sentence-transformers|transformers|tokenizers) "
python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_fast_encode.py 2>&1 | tail -15
common=(--device cuda --model /tmp/minilm32 --corpus "$carry/corpus.txt" --repeats 5)
python3 benchmarks/teach.py "${common[@]}" --out "$out/teach.json" 2>&1 | grep -vE "Loading|it/s|text/s"
# the same, jasper in float32: what bucketing and the pipeline give without half precision
python3 benchmarks/teach.py "${common[@]}" --dtype float32 --out "$out/teach_cuda_float32.json" 2>&1 | grep -vE "Loading|it/s|text/s"
python3 benchmarks/teach.py "${common[@]}" --batch-size 128 --out "$out/teach_cuda_b128.json" 2>&1 | grep -vE "Loading|it/s|text/s"
