"""PNG plots of a run: score vs head dimension per task, and the training loss parts vs step."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

REFERENCE_STYLES = ("--", ":", "-.")
IMAGE_TASKS = ("flickr8k-t2i:recall@10", "flickr8k-i2t:recall@10", "imagenette-zeroshot:top1")


def is_image_task(task: str) -> bool:
    """Whether a report task scores the image path (plotted on its own, every row a curve)."""
    return task.startswith(("flickr8k-", "imagenette-"))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores_by_dim(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """One panel per task: the student's score at each head dim; teachers and init as horizontal lines."""
    tasks = list(dict.fromkeys(r["task"] for r in rows if r["model"] == "student" and not is_image_task(r["task"])))
    if not tasks:
        return None
    plt = _pyplot()
    columns = min(4, len(tasks))
    lines = math.ceil(len(tasks) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.3 * lines), squeeze=False)
    references = [m for m in dict.fromkeys(r["model"] for r in rows) if m != "student"]
    for axis, task in zip(axes.flat, tasks, strict=False):
        student = sorted((r["dim"], r["score"]) for r in rows if r["model"] == "student" and r["task"] == task)
        # x = log2(dim) on a linear axis: robust with one point, ticks labelled with the dims
        positions = [math.log2(d) for d, _ in student]
        axis.plot(positions, [s for _, s in student], "o-", color="black", label="student")
        for index, model in enumerate(references):
            values = [r["score"] for r in rows if r["model"] == model and r["task"] == task]
            if values:
                style = REFERENCE_STYLES[index % len(REFERENCE_STYLES)]
                axis.axhline(values[0], linestyle=style, color=f"C{index}", label=model)
        axis.set_xticks(positions, [str(d) for d, _ in student])
        if len(positions) == 1:
            axis.set_xlim(positions[0] - 1, positions[0] + 1)
        axis.set_title(task, fontsize=10)
        axis.set_xlabel("head dimension")
        axis.set_ylabel("mean cosine to the teacher" if task == "teacher-cosine" else "score x 100")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(tasks) :]:
        axis.axis("off")
    return _save_with_legend(plt, figure, axes.flat[0], out, top=0.94)


def _save_with_legend(plt: Any, figure: Any, axis: Any, out: Path, top: float) -> Path:
    """One legend above the panels (from `axis`), then the PNG."""
    handles, labels = axis.get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    figure.tight_layout(rect=(0, 0, 1, top))
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def plot_loss_parts(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Each logged loss part (unweighted) vs global step, log scale, stage boundaries marked."""
    if not records:
        return None
    plt = _pyplot()
    parts = [k for k in records[-1] if "@" in k]
    parts += [k for r in records for k in r if "@" in k and k not in parts]
    parts = list(dict.fromkeys(parts))
    figure, axis = plt.subplots(figsize=(9, 4.8))
    for index, part in enumerate(parts):
        # NaN where a part is not logged (a head idle in a stage): the line breaks instead of bridging the gap
        values = [r[part] if r.get(part, 0) > 0 else math.nan for r in records]
        if any(not math.isnan(v) for v in values):
            axis.plot(range(1, len(records) + 1), values, color=f"C{index % 10}", lw=1, label=part)
    for index in range(1, len(records)):
        if records[index]["stage"] != records[index - 1]["stage"]:
            axis.axvline(index + 0.5, color="grey", lw=0.8, linestyle="--")
    axis.set_yscale("log")
    axis.set_xlabel("optimizer step (all stages)")
    axis.set_ylabel("loss part (unweighted)")
    stages = list(dict.fromkeys(r["stage"] for r in records))
    axis.set_title("training loss parts; dashed lines: stage boundaries (" + " | ".join(stages) + ")", fontsize=10)
    axis.legend(fontsize=7, ncol=3)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def plot_vision_by_dim(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """Image retrieval (Recall@10 both ways) and zero-shot top-1 by head dim: trained, closed-form and
    untrained projections as curves."""
    tasks = [t for t in IMAGE_TASKS if any(r["task"] == t for r in rows)]
    if not tasks:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.6), squeeze=False)
    models = list(dict.fromkeys(r["model"] for r in rows if r["task"] in tasks))
    for axis, task in zip(axes.flat, tasks, strict=True):
        for index, model in enumerate(models):
            points = sorted((r["dim"], r["score"]) for r in rows if r["model"] == model and r["task"] == task)
            style = "o-" if index == 0 else f"o{REFERENCE_STYLES[(index - 1) % len(REFERENCE_STYLES)]}"
            axis.plot([math.log2(d) for d, _ in points], [v for _, v in points], style, label=model)
            axis.set_xticks([math.log2(d) for d, _ in points], [str(d) for d, _ in points])
        axis.set_title(task, fontsize=10)
        axis.set_xlabel("head dimension")
        axis.set_ylabel("score x 100")
        axis.set_ylim(0, 100)
        axis.grid(alpha=0.3)
    return _save_with_legend(plt, figure, axes.flat[0], out, top=0.9)


def plot_dev_curves(records: list[dict[str, Any]], out: Path) -> Path | None:
    """The periodic evaluations (`eval_every`) per stage: one colour per head, one line style per task."""
    if not records:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    stages = list(dict.fromkeys(r["stage"] for r in records))
    # recall@k repeats what nDCG says; one metric per task keeps the lines readable
    keys = [k for k in records[-1] if "@" in k and ":recall" not in k]
    tasks = list(dict.fromkeys(k.rsplit("@", 1)[0] for k in keys))
    dims = sorted({int(k.rsplit("@", 1)[1]) for k in keys}, reverse=True)
    styles: list[tuple[str, Any]] = [("o", "-"), ("s", "--"), ("^", ":"), ("d", "-.")]  # (marker, line style)
    figure, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.8), squeeze=False)
    for axis, stage in zip(axes.flat, stages, strict=True):
        rows = [r for r in records if r["stage"] == stage]
        for key in keys:
            task, dim = key.rsplit("@", 1)
            points = [(r["step"], r[key]) for r in rows if key in r]
            marker, line = styles[tasks.index(task) % len(styles)]
            color = f"C{dims.index(int(dim)) % 10}"
            axis.plot([s for s, _ in points], [v for _, v in points], marker=marker, linestyle=line, color=color, ms=3)
        axis.set_title(f"stage '{stage}'", fontsize=10)
        axis.set_xlabel("step")
        axis.set_ylabel("score x 100")
        axis.grid(alpha=0.3)
    handles = [Line2D([], [], color=f"C{i % 10}", label=f"{d}-d") for i, d in enumerate(dims)]
    handles += [Line2D([], [], color="grey", marker=styles[i % len(styles)][0], linestyle=styles[i % len(styles)][1],
                       ms=3, label=task) for i, task in enumerate(tasks)]  # fmt: skip
    figure.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False, fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
