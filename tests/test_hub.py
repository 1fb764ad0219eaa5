"""The hub, online or not: STS-B from the original files or the hub copy; one clear line when out of reach."""

from __future__ import annotations

import gzip
import json

import pytest

from jasper import hub
from jasper.assets import resolve_model
from jasper.errors import JasperError
from jasper.eval import sts
from jasper.eval.offline_tasks import offline_tasks

PAIRS = [("A man plays a guitar.", "A man is playing a guitar.", 4.8), ("A cat sleeps.", "Stocks fell.", 0.0)]


def _hub_copy(tmp_path):
    path = tmp_path / "test.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for left, right, score in PAIRS:
            handle.write(json.dumps({"split": "test", "sentence1": left, "sentence2": right, "score": score}) + "\n")
    return path


def test_stsb_prefers_the_local_files(tmp_path, monkeypatch):
    (tmp_path / "sts-test.csv").write_text("main-captions\tMSRvid\t2012test\t0001\t5.000\tA b.\tA c.\n")
    monkeypatch.setattr(hub, "dataset_file", lambda *a: pytest.fail("the hub must not be asked"))
    pairs, origin = sts.stsb_split("test", str(tmp_path))
    assert pairs is not None and pairs.left == ["A b."] and origin.endswith("sts-test.csv")


def test_stsb_comes_from_the_hub_when_the_folder_is_absent(tmp_path, monkeypatch):
    copy = _hub_copy(tmp_path)
    asked = []
    monkeypatch.setattr(hub, "dataset_file", lambda repo, name: asked.append((repo, name)) or copy)
    tasks, notes = offline_tasks(str(tmp_path / "absent"), None, [])
    assert asked == [("mteb/stsbenchmark-sts", "test.jsonl.gz")]
    stsb = next(t for t in tasks if t.name == "sts-b-test")
    assert stsb.left == [p[0] for p in PAIRS] and list(stsb.gold) == [4.8, 0.0]
    assert not any("STS-B" in n for n in notes)


def test_stsb_offline_without_a_copy_is_a_note_saying_how(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "offline_mode", lambda: True)
    pairs, note = sts.stsb_split("test", str(tmp_path / "absent"))
    assert pairs is None
    assert "STS-B test skipped" in note and "HF_HUB_OFFLINE=1" in note and "eval.stsb_dir" in note


def test_unreachable_hub_uses_the_cache_or_fails_in_one_line(monkeypatch):
    monkeypatch.setattr(hub, "offline_mode", lambda: False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    monkeypatch.setattr(hub, "_cached", lambda *a: None)
    with pytest.raises(hub.HubUnavailable, match="cannot reach the Hugging Face hub.*HF_HUB_OFFLINE=1"):
        resolve_model("someone/some-model")
    went_offline = []
    monkeypatch.setattr(hub, "_cached", lambda *a: "/cache/some-model")
    monkeypatch.setattr(hub, "_go_offline", lambda: went_offline.append(True))
    assert resolve_model("someone/some-model") == "/cache/some-model"
    assert went_offline == [True]  # no retries against a dead network afterwards


def test_reachable_hub_leaves_hub_ids_alone(monkeypatch):
    monkeypatch.setattr(hub, "offline_mode", lambda: False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    assert resolve_model("someone/some-model") == "someone/some-model"


def test_not_a_path_nor_an_id():
    with pytest.raises(hub.HubUnavailable, match="neither a local path nor a Hugging Face hub id"):
        resolve_model("no such model!")
    with pytest.raises(JasperError, match="model folder 'runs/typo/export/dim-64' does not exist"):
        resolve_model("runs/typo/export/dim-64")
