"""Image -> entity similarity: how well a picture fits each KB entity, from the frozen vision encoder alone.

Two components, each comparing the picture with an entity's "title: description" embedding (the text
embedder's space, the one candidate retrieval uses), fused after normalisation across the candidates of one
query:

- **ImageNet bridge** (:class:`ImageNetBridge`, zero-shot): the encoder's own ImageNet head gives class
  probabilities; the top classes' "lemma: definition" texts (timm's ``data/_info`` files), embedded by the text
  embedder and weighted by probability, make one vector in the embedder space. Good for animals, food and
  objects; blind to what ImageNet lacks (flags, planets, logos).
- **Projection** (:class:`Projection`, trained): a linear map from the pooled vision feature to the embedder
  space, trained contrastively (InfoNCE against the training entities' embeddings) on the corpus of named
  pictures (:mod:`gemel.training.corpus`). It learns flags, logos and emoji concepts.

- **Colour-layout exemplars** (:class:`ColourExemplars`, in-pool only): the picture's content box cut into a
  small grid of mean colours, compared with the training pictures of each candidate entity (nearest
  exemplar, a kernel in [0, 1]). The pooled feature loses the spatial layout that tells flags apart; this keeps
  it. It needs the picture itself and the candidates' titles, so it is skipped when only a feature is given.

Fusion (:class:`FusionConfig`): ``w_bridge * z(bridge) + w_projection * z(projection) + w_exemplar *
exemplar``, z-scores over the
candidate set (or the whole KB for :meth:`ImageEntityScorer.top_k`); a softmax with a temperature turns the
fused scores into probabilities whose maximum is the confidence; below ``abstain_below`` the scorer abstains
(the caller should then ignore the image). Weights are fitted on the corpus dev split
(:func:`fit_fusion`).

An artifact (:meth:`ImageEntityScorer.save`) holds the projection and the bridge's class vectors in fp16
beside a :class:`ScorerSpec` (encoder, embedder, dims, corpus manifest hash) that :meth:`load` checks, the way
:mod:`gemel.models.mapper` checkpoints carry theirs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from gemel.errors import GemelError
from gemel.images import ImageInput, load_image

log = logging.getLogger(__name__)

FORMAT = "gemel-image-scorer/1"
FeatureOrImage = Union[torch.Tensor, np.ndarray, ImageInput]


class ImageScoreError(GemelError):
    """The scorer cannot be built, loaded or used this way; the message names the value and the fix."""


# ---- configuration: one dataclass per component ---------------------------------------------------
@dataclass(frozen=True)
class BridgeConfig:
    """The zero-shot ImageNet bridge."""

    top_classes: int = 5  # classes mixed into the bridge vector, by probability
    temperature: float = 1.0  # softmax temperature on the classifier logits

    def __post_init__(self) -> None:
        if not 1 <= self.top_classes <= 1000:
            raise ImageScoreError(f"bridge top_classes={self.top_classes} must be in 1..1000")
        if self.temperature <= 0:
            raise ImageScoreError(f"bridge temperature={self.temperature} must be > 0")


@dataclass(frozen=True)
class ProjectionConfig:
    """Training of the vision-feature -> embedder-space projection (InfoNCE over training entities)."""

    epochs: int = 60  # passes over the training pictures (the shipped scorer's; `gemel corpus train-projection`)
    batch_size: int = 256  # pictures per step
    lr: float = 3e-3  # AdamW learning rate (cosine decay)
    weight_decay: float = 0.05  # AdamW weight decay
    temperature: float = 0.1  # InfoNCE temperature (cosine / temperature = logits)
    feature_dropout: float = 0.5  # dropout on the standardised feature: a cheap augmentation
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ImageScoreError(f"projection epochs={self.epochs} and batch_size={self.batch_size} must be >= 1")
        if self.lr <= 0 or self.temperature <= 0:
            raise ImageScoreError(f"projection lr={self.lr} and temperature={self.temperature} must be > 0")
        if not 0 <= self.feature_dropout < 1:
            raise ImageScoreError(f"projection feature_dropout={self.feature_dropout} must be in [0, 1)")


@dataclass(frozen=True)
class ExemplarConfig:
    """The colour-layout descriptor of a picture (see :func:`colour_layout`)."""

    # cells across, down; coarse to fine (a 16 x 12 grid of palette shares added nothing on the dev flags and
    # would double the artifact)
    grids: tuple[tuple[int, int], ...] = ((4, 3), (8, 6))
    grid_weights: tuple[float, ...] = (1.0, 1.0)  # weight of each grid in the distance
    margin: float = 0.1  # share of the content box trimmed on each side (outlines, waving edges)
    background_tolerance: int = 30  # pixels this close to white are background when finding the content box
    # 0: each cell's mean colour; > 0: each cell's soft share of the basic flag colours (:data:`PALETTE`), a
    # Gaussian of this width in RGB [0, 1]: art styles shade "red" differently, the palette share does not
    palette_temperature: float = 0.2
    # the kernel max(0, 1 - distance / scale) reaches 0 at scale = width x the median distance between two
    # training pictures; at 0.5 a picture in an unseen art style was often beyond every exemplar (all kernels 0,
    # its nearest exemplar lost), 1.0 keeps that rank (bench/style_transfer.py, Twemoji held out, weight 8,
    # bridge 0.3: top-1 over the KB 0.603 -> 0.655, flags 0.849 -> 0.885, other pictures 0.500 -> 0.560)
    width: float = 1.0

    def __post_init__(self) -> None:
        if not self.grids or any(len(g) != 2 or min(g) < 1 for g in self.grids):
            raise ImageScoreError(f"exemplar grids={self.grids} must be pairs of numbers >= 1")
        if len(self.grid_weights) != len(self.grids) or min(self.grid_weights) < 0:
            raise ImageScoreError(f"exemplar grid_weights={self.grid_weights} must be one weight >= 0 per grid")
        if not 0 <= self.margin < 0.5:
            raise ImageScoreError(f"exemplar margin={self.margin} must be in [0, 0.5)")
        if self.palette_temperature < 0:
            raise ImageScoreError(f"exemplar palette_temperature={self.palette_temperature} must be >= 0 (0: mean "
                                  "colours)")
        if self.width <= 0:
            raise ImageScoreError(f"exemplar width={self.width} must be > 0 (a share of the median distance "
                                  "between training pictures, e.g. 1.0)")


@dataclass(frozen=True)
class FusionConfig:
    """How the components' similarities become one score per candidate."""

    w_bridge: float = 0.3  # weight of the bridge's z-scored similarity
    w_projection: float = 1.0  # weight of the projection's z-scored similarity
    w_exemplar: float = 0.0  # weight of the colour-layout exemplar kernel (in [0, 1], not normalised)
    normalise: str = "zscore"  # across the candidates of one query: "zscore", "softmax" or "none"
    temperature: float = 1.0  # probabilities = softmax(fused / temperature)
    abstain_below: float = 0.0  # confidence (max probability) below this -> abstain

    def __post_init__(self) -> None:
        if self.normalise not in ("zscore", "softmax", "none"):
            raise ImageScoreError(f"fusion normalise={self.normalise!r} is not one of zscore, softmax, none")
        weights = (self.w_bridge, self.w_projection, self.w_exemplar)
        if min(weights) < 0 or sum(weights) == 0:
            raise ImageScoreError(f"fusion weights (bridge, projection, exemplar) = {weights} must be >= 0, "
                                  "not all 0")
        if self.temperature <= 0:
            raise ImageScoreError(f"fusion temperature={self.temperature} must be > 0")


