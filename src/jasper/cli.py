"""The `jasper` command: teach, train, eval, export, encode, run."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar, cast

import typer

from jasper.config import ConfigError, RunConfig, load_config
from jasper.data.corpus import CorpusError
from jasper.data.store import StoreError
from jasper.hub import HubUnavailable
from jasper.runtime import set_threads, setup_logging

app = typer.Typer(
    help="Distil several embedding models into one small student.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
logger = logging.getLogger("jasper")

Overrides = Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. stages.0.steps=10")]  # noqa: UP045
ConfigArg = Annotated[Path, typer.Argument(help="a YAML config, or a run folder holding config.yaml")]
Command = TypeVar("Command", bound=Callable[..., Any])
Restart = Annotated[bool, typer.Option("--restart", help="discard this run's training and start it over")]
USER_ERRORS = (ConfigError, CorpusError, StoreError, HubUnavailable, ValueError, FileNotFoundError, PermissionError)


def _config(path: Path, overrides: list[str] | None) -> RunConfig:
    config = load_config(path, overrides)
    set_threads(config.threads)
    return config


@contextlib.contextmanager
def _run(config: RunConfig, restart: bool = False, record: bool = True) -> Iterator[None]:
    """Hold the run folder's lock (one writer at a time), refuse a config that would change a started run's
    training, and record the config when the command does work with it."""
    from jasper.locks import folder_lock
    from jasper.run_folder import check_run

    with folder_lock(config.run_dir, f"run '{config.name}'"):
        check_run(config, restart=restart, record=record)
        yield


def _guard(action: Command) -> Command:
    """Turn bad input into one clear line and exit code 2 instead of a traceback; Ctrl-C into exit code 130
    (what was saved and where a rerun starts is logged where the work stopped)."""
    import functools

    @functools.wraps(action)
    def wrapper(*args: object, **kwargs: object) -> object:
        setup_logging()
        try:
            return action(*args, **kwargs)
        except USER_ERRORS as error:
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho("interrupted: rerun the same command to resume from what was saved", err=True)
            raise typer.Exit(130) from None

    return cast(Command, wrapper)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"jasper {version('jasper-distill')}")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Distil several embedding models into one small student."""


@app.command()
@_guard
def teach(config: ConfigArg, overrides: Overrides = None) -> None:
    """Compute and store the teachers' vectors for the corpus (resumable)."""
    from jasper.teach import teach as run_teach

    resolved = _config(config, overrides)
    with _run(resolved):
        run_teach(resolved)


@app.command()
@_guard
def train(config: ConfigArg, overrides: Overrides = None, restart: Restart = False) -> None:
    """Train the student through the configured stages (resumes a killed run)."""
    from jasper.train.loop import train as run_train

    resolved = _config(config, overrides)
    with _run(resolved, restart):
        folder = run_train(resolved)
    logger.info("student saved to %s", folder)


def _evaluate(config: RunConfig, started: float, title: str, trusted: bool = True) -> None:
    from jasper.eval.plots import plot_loss_parts, plot_scores_by_dim, plot_vision_by_dim
    from jasper.eval.report import print_table, write_markdown, write_report
    from jasper.eval.runner import evaluate_run, scores_as_dicts
    from jasper.train.log import TrainLog

    scores, notes = evaluate_run(config, trusted=trusted)
    rows = scores_as_dicts(scores)
    run_dir = config.run_dir
    write_report(run_dir / "report.json", rows, time.perf_counter() - started, notes, run=config.name)
    (run_dir / "plots").mkdir(exist_ok=True)
    plots = [
        plot_scores_by_dim(rows, run_dir / "plots" / "scores_by_dim.png"),
        plot_loss_parts(TrainLog(run_dir / "train_log.jsonl").read(), run_dir / "plots" / "loss_parts.png"),
        plot_vision_by_dim(rows, run_dir / "plots" / "vision_by_dim.png"),
    ]
    write_markdown(run_dir / "report.md", title, rows, notes, [p for p in plots if p])
    from jasper.export.card import write_cards

    write_cards(config, sorted((run_dir / "export").glob("dim-*")))  # the cards get this evaluation's table
    print_table(rows, notes, title=title)
    logger.info("report: %s and %s", run_dir / "report.md", run_dir / "report.json")


