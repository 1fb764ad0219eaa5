"""Encoding speed and quality of one exported head, on sentences and on documents, through each backend.

Run twice by `benchmarks/st_compat.sh`, once per side, on the same head and the same texts:
- `--side jasper` (jasper's environment): jasper's own paths, as `jasper encode`, `jasper serve` and
  `jasper.load_model` use them: the saved student in torch (float32, packed matmuls) and the head's ONNX files
  through jasper's `OnnxEmbedder` (fp32, O3, int8);
- `--side st` (a sentence-transformers 5.x environment with its `onnx` extra): sentence-transformers loading the same
  folder (torch, and jasper's ONNX files), and its own exports of the head (optimum's O3 and int8 for this CPU).

Sentences: STS-B test (quality: Spearman x 100; speed on its first 512 unique sentences). Documents: BEIR's SciFact
test split read at the export's max_seq_length (quality: nDCG@10 x 100 over the whole corpus, queries as queries and
abstracts as documents; speed at batch 64 is that corpus pass, at batch 1 the median of 100 abstracts). Speed is
texts/s and tokens/s (the tokens each model reads: prompts included, cut at max_seq_length); batch 64 is the median
of `--repeats` passes.

    python benchmarks/onnx_speed.py runs/quickstart/export/dim-768 --side jasper --out rows-jasper.json
    .st5-venv/bin/python benchmarks/onnx_speed.py runs/quickstart/export/dim-768 --side st --out rows-st.json
    python benchmarks/onnx_speed.py --table rows-jasper.json rows-st.json benchmarks/results/onnx_vs_st.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "src"))  # jasper.eval.beir in the other environment too
from jasper.eval.beir import BeirTask, read_beir_folder

Encode = Callable[[list[str], str, int], np.ndarray]  # (texts, role, batch) -> unit vectors
ONE_TEXT_SAMPLE = 100
SENTENCE_SAMPLE = 512


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo (the platform's name elsewhere), and the threads used."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
        name = line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.environ.get('OMP_NUM_THREADS', '?')} threads"


def sts_texts(stsb_dir: Path) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """(unique sentences, left, right, gold) of STS-B test."""
    import csv

    left, right, gold = [], [], []
    with (stsb_dir / "sts-test.csv").open(encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            gold.append(float(row[4]))
            left.append(row[5])
            right.append(row[6])
    return list(dict.fromkeys(left + right)), left, right, np.asarray(gold)


def spearman(vectors: np.ndarray, texts: list[str], left: list[str], right: list[str], gold: np.ndarray) -> float:
    """STS-B: Spearman x 100 of the pair cosines."""
    from scipy.stats import spearmanr

    row = {t: i for i, t in enumerate(texts)}
    cosines = (vectors[[row[t] for t in left]] * vectors[[row[t] for t in right]]).sum(1)
    return float(spearmanr(cosines, gold).statistic * 100)


def timed(encode: Encode, texts: list[str], role: str, repeats: int) -> tuple[float, np.ndarray]:
    """(median seconds of `repeats` passes at batch 64, the vectors) after a warm-up."""
    encode(texts[:64], role, 64)
    seconds, vectors = [], np.zeros(0)
    for _ in range(repeats):
        began = time.perf_counter()
        vectors = encode(texts, role, 64)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), vectors


def one_at_a_time(encode: Encode, texts: list[str], role: str) -> float:
    """The median seconds of one text alone (batch 1)."""
    for text in texts[:5]:
        encode([text], role, 1)
    seconds = []
    for text in texts[:ONE_TEXT_SAMPLE]:
        began = time.perf_counter()
        encode([text], role, 1)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def measure(name: tuple[str, str, str], encode: Encode, data: dict[str, Any], repeats: int) -> list[dict[str, Any]]:
    """The rows of one backend: sentences and documents, batch 64 and batch 1, with their quality."""
    side, exporter, precision = name
    rows = []
    sentences, tokens = data["sentences"], data["tokens"]
    seconds, _ = timed(encode, sentences[:SENTENCE_SAMPLE], "text", repeats)
    quality = spearman(encode(sentences, "text", 64), sentences, *data["pairs"])
    one = one_at_a_time(encode, sentences, "text")
    sentence_tokens = sum(tokens["sentences"][:SENTENCE_SAMPLE])
    rows.append({"texts": "sentences", "batch": 64, "texts_per_s": SENTENCE_SAMPLE / seconds,
                 "tokens_per_s": sentence_tokens / seconds, "quality": quality, "metric": "sts-b-test"})  # fmt: skip
    rows.append({"texts": "sentences", "batch": 1, "texts_per_s": 1 / one, "p50_ms": one * 1000,
                 "tokens_per_s": np.mean(tokens["sentences"][:ONE_TEXT_SAMPLE]) / one, "quality": quality,
                 "metric": "sts-b-test"})  # fmt: skip
    task: BeirTask = data["scifact"]
    queries, documents = task.texts[: len(task.query_ids)], task.texts[len(task.query_ids) :]
    seconds, document_vectors = timed(encode, documents, "document", max(1, repeats - 2))
    query_vectors = encode(queries, "query", 64)
    ndcg = task.score(np.concatenate([query_vectors, document_vectors]))[f"ndcg@{10}"]
    one = one_at_a_time(encode, documents, "document")
    rows.append({"texts": "documents", "batch": 64, "texts_per_s": len(documents) / seconds,
                 "tokens_per_s": sum(tokens["documents"]) / seconds, "quality": ndcg,
                 "metric": "scifact-test:ndcg@10"})  # fmt: skip
    rows.append({"texts": "documents", "batch": 1, "texts_per_s": 1 / one, "p50_ms": one * 1000,
                 "tokens_per_s": np.mean(tokens["documents"][:ONE_TEXT_SAMPLE]) / one, "quality": ndcg,
                 "metric": "scifact-test:ndcg@10"})  # fmt: skip
    for row in rows:
        row.update(side=side, exporter=exporter, precision=precision, cpu=cpu_name())
        for key in ("texts_per_s", "tokens_per_s", "quality", "p50_ms"):
            if key in row:
                row[key] = round(float(row[key]), 2)
        print(f"{side:21s} {exporter:21s} {precision:5s} {row['texts']:9s} batch {row['batch']:2d}: "
              f"{row['texts_per_s']:8.1f} texts/s {row['tokens_per_s']:9.0f} tokens/s  "
              f"{row['metric']} {row['quality']:.2f}", flush=True)  # fmt: skip
    return rows


def token_counts(tokenizer: Any, texts: list[str], limit: int) -> list[int]:
    """Tokens each text is read as: cut at `limit`."""
    return [min(len(ids), limit) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]


def jasper_side(head: Path) -> list[tuple[tuple[str, str, str], Encode]]:
    """jasper's own paths: the run's saved student in torch, and the head's ONNX files through OnnxEmbedder."""
    from jasper.export.onnx import FP32_FILE, O3_FILE, OnnxEmbedder, int8_file
    from jasper.models.student import load_student

    student_dir = head.parent.parent / "student"
    dim = json.loads((head / "jasper_head.json").read_text())["dim"]
    student = load_student(student_dir, inference=True)
    found: list[tuple[tuple[str, str, str], Encode]] = [
        (("jasper", "torch", "fp32"), lambda t, r, b: student.encode(t, [dim], b, role=r)[dim])
    ]
    files = {"fp32": FP32_FILE, "O3": O3_FILE, "int8": int8_file(head)}
    for precision, file in files.items():
        if file is not None and (head / file).is_file():
            embedder = OnnxEmbedder(head, file)
            found.append((("jasper", "jasper", precision), lambda t, r, b, e=embedder: e.encode(t, b, r)))
    return found


