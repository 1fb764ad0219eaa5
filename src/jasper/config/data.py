"""Config sections of the data: the corpus and its sources, the teachers, the teacher-vector store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jasper.config.base import Role, Strict


class SourceConfig(Strict):
    """One source of training texts: a file or a Hugging Face dataset, and how much of it to take."""

    path: str | None = None
    """A file: .txt (one text a line), .jsonl (the `text_field` of each line) or .parquet (its `text_field` column);
    .txt and .jsonl may be gzipped (.gz), read as a stream."""
    dataset: str | None = None
    """A Hugging Face dataset: a hub id (streamed) or a `save_to_disk` folder (extra `datasets`). With a `path` too,
    the file is read where it exists and the dataset where it does not (the log says which)."""
    dataset_config: str | None = None
    """The dataset's configuration (subset) name, e.g. `20231101.en` of `wikimedia/wikipedia`."""
    split: str = "train"
    """The dataset's split."""
    scan: int | None = Field(default=None, gt=0)
    """A streamed hub dataset: read this many of its rows (a seeded shuffle buffer picks them), from which the sample
    and the held-out articles are taken; unset, `max_texts` rows (all of them when articles are held out)."""
    unit: Literal["row", "paragraph"] = "row"
    """`paragraph`: split each row's text at line breaks into paragraphs of at least 8 words, each keeping the row's
    article id (for datasets of whole articles)."""
    text_field: str = "text"
    """The JSON field or column that holds the text."""
    article_field: str | None = None
    """The JSON field that holds each row's article id, so that whole articles can be held out
    (`corpus.holdout_articles`)."""
    max_texts: int | None = Field(default=None, ge=0)
    """A seeded random sample of this many rows (never the first rows); 0 takes none, for a source read only for its
    held-out articles; unset, every row."""
    share: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Instead of `max_texts`: this share of `corpus.max_texts` (shares are relative to each other)."""
    role: Role = "text"
    """What the rows are: `query` (searched with), `document` (searched in) or plain `text`; each teacher and the
    student read a row with their prompt for its role."""

    @model_validator(mode="after")
    def _one_origin(self) -> SourceConfig:
        if self.path is None and self.dataset is None:
            raise ValueError("a corpus source needs a `path` or a `dataset` (or both: the file first, where it exists)")
        if self.max_texts is not None and self.share is not None:
            raise ValueError("a corpus source takes `max_texts` or `share`, not both")
        return self


class CorpusConfig(Strict):
    """Where the training texts come from: one file, one dataset, a built-in corpus, or a mix of `sources`."""

    path: str | None = None
    """One file, as in `sources` (`sources[].path`)."""
    dataset: str | None = None
    """One Hugging Face dataset, as in `sources` (`sources[].dataset`)."""
    split: str = "train"
    """The split of `dataset`."""
    source: Literal["gensim-sample"] | None = None
    """A built-in corpus: `gensim-sample`, Wikipedia and ABC-news sentences from gensim's test data (offline)."""
    sources: list[SourceConfig] | None = None
    """Several files or datasets, each with its own sample size (`max_texts` or `share`) and role."""
    text_field: str = "text"
    """The field or column of `path` / `dataset` that holds the text."""
    article_field: str | None = None
    """The field of `path` / `dataset` that holds each row's article id."""
    role: Role = "text"
    """What the rows of `path`, `dataset` or `source` are (`sources` give their own)."""
    max_texts: int | None = Field(default=None, gt=0)
    """A seeded random sample of this many texts in all (split over `sources` by their `share`)."""
    documents: int = Field(default=0, ge=0)
    """The built-in corpus only: this many three-sentence passages of its Wikipedia articles, as documents (role
    `document`), beside its sentences."""
    holdout: int = Field(default=256, ge=0)
    """Rows kept out of training, on which the report measures agreement with the teachers."""
    holdout_articles: int = Field(default=10, ge=0)
    """Whole articles kept out of training (a source needs an `article_field`, or the built-in corpus): the derived
    retrieval task, the first sentence of each article against its other passages."""
    holdout_dev_articles: int = Field(default=0, ge=0)
    """More whole articles kept out, the derived task's dev split: what `eval_every` scores while training, so that
    no choice is made on the reported task."""

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
        fields = {"path", "dataset", "split", "text_field", "article_field", "role"}  # one origin: validated above
        return [SourceConfig(**self.model_dump(include=fields))]


