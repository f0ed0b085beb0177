"""`Linker`: the one-call facade over GEMEL's pipeline (``Linker.load()`` then ``linker.link(...)``).

Per query: the frozen vision encoder's feature -> the mapper's k prefix embeddings; the mention in context is
embedded to retrieve (a) n demonstrations (labelled pool + KB-derived pool) and (b) the top K KB candidates;
the interleaved prompt is prefilled once; then either every candidate name is scored by teacher forcing
(``decode.mode = "score"``) or constrained beam search runs over a prefix tree of the candidate names, or of
the whole KB when K = 0 (the paper). Candidates are ranked by ``w_llm * llm_logprob + w_ret * retrieval_sim``;
below ``nil_threshold`` the linker answers NIL (``entity=None``) but still returns the candidates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .config import LinkerConfig, load_profile
from .decoding import Hypothesis, Prefilled, beam_search, prefill, score_sequences
from .demos import DemonstrationPool, Retrieved, kb_examples, load_jsonl_examples, merge
from .embedder import TextEmbedder, query_text as embed_text
from .features import FeatureStore
from .images import ImageInput
from .kb import KnowledgeBase
from .llm import LanguageModel
from .mapper import FeatureMapper, MapperSpec
from .prompt import PromptBuilder, Segment, demo_text, query_text
from .retrieval import VectorIndex
from .sources import resolve
from .trie import ArrayTrie, DictTrie, Trie
from .types import Candidate, Demonstration, Example, Prediction

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A query is unusable (empty caption, mention not in the caption ...); the message says which and why."""


def check_query(text: str, mention: str) -> None:
    if not text or not text.strip():
        raise InputError("the caption is empty: give the text the mention occurs in")
    if not mention or not mention.strip():
        raise InputError("the mention is empty: give the words of the caption to link")
    if mention not in text:
        raise InputError(f"mention {mention!r} does not occur in the caption {text[:80]!r}"
                         " (it must be an exact, case-sensitive substring)")


@dataclass
class Components:
    """The loaded parts of a linker; built by `Linker.load` or by tests with tiny models."""

    lm: LanguageModel
    embedder: TextEmbedder
    kb: KnowledgeBase
    vision: object | None = None  # VisionEncoder, None for text-only profiles
    mapper: FeatureMapper | None = None
    seed_examples: list[Example] = field(default_factory=list)


