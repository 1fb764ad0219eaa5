"""Upload an exported head to the Hugging Face hub (online only)."""

from __future__ import annotations

from pathlib import Path

from jasper.errors import JasperError


def push_folder(folder: Path, repo_id: str, private: bool = False) -> str:
    """Create `repo_id` (if needed) and upload `folder` to it; returns the repo's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from jasper.hub import hub_reachable, offline_mode

    if offline_mode() or not hub_reachable():
        why = "HF_HUB_OFFLINE=1 is set" if offline_mode() else "the Hugging Face hub cannot be reached (no network)"
        raise JasperError(f"--push-to-hub {repo_id}: {why}; '{folder}' is written and can be uploaded later")
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="Upload a jasper student head"
        )
    except HfHubHTTPError as error:
        raise JasperError(
            f"uploading '{folder}' to '{repo_id}' failed: {error}. Log in first (`hf auth login`) or set HF_TOKEN"
        ) from None
    return str(url)
