"""The peer recipe, run rather than quoted: sentence-transformers' own distillation on jasper's student, texts,
teachers and sample budget, then `jasper eval` on the result.

Two variants, each trained with `SentenceTransformerTrainer` + `MSELoss`:
- `dense`: the run's student encoder (its kept layers), mean pooling and a fresh `Dense` layer to the
  concatenated teacher vector (the run's stored target, the same rows jasper trains on);
- `layer-reduction`: the classic single-teacher recipe (sentence-transformers' layer-reduction example):
  the cut encoder with no head, regressed onto the first teacher's own vectors.

The sample budget is the run's (every stage's steps x batch size) unless `--samples` says otherwise. Reads the
run's stored teacher vectors (run `jasper teach CONFIG` first); writes `<output_dir>/<name>-peer-<variant>/`
(the model and its `report.json`) and `benchmarks/results/peer_recipe.json`.

    python benchmarks/peer_recipe.py configs/wiki.yaml [--variants dense,layer-reduction] [--lr 5e-5,1e-4]

Several learning rates (`--lr a,b,c`) train one model each (`...-peer-<variant>-lr<lr>/`); choose among them on
STS-B dev (`eval.stsb_dev: true`), never on test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from jasper.config import load_config
from jasper.data.prepare import load_texts, split_rows
from jasper.data.store import TeacherStore
from jasper.eval.report import print_table, write_markdown, write_report
from jasper.eval.runner import evaluate_model
from jasper.eval.scores import scores_as_dicts
from jasper.runtime import seed_everything, set_threads, setup_logging

RESULTS = Path(__file__).parent / "results" / "peer_recipe.json"


def build_student(model_name: str, keep: list[int] | None, max_length: int, out_dim: int | None) -> object:
    """The run's student encoder as a SentenceTransformer: Transformer (cut), mean Pooling, optional Dense."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
    from torch import nn

    from jasper.models.backbone import keep_layers, transformer_path

    transformer = Transformer(transformer_path(model_name), max_seq_length=max_length)
    if keep is not None:
        keep_layers(transformer.auto_model, keep)
    hidden = transformer.auto_model.config.hidden_size
    modules: list[nn.Module] = [transformer, Pooling(hidden, pooling_mode="mean")]
    if out_dim is not None:
        modules.append(Dense(hidden, out_dim, activation_function=nn.Identity()))
    return SentenceTransformer(modules=modules, device="cpu")


def train_peer(
    model: object, texts: list[str], targets: np.ndarray, samples: int, batch: int, lr: float, out: Path
) -> None:
    """SentenceTransformerTrainer + MSELoss for `samples` training examples; saves the model to `out`."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MSELoss

    dataset = Dataset.from_dict({"text": texts, "label": targets.tolist()})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=max(1, samples // batch),
        per_device_train_batch_size=batch,
        learning_rate=lr,
        warmup_ratio=0.1,
        save_strategy="no",
        report_to="none",
        logging_steps=100,
        seed=0,
        dataloader_drop_last=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=MSELoss(model))
    trainer.train()
    model.save(str(out / "model"))  # type: ignore[attr-defined]


def main() -> None:
    """Train each variant, evaluate it with jasper's tasks, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--variants", default="dense,layer-reduction")
    parser.add_argument("--samples", type=int, default=None, help="training examples (default: the run's budget)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", default="5e-5", help="learning rate(s), comma-separated")
    args = parser.parse_args()
    setup_logging()
    config = load_config(args.config, args.overrides)
    set_threads(config.threads)
    seed_everything(config.seed)
    texts = load_texts(config)
    train_rows, _ = split_rows(len(texts), config.corpus.holdout, config.seed)
    store = TeacherStore(config.store_dir, config.teachers, texts)
    samples = args.samples or sum(
        (s.steps or int((s.epochs or 1) * len(train_rows) // s.batch_size)) * s.batch_size for s in config.stages
    )
    train_texts = [texts[int(r)] for r in train_rows]
    rows = []
    learning_rates = [float(lr) for lr in args.lr.split(",")]
    for variant, lr in [(v, lr) for v in args.variants.split(",") for lr in learning_rates]:
        if variant == "dense":
            targets = store.vectors(train_rows).numpy()
            out_dim: int | None = store.dim
        elif variant == "layer-reduction":
            targets = store.teacher_vectors(store.names[0], train_rows).numpy()
            out_dim = None
        else:
            raise SystemExit(f"unknown variant '{variant}' (dense, layer-reduction)")
        suffix = f"-lr{lr:g}" if len(learning_rates) > 1 else ""
        out = config.run_dir.with_name(f"{config.name}-peer-{variant}{suffix}")
        student = build_student(config.student.model, config.student.keep_layers, config.student.max_length, out_dim)
        began = time.perf_counter()
        train_peer(student, train_texts, targets, samples, args.batch_size, lr, out)
        seconds = time.perf_counter() - began
        scores, notes = evaluate_model(str(out / "model"), config.eval, run_dir=config.run_dir)
        found = scores_as_dicts(scores)
        for row in found:
            row["model"] = f"peer {variant}"
        write_report(out / "report.json", found, seconds, notes, run=config.name, samples=samples, lr=lr)
        write_markdown(out / "report.md", f"peer recipe '{variant}' on '{config.name}'", found, notes, [])
        print_table(found, notes, title=f"peer recipe '{variant}': {samples:,} samples, {seconds:.0f} s")
        extra = {"run": config.name, "variant": variant, "lr": lr, "samples": samples, "train_s": seconds}
        rows += [{**r, **extra} for r in found]
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    redone = {(config.name, v, lr) for v in args.variants.split(",") for lr in learning_rates}
    kept = [r for r in previous if (r.get("run"), r.get("variant"), r.get("lr", 5e-5)) not in redone]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(kept + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
