"""jasper's Python API: what the `jasper` command does, as functions a notebook or a script can call.

    import jasper

    run = jasper.Run("configs/quickstart.yaml", ["name=my-run"])  # a YAML config, a run folder or a RunConfig
    report = run.all()                           # teach -> train -> export -> eval, as `jasper run`
    model = run.model()                          # every head; images too after a vision stage
    vectors = model.encode(["a sentence"], dim=64)

Each step of a `Run` holds the run folder's lock (one writer at a time) and refuses a config that would change a
started run's training, as the command does.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jasper.config import RunConfig, load_config
from jasper.data.store import TeacherStore
from jasper.encode import EmbeddingModel
from jasper.errors import JasperError
from jasper.eval.report import print_table, write_markdown, write_report
from jasper.eval.scores import scores_as_dicts
from jasper.locks import folder_lock
from jasper.paths import check_export_target
from jasper.run_check import check_run
from jasper.run_folder import RunFolder
from jasper.runtime import set_threads

if TYPE_CHECKING:
    from jasper.tracking import Tracking

logger = logging.getLogger("jasper")
ConfigLike = RunConfig | str | Path
EXPORT_FORMATS = ("sentence-transformers", "onnx")


@dataclass
class Report:
    """An evaluation: one row per (model, dim, task), the notes on what was skipped, where it was written."""

    title: str
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    folder: Path | None = None

    def score(self, model: str, dim: int, task: str) -> float | None:
        """One cell, or None when the report has no such cell."""
        found = [r["score"] for r in self.rows if (r["model"], r["dim"], r["task"]) == (model, dim, task)]
        return float(found[0]) if found else None

    def print(self) -> None:
        """The table on the terminal (rich), or as Markdown when stdout is a file or a pipe."""
        print_table(self.rows, self.notes, title=self.title)


def as_config(config: ConfigLike, overrides: list[str] | None = None) -> RunConfig:
    """A RunConfig as given, or loaded from a YAML file or a run folder with `key=value` overrides."""
    if isinstance(config, RunConfig):
        if overrides:
            raise JasperError("overrides apply to a config file or run folder: load_config(path, overrides)")
        return config
    return load_config(config, overrides)


@contextlib.contextmanager
def session(config: RunConfig, restart: bool = False, record: bool = True) -> Iterator[None]:
    """Hold the run folder's lock, apply `threads` (and the image size guard), refuse a config that would change a
    started run's training (or discard that training with `restart`), and record the config when the work uses
    it."""
    set_threads(config.threads)
    if config.vision is not None:
        from jasper.data.images import set_max_image_pixels

        set_max_image_pixels(config.vision.max_image_pixels)
    with folder_lock(config.run_dir, f"run '{config.name}'"):
        check_run(config, restart=restart, record=record)
        yield


@contextlib.contextmanager
def tracked(config: RunConfig) -> Iterator[Tracking | None]:
    """The trackers `log.report_to` names for the block (None when it names none); their session ends with it."""
    from jasper.tracking import Tracking

    tracking = Tracking.open(config)
    try:
        yield tracking
    except BaseException:
        if tracking is not None:
            tracking.failed = True
        raise
    finally:
        if tracking is not None:
            tracking.close()


def _export(
    config: RunConfig,
    dims: list[int],
    out: Path | None,
    onnx: bool = False,
    quantize: str | None = None,
    force: bool = False,
) -> list[Path]:
    """The heads under `out` (`dim-<D>/` each) or the one head into `out` itself, each with its card (and its ONNX
    copies) written before the folder is swapped in whole; then the image side beside them. An `out` of the user's
    is checked first: a new or empty folder, or an earlier export when `force` (jasper.paths)."""
    from jasper.export.card import card_writer
    from jasper.export.image import export_image_side
    from jasper.export.sentence_transformers import export_all, export_head
    from jasper.models.student import load_student

    run = config.folder
    if out is not None:
        check_export_target(out, force)
    if not run.has_student:
        raise JasperError(f"run '{config.name}' has no trained student at '{run.student}': run `jasper train` first")
    student = load_student(run.student)
    write_card = card_writer(config)

    def extras(folder: Path) -> None:
        if onnx:
            from jasper.export.onnx import export_onnx

            export_onnx(folder, quantize)
        write_card(folder)  # after the ONNX copies: it names them

    into = out is not None and len(dims) == 1
    base = out or run.export
    paths = [export_head(student, dims[0], base, extras)] if into else export_all(student, dims, base, extras)
    image = export_image_side(run.image, base, paths)
    if image is not None:
        logger.info("wrote %s (the image path: images in the same space as these heads' texts)", image)
    for path in paths:
        logger.info("wrote %s", path)
    return paths


def _evaluate(config: RunConfig, started: float, title: str, trusted: bool = True) -> Report:
    from jasper.eval.plots import plot_dev_curves, plot_loss_parts, plot_scores_by_dim, plot_vision_by_dim
    from jasper.eval.runner import evaluate_run
    from jasper.export.card import write_cards
    from jasper.train.log import TrainLog

    scores, notes = evaluate_run(config, trusted=trusted)
    rows = scores_as_dicts(scores)
    run = config.folder
    write_report(run.report_json, rows, time.perf_counter() - started, notes, run=config.name)
    run.plots.mkdir(exist_ok=True)
    log = TrainLog(run.train_log)
    plots = [
        plot_scores_by_dim(rows, run.plots / "scores_by_dim.png"),
        plot_loss_parts(log.steps(), run.plots / "loss_parts.png"),
        plot_dev_curves(log.evaluations(), run.plots / "dev_curves.png"),
        plot_vision_by_dim(rows, run.plots / "vision_by_dim.png"),
    ]
    write_markdown(run.report_md, title, rows, notes, [p for p in plots if p])
    write_cards(config, sorted(run.export.glob("dim-*")))  # the cards get this evaluation's table
    logger.info("report: %s and %s", run.report_md, run.report_json)
    return Report(title, rows, notes, run.root)


def evaluate_model(model: str, overrides: list[str] | None = None) -> Report:
    """Every offline task for any sentence-transformers model (folder or hub id); the report goes to
    `<output_dir>/<name>` (overrides: `name=`, `output_dir=`, `eval.<key>=`)."""
    from jasper.config import model_eval_config
    from jasper.eval.runner import evaluate_model as score_model

    started = time.perf_counter()
    settings = model_eval_config(model, overrides)
    scores, notes = score_model(model, settings.eval)
    rows = scores_as_dicts(scores)
    folder, title = RunFolder(settings.run_dir), f"jasper eval '{model}'"
    write_report(folder.report_json, rows, time.perf_counter() - started, notes, model=model)
    write_markdown(folder.report_md, title, rows, notes, [])
    logger.info("report: %s and %s", folder.report_md, folder.report_json)
    return Report(title, rows, notes, folder.root)


def _summarise(tracking: Tracking | None, config: RunConfig, report: Report) -> None:
    """The evaluation, the config, the reports and the plots, to the trackers."""
    if tracking is not None:
        from jasper.eval.report import markdown_tables
        from jasper.tracking import tracked_files

        tracking.summary(report.rows, markdown_tables(report.rows), tracked_files(config.folder))


class Run:
    """One run of a config: its steps (`teach`, `train`, `export`, `evaluate`) or all of them (`all`), and its model.

    `config` is a RunConfig, a YAML file or a run folder (holding `config.yaml`); `overrides` (`key=value`) apply
    to a file or folder.
    """

    def __init__(self, config: ConfigLike, overrides: list[str] | None = None) -> None:
        self.config = as_config(config, overrides)

    @property
    def folder(self) -> RunFolder:
        """The run folder's layout."""
        return self.config.folder

    def teach(self) -> TeacherStore:
        """Compute and store every teacher's vectors for the corpus (resumable); returns the opened store."""
        from jasper.teach import teach

        with session(self.config), tracked(self.config) as tracking:
            return teach(self.config, tracking.teach_progress if tracking else None)

    def train(self, restart: bool = False) -> Path:
        """Train the student through the stages (resumes a killed run; `restart` discards its training first)."""
        from jasper.train.run import train

        with session(self.config, restart), tracked(self.config) as tracking:
            return train(self.config, tracking.sync if tracking else None)

    def export(
        self,
        dims: list[int] | None = None,
        out: str | Path | None = None,
        format: str = "sentence-transformers",  # noqa: A002 - the CLI's --format
        quantize: str | None = None,
        push_to_hub: str | None = None,
        private: bool = False,
        force: bool = False,
    ) -> list[Path]:
        """Write the heads `dims` (default `export.dims`, else every head) as sentence-transformers folders with
        model cards: `<out or run/export>/dim-<D>/`, or `out` itself for one head; `format='onnx'` adds ONNX copies
        (`quantize='int8'` an int8 one too); `push_to_hub` uploads the one exported head to that hub repo. An `out`
        holding an earlier export is replaced only with `force`; any other non-empty `out` is refused."""
        config = self.config
        dims = dims or config.export.dims or config.student.heads
        if push_to_hub and len(dims) != 1:
            raise JasperError(f"--push-to-hub uploads one head: choose it with --dim (heads: {dims})")
        if format not in EXPORT_FORMATS or (quantize and format != "onnx"):
            raise JasperError(f"--format {format} --quantize {quantize}: use --format onnx [--quantize int8]")
        with session(config, record=False):
            paths = _export(config, dims, Path(out) if out is not None else None, format == "onnx", quantize, force)
        if push_to_hub:
            from jasper.export.hub import push_folder

            logger.info("uploaded %s to %s", paths[0], push_folder(paths[0], push_to_hub, private))
        return paths

    def evaluate(self, trusted: bool = True) -> Report:
        """Every head, the initialisation and the teachers on every offline task; writes `report.json`, `report.md`
        and the plots, and refreshes the exported heads' cards. `trusted=False` (a run folder from elsewhere)
        runs no code that the run's config names."""
        with session(self.config, record=False), tracked(self.config) as tracking:
            report = _evaluate(self.config, time.perf_counter(), f"jasper eval '{self.config.name}'", trusted)
            _summarise(tracking, self.config, report)
            return report

    def evaluate_mteb(self, tasks: list[str], dims: list[int] | None = None, prompts: str = "jasper") -> Report:
        """MTEB tasks on the student at the head dims (default FC1), merged into the run's `report.json`."""
        from jasper.eval.mteb_wrapper import evaluate_mteb_run

        with session(self.config, record=False):
            rows, notes = evaluate_mteb_run(self.config, tasks, dims, prompts)
        return Report(f"MTEB, run '{self.config.name}'", rows, notes, self.folder.root)

    def all(self, restart: bool = False) -> Report:
        """teach -> train -> export (every head, or `export.dims`) -> eval, under one lock (`jasper run`)."""
        from jasper.teach import teach
        from jasper.train.run import train

        started = time.perf_counter()
        with session(self.config, restart), tracked(self.config) as tracking:
            teach(self.config, tracking.teach_progress if tracking else None)
            train(self.config, tracking.sync if tracking else None)
            _export(self.config, self.config.export.dims or self.config.student.heads, None)
            report = _evaluate(self.config, started, f"jasper run '{self.config.name}'")
            _summarise(tracking, self.config, report)
            return report

    def model(self) -> EmbeddingModel:
        """The trained student, to embed texts (every head) and, after a vision stage, images."""
        return EmbeddingModel(self.folder.root)


def load_model(target: str | Path) -> EmbeddingModel:
    """A model to embed with: a run folder or config (every head), a saved student, an exported head or any
    sentence-transformers model; `encode_images` where a vision stage trained an image side."""
    return EmbeddingModel(target)
