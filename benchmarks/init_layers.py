"""Which layers of a model make the best start for a smaller student: STS-B dev of every `--keep` of its layers,
mean-pooled, with no training at all (choose on dev; the test split is printed for the chosen one only).

    python benchmarks/init_layers.py [--model sentence-transformers/all-MiniLM-L6-v2] [--keep 3]

Writes benchmarks/results/init_layers.json: [{keep_layers, sts_b_dev}], best first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from jasper.config import StudentConfig
from jasper.eval.metrics import paired_cosine, spearman100
from jasper.eval.sts import stsb_split
from jasper.models.backbone import layer_list, load_backbone
from jasper.models.student import build_student

RESULTS = Path(__file__).parent / "results" / "init_layers.json"


def sts_score(student: object, split: str, stsb_dir: str) -> float:
    """Spearman x 100 of the mean-pooled output's cosines on an STS-B split."""
    pairs, origin = stsb_split(split, stsb_dir)
    if pairs is None:
        raise SystemExit(origin)
    texts = list(dict.fromkeys(pairs.left + pairs.right))
    vectors = student.encode(texts, [None])[None]  # type: ignore[attr-defined]
    index = {t: i for i, t in enumerate(texts)}
    left = vectors[[index[t] for t in pairs.left]]
    right = vectors[[index[t] for t in pairs.right]]
    return spearman100(paired_cosine(left, right), pairs.scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--stsb-dir", default="../shared/data/stsb")
    args = parser.parse_args()
    n_layers = len(layer_list(load_backbone(args.model)[0])[1])
    rows = []
    for keep in itertools.combinations(range(n_layers), args.keep):
        began = time.perf_counter()
        config = StudentConfig(model=args.model, keep_layers=list(keep), max_length=args.max_length, heads=[8])
        dev = sts_score(build_student(config), "dev", args.stsb_dir)
        rows.append({"keep_layers": list(keep), "sts_b_dev": round(dev, 2)})
        print(f"{list(keep)}  STS-B dev {dev:.2f}  ({time.perf_counter() - began:.0f} s)", flush=True)
    rows.sort(key=lambda r: -r["sts_b_dev"])
    best = rows[0]["keep_layers"]
    whole = StudentConfig(model=args.model, max_length=args.max_length, heads=[8])
    print(
        f"best on dev: {best}; the whole model: STS-B dev {sts_score(build_student(whole), 'dev', args.stsb_dir):.2f}"
    )
    RESULTS.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
