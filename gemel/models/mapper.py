"""The feature mapper: GEMEL's only trained part, a linear map from the vision feature to k LLM embeddings.

``nn.Linear(vision_dim, k * hidden)`` whose output is reshaped to k "visual prefix" embeddings placed before
each example's text in the prompt (paper: CLIP ViT-L/14 1024-d -> 4 x 4096 for OPT-6.7B, ~0.3% of the
parameters). A checkpoint carries its config (encoder, LLM, dims, k, tokenizer) beside the weights, and
loading into a mismatched profile fails with a message naming both sides. The official GEMEL checkpoints are
bare ``nn.Linear`` state dicts in ``.pkl`` files; :meth:`FeatureMapper.load_official` reads them with
``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from gemel.errors import GemelError


class MapperMismatchError(GemelError):
    """A mapper checkpoint was trained for another encoder / LLM / prefix length than the profile's."""


@dataclass(frozen=True)
class MapperSpec:
    """What a mapper was built for; saved in every checkpoint and checked on load."""

    vision: str  # vision encoder name, e.g. "tf_efficientnet_lite0"
    vision_dim: int  # input feature size
    llm: str  # LLM source
    hidden_size: int  # LLM embedding size
    prefix_length: int  # k
    tokenizer: str = ""  # tokenizer name (same as the LLM's unless said otherwise)

    def __post_init__(self) -> None:
        for name in ("vision_dim", "hidden_size", "prefix_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"mapper {name}={getattr(self, name)} must be >= 1")


class FeatureMapper(torch.nn.Module):
    """(B, vision_dim) -> (B, k, hidden) visual prefix embeddings."""

    def __init__(self, spec: MapperSpec, version: str = "untrained", init_std: float | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.version = version
        self.linear = torch.nn.Linear(spec.vision_dim, spec.prefix_length * spec.hidden_size)
        if init_std is not None:  # scale so a unit-RMS feature maps to embeddings of the LLM's own scale
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                self.linear.weight.normal_(0.0, init_std / math.sqrt(spec.vision_dim), generator=gen)
                self.linear.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.linear(features.to(self.linear.weight.dtype))  # (B, k*H)
        return out.view(features.shape[0], self.spec.prefix_length, self.spec.hidden_size)  # (B, k, H)

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # ---- checkpoints ---------------------------------------------------------------------------
    def save(self, path: str | Path, extra: dict | None = None) -> str:
        """Save weights + spec; returns the version (content hash) recorded with later predictions."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in state.values())).hexdigest()[:12]
        self.version = f"mapper-{digest}"
        torch.save({"format": "gemel-mapper/1", "spec": asdict(self.spec), "version": self.version,
                    "state_dict": state, "extra": extra or {}}, str(path))
        return self.version

    @classmethod
    def load(cls, path: str | Path, expected: MapperSpec | None = None) -> "FeatureMapper":
        path = Path(path)
        blob = _load_tensors(path)
        if not isinstance(blob, dict) or blob.get("format") != "gemel-mapper/1":
            if _is_linear_state(blob):
                raise MapperMismatchError(
                    f"{path} is a bare nn.Linear state dict (an official GEMEL checkpoint?): load it with "
                    "FeatureMapper.load_official(path, spec) or put it in the profile's mapper.checkpoint")
            raise MapperMismatchError(f"{path} is not a GEMEL Studio mapper checkpoint")
        spec = MapperSpec(**blob["spec"])
        if expected is not None:
            check_compatible(spec, expected, str(path))
        mapper = cls(spec, version=blob.get("version", "unknown"))
        mapper.load_state_dict(blob["state_dict"])
        return mapper

    @classmethod
    def load_official(cls, path: str | Path, spec: MapperSpec) -> "FeatureMapper":
        """An official GEMEL ``.pkl``: the state dict of ``nn.Linear(1024, 4 * 4096)`` (any key prefix)."""
        blob = _load_tensors(Path(path))
        if not _is_linear_state(blob):
            found = f"keys: {list(blob)[:5]}" if isinstance(blob, dict) else f"a {type(blob).__name__}"
            raise MapperMismatchError(f"{path} is not an nn.Linear state dict ({found})")
        weight = next(v for k, v in blob.items() if k.endswith("weight"))
        bias = next(v for k, v in blob.items() if k.endswith("bias"))
        want = (spec.prefix_length * spec.hidden_size, spec.vision_dim)
        if tuple(weight.shape) != want:
            raise MapperMismatchError(
                f"{path}: weight shape {tuple(weight.shape)} does not fit the profile ({want[1]} -> "
                f"{spec.prefix_length} x {spec.hidden_size}); the paper's checkpoints need CLIP ViT-L/14 "
                "(1024-d) and OPT-6.7B (4096) with prefix_length 4: use the 'paper' profile")
        hash_ = hashlib.sha256(weight.numpy().tobytes()).hexdigest()[:12]
        mapper = cls(spec, version=f"official-{hash_}")
        mapper.linear.load_state_dict({"weight": weight, "bias": bias})
        return mapper


def _load_tensors(path: Path) -> object:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code from a pickle."""
    if not path.exists():
        raise FileNotFoundError(f"mapper checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise MapperMismatchError(f"{path} holds objects other than tensors and was refused (it is loaded with "
                                  "weights_only=True, so a pickle cannot run code): save a plain state dict") from e
    except (RuntimeError, EOFError, KeyError, ValueError) as e:  # torch.load's errors for a non-checkpoint
        raise MapperMismatchError(f"{path} is not a readable torch checkpoint ({type(e).__name__}: {e})") from e


def _is_linear_state(blob: object) -> bool:
    if not isinstance(blob, dict) or len(blob) != 2:
        return False
    keys = sorted(str(k).rsplit(".", 1)[-1] for k in blob)
    return keys == ["bias", "weight"] and all(isinstance(v, torch.Tensor) for v in blob.values())


def check_compatible(found: MapperSpec, expected: MapperSpec, where: str) -> None:
    """Raise MapperMismatchError naming every field where a checkpoint differs from the profile."""
    diffs = [f"{name}: checkpoint {getattr(found, name)!r} vs profile {getattr(expected, name)!r}"
             for name in ("vision", "vision_dim", "llm", "hidden_size", "prefix_length")
             if getattr(found, name) != getattr(expected, name)]
    if found.vision + "-quickgelu" == expected.vision:  # the paper profile's CLIP before it got its QuickGELU
        raise MapperMismatchError(
            f"mapper {where} learnt from {found.vision!r} features computed with GELU, but these weights were trained "
            f"with QuickGELU and the profile now computes them so ({expected.vision!r}): it would be fed features it "
            "never saw; train it again for this profile with `gemel train` (e.g. `gemel train --profile paper`)")
    if diffs:
        raise MapperMismatchError(f"mapper {where} does not fit this profile ({'; '.join(diffs)}): "
                                  "train one for this profile with `gemel train` or choose its profile")
