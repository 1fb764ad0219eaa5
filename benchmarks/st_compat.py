"""Run inside a sentence-transformers 5.x environment (benchmarks/st_compat.sh builds it): load every exported
head of a jasper run as the ecosystem does, check its vectors against jasper's own, then export the same heads
with sentence-transformers' own ONNX helpers and time both side by side.

    python benchmarks/st_compat.py EXPORT_DIR REFERENCE_DIR [--repeats 3] [--threads 2] [--no-timing]

EXPORT_DIR holds the run's `dim-<D>/` folders (`jasper export RUN --format onnx --quantize int8`); REFERENCE_DIR
holds, per head, jasper's torch vectors of the STS-B test sentences (`dim-<D>.npy`), the sentences
(`texts.json`) and the gold pairs (`pairs.json`). Exits 1 on any mismatch:
- torch and ONNX fp32: max |diff| to jasper's vectors <= 1e-4;
- int8: mean cosine >= 0.99, and STS-B within 0.3 of fp32.
Writes the timing rows to benchmarks/results/onnx_vs_st.json (with --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

warnings.filterwarnings("ignore")
FP32_ATOL = 1e-4
INT8_MIN_MEAN_COSINE = 0.99
INT8_MAX_STSB_DROP = 0.3
JASPER_FILES = {"fp32": "onnx/model.onnx", "O3": "onnx/model_O3.onnx", "int8": "onnx/model_qint8_avx512_vnni.onnx"}


def sts_b(vectors: np.ndarray, texts: list[str], pairs: dict[str, Any]) -> float:
    """Spearman x 100 of the pair cosines against the gold scores."""
    index = {t: i for i, t in enumerate(texts)}
    left = vectors[[index[t] for t in pairs["left"]]]
    right = vectors[[index[t] for t in pairs["right"]]]
    return float(spearmanr((left * right).sum(1), pairs["scores"]).statistic * 100)


def load(folder: Path, backend: str = "torch", file_name: str | None = None) -> Any:
    """A SentenceTransformer of the folder, as a user of the ecosystem loads it."""
    from sentence_transformers import SentenceTransformer

    kwargs = {"file_name": file_name} if file_name else {}
    return SentenceTransformer(str(folder), device="cpu", backend=backend, model_kwargs=kwargs or None)


def encode(model: Any, texts: list[str], batch: int = 64) -> np.ndarray:
    """Unit vectors, float32."""
    return np.asarray(model.encode(texts, batch_size=batch, normalize_embeddings=True), dtype=np.float32)


def check_head(folder: Path, reference: Path, texts: list[str], pairs: dict[str, Any]) -> list[str]:
    """Every file of one head against jasper's vectors; the problems found (none: it passes)."""
    expected = np.load(reference / f"{folder.name}.npy")
    problems, scores = [], {}
    loaders = {"torch": lambda: load(folder)}
    loaders |= {k: (lambda f=f: load(folder, "onnx", f)) for k, f in JASPER_FILES.items() if (folder / f).is_file()}
    for kind, make in loaders.items():
        found = encode(make(), texts)
        scores[kind] = sts_b(found, texts, pairs)
        cosine = (found * expected).sum(1)
        diff = float(np.abs(found - expected).max())
        print(f"{folder.name} {kind:5s} max|diff| {diff:.2e}  mean cos {cosine.mean():.5f}  STS-B {scores[kind]:.2f}")
        if kind in ("torch", "fp32") and diff > FP32_ATOL:
            problems.append(f"{folder.name} {kind}: max |diff| {diff:.2e} > {FP32_ATOL}")
        if kind == "int8" and cosine.mean() < INT8_MIN_MEAN_COSINE:
            problems.append(f"{folder.name} int8: mean cosine {cosine.mean():.4f} < {INT8_MIN_MEAN_COSINE}")
    if "int8" in scores and scores["torch"] - scores["int8"] > INT8_MAX_STSB_DROP:
        problems.append(
            f"{folder.name} int8: STS-B {scores['int8']:.2f}, {scores['torch'] - scores['int8']:.2f} below fp32"
        )
    return problems


