"""The typed config tree: every key of a run, its default and its check; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from jasper.data.images import MAX_IMAGE_PIXELS
from jasper.errors import JasperError
from jasper.run_folder import RunFolder

LossName = Literal["cosine", "similarity", "resim"]
# what a corpus row is: a query (short, searched with), a document (searched in), or plain text (both, or neither)
Role = Literal["text", "query", "document"]
ROLES: tuple[Role, ...] = ("text", "query", "document")


class ConfigError(JasperError):
    """A config file or override that cannot be used as given."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(_Strict):
    """One source of training texts: a file or a Hugging Face dataset, and how much of it to take."""

    path: str | None = None  # .txt (a text per line), .jsonl (`text_field`), .parquet; .txt/.jsonl may be .gz
    dataset: str | None = None  # Hugging Face dataset: hub id (streamed) or `save_to_disk` folder (extra `datasets`)
    split: str = "train"  # the dataset's split
    text_field: str = "text"  # the JSON field / column holding the text
    article_field: str | None = None  # JSON lines: the article id of each row, so whole articles can be held out
    max_texts: int | None = Field(default=None, ge=0)  # a seeded random sample (0: only its held-out articles)
    share: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # or this share of corpus.max_texts
    role: Role = "text"  # what its rows are: each teacher (and the student) reads them with that role's prompt

    @model_validator(mode="after")
    def _one_origin(self) -> SourceConfig:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("a corpus source needs exactly one of `path` or `dataset`")
        if self.max_texts is not None and self.share is not None:
            raise ValueError("a corpus source takes `max_texts` or `share`, not both")
        return self


class CorpusConfig(_Strict):
    """Where the training texts come from: one file, one dataset, a built-in corpus, or a mix of `sources`."""

    path: str | None = None  # one file, as SourceConfig.path
    dataset: str | None = None  # one Hugging Face dataset, as SourceConfig.dataset
    split: str = "train"
    source: Literal["gensim-sample"] | None = None  # built-in corpus from gensim's test data
    sources: list[SourceConfig] | None = None  # several files/datasets, each with its max_texts or share
    text_field: str = "text"
    article_field: str | None = None
    role: Role = "text"  # what the rows of `path` / `dataset` / `source` are (`sources` give their own)
    max_texts: int | None = Field(default=None, gt=0)  # a seeded random sample (split over `sources` by share)
    holdout: int = Field(default=256, ge=0)  # rows kept out of training for agreement eval
    holdout_articles: int = Field(default=10, ge=0)  # whole articles kept out of training, for derived retrieval
    # more whole articles kept out, for the derived task's dev split: what `eval_every` scores while training, so
    # that no choice is made on the reported task
    holdout_dev_articles: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_origin(self) -> CorpusConfig:
        given = [k for k in ("path", "dataset", "source", "sources") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"corpus needs exactly one of `path`, `dataset`, `source` or `sources`, got {given}")
        if self.sources is not None and not self.sources:
            raise ValueError("corpus.sources is empty")
        if any(s.share is not None for s in self.sources or []) and self.max_texts is None:
            raise ValueError("corpus.sources with `share` need corpus.max_texts (the total the shares divide)")
        return self

    def source_list(self) -> list[SourceConfig]:
        """The sources to read: `sources`, or the one `path`/`dataset` (max_texts applies to the whole)."""
        if self.sources is not None:
            return list(self.sources)
        if self.source is not None:
            return []
        fields = {"path", "dataset", "split", "text_field", "article_field", "role"}
        return [SourceConfig(**self.model_dump(include=fields))]


