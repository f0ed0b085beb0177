"""Build the reference pictures (:mod:`gemel.image.reference`) from an image corpus' training pictures: a fixed
random sample of every art style, with the vision encoder's pooled features and the scorer's colour layouts."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from gemel.image.configs import ExemplarConfig
from gemel.image.reference import PictureReference, descriptor_identity, encoder_identity
from gemel.images import image_key
from gemel.training.corpus import Corpus, CorpusError
from gemel.training.image_scorer import corpus_features, corpus_layouts

DEFAULT_SIZE = 512  # pictures kept: more raise the level a labelled picture must beat (the nearest of more)


def build_reference(corpus: Corpus, encoder: Any, exemplar: ExemplarConfig = ExemplarConfig(),
                    size: int = DEFAULT_SIZE, seed: int = 0, progress: bool = True) -> PictureReference:
    """``size`` training pictures of ``corpus`` drawn at random (``seed``), one per picture file."""
    if size < 2:
        raise CorpusError(f"a reference of {size} picture(s) cannot tell near from far: give --size 2 or more "
                          f"(default {DEFAULT_SIZE})")
    seen, items = set(), []
    for it in corpus.split("train"):
        if it.image not in seen:
            seen.add(it.image)
            items.append(it)
    if len(items) < 2:
        raise CorpusError(f"{corpus.folder} has {len(items)} training picture(s): build the corpus first "
                          "(`gemel corpus build`)")
    items = sorted(random.Random(seed).sample(items, min(size, len(items))), key=lambda it: it.id)
    feats = corpus_features(corpus, encoder, items, progress=progress).numpy().astype(np.float32)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    layouts = corpus_layouts(corpus, items, exemplar).astype(np.float32)
    manifest = {"corpus": corpus.manifest_sha256, "split": "train", "size": len(items), "seed": seed,
                "styles": sorted({it.style for it in items})}
    return PictureReference(feats, layouts, tuple(it.entity for it in items),
                            tuple(image_key(str(corpus.path(it))) for it in items), encoder_identity(encoder.config),
                            descriptor_identity(exemplar), manifest)
