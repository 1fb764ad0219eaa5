"""A user's mistake is one line naming the file (or key) and what to do, with exit code 2, never a traceback; the run
resumes exactly once the cause is gone; a run folder is the folder named, wherever the command runs from."""

from __future__ import annotations

import errno
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from jasper import cli
from test_cli import _jasper

import helpers
from conftest import tiny_config_dict


def _config(tmp_path: Path, tiny_bert: Path, corpus: Path, **extra: object) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_bert, corpus, tmp_path / "runs", **extra)))
    return path


def _one_line(result, *said: str) -> str:
    """The CLI's answer: exit code 2, one line, no traceback, saying each of `said`."""
    text = " ".join(result.output.split()) if hasattr(result, "output") else " ".join(result.stderr.split())
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert code == 2 and "Traceback" not in text, text
    assert text.count("error:") == 1, text
    for words in said:
        assert words in text, (words, text)
    return text


def _corpus_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    lines = "\n".join(helpers.sentences(40)).encode()
    whole = gzip.compress(lines)
    cases = {}
    truncated = tmp_path / "truncated.txt.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    cases["truncated gzip"] = (truncated, "damaged or truncated gzip file")
    plain = tmp_path / "plain.txt.gz"
    plain.write_bytes(lines)
    cases["plain file named .gz"] = (plain, "is named .gz but is not a gzip file")
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    cases["a FIFO"] = (fifo, "is not a regular file")
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text('{"text": "fine"}\n{"text": "lone \\ud800 surrogate"}\n', encoding="utf-8")
    cases["a lone surrogate"] = (surrogate, "line 2 holds text that is not valid Unicode")
    return cases


def test_bad_corpus_files_are_one_line_naming_them(tiny_bert, corpus_file, tmp_path):
    path = _config(tmp_path, tiny_bert, corpus_file)
    for kind, (corpus, said) in _corpus_cases(tmp_path).items():
        result = CliRunner().invoke(cli.app, ["teach", str(path), f"corpus.path={corpus}"])
        _one_line(result, said, corpus.name)
        assert kind


def test_bad_config_values_and_paths_name_the_key(tiny_bert, corpus_file, tmp_path):
    path = _config(tmp_path, tiny_bert, corpus_file)
    sources = f"corpus.sources=[{{path: {corpus_file}, share: .inf}}]"
    result = CliRunner().invoke(cli.app, ["teach", str(path), "corpus.path=null", "corpus.max_texts=50", sources])
    _one_line(result, "corpus.sources.0.share", "finite")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli.app, ["teach", str(path), f"output_dir={blocker / 'runs'}"])
    _one_line(result, "a-file")


@pytest.mark.parametrize("step", ["teach", "train", "export"])
def test_a_full_disk_is_one_line_and_the_rerun_resumes(tiny_bert, corpus_file, tmp_path, monkeypatch, step):
    from jasper import io
    from jasper.export import sentence_transformers as st_export
    from jasper.train import checkpoint

    path = _config(tmp_path, tiny_bert, corpus_file, store={"shard_size": 16})
    run_dir = tmp_path / "runs" / "tiny"
    runner = CliRunner()
    if step != "teach":
        assert runner.invoke(cli.app, ["teach", str(path)]).exit_code == 0
    if step == "export":
        assert runner.invoke(cli.app, ["train", str(path)]).exit_code == 0
        assert runner.invoke(cli.app, ["export", str(path)]).exit_code == 0  # the export the failed one replaces
    calls = [0]

    def full(*args: object, **kwargs: object) -> None:
        calls[0] += 1
        if calls[0] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    if step == "teach":
        original = np.save
        monkeypatch.setattr(io.np, "save", full)
    elif step == "train":
        original = checkpoint.torch.save

        def full_torch(*args: object, **kwargs: object) -> None:  # torch words it its own way
            calls[0] += 1
            if calls[0] >= 3:
                raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos: file write failed")
            return original(*args, **kwargs)

        monkeypatch.setattr(checkpoint.torch, "save", full_torch)
    else:
        original = st_export._classic_modules
        monkeypatch.setattr(st_export, "_classic_modules", full)  # the third head's write fails
    result = runner.invoke(cli.app, [step, str(path)])
    _one_line(result, "the disk is full", "rerun the same command")
    monkeypatch.undo()
    assert runner.invoke(cli.app, [step, str(path)]).exit_code == 0, "the rerun did not finish"
    if step == "train":  # the resumed run logged every step once
        log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
        assert [(r["stage"], r["step"]) for r in log] == [(s, i) for s in ("s1", "s2", "s3") for i in range(1, 5)]
    if step == "export":
        from sentence_transformers import SentenceTransformer

        assert SentenceTransformer(str(run_dir / "export" / "dim-6"), device="cpu").encode(["a"]).shape == (1, 6)


def test_a_read_only_folder_is_one_line(tiny_bert, corpus_file, tmp_path, monkeypatch):
    from jasper import io

    def read_only(path, write):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(io, "atomic_write", read_only)
    result = CliRunner().invoke(cli.app, ["teach", str(_config(tmp_path, tiny_bert, corpus_file))])
    _one_line(result, "Read-only file system", "config.yaml", "writable folder")


def test_a_run_folder_is_the_folder_named_from_anywhere(tiny_bert, corpus_file, tmp_path, monkeypatch):
    made = tmp_path / "project"
    made.mkdir()
    config = tiny_config_dict(tiny_bert, corpus_file, Path("runs"))  # relative output_dir, as users write it
    config["store"]["dir"] = "runs/shared-teachers"  # a relative store path too
    (made / "tiny.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(made)
    runner = CliRunner()
    assert runner.invoke(cli.app, ["teach", "tiny.yaml"]).exit_code == 0
    assert runner.invoke(cli.app, ["train", "tiny.yaml"]).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run_dir = made / "runs" / "tiny"
    for command in (["export", str(run_dir), "--dim", "6"], ["eval", str(run_dir), "--trust-config"]):
        result = runner.invoke(cli.app, command)
        assert result.exit_code == 0, result.output
    assert (run_dir / "export" / "dim-6" / "modules.json").is_file() and (run_dir / "report.json").is_file()
    assert not (elsewhere / "runs").exists()  # nothing written where the command ran


@pytest.mark.e2e
def test_damaged_model_files_are_one_line(tiny_bert, corpus_file, tmp_path):
    path = _config(tmp_path, tiny_bert, corpus_file)
    run_dir = tmp_path / "runs" / "tiny"
    for command in (["teach"], ["train"], ["export", "--format", "onnx"]):
        assert _jasper(command[0], str(path), *command[1:]).returncode == 0
    head = run_dir / "export" / "dim-6"
    (head / "model.safetensors").write_bytes(b"not a model")
    texts = tmp_path / "texts.txt"
    texts.write_text("the cat saw a dog\n")
    _one_line(_jasper("encode", str(head), "--input", str(texts), "--out", str(tmp_path / "v.npy")),
              "cannot be loaded as a sentence-transformers model", "export it again")  # fmt: skip
    onnx = run_dir / "export" / "dim-3" / "onnx" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])  # a truncated file
    served = _jasper("serve", str(run_dir / "export"), "--backend", "onnx", "--port", "1")
    _one_line(served, "cannot be loaded by ONNX Runtime", "model.onnx")