@app.command("eval")
@_guard
def evaluate(
    target: Annotated[Path, typer.Argument(help="a config, a run folder, or any sentence-transformers model")],
    overrides: Overrides = None,
    mteb_tasks: Annotated[str | None, typer.Option("--mteb", help="MTEB task names, e.g. STSBenchmark,SciFact")] = None,
    mteb_dim: Annotated[Optional[list[int]], typer.Option(help="head dim for MTEB (repeatable); default FC1")] = None,  # noqa: UP045
    mteb_prompts: Annotated[str, typer.Option(help="'jasper' (Instruct/Query prompts) or 'none'")] = "jasper",
    trust_config: Annotated[
        bool, typer.Option(help="for a run folder: run the code its config names (callable, API, remote-code teachers)")
    ] = False,
) -> None:
    """Evaluate a run (every head, the initialisation, the teachers) or a plain model; writes report.json/.md.

    A plain model takes the overrides name=, output_dir= and eval.<key>= (its report goes to <output_dir>/<name>).
    """
    if target.suffix in (".yaml", ".yml") or (target / "config.yaml").is_file():
        config = _config(target, overrides)
        # a run folder may come from anyone: its callable / API / remote-code teachers run only when asked
        trusted = trust_config or target.suffix in (".yaml", ".yml")
        with _run(config, record=False):
            if mteb_tasks:
                _evaluate_mteb(config, mteb_tasks.split(","), mteb_dim, mteb_prompts)
            else:
                _evaluate(config, time.perf_counter(), f"jasper eval '{config.name}'", trusted)
        return
    if mteb_tasks:
        raise ValueError("--mteb needs a run (a config or run folder), not a plain model")
    _evaluate_plain_model(str(target), overrides)


def _evaluate_plain_model(model: str, overrides: list[str] | None) -> None:
    from jasper.config import model_eval_config
    from jasper.eval.report import print_table, write_markdown, write_report
    from jasper.eval.runner import evaluate_model, scores_as_dicts

    started = time.perf_counter()
    settings = model_eval_config(model, overrides)
    scores, notes = evaluate_model(model, settings.eval)
    rows = scores_as_dicts(scores)
    folder = settings.run_dir
    title = f"jasper eval '{model}'"
    write_report(folder / "report.json", rows, time.perf_counter() - started, notes, model=model)
    write_markdown(folder / "report.md", title, rows, notes, [])
    print_table(rows, notes, title=title)
    logger.info("report: %s and %s", folder / "report.md", folder / "report.json")


def _evaluate_mteb(config: RunConfig, tasks: list[str], dims: list[int] | None, prompts: str) -> None:
    from jasper.eval.mteb_wrapper import evaluate_mteb_run
    from jasper.eval.report import print_table

    rows, notes = evaluate_mteb_run(config, tasks, dims, prompts)
    print_table(rows, notes, title=f"MTEB, run '{config.name}'")


def _trained_student(config: RunConfig) -> Any:
    from jasper.models.student import load_student

    student_dir = config.run_dir / "student"
    if not (student_dir / "student.json").is_file():
        raise FileNotFoundError(
            f"run '{config.name}' has no trained student at '{student_dir}': run `jasper train` first"
        )
    return load_student(student_dir)


def _export(config: RunConfig, dims: list[int], out: Path, into: bool = False) -> list[Path]:
    """Export the heads `dims` under `out` (`dim-<D>/` each), or the one head into `out` itself, with cards."""
    from jasper.export.card import write_cards
    from jasper.export.sentence_transformers import export_all, export_head

    student = _trained_student(config)
    paths = [export_head(student, dims[0], out)] if into else export_all(student, dims, out)
    write_cards(config, paths)
    _export_image(config, out, paths)
    return paths


