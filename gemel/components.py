"""The loaded parts of a linker, and what every variant of one loaded linker shares.

`Components` are the models and data `Linker.load` builds (or tests build with tiny models); `Shared` holds
them with what is derived from them once: the KB's vectors and index, its names as token ids, the full-KB trie,
the KB-derived demonstration pool, the image scorers, and the caches of query pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemel.config import LinkerConfig, ProfileError
from gemel.generation.trie import ArrayTrie, Trie
from gemel.image.classes import ClassNames
from gemel.image.clip import SCORER as CLIP_SCORER
from gemel.image.clip import ClipEntityScorer
from gemel.image.facts import PictureFactsCache, load_scorer
from gemel.image.reference import REFERENCE, PictureReference
from gemel.image.scorer import ImageEntityScorer
from gemel.kb.demonstrations import DemonstrationPool, StoredKBPool, kb_examples, load_jsonl_examples
from gemel.kb.entities import KBError, KnowledgeBase
from gemel.kb.names import LazyNames
from gemel.kb.retrieval import VectorIndex
from gemel.kb.store import StoredKB, check_not_partial, open_kb
from gemel.models.embedder import TextEmbedder, mention_in_context
from gemel.models.features import FeatureStore
from gemel.models.llm import LanguageModel
from gemel.models.mapper import FeatureMapper, MapperSpec
from gemel.models.vision import VisionEncoder
from gemel.rank.model import TEXT_RANKER, Ranker, load_ranker
from gemel.rank.trees import TreeRanker
from gemel.sources import resolve
from gemel.types import Example


@dataclass
class Components:
    """The loaded parts of a linker; built by `Linker.load` or by tests with tiny models."""

    lm: LanguageModel
    embedder: TextEmbedder
    kb: KnowledgeBase | StoredKB
    vision: Any | None = None  # VisionEncoder, None for text-only profiles
    mapper: FeatureMapper | None = None
    seed_examples: list[Example] = field(default_factory=list)


class Shared:
    """What every variant of one loaded linker shares: models, the KB with its vectors, index, tokenised
    names (and their reverse map), the full-KB trie and the KB-derived demonstration pool (both built once,
    on first use)."""

    def __init__(self, config: LinkerConfig, parts: Components) -> None:
        self.lm, self.embedder, self.kb, self.vision = parts.lm, parts.embedder, parts.kb, parts.vision
        self.kb_source = config.kb
        if isinstance(self.kb, StoredKB):  # a built KB: nothing tokenised or embedded at load, all mapped
            check_embedder(self.kb, self.embedder)
            self.name_tokens: Sequence[tuple[int, ...]] = LazyNames(self.lm, self.kb)
            self.row_of_tokens: Any = self.name_tokens
            self.kb_index: Any = self.kb.vector_index()
            self.kb_vectors: np.ndarray = self.kb.vectors  # (N, D) float16, memory-mapped
        else:
            self.name_tokens = [self.lm.answer_tokens(t) for t in self.kb.titles]
            self.row_of_tokens = {toks: i for i, toks in enumerate(self.name_tokens)}
            self.kb_index = VectorIndex(self.embedder.dim)
            self.kb_index.add(self.embedder.encode_cached([e.index_text() for e in self.kb],
                                                          f"{config.kb.name}-entries"))
            self.kb_vectors = self.kb_index.freeze()  # the index's (unit) vectors, a view: the KB's only copy
        self.default_features = FeatureStore(self.vision) if self.vision is not None else None
        self._kb_pool: DemonstrationPool | StoredKBPool | None = None
        self._full_trie: Trie | None = None
        self._image_scorers: dict[str, ImageEntityScorer] = {}
        self._rankers: dict[str, Ranker] = {}
        self.picture_facts = PictureFactsCache()  # flatness + colour layout of recent query pictures
        self.remembered: dict[tuple, Any] = {}  # picture memory entries, by example and picture (image.signal)
        self._reference: PictureReference | None = None  # the shipped reference pictures, read on first use
        self.class_names = ClassNames(self.kb)  # ImageNet class -> the KB rows it names (built on first use)

    def image_scorer(self, config: LinkerConfig) -> ImageEntityScorer | ClipEntityScorer | None:
        """The config's image scorer, loaded once per artifact path (variants that only change
        image.candidates share it); None when the config has none."""
        if not config.image.active:
            return None
        c = config.image
        key = c.scorer if c.scorer != CLIP_SCORER else f"{c.scorer}|{c.clip_prompt}"
        if key not in self._image_scorers:
            self._image_scorers[key] = self._load_image_scorer(config)
        return self._image_scorers[key]

    def _load_image_scorer(self, config: LinkerConfig) -> ImageEntityScorer | ClipEntityScorer:
        """``image.scorer = "clip"``: CLIP's own similarity over this KB (entity prompts embedded once, cached on
        disk); otherwise the artifact, checked against the loaded vision encoder and embedder."""
        c = config.image
        if c.scorer == CLIP_SCORER:
            return ClipEntityScorer.for_kb(self.vision, self.kb, c.clip_prompt, c.clip_batch_size)
        return load_scorer(config, self.vision, self.embedder.name, self.kb_vectors, self.kb.titles)

    def picture_reference(self, scorer: Any) -> PictureReference | None:
        """The shipped reference pictures (:mod:`gemel.image.reference`) when their features are this vision
        encoder's and their layouts ``scorer``'s descriptor; None otherwise (CLIP), without a scorer or file."""
        if scorer is None or self.vision is None or not REFERENCE.is_file():
            return None
        if self._reference is None:
            self._reference = PictureReference.load(REFERENCE)
        exemplars = getattr(scorer, "exemplars", None)
        fits = self._reference.fits(self.vision.config, exemplars.config if exemplars is not None else None)
        return self._reference if fits else None

    def ranker(self, config: LinkerConfig) -> Ranker | TreeRanker:
        """The config's ranker (``rank.model``; "" = the shipped one that reads no picture feature,
        :data:`gemel.rank.model.TEXT_RANKER`), loaded once per artifact path."""
        path = resolve(config.rank.model, config.base_dir) if config.rank.active else TEXT_RANKER
        if path is None:
            raise ProfileError(f"rank.model {config.rank.model!r} must be a local file (from `gemel fit-ranker`)")
        key = str(path)
        if key not in self._rankers:
            self._rankers[key] = load_ranker(path)
        return self._rankers[key]

    def kb_pool(self) -> DemonstrationPool | StoredKBPool:
        if self._kb_pool is None and isinstance(self.kb, StoredKB):
            self._kb_pool = StoredKBPool(self.kb)
        if self._kb_pool is None:
            examples = kb_examples(self.kb)
            vecs = self.embedder.encode_cached([mention_in_context(e.text, e.mention) for e in examples],
                                               f"{self.kb_source.name}-demos")
            self._kb_pool = DemonstrationPool(self.embedder, "kb")
            self._kb_pool.add(examples, vecs)
        return self._kb_pool

    def full_trie(self, config: LinkerConfig) -> Trie:
        if self._full_trie is None:
            self._full_trie = prebuilt_trie(config) or ArrayTrie.build(self.name_tokens)
        return self._full_trie


def check_embedder(kb: StoredKB, embedder: TextEmbedder) -> None:
    """Refuse a built KB whose vectors another embedder made: its similarities would be meaningless."""
    if kb.embedder != embedder.name:
        raise KBError(f"the KB {str(kb.folder)!r} was embedded with {kb.embedder!r}, the profile's embedder is "
                      f"{embedder.name!r}: build the KB with this profile (`gemel kb build ... --profile`)")


def kb_path(config: LinkerConfig) -> Path:
    """The profile's KB file or folder; an unfinished `gemel kb build` there is named as such, not as a
    missing path."""
    if not config.kb.source.startswith("package:"):
        check_not_partial(Path(config.base_dir, config.kb.source))
    path = resolve(config.kb.source, config.base_dir)
    if path is None:
        raise ProfileError(f"kb.source {config.kb.source!r} must be a local file or folder")
    return path


def prebuilt_trie(config: LinkerConfig) -> Trie | None:
    """The memory-mapped trie `gemel kb build --profile` wrote beside the KB, if made for this tokenizer."""
    folder = resolve(config.kb.source, config.base_dir)
    stamp = folder / "trie.tokenizer" if folder is not None and folder.is_dir() else None
    if stamp is None or not stamp.exists() or stamp.read_text().strip() != config.llm.source:
        return None
    return ArrayTrie.load(folder / "trie", mmap=True)


def load_parts(config: LinkerConfig, beside: Any | None = None, vision: Any | None = None) -> Components:
    """The loaded parts of a linker for ``config``. ``beside``: a loaded linker whose LLM, embedder and KB are
    reused where ``config`` names the same ones (a Space that switches from one profile to another holds one LLM
    and one KB, not two); ``vision``: an encoder already loaded for ``config.vision``. The rest is loaded."""
    def same(section: str) -> bool:
        return beside is not None and getattr(beside.config, section) == getattr(config, section)

    lm = beside.lm if same("llm") else LanguageModel.load(config.llm, config.base_dir)
    if vision is None and config.vision.kind != "none":
        vision = VisionEncoder.load(config.vision, config.base_dir)
    embedder = beside.embedder if same("embedder") else TextEmbedder.load(config.embedder, config.base_dir)
    kb = beside.kb if same("kb") else open_kb(kb_path(config), name=config.kb.name)
    seed: list[Example] = []
    if config.demos.seed_pool:
        seed_path = resolve(config.demos.seed_pool, config.base_dir)
        seed = load_jsonl_examples(seed_path, "seed") if seed_path else []
    return Components(lm=lm, embedder=embedder, kb=kb, vision=vision, seed_examples=seed,
                      mapper=build_mapper(config, lm, vision))


def build_mapper(config: LinkerConfig, lm: LanguageModel, vision: Any | None) -> FeatureMapper | None:
    """The profile's mapper: a checkpoint (ours or an official .pkl) or an untrained, scaled random one."""
    if vision is None:
        return None
    spec = MapperSpec(vision=config.vision.name, vision_dim=vision.dim, llm=config.llm.source,
                      hidden_size=lm.hidden_size, prefix_length=config.mapper.prefix_length,
                      tokenizer=config.llm.source)
    ckpt = config.mapper.checkpoint
    if ckpt:
        path = resolve(ckpt, config.base_dir)
        if path is None:
            raise FileNotFoundError(f"mapper.checkpoint {ckpt!r} does not exist")
        if path.suffix == ".pkl":
            return FeatureMapper.load_official(path, spec)
        return FeatureMapper.load(path, expected=spec)
    emb_std = float(lm.model.get_input_embeddings().weight.std())
    return FeatureMapper(spec, version="untrained", init_std=emb_std, seed=config.mapper.seed)