def st_side(head: Path, work: Path) -> list[tuple[tuple[str, str, str], Encode]]:
    """sentence-transformers loading the head (torch, jasper's ONNX files), and its own exports of it."""
    from sentence_transformers import (
        SentenceTransformer,
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
    )

    def encoder(model: Any) -> Encode:
        def encode(texts: list[str], role: str, batch: int) -> np.ndarray:
            method = {"query": model.encode_query, "document": model.encode_document}.get(role, model.encode)
            return np.asarray(method(texts, batch_size=batch, normalize_embeddings=True), dtype=np.float32)

        return encode

    def load(folder: Path, backend: str = "torch", file: str | None = None) -> Any:
        kwargs = {"file_name": file} if file else None
        return SentenceTransformer(str(folder), device="cpu", backend=backend, model_kwargs=kwargs)

    found = [(("sentence-transformers", "torch", "fp32"), encoder(load(head)))]
    for file in sorted((head / "onnx").glob("*.onnx")):
        precision = "int8" if "int8" in file.name else "O3" if "O3" in file.name else "fp32"
        found.append((("sentence-transformers", "jasper", precision), encoder(load(head, "onnx", f"onnx/{file.name}"))))
    theirs = work / "st-export"
    shutil.copytree(head, theirs, ignore=shutil.ignore_patterns("onnx"))
    model = load(theirs, "onnx")  # optimum exports the plain graph: onnx/model.onnx
    model.save_pretrained(str(theirs))
    export_optimized_onnx_model(model, "O3", str(theirs))
    family = next(p.stem.split("_", 2)[2] for p in (head / "onnx").glob("model_*int8_*.onnx"))
    export_dynamic_quantized_onnx_model(model, family, str(theirs))
    for precision, file in (("fp32", "onnx/model.onnx"), ("O3", "onnx/model_O3.onnx")):
        found.append(
            (("sentence-transformers", "sentence-transformers", precision), encoder(load(theirs, "onnx", file)))
        )
    int8 = next((theirs / "onnx").glob("model_*int8_*.onnx")).name
    found.append(
        (("sentence-transformers", "sentence-transformers", "int8"), encoder(load(theirs, "onnx", f"onnx/{int8}")))
    )
    return found


