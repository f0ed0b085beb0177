"""The picture as a linking signal: the image scorer's similarity of the query picture to every KB entity.

GEMEL's own use of the picture is the visual prefix in the prompt; with the offline default's untrained mapper
that prefix carries little. The image scorer (:mod:`gemel.image.scorer`, trained on the offline corpus) says
directly how well a picture fits each entity. The linker uses it twice (``[image]`` in a profile):

- **candidates**: the picture's top ``image.candidates`` KB entities join the text's top ``decode.candidates``
  (a data set's own candidates stay as given);
- **fusion**: ``score += image.weight * image_score[entity]``, where ``image_score`` is the scorer's fused
  similarity z-scored over the whole KB (so it does not depend on which candidates were retrieved).

Gates: the image adds nothing, and linking is exactly text + prefix as without a scorer, when the query has
no picture, the scorer abstains (its confidence is below its ``abstain_below``) or is less sure than
``image.min_confidence``, the picture is a photo (less flat than ``image.min_flatness``,
:mod:`gemel.image.style`; the scorer is trained on drawings), or the text has already decided (its best two
candidates are ``image.max_text_margin`` or more apart, :func:`text_leaves_open`; or, with
``image.trust_exact_name``, the mention is exactly the name of one candidate, :func:`names_exactly`).

Senses of one name (``image.choose_sense``): when the mention names several candidates, exactly ("Nut":
``Nut (fruit)``, ``Nut (hardware)``) or as the last words of a longer title ("Mouse": ``Mouse``, ``Computer
mouse``; :func:`names_sense`), the picture chooses among those senses whatever the text's margin, and only they
get the image score (:func:`image_mask`). The LLM's preference between senses of one name is mostly
how common each sense is, not what the caption says: "We saw Nut on the way home." prefers the fruit by ~10
nats, and the margin gate would keep the picture of a hex nut from deciding.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gemel.config import ImageConfig, LinkerConfig, ProfileError
from gemel.errors import GemelError
from gemel.image.configs import ImageScoreError
from gemel.image.scorer import ImageEntityScorer
from gemel.image.style import flatness
from gemel.images import ImageInput, image_key, load_image
from gemel.sources import resolve
from gemel.text import NOT_A_MODIFIER, name_key, without_qualifier

log = logging.getLogger(__name__)

__all__ = ["load_scorer", "gated_image_scores", "PictureFacts", "PictureFactsCache", "confidence", "top_rows",
           "merge_candidates",
           "text_leaves_open", "names_exactly", "names_as_head", "names_sense", "image_may_decide", "image_mask"]


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
    """What the image gates and the exemplars read from one picture's pixels."""

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
    of one upload, or re-linking it, decodes the picture once for the gates instead of once per link (a 24 MP
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


def gated_image_scores(scorer: ImageEntityScorer, feature: Any, image: ImageInput = None,
                       min_confidence: float = 0.0, min_flatness: float = 0.0,
                       facts: PictureFacts | None = None) -> tuple[np.ndarray | None, str]:
    """(N_kb,) fused image scores of the picture against every KB entity and "on", or None and a short note
    saying why the image adds nothing ("off: ..."): the scorer abstains, its confidence (max probability over
    the KB) is below ``min_confidence``, or the picture's flatness is below ``min_flatness``
    (``image.min_flatness``: a photo, where the scorer, trained on drawings, is mostly wrong; a picture that
    cannot be read counts as flatness 0).

    ``feature`` is the picture's pooled vision feature (the one the visual prefix is made from, computed once);
    ``image`` the picture itself, for the colour-layout exemplars and the flatness, unless ``facts`` (from a
    :class:`PictureFactsCache`) already hold them."""
    if facts is None:
        needed = image is not None and (scorer.exemplars is not None or min_flatness > 0)
        facts = PictureFacts.of(scorer, image) if needed else PictureFacts(0.0, None)
    if min_flatness > 0 and facts.flatness < min_flatness:
        return None, "off: a photo, and the picture scorer is trusted on drawings only"
    scores = scorer.score(feature, scorer.kb_vectors, scorer.kb_titles, layout=facts.layout)
    if scores.abstain or scores.confidence < min_confidence:
        return None, f"off: the picture scorer is unsure what this shows ({100 * scores.confidence:.0f}% sure)"
    return scores.fused, "on"


def _readable(image: ImageInput) -> Any:
    """The picture, or None when it cannot be read (a feature store may key pictures the linker cannot open)."""
    try:
        return load_image(image)
    except GemelError as e:
        log.debug("the query picture cannot be read for the image score: %s", e)
        return None


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


def text_leaves_open(text_scores: Sequence[float], max_margin: float) -> bool:
    """Whether the text leaves the choice open: its best two fused text scores (``w_llm * llm + w_ret * sim``)
    of the candidates are less than ``max_margin`` (``image.max_text_margin``) apart. Only then does the image
    weigh in: where the mention names its entity the text has decided, and a picture the scorer misreads must
    not overrule it; where the caption leaves the sense open (``Nut``, ``the country``) the picture decides."""
    if math.isinf(max_margin) or len(text_scores) < 2:
        return True
    best, second = heapq.nlargest(2, text_scores)
    return best - second < max_margin


def names_exactly(mention: str, title: str) -> bool:
    """Whether the mention is the title, or the title without its "(...)" qualifier, up to case and spaces
    ("Japan" names ``Japan``; "Nut" names both ``Nut (fruit)`` and ``Nut (hardware)``; "the country" names no
    title: articles are kept, so a description is not taken for a name)."""
    m, t = name_key(mention), name_key(title)
    return bool(m) and (m == t or m == without_qualifier(t))


def names_as_head(mention: str, title: str) -> bool:
    """Whether the title is a compound ending in the mention, its "(...)" qualifier dropped, up to case and
    spaces: English compounds name their kind last, so "mouse" names ``Computer mouse`` (and ``Mickey Mouse``),
    "hockey" ``Ice hockey``, "nut" ``Brazil nut``, "Jordan" ``Michael Jordan``. A phrase about the mention is no
    compound: "Japan" does not name ``Empire of Japan``, nor "Congo" ``Republic of the Congo``, nor "France"
    ``Tour de France`` (:data:`NOT_A_MODIFIER`); and "war" does not name ``World War II``, nor "Congo"
    ``Congo River``."""
    m = name_key(mention).split()
    t = without_qualifier(name_key(title)).split()
    return 0 < len(m) < len(t) and t[-len(m):] == m and t[-len(m) - 1] not in NOT_A_MODIFIER


def names_sense(mention: str, title: str) -> bool:
    """Whether the title is one of the senses the mention names: exactly (:func:`names_exactly`) or as its last
    words (:func:`names_as_head`)."""
    return names_exactly(mention, title) or names_as_head(mention, title)


def image_may_decide(text_scores: Sequence[float], titles: Sequence[str], mention: str | None,
                     config: ImageConfig) -> bool:
    """Whether the image score may weigh in over these candidates: the text leaves the choice open
    (:func:`text_leaves_open`), and, with ``image.trust_exact_name``, the mention is not exactly the name of
    one single candidate (then the text has named its entity; several candidates sharing the name stay open)."""
    if not text_leaves_open(text_scores, config.max_text_margin):
        return False
    if config.trust_exact_name and mention is not None:
        return sum(names_exactly(mention, t) for t in titles) != 1
    return True


def image_mask(text_scores: Sequence[float], titles: Sequence[str], mention: str | None,
               config: ImageConfig) -> list[bool] | None:
    """Which candidates get the image score: with ``image.choose_sense``, the senses of the mention when it
    names two or more candidates (:func:`names_sense`; the picture picks the sense, whatever the text's margin);
    otherwise all of them when :func:`image_may_decide`, else None (the text has decided)."""
    if config.choose_sense and mention is not None:
        senses = [names_sense(mention, t) for t in titles]
        if sum(senses) >= 2:
            return senses
    return [True] * len(titles) if image_may_decide(text_scores, titles, mention, config) else None