def rate(model: Any, texts: list[str], batch: int, repeats: int) -> tuple[float, float | None]:
    """(texts/s at `batch`, and for batch 1 the median ms of one text): the median of `repeats` passes."""
    encode(model, texts[: batch * 2], batch)  # warm up: sessions, shapes
    if batch == 1:
        timings = []
        for text in texts[:200]:
            began = time.perf_counter()
            model.encode([text], batch_size=1)
            timings.append(time.perf_counter() - began)
        return 1.0 / statistics.median(timings), statistics.median(timings) * 1000
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        encode(model, texts, batch)
        runs.append(len(texts) / (time.perf_counter() - began))
    return statistics.median(runs), None


def st_exports(folder: Path, work: Path) -> dict[str, str]:
    """sentence-transformers' own O3 and avx512_vnni int8 exports of the head (in a copy of its folder)."""
    import shutil

    from sentence_transformers import export_dynamic_quantized_onnx_model, export_optimized_onnx_model

    copy = work / f"st-{folder.name}"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("onnx"))
    model = load(copy, "onnx", None)  # exports the plain graph through optimum (onnx/model.onnx)
    model.save_pretrained(str(copy))
    export_optimized_onnx_model(model, "O3", str(copy))
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(copy))
    return {"fp32": str(copy), "O3": str(copy), "int8": str(copy)}


def timing(folder: Path, texts: list[str], pairs: dict, repeats: int, work: Path) -> list[dict[str, Any]]:
    """jasper's files and sentence-transformers' own exports of the same head, through the same loader."""
    theirs = st_exports(folder, work)
    st_files = {"fp32": "onnx/model.onnx", "O3": "onnx/model_O3.onnx", "int8": "onnx/model_qint8_avx512_vnni.onnx"}
    rows = []
    candidates = [("torch", "fp32", lambda: load(folder))]
    candidates += [("jasper", k, (lambda f=f: load(folder, "onnx", f))) for k, f in JASPER_FILES.items()]
    candidates += [("sentence-transformers", k, (lambda k=k, f=f: load(Path(theirs[k]), "onnx", f)))
                   for k, f in st_files.items()]  # fmt: skip
    for exporter, precision, make in candidates:
        model = make()
        score = sts_b(encode(model, texts), texts, pairs)
        for batch in (1, 64):
            texts_per_s, p50 = rate(model, texts, batch, repeats)
            row = {"exporter": exporter, "precision": precision, "batch": batch, "texts_per_s": round(texts_per_s, 1)}
            rows.append(row | {"p50_ms": round(p50, 2) if p50 is not None else None, "sts_b": round(score, 2)})
            print(f"{exporter:22s} {precision:5s} batch {batch:2d}: {texts_per_s:8.1f} texts/s"
                  f"{f', one text {p50:.2f} ms' if p50 else ''}  STS-B {score:.2f}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timing-dim", type=int, default=None, help="the head to time (default: the largest)")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import sentence_transformers
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(f"sentence-transformers {sentence_transformers.__version__}")
    texts = json.loads((args.reference / "texts.json").read_text())
    pairs = json.loads((args.reference / "pairs.json").read_text())
    heads = sorted(args.export_dir.glob("dim-*"), key=lambda p: -int(p.name.split("-")[1]))
    problems = [p for head in heads for p in check_head(head, args.reference, texts, pairs)]
    if not args.no_timing:
        head = next(h for h in heads if args.timing_dim in (None, int(h.name.split("-")[1])))
        with tempfile.TemporaryDirectory() as work:
            rows = timing(head, texts, pairs, args.repeats, Path(work))
        if args.out is not None:
            args.out.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    for problem in problems:
        print(f"MISMATCH {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
