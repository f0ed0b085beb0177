"""The query picture as a signal for linking: the image scorer's gated score of every KB entity, plus the
picture memory's share (labelled pictures people added that look alike). One per linker variant; the caches
of picture facts and remembered pictures are the loaded linker's, shared by its variants."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from gemel.config import ImageConfig
from gemel.errors import GemelError
from gemel.image.gates import PictureFacts, PictureFactsCache, gated_image_scores
from gemel.image.memory import PictureMemory, Remembered
from gemel.image.scorer import ImageEntityScorer
from gemel.images import ImageInput, image_key
from gemel.rank.features import PictureEvidence
from gemel.types import Example


class ImageSignal:
    """Image scores of query pictures against the KB, by one scorer under one ``[image]`` config."""

    def __init__(self, scorer: ImageEntityScorer | None, config: ImageConfig, features: Any, kb: Any,
                 facts: PictureFactsCache, remembered: dict[tuple, Remembered | None]) -> None:
        self.scorer = scorer  # None: no image signal
        self.config = config
        self.features = features  # ``get(image) -> (D,) tensor``: the vision features the prefixes use
        self.kb = kb
        self.facts = facts  # flatness and colour layout of recent pictures (shared)
        self.remembered = remembered  # picture memory entries by (example, picture, min_flatness) (shared)
        self.memory = PictureMemory(scorer.exemplars if scorer is not None else None)  # drawings (the rule's)
        self.every_picture = PictureMemory(scorer.exemplars if scorer is not None else None)  # photos too

    def evidence(self, image: ImageInput, mention: str, labelled: Iterable[Example]
                 ) -> tuple[PictureEvidence | None, dict[str, float]]:
        """What the picture says for the ranker, whatever its style: the scorer's score of every KB entity with
        the picture's flatness (None without a scorer, a picture or its feature), and {entity: similarity of the
        nearest picture people labelled as it} over every labelled picture, photos included."""
        if self.scorer is None or image is None or self.features is None:
            return None, {}
        feature = self.features.get(image)
        if feature is None:
            return None, {}
        facts = self.facts.get(self.scorer, image)
        scored = self.scorer.score(feature, self.scorer.kb_vectors, self.scorer.kb_titles, layout=facts.layout)
        known = frozenset(self.scorer.exemplars.titles) if self.scorer.exemplars is not None else frozenset()
        self.every_picture.sync((e for e in labelled if e.source != "seed"), lambda e: self._remember(e, 0.0))
        memory = self.every_picture.nearest(feature.numpy(), facts.layout, image_key(image), mention)
        return PictureEvidence(scored.fused, facts.flatness, known, scored.probabilities), memory

    def scores(self, image: ImageInput, mention: str | None, labelled: Iterable[Example]
               ) -> tuple[np.ndarray | None, str]:
        """(N_kb,) image scores of the picture and "on", or None and the note saying why there are none (""
        without a scorer or a picture). ``labelled``: the linker's live labelled examples (the memory's
        pictures are those people added, not the seed pool's)."""
        if self.scorer is None or image is None or self.features is None:
            return None, ""
        feature = self.features.get(image)
        if feature is None:
            return None, "off: the picture has no vision feature"
        c = self.config
        facts = self.facts.get(self.scorer, image)
        scores, note = gated_image_scores(self.scorer, feature, image, c.min_confidence, c.min_flatness, facts)
        if scores is None or c.memory_weight == 0:
            return scores, note
        return self._remembering(scores, feature, facts, image, mention, labelled)

    def _remembering(self, scores: np.ndarray, feature: torch.Tensor, facts: Any, image: ImageInput,
                     mention: str | None, labelled: Iterable[Example]) -> tuple[np.ndarray, str]:
        """The image scores plus the picture memory's share (:mod:`gemel.image.memory`): the labelled pictures
        people added (corrections, imported labels; not the shipped seed pool), drawings only."""
        c = self.config
        self.memory.sync((e for e in labelled if e.source != "seed"), lambda e: self._remember(e, c.min_flatness))
        found = self.memory.scores(feature.numpy(), facts.layout, image_key(image), mention or "",
                                    c.memory_min_similarity, c.memory_lead)
        if not found:
            return scores, "on"
        scores = np.array(scores, dtype=np.float32)
        for entity, similarity in found.items():
            scores[self.kb.index(entity)] += c.memory_weight * similarity
        return scores, "on: " + ", ".join(f"a labelled picture of {e!r} looks alike ({s:.2f})"
                                          for e, s in found.items())

    def _remember(self, example: Example, min_flatness: float) -> Remembered | None:
        """The picture memory's entry for one labelled example, or None: less flat than ``min_flatness``,
        unreadable, not in the KB (computed once per example and picture, shared by the linker's variants)."""
        try:
            picture = image_key(example.image)
        except GemelError:
            return None
        key = (example.id, picture, min_flatness)
        if key not in self.remembered:
            self.remembered[key] = self._remembered(example, picture, min_flatness)
        return self.remembered[key]

    def _remembered(self, example: Example, picture: str | None, min_flatness: float) -> Remembered | None:
        if picture is None or example.entity not in self.kb or self.features is None:
            return None
        facts = PictureFacts.of(self.scorer, example.image)
        feature = self.features.get(example.image)
        if feature is None or facts.flatness < min_flatness:
            return None
        unit = torch.nn.functional.normalize(feature.float(), dim=0).numpy()
        return Remembered(example.id or picture, example.entity, picture, example.mention, unit, facts.layout)
