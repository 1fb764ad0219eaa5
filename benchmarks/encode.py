"""Encoding speed and size of a run's models, side by side: every exported head (torch fp32, and where
`jasper export --format onnx --quantize int8` wrote them, ONNX fp32, O3 and int8), the initialisation, each
teacher.

All encode the same texts (the run's held-out corpus rows: real lengths) after a warm-up: batch 64 (the median of
`--repeats` timings counts) and, for the student's heads, batch 1 (one text at a time; the median latency, p50_ms,
counts). Parameters are counted on the loaded model (the teachers' C engine: not countable, left empty). STS-B
test: from the run's `report.json` for the torch rows, computed here (the same pairs and metric) for the ONNX rows.

    python benchmarks/encode.py configs/quickstart.yaml [--repeats 3] [--heads 768]
Writes benchmarks/results/encode.json: [{run, model, dim, backend, precision, device, batch, params, texts_per_s,
p50_ms, sts_b}], replacing the rows of the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from jasper.config import load_config
from jasper.data.prepare import load_texts, split_rows
from jasper.runtime import set_threads, setup_logging

RESULTS = Path(__file__).parent / "results" / "encode.json"
BATCH = 64


def timed(encode: Callable[[list[str]], object], texts: list[str], repeats: int) -> float:
    """Median texts/s of `encode(texts)` over `repeats`, after a warm-up on 64 texts."""
    encode(texts[:64])
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        encode(texts)
        seconds.append(time.perf_counter() - began)
    return len(texts) / statistics.median(seconds)


def one_at_a_time(encode: Callable[[list[str]], object], texts: list[str]) -> tuple[float, float]:
    """(texts/s, median ms) of encoding one text at a time, after a warm-up."""
    for text in texts[:10]:
        encode([text])
    timings = []
    for text in texts[:200]:
        began = time.perf_counter()
        encode([text])
        timings.append(time.perf_counter() - began)
    median = statistics.median(timings)
    return 1.0 / median, 1000 * median


def onnx_rows(folder: Path, sample: list[str], repeats: int, stsb_dir: str | None, add: Callable[..., None]) -> None:
    """Rows for the head's ONNX fp32, O3 and int8 copies, where they exist: speed at batch 64 and 1, STS-B test."""
    from jasper.eval.metrics import sts_spearman
    from jasper.eval.sts import stsb_split
    from jasper.export.onnx import FP32_FILE, INT8_FILE, O3_FILE, OnnxEmbedder

    pairs, _ = stsb_split("test", stsb_dir)
    for file, precision in ((FP32_FILE, "fp32"), (O3_FILE, "O3"), (INT8_FILE, "int8")):
        if not (folder / file).is_file():
            continue
        embedder = OnnxEmbedder(folder, file)
        score = None
        if pairs is not None:
            score = sts_spearman(embedder.encode(pairs.left), embedder.encode(pairs.right), pairs.scores)
        rate = timed(lambda t, e=embedder: e.encode(t, BATCH), sample, repeats)
        add("student", embedder.dims[0], None, rate, "onnx", precision, score)
        one, p50 = one_at_a_time(embedder.encode, sample)
        add("student", embedder.dims[0], None, one, "onnx", precision, score, batch=1, p50_ms=p50)
        print(f"   onnx {precision} file: {(folder / file).stat().st_size / 2**20:.1f} MB")


def count(module: torch.nn.Module) -> int:
    """Parameters of a torch module."""
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    """Time every model of the run on the same texts; print a table and write the JSON rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--heads", default=None, help="comma-separated head dims to time (default: every head)")
    args = parser.parse_args()
    setup_logging()
    config = load_config(args.config)
    set_threads(config.threads)
    texts = load_texts(config)
    _, held = split_rows(len(texts), config.corpus.holdout, config.seed)
    sample = [texts[int(i)] for i in held[: args.texts]]
    report = config.folder.report_json
    sts = {}
    if report.is_file():
        rows = json.loads(report.read_text())["rows"]
        sts = {(r["model"], r["dim"]): r["score"] for r in rows if r["task"] == "sts-b-test"}
    device = f"cpu ({torch.get_num_threads()} threads)"
    found = []

    def add(
        model: str,
        dim: int,
        params: int | None,
        rate: float,
        backend: str = "torch",
        precision: str = "fp32",
        sts_b: float | None = None,
        batch: int = BATCH,
        p50_ms: float | None = None,
    ) -> None:
        score = sts.get((model, dim)) if sts_b is None else sts_b
        found.append({"run": config.name, "model": model, "dim": dim, "backend": backend, "precision": precision})
        found[-1].update(device=device, batch=batch, params=params, texts_per_s=round(rate, 1))
        found[-1].update(p50_ms=round(p50_ms, 2) if p50_ms is not None else None, sts_b=score)
        latency = f", one text {p50_ms:.2f} ms" if p50_ms is not None else ""
        print(
            f"{model:>10} {dim:>5} {backend:>5} {precision:4s} batch {batch:2d}  params {params or 0:>12,}",
            f"{rate:8.1f} texts/s{latency}  STS-B {score}",
        )

    from sentence_transformers import SentenceTransformer

    wanted = {int(d) for d in args.heads.split(",")} if args.heads else None
    for folder in sorted(config.folder.export.glob("dim-*"), key=lambda p: -int(p.name[4:])):
        dim = int(folder.name[4:])
        if wanted is not None and dim not in wanted:
            continue
        model = SentenceTransformer(str(folder), device="cpu")
        rate = timed(lambda t, m=model: m.encode(t, batch_size=BATCH), sample, args.repeats)
        add("student", dim, count(model), rate)
        one, p50 = one_at_a_time(lambda t, m=model: m.encode(t, batch_size=1), sample)
        add("student", dim, count(model), one, batch=1, p50_ms=p50)
        onnx_rows(folder, sample, args.repeats, config.eval.stsb_dir, add)
    from jasper.models.student import build_student

    init = build_student(config.student)
    add("init", init.hidden_size, count(init.backbone), timed(lambda t: init.encode(t, [None], BATCH), sample, 3))
    from jasper.teachers import build_teacher

    for teacher_config in config.teachers:
        teacher = build_teacher(teacher_config)
        module = getattr(teacher, "model", None)
        params = count(module) if isinstance(module, torch.nn.Module) else None
        dim = int(np.asarray(teacher.encode(sample[:2])).shape[1])
        add(teacher_config.name, dim, params, timed(teacher.encode, sample, args.repeats))
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    kept = [r for r in previous if r.get("run") != config.name]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(kept + found, indent=1) + "\n")


if __name__ == "__main__":
    main()
