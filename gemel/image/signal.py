"""The query picture as evidence for the ranker: the image scorer's score of every KB entity with the picture's
flatness, and the nearest picture people labelled as each entity (the picture memory). One per linker variant; the
caches of picture facts and remembered pictures are the loaded linker's, shared by its variants."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gemel.errors import GemelError
from gemel.image.classes import ClassNames
from gemel.image.facts import PictureFacts, PictureFactsCache
from gemel.image.memory import PictureMemory, Remembered
from gemel.image.reference import PictureReference
from gemel.image.scorer import ImageEntityScorer
from gemel.images import ImageInput, image_key
from gemel.rank.features import PictureEvidence
from gemel.types import Example


class ImageSignal:
    """What query pictures say about the KB's entities, by one image scorer."""

    def __init__(self, scorer: ImageEntityScorer | None, features: Any, kb: Any, facts: PictureFactsCache,
                 remembered: dict[tuple, Remembered | None], reference: PictureReference | None = None,
                 classes: ClassNames | None = None) -> None:
        self.scorer = scorer  # None: no image signal
        self.features = features  # ``get(image) -> (D,) tensor``: the vision features the prefixes use
        self.kb = kb  # a labelled picture of an entity outside it is not remembered
        self.facts = facts  # flatness and colour layout of recent pictures (shared)
        self.remembered = remembered  # picture memory entries by (example, picture) (shared)
        self.every_picture = PictureMemory(scorer.exemplars if scorer is not None else None)  # drawings and photos
        self.reference = reference  # labelled pictures that say how near is near (None: not for this encoder)
        self.classes = classes  # ImageNet class -> the KB rows it names (None: no class scores)

    def picture(self, image: ImageInput) -> PictureEvidence | None:
        """The scorer's score of every KB entity for the picture, whatever its style, with its flatness; None
        without a scorer, a picture or its vision feature."""
        feature = self._feature(image)
        if feature is None:
            return None
        facts = self.facts.get(self.scorer, image)
        scored = self.scorer.score(feature, self.scorer.kb_vectors, self.scorer.kb_titles, layout=facts.layout)
        known = frozenset(self.scorer.exemplars.titles) if self.scorer.exemplars is not None else frozenset()
        return PictureEvidence(scored.fused, facts.flatness, known, scored.probabilities, self._class_scores(feature))

    def _class_scores(self, feature: torch.Tensor) -> dict[int, float]:
        """{KB row: probability of the encoder's ImageNet classes naming it}; {} without a classifier."""
        encoder = getattr(self.scorer, "encoder", None)
        if self.classes is None or encoder is None or not getattr(encoder, "has_classifier", False):
            return {}
        return self.classes.scores(encoder.logits_from_features(feature.reshape(1, -1))[0])

    def evidence(self, image: ImageInput, mention: str, labelled: Iterable[Example],
                 picture: PictureEvidence | None = None) -> tuple[PictureEvidence | None, dict[str, float]]:
        """What the picture says for the ranker: :meth:`picture` (``picture``: this picture's, already scored),
        and {entity: similarity of the nearest picture people labelled as it} over every labelled picture, photos
        included."""
        feature = self._feature(image)
        if feature is None:
            return None, {}
        picture = picture if picture is not None else self.picture(image)
        facts = self.facts.get(self.scorer, image)
        self.every_picture.sync((e for e in labelled if e.source != "seed"), self._remember)
        memory = self.every_picture.nearest(feature.numpy(), facts.layout, image_key(image), mention)
        return picture, memory

    def levels(self, image: ImageInput, titles: Iterable[str]) -> dict[str, tuple[float, float]]:
        """{title: (memory similarity, cosine) of the picture's nearest reference picture of another entity}: the
        level a labelled picture of the title must beat (:mod:`gemel.image.reference`); empty without a
        reference, a scorer or a picture."""
        feature = self._feature(image)
        if feature is None or self.reference is None:
            return {}
        facts = self.facts.get(self.scorer, image)
        level = self.reference.level(feature.numpy(), facts.layout, image_key(image), self.every_picture.exemplars)
        return {t: level.of(t) for t in titles}

    def _feature(self, image: ImageInput) -> torch.Tensor | None:
        """The picture's vision feature, or None without a scorer, a picture or a feature source."""
        if self.scorer is None or image is None or self.features is None:
            return None
        return self.features.get(image)

    def _remember(self, example: Example) -> Remembered | None:
        """The picture memory's entry for one labelled example, or None: no readable picture, not in the KB (computed
        once per example and picture, shared by the linker's variants)."""
        try:
            picture = image_key(example.image)
        except GemelError:
            return None
        key = (example.id, picture)
        if key not in self.remembered:
            self.remembered[key] = self._remembered(example, picture)
        return self.remembered[key]

    def _remembered(self, example: Example, picture: str | None) -> Remembered | None:
        if picture is None or example.entity not in self.kb or self.features is None:
            return None
        facts = PictureFacts.of(self.scorer, example.image)
        feature = self.features.get(example.image)
        if feature is None:
            return None
        unit = torch.nn.functional.normalize(feature.float(), dim=0).numpy()
        return Remembered(example.id or picture, example.entity, picture, example.mention, unit, facts.layout)
