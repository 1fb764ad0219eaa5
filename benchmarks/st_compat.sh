#!/usr/bin/env bash
# Do jasper's exports load in the sentence-transformers ecosystem, with the same vectors? And how do jasper's ONNX
# files compare with sentence-transformers' own exports of the same student?
#
#   bash benchmarks/st_compat.sh [RUN]        (default runs/quickstart; run `jasper run configs/quickstart.yaml` first)
#   REPEATS=1 bash benchmarks/st_compat.sh   (one timed pass per backend instead of the median of 3: ~3x quicker)
#
# 1. jasper (this environment, sentence-transformers 6.x) exports every head with ONNX and int8 files and writes
#    its own torch vectors of the STS-B test sentences; sentence-transformers 6.x loads each folder (torch).
# 2. A separate virtual environment ($ST5_VENV, default .st5-venv) gets sentence-transformers 5.x with its `onnx`
#    extra (the newest 5.x release where that extra installs: optimum pins transformers < 4.58) and runs
#    benchmarks/st_compat.py there: every head by torch, ONNX fp32, O3 and int8, checked against jasper's vectors.
# 3. benchmarks/onnx_speed.py times the largest head on sentences (STS-B) and documents (SciFact abstracts at the
#    export's length), batch 1 and 64, texts/s and tokens/s with each backend's quality: jasper's own paths here,
#    then (in the second environment) sentence-transformers loading jasper's files and its own exports of the head;
#    both sides' rows go to benchmarks/results/onnx_vs_st.json with the ratios printed.
# Exits non-zero on any mismatch. Needs PyPI for the second environment.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/quickstart}
ST5_VENV=${ST5_VENV:-.st5-venv}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}   # timed passes per backend at batch 64 (the median counts)
REF=$(mktemp -d)
trap 'rm -rf "$REF"' EXIT
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=$THREADS

jasper export "$RUN" --format onnx --quantize int8
python - "$RUN" "$REF" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from sentence_transformers import SentenceTransformer
import sentence_transformers
from jasper import load_model
from jasper.eval.sts import stsb_split
run, ref = Path(sys.argv[1]), Path(sys.argv[2])
pairs, origin = stsb_split("test", "../shared/data/stsb")
if pairs is None:
    sys.exit(origin)
texts = list(dict.fromkeys(pairs.left + pairs.right))
(ref / "texts.json").write_text(json.dumps(texts))
(ref / "pairs.json").write_text(json.dumps({"left": pairs.left, "right": pairs.right, "scores": pairs.scores.tolist()}))
model = load_model(run)
bad = []
for dim in model.dims:
    vectors = model.encode(texts, dim=dim)
    np.save(ref / f"dim-{dim}.npy", vectors)
    found = SentenceTransformer(str(run / "export" / f"dim-{dim}"), device="cpu").encode(texts, normalize_embeddings=True)
    diff = float(np.abs(found - vectors).max())
    print(f"sentence-transformers {sentence_transformers.__version__}: dim-{dim} torch max|diff| {diff:.2e}")
    if diff > 1e-4:
        bad.append(dim)
sys.exit(f"sentence-transformers {sentence_transformers.__version__} mismatch at {bad}" if bad else 0)
PY

if [ ! -x "$ST5_VENV/bin/python" ]; then
  python3 -m venv "$ST5_VENV"
  "$ST5_VENV/bin/pip" install -q --upgrade pip
  "$ST5_VENV/bin/pip" install -q torch==2.13.0   # the local CPU wheel; elsewhere any CPU torch >= 2.2
  "$ST5_VENV/bin/pip" install -q "sentence-transformers[onnx]<6"
fi
"$ST5_VENV/bin/python" benchmarks/st_compat.py "$RUN/export" "$REF" --threads "$THREADS" --no-timing

# speed and quality of the largest head, on sentences and documents: jasper's paths, then sentence-transformers
# loading jasper's files and its own exports of the same head (benchmarks/onnx_speed.py)
HEAD=$(ls -d "$RUN"/export/dim-* | sort -t- -k2 -n | tail -1)
python benchmarks/onnx_speed.py "$HEAD" --side jasper --threads "$THREADS" --repeats "$REPEATS" --out "$REF/rows-jasper.json"
"$ST5_VENV/bin/python" benchmarks/onnx_speed.py "$HEAD" --side st --threads "$THREADS" --repeats "$REPEATS" --out "$REF/rows-st.json"
python benchmarks/onnx_speed.py --table "$REF/rows-jasper.json" "$REF/rows-st.json" benchmarks/results/onnx_vs_st.json
