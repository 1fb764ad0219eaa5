"""The docs cannot drift from the code: every config key has a description, the reference pages are what the code
generates, every link resolves (files and headings), and every `jasper` command and option the docs show exists."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from jasper.config import ModelEvalConfig, RunConfig
from jasper.reference import PAGES, cli_options

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    found = []
    for name, field in model.model_fields.items():
        found.append((prefix + name, field.description))
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found += _sections(annotation, f"{prefix}{name}.")
            stack += list(typing.get_args(annotation))
    return found


def test_every_config_key_has_a_description():
    missing = [key for key, said in _sections(RunConfig) + _sections(ModelEvalConfig) if not (said or "").strip()]
    assert missing == [], f"give these keys a docstring in src/jasper/config: {missing}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_reference_pages_are_what_the_code_generates(page):
    written = (ROOT / "docs" / "reference" / page).read_text(encoding="utf-8")
    assert written == PAGES[page](), f"docs/reference/{page} is stale: run `python -m jasper.reference docs/reference`"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())  # underscores stay, as on GitHub
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    headings = [line.lstrip("#").strip() for line in lines if re.match(r"^#{1,6} ", line)]
    return {_slug(h) for h in headings}


def test_every_link_in_the_docs_resolves():
    broken = []
    for doc in DOCS:
        for match in LINK.finditer(doc.read_text(encoding="utf-8")):
            target = match.group(1) or match.group(2)
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_every_documented_command_and_option_exists():
    known = cli_options()
    unknown = []
    for doc in DOCS:
        for line in doc.read_text(encoding="utf-8").splitlines():
            for call in re.finditer(r"(?:^|[`\s(])jasper ([a-z]+)((?: [^`|#]*)?)", line):
                command, rest = call.group(1), call.group(2)
                if command not in known:
                    if command in ("run", "teach", "train", "eval", "export", "encode", "serve", "compare"):
                        unknown.append(f"{doc.name}: jasper {command}")
                    continue
                for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
                    if option not in known[command] | {"--help"}:
                        unknown.append(f"{doc.name}: jasper {command} {option}")
    assert unknown == []