class TeacherConfig(_Strict):
    """One teacher: a sentence-transformers model, a `module:function` callable or an OpenAI-compatible API."""

    def prompt_for(self, role: str) -> str:
        """The prompt this teacher reads a row of `role` with."""
        return self.prompts.get(role, self.prompt)  # type: ignore[call-overload]

    name: str
    backend: Literal["sentence-transformers", "callable", "openai-api"] = "sentence-transformers"
    model: str
    prompt: str = ""  # put before every text it reads, unless `prompts` has one for the row's role
    # per role (query, document, text): e.g. e5 {query: "query: ", document: "passage: "}, bge an instruction for
    # queries and "" for documents. The store keys vectors by the exact text the teacher read
    prompts: dict[Role, str] = {}
    batch_size: int = Field(default=64, gt=0)
    max_length: int | None = Field(default=None, gt=0)
    trust_remote_code: bool = False
    workers: int = Field(default=1, gt=0)  # callable/openai-api: batches in flight; fast engine: tokenizer threads
    # sentence-transformers backend: 'fast' = jasper's bucketed pipeline, 'auto' = fast where the model allows
    engine: Literal["auto", "fast", "sentence-transformers"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: float32 on CPU, half on GPU
    max_batch_tokens: int | None = Field(default=None, gt=0)  # cap on padded tokens per batch (fast engine)
    # openai-api backend: any OpenAI-compatible /v1/embeddings endpoint
    api_base: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    dimensions: int | None = Field(default=None, gt=0)
    requests_per_minute: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=8, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)


class StoreConfig(_Strict):
    """The on-disk teacher-vector store."""

    dir: str | None = None  # default: <run>/teachers
    dtype: Literal["float16", "float32"] = "float16"
    shard_size: int = Field(default=1024, gt=0)


class StudentConfig(_Strict):
    """The student encoder and its heads; the first head (FC1) maps to the teacher space."""

    model: str
    trust_remote_code: bool = False
    keep_layers: list[int] | None = None
    max_length: int = Field(default=128, gt=0)  # the training cut: tokens of a text the student learns from
    # how long the exported and served student reads (its exports' max_seq_length, and what evaluation scores);
    # None: the base model's own limit (256 for all-MiniLM-L6-v2), never the training cut
    max_seq_length: int | None = Field(default=None, gt=0)
    # the student's own prompts by role, written into its exports so that sentence-transformers' encode_query /
    # encode_document (and prompt_name=) apply them; a corpus row is read with its role's prompt in training too
    prompts: dict[Literal["query", "document"], str] = {}
    # the prompt of plain text (role text, and `encode()` without a prompt name): a key of `prompts`, or None
    default_prompt_name: Literal["query", "document"] | None = None
    heads: list[int] = Field(min_length=1)
    head_mode: Literal["independent", "prefix"] = "independent"
    head_init: Literal["random", "ridge"] = "random"  # ridge: closed-form fit on frozen features
    gradient_checkpointing: bool = False  # recompute encoder activations in backward: less memory, more time
    # training forward: sort each batch by token length and pad it in this many groups (same vectors and
    # gradients, far fewer padded tokens when lengths vary); 1 pads the whole batch to its longest text
    length_groups: int = Field(default=4, ge=1)
    ridge_alpha: float = Field(default=0.1, gt=0)

    @model_validator(mode="after")
    def _check_heads(self) -> StudentConfig:
        if len(set(self.heads)) != len(self.heads) or any(d <= 0 for d in self.heads):
            raise ValueError(f"student.heads must be distinct positive dims, got {self.heads}")
        if self.head_mode == "prefix" and any(d > self.heads[0] for d in self.heads[1:]):
            raise ValueError("with head_mode=prefix every short head must be <= the FC1 dim")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"student.default_prompt_name '{self.default_prompt_name}' is not a key of student.prompts "
                f"({sorted(self.prompts)})"
            )
        return self


class LossConfig(_Strict):
    """Weights of the three losses and the ranking margin."""

    cosine: float = Field(default=10.0, ge=0)
    similarity: float = Field(default=200.0, ge=0)
    resim: float = Field(default=20.0, ge=0)
    margin: float = Field(default=0.015, ge=0)  # negative would switch the ranking loss off
    resim_impl: Literal["fast", "reference"] = "fast"  # same value and gradient; reference is P x P
    # what the short heads learn from: the teachers' vectors, or the student's own detached FC1 vectors (the
    # paper's proposed, untested self-distillation variant of stage 3)
    short_head_target: Literal["teacher", "self"] = "teacher"


