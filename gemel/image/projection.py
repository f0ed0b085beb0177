"""The trained projection of the image scorer: a pooled vision feature, standardised, mapped linearly into
the text embedder's space (trained by :mod:`gemel.training.projection`)."""

from __future__ import annotations

import torch

from gemel.image.vectors import normalise_rows


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
        return normalise_rows(self.linear(self.standardise(features)))  # (B, D)


