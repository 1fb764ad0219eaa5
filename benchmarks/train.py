"""Training speed: jasper's stage-3 step against sentence-transformers' distillation step, same student.

jasper's side is `StageRunner.train_step`, the loop's own step, with the config's last stage (stage 3: the
encoder trains; FC1 with the three losses, every short head with similarity + ranking). The peer is
`SentenceTransformerTrainer` + `MSELoss` on Transformer -> mean Pooling -> Dense(hidden -> teacher dim), the
recipe sentence-transformers documents for distillation (its collator tokenises every batch, its default
optimizer). Both train the same student weights on the same texts (the config's corpus, real lengths, cut at
the student's max_length), at the same batch size and device, against random unit targets (speed does not
depend on their values). Each side is warmed up, then timed in blocks of steps that alternate between the
two; the median block counts.

- `samples_per_s`: batch x steps / seconds of a block (batch selection, tokenisation, forward, losses,
  backward, optimizer step).
- `mfu`: useful training FLOPs (6 x encoder parameters x real tokens, plus attention, plus the heads; padding
  is not useful work) per second, over the device's peak: on CUDA the datasheet's dense bf16 (or tf32/fp32)
  figure, on a CPU the float32 matmul rate measured here at the start.
- `peak_mb`: on CUDA the allocator's peak over a block; on a CPU, measured in a fresh process per side and
  student, the peak resident set over its first three steps minus the resident set before them (the model
  loaded): activations, gradients and optimizer state.

Students: `3layer` (the config's own student, e.g. the quickstart's first 3 layers of all-MiniLM-L6-v2),
`minilm` (all-MiniLM-L6-v2's shape) and `bert-base` (BERT-base's shape), these two with random weights and the
config's tokenizer. `--peer loop` runs the peer as sentence-transformers modules + `MSELoss` in a plain loop
(fused AdamW), for machines without `datasets`; `auto` (the default) uses the Trainer where it imports.

    python benchmarks/train.py                                    # CPU, quickstart texts, batch 64
    python benchmarks/train.py --device cuda --batch 128 --max-length 128 --precision bf16
Writes benchmarks/results/train.json: [{impl, student, device, batch, seq, samples_per_s, mfu, peak_mb, ...}],
replacing the rows of the same device, batch and students and keeping the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.config import load_config
from jasper.data.prepare import load_texts
from jasper.models.backbone import transformer_path
from jasper.runtime import seed_everything, set_threads, setup_logging
from jasper.train.loop import StageRunner
from jasper.train.run import training_student
from jasper.train.schedule import make_optimizer
from jasper.train.stages import apply_stage

RESULTS = Path(__file__).parent / "results" / "train.json"
# dense peak FLOP/s from the datasheets (SXM parts), by precision
CUDA_PEAKS = {"H100": {"bf16": 989e12, "fp32": 494e12}, "H200": {"bf16": 989e12, "fp32": 494e12}}
CUDA_PEAKS["A100"] = {"bf16": 312e12, "fp32": 156e12}
# random-weight students of the real architectures' shapes (BERT family, the config's tokenizer)
SHAPES = {
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "bert-base": {},
}


class RandomTargets:
    """Stands in for a teacher store: seeded random unit rows (speed does not depend on their values)."""

    def __init__(self, rows: int, dim: int) -> None:
        vectors = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
        self.array = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.dim = dim

    def vectors(self, rows: np.ndarray) -> torch.Tensor:
        """Rows of targets. (B, dim)"""
        return torch.from_numpy(self.array[np.asarray(rows)])


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) since start or the last reset, MiB."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so that timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_flops(device: torch.device, precision: str) -> tuple[float, str]:
    """(peak FLOP/s, where the figure comes from) for the MFU denominator."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name()
        for key, peaks in CUDA_PEAKS.items():
            if key in name:
                return peaks[precision], f"{key} datasheet, dense {precision}"
        raise SystemExit(f"no peak FLOP/s known for '{name}': add it to CUDA_PEAKS")
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = float("inf")
    for _ in range(6):
        began = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - began)
    return 2 * 2048**3 / best, f"measured float32 2048^3 matmul, {torch.get_num_threads()} threads"


