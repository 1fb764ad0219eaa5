"""The `jasper` command: a thin table over the Python API (`jasper.api`)."""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar, cast

import typer

from jasper.data.images import MAX_IMAGE_PIXELS
from jasper.errors import JasperError, describe_failure
from jasper.paths import check_output_file
from jasper.run_folder import RunFolder
from jasper.runtime import setup_logging
from jasper.serve.limits import Limits

app = typer.Typer(
    help="Distil several embedding models into one small student.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a bug's traceback must not print the locals (keys, texts)
    context_settings={"help_option_names": ["-h", "--help"]},
)
logger = logging.getLogger("jasper")

Overrides = Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. stages.0.steps=10")]  # noqa: UP045
ConfigArg = Annotated[Path, typer.Argument(help="a YAML config, or a run folder holding config.yaml")]
Command = TypeVar("Command", bound=Callable[..., Any])
Restart = Annotated[bool, typer.Option("--restart", help="discard this run's training and start it over")]


def _say(message: str) -> None:
    """A user's error: one red line (with the traceback too under JASPER_DEBUG=1), exit code 2."""
    if os.environ.get("JASPER_DEBUG") == "1":
        traceback.print_exc()
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _guard(action: Command) -> Command:
    """A user's mistake (a JasperError, a full disk, a path that cannot be written) becomes one clear line and exit
    code 2; Ctrl-C exit code 130 (what was saved and where a rerun starts is logged where the work stopped); any
    other exception is a bug and keeps its traceback."""

    @functools.wraps(action)
    def wrapper(*args: object, **kwargs: object) -> object:
        setup_logging()
        try:
            return action(*args, **kwargs)
        except JasperError as error:
            _say(str(error))
        except KeyboardInterrupt:
            typer.secho("interrupted: rerun the same command to resume from what was saved", err=True)
            raise typer.Exit(130) from None
        except Exception as error:  # a full disk or a size limit, said by whichever library wrote; else a bug
            described = describe_failure(error)
            if described is None:
                raise
            _say(described)
        return None

    return cast(Command, wrapper)


def _run(config: Path, overrides: list[str] | None) -> Any:
    from jasper.api import Run

    return Run(config, overrides)


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
    _run(config, overrides).teach()


