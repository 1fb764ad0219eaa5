"""A user's mistakes and the machine's limits, each one line with exit code 2 and nothing of the user's lost:
`export --out` never removes a folder it did not write, server settings are checked before it starts, texts with
nothing to embed are refused, a file-size limit is said like a full disk, and malformed files name themselves."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jasper import cli
from test_cli import _jasper
from test_user_errors import _one_line

from conftest import tiny_config_dict


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory) -> Path:
    """A tiny run, taught and trained (not exported): its config path."""
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    import helpers

    corpus.write_text("\n".join(helpers.sentences(120)) + "\n")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_bert, corpus, root / "runs")))
    for step in ("teach", "train"):
        assert CliRunner().invoke(cli.app, [step, str(path)]).exit_code == 0
    return path


def _export(config: Path, out: object, *more: str):
    return CliRunner().invoke(cli.app, ["export", str(config), "--dim", "6", "--out", str(out), *more])


def test_export_out_never_removes_what_it_did_not_write(trained, tmp_path, monkeypatch):
    run = trained.parent / "runs" / "tiny"
    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("keep me")
    _one_line(_export(trained, users), "holds files that are not a jasper export")
    assert (users / "notes.txt").read_text() == "keep me"
    for inside in (run, run / "export", run / "student", run / "checkpoints" / "new"):
        _one_line(_export(trained, inside), "is inside the run folder")
    assert (run / "student" / "student.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    _one_line(_export(trained, a_file), "is a file, not a folder")
    _one_line(_export(trained, a_file / "under"), "is a file, so nothing can be created under it")
    assert a_file.read_text() == "mine" and not list(tmp_path.glob(".a-file*"))
    monkeypatch.chdir(tmp_path)
    for here in (".", "..", str(tmp_path)):
        _one_line(_export(trained, here), "is the current folder or one above it")
    assert not list(tmp_path.parent.glob("*.tmp"))


def test_an_earlier_export_is_replaced_only_when_asked(trained, tmp_path):
    out = tmp_path / "head"
    assert _export(trained, out).exit_code == 0 and (out / "jasper_head.json").is_file()
    _one_line(_export(trained, out), "holds an earlier jasper export", "--force")
    assert _export(trained, out, "--force").exit_code == 0
    several = tmp_path / "heads"
    runner = CliRunner()
    assert runner.invoke(cli.app, ["export", str(trained), "--out", str(several)]).exit_code == 0
    assert sorted(p.name for p in several.iterdir()) == ["dim-12", "dim-3", "dim-6"]
    _one_line(runner.invoke(cli.app, ["export", str(trained), "--out", str(several)]), "--force")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _export(trained, empty).exit_code == 0  # an empty folder holds nothing to lose


def test_output_files_are_checked_before_the_work(trained, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("the cat saw a dog\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    run = str(trained.parent / "runs" / "tiny")
    for out, said in ((a_file / "v.npy", "is a file, so nothing can be created under it"), (tmp_path, "is a folder")):
        result = CliRunner().invoke(cli.app, ["encode", run, "--input", str(texts), "--out", str(out)])
        _one_line(result, said)
    result = CliRunner().invoke(cli.app, ["compare", run, run, "--out", str(a_file / "x.md")])
    _one_line(result, "is a file, so nothing can be created under it")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--max-batch", "0"), "--max-batch 0: it must be more than 0"),
        (("--max-inputs", "0"), "--max-inputs 0: it must be more than 0"),
        (("--request-timeout-s", "0"), "--request-timeout-s 0: it must be more than 0"),
        (("--max-wait-ms", "-1"), "--max-wait-ms -1: it must be 0 or more"),
        (("--port", "99999"), "--port 99999: a port is a number from 1 to 65535"),
    ],
)
def test_server_settings_are_checked_before_it_starts(trained, args, said):
    result = CliRunner().invoke(cli.app, ["serve", str(trained.parent / "runs" / "tiny"), *args])
    _one_line(result, said)


def test_a_port_in_use_is_one_line(trained):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(cli.app, ["serve", str(trained.parent / "runs" / "tiny"), "--port", str(port)])
    _one_line(result, f"127.0.0.1:{port} is in use", "choose another --port")


def test_a_slow_body_is_408_on_every_python(monkeypatch):
    """asyncio.TimeoutError is not the builtin TimeoutError before Python 3.11: both are caught."""
    import asyncio

    from jasper.serve.app import read_body
    from jasper.serve.limits import Limits
    from jasper.serve.protocol import RequestError

    class Slow:
        headers: dict[str, str] = {}  # noqa: RUF012

        async def stream(self):  # pragma: no cover - never iterated: the wait is replaced below
            yield b""

    async def times_out(awaitable, timeout):
        awaitable.close()
        raise asyncio.TimeoutError

    monkeypatch.setattr(asyncio, "wait_for", times_out)
    with pytest.raises(RequestError) as refused:
        asyncio.run(read_body(Slow(), Limits(request_timeout_s=0.1)))  # type: ignore[arg-type]
    assert refused.value.status == 408


def _limited(bytes_: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (bytes_, bytes_))

    return apply


@pytest.mark.e2e
@pytest.mark.parametrize("step", ["teach", "train", "export"])
def test_a_file_size_limit_is_one_line_and_the_rerun_resumes(tiny_bert, corpus_file, tmp_path, step):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")))
    for earlier in ("teach", "train")[: ("teach", "train", "export").index(step)]:
        assert _jasper(earlier, str(path)).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "jasper", step, str(path)]
    limit = {"teach": 1_200, "train": 20_000, "export": 20_000}[step]  # below a file each step writes
    limited = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                             preexec_fn=_limited(limit))  # fmt: skip
    _one_line(limited, "size limit", "rerun the same command")
    again = _jasper(step, str(path))
    assert again.returncode == 0, again.stderr


def test_malformed_files_name_themselves(trained, tmp_path):
    runner = CliRunner()
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    _one_line(runner.invoke(cli.app, ["teach", str(latin)]), "is not UTF-8 text")
    _one_line(runner.invoke(cli.app, ["teach", str(trained), "name.x=1"]), "'name' is a value", "not a section")
    fake = tmp_path / "texts.parquet"
    fake.write_text("plain text, not parquet\n")
    fresh = ["name=fresh"]  # a new run: the trained one refuses another corpus
    _one_line(
        runner.invoke(cli.app, ["teach", str(trained), *fresh, f"corpus.path={fake}"]), "cannot be read as Parquet"
    )
    nested = tmp_path / "nested.jsonl"
    nested.write_text('{"text": "fine"}\n' + "[" * 100_000 + "\n")
    result = runner.invoke(cli.app, ["teach", str(trained), *fresh, f"corpus.path={nested}"])
    _one_line(result, "line 2", "nested too deeply")
    run = trained.parent / "runs" / "tiny"
    (run / "tracking.json").write_text("{ damaged")
    result = runner.invoke(cli.app, ["train", str(trained), "log.report_to=[tensorboard]"])
    _one_line(result, "tracking.json' is damaged", "delete it")
    (run / "tracking.json").unlink()
    for report in ("{ damaged", json.dumps({"rows": [{"model": "m"}]}), json.dumps([1, 2])):
        (run / "report.json").write_text(report)
        _one_line(runner.invoke(cli.app, ["compare", str(run), str(run)]), "is damaged or not a jasper report")


def test_a_wrong_fc1_dim_is_said_before_any_teaching(tiny_bert, corpus_file, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")))
    result = CliRunner().invoke(cli.app, ["teach", str(path), "student.heads=[13,6,3]"])
    _one_line(result, "FC1) is 13", "ta 8 + tb 4 = 12", "nothing was taught yet")
    assert not list((tmp_path / "runs" / "tiny" / "teachers").glob("*/shard-*"))
    assert not list((tmp_path / "runs" / "tiny" / "teachers").glob("*/vectors.npy"))
