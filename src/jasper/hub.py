"""The Hugging Face hub, online or not: fail in one line instead of minutes of retries when it cannot be reached."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from jasper.errors import JasperError

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 5.0


class HubUnavailable(JasperError):
    """Something must come from the hub and cannot: no network, or HF_HUB_OFFLINE=1 without a cached copy."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message  # the cause alone, for callers that word their own advice


def offline_mode() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@functools.cache
def hub_reachable() -> bool:
    """One short request to the hub endpoint (through the hub client, so proxies apply); cached per process."""
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S)
    except Exception:  # any transport error means: not reachable from here
        return False
    return True


def _go_offline() -> None:
    """Make this process use cached files only, as HF_HUB_OFFLINE=1 would (no retries against a dead network)."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def _cached(repo_id: str, repo_type: str, filename: str | None = None) -> str | None:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        if filename is not None:
            return str(hf_hub_download(repo_id, filename, repo_type=repo_type, local_files_only=True))
        return str(snapshot_download(repo_id, repo_type=repo_type, local_files_only=True))
    except HFValidationError:
        raise
    except (OSError, ValueError):
        return None


def require(repo_id: str, what: str, repo_type: str = "model", filename: str | None = None) -> str | None:
    """Check that `repo_id` can be loaded now; returns the cached path when only the cache can serve it.

    Raises HubUnavailable with one line saying what is missing and what to do.
    """
    from huggingface_hub.errors import HFValidationError

    try:
        cached = _cached(repo_id, repo_type, filename)
    except HFValidationError:
        raise HubUnavailable(f"{what} '{repo_id}' is neither a local path nor a Hugging Face hub id") from None
    if offline_mode():
        if cached is None:
            raise HubUnavailable(
                f"{what} '{repo_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 is set: "
                "give a local folder, or fetch it once online",
                "HF_HUB_OFFLINE=1 is set and the Hugging Face cache holds no copy",
            )
        return cached
    if hub_reachable():
        return None
    if cached is None:
        raise HubUnavailable(
            f"cannot reach the Hugging Face hub to fetch {what} '{repo_id}' (no network): give a local folder, "
            "or set HF_HUB_OFFLINE=1 to use what your Hugging Face cache holds",
            "the Hugging Face hub cannot be reached (no network)",
        )
    logger.info("the Hugging Face hub is unreachable: using the cached copy of '%s' (offline from now on)", repo_id)
    _go_offline()
    return cached


def dataset_file(repo_id: str, filename: str) -> Path:
    """A file of a hub dataset, downloaded once into the Hugging Face cache (or read from it offline)."""
    from huggingface_hub import hf_hub_download

    cached = require(repo_id, "dataset", "dataset", filename)
    if cached is not None:
        return Path(cached)
    return Path(hf_hub_download(repo_id, filename, repo_type="dataset"))
