"""Draws the two explanatory pictures of the docs: the model (docs/model.png) and the stage ladder (docs/stages.png).

    python docs/figures.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

HERE = Path(__file__).parent
TEACHER, STUDENT, TARGET, LOSS = "#dbe8f6", "#e3f1de", "#fbe5c8", "#f6d6d6"


def box(axis: Axes, x: float, y: float, w: float, h: float, text: str, color: str, size: int = 10) -> None:
    """A rounded box with centred text; (x, y) is its lower-left corner."""
    axis.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color, ec="#444"))
    axis.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def arrow(axis: Axes, start: tuple[float, float], end: tuple[float, float], text: str = "", style: str = "-|>") -> None:
    """An arrow from `start` to `end`, labelled at its middle."""
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color="#444", lw=1.2))
    if text:
        axis.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", fontsize=8, color="#333")


def model_picture(out: Path) -> None:
    """Teachers -> normalise -> concatenate -> target; student encoder -> mean pooling -> FC1 and the short heads."""
    figure, axis = plt.subplots(figsize=(11, 5.6))
    axis.set_xlim(0, 11)
    axis.set_ylim(0, 5.6)
    axis.axis("off")
    axis.text(0.2, 5.25, "once, before training (jasper teach)", fontsize=10, style="italic", color="#555")
    box(axis, 0.2, 4.1, 1.9, 0.7, "text (+ teacher's\nprompt for its role)", "#ffffff", 8)
    box(axis, 2.6, 4.55, 2.2, 0.55, "teacher 1 (e.g. MiniLM)", TEACHER, 9)
    box(axis, 2.6, 3.8, 2.2, 0.55, "teacher 2 (e.g. e5)", TEACHER, 9)
    box(axis, 5.3, 4.55, 1.4, 0.55, "normalise", TEACHER, 9)
    box(axis, 5.3, 3.8, 1.4, 0.55, "normalise", TEACHER, 9)
    box(axis, 7.2, 4.1, 1.6, 0.7, "concatenate,\nnormalise", TEACHER, 9)
    box(axis, 9.2, 4.1, 1.6, 0.7, "target t\n(768-d, stored)", TARGET, 9)
    arrow(axis, (2.1, 4.55), (2.6, 4.82))
    arrow(axis, (2.1, 4.35), (2.6, 4.07))
    arrow(axis, (4.8, 4.82), (5.3, 4.82))
    arrow(axis, (4.8, 4.07), (5.3, 4.07))
    arrow(axis, (6.7, 4.82), (7.2, 4.55))
    arrow(axis, (6.7, 4.07), (7.2, 4.35))
    arrow(axis, (8.8, 4.45), (9.2, 4.45))
    axis.plot([0.1, 10.9], [3.45, 3.45], color="#bbb", lw=0.8, ls="--")
    axis.text(0.2, 3.1, "the student (jasper train; exported one folder per head)", fontsize=10, style="italic",
              color="#555")  # fmt: skip
    box(axis, 0.2, 1.5, 1.9, 0.7, "text (+ student's\nprompt for its role)", "#ffffff", 8)
    box(axis, 2.6, 1.4, 2.2, 0.9, "encoder\n(e.g. 3 layers of MiniLM)", STUDENT, 9)
    box(axis, 5.3, 1.5, 1.4, 0.7, "mean\npooling", STUDENT, 9)
    box(axis, 7.2, 2.35, 1.6, 0.55, "FC1 -> 768-d", STUDENT, 9)
    box(axis, 7.2, 1.55, 1.6, 0.55, "head -> 256-d", STUDENT, 9)
    box(axis, 7.2, 0.75, 1.6, 0.55, "head -> 64-d", STUDENT, 9)
    box(axis, 9.2, 2.3, 1.6, 0.65, "cosine to t (the paper:\n+ similarity, ranking)", LOSS, 7)
    box(axis, 9.2, 1.0, 1.6, 0.9, "similarity +\nranking vs t's\nin-batch pairs", LOSS, 8)
    arrow(axis, (2.1, 1.85), (2.6, 1.85))
    arrow(axis, (4.8, 1.85), (5.3, 1.85))
    for y in (2.62, 1.82, 1.02):
        arrow(axis, (6.7, 1.85), (7.2, y))
    arrow(axis, (8.8, 2.62), (9.2, 2.62))
    arrow(axis, (8.8, 1.82), (9.2, 1.5))
    arrow(axis, (8.8, 1.02), (9.2, 1.3))
    arrow(axis, (10.0, 4.1), (10.0, 2.95), "", style="-|>")
    axis.text(10.1, 3.55, "learns", fontsize=8, color="#333")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


STAGES = [
    ("stage 1", "heads", "FC1 (the ridge start\nputs it at its optimum)", "cosine (FC1)"),
    ("stage 2", "last encoder layers", "FC1 (+ the last layers)", "cosine (FC1)"),
    ("stage 3", "whole student", "FC1 and the short heads", "cosine (FC1);\nsimilarity + ranking (short)"),
    ("stage 4", "image side only", "the image projection", "the student's own caption\nvectors teach images"),
]


def stages_picture(out: Path) -> None:
    """The stage ladder: what trains at each stage (frozen parts greyed), and what it learns from."""
    figure, axis = plt.subplots(figsize=(11, 4.6))
    axis.set_xlim(0, 11)
    axis.set_ylim(0, 4.6)
    axis.axis("off")
    for index, (name, trains, heads, losses) in enumerate(STAGES):
        x = 0.3 + index * 2.7
        y = 0.55 + index * 0.45
        box(axis, x, y, 2.4, 0.55, name, TARGET, 10)
        box(axis, x, y + 0.65, 2.4, 0.55, f"trains: {trains}", STUDENT, 8)
        box(axis, x, y + 1.3, 2.4, 0.6, heads, STUDENT, 8)
        box(axis, x, y + 2.0, 2.4, 0.6, losses, LOSS, 8)
        if index:
            arrow(axis, (x - 0.3, y - 0.25), (x, y + 0.15))
    axis.text(0.3, 0.12, "each stage starts from the one before; a killed stage resumes from its last checkpoint",
              fontsize=9, style="italic", color="#555")  # fmt: skip
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    model_picture(HERE / "model.png")
    stages_picture(HERE / "stages.png")
