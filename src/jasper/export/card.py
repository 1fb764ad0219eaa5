"""The model card (`README.md`) of an exported head, in the Hugging Face / sentence-transformers format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from jasper.config import RunConfig
from jasper.data.store import read_manifest
from jasper.export.sentence_transformers import JASPER_EXPORT_META
from jasper.io import atomic_write_text

# licences of the built-in corpora and the shared data; other sources: the user's to state
KNOWN_CORPUS_LICENCES = {
    "gensim-sample": "LGPL-2.1 (gensim's test data: Wikipedia and ABC news sentences)",
    "wiki": "CC BY-SA 4.0 (Wikipedia text)",
}


def corpus_description(config: RunConfig) -> tuple[str, str]:
    """(what the corpus is, its licence) as far as jasper can tell."""
    corpus = config.corpus
    if corpus.source is not None:
        return f"built-in `{corpus.source}`", KNOWN_CORPUS_LICENCES.get(corpus.source, "see the source")
    names = [s.path or s.dataset or "" for s in corpus.source_list()]
    licences = sorted({KNOWN_CORPUS_LICENCES["wiki"] for n in names if "wiki" in n.lower()})
    licence = "; ".join(licences) if licences else "not recorded: state the licence of the source texts"
    return ", ".join(f"`{n}`" for n in names), licence


def _rows_of_head(report: dict[str, Any] | None, dim: int) -> list[dict[str, Any]]:
    return [r for r in (report or {}).get("rows", []) if r.get("model") == "student" and r.get("dim") == dim]


def model_card(
    config: RunConfig,
    dim: int,
    heads: list[int],
    report: dict[str, Any] | None,
    stores: dict[str, dict[str, Any]],
    onnx_files: list[str] | None = None,
) -> str:
    """The card's Markdown, YAML metadata first; `stores`: the teachers' store manifests found, by name;
    `onnx_files`: the ONNX files beside the modules."""
    student = config.student
    license_id = config.export.license or "other"
    metadata = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "feature-extraction", "sentence-similarity", "jasper", "distillation"],
        "base_model": student.model,
        "license": license_id,
    }
    kind = "FC1, fitted to the teachers' concatenated vectors" if dim == heads[0] else "a short head"
    layers = "all layers" if student.keep_layers is None else f"layers {student.keep_layers}"
    corpus, corpus_licence = corpus_description(config)
    texts = next((int(m["rows"]) for m in stores.values() if m.get("rows")), None)
    size = (
        f"{texts:,} texts" if texts else f"up to {config.corpus.max_texts:,} texts" if config.corpus.max_texts else "?"
    )
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).strip(),
        "---",
        "",
        f"# {config.name} ({dim}-d)",
        "",
        f"A small text-embedding model distilled with jasper from {len(config.teachers)} "
        f"teacher(s), following *Jasper and Stella* (arXiv 2412.19048). This folder is the {dim}-d head ({kind}) "
        f"of a student with heads {heads}; every vector is L2-normalised.",
        "",
        "## Model",
        "",
        f"- Base model: `{student.model}`, {layers} kept, mean pooling, max length {student.max_length} tokens "
        "(longer texts are cut)",
        f"- Head: `Linear(hidden -> {dim})`, then `Normalize`",
        "",
        "## Teachers",
        "",
        "| name | model | backend | dim | prompt |",
        "|---|---|---|---:|---|",
        *[
            f"| {t.name} | `{t.model}` | {t.backend} | {stores.get(t.name, {}).get('dim') or '?'} | "
            f"{f'`{t.prompt}`' if t.prompt else '(none)'} |"
            for t in config.teachers
        ],
        "",
        "Each teacher's vectors are L2-normalised, concatenated in this order and normalised again: the target of "
        f"FC1 ({heads[0]} dims).",
        "",
        "## Training",
        "",
        f"- Corpus: {corpus}, {size}; licence: {corpus_licence}",
        f"- Losses: cosine x {config.loss.cosine:g}, similarity x {config.loss.similarity:g}, relative-similarity "
        f"ranking x {config.loss.resim:g} (margin {config.loss.margin:g}); short heads: similarity + ranking",
        "",
        "| stage | trains | heads | lr | batch | steps |",
        "|---|---|---|---|---|---|",
        *[
            f"| {s.name} | {s.train}{f' (last {s.last_layers})' if s.last_layers else ''} | {s.heads} | {s.lr:g} | "
            f"{s.batch_size} | {s.steps if s.steps is not None else f'{s.epochs} epochs'} |"
            for s in config.stages
        ],
        "",
        "## Evaluation",
        "",
        *_evaluation(report, dim),
        "",
        "## Usage",
        "",
        "Loads in sentence-transformers 5.x and 6.x (`modules.json` names the classic module paths).",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("path/to/this/folder")',
        f'vectors = model.encode(["a sentence", "another one"])  # (2, {dim}), unit length',
        'queries = model.encode_query(["what the user typed"])      # with the query prompt, if any',
        'documents = model.encode_document(["a long document ..."])  # with the document prompt, if any',
        "```",
        "",
        *_reading(config),
        "",
        "As an OpenAI-compatible endpoint (`jasper serve` serves every head of a run from one process):",
        "",
        "```bash",
        f"jasper serve path/to/this/folder --name {config.name} --port 8000",
        "```",
        "",
        "```python",
        "from openai import OpenAI",
        "",
        'client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")',
        f'out = client.embeddings.create(model="{config.name}", input=["a sentence"], dimensions={dim})',
        "```",
        "",
        *_onnx_files(onnx_files),
        "",
        "## Licence",
        "",
        _licence_text(config.export.license, student.model),
        "",
    ]
    return "\n".join(lines)


def _evaluation(report: dict[str, Any] | None, dim: int) -> list[str]:
    rows = _rows_of_head(report, dim)
    if not rows:
        return ["Not evaluated yet: `jasper eval RUN` writes the table into this card."]
    table = ["| task | score |", "|---|---:|"]
    table += [f"| {r['task']} | {r['score']:.2f} |" for r in rows]
    return ["Scores x 100 (teacher-cosine as is), from the run's `report.json`:", "", *table]


def _licence_text(license_id: str | None, base: str) -> str:
    if license_id:
        return f"`{license_id}` (set by the run's `export.license`)."
    return (
        "Not set (`export.license` in the run's config): the weights derive from "
        f"`{base}` and were trained on the teachers' outputs, whose licences and terms apply."
    )


INT8_FAMILIES = {
    "avx512_vnni": "x86 CPUs with AVX512-VNNI or AVX-VNNI",
    "avx512": "x86 CPUs with AVX-512 without VNNI",
    "avx2": "x86 CPUs with AVX2 only",
    "arm64": "arm64 CPUs",
}


def _reading(config: RunConfig) -> list[str]:
    """How the folder reads texts: its length and its prompts."""
    student = config.student
    prompts = ", ".join(f"{role}: `{prompt!r}`" for role, prompt in student.prompts.items()) or "none"
    default = f"; plain `encode()` uses the {student.default_prompt_name} prompt" if student.default_prompt_name else ""
    length = f"{student.max_seq_length} tokens" if student.max_seq_length else "the base model's limit in tokens"
    return [
        f"It reads up to {length} of a text (trained on its first {student.max_length}); prompts: {prompts}{default}."
    ]


def _onnx_files(files: list[str] | None) -> list[str]:
    """What the ONNX copies are, and which CPUs the int8 one is for."""
    if not files:
        return [
            "`jasper export RUN --format onnx --quantize int8` adds ONNX copies of this folder",
            '(sentence-transformers\' ONNX layout) that `jasper serve` and `backend="onnx"` load.',
        ]
    lines = ["ONNX copies (sentence-transformers' layout; `jasper serve` serves the fastest):", ""]
    for file in files:
        family = next((f for f in INT8_FAMILIES if file.endswith(f"_{f}.onnx")), None)
        what = f"int8, for {INT8_FAMILIES[family]}" if family else "O3-fused float32" if "O3" in file else "float32"
        lines.append(f"- `{file}`: {what}")
    return lines


def card_writer(config: RunConfig) -> Callable[[Path], Path | None]:
    """A function writing (or refreshing, after evaluation) the card of one exported head folder, with the run's
    report and the teachers' manifests read once."""
    report_path = config.folder.report_json
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else None
    manifests = {t.name: read_manifest(config.store_dir / t.name) for t in config.teachers}
    stores = {name: manifest for name, manifest in manifests.items() if manifest}

    def write(folder: Path) -> Path | None:
        meta_path = Path(folder) / JASPER_EXPORT_META
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        card = Path(folder) / "README.md"
        onnx = sorted(p.relative_to(folder).as_posix() for p in Path(folder).glob("onnx/*.onnx"))
        atomic_write_text(card, model_card(config, int(meta["dim"]), list(meta["heads"]), report, stores, onnx))
        return card

    return write


def write_cards(config: RunConfig, folders: list[Path]) -> list[Path]:
    """Write (or refresh, after evaluation) the card of each exported head folder."""
    write = card_writer(config)
    return [card for card in map(write, folders) if card is not None]
