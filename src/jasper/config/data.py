"""Config sections of the data: the corpus and its sources, the teachers, the teacher-vector store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jasper.config.base import Role, Strict


class SourceConfig(Strict):
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


class CorpusConfig(Strict):
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
    # the built-in corpus only: this many three-sentence passages of its Wikipedia articles, as documents
    documents: int = Field(default=0, ge=0)
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
        if self.documents and self.source is None:
            raise ValueError("corpus.documents is for the built-in corpus (`source`); other corpora give sources")
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


class TeacherConfig(Strict):
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


class StoreConfig(Strict):
    """The on-disk teacher-vector store."""

    dir: str | None = None  # default: <run>/teachers
    dtype: Literal["float16", "float32"] = "float16"
    shard_size: int = Field(default=1024, gt=0)
