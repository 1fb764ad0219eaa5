"""Config loading, overrides and validation; every shipped config validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jasper.config import ConfigError, build_config, load_config, model_eval_config
from jasper.errors import JasperError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config.stages


def test_paper_config_is_the_paper_recipe():
    config = load_config(ROOT / "configs" / "jasper_paper.yaml")
    assert config.student.heads == [12288, 1024, 512, 256]
    assert [(s.train, s.lr, s.steps, s.batch_size) for s in config.stages] == [
        ("heads", 1e-4, 4000, 128),
        ("last_layers", 8e-5, 7000, 128),
        ("all", 7e-5, 2200, 128),
    ]
    assert config.stages[1].last_layers == 3
    assert config.stages[2].active_heads(config.student.heads) == [12288, 1024, 512, 256]
    assert (config.loss.cosine, config.loss.similarity, config.loss.resim, config.loss.margin) == (10, 200, 20, 0.015)


def _base() -> dict:
    return yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())


def test_overrides_apply_with_types():
    config = build_config(_base(), ["stages.1.lr=3e-4", "student.max_length=32", "name=other", "eval.stsb_dir=null"])
    assert config.stages[1].lr == 3e-4
    assert config.student.max_length == 32
    assert config.name == "other"
    assert config.eval.stsb_dir is None


def test_unknown_top_level_key_is_an_error():
    data = _base() | {"seeed": 1}
    with pytest.raises(ConfigError, match="unknown key 'seeed'.*did you mean 'seed'"):
        build_config(data)


def test_unknown_nested_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown key 'student.max_lenght'"):
        build_config(_base(), ["student.max_lenght=3"])


def test_unknown_stage_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown key 'stages.0.learning_rate'"):
        build_config(_base(), ["stages.0.learning_rate=1"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        build_config(_base(), ["student.max_length"])
    with pytest.raises(ConfigError, match="not an index"):
        build_config(_base(), ["stages.9.lr=1"])


@pytest.mark.parametrize(
    "override",
    ["stages.1.last_layers=0", "stages.0.heads=[]", "stages.0.train_heads=[]"],
)
def test_stage_with_nothing_to_train_is_an_error(override):
    with pytest.raises(ConfigError, match="nothing to train"):
        build_config(_base(), [override])


def test_stage_needs_steps_or_epochs():
    data = _base()
    data["stages"][0].pop("steps")
    with pytest.raises(ConfigError, match="exactly one of `steps` or `epochs`"):
        build_config(data)


def test_stage_head_must_exist():
    with pytest.raises(ConfigError, match="uses head 99"):
        build_config(_base(), ["stages.2.heads=[768, 99]"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_text_overrides_are_taken_verbatim():
    config = build_config(_base(), ["teachers.0.prompt=query: ", "name=123", "precision=bf16", "eval.stsb_dir=null"])
    assert config.teachers[0].prompt == "query: "  # YAML would read this as a mapping
    assert config.name == "123" and config.precision == "bf16" and config.eval.stsb_dir is None


def test_override_that_is_not_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match=r"stages.0.heads=\[1,2': the value is not valid YAML"):
        build_config(_base(), ["stages.0.heads=[1,2"])


def test_plain_model_eval_takes_only_its_own_overrides():
    settings = model_eval_config("runs/x/export/dim-64/", ["output_dir=out", "eval.batch_size=8"])
    assert settings.run_dir == Path("out") / "eval-dim-64" and settings.eval.batch_size == 8
    with pytest.raises(ConfigError, match="does not apply to a plain model"):
        model_eval_config("m", ["foo=1"])
    with pytest.raises(ConfigError, match="unknown key 'eval.colour'"):
        model_eval_config("m", ["eval.colour=red"])


def test_cuda_config_refuses_clearly_without_a_gpu(monkeypatch):
    from jasper.runtime import pick_device

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(JasperError, match="asks for device 'cuda'.*no CUDA GPU"):
        pick_device("cuda")
    assert str(pick_device("auto")) == "cpu"


def test_training_changes_ignore_what_trains_nothing():
    from jasper.run_check import training_changes

    base = build_config(_base())
    same = build_config(
        _base(), ["threads=1", "eval.batch_size=8", "teachers.1.workers=1", "stages.0.checkpoint_every=7"]
    )
    assert training_changes(base, same) == []
    changed = build_config(_base(), ["stages.1.lr=0.5", "student.max_length=32", "corpus.max_texts=10"])
    assert training_changes(base, changed) == [
        "corpus.max_texts: 4000 -> 10",
        "stages.1.lr: 5e-05 -> 0.5",
        "student.max_length: 64 -> 32",
    ]
