"""Fitting the image scorer's fusion weights (exemplars; projection 1) on the corpus dev split, by top-1 then
top-10 over the candidates."""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np
import torch

from gemel.image.configs import FusionConfig, ImageScoreError
from gemel.image.scorer import ImageEntityScorer

log = logging.getLogger(__name__)


def fit_fusion(scorer: ImageEntityScorer, features: torch.Tensor, gold: Sequence[int], entity_vectors: np.ndarray,
               titles: Sequence[str] | None = None, layouts: np.ndarray | None = None,
               exemplar_grid: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0),
               strata: Sequence[str] | None = None) -> FusionConfig:
    """Choose w_exemplar (w_projection = 1) by dev top-1 (then top-10) over the candidates.

    gold[i] indexes the entity_vectors row of picture i; ``titles`` and ``layouts`` (colour layouts of the dev
    pictures) let the exemplar weight be fitted too. ``strata`` (one label per picture,
    e.g. in-pool / out-of-pool) weighs each stratum alike, so the larger one does not decide alone."""
    gold_arr = np.asarray(gold)
    labels = np.asarray(strata if strata is not None else ["all"] * len(gold_arr))
    raw = scorer.raw_scores(features, scorer.check_entities(entity_vectors), titles, layouts)
    e_grid = exemplar_grid if "exemplar" in raw else (scorer.fusion.w_exemplar,)
    w_proj = 1.0 if "projection" in raw else 0.0
    best_key, best = (-1.0, -1.0), scorer.fusion
    for we in e_grid:
        try:
            fusion = dataclasses.replace(scorer.fusion, w_projection=w_proj, w_exemplar=we)
        except ImageScoreError:  # all weights zero
            continue
        fused = scorer.replace(fusion=fusion).fuse(raw)
        hits = [_topk_hits(fused[labels == s], gold_arr[labels == s]) for s in np.unique(labels)]
        key = (float(np.mean([h[0] for h in hits])), float(np.mean([h[1] for h in hits])))
        if key > best_key:
            best_key, best = key, fusion
    log.info("fusion fitted: w_projection=%.2f w_exemplar=%.2f (dev top-1 %.3f, top-10 %.3f)",
             best.w_projection, best.w_exemplar, *best_key)
    return best


def _topk_hits(fused: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    gold_scores = fused[np.arange(len(gold)), gold][:, None]
    rank = (fused >= gold_scores).sum(1) - 1  # 0 = top-1; ties count against the gold entity
    return float((rank < 1).mean()), float((rank < 10).mean())
