"""Flatness tells drawings from photos, for any picture format (the ranker's image features weigh the image score
by it: gemel/rank/features.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gemel.image.style import flatness


def _drawing(size=(200, 120)) -> Image.Image:
    """A flag-like drawing: three flat stripes with a transparent margin."""
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    w, h = size
    for i, colour in enumerate(((200, 16, 46, 255), (255, 255, 255, 255), (0, 56, 168, 255))):
        im.paste(colour, (10, 10 + i * (h - 20) // 3, w - 10, 10 + (i + 1) * (h - 20) // 3))
    return im


def _photo(size=(200, 120), seed=0) -> Image.Image:
    """A smooth gradient with sensor-like noise (what photos are made of)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x / size[0] * 200, y / size[1] * 200, np.full(x.shape, 90.0)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))


def test_drawings_are_flat_and_photos_are_not():
    assert flatness(_drawing()) > 0.9
    assert flatness(_photo()) < 0.1
    assert flatness(Image.new("RGB", (1, 1))) == 1.0 and flatness(Image.new("RGB", (1, 5), "red")) == 1.0


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "I;16", "CMYK", "LA"])
def test_every_picture_format_gives_a_flatness(mode):
    image = _drawing().convert(mode) if mode != "I;16" else _drawing().convert("L").convert("I;16")
    assert flatness(image) > 0.9  # converted drawings stay flat (palette and 16-bit included)


def test_large_pictures_are_measured_on_a_thumbnail_and_nothing_is_changed():
    big = _photo((3000, 2000))
    before = np.asarray(big).copy()
    assert flatness(big) < 0.1 and big.size == (3000, 2000) and np.array_equal(np.asarray(big), before)
