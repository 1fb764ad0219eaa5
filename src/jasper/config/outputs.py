"""Config sections of what a run gives: evaluation, the image stage's side, exports and tracking."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jasper.config.base import Strict
from jasper.data.images import MAX_IMAGE_PIXELS


class RetrievalBenchmarkConfig(Strict):
    """A retrieval benchmark in BEIR's layout (e.g. SciFact): a local folder, else its hub copy (MTEB's)."""

    name: str  # its rows in the report: `<name>-<split>:ndcg@10` and `:recall@100`
    dir: str | None = None  # a local BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv
    hub: str | None = None  # its hub id (MTEB's copy, e.g. mteb/scifact), read where `dir` is absent (`datasets`)
    splits: list[str] = Field(default=["test"], min_length=1)  # choose settings on train (or dev), report test
    teachers: bool = True  # score the teachers too (long documents take a CPU-bound teacher long)

    @model_validator(mode="after")
    def _an_origin(self) -> RetrievalBenchmarkConfig:
        if self.dir is None and self.hub is None:
            raise ValueError(f"retrieval benchmark '{self.name}' needs a `dir` (a BEIR folder) or a `hub` id")
        return self


class EvalConfig(Strict):
    """Quick evaluation after training."""

    stsb_dir: str | None = "../shared/data/stsb"  # original STS-B files; absent: the hub copy; null: no STS-B
    # image evaluation of a run with a vision stage: Flickr8k test (retrieval both ways) and Imagenette (zero-shot)
    flickr8k_dir: str | None = "../shared/data/flickr8k/test"
    imagenette_dir: str | None = "../shared/data/imagenette/val"
    zero_shot_prompt: str = "a photo of a {}."
    stsb_dev: bool = False  # also score STS-B dev (what budgets and learning rates are tuned on, never test)
    sts_files: list[str] = []  # more STS-B-format files, each its own task
    retrieval: list[RetrievalBenchmarkConfig] = []  # retrieval benchmarks in BEIR's layout (SciFact, ...)
    models: list[str] = []  # extra sentence-transformers models (folders or hub ids) to put in the table
    batch_size: int = Field(default=64, gt=0)
    teachers: bool = True
    init: bool = True


class VisionConfig(Strict):
    """Stage 4's image side: the image encoder, its image-caption data and the visual tokens."""

    # 'efficientnet-lite0' (offline, pip weights) or a Hugging Face vision tower (SigLIP / CLIP id or folder)
    encoder: str = "efficientnet-lite0"
    # image-caption pairs: an imagefolder folder (metadata.jsonl), a {image, caption} JSONL, or a hub dataset id
    data: str
    data_split: str = "train"  # the split of a hub dataset
    tokens: int = Field(default=16, gt=0)  # visual tokens: the encoder's grid average-pooled to this many
    # the image encoder's top-k ImageNet classes (a classifier encoder only) spliced in as the student's own word
    # embeddings of their names, after the visual tokens; 0 = visual tokens only (the paper's design)
    label_tokens: int = Field(default=0, ge=0)
    # a residual two-layer MLP of this width beside the linear projection (0 = the linear projection alone)
    mlp_hidden: int = Field(default=0, ge=0)
    flip: bool = True  # also cache mirrored training images: twice the image views at no cost per step
    ridge_alpha: float = Field(default=0.01, gt=0)  # the closed-form projection's ridge (times the rows)
    batch_size: int = Field(default=50, gt=0)  # images per image-encoder batch while caching features
    # the largest image opened, in pixels (Pillow's guard against decompression bombs); null lifts it
    max_image_pixels: int | None = Field(default=MAX_IMAGE_PIXELS, gt=0)


class ExportConfig(Strict):
    """Which head dims to export as sentence-transformers folders (None = every head)."""

    dims: list[int] | None = None
    # the licence written into each exported head's model card (a Hugging Face licence id, e.g. apache-2.0);
    # unset, the card says the base model's and the teachers' terms apply
    license: str | None = None


class LogConfig(Strict):
    """Where training is watched besides train_log.jsonl: TensorBoard, Weights & Biases, MLflow (each optional)."""

    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = []
    project: str = "jasper"  # the W&B project and the MLflow experiment