class StageConfig(_Strict):
    """One training stage: what trains, which heads and losses, and the schedule."""

    name: str
    # vision: stage 4, the image side only (projection of the image encoder's tokens), after the text stages
    train: Literal["heads", "last_layers", "all", "vision"]
    last_layers: int = Field(default=0, ge=0)
    heads: list[int] | Literal["fc1", "all"] = "fc1"  # heads whose losses apply
    train_heads: list[int] | None = None  # heads whose weights train; None = the active heads
    # FC1 learns the teachers' vectors by cosine alone by default: at equal budget it beat the paper's three losses
    # on STS-B dev (docs/results.md#the-recipe); configs/jasper_paper.yaml names all three
    fc1_losses: list[LossName] = ["cosine"]
    short_head_losses: list[LossName] = ["similarity", "resim"]
    lr: float = Field(gt=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    batch_size: int = Field(default=128, ge=2)
    micro_batch_size: int | None = Field(default=None, gt=0)  # gradient caching: same objective, less memory
    # batches drawn from pools of this many batches sorted by token length: little padding, each row still
    # once per epoch; 1 = plain random batches
    length_pool: int = Field(default=1, ge=1)
    # a batch holds at most batch_size rows and at most this many padded tokens (rows x its longest text): batches
    # of long documents hold fewer rows than batches of short sentences (with length_pool, lengths sort together)
    max_batch_tokens: int | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, gt=0)
    epochs: float | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=200, gt=0)
    # loss parts are read from the device every this many steps (one host sync instead of one per step; on a
    # GPU the host then runs ahead). The finite check stays before every update: a bad step's update is
    # skipped on the device and the run stops at the next read, naming that step
    log_every: int = Field(default=1, gt=0)
    # random batches, or clustered: `cluster_share` of each batch from one k-means cluster of the training rows'
    # teacher vectors (`clusters` of them; None = training rows // (8 x batch_size)), the rest at random
    batching: Literal["random", "clustered"] = "random"
    cluster_share: float = Field(default=0.5, gt=0, le=1)
    clusters: int | None = Field(default=None, ge=2)
    # score STS-B dev (and the run's derived retrieval task) every this many steps, into train_log.jsonl
    eval_every: int | None = Field(default=None, gt=0)
    keep_best: bool = False  # end the stage on the weights with the best FC1 STS-B dev score (needs eval_every)

    @model_validator(mode="after")
    def _check(self) -> StageConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"stage '{self.name}' needs exactly one of `steps` or `epochs`")
        if self.train == "last_layers" and self.last_layers == 0:
            raise ValueError(f"stage '{self.name}' has nothing to train: train=last_layers with last_layers=0")
        if self.train != "last_layers" and self.last_layers:
            raise ValueError(f"stage '{self.name}': last_layers is only used with train=last_layers")
        if isinstance(self.heads, list) and not self.heads:
            raise ValueError(f"stage '{self.name}' has nothing to train: heads is empty")
        if self.train == "heads" and self.train_heads is not None and not self.train_heads:
            raise ValueError(f"stage '{self.name}' has nothing to train: train_heads is empty")
        if not self.fc1_losses and not self.short_head_losses:
            raise ValueError(f"stage '{self.name}' has no losses")
        if self.keep_best and self.eval_every is None:
            raise ValueError(f"stage '{self.name}': keep_best needs eval_every (how often the dev set is scored)")
        if self.max_batch_tokens is not None and self.batching == "clustered":
            raise ValueError(f"stage '{self.name}': max_batch_tokens works with batching: random, not clustered")
        if self.train == "vision" and (self.batching != "random" or self.eval_every is not None):
            raise ValueError(f"stage '{self.name}': a vision stage takes neither batching: clustered nor eval_every")
        return self

    def active_heads(self, all_heads: list[int]) -> list[int]:
        """The head dims whose losses apply in this stage, FC1 first."""
        if self.heads == "fc1":
            return all_heads[:1]
        if self.heads == "all":
            return list(all_heads)
        return [d for d in all_heads if d in self.heads]

    def head_losses(self, all_heads: list[int]) -> dict[int, list[str]]:
        """The loss names of each head active in this stage, FC1 (`all_heads[0]`) first."""
        fc1 = all_heads[0]
        return {d: list(self.fc1_losses if d == fc1 else self.short_head_losses) for d in self.active_heads(all_heads)}


