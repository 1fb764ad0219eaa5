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

from jasper.config import RunConfig, VisionConfig
from jasper.data.image_store import encode_images, image_features
from jasper.data.images import hub_image_captions, imagenette_folder, load_images, read_image_captions
from jasper.eval.runner import Score
from jasper.eval.vision_metrics import image_to_text_recall, text_to_image_recall, zero_shot_top1
from jasper.models.image_student import ImageStudent
from jasper.models.vision import load_image_encoder
from jasper.progress import progress_bar
from jasper.train.vision import IMAGE_DIR, image_student, load_projection, read_tower

logger = logging.getLogger(__name__)
FLICKR8K_HUB = ("jxie/flickr8k", "test")
IMAGENETTE_HUB = ("frgfm/imagenette", "validation")
ROW_NAMES = {"trained": "student", "closed-form": "student (closed-form projection)",
             "untrained": "student (untrained projection)"}  # fmt: skip
RECALL_KS = (1, 5, 10)


class ImageEmbedder:
    """Images -> unit vectors at every head of a text model, through its own encoder (the image path)."""

    def __init__(self, model: ImageStudent, encoder: Any, tower: dict[str, Any]) -> None:
        self.model, self.encoder, self.tower = model.eval(), encoder, tower

    @classmethod
    def load(cls, image_dir: Path, text_side: Any, kind: str = "trained") -> ImageEmbedder:
        """The image side stored in `image_dir` on `text_side` (a jasper Student or an exported model's)."""
        tower = read_tower(image_dir)
        encoder = load_image_encoder(tower["encoder"])
        vision = VisionConfig(encoder=tower["encoder"], data="-", tokens=tower["tokens"],
                              label_tokens=tower["label_tokens"], mlp_hidden=tower.get("mlp_hidden", 0))  # fmt: skip
        model = load_projection(image_student(text_side, encoder, vision), image_dir, kind)
        return cls(model, encoder, tower)

    @classmethod
    def from_export(cls, folder: str | Path) -> ImageEmbedder:
        """An exported head folder (`dim-<D>/`, or `--out`) with the image side beside it (`image/`)."""
        from sentence_transformers import SentenceTransformer

        from jasper.models.image_student import SentenceTransformerSide

        folder = Path(folder)
        image_dir = next((d for d in (folder / IMAGE_DIR, folder.parent / IMAGE_DIR) if (d / "tower.json").is_file()),
                         None)  # fmt: skip
        if image_dir is None:
            raise FileNotFoundError(
                f"no image side next to '{folder}' (image/tower.json): export a run with a vision stage"
            )
        return cls.load(image_dir, SentenceTransformerSide(SentenceTransformer(str(folder), device="cpu")))

    @property
    def dims(self) -> list[int]:
        """The head dims images can be embedded at."""
        return list(self.model.student.head_dims)

    @torch.no_grad()
    def embed_features(self, features: torch.Tensor, classes: torch.Tensor, dims: list[int]) -> dict[int, np.ndarray]:
        """{dim: (B, dim) unit vectors} from cached pooled tokens and top classes."""
        heads = self.model(features.float(), dims, classes)
        return {d: torch.nn.functional.normalize(v, dim=-1).cpu().numpy() for d, v in heads.items()}

    def embed(self, images: list[Any], dims: list[int] | None = None, batch_size: int = 32) -> dict[int, np.ndarray]:
        """{dim: (N, dim) unit vectors} of images (paths or PIL images)."""
        dims = dims or self.dims
        out: dict[int, list[np.ndarray]] = {d: [] for d in dims}
        with progress_bar(len(images), "images", "image") as bar:
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                pil = load_images(chunk) if isinstance(chunk[0], (str, Path)) else chunk
                features, classes = encode_images(self.encoder, pil, self.tower["tokens"], self.tower["label_tokens"])
                for d, v in self.embed_features(features, classes, dims).items():
                    out[d].append(v)
                bar.update(len(chunk))
        return {d: np.concatenate(v) for d, v in out.items()}


def _flickr8k(config: RunConfig, notes: list[str]) -> Any:
    folder = config.eval.flickr8k_dir
    if folder is None:
        return None
    if Path(folder).is_dir():
        return read_image_captions(folder, check_images=False)
    try:
        return hub_image_captions(*FLICKR8K_HUB, config.run_dir / "vision" / "eval-data")
    except (ValueError, OSError) as error:
        notes.append(f"Flickr8k retrieval skipped: no folder at '{folder}' and the hub copy failed ({error})")
        return None


def _imagenette(config: RunConfig, notes: list[str]) -> tuple[list[Path], list[int], list[str]] | None:
    folder = config.eval.imagenette_dir
    if folder is None:
        return None
    if Path(folder).is_dir():
        return imagenette_folder(folder)
    try:
        return imagenette_folder(_hub_imagenette(config.run_dir / "vision" / "eval-data" / "imagenette"))
    except (ValueError, OSError) as error:
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
    tmp = folder.with_name(folder.name + ".tmp")
    for i, row in enumerate(rows):
        target = tmp / names[row["label"]] / f"{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        row["image"].convert("RGB").save(target, quality=95)
    tmp.replace(folder)
    return folder


def vision_scores(config: RunConfig, student: Any) -> tuple[list[Score], list[str]]:
    """(scores, notes) of the run's image side at every head; nothing when the run has no vision stage."""
    image_dir = config.run_dir / IMAGE_DIR
    notes: list[str] = []
    if not config.has_vision_stage:
        return [], notes
    if not (image_dir / "tower.json").is_file():
        return [], [f"image evaluation skipped: no trained image side in '{image_dir}'"]
    flickr, nette = _flickr8k(config, notes), _imagenette(config, notes)
    if flickr is None and nette is None:
        return [], notes
    embedder = ImageEmbedder.load(image_dir, student)
    tower = embedder.tower
    dims = list(student.head_dims)
    cache = config.run_dir / "vision" / "features"

    def features(name: str, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        found = image_features(cache, name, embedder.encoder, paths, tower["tokens"], tower["label_tokens"])
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
