"""The teacher store: normalised shards, resume after a kill, and refusal of mismatches and bad vectors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from jasper.config import TeacherConfig
from jasper.data.store import StoreError, TeacherStore, read_manifest
from jasper.data.store_writer import compute_teacher
from jasper.errors import JasperError

import helpers

TA = TeacherConfig(name="ta", backend="callable", model="helpers:teacher_a", batch_size=8)
TB = TeacherConfig(name="tb", backend="callable", model="helpers:teacher_b", batch_size=8)


def test_compute_and_read_concatenated(tmp_path):
    texts = helpers.sentences(50)
    for teacher in (TA, TB):
        compute_teacher(tmp_path, teacher, texts, "float32", shard_size=16)
    manifest = read_manifest(tmp_path / "ta")
    assert manifest["complete"] and manifest["rows"] == 50 and manifest["dim"] == 8 and manifest["dtype"] == "float32"
    assert not list((tmp_path / "ta").glob("shard-*"))
    store = TeacherStore(tmp_path, [TA, TB], texts)
    assert store.dims == [8, 4] and store.dim == 12
    rows = [3, 0, 41]
    got = store.vectors(rows)
    a = helpers.teacher_a([texts[i] for i in rows])
    b = helpers.teacher_b([texts[i] for i in rows])
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    joined = np.concatenate([a, b], axis=1)
    expected = joined / np.linalg.norm(joined, axis=1, keepdims=True)
    torch.testing.assert_close(got, torch.from_numpy(expected).float(), atol=1e-6, rtol=1e-5)
    # dropping a teacher needs no recomputation
    assert TeacherStore(tmp_path, [TB], texts).dim == 4


def test_float16_is_the_default(tmp_path):
    compute_teacher(tmp_path, TA, helpers.sentences(10))
    assert np.load(tmp_path / "ta" / "vectors.npy").dtype == np.float16


@pytest.mark.e2e
def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path):
    texts = helpers.sentences(70)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from jasper.config import TeacherConfig
        from jasper.data.store_writer import compute_teacher
        texts = open({str(corpus)!r}, encoding="utf-8").read().splitlines()
        teacher = TeacherConfig(name="ta", backend="callable", model="helpers:teacher_a")
        compute_teacher({str(tmp_path / "killed")!r}, teacher, texts, "float32", 16)
    """)
    env = {**os.environ, "JASPER_KILL_AFTER_SHARDS": "2"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert killed.returncode == -9
    assert len(list((tmp_path / "killed" / "ta").glob("shard-*.npy"))) == 2
    assert not read_manifest(tmp_path / "killed" / "ta")["complete"]
    compute_teacher(tmp_path / "killed", TA.model_copy(update={"batch_size": 32}), texts, "float32", 16)
    compute_teacher(tmp_path / "clean", TA, texts, "float32", 16)
    resumed = np.load(tmp_path / "killed" / "ta" / "vectors.npy")
    clean = np.load(tmp_path / "clean" / "ta" / "vectors.npy")
    assert resumed.shape == (70, 8)
    np.testing.assert_array_equal(resumed, clean)


def test_store_from_another_corpus_is_refused(tmp_path):
    compute_teacher(tmp_path, TA, helpers.sentences(20))
    other = helpers.sentences(20, seed=1)
    with pytest.raises(StoreError, match="different texts"):
        TeacherStore(tmp_path, [TA], other)
    with pytest.raises(StoreError, match="different texts"):
        compute_teacher(tmp_path, TA, other)


def test_row_count_mismatch_is_refused(tmp_path):
    texts = helpers.sentences(20)
    compute_teacher(tmp_path, TA, texts)
    with pytest.raises(StoreError, match="different"):
        TeacherStore(tmp_path, [TA], texts[:10])


def test_changed_teacher_model_is_refused(tmp_path):
    texts = helpers.sentences(20)
    compute_teacher(tmp_path, TA, texts)
    with pytest.raises(StoreError, match="different model"):
        TeacherStore(tmp_path, [TA.model_copy(update={"model": "helpers:teacher_b"})], texts)


def test_teacher_whose_output_dim_changed(tmp_path, monkeypatch):
    texts = helpers.sentences(40)
    config = TeacherConfig(name="t", backend="callable", model="helpers:teacher_dim_from_env")
    monkeypatch.setenv("TEACHER_DIM", "8")
    monkeypatch.setenv("JASPER_KILL_AFTER_SHARDS", "")
    # compute one shard by hand-limiting: run on the first 16 rows' worth, then change the dim
    from jasper.data import store_writer as store_module

    calls = {"n": 0}
    original = store_module.atomic_save_npy

    def stop_after_first(path, array):
        original(path, array)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "atomic_save_npy", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        compute_teacher(tmp_path, config, texts, shard_size=16)
    monkeypatch.setattr(store_module, "atomic_save_npy", original)
    for later in ("shard-00001.npy", "shard-00002.npy"):  # the writer may have finished the group's others
        (tmp_path / "t" / later).unlink(missing_ok=True)
    monkeypatch.setenv("TEACHER_DIM", "6")
    with pytest.raises(StoreError, match="now returns 6-dim vectors.*holds 8-dim"):
        compute_teacher(tmp_path, config, texts, shard_size=16)


@pytest.mark.parametrize(("model", "kind"), [("helpers:teacher_nan", "NaN/inf"), ("helpers:teacher_zero", "zero")])
def test_nan_and_zero_vectors_are_refused(tmp_path, model, kind):
    texts = ["the cat saw fire", "a dog ran", "water was open"]
    with pytest.raises(StoreError, match=kind):
        compute_teacher(tmp_path, TeacherConfig(name="bad", backend="callable", model=model), texts)


def test_incomplete_store_is_refused(tmp_path):
    with pytest.raises(StoreError, match="missing.*jasper teach"):
        TeacherStore(tmp_path, [TA], helpers.sentences(5))


def test_bad_callable_spec(tmp_path):
    with pytest.raises(JasperError, match="module:function"):
        compute_teacher(tmp_path, TeacherConfig(name="x", backend="callable", model="nocolon"), ["a text"])


def test_callable_workers_keep_order(tmp_path):
    texts = helpers.sentences(50)
    serial = compute_teacher(tmp_path / "serial", TA, texts, "float32", shard_size=64)
    threaded = compute_teacher(
        tmp_path / "threads", TA.model_copy(update={"workers": 4, "batch_size": 7}), texts, "float32", 64
    )
    np.testing.assert_array_equal(np.load(serial / "vectors.npy"), np.load(threaded / "vectors.npy"))


def test_joining_shards_refuses_missing_or_mixed_width_shards(tmp_path):
    from jasper.data.store_writer import _consolidate
    from jasper.io import atomic_save_npy

    manifest = {"teacher": "t", "rows": 6, "dim": None, "dtype": "float32"}
    atomic_save_npy(tmp_path / "shard-00000.npy", np.ones((4, 8), np.float32))
    with pytest.raises(StoreError, match=r"shards \['shard-00001.npy'\] are missing"):
        _consolidate(tmp_path, manifest, n_shards=2)
    atomic_save_npy(tmp_path / "shard-00001.npy", np.ones((2, 6), np.float32))  # another rank, another width
    with pytest.raises(StoreError, match="output dim changed"):
        _consolidate(tmp_path, manifest, n_shards=2)
    atomic_save_npy(tmp_path / "shard-00001.npy", np.ones((2, 8), np.float32))
    _consolidate(tmp_path, manifest, n_shards=2)
    assert np.load(tmp_path / "vectors.npy").shape == (6, 8)
    assert not list(tmp_path.glob("shard-*.npy"))
