"""Process-level setup: logging, device, threads, seeds."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sys
from collections.abc import Iterator

import numpy as np
import torch

from jasper.errors import JasperError

CHATTY_LOGGERS = ("transformers", "sentence_transformers", "httpx", "httpx2", "huggingface_hub", "gensim", "smart_open")


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr: through rich on a terminal, as plain one-line records (no colour, no wrapping) otherwise."""
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        _no_library_bars()  # progress bars in a file are carriage-return noise; jasper logs its own progress
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not torch.cuda.is_available():
        # DeepSpeed (imported by transformers when saving) warns that it found no GPU; on a CPU that is expected
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _no_library_bars() -> None:
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load report and its load/save bars around loads whose gaps jasper expects
    (the pooler of a mean-pooled student); the caller reports anything unexpected itself."""
    from transformers.utils import logging as transformers_logging

    # the parent logger: the child's own level must stay unset (transformers runs extra checks when it is set)
    library = logging.getLogger("transformers")
    level, bars = library.level, transformers_logging.is_progress_bar_enabled()
    library.setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        library.setLevel(level)
        if bars:
            transformers_logging.enable_progress_bar()


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given (a CUDA device must exist)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise JasperError(f"device '{name}' is not a device torch knows (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise JasperError(
            f"this config asks for device '{name}', and this machine has no CUDA GPU torch can use "
            f"(torch {torch.__version__}): run it on a GPU machine, or set device=cpu"
        )
    return device


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


def kill_point(variable: str, done: int, sig: int = signal.SIGKILL) -> None:
    """For the resume tests: send `sig` to this process once `done` reaches the count in env `variable`.

    SIGKILL is a real kill, as an out-of-memory killer or a pre-empted node would do, not an exception that
    cleanup code could catch; SIGINT is a user's Ctrl-C.
    """
    limit = os.environ.get(variable)
    if limit and done >= int(limit):
        os.kill(os.getpid(), sig)