@dataclass(frozen=True)
class ScorerSpec:
    """What a scorer was built for; saved with it and checked on load."""

    vision: str  # vision encoder name, e.g. "tf_efficientnet_lite0"
    vision_dim: int  # pooled feature size (1280)
    embedder: str  # text embedder source
    embed_dim: int  # embedder size (384)
    num_classes: int = 0  # classifier classes the bridge expects (1000), 0 = no bridge
    corpus_manifest: str = ""  # sha256 of the corpus.jsonl the projection was trained on ("" = untrained)


# ---- components ----------------------------------------------------------------------------------
def imagenet_class_texts() -> list[str]:
    """"lemma: definition" for the 1000 ImageNet-1k classes in classifier order (timm's ``_info`` files)."""
    import timm.data

    info = Path(timm.data.__file__).parent / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemma = _table(info / "imagenet_synset_to_lemma.txt")
    definition = _table(info / "imagenet_synset_to_definition.txt")
    return [f"{lemma[s]}: {definition[s]}" for s in synsets]


def _table(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("\t")
        out[key] = value.strip()
    return out


def _normalise_rows(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


class ImageNetBridge:
    """Class logits -> one unit vector in the embedder space (probability-weighted class text vectors)."""

    def __init__(self, class_vectors: torch.Tensor, config: BridgeConfig = BridgeConfig()) -> None:
        self.class_vectors = _normalise_rows(class_vectors)  # (C, D)
        self.config = config

    def vectors(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C) logits -> (B, D) unit vectors."""
        probs = torch.softmax(logits.float() / self.config.temperature, dim=-1)  # (B, C)
        top = probs.topk(min(self.config.top_classes, probs.shape[-1]), dim=-1)
        weights = top.values / top.values.sum(-1, keepdim=True)  # (B, k)
        mixed = (weights[..., None] * self.class_vectors[top.indices]).sum(1)  # (B, D)
        return _normalise_rows(mixed)

    @staticmethod
    def max_probability(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=-1).max(-1).values  # (B,)


class Projection(torch.nn.Module):
    """Standardised pooled feature -> unit vector in the embedder space: ``normalise(W (f - mu) / sd + b)``."""

    def __init__(self, vision_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(vision_dim, embed_dim)
        self.register_buffer("mean", torch.zeros(vision_dim))
        self.register_buffer("std", torch.ones(vision_dim))

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.mean) / self.std  # (B, F)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return _normalise_rows(self.linear(self.standardise(features)))  # (B, D)


# basic colours of national flags (white, black, red, green, blue, yellow, orange, light blue, maroon), RGB in [0, 1]
PALETTE = np.array([[255, 255, 255], [0, 0, 0], [200, 16, 46], [0, 122, 61], [0, 56, 168], [252, 209, 22],
                    [255, 130, 0], [117, 170, 219], [128, 0, 32]], dtype=np.float32) / 255.0
PALETTE_CANVAS = (64, 48)  # the content box is resized to this before the palette shares are averaged per cell


def colour_layout(image, config: ExemplarConfig = ExemplarConfig()) -> np.ndarray:
    """Grids over the picture's content box (white = background), each scaled by its weight (coarse grids
    forgive a shifted emblem, fine ones see stripes and stars): per cell the mean colour in [0, 1] (3 values),
    or with ``config.palette_temperature`` > 0 the soft share of each :data:`PALETTE` colour (9 values), which
    carries a flag from one art style to another (measured: noto -> twemoji flags, nearest exemplar right
    0.873 -> 0.910).

    Transparent pixels are composited on white first (:func:`gemel.images.to_rgb`), like everywhere."""
    from PIL import Image, ImageChops

    rgb = load_image(image)
    gap = ImageChops.difference(rgb, Image.new("RGB", rgb.size, (255, 255, 255))).convert("L")
    box = gap.point(lambda v: 255 if v > config.background_tolerance else 0).getbbox()
    if box:
        rgb = rgb.crop(box)
    w, h = rgb.size
    m = config.margin
    rgb = rgb.crop((round(w * m), round(h * m), max(round(w * (1 - m)), round(w * m) + 1),
                    max(round(h * (1 - m)), round(h * m) + 1)))
    if config.palette_temperature > 0:
        return _palette_layout(rgb, config)
    parts = [w * np.asarray(rgb.resize(g, Image.Resampling.BOX), dtype=np.float32).reshape(-1) / 255.0
             for g, w in zip(config.grids, config.grid_weights)]
    return np.concatenate(parts)


def _palette_layout(rgb, config: ExemplarConfig) -> np.ndarray:
    """Per grid cell, the mean soft assignment of its pixels to the :data:`PALETTE` colours."""
    from PIL import Image

    x = np.asarray(rgb.resize(PALETTE_CANVAS, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0  # (H, W, 3)
    d2 = ((x[..., None, :] - PALETTE) ** 2).sum(-1)  # (H, W, P)
    share = np.exp(-(d2 - d2.min(-1, keepdims=True)) / (2 * config.palette_temperature ** 2))
    share /= share.sum(-1, keepdims=True)
    parts = []
    for (gw, gh), w in zip(config.grids, config.grid_weights):
        cells = [[c.mean((0, 1)) for c in np.array_split(row, gw, axis=1)] for row in np.array_split(share, gh, axis=0)]
        parts.append(w * np.asarray(cells, dtype=np.float32).reshape(-1))
    return np.concatenate(parts)


class ColourExemplars:
    """Colour layouts of the training pictures; an entity's score is the kernel of its nearest exemplar."""

    def __init__(self, descriptors: np.ndarray, titles: Sequence[str], scale: float,
                 config: ExemplarConfig = ExemplarConfig()) -> None:
        if len(descriptors) != len(titles) or len(titles) == 0:
            raise ImageScoreError(f"exemplars need one title per descriptor: {len(descriptors)} vs {len(titles)}")
        if scale <= 0:
            raise ImageScoreError(f"exemplar scale={scale} must be > 0")
        self.descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)  # (M, G)
        self.titles = list(titles)
        self.scale = float(scale)
        self.config = config
        self._columns_cache: tuple | None = None  # (titles object, its length, (exemplar, column) pairs)

    @classmethod
    def build(cls, descriptors: np.ndarray, titles: Sequence[str], config: ExemplarConfig = ExemplarConfig(),
              seed: int = 0) -> "ColourExemplars":
        """Scale = ``config.width`` x the median distance between random pairs of exemplars (a "clearly
        different" distance)."""
        rng = np.random.default_rng(seed)
        d = np.asarray(descriptors, dtype=np.float32)
        a, b = rng.integers(0, len(d), (2, min(4096, len(d) * 4)))
        scale = float(np.median(np.linalg.norm(d[a] - d[b], axis=1))) * config.width or 1.0
        return cls(d, titles, scale, config)

    def kernels(self, descriptors: np.ndarray) -> np.ndarray:
        """(B, G) query descriptors -> (B, M) kernels max(0, 1 - distance / scale) to every exemplar."""
        q = np.asarray(descriptors, dtype=np.float32)
        if q.shape[-1] != self.descriptors.shape[1]:
            raise ImageScoreError(f"colour layouts of {q.shape[-1]} values do not match the exemplars' "
                                  f"{self.descriptors.shape[1]}: compute them with the scorer's own "
                                  "exemplars.config (ImageEntityScorer.layout)")
        q = q.reshape(-1, self.descriptors.shape[1])
        d2 = (q ** 2).sum(1)[:, None] + (self.descriptors ** 2).sum(1)[None] - 2 * q @ self.descriptors.T
        return np.clip(1.0 - np.sqrt(np.maximum(d2, 0)) / self.scale, 0.0, 1.0)

    def similarities(self, descriptors: np.ndarray, titles: Sequence[str]) -> np.ndarray:
        """(B, N) best kernel among each candidate title's exemplars (0 for a title without exemplars)."""
        k = self.kernels(descriptors)  # (B, M)
        out = np.zeros((k.shape[0], len(titles)), dtype=np.float64)
        for m, i in self._columns(titles):
            np.maximum(out[:, i], k[:, m], out=out[:, i])
        return out

    def _columns(self, titles: Sequence[str]) -> list[tuple[int, int]]:
        """(exemplar, column) pairs of the exemplars whose title is in ``titles``; kept for the last ``titles``
        object, so that scoring against a KB's titles (1M rows read from a built KB's SQLite) reads them once."""
        cached = self._columns_cache
        if cached is not None and cached[0] is titles and cached[1] == len(titles):
            return cached[2]
        column = {t: i for i, t in enumerate(titles)}
        pairs = [(m, column[t]) for m, t in enumerate(self.titles) if t in column]
        self._columns_cache = (titles, len(titles), pairs)
        return pairs


