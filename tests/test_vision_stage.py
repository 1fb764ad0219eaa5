"""The vision stage end to end on tiny models (a random BERT student, a random SigLIP vision tower built in code)
and tiny random image folders: train, resume, evaluate, export, encode; the text side stays as it was."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from jasper.config import ConfigError, build_config
from jasper.errors import JasperError

import helpers
from conftest import TESTS, tiny_config_dict

VISION_STEPS = 6


def _tiny_siglip(folder: Path) -> Path:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=32, patch_size=8)  # fmt: skip
    SiglipVisionModel(config).save_pretrained(folder)
    return folder


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    pixels = np.clip(base + rng.integers(-40, 40, size=(24, 30, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _imagefolder(folder: Path, n: int, seed: int) -> Path:
    texts = helpers.sentences(2 * n, seed=seed)
    lines = []
    for i in range(n):
        _image(folder / f"{i:03d}.jpg", seed * 1000 + i)
        lines.append(json.dumps({"file_name": f"{i:03d}.jpg", "captions": texts[2 * i : 2 * i + 2]}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    for c, name in enumerate(("dog", "music")):
        for i in range(3):
            _image(root / "nette" / name / f"{i}.jpg", 500 + 10 * c + i)
    return {
        "train": _imagefolder(root / "train", 12, seed=1),
        "test": _imagefolder(root / "test", 6, seed=2),
        "nette": root / "nette",
        "siglip": _tiny_siglip(root / "siglip"),
    }


def _config(tmp_path: Path, tiny_bert: Path, corpus_file: Path, image_data: dict[str, Path], name: str) -> Path:
    config = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", name=name)
    config["stages"].append({"name": "vision", "train": "vision", "heads": "all", "lr": 1e-2, "batch_size": 4,
                             "steps": VISION_STEPS, "checkpoint_every": 2,
                             "short_head_losses": ["cosine", "similarity", "resim"]})  # fmt: skip
    config["vision"] = {"encoder": str(image_data["siglip"]), "data": str(image_data["train"]), "tokens": 4}
    config["eval"] = {"stsb_dir": None, "flickr8k_dir": str(image_data["test"]),
                      "imagenette_dir": str(image_data["nette"]), "teachers": False, "init": False}  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell's background job starts with SIGINT ignored


def _jasper(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "jasper", *args], capture_output=True, text=True, env=full_env, timeout=600,
        preexec_fn=_default_sigint,
    )  # fmt: skip


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _vision_log(run_dir: Path) -> list[dict]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["stage"] == "vision"]


@pytest.mark.e2e
def test_vision_stage_runs_resumes_and_leaves_the_text_side_alone(tiny_bert, corpus_file, image_data, tmp_path):
    runs = {}
    for name, kill in (("straight", None), ("killed", "3")):
        path = _config(tmp_path, tiny_bert, corpus_file, image_data, name)
        run_dir = tmp_path / "runs" / name
        if kill:
            assert _jasper("teach", str(path)).returncode == 0
            stopped = _jasper("train", str(path), env={"JASPER_INTERRUPT_AFTER_VISION_STEPS": "3"})  # Ctrl-C
            assert stopped.returncode == 130, stopped.stderr
            said = " ".join(stopped.stderr.split())
            assert "interrupted in stage 4 'vision' after step 3" in said and "holds stage 4 step 2" in said, said
            assert "(1 step(s) to repeat" in said and "Traceback" not in said
            killed = _jasper("train", str(path), env={"JASPER_KILL_AFTER_VISION_STEPS": kill})  # resumes at 2
            assert killed.returncode == -9, killed.stderr
            student_before = _digest(run_dir / "student")
            assert not (run_dir / "image").exists()
        done = _jasper("run" if name == "straight" else "train", str(path))
        assert done.returncode == 0, done.stderr
        if kill:
            assert _digest(run_dir / "student") == student_before  # the vision stage never writes the text side
        assert [r["step"] for r in _vision_log(run_dir)] == list(range(1, VISION_STEPS + 1))  # each step once
        runs[name] = run_dir
    from safetensors.torch import load_file

    weights = [load_file(str(runs[n] / "image" / "projection.safetensors")) for n in ("straight", "killed")]
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["loss"] for r in _vision_log(runs["killed"])],
                               [r["loss"] for r in _vision_log(runs["straight"])], rtol=1e-5)  # fmt: skip
    closed = load_file(str(runs["straight"] / "image" / "closed_form.safetensors"))
    assert not torch.equal(closed["projection.weight"], weights[0]["projection.weight"])  # it trained

    report = json.loads((runs["straight"] / "report.json").read_text())
    cells = {(r["model"], r["dim"], r["task"]): r["score"] for r in report["rows"]}
    for model in ("student", "student (closed-form projection)", "student (untrained projection)"):
        for dim in (12, 6, 3):
            for task in ("flickr8k-t2i:recall@10", "flickr8k-i2t:recall@1", "imagenette-zeroshot:top1"):
                assert 0 <= cells[(model, dim, task)] <= 100
    assert cells[("student", 12, "flickr8k-t2i:recall@10")] == 100.0  # 6 test images: every one is in the top 10
    assert (runs["straight"] / "plots" / "vision_by_dim.png").stat().st_size > 10_000
    assert "Images (the image path" in (runs["straight"] / "report.md").read_text()


@pytest.mark.e2e
def test_images_in_the_text_space_from_the_run_and_from_the_export(tiny_bert, corpus_file, image_data, tmp_path):
    path = _config(tmp_path, tiny_bert, corpus_file, image_data, "use")
    run_dir = tmp_path / "runs" / "use"
    assert _jasper("teach", str(path)).returncode == 0
    assert _jasper("train", str(path)).returncode == 0
    assert _jasper("export", str(path)).returncode == 0
    export = run_dir / "export"
    assert (export / "image" / "tower.json").is_file()
    assert "from jasper import load_model" in (export / "image" / "README.md").read_text()
    out = tmp_path / "images.npy"
    encoded = _jasper("encode", str(run_dir), "--images", str(image_data["test"]), "--out", str(out), "--dim", "6")
    assert encoded.returncode == 0, encoded.stderr
    vectors = np.load(out)
    files = (tmp_path / "images.npy.files.txt").read_text().split()
    assert vectors.shape == (6, 6) and [Path(f).name for f in files] == [f"{i:03d}.jpg" for i in range(6)]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)

    from jasper.encode import encode_images
    from jasper.models.image_side import ImageEmbedder

    torch.set_num_threads(1)
    paths = [Path(f) for f in files]
    np.testing.assert_allclose(encode_images(run_dir, paths, 6), vectors, atol=1e-5)
    exported = ImageEmbedder.from_export(export / "dim-6").embed(paths)
    np.testing.assert_allclose(exported[6], vectors, atol=1e-5)  # the export's image path = the run's
    import jasper  # what the export's README shows

    np.testing.assert_allclose(jasper.load_model(export / "dim-6").encode_images(paths), vectors, atol=1e-5)
    both = _jasper("encode", str(run_dir), "--images", str(image_data["test"]), "--input", str(corpus_file),
                   "--out", str(out))  # fmt: skip
    assert both.returncode == 2 and "exactly one of --input" in both.stderr


@pytest.mark.e2e
def test_vision_config_and_data_errors_name_the_problem(tiny_bert, corpus_file, image_data, tmp_path):
    base = yaml.safe_load(_config(tmp_path, tiny_bert, corpus_file, image_data, "bad").read_text())
    without = {k: v for k, v in base.items() if k != "vision"}
    with pytest.raises(ConfigError, match="needs a `vision:` section"):
        build_config(without)
    swapped = dict(base, stages=[base["stages"][3], *base["stages"][:3]])
    with pytest.raises(ConfigError, match="vision stages come after every text stage"):
        build_config(swapped)
    broken = tmp_path / "broken"
    _imagefolder(broken, 4, seed=7)
    (broken / "002.jpg").write_bytes(b"not an image")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(dict(base, vision=dict(base["vision"], data=str(broken)))))
    result = _jasper("train", str(path))  # before any training (the teachers are not even computed)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "002.jpg' cannot be read" in " ".join(result.stderr.split())


def test_offline_without_local_image_data_says_what_it_skipped(tiny_bert, corpus_file, image_data, tmp_path):
    from jasper.eval.vision import _flickr8k, _imagenette
    from jasper.train.vision_data import training_pairs

    base = yaml.safe_load(_config(tmp_path, tiny_bert, corpus_file, image_data, "offline").read_text())
    base["eval"] |= {"flickr8k_dir": str(tmp_path / "absent"), "imagenette_dir": str(tmp_path / "absent2")}
    config = build_config(dict(base, vision=dict(base["vision"], data="someone/image-captions")))
    notes: list[str] = []
    assert _flickr8k(config, notes) is None and _imagenette(config, notes) is None
    said = " ".join(notes)
    assert "Flickr8k retrieval skipped: no folder at" in said and "Imagenette zero-shot skipped" in said
    assert "HF_HUB_OFFLINE=1" in said
    with pytest.raises(JasperError, match="image-caption dataset 'someone/image-captions' is not in the local"):
        training_pairs(config.vision, config.run_dir)
