"""Image-caption pairs for the vision stage: a Hugging Face `imagefolder` folder (`metadata.jsonl` with
`file_name` and `captions` or `caption`) or a JSONL file of `{image, caption}` rows (image paths relative to it).

Every problem is an error naming the file and the row: a missing or unreadable image, an empty caption, a row
without the fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jasper.data.corpus import read_records
from jasper.errors import JasperError
from jasper.io import folder_swap

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


class ImageDataError(JasperError):
    """Image-caption data that cannot be used as it is."""


@dataclass(frozen=True)
class ImageCaptions:
    """Images (paths) and their captions: `captions[i]` are image i's, one or more."""

    images: list[Path]
    captions: list[list[str]]

    def pairs(self) -> list[tuple[int, str]]:
        """(image index, caption) for every caption, in order."""
        return [(i, caption) for i, texts in enumerate(self.captions) for caption in texts]


def read_image_captions(path: str | Path, check_images: bool = True) -> ImageCaptions:
    """Read an imagefolder folder or a `{image, caption}` JSONL file; `check_images` opens every image once."""
    path = Path(path)
    if path.is_dir():
        metadata = path / "metadata.jsonl"
        if not metadata.is_file():
            raise ImageDataError(f"image folder '{path}' has no metadata.jsonl (the Hugging Face imagefolder layout)")
        rows = _rows(metadata, ("file_name",))
        base = path
    elif path.is_file():
        rows = _rows(path, ("image",))
        base = path.parent
    else:
        raise ImageDataError(f"image-caption data '{path}' does not exist")
    images: list[Path] = []
    captions: list[list[str]] = []
    index: dict[Path, int] = {}
    for number, row in rows:
        image = base / str(row.get("file_name") or row.get("image"))
        texts = row.get("captions", row.get("caption"))
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts:
            raise ImageDataError(f"'{path}' row {number}: no caption (expected 'captions': [...] or 'caption')")
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ImageDataError(f"'{path}' row {number}: an empty caption for '{image.name}'")
        if image not in index:  # a JSONL of pairs names an image once per caption
            index[image] = len(images)
            images.append(image)
            captions.append([])
        captions[index[image]].extend(t.strip() for t in texts)
    if not images:
        raise ImageDataError(f"'{path}' holds no image-caption rows")
    if check_images:
        for image in images:
            check_image(image)
    return ImageCaptions(images, captions)


MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own guard against decompression bombs (about 9,459 x 9,459)


def set_max_image_pixels(pixels: int | None) -> None:
    """The largest image (in pixels) jasper opens; None lifts the guard (for trusted images only)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = pixels


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn PIL's failures on `path` into one error naming it: missing, too large, or not a readable image."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ImageDataError(f"image '{path}' does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # past the limit: an error, not a warning
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDataError(
            f"image '{path}' has more pixels than the limit of {Image.MAX_IMAGE_PIXELS:,} (a guard against "
            "decompression bombs): if it is a real image, raise vision.max_image_pixels (jasper encode: "
            "--max-image-pixels)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageDataError(f"image '{path}' cannot be read ({type(error).__name__}: {error})") from None


def check_image(path: Path) -> None:
    """An error naming `path` if it is missing, too large or not a readable image."""
    from PIL import Image

    with _reading(path), Image.open(path) as image:
        image.verify()


def to_rgb(image: Any) -> Any:
    """8-bit RGB whatever the file holds: 16- and 32-bit greyscale scaled (not clipped to white), transparency
    laid on white, palette, CMYK and greyscale converted."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_images(paths: list[Path]) -> list[Any]:
    """PIL images, 8-bit RGB (`to_rgb`); an error naming the file for a missing, too large or unreadable one."""
    from PIL import Image

    images = []
    for path in paths:
        with _reading(path), Image.open(path) as image:
            images.append(to_rgb(image))
    return images


def _rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    rows = []
    for number, row in read_records(path, "image-caption file", ImageDataError):
        missing = [key for key in required if not row.get(key)]
        if missing:
            raise ImageDataError(f"'{path}' line {number} has no '{missing[0]}'")
        rows.append((number, row))
    return rows


def hub_image_captions(name: str, split: str, folder: Path) -> ImageCaptions:
    """A Hugging Face dataset of images and captions (columns `image` and `caption`/`captions`/`caption_0..`),
    copied once into `folder` in the imagefolder layout and read from there."""
    folder = Path(folder) / name.replace("/", "__") / split
    if (folder / "metadata.jsonl").is_file():
        return read_image_captions(folder, check_images=False)
    from jasper.hub import require

    require(name, "image-caption dataset", "dataset")  # one clear line offline
    import datasets

    rows = datasets.load_dataset(name, split=split)
    with folder_swap(folder) as staging:
        lines = []
        for i, row in enumerate(rows):
            texts = (
                row.get("captions")
                or row.get("caption")
                or [v for k, v in sorted(row.items()) if k.startswith("caption_")]
            )
            if "image" not in row or not texts:
                raise ImageDataError(f"hub dataset '{name}' row {i} has no 'image' and caption columns")
            file_name = f"{i:07d}.jpg"
            row["image"].convert("RGB").save(staging / file_name, quality=95)
            lines.append(json.dumps({"file_name": file_name, "captions": [texts] if isinstance(texts, str) else texts}))
        (staging / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return read_image_captions(folder, check_images=False)


def imagenette_folder(path: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """(images, label indices, class names) of a folder of `<class name>/<image>` files (the imagefolder layout
    with labels in folder names), classes sorted by name."""
    path = Path(path)
    files = sorted(f for f in path.glob("*/*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageDataError(f"'{path}' holds no <class>/<image> files")
    names = sorted({f.parent.name for f in files})
    return files, [names.index(f.parent.name) for f in files], names
