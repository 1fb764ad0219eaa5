"""An `mteb` STS task built from local data, for testing the wrapper offline."""

from __future__ import annotations

from typing import Any

from datasets import Dataset, DatasetDict
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

PAIRS = {
    "sentence1": ["a cat sat", "the dog ran", "music and film", "a red bird", "the old king"],
    "sentence2": ["a cat sat down", "the king wrote", "film and music", "a blue bird", "a new queen"],
    "score": [5.0, 0.5, 4.5, 3.5, 1.5],
}


class LocalSTS(AbsTaskSTS):
    """Five sentence pairs with gold scores."""

    metadata = TaskMetadata(
        type="STS",
        name="LocalSTS",
        main_score="cosine_spearman",
        description="Local STS pairs for tests.",
        reference="https://github.com/embeddings-benchmark/mteb",
        dataset={"path": "NA", "revision": "NA"},
        category="t2t",
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        date=("2020-01-01", "2020-01-01"),
        dialect=[],
        domains=[],
        task_subtypes=[],
        license="cc-by-4.0",
        annotations_creators="derived",
        modalities=["text"],
        sample_creation="found",
        bibtex_citation="",
    )
    min_score = 0
    max_score = 5

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """The pairs above as the test split."""
        self.dataset = DatasetDict({"test": Dataset.from_dict(PAIRS)})
        self.data_loaded = True
