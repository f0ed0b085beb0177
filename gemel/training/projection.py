"""Training the image scorer's projection: InfoNCE from pooled vision features to the training entities'
"title: description" embeddings (``gemel corpus train-projection``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from gemel.image.configs import ImageScoreError
from gemel.image.projection import Projection
from gemel.image.vectors import normalise_rows


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
    targets = normalise_rows(targets)  # (E, D)
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
            z = normalise_rows(proj.linear(dropout(proj.standardise(features[idx]))))  # (b, D)
            loss = torch.nn.functional.cross_entropy(z @ targets.T / config.temperature, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(features))
    proj.eval()
    return TrainResult(proj, losses, time.perf_counter() - t0)