def _export_image(config: RunConfig, out: Path, heads: list[Path]) -> None:
    from jasper.export.image import export_image_side

    written = export_image_side(config.run_dir, out, heads)
    if written is not None:
        logger.info("wrote %s (the image path: images in the same space as these heads' texts)", written)


@app.command()
@_guard
def export(
    run: ConfigArg,
    dim: Annotated[list[int] | None, typer.Option(help="head dim to export (repeatable); default: every head")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder; default <run>/export")] = None,  # noqa: UP045
    push_to_hub: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--push-to-hub", help="upload the exported head to this Hugging Face repo (needs --dim with several)"
        ),
    ] = None,
    private: Annotated[bool, typer.Option(help="with --push-to-hub: create the repo private")] = False,
    format: Annotated[  # noqa: A002
        str, typer.Option("--format", help="sentence-transformers (always), plus onnx: onnx/model.onnx per head")
    ] = "sentence-transformers",
    quantize: Annotated[
        Optional[str], typer.Option(help="with --format onnx: int8 adds a dynamically quantized copy")  # noqa: UP045
    ] = None,
    overrides: Overrides = None,
) -> None:
    """Write sentence-transformers folders (with model cards) for the chosen heads; optionally upload one."""
    config = _config(run, overrides)
    dims = dim or config.export.dims or config.student.heads
    if push_to_hub and len(dims) != 1:
        raise ValueError(f"--push-to-hub uploads one head: choose it with --dim (heads: {dims})")
    if format not in ("sentence-transformers", "onnx") or (quantize and format != "onnx"):
        raise ValueError(f"--format {format} --quantize {quantize}: use --format onnx [--quantize int8]")
    with _run(config, record=False):
        paths = _export_dims(config, dims, out)
        if format == "onnx":
            from jasper.export.onnx import export_onnx

            for path in paths:
                for written in export_onnx(path, quantize):
                    logger.info("wrote %s", written)
    if push_to_hub:
        from jasper.export.hub import push_folder

        url = push_folder(paths[0], push_to_hub, private)
        logger.info("uploaded %s to %s", paths[0], url)


def _export_dims(config: RunConfig, dims: list[int], out: Path | None) -> list[Path]:
    paths = _export(config, dims, out or config.run_dir / "export", into=out is not None and len(dims) == 1)
    for path in paths:
        logger.info("wrote %s", path)
    return paths


@app.command()
@_guard
def serve(
    model: Annotated[
        str, typer.Argument(help="run folder (every head), export folder, or sentence-transformers folder")
    ],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="name of an environment variable holding the bearer key clients must send"),
    ] = None,
    name: Annotated[Optional[str], typer.Option(help="the model name clients ask for; default the run's")] = None,  # noqa: UP045
    max_batch: Annotated[int, typer.Option(help="texts embedded together (dynamic batching)")] = 256,
    max_wait_ms: Annotated[float, typer.Option(help="how long a request waits for others to batch with")] = 5.0,
    max_inputs: Annotated[int, typer.Option(help="texts per request")] = 2048,
    max_body_mb: Annotated[float, typer.Option(help="request body limit, MiB")] = 8.0,
    backend: Annotated[str, typer.Option(help="torch, or onnx: the exported heads' ONNX copies")] = "torch",
    quantized: Annotated[bool, typer.Option(help="with --backend onnx: the int8 copies")] = False,
) -> None:
    """Serve an OpenAI-compatible embeddings API (POST /v1/embeddings, GET /v1/models, GET /health)."""
    try:
        from jasper.serve import Limits
        from jasper.serve import serve as run_server
    except ImportError as missing:  # without the serve extra: one line saying what to install
        raise ValueError(str(missing)) from None

    if backend not in ("torch", "onnx"):
        raise ValueError(f"--backend {backend}: choose torch or onnx")
    limits = Limits(max_inputs, int(max_body_mb * 2**20), max_batch, max_wait_ms)
    onnx_file = None
    if backend == "onnx":
        from jasper.export.onnx import FP32_FILE, INT8_FILE

        onnx_file = INT8_FILE if quantized else FP32_FILE
    run_server(model, host, port, api_key_env, limits, name, backend, onnx_file)


