#!/usr/bin/env bash
# The GPU check of training speed (issue 12), as one script for an offline GPU box with torch, transformers
# and sentence-transformers installed:
#   bash benchmarks/gpu_train.sh prepare [CARRY]      # here: wheels, the tokenizer and a real corpus -> CARRY
#   bash benchmarks/gpu_train.sh run [CARRY] [OUTDIR]  # there: CUDA tests of the speed paths, then the benchmark
# CARRY (default .devcarry/train, ~10 MB) holds wheels/ (pydantic and its deps), tokenizer/ (all-MiniLM-L6-v2's)
# and passages.txt (20,000 Wikipedia passages from ../shared/data/wiki: real lengths, cut at 128 tokens).
# The students are random-weight MiniLM-L6 and BERT-base shapes; batch 128, length 128, bf16 autocast.
set -uo pipefail
mode=${1:-run}
carry=${2:-.devcarry/train}
out=${3:-benchmarks/results}

if [[ $mode == prepare ]]; then
    set -e
    mkdir -p "$carry/wheels"
    python -m pip download -q --only-binary=:all: --dest "$carry/wheels" "pydantic>=2" pyyaml
    python - "$carry" <<'PY'
import gzip, json, sys
from pathlib import Path
from transformers import AutoTokenizer
from jasper.models.backbone import transformer_path
carry = Path(sys.argv[1])
AutoTokenizer.from_pretrained(transformer_path("sentence-transformers/all-MiniLM-L6-v2")).save_pretrained(carry / "tokenizer")
with gzip.open("../shared/data/wiki/passages.jsonl.gz", "rt") as lines:
    texts = [json.loads(line)["text"].replace("\n", " ") for _, line in zip(range(20000), lines)]
(carry / "passages.txt").write_text("\n".join(texts) + "\n")
PY
    du -sh "$carry"
    exit 0
fi

export PYTHONPATH=src:/tmp/jasper-deps PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi -L
python3 -m pip install -q --no-deps --no-index --target /tmp/jasper-deps "$carry"/wheels/*.whl
python3 -m pip list 2>/dev/null | grep -iE "^(torch|sentence-transformers|transformers|datasets) "
python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_speed_paths.py tests/test_resim_fast.py -k "graph" 2>&1 | tail -5
common=(--device cuda --batch 128 --max-length 128 --precision bf16 --corpus "$carry/passages.txt"
        --students minilm,bert-base --steps 20 --repeats 4 --warmup 10 --out "$out/train.json")
bench() { python3 benchmarks/train.py "${common[@]}" "$@" 2>&1 | grep -E "samples/s  mfu|Error|error" ; }
# the plain path: one padded batch per step, a host sync per step, eager
bench --variant plain student.model="$carry/tokenizer" student.length_groups=1
# jasper's defaults (length groups inside each batch)
bench --variant default student.model="$carry/tokenizer"
# every speed path: length-bucketed batches, no per-step sync, compiled encoder, graphed objective
bench --variant fast student.model="$carry/tokenizer" stages.2.length_pool=8 stages.2.log_every=20 \
    compile=true cuda_graphs=true
