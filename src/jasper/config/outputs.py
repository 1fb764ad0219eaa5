"""Config sections of what a run gives: evaluation, the image stage's side, exports and tracking."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jasper.config.base import Strict
from jasper.data.images import MAX_IMAGE_PIXELS


class RetrievalBenchmarkConfig(Strict):
    """A retrieval benchmark in BEIR's layout (e.g. SciFact): a local folder, else its hub copy (MTEB's)."""

    name: str
    """Its rows in the report: `<name>-<split>:ndcg@10` and `<name>-<split>:recall@100`."""
    dir: str | None = None
    """A local BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""
    hub: str | None = None
    """Its hub id (MTEB's copy, e.g. `mteb/scifact`), read where `dir` is absent (extra `datasets`)."""
    splits: list[str] = Field(default=["test"], min_length=1)
    """The qrels splits to score: choose settings on `train` (or `dev`), report `test`."""
    teachers: bool = True
    """Score the teachers on it too (a CPU-bound teacher can take long over thousands of long documents)."""

    @model_validator(mode="after")
    def _an_origin(self) -> RetrievalBenchmarkConfig:
        if self.dir is None and self.hub is None:
            raise ValueError(f"retrieval benchmark '{self.name}' needs a `dir` (a BEIR folder) or a `hub` id")
        return self


class EvalConfig(Strict):
    """Quick evaluation after training."""

    stsb_dir: str | None = "../shared/data/stsb"
    """A folder with the original STS-B files (sts-test.csv, sts-dev.csv); where they are absent, MTEB's hub copy;
    null: no STS-B."""
    flickr8k_dir: str | None = "../shared/data/flickr8k/test"
    """A run with a vision stage: the Flickr8k test images and captions (retrieval both ways)."""
    imagenette_dir: str | None = "../shared/data/imagenette/val"
    """A run with a vision stage: Imagenette's validation images (zero-shot classification)."""
    zero_shot_prompt: str = "a photo of a {}."
    """The zero-shot classification's caption for a class name."""
    stsb_dev: bool = False
    """Also score STS-B dev (what settings are chosen on, never test)."""
    sts_files: list[str] = []
    """More STS-B-format files, each a task of its own."""
    retrieval: list[RetrievalBenchmarkConfig] = []
    """Retrieval benchmarks in BEIR's layout (e.g. SciFact), read at the student's `max_seq_length`."""
    models: list[str] = []
    """More sentence-transformers models (folders or hub ids) to put in the table."""
    batch_size: int = Field(default=64, gt=0)
    """Texts per batch while evaluating."""
    teachers: bool = True
    """Score each teacher, and their concatenation, on the tasks."""
    init: bool = True
    """Score the student's starting point (its base model, cut as `keep_layers` says) on the tasks."""


class VisionConfig(Strict):
    """Stage 4's image side: the image encoder, its image-caption data and the visual tokens."""

    encoder: str = "efficientnet-lite0"
    """The image encoder: `efficientnet-lite0` (ImageNet weights from a pip package, offline) or a Hugging Face vision
    tower (a SigLIP or CLIP id or folder)."""
    data: str
    """Image-caption pairs: an imagefolder folder (metadata.jsonl), a `{image, caption}` JSON-lines file, or a hub
    dataset id."""
    data_hub: str | None = None
    """The same image-caption pairs on the hub (columns `image` and `caption`/`captions`/`caption_0..`), read where
    `data` is not a local folder or file, e.g. `jxie/flickr8k`."""
    data_split: str = "train"
    """The split of a hub dataset."""
    tokens: int = Field(default=16, gt=0)
    """Visual tokens: the encoder's grid average-pooled to this many."""
    label_tokens: int = Field(default=0, ge=0)
    """The image encoder's top-k ImageNet classes (a classifier encoder only), spliced in as the student's own word
    embeddings of their names after the visual tokens; 0: visual tokens only (the paper's design)."""
    mlp_hidden: int = Field(default=0, ge=0)
    """A residual two-layer MLP of this width beside the linear projection; 0: the projection alone."""
    flip: bool = True
    """Also cache mirrored training images: twice the views at no cost per step."""
    ridge_alpha: float = Field(default=0.01, gt=0)
    """The closed-form start of the projection: its ridge penalty (times the rows)."""
    batch_size: int = Field(default=50, gt=0)
    """Images per image-encoder batch while caching features."""
    max_image_pixels: int | None = Field(default=MAX_IMAGE_PIXELS, gt=0)
    """The largest image opened, in pixels (Pillow's guard against decompression bombs); null lifts it."""


class ExportConfig(Strict):
    """Which head dims to export as sentence-transformers folders (None = every head)."""

    dims: list[int] | None = None
    """The head dims `jasper run` exports; unset, every head."""
    license: str | None = None
    """The licence written into each exported head's model card (a Hugging Face licence id, e.g. `apache-2.0`);
    unset, the card says that the base model's and the teachers' terms apply."""


class LogConfig(Strict):
    """Where training is watched besides train_log.jsonl: TensorBoard, Weights & Biases, MLflow (each optional)."""

    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = []
    """The tools that watch training besides train_log.jsonl (each installs with its extra)."""
    project: str = "jasper"
    """The W&B project and the MLflow experiment."""
