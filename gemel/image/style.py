"""Is the picture a drawing (emoji, flag, logo, clip art) or a photo? Its *flatness* says.

The image scorer (:mod:`gemel.image.scorer`) is trained on drawings: its similarities are informative there and
mostly wrong on real photos, while its own confidence (a softmax over 10k entities) is low on both, so it cannot
tell the two apart. Drawings are made of flat colour regions; photos, even smooth ones, have sensor noise and
shading. Flatness is the share of neighbouring pixel pairs (right and below) with exactly the same colour, on a
thumbnail of at most 128 px taken with nearest-neighbour sampling (so no new colours are blended in), after the
transparency is composited on white as everywhere else (:func:`gemel.images.to_rgb`).

Measured on this machine: corpus emoji/flags/logos 0.63–0.97 (OpenClipart: median 0.83, 5% under 0.51); the
shipped real photos 0.00–0.23 for 35 of 40; the others are a logo (0.88), playing cards (0.63), sweets on a
white table (0.56), sheet music (0.52) and a cartoon fish (0.36). The ranker reads the image score times the
flatness and times one minus it (``image_drawing``, ``image_photo``: :mod:`gemel.rank.features`), so it learns how
far to trust the scorer on each kind of picture. A JPEG-compressed drawing loses its exact flat regions and reads
as a photo.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from gemel.images import to_rgb

THUMBNAIL = 128


def flatness(image: Image.Image, size: int = THUMBNAIL) -> float:
    """Share (0..1) of horizontally and vertically neighbouring pixel pairs with identical RGB colour, on a
    nearest-neighbour thumbnail of at most ``size`` px (1.0 for a single-colour picture or a 1-pixel one)."""
    rgb = to_rgb(image)
    if max(rgb.size) > size:
        rgb = rgb.copy()
        rgb.thumbnail((size, size), Image.Resampling.NEAREST)
    a = np.asarray(rgb, dtype=np.int16)
    same = [np.all(a[:, 1:] == a[:, :-1], axis=-1), np.all(a[1:] == a[:-1], axis=-1)]
    pairs = sum(s.size for s in same)
    return 1.0 if pairs == 0 else float(sum(int(s.sum()) for s in same) / pairs)