def table(paths: list[Path], out: Path) -> None:
    """Both sides' rows side by side, with the ratios the bars ask for, into `out`."""
    rows = [r for path in paths for r in json.loads(path.read_text())]
    out.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")

    def find(side: str, exporter: str, precision: str, texts: str, batch: int) -> dict[str, Any] | None:
        key = (side, exporter, precision, texts, batch)
        return next(
            (r for r in rows if (r["side"], r["exporter"], r["precision"], r["texts"], r["batch"]) == key), None
        )

    print(f"\n{'texts':9s} {'batch':>5s} {'backend':38s} {'texts/s':>9s} {'tokens/s':>9s} {'quality':>8s}")
    for row in rows:
        label = f"{row['side']} loading {row['exporter']} {row['precision']}"
        print(f"{row['texts']:9s} {row['batch']:5d} {label:38s} {row['texts_per_s']:9.1f} {row['tokens_per_s']:9.0f} "
              f"{row['quality']:8.2f}")  # fmt: skip
    print()
    for texts in ("sentences", "documents"):
        for batch in (64, 1):
            torch_row = find("jasper", "torch", "fp32", texts, batch)
            for precision in ("fp32", "int8"):
                mine = find("sentence-transformers", "jasper", precision, texts, batch)
                theirs = find("sentence-transformers", "sentence-transformers", precision, texts, batch)
                path = find("jasper", "jasper", precision, texts, batch)
                if mine and theirs:
                    print(f"{texts} batch {batch}: jasper's {precision} file / sentence-transformers' own, both "
                          f"loaded by sentence-transformers: {mine['texts_per_s'] / theirs['texts_per_s']:.2f}x "
                          f"(quality {mine['quality']:.2f} vs {theirs['quality']:.2f})")  # fmt: skip
                if path and theirs:
                    print(f"{texts} batch {batch}: jasper's {precision} path / sentence-transformers' own "
                          f"{precision} export: {path['texts_per_s'] / theirs['texts_per_s']:.2f}x")  # fmt: skip
                if path and torch_row:
                    print(f"{texts} batch {batch}: jasper's {precision} path / jasper's torch path: "
                          f"{path['texts_per_s'] / torch_row['texts_per_s']:.2f}x")  # fmt: skip


def main() -> None:
    if sys.argv[1:2] == ["--table"]:
        table([Path(p) for p in sys.argv[2:-1]], Path(sys.argv[-1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("head", type=Path, help="an exported head with its ONNX files (jasper export --format onnx)")
    parser.add_argument("--side", choices=["jasper", "st"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stsb", type=Path, default=Path("../shared/data/stsb"))
    parser.add_argument("--scifact", type=Path, default=Path("../shared/data/scifact"))
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    sentences, left, right, gold = sts_texts(args.stsb)
    scifact = BeirTask.from_data("scifact-test", read_beir_folder(args.scifact, ["test"]), "test")
    settings = json.loads((args.head / "sentence_bert_config.json").read_text())
    prompts = json.loads((args.head / "config_sentence_transformers.json").read_text()).get("prompts") or {}
    tokenizer = AutoTokenizer.from_pretrained(args.head)
    limit = int(settings["max_seq_length"])
    documents = [prompts.get("document", "") + t for t in scifact.texts[len(scifact.query_ids) :]]
    data = {
        "sentences": sentences,
        "pairs": (left, right, gold),
        "scifact": scifact,
        "tokens": {
            "sentences": token_counts(tokenizer, sentences, limit),
            "documents": token_counts(tokenizer, documents, limit),
        },
    }
    rows = []
    with tempfile.TemporaryDirectory() as work:
        backends = jasper_side(args.head) if args.side == "jasper" else st_side(args.head, Path(work))
        for name, encode in backends:
            rows += measure(name, encode, data, args.repeats)
    args.out.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")


if __name__ == "__main__":
    main()
