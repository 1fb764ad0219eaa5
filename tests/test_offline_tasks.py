"""The offline tasks built from gensim's test data (gensim ships with the quickstart extra)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from jasper.eval.offline_tasks import offline_tasks

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gensim") is None, reason="gensim is not installed")


def test_offline_tasks_load_with_expected_sizes(tmp_path):
    (tmp_path / "heldout_articles.json").write_text(json.dumps(["Achilles", "Anatomy"]))
    tasks, notes = offline_tasks(str(tmp_path / "no-stsb"), tmp_path, [])
    by_name = {t.name: t for t in tasks}
    assert any("STS-B test skipped" in n for n in notes)  # offline in tests: no hub copy either
    assert len(by_name["lee-docsim"].gold) == 1225
    assert len(by_name["wordsim353"].gold) == 353
    assert len(by_name["simlex999"].gold) == 999
    assert len(by_name["polarity"].texts) == 200 and set(by_name["polarity"].labels) == {0, 1}
    posts = by_name["newsgroups-classification"].texts
    assert len(posts) == 200 and not any(p.startswith("Newsgroups:") for p in posts)  # headers removed
    retrieval = by_name["wiki-retrieval-derived"]
    assert len(retrieval.queries) == 2 and all(len(r) >= 1 for r in retrieval.relevant)


def test_no_heldout_articles_is_a_note(tmp_path):
    _, notes = offline_tasks(None, tmp_path, [])
    assert any("derived retrieval skipped" in n for n in notes)


def test_heldout_retrieval_file_becomes_the_derived_task(tmp_path):
    data = {
        "queries": ["q one", "q two"],
        "passages": ["a", "b", "c"],
        "relevant": [[0, 1], [2]],
        "articles": ["1", "2"],
    }
    (tmp_path / "heldout_retrieval.json").write_text(json.dumps(data))
    tasks, notes = offline_tasks(None, tmp_path, [])
    retrieval = next(t for t in tasks if t.name == "wiki-retrieval-derived")
    assert retrieval.queries == ["q one", "q two"] and retrieval.relevant == [{0, 1}, {2}]
    assert not any("derived retrieval skipped" in n for n in notes)


def test_training_watches_the_dev_split_never_the_reported_one(tmp_path, tiny_bert):
    from jasper.config import build_config
    from jasper.models.student import build_student
    from jasper.train.watch import DevWatch

    from conftest import tiny_config_dict

    data = {"queries": ["q one"], "passages": ["a", "b"], "relevant": [[0]], "articles": ["1"]}
    config = build_config(tiny_config_dict(tiny_bert, tmp_path / "c.txt", tmp_path / "runs"))
    run = config.folder.root
    run.mkdir(parents=True)
    (run / "heldout_retrieval.json").write_text(json.dumps(data))
    assert not DevWatch(config, build_student(config.student)).tasks  # no dev split: nothing is watched
    (run / "heldout_retrieval_dev.json").write_text(json.dumps(data | {"queries": ["q two"]}))
    watched = DevWatch(config, build_student(config.student))
    assert [t.name for t in watched.tasks] == ["wiki-retrieval-derived-dev"]
    assert watched.tasks[0].queries == ["q two"]
    tasks, _ = offline_tasks(None, run, [])
    assert [t.queries for t in tasks if t.name.startswith("wiki-retrieval")] == [["q one"]]  # reported: test
