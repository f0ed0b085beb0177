"""The image scorer's configuration: one frozen dataclass per component (exemplars, fusion), the
spec an artifact is checked against, and the error every part of the scorer raises."""

from __future__ import annotations

from dataclasses import dataclass

from gemel.errors import GemelError


class ImageScoreError(GemelError):
    """The scorer cannot be built, loaded or used this way; the message names the value and the fix."""


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
    # its nearest exemplar lost), 1.0 keeps that rank (bench/style_transfer.py, Twemoji held out, weight 8, the
    # ImageNet bridge, since removed, at 0.3: top-1 over the KB 0.603 -> 0.655, flags 0.849 -> 0.885, other
    # pictures 0.500 -> 0.560)
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

    w_projection: float = 1.0  # weight of the projection's z-scored similarity
    w_exemplar: float = 0.0  # weight of the colour-layout exemplar kernel (in [0, 1], not normalised)
    normalise: str = "zscore"  # across the candidates of one query: "zscore", "softmax" or "none"
    temperature: float = 1.0  # probabilities = softmax(fused / temperature)

    def __post_init__(self) -> None:
        if self.normalise not in ("zscore", "softmax", "none"):
            raise ImageScoreError(f"fusion normalise={self.normalise!r} is not one of zscore, softmax, none")
        weights = (self.w_projection, self.w_exemplar)
        if min(weights) < 0 or sum(weights) == 0:
            raise ImageScoreError(f"fusion weights (projection, exemplar) = {weights} must be >= 0, "
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
    corpus_manifest: str = ""  # sha256 of the corpus.jsonl the projection was trained on ("" = untrained)


