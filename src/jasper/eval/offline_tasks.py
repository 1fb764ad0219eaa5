"""Build the tasks that work offline: STS files, gensim's small test sets, retrieval derived from held-out articles."""

from __future__ import annotations

import io
import json
import logging
import pickle
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from jasper.config import RetrievalBenchmarkConfig
from jasper.eval.sts import read_sts, stsb_split
from jasper.eval.tasks import ClassificationTask, ClusteringTask, PairSimilarityTask, RetrievalTask, Task
from jasper.run_folder import RunFolder

logger = logging.getLogger(__name__)
NEWSGROUP_CHARS = 1000  # post bodies are cut here: enough for the topic, short enough to embed fast on a CPU
RETRIEVAL_PASSAGE_SENTENCES = 3
RETRIEVAL_PASSAGES_PER_ARTICLE = 10


def sts_task(name: str, path: str | Path) -> PairSimilarityTask:
    """An STS-B-format file as a Spearman task."""
    pairs = read_sts(path)
    return PairSimilarityTask(name, pairs.left, pairs.right, pairs.scores)


def _word_pairs(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    left, right, gold = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        first, second, score = line.split("\t")[:3]
        left.append(first)
        right.append(second)
        gold.append(float(score))
    return left, right, np.asarray(gold)


def lee_task(data: Path) -> PairSimilarityTask:
    """Lee et al. (2005): 50 news documents, 1,225 human-rated pairs (Pearson, as usually reported)."""
    documents = (data / "lee.cor").read_text(encoding="utf-8", errors="replace").splitlines()
    matrix = np.loadtxt(data / "similarities0-1.txt")
    rows, cols = np.triu_indices(len(documents), k=1)
    return PairSimilarityTask(
        "lee-docsim", [documents[i] for i in rows], [documents[j] for j in cols], matrix[rows, cols], "pearson"
    )


def polarity_task(data: Path) -> ClassificationTask:
    """200 movie-review sentences labelled positive / negative."""
    texts, labels = [], []
    for line in (data / "pang_lee_polarity.cor").read_text(encoding="utf-8", errors="replace").splitlines():
        label, _, text = line.partition(" ")
        texts.append(text.strip())
        labels.append(1 if label == "__label__pos" else 0)
    return ClassificationTask("polarity", texts, np.asarray(labels))


class _BunchUnpickler(pickle.Unpickler):
    """Loads the pickled scikit-learn Bunch gensim ships, allowing only the classes it holds."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("copy_reg", "_reconstructor"),
        ("__builtin__", "object"),
        ("__builtin__", "dict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if name == "Bunch":
            return dict
        if (module, name) in self.ALLOWED or module.startswith("numpy"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in mini_newsgroup")


def newsgroup_posts(data: Path) -> tuple[list[str], np.ndarray]:
    """200 posts of alt.atheism / sci.space, headers removed (they name the group)."""
    bunch = _BunchUnpickler(
        io.BytesIO(zlib.decompress((data / "mini_newsgroup").read_bytes())), encoding="latin1"
    ).load()
    bodies = [post.partition("\n\n")[2].strip()[:NEWSGROUP_CHARS] or post[:NEWSGROUP_CHARS] for post in bunch["data"]]
    return bodies, np.asarray(bunch["target"])


def wiki_retrieval_task(titles: list[str], name: str = "wiki-retrieval-derived") -> RetrievalTask | None:
    """Derived retrieval: lead sentence of each held-out article -> its next passages (3 sentences each)."""
    from jasper.data.sources import wikipedia_articles

    articles = dict(wikipedia_articles())
    queries: list[str] = []
    passages: list[str] = []
    relevant: list[set[int]] = []
    for title in titles:
        sentences = articles.get(title, [])
        chunks = [
            " ".join(sentences[i : i + RETRIEVAL_PASSAGE_SENTENCES])
            for i in range(1, len(sentences), RETRIEVAL_PASSAGE_SENTENCES)
        ][:RETRIEVAL_PASSAGES_PER_ARTICLE]
        if not chunks:
            continue
        queries.append(sentences[0])
        relevant.append(set(range(len(passages), len(passages) + len(chunks))))
        passages.extend(chunks)
    return RetrievalTask(name, queries, passages, relevant) if queries else None


def offline_tasks(
    stsb_dir: str | None, run_dir: Path | None, extra_sts: list[str], stsb_dev: bool = False
) -> tuple[list[Task], list[str]]:
    """Every offline task whose data is present, and notes for the ones skipped."""
    tasks: list[Task] = []
    notes: list[str] = []
    for split in ("test", "dev") if stsb_dev else ("test",):
        pairs, origin = stsb_split(split, stsb_dir)
        if pairs is not None:
            tasks.append(PairSimilarityTask(f"sts-b-{split}", pairs.left, pairs.right, pairs.scores))
            logger.info("STS-B %s: %d pairs from %s", split, len(pairs.left), origin)
        else:
            notes.append(origin)
    for path in extra_sts:
        tasks.append(sts_task(Path(path).stem, path))
    try:
        from jasper.data.sources import gensim_test_data

        data = gensim_test_data()
    except RuntimeError as error:
        return tasks, [*notes, f"gensim tasks skipped: {error}"]
    tasks.append(lee_task(data))
    for name, file in (("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")):
        tasks.append(PairSimilarityTask(name, *_word_pairs(data / file)))
    tasks.append(polarity_task(data))
    posts, labels = newsgroup_posts(data)
    tasks.append(ClassificationTask("newsgroups-classification", posts, labels))
    tasks.append(ClusteringTask("newsgroups-clustering", posts, labels))
    if run_dir is None:
        notes.append("derived retrieval skipped: it is built from a run's held-out Wikipedia articles (evaluate a run)")
        return tasks, notes
    retrieval = derived_retrieval(RunFolder(run_dir))
    if retrieval is not None:
        tasks.append(retrieval)
    else:
        notes.append("derived retrieval skipped: the run's corpus holds out no Wikipedia articles")
    return tasks, notes


def benchmark_tasks(benchmarks: list[RetrievalBenchmarkConfig]) -> tuple[list[Task], list[str]]:
    """A task per split of each retrieval benchmark: from its local folder when that is there, else from the hub;
    a note naming what to pass when neither can be read."""
    from jasper.eval.beir import BeirTask, read_beir_folder, read_beir_hub
    from jasper.hub import HubUnavailable, require

    tasks: list[Task] = []
    notes: list[str] = []
    for bench in benchmarks:
        if bench.dir is not None and Path(bench.dir).is_dir():
            data, origin = read_beir_folder(bench.dir, bench.splits), bench.dir
        elif bench.hub is not None:
            try:
                require(bench.hub, f"retrieval benchmark '{bench.name}'", "dataset")
            except HubUnavailable as error:
                folder = f"no folder '{bench.dir}', and " if bench.dir else ""
                notes.append(
                    f"{bench.name} skipped: {folder}{error.reason}. Point its `dir` at a BEIR folder "
                    f"(corpus.jsonl, queries.jsonl, qrels/) or run once online to cache '{bench.hub}'"
                )
                continue
            data, origin = read_beir_hub(bench.hub, bench.splits), f"hf://datasets/{bench.hub}"
        else:
            notes.append(f"{bench.name} skipped: its folder '{bench.dir}' does not exist and it names no `hub` id")
            continue
        logger.info("%s: %d documents from %s", bench.name, len(data.documents), origin)
        for split in bench.splits:
            task = BeirTask.from_data(f"{bench.name}-{split}", data, split)
            task.with_teachers = bench.teachers
            tasks.append(task)
    return tasks, notes


DERIVED_TASK = "wiki-retrieval-derived"


def derived_retrieval(run: RunFolder, split: str = "test") -> RetrievalTask | None:
    """A split of the run's derived retrieval task (from its held-out Wikipedia articles), or None when it holds
    none out. The test split is the reported task; the dev split (`corpus.holdout_dev_articles`) is what training
    watches, named `<task>-dev`."""
    name = DERIVED_TASK if split == "test" else f"{DERIVED_TASK}-{split}"
    titles, prepared = run.heldout_articles(split), run.heldout_retrieval(split)
    retrieval = wiki_retrieval_task(json.loads(titles.read_text()), name) if titles.is_file() else None
    if prepared.is_file():
        data = json.loads(prepared.read_text(encoding="utf-8"))
        relevant = [set(r) for r in data["relevant"]]
        retrieval = RetrievalTask(name, data["queries"], data["passages"], relevant)
    return retrieval