@app.command()
@_guard
def encode(
    model: Annotated[str, typer.Argument(help="run folder, config, saved student or sentence-transformers model")],
    out: Annotated[Path, typer.Option(help="where to write the .npy")],
    input: Annotated[  # noqa: A002
        Optional[Path], typer.Option("--input", help="texts, one per line (or .jsonl / .parquet)")  # noqa: UP045
    ] = None,
    images: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--images", help="a folder of images, embedded by the run's image path (after a vision stage)"),
    ] = None,
    dim: Annotated[Optional[int], typer.Option(help="head dim; default FC1")] = None,  # noqa: UP045
    batch_size: int = 64,
    truncate: Annotated[
        bool, typer.Option(help="cut a plain model's vectors to --dim (only for Matryoshka-trained models)")
    ] = False,
) -> None:
    """Embed a file of texts (--input) or a folder of images (--images) to a .npy file."""
    import numpy as np

    from jasper.io import atomic_save_npy, atomic_write_text

    if (input is None) == (images is None):
        raise ValueError("give exactly one of --input (a file of texts) or --images (a folder of images)")
    if images is not None:
        from jasper.encode import encode_images, image_files

        files = image_files(images)
        vectors = encode_images(model, files, dim, batch_size)
        source: Path = images
        # which row is which image: <out>.files.txt, one path per line, in row order
        atomic_write_text(out.with_name(out.name + ".files.txt"), "".join(f"{f}\n" for f in files))
    else:
        from jasper.data.corpus import read_corpus
        from jasper.encode import encode_texts

        assert input is not None
        vectors = encode_texts(model, read_corpus(input), dim, batch_size, truncate)
        source = input
    if not np.isfinite(vectors).all():
        raise ValueError(f"'{model}' gave non-finite vectors (NaN/inf) for {source}: nothing written to {out}")
    atomic_save_npy(out, vectors)
    logger.info("wrote %s %s", out, vectors.shape)


@app.command()
@_guard
def run(config: ConfigArg, overrides: Overrides = None, restart: Restart = False) -> None:
    """teach -> train -> export -> eval for one config, then print the table."""
    from jasper.teach import teach as run_teach
    from jasper.train.loop import train as run_train

    started = time.perf_counter()
    resolved = _config(config, overrides)
    with _run(resolved, restart):
        run_teach(resolved)
        run_train(resolved)
        paths = _export(resolved, resolved.export.dims or resolved.student.heads, resolved.run_dir / "export")
        _evaluate(resolved, started, f"jasper run '{resolved.name}'")
    for path in paths:
        logger.info("sentence-transformers model: %s", path)


@app.command()
@_guard
def compare(
    run_a: Annotated[Path, typer.Argument(help="first run folder (holding report.json)")],
    run_b: Annotated[Path, typer.Argument(help="second run folder")],
    out: Annotated[Optional[Path], typer.Option(help="also write the table as Markdown here")] = None,  # noqa: UP045
) -> None:
    """Two runs' reports side by side, with the difference (e.g. a loss ablation)."""
    from jasper.eval.compare import compare_reports, print_comparison

    rows = compare_reports(run_a, run_b)
    markdown = print_comparison(rows, run_a.name, run_b.name)
    if out is not None:
        from jasper.io import atomic_write_text

        atomic_write_text(out, markdown)


def main() -> None:
    """Console entry point."""
    app(sys.argv[1:])