@app.command()
@_guard
def train(config: ConfigArg, overrides: Overrides = None, restart: Restart = False) -> None:
    """Train the student through the configured stages (resumes a killed run)."""
    logger.info("student saved to %s", _run(config, overrides).train(restart))


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
    from jasper.api import evaluate_model

    if target.suffix in (".yaml", ".yml") or RunFolder(target).config.is_file():
        run = _run(target, overrides)
        if mteb_tasks:
            report = run.evaluate_mteb(mteb_tasks.split(","), mteb_dim, mteb_prompts)
        else:  # a run folder may come from anyone: its callable / API / remote-code teachers run only when asked
            report = run.evaluate(trusted=trust_config or target.suffix in (".yaml", ".yml"))
    elif mteb_tasks:
        raise JasperError("--mteb needs a run (a config or run folder), not a plain model")
    else:
        report = evaluate_model(str(target), overrides)
    report.print()


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
        Optional[str],  # noqa: UP045
        typer.Option(
            help="with --format onnx: int8 adds a dynamically quantized copy for this machine's CPU family; "
            "int8-avx512_vnni, int8-avx512, int8-avx2 or int8-arm64 for another"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an earlier export in --out")] = False,
    overrides: Overrides = None,
) -> None:
    """Write sentence-transformers folders (with model cards) for the chosen heads; optionally upload one."""
    _run(run, overrides).export(dim, out, format, quantize, push_to_hub, private, force)


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
    backend: Annotated[
        str, typer.Option(help="auto (the fastest files the exported heads hold), torch, onnx, onnx-o3, onnx-int8")
    ] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for ONNX Runtime; default all")] = None,  # noqa: UP045
    max_batch: Annotated[int, typer.Option(help="texts embedded together (dynamic batching)")] = Limits.max_batch,
    max_wait_ms: Annotated[
        float, typer.Option(help="how long a batch waits for requests on their way")
    ] = Limits.max_wait_ms,
    max_inputs: Annotated[int, typer.Option(help="texts per request")] = Limits.max_inputs,
    max_input_chars: Annotated[int, typer.Option(help="characters per text")] = Limits.max_input_chars,
    max_body_mb: Annotated[float, typer.Option(help="request body limit, MiB")] = Limits.max_body_bytes / 2**20,
    max_queue_texts: Annotated[
        int, typer.Option(help="texts waiting to be embedded; past it, 429 with Retry-After")
    ] = Limits.max_queue_texts,
    request_timeout_s: Annotated[
        float, typer.Option(help="seconds a client has to send a whole request (408 after)")
    ] = Limits.request_timeout_s,
    idle_timeout_s: Annotated[
        float, typer.Option(help="seconds an open connection may sit with no request")
    ] = Limits.idle_timeout_s,
    max_connections: Annotated[
        int, typer.Option(help="open connections and requests; past it, 503")
    ] = Limits.max_connections,
) -> None:
    """Serve an OpenAI-compatible embeddings API (POST /v1/embeddings, GET /v1/models, GET /health)."""
    try:
        from jasper.serve.app import serve as run_server
    except ImportError as missing:  # without the serve extra: one line saying what to install
        raise JasperError(str(missing)) from None

    limits = Limits(
        max_inputs=max_inputs,
        max_body_bytes=int(max_body_mb * 2**20),
        max_input_chars=max_input_chars,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue_texts=max_queue_texts,
        max_queue_chars=max_queue_texts * Limits.max_queue_chars // Limits.max_queue_texts,
        request_timeout_s=request_timeout_s,
        idle_timeout_s=idle_timeout_s,
        max_connections=max_connections,
    )
    run_server(model, host, port, api_key_env, limits, name, backend, threads)


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
    prompt_name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="query or document: read the texts with the model's prompt for that; default its default"),
    ] = None,
    max_image_pixels: Annotated[
        int, typer.Option(help="the largest image opened, in pixels (a guard against decompression bombs)")
    ] = MAX_IMAGE_PIXELS,
) -> None:
    """Embed a file of texts (--input) or a folder of images (--images) to a .npy file."""
    import numpy as np

    from jasper.api import load_model
    from jasper.io import atomic_save_npy, atomic_write_text

    if (input is None) == (images is None):
        raise JasperError("give exactly one of --input (a file of texts) or --images (a folder of images)")
    check_output_file(out)  # before the work, not after it
    if images is not None:
        from jasper.data.images import set_max_image_pixels
        from jasper.encode import image_files

        set_max_image_pixels(max_image_pixels)
        files = image_files(images)
        vectors = load_model(model).encode_images(files, dim, batch_size)
        # which row is which image: <out>.files.txt, one path per line, in row order
        atomic_write_text(out.with_name(out.name + ".files.txt"), "".join(f"{f}\n" for f in files))
    else:
        from jasper.data.corpus import read_corpus

        assert input is not None
        vectors = load_model(model).encode(read_corpus(input), dim, batch_size, truncate, prompt_name)
    if not np.isfinite(vectors).all():
        raise JasperError(
            f"'{model}' gave non-finite vectors (NaN/inf) for {input or images}: nothing written to {out}"
        )
    atomic_save_npy(out, vectors)
    logger.info("wrote %s %s", out, vectors.shape)


@app.command()
@_guard
def run(config: ConfigArg, overrides: Overrides = None, restart: Restart = False) -> None:
    """teach -> train -> export -> eval for one config, then print the table."""
    this = _run(config, overrides)
    this.all(restart).print()


@app.command()
@_guard
def compare(
    run_a: Annotated[Path, typer.Argument(help="first run folder (holding report.json)")],
    run_b: Annotated[Path, typer.Argument(help="second run folder")],
    out: Annotated[Optional[Path], typer.Option(help="also write the table as Markdown here")] = None,  # noqa: UP045
) -> None:
    """Two runs' reports side by side, with the difference (e.g. a loss ablation)."""
    from jasper.eval.compare import compare_reports, print_comparison

    if out is not None:
        check_output_file(out)
    markdown = print_comparison(compare_reports(run_a, run_b), run_a.name, run_b.name)
    if out is not None:
        from jasper.io import atomic_write_text

        atomic_write_text(out, markdown)


def main() -> None:
    """Console entry point."""
    app(sys.argv[1:])