# ---- results -------------------------------------------------------------------------------------
@dataclass
class ImageScores:
    """Scores of one picture against N candidate entities (all arrays (N,), candidate order)."""

    fused: np.ndarray  # w_bridge * norm(bridge) + w_projection * norm(projection): the score to use
    probabilities: np.ndarray  # softmax(fused / temperature)
    components: dict[str, np.ndarray]  # raw cosine similarities: "bridge", "projection"
    confidence: float  # max probability
    abstain: bool  # confidence below the fusion's abstain_below: ignore the picture

    @property
    def best(self) -> int:
        return int(np.argmax(self.fused))


# ---- the scorer ----------------------------------------------------------------------------------
class ImageEntityScorer:
    """Similarity of a picture to entities (see the module docstring).

    ``encoder`` (a :class:`gemel.models.vision.VisionEncoder`) turns images into features and features into class
    logits; ``kb_vectors`` / ``kb_titles`` (the KB's "title: description" embeddings) are needed only for
    :meth:`top_k`."""

    def __init__(self, spec: ScorerSpec, encoder, projection: Projection | None = None,
                 bridge: ImageNetBridge | None = None, fusion: FusionConfig = FusionConfig(),
                 kb_vectors: np.ndarray | None = None, kb_titles: Sequence[str] | None = None,
                 exemplars: ColourExemplars | None = None) -> None:
        if projection is None and bridge is None and exemplars is None:
            raise ImageScoreError("a scorer needs a projection, a bridge or exemplars")
        if bridge is not None and not getattr(encoder, "has_classifier", False):
            raise ImageScoreError("the ImageNet bridge needs an encoder with a classifier head "
                                  "(timm tf_efficientnet_lite0); build the scorer with bridge=None otherwise")
        if kb_vectors is not None and (kb_titles is None or len(kb_titles) != len(kb_vectors)):
            raise ImageScoreError("kb_vectors needs kb_titles of the same length")
        self.spec, self.encoder, self.projection, self.bridge = spec, encoder, projection, bridge
        self.exemplars = exemplars
        self.fusion = fusion
        self.kb_vectors = None if kb_vectors is None else np.ascontiguousarray(kb_vectors, dtype=np.float32)
        self.kb_titles = list(kb_titles) if kb_titles is not None else None
        self.version = "unsaved"
        if self.projection is not None:
            self.projection.eval().requires_grad_(False)

    def replace(self, fusion: FusionConfig | None = None, bridge: BridgeConfig | None = None,
                use_bridge: bool = True, use_projection: bool = True,
                use_exemplars: bool = True) -> "ImageEntityScorer":
        """A variant sharing the weights: other fusion weights, or some components only (ablations)."""
        new_bridge = self.bridge if use_bridge else None
        if new_bridge is not None and bridge is not None:
            new_bridge = ImageNetBridge(self.bridge.class_vectors, bridge)
        new = ImageEntityScorer(self.spec, self.encoder, self.projection if use_projection else None,
                                new_bridge, fusion or self.fusion, self.kb_vectors, self.kb_titles,
                                self.exemplars if use_exemplars else None)
        new.version = self.version
        return new

    # ---- inputs --------------------------------------------------------------------------------
    def feature(self, feature_or_image: FeatureOrImage) -> torch.Tensor:
        """A (D,) pooled feature: given as a tensor/array, or encoded from an image (path, bytes, PIL)."""
        return self._prepare(feature_or_image)[0]

    def _prepare(self, feature_or_image: FeatureOrImage) -> tuple[torch.Tensor, np.ndarray | None]:
        """(pooled feature, colour layout or None when only a feature was given)."""
        if isinstance(feature_or_image, (torch.Tensor, np.ndarray)):
            f = torch.as_tensor(np.asarray(feature_or_image, dtype=np.float32)).reshape(-1)
            if f.numel() != self.spec.vision_dim:
                raise ImageScoreError(f"feature has {f.numel()} values, the scorer expects {self.spec.vision_dim} "
                                      f"({self.spec.vision}'s pooled feature)")
            return f, None
        image = load_image(feature_or_image)
        if image is None:
            raise ImageScoreError("no image given: the image score needs a picture or its feature")
        layout = colour_layout(image, self.exemplars.config) if self.exemplars is not None else None
        return self.encoder.encode([image])[0].float(), layout

    def layout(self, image: ImageInput) -> np.ndarray | None:
        """The picture's colour layout for the exemplars (None when the scorer has none, or no picture)."""
        if self.exemplars is None or image is None:
            return None
        return colour_layout(image, self.exemplars.config)

    def query_vectors(self, features: torch.Tensor) -> dict[str, np.ndarray]:
        """(B, F) features -> {"bridge": (B, D), "projection": (B, D)} unit vectors (present components)."""
        out = {}
        features = features.reshape(-1, self.spec.vision_dim).float()
        with torch.inference_mode():
            if self.bridge is not None:
                out["bridge"] = self.bridge.vectors(self.encoder.logits_from_features(features)).numpy()
            if self.projection is not None:
                out["projection"] = self.projection(features).numpy()
        return out

    # ---- scoring -------------------------------------------------------------------------------
    def score(self, feature_or_image: FeatureOrImage, entity_vectors: np.ndarray,
              titles: Sequence[str] | None = None, layout: np.ndarray | None = None) -> ImageScores:
        """Scores of one picture against N candidates given by their (N, D) "title: description" vectors.

        With the candidates' ``titles`` and a picture (not a bare feature) the colour-layout exemplars
        take part too; given a feature, ``layout`` (:meth:`layout` of the picture) lets them take part: the
        linker reuses the feature it already computed for the visual prefix and adds the picture's layout."""
        feature, own = self._prepare(feature_or_image)
        layout = own if layout is None else layout
        raw = self._raw(feature[None], self._check_entities(entity_vectors), titles,
                        None if layout is None else layout[None])
        return self._combine({k: v[0] for k, v in raw.items()})

    def similarities(self, feature_or_image: FeatureOrImage, entity_vectors: np.ndarray,
                     titles: Sequence[str] | None = None) -> np.ndarray:
        """(N,) fused, normalised similarity of the picture to each of N candidate entities (higher = closer)."""
        return self.score(feature_or_image, entity_vectors, titles).fused

    def top_k(self, feature_or_image: FeatureOrImage, k: int = 10) -> list[tuple[str, float]]:
        """The k KB entities the picture fits best, as (title, fused score), best first."""
        if self.kb_vectors is None or self.kb_titles is None:
            raise ImageScoreError("top_k needs the KB: load the scorer with kb_vectors and kb_titles")
        if k < 1:
            raise ImageScoreError(f"k={k} must be >= 1")
        fused = self.score(feature_or_image, self.kb_vectors, self.kb_titles).fused
        best = np.argsort(-fused, kind="stable")[:k]
        return [(self.kb_titles[i], float(fused[i])) for i in best]

    def score_batch(self, features: torch.Tensor, entity_vectors: np.ndarray, titles: Sequence[str] | None = None,
                    layouts: np.ndarray | None = None) -> np.ndarray:
        """(B, F) features (and (B, G) colour layouts) against N shared candidates -> (B, N) fused scores."""
        return self._fuse(self._raw(features, self._check_entities(entity_vectors), titles, layouts))

    def _raw(self, features: torch.Tensor, entity_vectors: np.ndarray, titles: Sequence[str] | None,
             layouts: np.ndarray | None) -> dict[str, np.ndarray]:
        """Raw similarities per component, (B, N) each."""
        raw = {k: _dot_rows(v, entity_vectors) for k, v in self.query_vectors(features).items()}
        if self.exemplars is not None and titles is not None and layouts is not None:
            if len(titles) != len(entity_vectors):
                raise ImageScoreError(f"{len(titles)} titles for {len(entity_vectors)} entity vectors")
            raw["exemplar"] = self.exemplars.similarities(layouts, titles)
        return raw

    def _combine(self, raw: dict[str, np.ndarray]) -> ImageScores:
        fused = self._fuse({k: v[None] for k, v in raw.items()})[0]
        probs = _softmax(fused / self.fusion.temperature)
        confidence = float(probs.max()) if len(probs) else 0.0
        return ImageScores(fused, probs, raw, confidence, confidence < self.fusion.abstain_below)

    def _fuse(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        f = self.fusion
        total = sum(w * normalise(raw[k], f.normalise) for k, w in
                    (("bridge", f.w_bridge), ("projection", f.w_projection)) if k in raw)
        if "exemplar" in raw:
            total = total + f.w_exemplar * raw["exemplar"]  # a kernel in [0, 1]: already comparable
        shape = next(iter(raw.values())).shape if raw else (0, 0)
        return np.asarray(total, dtype=np.float32) if not np.isscalar(total) else np.zeros(shape, np.float32)

    def _check_entities(self, entity_vectors: np.ndarray) -> np.ndarray:
        e = np.asarray(entity_vectors, dtype=np.float32)
        if e.ndim != 2 or e.shape[1] != self.spec.embed_dim:
            raise ImageScoreError(f"entity_vectors must be (N, {self.spec.embed_dim}) embeddings of "
                                  f"'title: description' by {self.spec.embedder}, got shape {e.shape}")
        return e

    # ---- artifact ------------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> str:
        """Save spec, configs and fp16 weights; returns a version (content hash)."""
        state: dict[str, torch.Tensor] = {}
        if self.projection is not None:
            state.update({f"projection.{k}": v.detach().half() for k, v in self.projection.state_dict().items()})
        if self.bridge is not None:
            state["bridge.class_vectors"] = self.bridge.class_vectors.half()
        if self.exemplars is not None:
            state["exemplars.descriptors"] = torch.from_numpy(self.exemplars.descriptors).half()
        ex = self.exemplars
        configs = repr((asdict(self.fusion), self.bridge and asdict(self.bridge.config), ex and ex.scale)).encode()
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in state.values()) + configs).hexdigest()[:12]
        blob = {"format": FORMAT, "spec": asdict(self.spec), "version": f"image-scorer-{digest}",
                "fusion": asdict(self.fusion), "bridge": asdict(self.bridge.config) if self.bridge else None,
                "exemplars": {"titles": ex.titles, "scale": ex.scale, "config": asdict(ex.config)} if ex else None,
                "state_dict": state, "extra": extra or {}}
        torch.save(blob, str(path))
        self.version = blob["version"]
        return self.version

    @classmethod
    def load(cls, path: str | Path, encoder, embedder_name: str | None = None,
             kb_vectors: np.ndarray | None = None, kb_titles: Sequence[str] | None = None,
             corpus_manifest: str | None = None) -> "ImageEntityScorer":
        """Load an artifact; refuse it when the encoder / embedder / corpus differ from what it was built for."""
        blob = _load_blob(Path(path))
        spec = ScorerSpec(**blob["spec"])
        expected = {"vision": encoder.config.name, "vision_dim": encoder.dim}
        if embedder_name is not None:
            expected["embedder"] = embedder_name
        if corpus_manifest is not None:
            expected["corpus_manifest"] = corpus_manifest
        diffs = [f"{k}: artifact {getattr(spec, k)!r} vs given {v!r}" for k, v in expected.items()
                 if getattr(spec, k) != v]
        if diffs:
            raise ImageScoreError(f"image scorer {path} does not fit ({'; '.join(diffs)}): "
                                  "retrain it with `gemel corpus train-projection`")
        state = blob["state_dict"]
        projection = None
        if "projection.linear.weight" in state:
            projection = Projection(spec.vision_dim, spec.embed_dim)
            projection.load_state_dict({k.removeprefix("projection."): v.float()
                                        for k, v in state.items() if k.startswith("projection.")})
        bridge = None
        if "bridge.class_vectors" in state:
            bridge = ImageNetBridge(state["bridge.class_vectors"].float(), BridgeConfig(**blob["bridge"]))
        exemplars = None
        if "exemplars.descriptors" in state:
            ex = blob["exemplars"]
            # artifacts from before the palette descriptor hold mean colours, those before the width 0.5
            cfg = ExemplarConfig(**{"palette_temperature": 0.0, "width": 0.5, **ex["config"],
                                    "grids": tuple(tuple(g) for g in ex["config"]["grids"]),
                                    "grid_weights": tuple(ex["config"]["grid_weights"])})
            exemplars = ColourExemplars(state["exemplars.descriptors"].float().numpy(), ex["titles"], ex["scale"], cfg)
        scorer = cls(spec, encoder, projection, bridge, FusionConfig(**blob["fusion"]), kb_vectors, kb_titles,
                     exemplars)
        scorer.version = blob.get("version", "unknown")
        return scorer