def flops_per_sample(backbone: Any, heads: list[int], tokens: np.ndarray) -> float:
    """Mean useful training FLOPs per text: 6 N T over the non-embedding weights, attention, and the heads."""
    config = backbone.config
    weights = sum(p.numel() for n, p in backbone.named_parameters() if "embed" not in n)
    hidden, layers = config.hidden_size, config.num_hidden_layers
    per_text = 6 * weights * tokens + 12 * layers * hidden * tokens.astype(np.float64) ** 2
    return float(per_text.mean() + 6 * hidden * sum(heads))


def device_label(device: torch.device) -> str:
    """'cpu (N threads)' or the GPU's name."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({torch.get_num_threads()} threads)"


def student_folder(kind: str, student: Any, scratch: Path) -> tuple[str, list[int] | None]:
    """(model folder or id, layers to keep) of the benchmark's student `kind`."""
    if kind == "3layer":
        return student.model, student.keep_layers  # the config's own student
    if kind not in SHAPES:
        raise SystemExit(f"unknown student '{kind}' (3layer, {', '.join(SHAPES)})")
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = scratch / kind
    BertModel(BertConfig(**SHAPES[kind]), add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(transformer_path(student.model)).save_pretrained(folder)
    return str(folder), None


def jasper_side(
    config: Any, texts: list[str], targets: RandomTargets, batch: int, device: torch.device, precision: str
) -> tuple[Callable[[int], None], Any]:
    """A `step(i)` running the loop's stage-3 step on batch i, and the student."""
    stage = config.stages[-1].model_copy(update={"batch_size": batch, "micro_batch_size": None})
    config = config.model_copy(update={"stages": [stage], "precision": precision})
    student = training_student(config, device)
    runner = StageRunner(config, student, texts, targets)  # type: ignore[arg-type]
    optimizer = make_optimizer(apply_stage(student, stage), stage)
    losses = runner.stage_losses(stage)
    deferred = stage.log_every > 1 and bool(optimizer.defaults.get("fused"))
    student.train(True)
    pending: list[torch.Tensor] = []

    def step(i: int) -> None:
        rows = runner.batch_of(0, stage, i)
        parts = runner.train_step(student, rows, losses, optimizer, None, deferred=deferred)
        pending.append(torch.stack([parts["loss"], parts["_diverged"].float()]))
        if len(pending) >= stage.log_every:  # the loop reads the logged parts every log_every steps
            torch.stack(pending).tolist()
            pending.clear()

    return step, student


def peer_side(
    model_name: str,
    keep: list[int] | None,
    max_length: int,
    texts: list[str],
    targets: RandomTargets,
    batch: int,
    device: torch.device,
    precision: str,
    lr: float,
    mode: str = "auto",
) -> Callable[[int], list[float]]:
    """A `block(n)` training the peer for n timed steps (after 2 untimed ones); returns the n step times."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MSELoss
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    from jasper.models.backbone import keep_layers

    transformer = Transformer(transformer_path(model_name), max_seq_length=max_length)
    if keep is not None:
        keep_layers(transformer.auto_model, keep)
    hidden = transformer.auto_model.config.hidden_size
    dense = Dense(hidden, targets.dim, activation_function=torch.nn.Identity())
    model = SentenceTransformer(modules=[transformer, Pooling(hidden, "mean"), dense], device=str(device))
    if mode == "auto":
        try:
            import datasets  # noqa: F401  # the Trainer's data path
        except ImportError:
            mode = "loop"
    peer = Peer(model, MSELoss(model), texts, targets, batch, device, precision, lr)
    return _loop_block(peer) if mode == "loop" else _trainer_block(peer)


@dataclass
class Peer:
    """The peer's model, loss and workload."""

    model: Any
    loss: Any
    texts: list[str]
    targets: RandomTargets
    batch: int
    device: torch.device
    precision: str
    lr: float


def astuple_shallow(peer: Peer) -> tuple[Any, ...]:
    """The fields of `peer` in order, not copied (dataclasses.astuple would deep-copy the model)."""
    return tuple(getattr(peer, f.name) for f in fields(peer))


def _trainer_block(peer: Peer) -> Callable[[int], list[float]]:
    """The peer as `SentenceTransformerTrainer` (its collator, sampler and default optimizer)."""
    model, loss, texts, targets, batch, device, precision, lr = astuple_shallow(peer)
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
    from transformers import TrainerCallback

    dataset = Dataset.from_dict({"text": texts, "label": targets.array.tolist()})
    stamps: list[float] = []

    class Stamps(TrainerCallback):
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            sync(device)
            stamps.append(time.perf_counter())

    def block(n: int) -> list[float]:
        stamps.clear()
        arguments = Arguments(
            output_dir=tempfile.mkdtemp(prefix="peer-"),
            max_steps=n + 2,
            per_device_train_batch_size=batch,
            learning_rate=lr,
            save_strategy="no",
            report_to="none",
            logging_strategy="no",
            disable_tqdm=True,
            bf16=precision == "bf16",
            seed=int(time.time()) % 1000,
            dataloader_drop_last=True,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=arguments, train_dataset=dataset, loss=loss, callbacks=[Stamps()]
        )
        trainer.train()
        return list(np.diff(stamps[1:]))  # steps 3..n+2: the first two build the optimizer state

    return block


def _loop_block(peer: Peer) -> Callable[[int], list[float]]:
    """The peer as sentence-transformers modules + `MSELoss` in a plain loop: tokenise, forward, backward,
    fused AdamW, reading the loss every step as the Trainer's logging would."""
    model, loss, texts, targets, batch, device, precision, lr = astuple_shallow(peer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    rng = np.random.default_rng(0)
    bf16 = precision == "bf16" and device.type == "cuda"
    model.train()

    def block(n: int) -> list[float]:
        times = []
        for _ in range(n + 2):
            sync(device)
            began = time.perf_counter()
            rows = rng.choice(len(texts), batch, replace=False)
            features = model.tokenize([texts[r] for r in rows])
            features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            labels = torch.from_numpy(targets.array[rows]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                value = loss([features], labels)
            value.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            float(value)
            sync(device)
            times.append(time.perf_counter() - began)
        return times[2:]

    return block


def measure(run: Callable[[], list[float]], batch: int, device: torch.device) -> tuple[float, float | None]:
    """(samples/s, peak MB on CUDA else None) of one block."""
    if device.type != "cuda":
        times = run()
        return batch * len(times) / sum(times), None
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = run()
    return batch * len(times) / sum(times), (torch.cuda.max_memory_allocated() - base) / 2**20


def cpu_peak_mb(kind: str, impl: str) -> float:
    """Peak resident-set growth over the first three steps of `impl`, in a fresh process (see the docstring)."""
    command = [sys.executable, __file__, *sys.argv[1:], "--students", kind, "--memory-of", impl]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"memory run of {impl} on {kind} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def bench_student(kind: str, args: argparse.Namespace, config: Any, texts: list[str], scratch: Path) -> list[dict]:
    """Alternate jasper and the peer on one student; returns their two result rows."""
    device = torch.device(args.device)
    folder, keep = student_folder(kind, config.student, scratch)
    student_config = config.student.model_copy(update={"model": folder, "keep_layers": keep})
    config = config.model_copy(update={"student": student_config})
    targets = RandomTargets(len(texts), config.student.heads[0])
    jasper_step, student = jasper_side(config, texts, targets, args.batch, device, args.precision)
    peer_block = peer_side(
        folder,
        student_config.keep_layers,
        student_config.max_length,
        texts,
        targets,
        args.batch,
        device,
        args.precision,
        config.stages[-1].lr,
        args.peer,
    )
    tokens = np.minimum(np.array(student.tokenizer(texts, return_length=True)["length"]), student_config.max_length)
    flops = flops_per_sample(student.backbone, config.student.heads, tokens)
    peak, peak_source = peak_flops(device, args.precision)
    counter = iter(range(10**9))

    def jasper_block() -> list[float]:
        times = []
        for _ in range(args.steps):
            sync(device)
            began = time.perf_counter()
            jasper_step(next(counter))
            sync(device)
            times.append(time.perf_counter() - began)
        return times

    if args.memory_of:  # a child process of cpu_peak_mb: three steps of one side, then its peak
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the resident set now
        before = _rss_mb()
        if args.memory_of == "jasper":
            for _ in range(3):
                jasper_step(next(counter))
        else:
            peer_block(1)
        print(_peak_rss_mb() - before)
        return []
    for _ in range(args.warmup):
        jasper_step(next(counter))
    peer_block(1)
    figures: dict[str, list[tuple[float, float | None]]] = {"jasper": [], "sentence-transformers": []}
    for repeat in range(args.repeats):
        for impl in ("jasper", "sentence-transformers") if repeat % 2 == 0 else ("sentence-transformers", "jasper"):
            run = jasper_block if impl == "jasper" else lambda: peer_block(args.steps)
            figures[impl].append(measure(run, args.batch, device))
            logging.info("%s %s: %.1f samples/s", kind, impl, figures[impl][-1][0])
    rows = []
    for impl, found in figures.items():
        rate = statistics.median(f[0] for f in found)
        peaks = [f[1] for f in found if f[1] is not None]
        peak_mb = statistics.median(peaks) if peaks else cpu_peak_mb(kind, impl)
        rows.append(
            {
                "impl": impl,
                "student": kind,
                "device": device_label(device),
                "batch": args.batch,
                "seq": student_config.max_length,
                "mean_tokens": round(float(tokens.mean()), 1),
                "precision": args.precision,
                "samples_per_s": round(rate, 1),
                "mfu": round(rate * flops / peak, 4),
                "peak_mb": round(peak_mb, 1),
                "blocks": [round(f[0], 1) for f in found],
                "peak_flops": f"{peak / 1e12:.2f} TFLOP/s ({peak_source})",
                "corpus": f"{args.corpus or config.name} ({len(texts):,} texts)",
                "peer": args.peer,
                "variant": args.variant,
                "settings": " ".join(args.overrides) if impl == "jasper" else "",
            }
        )
    rows[0]["speedup"] = round(rows[0]["samples_per_s"] / rows[1]["samples_per_s"], 2)
    return rows


def main() -> None:
    """Benchmark each student, print the table and update the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. stages.2.length_pool=8")
    parser.add_argument("--students", default="3layer,bert-base")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=None, help="the student's max_length (default: config's)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per block")
    parser.add_argument("--repeats", type=int, default=4, help="blocks per side (alternated)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-texts", type=int, default=20000)
    parser.add_argument("--peer", choices=["auto", "trainer", "loop"], default="auto")
    parser.add_argument("--corpus", help="a text file, one text per line, instead of the config's corpus")
    parser.add_argument("--variant", default="default", help="a label for this jasper setting (e.g. an ablation)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--memory-of", choices=["jasper", "sentence-transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup_logging()
    config = load_config(args.config, args.overrides)
    if args.max_length:
        config = config.model_copy(
            update={"student": config.student.model_copy(update={"max_length": args.max_length})}
        )
    set_threads(config.threads if args.device == "cpu" else None)
    seed_everything(config.seed)
    texts = Path(args.corpus).read_text().splitlines() if args.corpus else load_texts(config)
    texts = texts[: args.max_texts]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in args.students.split(","):
            rows += bench_student(kind, args, config, texts, Path(scratch))
    if args.memory_of:
        return
    for row in rows:
        print(
            f"{row['student']:>9} {row['impl']:>22}: {row['samples_per_s']:8.1f} samples/s  mfu {row['mfu']:.3f}  "
            f"peak {row['peak_mb']:8.1f} MB  {row.get('speedup', '')}"
        )
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else []

    def key(row: dict) -> tuple:
        return row["student"], row["device"], row["batch"], row.get("precision"), row.get("variant", "default")

    done = {key(r) for r in rows}
    kept = [r for r in previous if key(r) not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(kept + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