def paper_stages() -> list[StageConfig]:
    """Stages 1-3 of the paper (PAPER.md's stage table)."""
    return [
        StageConfig(name="stage1", train="heads", lr=1e-4, steps=4000),
        StageConfig(name="stage2", train="last_layers", last_layers=3, lr=8e-5, steps=7000),
        StageConfig(name="stage3", train="all", heads="all", lr=7e-5, steps=2200),
    ]


class RetrievalBenchmarkConfig(_Strict):
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


class EvalConfig(_Strict):
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


class VisionConfig(_Strict):
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


class ExportConfig(_Strict):
    """Which head dims to export as sentence-transformers folders (None = every head)."""

    dims: list[int] | None = None
    # the licence written into each exported head's model card (a Hugging Face licence id, e.g. apache-2.0);
    # unset, the card says the base model's and the teachers' terms apply
    license: str | None = None


class LogConfig(_Strict):
    """Where training is watched besides train_log.jsonl: TensorBoard, Weights & Biases, MLflow (each optional)."""

    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = []
    project: str = "jasper"  # the W&B project and the MLflow experiment


class RunConfig(_Strict):
    """A whole run: corpus, teachers, student, losses, stages, eval and export."""

    # the run folder a command was given (`jasper export PATH/TO/RUN`): it wins over output_dir/name, from any cwd
    _folder: Path | None = PrivateAttr(default=None)

    name: str
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 = autocast on CUDA, as the paper trains
    compile: bool = False  # torch.compile the student's encoder (in place: checkpoints and exports unchanged)
    # replay the objective (forward and backward) as CUDA graphs, one per batch shape: CUDA only, one process,
    # teacher targets (not short_head_target=self)
    cuda_graphs: bool = False
    threads: int | None = Field(default=None, gt=0)
    corpus: CorpusConfig
    teachers: list[TeacherConfig] = Field(min_length=1)
    store: StoreConfig = StoreConfig()
    student: StudentConfig
    loss: LossConfig = LossConfig()
    stages: list[StageConfig] = Field(default_factory=paper_stages, min_length=1)
    vision: VisionConfig | None = None
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names must be unique, got {names}")
        kinds = [stage.train == "vision" for stage in self.stages]
        if any(kinds) and self.vision is None:
            raise ValueError("a stage with train: vision needs a `vision:` section (encoder, data)")
        if any(kinds) and not all(kinds[kinds.index(True) :]):
            raise ValueError("vision stages come after every text stage (the text side is frozen by then)")
        if all(kinds):
            raise ValueError("a vision stage needs a trained text student: list the text stages before it")
        for stage in self.stages:
            listed = stage.heads if isinstance(stage.heads, list) else []
            for dim in listed + (stage.train_heads or []):
                if dim not in self.student.heads:
                    raise ValueError(f"stage '{stage.name}' uses head {dim}, student.heads is {self.student.heads}")
        for dim in self.export.dims or []:
            if dim not in self.student.heads:
                raise ValueError(f"export dim {dim} is not a head, student.heads is {self.student.heads}")
        return self

    @property
    def run_dir(self) -> Path:
        """The folder this run writes to: the one a command named, else `output_dir/name`."""
        return self._folder if self._folder is not None else Path(self.output_dir) / self.name

    @property
    def folder(self) -> RunFolder:
        """The run folder's layout: every path the run reads or writes."""
        return RunFolder(self.run_dir)

    @property
    def has_vision_stage(self) -> bool:
        """Whether a stage trains the image side (the validator ensures a `vision:` section then)."""
        return any(stage.train == "vision" for stage in self.stages)

    @property
    def store_dir(self) -> Path:
        """The folder of the teacher-vector store."""
        return Path(self.store.dir) if self.store.dir else self.folder.teachers


class ModelEvalConfig(_Strict):
    """`jasper eval MODEL` on a plain model: where its report goes, and the evaluation settings."""

    name: str
    output_dir: str = "runs"
    eval: EvalConfig = EvalConfig()

    @property
    def run_dir(self) -> Path:
        """The folder the report is written to."""
        return Path(self.output_dir) / self.name
