"""Reference pictures: how near is near for this query picture.

Two unrelated drawings in one art style are alike to a vision encoder (cosine 0.3 to 0.5 on the corpus), so a
labelled picture of another entity at 0.4 says nothing, while a labelled picture at 0.4 from a query whose every
other picture lies below 0.2 says much. The reference is a fixed set of labelled pictures (a sample of the image
scorer's training pictures, every style of drawing, and the seed pool's photos: a photo is far from every drawing,
so against drawings alone any labelled photo would look near): for each candidate entity, the query's similarity to the nearest reference
picture of *another* entity is the level a labelled picture of the candidate must beat to count
(:mod:`gemel.rank.features`: ``memory_excess``, ``decision_excess``). No threshold is chosen by hand: the level
is the query's own.

The reference belongs to one vision encoder and one colour-layout descriptor (its features and layouts are
theirs); a linker with another encoder (CLIP) has none, and those features are 0 there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemel.errors import GemelError
from gemel.image.exemplars import ColourExemplars
from gemel.image.memory import picture_similarity

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "models" / "picture_reference.npz"


class ReferenceError(GemelError):
    """A reference file that cannot be read; the message names it and the fix."""


def encoder_identity(vision_config: Any) -> str:
    """What a pooled feature depends on: the encoder's kind, name and weights (``VisionConfig``)."""
    c = vision_config
    return f"{c.kind}:{c.name}:{c.weights}"


def descriptor_identity(exemplar_config: Any) -> str:
    """What a colour layout depends on: the descriptor fields of ``ExemplarConfig`` (its kernel width aside)."""
    d = asdict(exemplar_config)
    d.pop("width", None)
    return json.dumps(d, sort_keys=True, default=list)


@dataclass(frozen=True)
class Level:
    """The query's similarity to its nearest reference pictures: per measure, the two nearest entities."""

    sim: tuple[tuple[str, float], tuple[str, float]]  # memory similarity: (entity, value) of the two nearest
    cos: tuple[tuple[str, float], tuple[str, float]]  # cosine alone: likewise

    def of(self, title: str) -> tuple[float, float]:
        """(memory similarity, cosine) of the nearest reference picture of another entity than ``title``: the
        level a labelled picture of ``title`` must beat."""
        return tuple(top[1] if top[0] != title else second[1] for top, second in (self.sim, self.cos))


@dataclass(frozen=True)
class PictureReference:
    """Unit pooled features and colour layouts of labelled reference pictures, with the entity each shows."""

    features: np.ndarray  # (R, D) unit pooled vision features
    layouts: np.ndarray | None  # (R, G) colour layouts (the scorer's descriptor); None: cosine only
    titles: tuple[str, ...]  # the KB entity each picture shows
    pictures: tuple[str, ...]  # their content keys (gemel.images.image_key): a query never counts itself
    encoder: str  # encoder_identity of the features
    descriptor: str  # descriptor_identity of the layouts ("" without)
    manifest: dict = field(default_factory=dict)  # what it was built from

    def fits(self, vision_config: Any, exemplar_config: Any | None) -> bool:
        """Whether this reference's features are the encoder's and its layouts the scorer's descriptor's."""
        if encoder_identity(vision_config) != self.encoder:
            return False
        return exemplar_config is None or self.layouts is None or descriptor_identity(exemplar_config) == self.descriptor

    def level(self, feature: np.ndarray, layout: np.ndarray | None, picture: str | None,
              exemplars: ColourExemplars | None) -> Level:
        """The query's :class:`Level`: its similarity (the picture memory's: cosine plus the layout kernel of
        ``exemplars``, the memory's kernel) and cosine to the nearest reference picture, and to the nearest of
        another entity; the query's own picture, when it is among the reference, is left out."""
        q = np.asarray(feature, np.float32).reshape(-1)
        q = q / (np.linalg.norm(q) or 1.0)
        cos = (self.features @ q).astype(np.float64)
        kernels = None
        if exemplars is not None and self.layouts is not None and layout is not None:
            kernels = ColourExemplars(self.layouts, self.titles, exemplars.scale,
                                      exemplars.config).kernels(np.asarray(layout)[None])[0]
        sims = picture_similarity(q, self.features, kernels).astype(np.float64)
        keep = np.array([p != picture for p in self.pictures]) if picture is not None else np.ones(len(cos), bool)
        return _level(sims, cos, keep, self.titles)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"titles": list(self.titles), "pictures": list(self.pictures), "encoder": self.encoder,
                "descriptor": self.descriptor, "manifest": self.manifest}
        arrays = {"features": self.features.astype(np.float16)}
        if self.layouts is not None:
            arrays["layouts"] = self.layouts.astype(np.float16)
        with open(path, "wb") as f:
            np.savez_compressed(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path = REFERENCE) -> "PictureReference":
        try:
            with np.load(path) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                features = z["features"].astype(np.float32)
                layouts = z["layouts"].astype(np.float32) if "layouts" in z else None
        except (OSError, ValueError, KeyError) as e:
            raise ReferenceError(f"{str(path)!r} is not a picture reference ({e}): rebuild it with "
                                 "`gemel corpus reference`") from None
        if len(features) != len(meta["titles"]) or len(meta["titles"]) != len(meta["pictures"]):
            raise ReferenceError(f"{str(path)!r} holds {len(features)} features for {len(meta['titles'])} titles: "
                                 "rebuild it with `gemel corpus reference`")
        return cls(features, layouts, tuple(meta["titles"]), tuple(meta["pictures"]), meta["encoder"],
                   meta["descriptor"], meta.get("manifest", {}))


def _level(sims: np.ndarray, cos: np.ndarray, keep: np.ndarray, titles: Sequence[str]) -> Level:
    """Per measure, the nearest kept reference picture's entity and value, and the nearest of another entity."""
    return Level(_two_nearest(sims, keep, titles), _two_nearest(cos, keep, titles))


def _two_nearest(values: np.ndarray, keep: np.ndarray, titles: Sequence[str]
                 ) -> tuple[tuple[str, float], tuple[str, float]]:
    order = [i for i in np.argsort(-values, kind="stable") if keep[i]]
    if not order:
        return ("", 0.0), ("", 0.0)
    first = order[0]
    second = next((i for i in order if titles[i] != titles[first]), None)
    return (titles[first], float(values[first])), (("", float(values[second])) if second is not None else ("", 0.0))
