"""Prompts by role, as sentence-transformers names them: `query` and `document`, and a default for plain text."""

from __future__ import annotations

import json
from pathlib import Path

ROLE_PROMPT_NAMES = ("query", "document")  # the roles a student's prompts are named after


def role_prompt(prompts: dict[str, str], default_prompt_name: str | None, role: str) -> str:
    """The prompt a text of `role` is read with: the role's own, else the default prompt, else none."""
    if role in prompts:
        return prompts[role]
    return prompts.get(default_prompt_name or "", "")


def folder_prompts(folder: str | Path) -> tuple[dict[str, str], str | None]:
    """(prompts, default prompt name) of a sentence-transformers folder (`config_sentence_transformers.json`)."""
    path = Path(folder) / "config_sentence_transformers.json"
    settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return dict(settings.get("prompts") or {}), settings.get("default_prompt_name")
