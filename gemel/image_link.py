"""The picture as a linking signal: the image scorer's similarity of the query picture to every KB entity.

GEMEL's own use of the picture is the visual prefix in the prompt; with the offline default's untrained mapper
that prefix carries little. The image scorer (:mod:`gemel.image_score`, trained on the offline corpus) says
directly how well a picture fits each entity. The linker uses it twice (``[image]`` in a profile):

- **candidates**: the picture's top ``image.candidates`` KB entities join the text's top ``decode.candidates``
  (a data set's own candidates stay as given);
- **fusion**: ``score += image.weight * image_score[entity]``, where ``image_score`` is the scorer's fused
  similarity z-scored over the whole KB (so it does not depend on which candidates were retrieved).

When the scorer abstains (its confidence is below its ``abstain_below``) or the query has no picture, the
image adds nothing and linking is exactly text + prefix, as without a scorer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import LinkerConfig, ProfileError
from .errors import GemelError
from .image_score import ImageEntityScorer, ImageScoreError
from .images import ImageInput, load_image
from .sources import resolve

log = logging.getLogger(__name__)

__all__ = ["load_scorer", "kb_image_scores", "confidence", "top_rows", "merge_candidates"]


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
                           "assets/models/image_scorer.pt, or image.scorer = \"\" to link without it")
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


def kb_image_scores(scorer: ImageEntityScorer, feature: Any, image: ImageInput = None,
                    min_confidence: float = 0.0) -> np.ndarray | None:
    """(N_kb,) fused image scores of the picture against every KB entity, or None when the scorer abstains or
    its confidence (max probability over the KB) is below ``min_confidence`` (``image.min_confidence``: on
    pictures unlike its training corpus, e.g. real photos, the scorer is unsure and mostly wrong).

    ``feature`` is the picture's pooled vision feature (the one the visual prefix is made from, computed once);
    ``image`` the picture itself, for the colour-layout exemplars (skipped when it cannot be read)."""
    layout = None
    if scorer.exemplars is not None and image is not None:
        try:
            layout = scorer.layout(load_image(image))
        except GemelError as e:  # a feature store may key pictures the linker cannot open itself
            log.debug("no colour layout for the query picture: %s", e)
    scores = scorer.score(feature, scorer.kb_vectors, scorer.kb_titles, layout=layout)
    return None if scores.abstain or scores.confidence < min_confidence else scores.fused


def confidence(scores: np.ndarray, temperature: float = 1.0) -> float:
    """The scorer's confidence from its (N_kb,) fused scores: the max of softmax(scores / temperature)."""
    z = (np.asarray(scores, dtype=np.float64) - float(np.max(scores))) / temperature
    return float(1.0 / np.exp(z).sum())


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
