"""The Python API: the example in docs/python-api.md runs as written (on a tiny config), and the API's steps do
what the commands do."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import tiny_config_dict

DOC = Path(__file__).parent.parent / "docs" / "python-api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_documented_example_runs(tiny_bert, corpus_file, tmp_path, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the tiny config's callable teachers
    example, errors = _blocks()
    namespace: dict = {}
    exec(example.replace("configs/quickstart.yaml", str(config)), namespace)
    vectors, exported = namespace["vectors"], namespace["exported"]
    assert vectors.shape == (2, 3)
    np.testing.assert_allclose(exported.encode(["a sentence", "another one"]), vectors, atol=1e-5)
    run_dir = tmp_path / "runs" / "api-demo"
    assert (run_dir / "report.md").is_file() and (run_dir / "export" / "dim-3" / "modules.json").is_file()
    assert namespace["report"].score("student", 3, "teacher-similarity") is not None
    exec(errors.replace("configs/quickstart.yaml", str(config)), {})


def test_a_changed_config_is_refused_as_by_the_command(tiny_bert, corpus_file, tmp_path):
    import jasper

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")))
    run = jasper.Run(path)
    run.teach()
    run.train()
    changed = jasper.Run(path, ["stages.0.lr=0.5"])
    with pytest.raises(jasper.JasperError, match="was trained with another config"):
        changed.train()
    with pytest.raises(jasper.JasperError, match="overrides apply to a config file"):
        jasper.Run(run.config, ["name=x"])
