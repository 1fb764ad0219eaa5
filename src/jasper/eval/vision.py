"""Image evaluation of a run with a vision stage: Flickr8k test retrieval both ways (Recall@1/5/10 over 1,000
images and 5,000 captions) and zero-shot Imagenette (top-1), at every head, for the trained projection, the
closed-form one and an untrained one. Images go through the image path, captions and class prompts through
the student's text path: one space per head.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.config import RunConfig
from jasper.data.image_store import image_features
from jasper.data.images import hub_image_captions, imagenette_folder, read_image_captions
from jasper.errors import JasperError
from jasper.eval.scores import Score
from jasper.eval.vision_metrics import image_to_text_recall, text_to_image_recall, zero_shot_top1
from jasper.io import folder_swap
from jasper.models.image_side import TOWER_FILE, ImageEmbedder, load_projection

logger = logging.getLogger(__name__)
FLICKR8K_HUB = ("jxie/flickr8k", "test")
IMAGENETTE_HUB = ("frgfm/imagenette", "validation")
ROW_NAMES = {"trained": "student", "closed-form": "student (closed-form projection)",
             "untrained": "student (untrained projection)"}  # fmt: skip
RECALL_KS = (1, 5, 10)


def _flickr8k(config: RunConfig, notes: list[str]) -> Any:
    folder = config.eval.flickr8k_dir
    if folder is None:
        return None
    if Path(folder).is_dir():
        return read_image_captions(folder, check_images=False)
    try:
        return hub_image_captions(*FLICKR8K_HUB, config.folder.vision_work / "eval-data")
    except (JasperError, ValueError, OSError) as error:
        notes.append(f"Flickr8k retrieval skipped: no folder at '{folder}' and the hub copy failed ({error})")
        return None


def _imagenette(config: RunConfig, notes: list[str]) -> tuple[list[Path], list[int], list[str]] | None:
    folder = config.eval.imagenette_dir
    if folder is None:
        return None
    if Path(folder).is_dir():
        return imagenette_folder(folder)
    try:
        return imagenette_folder(_hub_imagenette(config.folder.vision_work / "eval-data" / "imagenette"))
    except (JasperError, ValueError, OSError) as error:
        notes.append(f"Imagenette zero-shot skipped: no folder at '{folder}' and the hub copy failed ({error})")
        return None


def _hub_imagenette(folder: Path) -> Path:
    """The hub's Imagenette validation split, copied once as `<class name>/<image>.jpg`."""
    if folder.is_dir():
        return folder
    from jasper.hub import require

    require(IMAGENETTE_HUB[0], "Imagenette", "dataset")
    import datasets

    rows = datasets.load_dataset(IMAGENETTE_HUB[0], "160px", split=IMAGENETTE_HUB[1])
    names = rows.features["label"].names
    with folder_swap(folder) as staging:
        for i, row in enumerate(rows):
            target = staging / names[row["label"]] / f"{i:05d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            row["image"].convert("RGB").save(target, quality=95)
    return folder


def vision_scores(config: RunConfig, student: Any) -> tuple[list[Score], list[str]]:
    """(scores, notes) of the run's image side at every head; nothing when the run has no vision stage."""
    image_dir = config.folder.image
    notes: list[str] = []
    if not config.has_vision_stage:
        return [], notes
    if not (image_dir / TOWER_FILE).is_file():
        return [], [f"image evaluation skipped: no trained image side in '{image_dir}'"]
    flickr, nette = _flickr8k(config, notes), _imagenette(config, notes)
    if flickr is None and nette is None:
        return [], notes
    embedder = ImageEmbedder.load(image_dir, student)
    dims = list(student.head_dims)
    cache = config.folder.vision_work / "features"

    def features(name: str, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        found = image_features(cache, name, embedder.features, paths)
        return found.tokens[:, 0], found.classes[:, 0]

    scores: list[Score] = []
    texts: dict[str, Any] = {}
    if flickr is not None:
        pairs = flickr.pairs()
        texts["flickr8k"] = (features("flickr8k-test", flickr.images), np.array([i for i, _ in pairs]),
                             student.encode([c for _, c in pairs], dims))  # fmt: skip
    if nette is not None:
        paths, labels, names = nette
        prompts = [config.eval.zero_shot_prompt.format(n) for n in names]
        texts["imagenette"] = (features("imagenette", paths), np.array(labels), student.encode(prompts, dims))
    for kind, row in ROW_NAMES.items():
        load_projection(embedder.model, image_dir, kind)
        scores += _scores_of(embedder, texts, dims, row)
    load_projection(embedder.model, image_dir, "trained")
    return scores, notes


def _scores_of(embedder: ImageEmbedder, texts: dict[str, Any], dims: list[int], model: str) -> list[Score]:
    scores = []
    for task, ((features, classes), truth, vectors) in texts.items():
        images: dict[int, list[np.ndarray]] = {d: [] for d in dims}
        for start in range(0, len(features), 250):
            found = embedder.embed_features(features[start : start + 250], classes[start : start + 250], dims)
            for d in dims:
                images[d].append(found[d])
        for d in dims:
            image = np.concatenate(images[d])
            if task == "flickr8k":
                t2i = text_to_image_recall(image, vectors[d], truth, RECALL_KS)
                i2t = image_to_text_recall(image, vectors[d], truth, RECALL_KS)
                scores += [Score(model, d, f"flickr8k-t2i:recall@{k}", t2i[k]) for k in RECALL_KS]
                scores += [Score(model, d, f"flickr8k-i2t:recall@{k}", i2t[k]) for k in RECALL_KS]
            else:
                scores.append(Score(model, d, "imagenette-zeroshot:top1", zero_shot_top1(image, vectors[d], truth)))
    return scores
