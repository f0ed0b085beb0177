"""Pictures people have labelled, remembered: a correction teaches the picture.

An annotator's decision on a picture says what that picture shows. Another picture of the same thing (the same
flag in another art style, the same logo re-drawn, another photo of the same species) is then recognised, also
for an entity the image scorer never trained on: the ranker's ``memory_lead`` and ``memory_excess`` features
(:mod:`gemel.rank.features`) are read from here, and the ranker learns from data how far to trust them.

- the **similarity** of two pictures is the cosine of their pooled vision features plus the colour-layout kernel
  of the scorer's exemplars (the same descriptor; the kernel at :data:`MEMORY_WIDTH`), so it lies in [-1, 2]
  and 2 is the same picture;
- what is remembered: the labelled examples the linker gives it (people's corrections and imported labels; it
  leaves out the shipped seed pool) whose picture can be read and whose entity is in the KB. A remembered picture
  answers for its own mention only: the same picture asked about another mention is another question (a
  correction for "the flag" must not answer "the country's capital").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from gemel.image.exemplars import ColourExemplars
from gemel.text import name_key
from gemel.types import Example

__all__ = ["Remembered", "PictureMemory", "picture_similarity", "memory_kernel", "MEMORY_WIDTH"]

# The memory's layout kernel reaches 0 at this share of the median distance between two training pictures
# (ExemplarConfig.width), whatever the scorer's own width (chosen for the rule the ranker replaced; the shipped
# ranker's memory features are made with it).
MEMORY_WIDTH = 0.5


@dataclass(frozen=True)
class Remembered:
    """One labelled picture: the example it came from, what it shows, and its descriptors."""

    key: str  # the labelled example's id
    entity: str
    picture: str  # content key of the picture (gemel.images.image_key)
    mention: str
    feature: np.ndarray  # (D,) unit pooled vision feature
    layout: np.ndarray | None  # (G,) colour layout (None: the scorer has no exemplars)


def memory_kernel(exemplars: ColourExemplars | None) -> ColourExemplars | None:
    """The scorer's exemplars with the kernel at :data:`MEMORY_WIDTH` (the same descriptors and descriptor)."""
    if exemplars is None:
        return None
    scale = exemplars.scale * MEMORY_WIDTH / exemplars.config.width
    config = replace(exemplars.config, width=MEMORY_WIDTH)
    return ColourExemplars(exemplars.descriptors, exemplars.titles, scale, config)


def picture_similarity(query: np.ndarray, features: np.ndarray, kernels: np.ndarray | None) -> np.ndarray:
    """(M,) similarity of a unit (D,) query feature to M unit features: cosine plus the layout kernel."""
    cos = features @ query if len(features) else np.zeros(0, np.float32)
    return cos + kernels if kernels is not None else cos


class PictureMemory:
    """The remembered pictures of a linker's labelled pool, kept in step with it (:meth:`sync`)."""

    def __init__(self, exemplars: ColourExemplars | None = None) -> None:
        self.exemplars = memory_kernel(exemplars)  # the scorer's layout descriptor, the memory's kernel scale
        self._items: dict[str, Remembered] = {}
        self._skipped: set[str] = set()  # ids whose picture is no drawing, unreadable, or no KB entity
        self._arrays: tuple | None = None

    def __len__(self) -> int:
        return len(self._items)

    def sync(self, examples: Iterable[Example], remember: Callable[[Example], Remembered | None]) -> None:
        """Remember the live ``examples`` not yet seen (``remember`` computes one entry, or None to skip it)
        and forget those no longer live (an undone correction is forgotten with its demonstration)."""
        live = {e.id: e for e in examples if e.image is not None and e.entity}
        gone = [k for k in self._items if k not in live]
        for k in gone:
            del self._items[k]
        self._skipped &= set(live)
        added = False
        for key, example in live.items():
            if key in self._items or key in self._skipped:
                continue
            entry = remember(example)
            if entry is None:
                self._skipped.add(key)
            else:
                self._items[key] = entry
                added = True
        if gone or added:
            self._arrays = None

    def add(self, entry: Remembered) -> None:
        self._items[entry.key] = entry
        self._arrays = None

    def nearest(self, feature: np.ndarray, layout: np.ndarray | None, picture: str | None, mention: str
                ) -> dict[str, float]:
        """{entity: similarity of its nearest remembered picture} for every remembered entity (a remembered copy
        of the query picture counts only for its own mention)."""
        if not self._items:
            return {}
        entries, sims = self._similarities(feature, layout, picture, mention)
        out: dict[str, float] = {}
        for e, s in zip(entries, sims):
            if np.isfinite(s) and s > out.get(e.entity, -np.inf):
                out[e.entity] = float(s)
        return out

    def _similarities(self, feature: np.ndarray, layout: np.ndarray | None, picture: str | None, mention: str
                      ) -> tuple[list[Remembered], np.ndarray]:
        entries, feats, layouts = self._stacked()
        q = np.asarray(feature, np.float32).reshape(-1)
        q = q / (np.linalg.norm(q) or 1.0)
        kernels = None
        if self.exemplars is not None and layouts is not None and layout is not None:
            kernels = ColourExemplars(layouts, [e.entity for e in entries], self.exemplars.scale,
                                      self.exemplars.config).kernels(np.asarray(layout)[None])[0]
        sims = picture_similarity(q, feats, kernels).astype(np.float64)
        key = name_key(mention)
        for i, e in enumerate(entries):
            if picture is not None and e.picture == picture and name_key(e.mention) != key:
                sims[i] = -np.inf  # the same picture, another mention: another question
        return entries, sims

    def _stacked(self) -> tuple[list[Remembered], np.ndarray, np.ndarray | None]:
        if self._arrays is None:
            entries = list(self._items.values())
            feats = np.stack([e.feature for e in entries]).astype(np.float32)
            with_layout = all(e.layout is not None for e in entries)
            layouts = np.stack([e.layout for e in entries]).astype(np.float32) if with_layout else None
            self._arrays = (entries, feats, layouts)
        return self._arrays
