"""What the in-batch losses see on a real corpus: the teachers' in-batch similarities (random and clustered batches)
against those of STS-B pairs, each loss part's gradient norm on the encoder, and where in the similarity range the
similarity-matrix error sits.

    python benchmarks/diagnose_losses.py configs/wiki.yaml [key=value ...] [--batches 20]

Needs the config's teacher store (`jasper teach CONFIG`). Writes benchmarks/results/diagnosis.json and
docs/diagnosis.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from jasper.config import load_config
from jasper.data.prepare import load_texts, split_rows
from jasper.data.store import TeacherStore
from jasper.eval.sts import stsb_split
from jasper.losses import cosine_loss, resim_loss, similarity_loss
from jasper.models.student import build_student
from jasper.teachers import build_teacher
from jasper.train.batching import cluster_rows, clustered_order
from jasper.train.frozen import ridge_start
from jasper.train.schedule import epoch_order

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "diagnosis.json"
PLOT = ROOT / "docs" / "diagnosis.png"
BINS = np.linspace(0.0, 1.0, 21)


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    """The entries above the diagonal of a square matrix."""
    rows, cols = np.triu_indices(len(matrix), k=1)
    return matrix[rows, cols]


def sts_pair_similarities(config: object, stsb_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(teacher cosine of each STS-B dev pair, its gold score), the teachers joined as in training."""
    pairs, origin = stsb_split("dev", stsb_dir)
    if pairs is None:
        raise SystemExit(origin)
    texts = list(dict.fromkeys(pairs.left + pairs.right))
    parts = []
    for teacher in config.teachers:  # type: ignore[attr-defined]
        vectors = np.asarray(build_teacher(teacher).encode(texts), dtype=np.float64)
        parts.append(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    joined = np.concatenate(parts, axis=1)
    joined /= np.linalg.norm(joined, axis=1, keepdims=True)
    index = {t: i for i, t in enumerate(texts)}
    left = joined[[index[t] for t in pairs.left]]
    right = joined[[index[t] for t in pairs.right]]
    return (left * right).sum(axis=1), np.asarray(pairs.scores)


def grad_norms(student: object, batch_ids: list, teacher: torch.Tensor, margin: float) -> dict[str, float]:
    """Each FC1 loss part's (unweighted) gradient norm on the encoder, for one batch."""
    encoder = [p for p in student.backbone.parameters() if p.requires_grad]  # type: ignore[attr-defined]
    norms = {}
    for name, loss in (("cosine", cosine_loss), ("similarity", similarity_loss), ("resim", resim_loss)):
        student.zero_grad(set_to_none=True)  # type: ignore[attr-defined]
        fc1 = student(None, [teacher.shape[1]], ids=batch_ids)[teacher.shape[1]]  # type: ignore[operator]
        value = loss(fc1, teacher, margin) if name == "resim" else loss(fc1, teacher)
        value.backward()
        norms[name] = float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in encoder if p.grad is not None)))
    return norms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=0, help="default: training rows // (8 x batch size)")
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--fit-rows", type=int, default=8000, help="rows for the ridge start of FC1")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    texts = load_texts(config)
    store = TeacherStore(config.store_dir, config.teachers, texts)
    train_rows, _ = split_rows(len(texts), config.corpus.holdout, config.seed)
    targets = store.vectors(train_rows).numpy()
    clusters = args.clusters or max(2, len(train_rows) // (8 * args.batch_size))
    labels = cluster_rows(targets, clusters, config.seed)
    rng = np.random.default_rng(config.seed)
    random_order = epoch_order(len(train_rows), 0, 0, args.batch_size, config.seed)
    clustered = clustered_order(random_order, labels, args.batch_size, args.share, rng)
    batches = {
        "random": [random_order[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.batches)],
        "clustered": [clustered[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.batches)],
    }
    student = build_student(config.student)
    fit = np.sort(rng.choice(len(train_rows), min(args.fit_rows, len(train_rows)), replace=False))
    pooled = student.encode([texts[int(train_rows[i])] for i in fit], [None], normalize=False)[None]
    ridge_start(student, pooled, targets[fit], config.student.ridge_alpha)
    student.requires_grad_(False)
    for layer in student.backbone.encoder.layer[-2:]:
        layer.requires_grad_(True)
    student.train(False)
    fc1 = config.student.heads[0]
    report: dict = {"clusters": clusters, "share": args.share, "batch_size": args.batch_size}
    errors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind, chosen in batches.items():
        sims, errs, norms = [], [], []
        for positions in chosen:
            rows = train_rows[positions]
            teacher = torch.from_numpy(targets[positions])
            ids = student.token_ids([texts[int(r)] for r in rows])
            norms.append(grad_norms(student, ids, teacher, config.loss.margin))
            with torch.no_grad():
                out = torch.nn.functional.normalize(student(None, [fc1], ids=ids)[fc1], dim=-1).numpy()
            t = targets[positions] @ targets[positions].T
            s = out @ out.T
            sims.append(off_diagonal(t))
            errs.append(off_diagonal((s - t) ** 2))
        teacher_sims, squared = np.concatenate(sims), np.concatenate(errs)
        errors[kind] = (teacher_sims, squared)
        report[kind] = {
            "teacher_similarity_quantiles": np.quantile(teacher_sims, [0.1, 0.5, 0.9, 0.99]).round(3).tolist(),
            "share_above_0.5": float((teacher_sims > 0.5).mean()),
            "grad_norm": {k: float(np.mean([n[k] for n in norms])) for k in norms[0]},
            "similarity_error_share_below_0.3": float(squared[teacher_sims < 0.3].sum() / squared.sum()),
        }
    sts_sims, _ = sts_pair_similarities(config, config.eval.stsb_dir or "")
    report["sts_b_dev_pairs"] = {
        "teacher_similarity_quantiles": np.quantile(sts_sims, [0.1, 0.5, 0.9, 0.99]).round(3).tolist(),
        "share_above_0.5": float((sts_sims > 0.5).mean()),
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    plot(errors, sts_sims)


def plot(errors: dict[str, tuple[np.ndarray, np.ndarray]], sts_sims: np.ndarray) -> None:
    """Left: the teachers' similarity of in-batch pairs and of STS-B pairs; right: where the squared error of the
    similarity matrix sits along the teachers' similarity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for kind, (sims, _) in errors.items():
        left.hist(sims, bins=BINS, density=True, histtype="step", lw=1.5, label=f"in-batch pairs, {kind} batches")
    left.hist(sts_sims, bins=BINS, density=True, histtype="step", lw=1.5, color="black", label="STS-B dev pairs")
    left.set_xlabel("teachers' cosine similarity of a pair")
    left.set_ylabel("density")
    left.set_title("which pairs the similarity losses see", fontsize=10)
    left.legend(fontsize=8)
    centres = (BINS[:-1] + BINS[1:]) / 2
    for kind, (sims, squared) in errors.items():
        share = [squared[(sims >= a) & (sims < b)].sum() / squared.sum() for a, b in itertools.pairwise(BINS)]
        right.plot(centres, share, "o-", label=f"{kind} batches")
    right.set_xlabel("teachers' cosine similarity of a pair")
    right.set_ylabel("share of the similarity-matrix squared error")
    right.set_title("where the similarity-matrix error sits (student at its ridge start)", fontsize=10)
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)
    print(f"wrote {PLOT}")


if __name__ == "__main__":
    main()
