"""Process-level setup: logging, device, threads, seeds."""

from __future__ import annotations

import logging
import os
import random
import signal

import numpy as np
import torch


def setup_logging(verbose: bool = False) -> None:
    """Log through rich to stderr; quiet the chatty libraries."""
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False)], force=True)
    for name in ("transformers", "sentence_transformers", "httpx", "huggingface_hub", "gensim", "smart_open"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Limit torch's (and OpenMP teachers') CPU threads when asked."""
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def kill_point(variable: str, done: int) -> None:
    """For the resume tests: SIGKILL this process once `done` reaches the count in env `variable`.

    A real kill, as an out-of-memory killer or a pre-empted node would do, not an exception that
    cleanup code could catch.
    """
    limit = os.environ.get(variable)
    if limit and done >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)
