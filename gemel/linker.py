"""`Linker`: the one-call facade over GEMEL's pipeline (``Linker.load()`` then ``linker.link(...)``).

Per query: the frozen vision encoder's feature -> the mapper's k prefix embeddings; the mention in context is
embedded to retrieve (a) n demonstrations (labelled pool + KB-derived pool) and (b) the top K KB candidates;
the interleaved prompt is prefilled once; then either every candidate name is scored by teacher forcing
(``decode.mode = "score"``) or constrained beam search runs over a prefix tree of the candidate names, or of
the whole KB when K = 0 (the paper). Every candidate's features (:mod:`gemel.rank.features`: the LLM's
log-probability, retrieval, the name, the picture's image score, people's decisions) are computed once and the
ranker (:mod:`gemel.rank.model`, ``[rank] model``) turns them into a probability per candidate; below its
``nil_below`` the linker answers NIL (``entity=None``) but still returns the candidates.

The public seams, so that training, benchmarks and ablations never reach inside:

- :meth:`Linker.build_prompt` builds a query's prompt (demonstrations, segments, candidate ids, embeddings)
  exactly as :meth:`Linker.link` does; given a trainable mapper, gradients flow through every visual prefix.
- :meth:`Linker.decode` and :meth:`Linker.rank_learned` are the two steps after the prefill.
- :meth:`Linker.replace` returns a variant (another config, pool, feature source or mapper) that shares the
  loaded models, tokenised names and indexes: nothing of the original linker changes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gemel.components import Components, Shared, build_mapper, kb_path
from gemel.config import LinkerConfig, ProfileError, load_profile
from gemel.errors import InputError
from gemel.generation.decoding import Hypothesis, Prefilled, beam_search, prefill, refill, score_sequences
from gemel.generation.prompt import PromptBuilder, Segment, demo_text, query_text
from gemel.generation.trie import DictTrie, Trie
from gemel.image.clip import SCORER as CLIP_SCORER
from gemel.image.facts import merge_candidates, top_rows
from gemel.image.sense_prior import SensePriorCache, centred, neutral_segment
from gemel.image.signal import ImageSignal
from gemel.images import ImageInput, Picture
from gemel.kb.demonstrations import DemonstrationPool, Retrieved, load_jsonl_examples, merge
from gemel.kb.entities import KnowledgeBase
from gemel.kb.index import ExactIndex, IVFIndex
from gemel.kb.names import named_as
from gemel.kb.retrieval import VectorIndex
from gemel.kb.store import StoredKB, open_kb
from gemel.memory import release_unused_gpu_libraries, trim
from gemel.models.embedder import TextEmbedder, mention_in_context
from gemel.models.llm import LanguageModel
from gemel.models.mapper import FeatureMapper
from gemel.rank.decisions import StoredDecisions, nearest_decisions, nearest_picture_entities, picture_similarities
from gemel.rank.features import NAMES as FEATURE_NAMES
from gemel.rank.features import Evidence, PictureEvidence, candidate_features
from gemel.rank.model import RankerError, fitted_path, scorer_version
from gemel.rank.reasons import explain
from gemel.sources import resolve
from gemel.text import name_forms, names_sense
from gemel.types import Candidate, Demonstration, Example, Prediction

log = logging.getLogger(__name__)

__all__ = ["Linker", "QueryPrompt", "InputError", "check_query"]

_SAME = object()  # `replace(mapper=...)` default: keep the mapper (None is a value: no visual prefix)
MAX_CAPTION_CHARS = 20_000  # refused before tokenising: far beyond any caption, and beyond every prompt budget


def check_query(text: str, mention: str, verbatim: bool = True) -> None:
    """Refuse an unusable query with a sentence that names the problem (before any model runs). ``verbatim``
    (people's queries): the mention must occur in the caption; data sets may hold mentions that do not."""
    if not text or not text.strip():
        raise InputError("the caption is empty: give the text the mention occurs in")
    if len(text) > MAX_CAPTION_CHARS:
        raise InputError(f"the caption is {len(text):,} characters, over the limit of {MAX_CAPTION_CHARS:,}: "
                         "give the sentence or paragraph the mention occurs in")
    if not mention or not mention.strip():
        raise InputError("the mention is empty: give the words of the caption to link")
    if verbatim and mention not in text:
        raise InputError(f"mention {mention!r} does not occur in the caption {text[:80]!r}"
                         " (it must be an exact, case-sensitive substring)")


@dataclass
class QueryPrompt:
    """Everything `Linker.link` builds before the LLM runs, for one query."""

    query: np.ndarray  # (1, D) embedding of the mention in context
    demonstrations: list[Retrieved]  # the ones kept in the prompt, in prompt order (most similar last)
    segments: list[Segment]  # one per demonstration, then the query's (ending in "[Answer]")
    candidate_ids: list[int]  # KB rows to decode over ([] = the whole KB)
    embeds: torch.Tensor  # (1, T, H) prompt embeddings
    timings: dict[str, float] = field(default_factory=dict)  # seconds: vision, retrieval, prompt
    picture: PictureEvidence | None = None  # what the image scorer says of the query picture (None: no score)
    # the stored decisions (the excluded ones left out) and each one's picture cosine with the query's, computed
    # once for the candidates and the features (None: not computed, e.g. candidates given)
    stored: StoredDecisions | None = None

    @property
    def length(self) -> int:
        return int(self.embeds.shape[1])


class Linker:
    """GEMEL over one profile. Build with `Linker.load`; derive variants with `replace`."""

    def __init__(self, config: LinkerConfig, parts: Components) -> None:
        shared = Shared(config, parts)
        pool = DemonstrationPool(shared.embedder, "labelled")
        pool.add(parts.seed_examples)
        self._setup(config, shared, pool, shared.default_features, parts.mapper)

    def _setup(self, config: LinkerConfig, shared: Shared, pool: DemonstrationPool, features: Any,
               mapper: FeatureMapper | None) -> None:
        self.config = config
        self._shared = shared
        self.labelled_pool = pool
        self.features = features
        self._sense_priors = SensePriorCache()  # per variant: its mapper makes the demonstrations' prefixes
        self.mapper = mapper
        self.image_scorer = shared.image_scorer(config)  # loaded now, so that a bad artifact fails at load time
        self.image_signal = ImageSignal(self.image_scorer, features, shared.kb, shared.picture_facts, shared.remembered,
                                        shared.picture_reference(self.image_scorer), shared.class_names)
        self.prompt = PromptBuilder(shared.lm, config.llm.max_prompt_tokens, bos=config.llm.bos)
        self.awaits_fit = False  # the profile fits its ranker at start and none is fitted for its scorer yet
        if config.rank.fit_at_start and not config.rank.active:  # fitted at an earlier first start, if cached
            fitted = with_fitted_ranker(config, shared, self.image_scorer)
            self.awaits_fit = fitted is config
            self.config = config = fitted
        self.ranker = shared.ranker(config)  # the decision rule
        self.ranker.check_scorer(scorer_version(self.image_scorer), config.rank.model or "the shipped ranker")

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def load(cls, profile: str | Path | LinkerConfig = "offline", **sections: dict) -> "Linker":
        """Load every component of a profile (name, TOML path or config); ``sections`` override fields,
        e.g. ``Linker.load("offline", decode={"candidates": 32}, mapper={"checkpoint": "m.pt"})``."""
        config = profile if isinstance(profile, LinkerConfig) else load_profile(profile)
        if sections:
            config = config.replace(**sections)
        from gemel.models.vision import VisionEncoder

        t0 = time.perf_counter()
        lm = LanguageModel.load(config.llm, config.base_dir)
        vision = VisionEncoder.load(config.vision, config.base_dir) if config.vision.kind != "none" else None
        embedder = TextEmbedder.load(config.embedder, config.base_dir)
        kb = open_kb(kb_path(config), name=config.kb.name)
        seed = []
        if config.demos.seed_pool:
            seed_path = resolve(config.demos.seed_pool, config.base_dir)
            seed = load_jsonl_examples(seed_path, "seed") if seed_path else []
        parts = Components(lm=lm, embedder=embedder, kb=kb, vision=vision, seed_examples=seed,
                           mapper=build_mapper(config, lm, vision))
        linker = cls(config, parts)
        linker.kb_pool  # noqa: B018  (built now, not in the first link: its garbage is trimmed with the loaders')
        trim()  # the loaders' temporary buffers: freed, but kept by malloc otherwise (gemel/memory.py)
        release_unused_gpu_libraries()  # ~200 MB of CUDA library pages a CPU-only process never runs again
        log.info("linker %r loaded in %.1f s", config.name, time.perf_counter() - t0)
        return linker

    def replace(self, *, config: LinkerConfig | None = None, pool: DemonstrationPool | Iterable[Example] | None = None,
                features: Any = None, mapper: Any = _SAME, ranker: Any = _SAME) -> "Linker":
        """A variant that shares this linker's loaded models, KB, indexes and tokenised names; this linker is
        left unchanged. ``pool``: a `DemonstrationPool`, or examples for a fresh labelled pool (``[]`` = none);
        ``features``: an object with ``get(image) -> (D,) tensor`` (e.g. precomputed features); ``mapper``:
        another mapper (``None`` = no visual prefix); ``ranker``: another decision rule (a
        `gemel.rank.model.Ranker` or `gemel.rank.trees.TreeRanker`). ``config`` may change everything but the loaded
        components (llm, vision, embedder, kb): those need `Linker.load`."""
        config = config or self.config
        changed = [s for s in ("llm", "vision", "embedder", "kb") if _identity(getattr(config, s), s)
                   != _identity(getattr(self.config, s), s)]
        if changed:
            raise ProfileError(f"replace() cannot change the loaded component(s) {changed}: load another linker "
                               "with Linker.load(profile) for that")
        if pool is None:
            pool = self.labelled_pool
        elif not isinstance(pool, DemonstrationPool):
            fresh = DemonstrationPool(self.embedder, "labelled")
            fresh.add(pool)
            pool = fresh
        variant = object.__new__(type(self))
        variant._setup(config, self._shared, pool, self.features if features is None else features,
                       self.mapper if mapper is _SAME else mapper)
        if ranker is _SAME:  # this linker's own, unless the config names another
            ranker = self.ranker if config.rank == self.config.rank else variant.ranker
        if ranker is None:
            raise ProfileError("replace(ranker=None): every linker decides with a ranker; give a Ranker (e.g. "
                               "Ranker.uniform() to gather features without deciding)")
        variant.ranker = ranker
        return variant

    # ---- the loaded parts (shared by every variant) ----------------------------------------------
    @property
    def lm(self) -> LanguageModel:
        return self._shared.lm

    @property
    def embedder(self) -> TextEmbedder:
        return self._shared.embedder

    @property
    def kb(self) -> KnowledgeBase | StoredKB:
        return self._shared.kb

    @property
    def vision(self) -> Any:
        return self._shared.vision

    @property
    def kb_index(self) -> VectorIndex | ExactIndex | IVFIndex:
        """The KB entries' search index: ``search(queries, k) -> (sims, rows)``, best first."""
        return self._shared.kb_index

    @property
    def kb_vectors(self) -> np.ndarray:
        """(N, D) unit "title: description" vectors of the KB entries, read-only (a view of the index's own, or
        a built KB's memory-mapped float16 ones): retrieval similarity is their dot product with the query."""
        return self._shared.kb_vectors

    @property
    def kb_pool(self) -> DemonstrationPool | None:
        """The KB-derived demonstrations, when the config uses them (built once, on first use)."""
        return self._shared.kb_pool() if self.config.demos.kb_demos else None

    @property
    def mapper_version(self) -> str:
        return "none" if self.mapper is None else self.mapper.version

    def row_of(self, tokens: tuple[int, ...]) -> int | None:
        """The KB row whose name these token ids spell (as `name_tokens` gives them), or None."""
        return self._shared.row_of_tokens.get(tuple(tokens))

    def name_tokens(self, row: int) -> tuple[int, ...]:
        """The token ids (ending in EOS) of the KB entity at ``row``, as decoding sees its name."""
        return self._shared.name_tokens[row]

    # ---- demonstrations --------------------------------------------------------------------------
    def add_demonstrations(self, examples: Iterable[Example | Mapping[str, Any]]) -> int:
        """Add labelled examples (e.g. annotators' corrections, as `Example`s or their dicts) to the pool at
        once; an example whose id is already there replaces it. Returns how many rows were added."""
        examples = [e if isinstance(e, Example) else Example.from_dict(dict(e)) for e in examples]
        unknown = [e.entity for e in examples if e.entity and e.entity not in self.kb]
        if unknown:
            raise InputError(f"entity {unknown[0]!r} is not in the knowledge base {self.kb.name!r}")
        return self.labelled_pool.add(examples)

    def remove_demonstrations(self, ids: Sequence[str]) -> int:
        """Withdraw labelled examples by id (e.g. an annotator undid the correction); returns how many."""
        return self.labelled_pool.remove(ids)

    def retrieve_demonstrations(self, query: np.ndarray, exclude: Sequence[str] = (), caption: str | None = None,
                                image: ImageInput = None) -> list[Retrieved]:
        """The n demonstrations for a (1, D) query embedding, least similar first (prompt order). With
        ``demos.same_caption = "drop"``, labelled examples of the query's own ``caption`` are left out: with
        another picture or another mention they would be copied, not learnt from (the exact item itself is
        answered by the memory, see `link`). With ``demos.w_image`` > 0 and a query ``image``, the labelled
        examples are ranked by text similarity + w_image * the cosine of the two pictures' vision features
        (their ``similarity`` is that sum; an example without a picture adds 0)."""
        n, w_image = self.config.demos.n, self.config.demos.w_image
        if caption is not None and self.config.demos.same_caption == "drop":
            exclude = [*exclude, *self.labelled_pool.ids_with_text(caption)]
        query_feature = self.features.get(image) if w_image > 0 and image is not None and self.features else None
        if query_feature is None:
            labelled = self.labelled_pool.retrieve(query, n, exclude)
        else:
            wide = self.labelled_pool.retrieve(query, 4 * n, exclude)
            labelled = sorted(self._with_picture_similarity(wide, query_feature, w_image),
                              key=lambda r: r.similarity, reverse=True)[:n]
        kb_pool = self.kb_pool
        kb = kb_pool.retrieve(query, n, exclude) if kb_pool is not None else []
        return merge(labelled, kb, n, self.config.demos.max_kb_share)

    def _with_picture_similarity(self, retrieved: Sequence[Retrieved], query_feature: torch.Tensor,
                                 w_image: float) -> list[Retrieved]:
        q = torch.nn.functional.normalize(query_feature.float(), dim=0)
        out = []
        for r in retrieved:
            feature = self.features.get(r.example.image) if r.example.image else None
            cos = float(q @ torch.nn.functional.normalize(feature.float(), dim=0)) if feature is not None else 0.0
            out.append(Retrieved(r.example, r.similarity + w_image * cos))
        return out

    def retrieve_candidates(self, query: np.ndarray, names: Sequence[str] | None = None,
                            image_scores: np.ndarray | None = None, mention: str | None = None,
                            class_scores: Mapping[int, float] | None = None) -> list[int]:
        """KB rows to decode over: the top ``decode.candidates`` by similarity ([] = the whole KB), then (a built
        KB) the entries whose surface name or an alias is the ``mention``, then the picture's top
        ``image.candidates`` by ``image_scores`` and top ``image.class_candidates`` by ``class_scores`` (the
        encoder's ImageNet classes, :mod:`gemel.image.classes`) that are not among them; or the rows of ``names``
        when the data set gives its own candidates (unknown names are dropped, with a warning)."""
        if names is not None:
            rows = [self.kb.index(n) for n in names if n in self.kb]
            if len(rows) < len(names):
                log.warning("%d of %d given candidates are not in the KB %r", len(names) - len(rows), len(names),
                            self.kb.name)
            if not rows:
                raise InputError(f"none of the {len(names)} given candidates is in the knowledge base {self.kb.name!r}")
            return rows
        k = self.config.decode.candidates
        if k == 0:
            return []
        _, ids = self.kb_index.search(query, min(k, len(self.kb)))
        rows = [int(i) for i in ids[0] if i >= 0]
        for form in name_forms(mention) if mention else ():  # the entries named so (surface name or alias) join
            rows += [r for r in self.kb.rows_named(form) if r not in rows]
        if image_scores is not None and self.config.image.candidates:
            rows = merge_candidates(rows, top_rows(image_scores, self.config.image.candidates))
        if class_scores and self.config.image.class_candidates:
            best = sorted(class_scores, key=lambda r: (-class_scores[r], r))[:self.config.image.class_candidates]
            rows = merge_candidates(rows, best)
        return rows

    def labelled(self, exclude: Sequence[str] = ()) -> list[Example]:
        """The live labelled examples (seed pool, people's decisions) but those ``exclude`` names by id or by
        input: the item itself (evaluation, fitting, a re-link of a decided item) is no evidence about itself."""
        excluded = set(exclude)
        return [e for e in self.labelled_pool.live() if e.id not in excluded and e.meta.get("input_key") not in excluded]

    def image_scores(self, image: ImageInput) -> np.ndarray | None:
        """(N_kb,) image scores of the query picture against every KB entity (the image scorer's fused
        similarity, z-scored over the KB: the ranker's image features are made from them), or None: no picture,
        no scorer or no vision feature. Reuses the picture's vision feature (the one the prefix is made from)."""
        picture = self.image_signal.picture(Picture.of(image))
        return None if picture is None else picture.z

    # ---- the prompt ------------------------------------------------------------------------------
    def build_prompt(self, image: ImageInput, text: str, mention: str, *, exclude: Sequence[str] = (),
                     candidates: Sequence[str] | None = None, mapper: torch.nn.Module | None = None,
                     verbatim: bool = True) -> QueryPrompt:
        """The query's prompt exactly as `link` builds it. ``mapper`` (default: the linker's) turns image
        features into visual prefixes; called in grad mode with a trainable mapper, gradients reach it through
        every prefix (the demonstrations' and the query's). ``verbatim=False`` accepts a mention that is not in
        the caption (a data set's, prompted as given, as the official code does)."""
        check_query(text, mention, verbatim)
        image = Picture.of(image)  # read, hashed and decoded once for every step below
        t0 = time.perf_counter()
        query = self.embedder.encode([mention_in_context(text, mention)])  # (1, D)
        demos = self.retrieve_demonstrations(query, exclude, caption=text, image=image)
        t_img = time.perf_counter()
        picture = self.image_signal.picture(image)  # its top entities join, whatever its style
        t_img = time.perf_counter() - t_img
        cand_ids = self.retrieve_candidates(query, candidates, picture and picture.scores, mention,
                                            picture and picture.classes)
        stored = None
        if candidates is None and cand_ids:  # [] = the whole KB (decode.candidates = 0): they are in it
            stored = self.stored_decisions(image, mention, exclude)
            cand_ids += [r for r in self.decision_rows(image, mention, exclude, stored) if r not in cand_ids]
        t1 = time.perf_counter()
        prefixes = self.visual_prefixes([r.example.image for r in demos] + [image], mapper)
        t2 = time.perf_counter()
        segments = [Segment(demo_text(r.example.text, r.example.mention, r.example.entity or ""), p)
                    for r, p in zip(demos, prefixes)]
        last = Segment(query_text(text, mention), prefixes[-1])
        kept = self.prompt.fit(segments, last)
        demos = demos[len(demos) - len(kept):]
        embeds = self.prompt.embed(kept + [last])  # (1, T, H)
        timings = {"retrieval": t1 - t0 - t_img, "vision": t2 - t1 + t_img, "prompt": time.perf_counter() - t2}
        return QueryPrompt(query, demos, kept + [last], cand_ids, embeds, timings, picture, stored)

    def visual_prefixes(self, images: Sequence[ImageInput], mapper: torch.nn.Module | None = None
                        ) -> list[torch.Tensor | None]:
        """One (k, H) prefix per image (None for no image, or a text-only linker), all mapped in one batch."""
        mapper = mapper if mapper is not None else self.mapper
        if mapper is None or self.features is None:
            return [None] * len(images)
        feats = [self.features.get(im) if im is not None else None for im in images]
        present = [f for f in feats if f is not None]
        if not present:
            return [None] * len(images)
        device = next(mapper.parameters()).device
        mapped = iter(mapper(torch.stack(present).to(device)))  # (m, k, H)
        return [None if f is None else next(mapped) for f in feats]

    # ---- linking -------------------------------------------------------------------------------
    def link(self, image: ImageInput, text: str, mention: str, *, exclude: Sequence[str] = (),
             candidates: Sequence[str] | None = None, verbatim: bool = True) -> Prediction:
        """Link ``mention`` in ``text`` (and ``image``, a PIL image, path, bytes or None) to a KB entity.

        ``exclude``: ids of pool examples (or inputs) not to use as demonstrations (the item itself when
        evaluating); ``candidates``: KB titles to choose among instead of the retrieved ones; ``verbatim=False``:
        the mention need not occur in the caption (data sets).
        """
        t0 = time.perf_counter()
        image = Picture.of(image)  # the prompt, the image score and the recall share one read of it
        decided = self.labelled_pool.recall(text, mention, image, exclude)  # a person decided this very item
        if decided is not None:  # it answers; the model's own answer and reasons are computed without it
            exclude = (*exclude, *(k for k in (decided.id, decided.meta.get("input_key")) if k))
        with torch.no_grad():
            qp = self.build_prompt(image, text, mention, exclude=exclude, candidates=candidates, verbatim=verbatim)
            t1 = time.perf_counter()
            pre = prefill(self.lm.model, qp.embeds)
            t2 = time.perf_counter()
            hyps = self.decode(pre, qp.candidate_ids)
            t3 = time.perf_counter()
            senses = self.sense_rows(hyps, mention)
            raw_prior = self.sense_prior(qp, mention, senses, pre) if len(senses) >= 2 else {}  # uses up pre
            t_prior = time.perf_counter() - t3
        rows, x = self.candidate_features(qp, hyps, mention, image, centred(raw_prior) if raw_prior else {},
                                          exclude)
        ranked, entity = self.rank_learned(rows, x, hyps)
        t4 = time.perf_counter()
        timings = {**qp.timings, "prefill": t2 - t1, "decode": t3 - t2, "sense_prior": t_prior,
                   "rank": t4 - t3 - t_prior, "total": t4 - t0}
        why = explain([c.to_dict() for c in ranked], entity).to_dict()  # the model's own answer, not memory's
        if self.awaits_fit:  # the answer says its ranker is not fitted on the profile's image scorer yet
            why = with_rule(why, unfitted_rule(self.config))
        scorer = self.image_scorer.version if self.image_scorer is not None and image is not None else ""
        return Prediction(entity=decided.entity if decided else entity, candidates=ranked, why=why,
                          image_scorer=scorer, demonstrations=[_demo(r) for r in qp.demonstrations], profile=self.config.name,
                          mapper=self.mapper_version, precision=self.lm.dtype_name, timings=timings,
                          prompt_tokens=pre.length, source="correction" if decided else "model",
                          corrected_by=decided.meta.get("annotator") if decided else None,
                          image=image_use(image, x, self.ranker.reads_picture))

    def decode(self, pre: Prefilled, candidate_ids: Sequence[int]) -> list[Hypothesis]:
        """The LLM's hypotheses after a prefilled prompt: every candidate scored (``decode.mode="score"``), or
        constrained beam search over the candidates' prefix tree (the whole KB's when there are none)."""
        d = self.config.decode
        if d.mode == "score":
            seqs = [self.name_tokens(i) for i in candidate_ids]
            sums = score_sequences(self.lm.model, pre, seqs)
            return [Hypothesis(s, v) for s, v in zip(seqs, sums)]
        trie = self._trie(candidate_ids)
        return beam_search(self.lm.model, pre, trie.allowed, self.lm.eos_id, d.num_beams, d.max_new_tokens,
                           d.length_penalty)

    def _trie(self, candidate_ids: Sequence[int]) -> Trie:
        if candidate_ids:
            return DictTrie(self.name_tokens(i) for i in candidate_ids)
        return self._shared.full_trie(self.config)

    def sense_rows(self, hyps: Sequence[Hypothesis], mention: str | None) -> list[int]:
        """KB rows of the hypotheses that are senses the mention names (:func:`gemel.text.names_sense`)."""
        if not mention:
            return []
        rows = [self._shared.row_of_tokens.get(h.tokens) for h in hyps]
        return [r for r in rows if r is not None and names_sense(mention, named_as(mention, self.kb.entities[r]))]

    def sense_prior(self, qp: QueryPrompt, mention: str, rows: Sequence[int], pre: Prefilled | None = None
                    ) -> dict[int, float]:
        """Each row's log-probability (``decode.length_penalty``) under the content-free query of
        :mod:`gemel.image.sense_prior` (the query's demonstrations, the caption replaced by the bare mention, no
        picture), not centred; kept per (mention, demonstrations, rows). ``pre``: the query's prefilled prompt,
        whose cached demonstrations are reused (and which is used up: decode before this)."""
        key = (mention, tuple(s.text for s in qp.segments[:-1]), tuple(rows))
        prior = self._sense_priors.get(key)
        if prior is None:
            seqs = [self.name_tokens(r) for r in rows]
            with torch.no_grad():
                neutral = neutral_segment(mention)
                keep = pre.length - self.prompt.length(qp.segments[-1]) if pre is not None else 0
                if keep < 1:  # nothing cached before the query (no demonstrations, no BOS): one fresh pass
                    pre = prefill(self.lm.model, self.prompt.embed(qp.segments[:-1] + [neutral]))
                else:  # the demonstrations' cache stays; only the content-free query runs
                    tail = self.prompt.embed([neutral])[:, len(self.prompt.bos_ids):]
                    pre = refill(self.lm.model, pre, keep, tail)
                sums = score_sequences(self.lm.model, pre, seqs)
            lp = self.config.decode.length_penalty
            prior = {r: Hypothesis(s, v).normalised(lp) for r, s, v in zip(rows, seqs, sums)}
            self._sense_priors.put(key, prior)
        return prior

    def stored_decisions(self, image: ImageInput, mention: str, exclude: Sequence[str] = ()) -> StoredDecisions:
        """The stored decisions (those in ``exclude`` left out) and each one's picture cosine with the query's
        (:func:`gemel.rank.decisions.picture_similarities`)."""
        decisions = self.labelled_pool.decisions(exclude)
        return decisions, picture_similarities(decisions, self.features, image, mention) if decisions else []

    def decision_rows(self, image: ImageInput, mention: str, exclude: Sequence[str] = (),
                      stored: StoredDecisions | None = None) -> list[int]:
        """KB rows of the stored decisions whose pictures are nearest the query's (``rank.decision_candidates``):
        a nominal mention ("the animal") retrieves none of them from text. ``stored``: already computed."""
        k = self.config.rank.decision_candidates
        if k == 0 or image is None:
            return []
        decisions, pictures = stored if stored is not None else self.stored_decisions(image, mention, exclude)
        return [self.kb.index(e) for e in nearest_picture_entities(decisions, pictures, k) if e in self.kb]

    def candidate_features(self, qp: QueryPrompt, hyps: Sequence[Hypothesis], mention: str, image: ImageInput,
                           prior: Mapping[int, float], exclude: Sequence[str] = ()) -> tuple[list[int], np.ndarray]:
        """The KB rows of the hypotheses and their (C, F) features (:mod:`gemel.rank.features`), computed once
        per link whatever rule decides. ``prior``: row -> the sense's centred prior under the bare mention."""
        kept = [(r, h) for h in hyps for r in [self.row_of(h.tokens)] if r is not None]
        if len(kept) < len(hyps):  # the trie only spells KB names: a tokenizer that does not round-trip would do this
            log.warning("dropping %d hypothesis(es) that are no KB name", len(hyps) - len(kept))
        rows = [r for r, _ in kept]
        entities = [self.kb.entities[r] for r in rows]
        picture, memory = self.image_signal.evidence(image, mention, self.labelled(exclude), qp.picture)
        decisions, pictures = qp.stored if qp.stored is not None else self.stored_decisions(image, mention, exclude)
        titles = [e.title for e in entities]
        near = nearest_decisions(decisions, qp.query, pictures, titles)
        levels = self.image_signal.levels(image, titles) if memory or near else {}  # only a store's evidence needs them
        ev = Evidence(mention, titles, [e.aliases for e in entities], rows,
                      [h.logprob for _, h in kept], [len(h.tokens) for _, h in kept],
                      [float(self.kb_vectors[r] @ qp.query[0]) for r in rows], prior, picture, memory, near, levels)
        return rows, candidate_features(ev)

    def rank_learned(self, rows: Sequence[int], x: np.ndarray, hyps: Sequence[Hypothesis]
                     ) -> tuple[list[Candidate], str | None]:
        """Candidates ordered by the ranker's probability (score: its logit), and the answer: the most probable,
        or NIL when that probability is below the ranker's ``nil_below``."""
        lp = self.config.decode.length_penalty
        llm = {r: h.normalised(lp) for h in hyps for r in [self.row_of(h.tokens)] if r is not None}
        probs, parts = self.ranker.probabilities(x), self.ranker.contributions(x)
        out = []
        for i, r in enumerate(rows):
            e, f = self.kb.entities[r], dict(zip(FEATURE_NAMES, map(float, x[i])))
            image = f["image_drawing"] + f["image_photo"] if f["image_top"] > 0 else None  # z over the KB
            out.append(Candidate(e.title, float(parts[i].sum()), llm[r], f["retrieval_sim"], e.description,
                                 image_score=image, sense_prior=f["sense_prior"] or None, features=f,
                                 probability=float(probs[i]), contributions=dict(zip(FEATURE_NAMES, map(float, parts[i])))))
        out.sort(key=lambda c: c.probability, reverse=True)
        entity = out[0].name if out and out[0].probability >= self.ranker.nil_below else None
        return out, entity


def with_fitted_ranker(config: LinkerConfig, shared: Any, scorer: Any) -> LinkerConfig:
    """``config`` naming the ranker fitted for ``scorer`` at an earlier first start (:func:`fitted_path`), when
    one is cached and fits this code and scorer; else ``config`` (its unfitted rule decides until one is fitted)."""
    path = fitted_path(scorer_version(scorer))
    if not path.is_file():
        return config
    fitted = config.replace(rank={"model": str(path)})
    try:
        shared.ranker(fitted).check_scorer(scorer_version(scorer), path)
    except RankerError as e:  # other features, another scorer: refitted at the next first start
        log.warning("not using the cached ranker: %s", e)
        return config
    return fitted


def unfitted_rule(config: LinkerConfig) -> str:
    """One line on the rule that decides while a profile that fits its ranker at start has none yet."""
    scorer = "CLIP" if config.image.scorer == CLIP_SCORER else "the image scorer"
    return (f"decided by the shipped ranker that reads no picture feature (no ranker fitted on {scorer}'s scores "
            "yet)")


def with_rule(why: dict[str, Any], rule: str) -> dict[str, Any]:
    """The explanation with the line on the rule that decided: its own key, and after the sentence."""
    sentence = why.get("sentence", "")
    said = f"{sentence.rstrip('.')}; {rule}." if sentence else f"{rule[0].upper()}{rule[1:]}."
    return {**why, "sentence": said, "rule": rule}


def image_use(image: ImageInput, x: np.ndarray, weighed: bool = True) -> str:
    """One line on how the picture took part in the answer (``Prediction.image``); ``weighed``: the ranker reads
    the picture's features."""
    if image is None:
        return ""
    if not len(x) or not x[:, FEATURE_NAMES.index("image_top")].any():
        return "off: no image score for this picture (no scorer, or no vision feature)"
    if not weighed:
        return "shown, not weighed: the ranker deciding reads no picture feature (the prompt still holds the picture)"
    flat = FEATURE_NAMES.index("image_drawing"), FEATURE_NAMES.index("image_photo")
    kind = "a drawing" if np.abs(x[:, flat[0]]).sum() >= np.abs(x[:, flat[1]]).sum() else "a photo"
    return f"weighed by the ranker, as {kind}"


def _identity(section: Any, name: str) -> Any:
    """What of a config section is baked into loaded models (``llm.max_prompt_tokens`` is not)."""
    fields = dataclasses.asdict(section)
    if name == "llm":  # the prompt's budget and BOS are the prompt builder's, not the loaded model's
        fields.pop("max_prompt_tokens")
        fields.pop("bos")
    return fields


def _demo(r: Retrieved) -> Demonstration:
    ex = r.example
    return Demonstration(text=ex.text, mention=ex.mention, entity=ex.entity or "", image=ex.image,
                         similarity=r.similarity, source=ex.source)
