"""The recipe table: one row per run folder (its losses, batching, loss weights, kept layers, steps, and FC1's
scores), written to benchmarks/results/recipe.json and printed as Markdown.

    python benchmarks/recipe.py runs/abl-cos-random runs/abl-all-random ... [--out benchmarks/results/recipe.json]

Each run folder needs its config.yaml and report.json (`jasper run` writes both); peer runs of
benchmarks/peer_recipe.py are read from their report.json and the `--peer NAME=RUN` they were given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

RESULTS = Path(__file__).parent / "results" / "recipe.json"


def _score(rows: list[dict[str, Any]], model: str, dim: int, task: str) -> float | None:
    found = [r["score"] for r in rows if (r["model"], r["dim"], r["task"]) == (model, dim, task)]
    return round(float(found[0]), 2) if found else None


def recipe_row(run: Path, name: str | None = None) -> dict[str, Any]:
    """The run's recipe and FC1's scores."""
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    rows = json.loads((run / "report.json").read_text(encoding="utf-8"))["rows"]
    text_stages = [s for s in config["stages"] if s["train"] != "vision"]
    fc1 = config["student"]["heads"][0]
    loss = config["loss"]
    return {
        "name": name or run.name,
        "fc1_losses": sorted({n for s in text_stages for n in s["fc1_losses"]}),
        "fc1_losses_by_stage": [s["fc1_losses"] for s in text_stages],
        "lr_by_stage": [s["lr"] for s in text_stages],
        "batching": sorted({s.get("batching", "random") for s in text_stages}),
        "weights": {k: loss[k] for k in ("cosine", "similarity", "resim")},
        "keep_layers": config["student"].get("keep_layers"),
        "steps": sum(int(s["steps"]) for s in text_stages),
        "sts_b_dev": _score(rows, "student", fc1, "sts-b-dev"),
        "sts_b_test": _score(rows, "student", fc1, "sts-b-test"),
        "derived_ndcg10": _score(rows, "student", fc1, "wiki-retrieval-derived:ndcg@10"),
        "teacher_similarity": _score(rows, "student", fc1, "teacher-similarity"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders; NAME=FOLDER to name a row")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for item in args.runs:
        name, _, folder = str(item).rpartition("=")
        rows.append(recipe_row(Path(folder), name or None))
    args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    columns = ["name", "fc1_losses_by_stage", "lr_by_stage", "batching", "keep_layers", "steps",
               "sts_b_dev", "sts_b_test", "derived_ndcg10", "teacher_similarity"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
