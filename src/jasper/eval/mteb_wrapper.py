"""Let `mteb` evaluate a jasper student at a chosen head dimension, with Jasper-style prompts.

Queries (and both sides of symmetric tasks) get `"Instruct: {instruction}\\nQuery: "`, documents get
nothing, as the released Jasper model is used; `prompts="none"` embeds texts as they are (right for a
student distilled without prompts, such as the quickstart's).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from jasper.config import RunConfig
from jasper.errors import JasperError
from jasper.models.student import Student

# the paper's s2p and s2s instructions, per MTEB task type; other types fall back to "default"
INSTRUCTIONS = {
    "Retrieval": "Given a web search query, retrieve relevant passages that answer the query.",
    "Reranking": "Given a web search query, retrieve relevant passages that answer the query.",
    "default": "Retrieve semantically similar text.",
}


def instruction_prefix(task_type: str, prompt_type: str | None, prompts: str = "jasper") -> str:
    """The text put before an input: nothing for documents or with prompts='none'."""
    if prompts == "none" or prompt_type == "document":
        return ""
    instruction = INSTRUCTIONS.get(task_type, INSTRUCTIONS["default"])
    return f"Instruct: {instruction}\nQuery: "


def mteb_model(
    student: Student, dim: int, name: str = "jasper-student", prompts: str = "jasper", batch_size: int = 64
) -> Any:
    """An `mteb` encoder (AbsEncoder) embedding with `student` at head `dim`."""
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    if dim not in student.head_dims:
        raise JasperError(f"dim {dim} is not a head of this student (heads: {student.head_dims})")

    class JasperStudentEncoder(AbsEncoder):
        def __init__(self) -> None:
            self.model = student
            self.mteb_model_meta = ModelMeta.create_empty(
                {
                    "name": f"jasper/{name}-dim{dim}",
                    "embed_dim": dim,
                    "similarity_fn_name": ScoringFunction.COSINE,
                    "framework": ["PyTorch"],
                }
            )

        def encode(
            self,
            inputs: Any,
            *,
            task_metadata: Any,
            hf_split: str,
            hf_subset: str,
            prompt_type: Any = None,
            **kwargs: Any,
        ) -> np.ndarray:
            texts = [text for batch in inputs for text in batch["text"]]
            kind = getattr(prompt_type, "value", prompt_type)
            prefix = instruction_prefix(str(task_metadata.type), kind, prompts)
            return student.encode([prefix + t for t in texts], [dim], batch_size=batch_size)[dim]

    return JasperStudentEncoder()


def run_mteb(
    student: Student, dim: int, task_names: list[str], prompts: str = "jasper", tasks: list[Any] | None = None
) -> list[tuple[str, float]]:
    """(task name, main score x 100) for each task; `tasks` (mteb task objects) overrides the names."""
    import mteb

    chosen = tasks if tasks is not None else list(mteb.get_tasks(tasks=task_names))
    result = mteb.evaluate(mteb_model(student, dim, prompts=prompts), chosen, cache=None, show_progress_bar=False)
    scores = []
    for task_result in result.task_results:
        scores.append((task_result.task_name, float(task_result.get_score()) * 100.0))
    return scores


def evaluate_mteb_run(
    config: RunConfig, task_names: list[str], dims: list[int] | None, prompts: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """MTEB rows for the run's student (tasks named `mteb:<task>`), merged into report.json; notes for failures."""
    import json

    from jasper.io import atomic_write_json
    from jasper.models.student import load_student

    if importlib.util.find_spec("mteb") is None:
        return [], ["MTEB skipped: `pip install mteb` (or the `mteb` extra) to use --mteb"]
    student = load_student(config.folder.student, inference=True)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for dim in dims or student.head_dims[:1]:
        for task in task_names:
            try:
                for name, score in run_mteb(student, dim, [task], prompts=prompts):
                    rows.append({"model": "student", "dim": dim, "task": f"mteb:{name}", "score": score})
            except Exception as error:  # mteb reports missing data (offline) and unknown tasks in many ways
                notes.append(
                    f"MTEB task '{task}' at dim {dim} failed: {type(error).__name__}: {str(error)[:200]} "
                    "(MTEB downloads its task data from the Hugging Face hub: is it reachable?)"
                )
    report = config.folder.report_json
    if rows and report.is_file():
        data = json.loads(report.read_text(encoding="utf-8"))
        fresh = {(r["model"], r["dim"], r["task"]) for r in rows}
        data["rows"] = [r for r in data["rows"] if (r["model"], r["dim"], r["task"]) not in fresh] + rows
        atomic_write_json(report, data)
    return rows, notes