def _dot_rows(queries: np.ndarray, rows: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(B, N) ``queries @ rows.T`` in float32, ``rows`` converted a chunk at a time: a built KB's float16,
    memory-mapped vectors (1M x 384) are never copied whole (1.5 GB in float32) for one picture."""
    out = np.empty((len(queries), len(rows)), dtype=np.float32)
    for lo in range(0, len(rows), chunk):
        out[:, lo:lo + chunk] = queries @ np.asarray(rows[lo:lo + chunk], dtype=np.float32).T
    return out


def _load_blob(path: Path) -> dict:
    if not path.exists():
        raise ImageScoreError(f"image scorer {str(path)!r} does not exist: train one with "
                              "`gemel corpus train-projection`")
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise ImageScoreError(f"{path} is not a readable image scorer ({type(e).__name__}: {e})") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ImageScoreError(f"{path} is not a GEMEL Studio image scorer (format {FORMAT})")
    return blob


# ---- normalisation -------------------------------------------------------------------------------
def normalise(scores: np.ndarray, how: str = "zscore") -> np.ndarray:
    """Normalise (..., N) scores across the last axis (the candidates of one query)."""
    s = np.asarray(scores, dtype=np.float64)
    if how == "none" or s.shape[-1] == 0:
        return s
    if how == "softmax":
        return _softmax(s / 0.05)
    std = s.std(-1, keepdims=True)
    return (s - s.mean(-1, keepdims=True)) / np.where(std > 1e-9, std, 1.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] == 0:
        return x
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---- training and fitting ------------------------------------------------------------------------
@dataclass
class TrainResult:
    projection: Projection
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    seconds: float = 0.0


def train_projection(features: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
                     config: ProjectionConfig = ProjectionConfig()) -> TrainResult:
    """InfoNCE: picture i should be closest to its entity ``targets[labels[i]]`` among all ``targets``.

    features (B, F) pooled vision features; targets (E, D) unit "title: description" vectors of the
    training entities; labels (B,) index into targets."""
    import time

    if len(features) != len(labels) or len(features) == 0:
        raise ImageScoreError(f"need as many labels as features, and some: {len(features)} vs {len(labels)}")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    features = features.float()
    proj = Projection(features.shape[1], targets.shape[1])
    proj.mean.copy_(features.mean(0))
    proj.std.copy_(features.std(0).clamp_min(1e-4))
    targets = _normalise_rows(targets)  # (E, D)
    opt = torch.optim.AdamW(proj.linear.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(features) / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    dropout = torch.nn.Dropout(config.feature_dropout)
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(len(features), generator=gen)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            z = _normalise_rows(proj.linear(dropout(proj.standardise(features[idx]))))  # (b, D)
            loss = torch.nn.functional.cross_entropy(z @ targets.T / config.temperature, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(features))
    proj.eval()
    return TrainResult(proj, losses, time.perf_counter() - t0)


def fit_fusion(scorer: ImageEntityScorer, features: torch.Tensor, gold: Sequence[int], entity_vectors: np.ndarray,
               titles: Sequence[str] | None = None, layouts: np.ndarray | None = None,
               bridge_grid: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
               exemplar_grid: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0),
               abstain_precision: float = 0.0, strata: Sequence[str] | None = None) -> FusionConfig:
    """Choose w_bridge and w_exemplar (w_projection = 1) by dev top-1 (then top-10) over the candidates.

    gold[i] indexes the entity_vectors row of picture i; ``titles`` and ``layouts`` (colour layouts of the dev
    pictures) let the exemplar weight be fitted too. With ``abstain_precision`` > 0 the abstain threshold is
    the lowest confidence above which dev top-1 reaches that precision. ``strata`` (one label per picture,
    e.g. in-pool / out-of-pool) weighs each stratum alike, so the larger one does not decide alone."""
    gold_arr = np.asarray(gold)
    labels = np.asarray(strata if strata is not None else ["all"] * len(gold_arr))
    raw = scorer._raw(features, scorer._check_entities(entity_vectors), titles, layouts)
    b_grid = bridge_grid if "bridge" in raw and "projection" in raw else (scorer.fusion.w_bridge,)
    e_grid = exemplar_grid if "exemplar" in raw else (scorer.fusion.w_exemplar,)
    w_proj = 1.0 if "projection" in raw else 0.0
    best_key, best = (-1.0, -1.0), scorer.fusion
    for wb in b_grid:
        for we in e_grid:
            try:
                fusion = dataclasses.replace(scorer.fusion, w_bridge=wb, w_projection=w_proj, w_exemplar=we)
            except ImageScoreError:  # all weights zero
                continue
            fused = scorer.replace(fusion=fusion)._fuse(raw)
            hits = [_topk_hits(fused[labels == s], gold_arr[labels == s]) for s in np.unique(labels)]
            key = (float(np.mean([h[0] for h in hits])), float(np.mean([h[1] for h in hits])))
            if key > best_key:
                best_key, best = key, fusion
    if abstain_precision > 0:
        fused = scorer.replace(fusion=best)._fuse(raw)
        best = dataclasses.replace(best, abstain_below=_abstain_threshold(fused, best.temperature, gold_arr,
                                                                          abstain_precision))
    log.info("fusion fitted: w_bridge=%.2f w_projection=%.2f w_exemplar=%.2f (dev top-1 %.3f, top-10 %.3f)",
             best.w_bridge, best.w_projection, best.w_exemplar, *best_key)
    return best


def _topk_hits(fused: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    gold_scores = fused[np.arange(len(gold)), gold][:, None]
    rank = (fused >= gold_scores).sum(1) - 1  # 0 = top-1; ties count against the gold entity
    return float((rank < 1).mean()), float((rank < 10).mean())


def _abstain_threshold(fused: np.ndarray, temperature: float, gold: np.ndarray, precision: float) -> float:
    conf = _softmax(fused / temperature).max(1)
    right = fused.argmax(1) == gold
    for t in np.unique(conf):
        if right[conf >= t].mean() >= precision:
            return float(t)
    return 1.0