class TeacherConfig(Strict):
    """One teacher: a sentence-transformers model, a `module:function` callable or an OpenAI-compatible API."""

    def prompt_for(self, role: str) -> str:
        """The prompt this teacher reads a row of `role` with."""
        return self.prompts.get(role, self.prompt)  # type: ignore[call-overload]

    name: str
    """The teacher's name: its folder in the store, its rows in the report."""
    backend: Literal["sentence-transformers", "callable", "openai-api"] = "sentence-transformers"
    """How it runs: a sentence-transformers model (hub id or folder), a Python `module:function` taking a list of
    texts and returning their vectors, or an OpenAI-compatible `/v1/embeddings` endpoint."""
    model: str
    """The model: a hub id or folder, a `module:function`, or the API's model name."""
    prompt: str = ""
    """Put before every text the teacher reads, unless `prompts` has one for the row's role."""
    prompts: dict[Role, str] = {}
    """Prompts by role (`query`, `document`, `text`): e5 `{query: "query: ", document: "passage: "}`, bge its
    instruction for queries and `""` for documents. The store keys vectors by the exact text the teacher read, so a
    changed prompt never reuses vectors."""
    batch_size: int = Field(default=64, gt=0)
    """Texts per call (per request, for an API)."""
    max_length: int | None = Field(default=None, gt=0)
    """Tokens the teacher reads of a text (sentence-transformers backend); unset, the model's own limit."""
    trust_remote_code: bool = False
    """Let a hub model run its own code (sentence-transformers backend)."""
    workers: int = Field(default=1, gt=0)
    """Batches in flight at once (callable and API backends: threads); tokenizer threads (the fast engine)."""
    engine: Literal["auto", "fast", "sentence-transformers"] = "auto"
    """sentence-transformers backend: `fast` is jasper's length-bucketed pipeline (packed float32 matmuls on a CPU,
    half precision on a GPU), `sentence-transformers` its own `encode`, `auto` the fast one where the model allows."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """The teacher's precision (fast engine): `auto` is float32 on a CPU and the checkpoint's half type on a GPU."""
    max_batch_tokens: int | None = Field(default=None, gt=0)
    """A cap on the padded tokens of one batch (fast engine): batches of long texts hold fewer of them."""
    api_base: str | None = None
    """openai-api backend: the endpoint's base URL (`https://api.openai.com/v1` when unset)."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai-api backend: the environment variable that holds the key (never the key itself)."""
    dimensions: int | None = Field(default=None, gt=0)
    """openai-api backend: the `dimensions` to ask for, where the model takes it."""
    requests_per_minute: float | None = Field(default=None, gt=0)
    """openai-api backend: a rate limit kept on this side."""
    max_retries: int = Field(default=8, ge=0)
    """openai-api backend: retries of a failed request (429s and 5xx, with backoff)."""
    timeout_s: float = Field(default=60.0, gt=0)
    """openai-api backend: seconds a request may take."""


class StoreConfig(Strict):
    """The on-disk teacher-vector store."""

    dir: str | None = None
    """Where the teachers' vectors are kept; unset, `<run>/teachers`. Runs with the same corpus and teachers can
    share one store (taught once)."""
    dtype: Literal["float16", "float32"] = "float16"
    """The stored vectors' precision (unit vectors: float16 loses nothing that matters)."""
    shard_size: int = Field(default=1024, gt=0)
    """Rows per shard while teaching: what a kill can lose at most (a rerun resumes from the last whole shard)."""
