"""Photos as they come: 16-bit, palette, transparency, CMYK and greyscale decode to the right RGB, and an image past
the pixel limit is one clear error naming the file and the limit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jasper.data.images import ImageDataError, check_image, load_images, set_max_image_pixels


def _save(image: Image.Image, path, **kwargs) -> object:
    image.save(path, **kwargs)
    return path


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "grey16.png")
    assert Image.open(path).mode.startswith("I")
    (rgb,) = load_images([path])
    pixels = np.asarray(rgb)
    assert rgb.mode == "RGB" and pixels.min() == 0 and pixels.max() == 255
    assert abs(float(pixels.mean()) - 127.5) < 2  # a ramp stays a ramp (Pillow's plain convert: ~99% white)


def test_palette_alpha_cmyk_and_greyscale(tmp_path):
    red = Image.new("RGB", (8, 8), (204, 51, 51))  # a colour of the web palette, so "P" keeps it exactly
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black: white where it is laid
    cases = {
        "palette.png": (red.convert("P"), (204, 51, 51)),
        "alpha.png": (clear, (255, 255, 255)),
        "cmyk.jpg": (red.convert("CMYK"), (204, 51, 51)),
        "grey.png": (red.convert("L"), (97, 97, 97)),
    }
    paths = [_save(image, tmp_path / name) for name, (image, _) in cases.items()]
    for (name, (_, colour)), image in zip(cases.items(), load_images(paths), strict=True):
        found = np.asarray(image)[4, 4].astype(int)
        assert image.mode == "RGB" and np.abs(found - colour).max() <= 3, (name, found)


def test_transparent_palette_is_laid_on_white(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 0
    (rgb,) = load_images([_save(image, tmp_path / "p.png", transparency=0)])
    assert np.asarray(rgb)[0, 0].tolist() == [255, 255, 255]


def test_an_image_past_the_pixel_limit_is_one_clear_error(tmp_path):
    path = _save(Image.new("RGB", (200, 200)), tmp_path / "big.png")
    set_max_image_pixels(10_000)
    try:
        for read in (check_image, lambda p: load_images([p])):
            with pytest.raises(ImageDataError, match=r"big\.png' has more pixels than the limit of 10,000"):
                read(path)
    finally:
        set_max_image_pixels(89_478_485)
    assert load_images([path])[0].size == (200, 200)
