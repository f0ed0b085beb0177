"""Image -> entity similarity: how well a picture fits each KB entity, from the frozen vision encoder alone.

Components, each comparing the picture with an entity (most through the entity's "title: description"
embedding, the text embedder's space that candidate retrieval uses), fused after normalisation across the
candidates of one query:

- **Projection** (trained, :mod:`gemel.image.projection`; training in :mod:`gemel.training.projection`): a
  linear map from the pooled vision feature to the embedder space, trained contrastively on the corpus of
  named pictures (:mod:`gemel.training.corpus`). It learns flags, logos and emoji concepts.
- **Colour-layout exemplars** (in-pool only, :mod:`gemel.image.exemplars`): the picture's content box as grids
  of colours, compared with the training pictures of each candidate entity (nearest exemplar, a kernel in
  [0, 1]): the spatial layout that tells flags apart. It needs the picture itself and the candidates' titles.

Fusion (:class:`gemel.image.configs.FusionConfig`): ``w_projection * z(projection) + w_exemplar * exemplar``,
z-scores over the candidate set (or the whole KB for :meth:`ImageEntityScorer.top_k`); a softmax with a
temperature gives probabilities whose maximum is the confidence (the ranker reads them as ``image_prob``). Weights
are fitted on the corpus dev split (:func:`gemel.training.fusion.fit_fusion`).

An artifact (:meth:`ImageEntityScorer.save`) holds the weights in fp16 beside a
:class:`gemel.image.configs.ScorerSpec` (encoder, embedder, dims, corpus manifest hash) that :meth:`load`
checks, the way :mod:`gemel.models.mapper` checkpoints carry theirs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from gemel.image.configs import ExemplarConfig, FusionConfig, ImageScoreError, ScorerSpec
from gemel.image.exemplars import ColourExemplars, colour_layout
from gemel.image.projection import Projection
from gemel.image.vectors import dot_rows, normalise, softmax
from gemel.images import ImageInput, load_image

log = logging.getLogger(__name__)

FORMAT = "gemel-image-scorer/1"
FeatureOrImage = Union[torch.Tensor, np.ndarray, ImageInput]


# ---- results -------------------------------------------------------------------------------------
@dataclass
class ImageScores:
    """Scores of one picture against N candidate entities (all arrays (N,), candidate order)."""

    fused: np.ndarray  # w_projection * norm(projection) + w_exemplar * exemplar: the score to use
    probabilities: np.ndarray  # softmax(fused / temperature)
    components: dict[str, np.ndarray]  # raw similarities: "projection" (cosine), "exemplar" (kernel)
    confidence: float  # max probability

    @property
    def best(self) -> int:
        return int(np.argmax(self.fused))


# ---- the scorer ----------------------------------------------------------------------------------
class ImageEntityScorer:
    """Similarity of a picture to entities (see the module docstring).

    ``encoder`` (a :class:`gemel.models.vision.VisionEncoder`) turns images into features; ``kb_vectors`` /
    ``kb_titles`` (the KB's "title: description" embeddings) are needed only for :meth:`top_k`."""

    def __init__(self, spec: ScorerSpec, encoder, projection: Projection | None = None,
                 fusion: FusionConfig = FusionConfig(),
                 kb_vectors: np.ndarray | None = None, kb_titles: Sequence[str] | None = None,
                 exemplars: ColourExemplars | None = None) -> None:
        if projection is None and exemplars is None:
            raise ImageScoreError("a scorer needs a projection or exemplars")
        if kb_vectors is not None and (kb_titles is None or len(kb_titles) != len(kb_vectors)):
            raise ImageScoreError("kb_vectors needs kb_titles of the same length")
        self.spec, self.encoder, self.projection = spec, encoder, projection
        self.exemplars = exemplars
        self.fusion = fusion
        self.kb_vectors = None if kb_vectors is None else np.ascontiguousarray(kb_vectors, dtype=np.float32)
        self.kb_titles = list(kb_titles) if kb_titles is not None else None
        self.version = "unsaved"
        if self.projection is not None:
            self.projection.eval().requires_grad_(False)

    def replace(self, fusion: FusionConfig | None = None, use_projection: bool = True,
                use_exemplars: bool = True) -> "ImageEntityScorer":
        """A variant sharing the weights: other fusion weights, or some components only (ablations)."""
        new = ImageEntityScorer(self.spec, self.encoder, self.projection if use_projection else None,
                                fusion or self.fusion, self.kb_vectors, self.kb_titles,
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
        """(B, F) features -> {"projection": (B, D)} unit vectors (when the scorer has a projection)."""
        out = {}
        features = features.reshape(-1, self.spec.vision_dim).float()
        with torch.inference_mode():
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
        raw = self.raw_scores(feature[None], self.check_entities(entity_vectors), titles,
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
        return self.fuse(self.raw_scores(features, self.check_entities(entity_vectors), titles, layouts))

    def raw_scores(self, features: torch.Tensor, entity_vectors: np.ndarray, titles: Sequence[str] | None,
             layouts: np.ndarray | None) -> dict[str, np.ndarray]:
        """Raw similarities per component, (B, N) each."""
        raw = {k: dot_rows(v, entity_vectors) for k, v in self.query_vectors(features).items()}
        if self.exemplars is not None and titles is not None and layouts is not None:
            if len(titles) != len(entity_vectors):
                raise ImageScoreError(f"{len(titles)} titles for {len(entity_vectors)} entity vectors")
            raw["exemplar"] = self.exemplars.similarities(layouts, titles)
        return raw

    def _combine(self, raw: dict[str, np.ndarray]) -> ImageScores:
        fused = self.fuse({k: v[None] for k, v in raw.items()})[0]
        probs = softmax(fused / self.fusion.temperature)
        confidence = float(probs.max()) if len(probs) else 0.0
        return ImageScores(fused, probs, raw, confidence)

    def fuse(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        f = self.fusion
        total = f.w_projection * normalise(raw["projection"], f.normalise) if "projection" in raw else 0
        if "exemplar" in raw:
            total = total + f.w_exemplar * raw["exemplar"]  # a kernel in [0, 1]: already comparable
        shape = next(iter(raw.values())).shape if raw else (0, 0)
        return np.asarray(total, dtype=np.float32) if not np.isscalar(total) else np.zeros(shape, np.float32)

    def check_entities(self, entity_vectors: np.ndarray) -> np.ndarray:
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
        if self.exemplars is not None:
            state["exemplars.descriptors"] = torch.from_numpy(self.exemplars.descriptors).half()
        ex = self.exemplars
        configs = repr((asdict(self.fusion), ex and ex.scale)).encode()
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in state.values()) + configs).hexdigest()[:12]
        blob = {"format": FORMAT, "spec": asdict(self.spec), "version": f"image-scorer-{digest}",
                "fusion": asdict(self.fusion),
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
        # artifacts saved before the ImageNet bridge was removed also hold its class vectors, its config and the
        # classifier size it needed (spec num_classes): ignored here, as they added nothing at w_bridge 0 (the
        # shipped scorer); :func:`_fusion` refuses one that gave the bridge a weight
        spec = ScorerSpec(**{k: v for k, v in blob["spec"].items() if k != "num_classes"})
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
        exemplars = None
        if "exemplars.descriptors" in state:
            ex = blob["exemplars"]
            # artifacts from before the palette descriptor hold mean colours, those before the width 0.5
            cfg = ExemplarConfig(**{"palette_temperature": 0.0, "width": 0.5, **ex["config"],
                                    "grids": tuple(tuple(g) for g in ex["config"]["grids"]),
                                    "grid_weights": tuple(ex["config"]["grid_weights"])})
            exemplars = ColourExemplars(state["exemplars.descriptors"].float().numpy(), ex["titles"], ex["scale"], cfg)
        scorer = cls(spec, encoder, projection, _fusion(blob["fusion"], path), kb_vectors, kb_titles, exemplars)
        scorer.version = blob.get("version", "unknown")
        return scorer


def _fusion(saved: dict, path: str | Path) -> FusionConfig:
    """An artifact's fusion weights; one that weighs the removed ImageNet bridge cannot be honoured. Its
    ``abstain_below`` (artifacts saved before it was removed; 0 in the shipped one) is ignored: abstaining was a
    gate of the fused score, and the ranker reads the scorer's confidence itself (``image_prob``)."""
    w_bridge = float(saved.get("w_bridge", 0.0))
    if w_bridge != 0:
        raise ImageScoreError(f"image scorer {path} gives the ImageNet bridge the weight w_bridge={w_bridge:g}, but "
                              "the bridge no longer exists: retrain the scorer with `gemel corpus train-projection`")
    return FusionConfig(**{k: v for k, v in saved.items() if k not in ("w_bridge", "abstain_below")})


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
