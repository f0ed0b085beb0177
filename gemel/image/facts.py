"""The image scorer's side of a link: loading the profile's scorer, the facts one picture's pixels give it (its
flatness, its colour layout), and the picture's top entities joining the candidates.

The scorer (:mod:`gemel.image.scorer`, trained on the offline corpus) says how well a picture fits each KB entity;
the ranker (:mod:`gemel.rank.features`) weighs that score together with the picture's flatness (the scorer is
trained on drawings and mostly wrong on photos), and the picture's top ``image.candidates`` KB entities join the
text's top ``decode.candidates`` (a data set's own candidates stay as given).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gemel.config import LinkerConfig, ProfileError
from gemel.errors import GemelError
from gemel.image.configs import ImageScoreError
from gemel.image.scorer import ImageEntityScorer
from gemel.image.style import flatness
from gemel.images import ImageInput, image_key, load_image
from gemel.sources import resolve

log = logging.getLogger(__name__)

__all__ = ["load_scorer", "scorer_path", "PictureFacts", "PictureFactsCache", "top_rows", "merge_candidates"]


def scorer_path(config: LinkerConfig) -> Path:
    """The profile's ``image.scorer`` as an existing file, or a ProfileError saying how to fix it."""
    source = config.image.scorer
    try:
        path = resolve(source, config.base_dir)
    except GemelError:
        path = None
    if path is None or not path.is_file():
        raise ProfileError(f"image.scorer {source!r} is not a file (relative paths resolve against the profile's "
                           f"folder {config.base_dir or '.'!r}): give the path of an image scorer artifact, e.g. "
                           "gemel/assets/models/image_scorer.pt, or image.scorer = \"\" to link without it")
    return path


def load_scorer(config: LinkerConfig, vision: Any, embedder_name: str, kb_vectors: np.ndarray,
                kb_titles: Sequence[str]) -> ImageEntityScorer:
    """The profile's image scorer over this KB, checked against the loaded vision encoder and embedder."""
    if vision is None:
        raise ProfileError(f"image.scorer {config.image.scorer!r} needs a vision encoder, but vision.kind is "
                           "'none': choose a [vision] encoder (the offline tf_efficientnet_lite0) or set "
                           "image.scorer = \"\"")
    path = scorer_path(config)
    try:
        return ImageEntityScorer.load(path, vision, embedder_name, kb_vectors, kb_titles)
    except ImageScoreError as e:
        raise ImageScoreError(f"image.scorer {config.image.scorer!r} cannot be used with vision "
                              f"{config.vision.name!r}: {e}") from e


@dataclass(frozen=True)
class PictureFacts:
    """What the ranker's image features and the exemplars read from one picture's pixels."""

    flatness: float  # :func:`gemel.image.style.flatness`; 0.0 when the picture cannot be read
    layout: np.ndarray | None  # the scorer's colour layout; None without exemplars or a readable picture

    @classmethod
    def of(cls, scorer: ImageEntityScorer, image: ImageInput) -> "PictureFacts":
        picture = _readable(image) if image is not None else None
        if picture is None:
            return cls(0.0, None)
        return cls(flatness(picture), scorer.layout(picture) if scorer.exemplars is not None else None)


class PictureFactsCache:
    """The facts of the last ``size`` pictures, by content hash and exemplar descriptor: linking several mentions
    of one upload, or re-linking it, decodes the picture once instead of once per link (a 24 MP
    JPEG: 0.6 s to decode + 0.2 s for the flatness, measured on this machine)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._facts: OrderedDict[tuple[str, str], PictureFacts] = OrderedDict()

    def get(self, scorer: ImageEntityScorer, image: ImageInput) -> PictureFacts:
        """The picture's facts, computed on the first request for its content."""
        key = image_key(image)
        if key is None:
            return PictureFacts(0.0, None)
        k = (key, repr(scorer.exemplars.config) if scorer.exemplars is not None else "")
        if k in self._facts:
            self._facts.move_to_end(k)
        else:
            self._facts[k] = PictureFacts.of(scorer, image)
            if len(self._facts) > self.size:
                self._facts.popitem(last=False)
        return self._facts[k]


def _readable(image: ImageInput) -> Any:
    """The picture, or None when it cannot be read (a feature store may key pictures the linker cannot open)."""
    try:
        return load_image(image)
    except GemelError as e:
        log.debug("the query picture cannot be read for the image score: %s", e)
        return None


def top_rows(scores: np.ndarray, k: int) -> list[int]:
    """The k rows with the highest scores, best first (ties: lower row first)."""
    if k <= 0 or len(scores) == 0:
        return []
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in part[np.lexsort((part, -scores[part]))]]


def merge_candidates(text_rows: Sequence[int], image_rows: Sequence[int]) -> list[int]:
    """The text candidates in their order, then the image's that are not among them."""
    seen = set(text_rows)
    return list(text_rows) + [r for r in image_rows if r not in seen and not seen.add(r)]
