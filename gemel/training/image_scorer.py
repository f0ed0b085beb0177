"""Training the image scorer on the corpus: parts of a profile, cached corpus features, train + fit + save.

One place for what ``gemel corpus train-projection`` and ``bench/image_score.py`` both need:
:func:`load_parts` (the vision encoder, text embedder, KB and its "title: description" vectors of a profile,
without the LLM), :func:`corpus_features` (pooled features of every corpus picture, cached beside the
corpus), :func:`train_scorer` (projection on the train split, fusion weights on the dev split).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from gemel.image.configs import ExemplarConfig, FusionConfig, ScorerSpec
from gemel.image.exemplars import ColourExemplars, colour_layout
from gemel.image.scorer import ImageEntityScorer
from gemel.images import load_image
from gemel.kb.entities import KnowledgeBase
from gemel.training.corpus import Corpus, CorpusItem
from gemel.training.fusion import fit_fusion
from gemel.training.projection import ProjectionConfig, train_projection

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """The profile's components the image score needs (no LLM)."""

    encoder: object  # VisionEncoder
    embedder: object  # TextEmbedder
    kb: KnowledgeBase
    kb_vectors: np.ndarray  # (N, D) "title: description" embeddings, KB order

    def vectors(self, titles: Sequence[str]) -> np.ndarray:
        return self.kb_vectors[[self.kb.index(t) for t in titles]]


def load_parts(profile: str = "offline") -> Parts:
    from gemel.config import load_profile
    from gemel.models.embedder import TextEmbedder
    from gemel.models.vision import VisionEncoder
    from gemel.sources import resolve

    config = load_profile(profile)
    if config.vision.kind == "none":
        raise ValueError(f"profile {profile!r} has no vision encoder: the image score needs one")
    encoder = VisionEncoder.load(config.vision, config.base_dir)
    embedder = TextEmbedder.load(config.embedder, config.base_dir)
    kb_path = resolve(config.kb.source, config.base_dir)
    if kb_path is None:
        raise ValueError(f"kb.source {config.kb.source!r} must be a local file or folder")
    kb = KnowledgeBase.load(kb_path, name=config.kb.name)
    vectors = embedder.encode_cached([e.index_text() for e in kb], f"{config.kb.name}-entries")
    return Parts(encoder, embedder, kb, vectors)


def corpus_features(corpus: Corpus, encoder, items: Sequence[CorpusItem] | None = None,
                    batch: int = 32, progress: bool = True) -> torch.Tensor:
    """(len(items), D) pooled features of corpus pictures; all of them cached in the corpus folder at once."""
    from tqdm.auto import tqdm

    weights = hashlib.sha1(encoder.config.weights.encode()).hexdigest()[:8]
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{encoder.config.name}-{weights}")
    images = hashlib.sha256("\n".join(it.image for it in corpus.items).encode()).hexdigest()[:12]
    path = corpus.folder / f"features-{tag}-{images}.npy"  # keyed by the pictures, not by their labels
    if path.exists():
        feats = np.load(path)
    else:
        rows = []
        for start in tqdm(range(0, len(corpus.items), batch), desc="corpus features", disable=not progress):
            images = [load_image(corpus.path(it)) for it in corpus.items[start:start + batch]]
            rows.append(encoder.encode(images).numpy())
        feats = np.concatenate(rows) if rows else np.zeros((0, encoder.dim), np.float32)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, feats.astype(np.float32))
        tmp.replace(path)
    if items is None:
        return torch.from_numpy(feats)
    index = {it.id: i for i, it in enumerate(corpus.items)}
    return torch.from_numpy(feats[[index[it.id] for it in items]])


def corpus_layouts(corpus: Corpus, items: Sequence[CorpusItem], config: ExemplarConfig = ExemplarConfig()) -> np.ndarray:
    """(len(items), G) colour layouts of corpus pictures (cheap: computed, not cached)."""
    return np.stack([colour_layout(corpus.path(it), config) for it in items]) if items else np.zeros((0, 0))


def train_scorer(corpus: Corpus, parts: Parts, projection: ProjectionConfig = ProjectionConfig(),
                 fusion: FusionConfig = FusionConfig(),
                 exemplar: ExemplarConfig = ExemplarConfig(), fit: bool = True,
                 progress: bool = True) -> ImageEntityScorer:
    """Projection trained and exemplars taken from the train split; fusion weights fitted on the dev split
    (top-1 over the whole KB), without the pictures of a style held out by :meth:`Corpus.holding_out_style`
    (they stay unseen, as the test split's style is)."""
    train = corpus.split("train")
    if not train:
        raise ValueError(f"corpus {corpus.folder} has no train items: build it with more sources")
    entities = sorted({it.entity for it in train})
    label = {t: i for i, t in enumerate(entities)}
    feats = corpus_features(corpus, parts.encoder, train, progress=progress)
    result = train_projection(feats, torch.from_numpy(parts.vectors(entities)),
                              torch.tensor([label[it.entity] for it in train]), projection)
    log.info("projection trained on %d pictures of %d entities in %.0f s (loss %.3f -> %.3f)", len(train),
             len(entities), result.seconds, result.losses[0], result.losses[-1])
    spec = ScorerSpec(vision=parts.encoder.config.name, vision_dim=parts.encoder.dim,
                      embedder=parts.embedder.name, embed_dim=parts.embedder.dim,
                      corpus_manifest=corpus.manifest_sha256)
    exemplars = ColourExemplars.build(corpus_layouts(corpus, train, exemplar), [it.entity for it in train], exemplar)
    scorer = ImageEntityScorer(spec, parts.encoder, result.projection, fusion, parts.kb_vectors, parts.kb.titles,
                               exemplars)
    dev = [it for it in corpus.split("dev") if it.heldout != "style"]
    if fit and dev:
        dev_feats = corpus_features(corpus, parts.encoder, dev, progress=progress)
        gold = [parts.kb.index(it.entity) for it in dev]
        fitted = fit_fusion(scorer, dev_feats, gold, parts.kb_vectors, parts.kb.titles,
                            corpus_layouts(corpus, dev, exemplar), strata=[it.heldout for it in dev])
        scorer = scorer.replace(fusion=fitted)
    return scorer


def default_artifact(corpus: Corpus, held_out_style: str | None = None) -> Path:
    return corpus.folder / (f"image_scorer-without-{held_out_style}.pt" if held_out_style else "image_scorer.pt")


def profile_artifact(profile: str) -> Path | None:
    """The profile's ``[image]`` scorer artifact (the one linking uses), or None when it has none or scores pictures
    with CLIP (``image.scorer = "clip"``: a keyword, no artifact to load or retrain)."""
    from gemel.config import CLIP_SCORER, load_profile
    from gemel.sources import resolve

    config = load_profile(profile)
    if not config.image.scorer or config.image.scorer == CLIP_SCORER:
        return None
    return Path(resolve(config.image.scorer, config.base_dir))
