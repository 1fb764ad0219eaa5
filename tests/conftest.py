"""Shared fixtures: tiny models and corpora built in code."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
# the tests set the environment they need: none of the caller's Hugging Face or jasper settings leaks in
# (TRANSFORMERS_OFFLINE=1 in a user's shell, say, would change what the hub tests see)
for _name in [n for n in os.environ if n.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "JASPER_"))]:
    del os.environ[_name]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import helpers  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 4-layer BERT folder."""
    return helpers.make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 4-layer Qwen2 folder."""
    return helpers.make_tiny_qwen2(tmp_path_factory.mktemp("tiny_qwen2"))


@pytest.fixture()
def corpus_file(tmp_path: Path) -> Path:
    """A 120-line text corpus."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(helpers.sentences(120)) + "\n", encoding="utf-8")
    return path


def tiny_config_dict(model: Path, corpus: Path, out: Path, **extra: object) -> dict:
    """A complete tiny run config: two callable teachers (8 + 4 dims), a 2-layer cut student, the paper's losses."""
    paper = ["cosine", "similarity", "resim"]  # every loss part runs, not only the default cosine
    config = {
        "name": "tiny",
        "output_dir": str(out),
        "device": "cpu",
        "corpus": {"path": str(corpus), "holdout": 16},
        "teachers": [
            {"name": "ta", "backend": "callable", "model": "helpers:teacher_a", "batch_size": 16},
            {"name": "tb", "backend": "callable", "model": "helpers:teacher_b", "batch_size": 16},
        ],
        "store": {"shard_size": 32},
        "student": {"model": str(model), "keep_layers": [0, 1], "max_length": 16, "heads": [12, 6, 3]},
        "stages": [
            {
                "name": "s1",
                "train": "heads",
                "fc1_losses": paper,
                "lr": 1e-3,
                "batch_size": 8,
                "steps": 4,
                "checkpoint_every": 2,
            },
            {
                "name": "s2",
                "train": "last_layers",
                "fc1_losses": paper,
                "last_layers": 1,
                "lr": 1e-3,
                "batch_size": 8,
                "steps": 4,
                "checkpoint_every": 2,
            },
            {
                "name": "s3",
                "train": "all",
                "fc1_losses": paper,
                "heads": "all",
                "lr": 1e-3,
                "batch_size": 8,
                "steps": 4,
                "checkpoint_every": 2,
            },
        ],
        "eval": {"stsb_dir": None},
    }
    config.update(extra)
    return config


@pytest.fixture(autouse=True)
def _own_score_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own shared score cache (jasper's default lives under ~/.cache)."""
    monkeypatch.setenv("JASPER_CACHE_DIR", str(tmp_path / "jasper-cache"))
