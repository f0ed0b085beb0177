"""The vision encoder's own ImageNet classes, read as KB entities by their names: what a photo shows, offline.

The offline image scorer is trained on drawings (emoji, flags, logos, clip art) and its score says little about a
photo. The frozen encoder under it, EfficientNet-Lite0, was trained on ImageNet's photos, and its classifier names
what a photo shows in ImageNet's 1,000 classes: ``hen``, ``king penguin``, ``violin``, ``bolete``. A class names
the KB entries that one of its lemmas names (up to case and a plural, as a mention names an entry:
``KnowledgeBase.rows_named``), and, when no lemma names any, those the last word of a several-word lemma names
(``king penguin`` -> ``Penguin``, ``acoustic guitar`` -> ``Guitar``). An entity's class score is the probability
the classifier gives the classes among its :data:`TOP_CLASSES` most probable that name it: the ranker's
``image_class`` feature, and the top entities by it join the candidates (``image.class_candidates``).

Encoders without an ImageNet classifier (open_clip towers) give no class score. The lemma lists are timm's
(``timm/data/_info``), in the order of its ImageNet-1k class index.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

TOP_CLASSES = 10  # the picture's most probable classes whose names count (the rest share little probability)


def class_lemmas() -> list[tuple[str, ...]]:
    """Each ImageNet-1k class's lemmas ("king penguin", "Aptenodytes patagonica"), in timm's class order; [] when
    timm or its class files are missing."""
    spec = importlib.util.find_spec("timm")  # its folder, without importing it (a second on a cold start)
    if spec is None or not spec.submodule_search_locations:
        return []
    info = Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"
    synsets, lemmas = info / "imagenet_synsets.txt", info / "imagenet_synset_to_lemma.txt"
    if not synsets.is_file() or not lemmas.is_file():
        log.warning("timm's ImageNet class files are missing under %s: no class scores", info)
        return []
    by_synset = dict(line.split("\t", 1) for line in lemmas.read_text(encoding="utf-8").splitlines() if "\t" in line)
    return [tuple(n.strip() for n in by_synset.get(s, "").split(",") if n.strip())
            for s in synsets.read_text(encoding="utf-8").split()]


def rows_of_class(kb: Any, lemmas: Sequence[str]) -> tuple[int, ...]:
    """The KB rows one class names: those its lemmas name, else those the last word of a several-word lemma
    names."""
    rows = [r for lemma in lemmas for r in kb.rows_named(lemma)]
    if not rows:
        rows = [r for lemma in lemmas if " " in lemma for r in kb.rows_named(lemma.split()[-1])]
    return tuple(dict.fromkeys(rows))


class ClassNames:
    """ImageNet class -> the KB rows it names, for one KB (built on first use: a look-up per lemma)."""

    def __init__(self, kb: Any, lemmas: Sequence[Sequence[str]] | None = None) -> None:
        self.kb = kb
        self._lemmas = list(lemmas) if lemmas is not None else None
        self._rows: list[tuple[int, ...]] | None = None

    @property
    def rows(self) -> list[tuple[int, ...]]:
        if self._rows is None:
            lemmas = self._lemmas if self._lemmas is not None else class_lemmas()
            self._rows = [rows_of_class(self.kb, ls) for ls in lemmas]
        return self._rows

    def scores(self, logits: torch.Tensor) -> dict[int, float]:
        """{KB row: summed probability of the :data:`TOP_CLASSES` most probable classes that name it} for one
        picture's (C,) class logits; {} when the classifier's classes are not the lemma lists' (another head)."""
        if len(logits) != len(self.rows):
            if self.rows:
                log.warning("the classifier has %d classes, the ImageNet lemma lists %d: no class scores",
                            len(logits), len(self.rows))
            return {}
        p = torch.softmax(logits.float(), dim=-1).numpy()
        out: dict[int, float] = {}
        for c in np.argsort(-p, kind="stable")[:TOP_CLASSES]:
            for r in self.rows[int(c)]:
                out[r] = out.get(r, 0.0) + float(p[c])
        return out
