"""People's stored decisions as evidence for a new query: for each candidate, the nearest decision that named
it (how alike its caption and its picture are to the query's), and the entities of the decisions whose
pictures are nearest the query's picture, which join the candidates.

A decision with the query's caption and another picture says nothing about which entity this picture shows:
it is not a demonstration (``demos.same_caption``), and here it counts only as the two similarities, whose
weight the ranker learns from data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gemel.errors import GemelError
from gemel.images import image_key
from gemel.text import name_key
from gemel.types import Example


def _unit(feature: torch.Tensor | None) -> np.ndarray | None:
    if feature is None:
        return None
    v = feature.float().numpy().reshape(-1)
    return v / (np.linalg.norm(v) or 1.0)


# the stored decisions (each an example and its caption vector) and each one's picture cosine with a query's
StoredDecisions = tuple[Sequence[tuple[Example, np.ndarray]], Sequence[float]]
SAME_PICTURE = 0.999  # cosine above which two pictures' files are compared (the same file has cosine 1)


def picture_similarities(decisions: Sequence[tuple[Example, np.ndarray]], features: Any, image: Any,
                         mention: str = "") -> list[float]:
    """Cosine of each decision's picture with the query's (vision features); 0 when either has none, and for a
    decision on this very picture about another mention: another question, which says nothing about this one (a
    photo's "Van Gogh" decided says nothing of which entity its "Post-Impressionism" is), as in the picture memory."""
    query = _unit(features.get(image)) if features is not None and image is not None else None
    out = []
    for ex, _ in decisions:
        other = _unit(features.get(ex.image)) if query is not None and ex.image else None
        cos = float(query @ other) if other is not None else 0.0
        if cos > SAME_PICTURE and name_key(ex.mention) != name_key(mention) and _key(ex.image) == _key(image):
            cos = 0.0  # hashed only when the features say it may be the same picture
        out.append(cos)
    return out


def _key(image: Any) -> str | None:
    try:
        return image_key(image)
    except GemelError:
        return None


def nearest_decisions(decisions: Sequence[tuple[Example, np.ndarray]], query: np.ndarray,
                      pictures: Sequence[float], titles: Sequence[str]) -> dict[str, tuple[float, float]]:
    """{title: (caption similarity, picture similarity)} of the nearest decision for each candidate title
    (nearest: the largest sum of the two)."""
    wanted = set(titles)
    best: dict[str, tuple[float, float]] = {}
    for (ex, vec), pic in zip(decisions, pictures):
        if ex.entity not in wanted:
            continue
        cap = float(np.asarray(vec, dtype=np.float32) @ np.asarray(query, dtype=np.float32).reshape(-1))
        if ex.entity not in best or cap + pic > sum(best[ex.entity]):
            best[ex.entity] = (cap, pic)
    return best


def nearest_picture_entities(decisions: Sequence[tuple[Example, np.ndarray]], pictures: Sequence[float],
                             k: int) -> list[str]:
    """The entities of the ``k`` decisions whose pictures are nearest the query's (those with a picture)."""
    ranked = sorted((p, i) for i, p in enumerate(pictures) if p != 0.0)[::-1]
    out: list[str] = []
    for _, i in ranked:
        entity = decisions[i][0].entity
        if entity and entity not in out:
            out.append(entity)
        if len(out) >= k:
            break
    return out
