"""The zero-shot ImageNet bridge: the vision encoder's own class probabilities mixed into one vector of the
text embedder's space, through the classes' "lemma: definition" texts (timm's ``data/_info`` files)."""

from __future__ import annotations

from pathlib import Path

import torch

from gemel.image.configs import BridgeConfig
from gemel.image.vectors import normalise_rows


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


class ImageNetBridge:
    """Class logits -> one unit vector in the embedder space (probability-weighted class text vectors)."""

    def __init__(self, class_vectors: torch.Tensor, config: BridgeConfig = BridgeConfig()) -> None:
        self.class_vectors = normalise_rows(class_vectors)  # (C, D)
        self.config = config

    def vectors(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C) logits -> (B, D) unit vectors."""
        probs = torch.softmax(logits.float() / self.config.temperature, dim=-1)  # (B, C)
        top = probs.topk(min(self.config.top_classes, probs.shape[-1]), dim=-1)
        weights = top.values / top.values.sum(-1, keepdim=True)  # (B, k)
        mixed = (weights[..., None] * self.class_vectors[top.indices]).sum(1)  # (B, D)
        return normalise_rows(mixed)

    @staticmethod
    def max_probability(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=-1).max(-1).values  # (B,)


