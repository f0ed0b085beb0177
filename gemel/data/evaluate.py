"""Running a linker over a labelled data set, and the report: GEMEL's exact-match accuracy and its diagnostics.

The headline metric is the paper's (Shi et al. 2024; ``calc_acc`` of github.com/HITsz-TMG/GEMEL): the share of
mentions whose predicted entity name equals the gold one (`gemel.data.metrics`), with a Wilson interval, recall@k of
the ranked candidates, NIL precision/recall and accuracy per type. Every comparison also shows the
*embedding-lookup baseline* (:func:`baseline_predict`): the KB entry most similar to ``"mention | text"``, with
no LLM at all, i.e. what retrieval alone already gets right.

Also here, because training, evaluation and calibration share them: :func:`load_examples` (any format
`gemel.data.readers.read_dataset` reads) and :class:`PrecomputedFeatures`, which puts a
data set's precomputed image features (GEMEL's ``clip_vit_large_patch14_1024.hdf5``) in place of the vision
encoder, so the paper's released data runs without its images.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemel.data.metrics import EvalConfig, EvalReport, evaluate, exact_match
from gemel.errors import GemelError
from gemel.images import Picture, image_key
from gemel.sources import package_path
from gemel.types import Candidate, Example, Prediction

log = logging.getLogger(__name__)


class EvaluationError(GemelError):
    """A data set cannot be evaluated as asked (no examples, an image that is missing ...)."""


@dataclass(frozen=True)
class EvalOptions:
    limit: int | None = None  # evaluate the first N examples only (None = all)
    exclude_self: bool = True  # keep each example out of its own demonstrations (by id), as the paper
    baseline_k: int = 16  # candidates listed per mention by the embedding-lookup baseline
    ks: tuple[int, ...] = (1, 3, 5, 10, 16)  # recall@k cut-offs of the report
    progress: bool = True  # tqdm progress bar on standard error
    candidates_from_data: bool = False  # link among each example's meta["candidates"] (WikiDiverse *_w_10cands)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise EvaluationError(f"limit={self.limit} must be >= 1, or None for the whole data set")
        if self.baseline_k < 1:
            raise EvaluationError(f"baseline_k={self.baseline_k} must be >= 1")


# ---- data ---------------------------------------------------------------------------------------------
def load_examples(path: str | Path, format: str = "auto", *, image_dir: str | Path | None = None,
                  limit: int | None = None, drop_nil: bool = False, split: Any = None) -> list[Example]:
    """Examples of a data file (our JSONL, GEMEL, WikiDiverse, WikiMEL, Richpedia-MEL), first ``limit`` only;
    with ``split`` (``"splits.json:test"`` or a `gemel.data.readers.Split`), those of that split only.

    A relative image that does not exist next to the file is looked up one folder up, as the shipped
    ``assets/eval/*.jsonl`` keep their images in ``assets/images`` (a link to ``gemel/assets/images``). ``drop_nil`` removes gold-NIL mentions
    (the paper's evaluation drops them).
    """
    from gemel.data.readers import read_dataset

    path = Path(path)
    out: list[Example] = []
    for ex in read_dataset(path, format, image_dir, split=split):
        if drop_nil and ex.entity is None:
            continue
        out.append(_fix_image(ex, path.parent))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        in_split = f" in split {getattr(split, 'spec', split)}" if split else ""
        raise EvaluationError(f"{path} holds no usable example{in_split}" + (" after dropping NIL" if drop_nil else ""))
    return out


def _fix_image(ex: Example, folder: Path) -> Example:
    """An existing local image as an absolute path (the demonstration pool de-duplicates by it)."""
    if not ex.image or "://" in ex.image:
        return ex
    if ex.image.startswith("package:"):  # a picture shipped inside an installed package (the out-of-pool photos)
        return dataclasses.replace(ex, image=str(package_path(ex.image)))
    if os.path.exists(ex.image):
        return dataclasses.replace(ex, image=str(Path(ex.image).resolve()))
    candidate = folder.parent / os.path.relpath(ex.image, folder)
    return dataclasses.replace(ex, image=str(candidate.resolve())) if candidate.exists() else ex


def check_images(examples: Sequence[Example]) -> None:
    """Fail early, naming the first example whose image file is missing."""
    for ex in examples:
        if ex.image and "://" not in ex.image and not os.path.exists(ex.image):
            raise FileNotFoundError(f"image {ex.image!r} of example {ex.id!r} does not exist: pass --image-dir "
                                    "(the folder of the images) or --features (precomputed features)")


# ---- precomputed image features -----------------------------------------------------------------------
class PrecomputedFeatures:
    """A `FeatureStore` stand-in: ``get(image key)`` reads the data set's precomputed feature (D,).

    Keys not in the mapping (e.g. the shipped seed pool's photos) go to ``fallback`` (the real encoder's
    feature store) when there is one.
    """

    def __init__(self, features: Mapping[str, np.ndarray], fallback: Any = None) -> None:
        self.features = features
        self.fallback = fallback

    def get(self, image: Any) -> Any:
        import torch

        image = image.source if isinstance(image, Picture) else image  # the linker's query picture
        if isinstance(image, str) and image in self.features:
            return torch.from_numpy(np.asarray(self.features[image], dtype=np.float32))
        if self.fallback is not None and image is not None:
            return self.fallback.get(image)
        raise EvaluationError(f"image {str(image)[:80]!r} has no precomputed feature and there is no encoder")


def with_precomputed_features(linker: Any, h5_path: str | Path) -> tuple[Any, PrecomputedFeatures]:
    """A variant of ``linker`` that reads image features from a GEMEL hdf5 file (keys: img_url / img_name),
    and those features; ``linker`` itself is unchanged."""
    from gemel.data.formats.clip_features import read_clip_features

    if linker.mapper is None:
        raise EvaluationError(f"profile {linker.config.name!r} is text-only (vision.kind = 'none'): "
                              "precomputed image features would not be used")
    store = PrecomputedFeatures(read_clip_features(h5_path, dim=linker.mapper.spec.vision_dim), linker.features)
    return linker.replace(features=store), store


def with_feature_keys(examples: Sequence[Example], features: Mapping[str, Any]) -> list[Example]:
    """Examples whose ``image`` is their precomputed-feature key (GEMEL's ``meta["image_key"]``); an image
    without a feature becomes text-only, with a warning."""
    out, missing = [], 0
    for ex in examples:
        key = ex.meta.get("image_key", ex.image)
        if key is not None and key not in features:
            missing += 1
            key = None
        out.append(dataclasses.replace(ex, image=key))
    if missing:
        log.warning("%d of %d examples have no precomputed image feature: linked text-only", missing, len(out))
    return out


# ---- running ------------------------------------------------------------------------------------------
def _progress(items: Sequence[Any], desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="mention", disable=not enabled, file=sys.stderr)


def predict(linker: Any, examples: Sequence[Example], *, exclude_self: bool = True, progress: bool = True,
            desc: str = "linking", candidates_from_data: bool = False) -> list[Prediction]:
    """``linker.link`` on every example, in order; an example is kept out of its own prompt by its id.

    A mention that is not verbatim in its text (a data set's quirk) is prompted as given, as the official code
    does (``verbatim=False``). ``candidates_from_data``: pass each example's ``meta["candidates"]``
    (every example must list some) as the candidates to choose among.
    """
    if candidates_from_data:
        check_candidates(examples)
    out = []
    for ex in _progress(examples, desc, progress):
        exclude = [ex.id] if exclude_self and ex.id is not None else []
        extra = {"candidates": ex.meta["candidates"]} if candidates_from_data else {}
        try:
            verbatim = ex.meta.get("verbatim", True)
            out.append(linker.link(ex.image, ex.text, ex.mention, exclude=exclude, verbatim=verbatim, **extra))
        except GemelError as e:  # InputError, ImageError ...: say which example
            raise EvaluationError(f"example {ex.id!r} ({ex.mention!r}): {e}") from e
    return out


def check_candidates(examples: Sequence[Example]) -> None:
    """Fail before linking anything when an example lists no candidates (``meta["candidates"]``)."""
    missing = [ex.id for ex in examples if not isinstance(ex.meta.get("candidates"), list) or
               not ex.meta["candidates"]]
    if missing:
        raise EvaluationError(f"{len(missing)} of {len(examples)} examples list no candidates (first: example "
                              f"{missing[0]!r}): candidates from the data need a file that gives them for every "
                              "mention, e.g. WikiDiverse's *_w_10cands.json; otherwise retrieve them (the default)")


def baseline_predict(linker: Any, examples: Sequence[Example], k: int = 16) -> list[Prediction]:
    """The embedding-lookup baseline: rank KB entries by the similarity of ``"title: description"`` to
    ``"mention | text"`` (the linker's own candidate retrieval), no LLM. ``llm_logprob`` is 0."""
    from gemel.models.embedder import mention_in_context

    t0 = time.perf_counter()
    queries = linker.embedder.encode([mention_in_context(e.text, e.mention) for e in examples])  # (N, D)
    sims, ids = linker.kb_index.search(queries, min(k, len(linker.kb)))
    each = (time.perf_counter() - t0) / max(1, len(examples))
    out = []
    for row_sims, row_ids in zip(sims, ids):
        cands = [_baseline_candidate(linker.kb.entities[int(i)], float(s)) for s, i in zip(row_sims, row_ids)
                 if i >= 0]
        out.append(Prediction(entity=cands[0].name if cands else None, candidates=cands, demonstrations=[],
                              profile=linker.config.name, mapper="baseline", timings={"total": each}))
    return out


def _baseline_candidate(entity: Any, sim: float) -> Candidate:
    return Candidate(entity.title, sim, 0.0, sim, entity.description)


@dataclass
class EvalResult:
    """A report with what produced it: the predictions, the gold examples and the time taken."""

    report: EvalReport
    predictions: list[Prediction]
    examples: list[Example]
    seconds: float
    mode: str = "gemel"  # "gemel" (the linker) or "baseline" (embedding lookup)
    info: dict[str, Any] = field(default_factory=dict)  # profile, mapper, data, decode settings ...

    @property
    def accuracy(self) -> float:
        return self.report.accuracy

    def to_dict(self, top: int = 5) -> dict[str, Any]:
        n = max(1, len(self.examples))
        return {"mode": self.mode, **self.info, **self.report.to_dict(),
                "seconds": self.seconds, "seconds_per_mention": self.seconds / n,
                "predictions": [_row(ex, p, top) for ex, p in zip(self.examples, self.predictions)]}


def _row(ex: Example, pred: Prediction, top: int) -> dict[str, Any]:
    return {"id": ex.id, "mention": ex.mention, "gold": ex.entity, "entity": pred.entity,
            "correct": exact_match(pred.entity, ex.entity), "candidates": [c.name for c in pred.candidates[:top]]}


def evaluate_linker(linker: Any, examples: Sequence[Example], *, baseline: bool = False,
                    options: EvalOptions | None = None) -> EvalResult:
    """Link (or look up, with ``baseline``) every example and score the predictions."""
    options = options or EvalOptions()
    examples = list(examples)[: options.limit] if options.limit else list(examples)
    if not examples:
        raise EvaluationError("no examples to evaluate")
    t0 = time.perf_counter()
    if baseline:
        preds = baseline_predict(linker, examples, options.baseline_k)
    else:
        preds = predict(linker, examples, exclude_self=options.exclude_self, progress=options.progress,
                        candidates_from_data=options.candidates_from_data)
    seconds = time.perf_counter() - t0
    report = evaluate(preds, with_pool_tags(examples, pool_pictures(linker)), EvalConfig(ks=options.ks))
    info = {"profile": linker.config.name, "mapper": "baseline" if baseline else linker.mapper_version,
            "decode": dataclasses.asdict(linker.config.decode), "demos": dataclasses.asdict(linker.config.demos),
            "candidates": "from-data" if options.candidates_from_data and not baseline else "retrieval"}
    return EvalResult(report, preds, examples, seconds, "baseline" if baseline else "gemel", info)


def pool_pictures(linker: Any) -> set[str]:
    """Content hashes of the pictures of the linker's labelled demonstration pool (seed pool, corrections)."""
    pool = getattr(linker, "labelled_pool", None)
    return set() if pool is None else {k for k in (_picture_key(e.image) for e in pool.live()) if k is not None}


def with_pool_tags(examples: Sequence[Example], pictures: set[str]) -> list[Example]:
    """The examples with ``meta["pool"]``: "in-pool" when their picture (by content) is also a demonstration's,
    where the untrained mapper's prefix fingerprints an identical picture, so the report shows them apart;
    "out-of-pool" otherwise. Examples without a readable picture file get no tag."""
    out = []
    for ex in examples:
        key = _picture_key(ex.image)
        tag = None if key is None else "in-pool" if key in pictures else "out-of-pool"
        out.append(ex if tag is None else dataclasses.replace(ex, meta={**ex.meta, "pool": tag}))
    return out


def _picture_key(image: Any) -> str | None:
    if not isinstance(image, (str, Path)) or not Path(image).is_file():
        return None  # no picture, or a feature-store key (precomputed features): nothing to compare
    try:
        return image_key(image)
    except GemelError:
        return None


def write_report(result: EvalResult, path: str | Path, **info: Any) -> Path:
    """The report as JSON (figures, settings, and one row per mention); ``info`` adds fields (data file ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = json_safe({**result.to_dict(), **info})
    path.write_text(json.dumps(blob, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def json_safe(value: Any) -> Any:
    """Standard JSON: non-finite floats (e.g. ``nil_threshold = -inf``) as strings, paths as strings."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
