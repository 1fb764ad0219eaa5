"""Clustered batches: a share of each batch comes from one k-means cluster of the teacher vectors, the rest at
random, so the in-batch similarity losses see pairs the teachers consider close, not only unrelated ones.

The clusters are computed once per run (scikit-learn's MiniBatchKMeans, seeded) and cached in the run folder;
an epoch's batches are then a pure function of (seed, stage, epoch), so a killed run resumes onto the same ones.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from jasper.io import atomic_save_npy

logger = logging.getLogger(__name__)


def cluster_rows(vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """The k-means cluster (0..clusters-1) of each row of `vectors` (N, D), seeded. (N,) int32"""
    from sklearn.cluster import MiniBatchKMeans

    kmeans = MiniBatchKMeans(n_clusters=clusters, random_state=seed, batch_size=4096, n_init=3)
    return kmeans.fit_predict(np.asarray(vectors, dtype=np.float32)).astype(np.int32)


def cached_clusters(folder: Path, vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """`cluster_rows`, computed once into `folder` (keyed by the vectors, the cluster count and the seed)."""
    key = hashlib.sha256(np.ascontiguousarray(vectors[:: max(1, len(vectors) // 512)]).tobytes())
    key.update(f"{len(vectors)}:{clusters}:{seed}".encode())
    path = Path(folder) / f"clusters-{clusters}-{key.hexdigest()[:12]}.npy"
    if path.is_file():
        return np.load(path)
    logger.info("clustering %d training rows' teacher vectors into %d clusters (once per run)", len(vectors), clusters)
    labels = cluster_rows(vectors, clusters, seed)
    atomic_save_npy(path, labels)
    return labels


def clustered_order(
    order: np.ndarray, labels: np.ndarray, batch_size: int, share: float, rng: np.random.Generator
) -> np.ndarray:
    """Re-deal an epoch's `order` (positions into the training rows) into batches of which `share` come from one
    cluster (`labels[position]`) and the rest in `order`'s own sequence; every position still comes once.

    A batch's cluster is drawn in proportion to the rows the clusters have left; the random share is taken in
    `order`'s sequence, so a length-bucketed `order` (`length_pool`) keeps its buckets. Positions past the last
    full batch follow at the end, as in `order`.
    """
    n_batches = len(order) // batch_size
    from_cluster = round(share * batch_size)
    queues: dict[int, list[int]] = {}
    for position in order:
        queues.setdefault(int(labels[position]), []).append(int(position))
    ids = np.array(sorted(queues))
    heads = dict.fromkeys(queues.keys(), 0)  # next unread index in each cluster's queue
    left = np.array([len(queues[c]) for c in ids], dtype=np.float64)
    taken = np.zeros(len(labels), dtype=bool)
    cursor = 0  # next unread index in `order`
    out: list[int] = []
    for _ in range(n_batches):
        batch: list[int] = []
        cluster = int(rng.choice(ids, p=left / left.sum()))
        queue = queues[cluster]
        while len(batch) < from_cluster and heads[cluster] < len(queue):
            position = queue[heads[cluster]]
            heads[cluster] += 1
            if not taken[position]:
                taken[position] = True
                batch.append(position)
        while len(batch) < batch_size:
            position = int(order[cursor])
            cursor += 1
            if not taken[position]:
                taken[position] = True
                batch.append(position)
        for position in batch:
            left[np.searchsorted(ids, labels[position])] -= 1
        out.extend(batch)
    rest = [int(p) for p in order if not taken[p]]
    return np.asarray(out + rest, dtype=np.int64)