class Linker:
    def __init__(self, config: LinkerConfig, parts: Components) -> None:
        self.config = config
        self.lm, self.embedder, self.kb = parts.lm, parts.embedder, parts.kb
        self.vision, self.mapper = parts.vision, parts.mapper
        self.features = FeatureStore(parts.vision) if parts.vision is not None else None
        self.prompt = PromptBuilder(self.lm, config.llm.max_prompt_tokens)
        self._name_tokens = [tuple(self.lm.encode(t)) + (self.lm.eos_id,) for t in self.kb.titles]
        self._full_trie: Trie | None = None
        kb_vectors = self.embedder.encode_cached([e.index_text() for e in self.kb], f"{config.kb.name}-entries")
        self._kb_vectors = kb_vectors
        self.kb_index = VectorIndex(self.embedder.dim)
        self.kb_index.add(kb_vectors)
        self.pool = DemonstrationPool(self.embedder, "labelled")
        self.pool.add(parts.seed_examples)
        self.kb_pool = DemonstrationPool(self.embedder, "kb")
        if config.demos.kb_demos:
            examples = kb_examples(self.kb)
            vecs = self.embedder.encode_cached([embed_text(e.text, e.mention) for e in examples],
                                               f"{config.kb.name}-demos")
            self.kb_pool.add(examples, vecs)

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def load(cls, profile: str | Path | LinkerConfig = "offline", **sections: dict) -> "Linker":
        """Load every component of a profile (name, TOML path or config); ``sections`` override fields,
        e.g. ``Linker.load("offline", decode={"candidates": 32}, mapper={"checkpoint": "m.pt"})``."""
        config = profile if isinstance(profile, LinkerConfig) else load_profile(profile)
        if sections:
            config = config.replace(**sections)
        from .vision import VisionEncoder

        t0 = time.perf_counter()
        lm = LanguageModel.load(config.llm, config.base_dir)
        vision = VisionEncoder.load(config.vision, config.base_dir) if config.vision.kind != "none" else None
        embedder = TextEmbedder.load(config.embedder, config.base_dir)
        kb_path = resolve(config.kb.source, config.base_dir)
        if kb_path is None:
            raise ValueError(f"kb.source {config.kb.source!r} must be a local file or folder")
        kb = KnowledgeBase.load(kb_path, name=config.kb.name)
        seed = []
        if config.demos.seed_pool:
            seed_path = resolve(config.demos.seed_pool, config.base_dir)
            seed = load_jsonl_examples(seed_path, "seed") if seed_path else []
        parts = Components(lm=lm, embedder=embedder, kb=kb, vision=vision, seed_examples=seed,
                           mapper=build_mapper(config, lm, vision))
        linker = cls(config, parts)
        log.info("linker %r loaded in %.1f s", config.name, time.perf_counter() - t0)
        return linker

    @property
    def mapper_version(self) -> str:
        return "none" if self.mapper is None else self.mapper.version

    def add_demonstrations(self, examples: Iterable[Example]) -> int:
        """Add labelled examples (e.g. annotators' corrections) to the pool at once; returns how many."""
        examples = list(examples)
        unknown = [e.entity for e in examples if e.entity and e.entity not in self.kb]
        if unknown:
            raise InputError(f"entity {unknown[0]!r} is not in the knowledge base {self.kb.name!r}")
        return self.pool.add(examples)

    def remove_demonstrations(self, ids: Sequence[str]) -> int:
        """Withdraw labelled examples by id (e.g. an annotator undid the correction); returns how many."""
        return self.pool.remove(ids)

    # ---- linking -------------------------------------------------------------------------------
    def link(self, image: ImageInput, text: str, mention: str, *, exclude: Sequence[str] = ()) -> Prediction:
        """Link ``mention`` in ``text`` (and ``image``, a PIL image, path, bytes or None) to a KB entity.

        ``exclude``: ids of pool examples not to use as demonstrations (the item itself when evaluating).
        """
        check_query(text, mention)
        clock = _Clock()
        prefix = self._prefix(image)
        clock.lap("vision")
        q = self.embedder.encode([embed_text(text, mention)])  # (1, D)
        demos = self._demonstrations(q, exclude)
        cand_ids = self._candidate_ids(q)
        clock.lap("retrieval")
        segments = self.prompt.fit([self._segment(r) for r in demos], Segment(query_text(text, mention), prefix))
        demos = demos[len(demos) - (len(segments)):] if segments else []
        embeds = self.prompt.embed(segments + [Segment(query_text(text, mention), prefix)])
        clock.lap("prompt")
        pre = prefill(self.lm.model, embeds)
        clock.lap("prefill")
        hyps = self._decode(pre, cand_ids)
        clock.lap("decode")
        candidates = self._rank(hyps, q)
        best = candidates[0] if candidates else None
        entity = best.name if best and best.score >= self.config.decode.nil_threshold else None
        clock.lap("rank")
        return Prediction(entity=entity, candidates=candidates, demonstrations=[_demo(r) for r in demos],
                          profile=self.config.name, mapper=self.mapper_version, precision=self.lm.dtype_name,
                          timings=clock.laps | {"total": clock.total, "prompt_tokens": float(pre.length)})

    def _prefix(self, image: ImageInput) -> torch.Tensor | None:
        if image is None or self.features is None or self.mapper is None:
            return None
        feature = self.features.get(image)  # (D,)
        with torch.no_grad():
            return self.mapper(feature[None])[0]  # (k, H)

    def _segment(self, r: Retrieved) -> Segment:
        ex = r.example
        prefix = self._prefix(ex.image) if ex.image else None
        return Segment(demo_text(ex.text, ex.mention, ex.entity or ""), prefix)

    def _demonstrations(self, q: np.ndarray, exclude: Sequence[str]) -> list[Retrieved]:
        n = self.config.demos.n
        labelled = self.pool.retrieve(q, n, exclude)
        kb = self.kb_pool.retrieve(q, n, exclude) if self.config.demos.kb_demos else []
        return merge(labelled, kb, n, self.config.demos.max_kb_share)

    def _candidate_ids(self, q: np.ndarray) -> list[int]:
        k = self.config.decode.candidates
        if k == 0:
            return []
        _, ids = self.kb_index.search(q, min(k, len(self.kb)))
        return [int(i) for i in ids[0] if i >= 0]

    def _decode(self, pre: Prefilled, cand_ids: list[int]) -> list[Hypothesis]:
        d = self.config.decode
        if d.mode == "score":
            seqs = [self._name_tokens[i] for i in cand_ids]
            sums = score_sequences(self.lm.model, pre, seqs)
            return [Hypothesis(s, v) for s, v in zip(seqs, sums)]
        trie = self._trie(cand_ids)
        return beam_search(self.lm.model, pre, lambda toks: trie.allowed(toks), self.lm.eos_id, d.num_beams,
                           d.max_new_tokens, d.length_penalty)

    def _trie(self, cand_ids: list[int]) -> Trie:
        if cand_ids:
            return DictTrie(self._name_tokens[i] for i in cand_ids)
        if self._full_trie is None:
            self._full_trie = self._prebuilt_trie() or ArrayTrie.build(self._name_tokens)
        return self._full_trie

    def _prebuilt_trie(self) -> Trie | None:
        """The memory-mapped trie `gemel kb build --profile` wrote beside the KB, if made for this tokenizer."""
        folder = resolve(self.config.kb.source, self.config.base_dir)
        stamp = folder / "trie.tokenizer" if folder is not None and folder.is_dir() else None
        if stamp is None or not stamp.exists() or stamp.read_text().strip() != self.config.llm.source:
            return None
        return ArrayTrie.load(folder / "trie", mmap=True)

    def _rank(self, hyps: list[Hypothesis], q: np.ndarray) -> list[Candidate]:
        d = self.config.decode
        by_tokens = {toks: i for i, toks in enumerate(self._name_tokens)}
        out = []
        for h in hyps:
            i = by_tokens.get(h.tokens)
            if i is None:
                continue  # cannot happen through the trie; guards against tokenizer surprises
            sim = float(self._kb_vectors[i] @ q[0])
            llm = h.normalised(d.length_penalty)
            e = self.kb.entities[i]
            out.append(Candidate(e.title, d.w_llm * llm + d.w_ret * sim, llm, sim, e.description))
        return sorted(out, key=lambda c: c.score, reverse=True)


def build_mapper(config: LinkerConfig, lm: LanguageModel, vision: object | None) -> FeatureMapper | None:
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
    emb_std = float(lm.model.get_input_embeddings().weight.float().std())  # same mapper in every precision
    return FeatureMapper(spec, version="untrained", init_std=emb_std, seed=config.mapper.seed)


def _demo(r: Retrieved) -> Demonstration:
    ex = r.example
    return Demonstration(text=ex.text, mention=ex.mention, entity=ex.entity or "", image=ex.image,
                         similarity=r.similarity, source=ex.source)


class _Clock:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start
