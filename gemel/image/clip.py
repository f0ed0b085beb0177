"""CLIP's own image-entity score: how well a picture fits each KB entity, as CLIP's zero-shot classifier says.

The score of entity e for picture x is ``logit_scale * cos(image_embedding(x), text_embedding(prompt(e)))``: the
picture's CLIP image embedding (the vision encoder's pooled feature times the projection open_clip's tower had,
:class:`gemel.models.vision.ClipText`) against the CLIP text embedding of one short prompt per entity built from
its title and description (``image.clip_prompt``, default ``"a photo of {title}, {description}."``; CLIP's
tokenizer truncates it to the model's context). These are exactly the logits of open_clip's
``build_zero_shot_classifier`` with that one prompt per class (Radford et al. 2021, Sec. 3.1.4), so the softmax
over the KB is CLIP's zero-shot probability of each entity, and a difference of two scores is a log-odds.

Entity text embeddings are computed once and kept on disk (:func:`entity_text_vectors`, under
``<cache>/clip-entities/<key>/``, ``<cache>`` being ``gemel.sources.cache_dir``: ``/data/gemel-cache`` in a Space
with persistent storage), keyed by the model's weights, the prompt template and the prompts themselves (so the
KB's content). They are built shard by shard (:data:`SHARD_ROWS` entities) into a memory-mapped array with a
progress mark after each shard, so an interrupted build resumes and a 1M-entity KB never holds more than one
shard's texts. Texts are encoded shortest first, and only up to the longest end-of-text token of each batch: CLIP's
text tower is causal and reads its answer at that token, so the padding after it changes nothing (a prompt of ~20
tokens costs a quarter of the 77-token context). The text tower runs where the encoder's model is
(``vision.device``: a GPU where the profile asks for one), a batch at a time; the vectors come back to the CPU, to
the on-disk array.

:class:`ClipEntityScorer` has the interface the linker's image signal uses of
:class:`gemel.image.scorer.ImageEntityScorer` (``score``, ``raw_scores``, ``fuse``, ``top_k``, ``kb_vectors`` ...):
``image.scorer = "clip"`` in a profile with an open_clip vision encoder selects it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gemel.config import CLIP_SCORER, ProfileError
from gemel.image.configs import FusionConfig, ImageScoreError
from gemel.image.scorer import ImageScores
from gemel.image.vectors import dot_rows, softmax
from gemel.images import ImageInput, load_image
from gemel.sources import cache_dir

log = logging.getLogger(__name__)

SCORER = CLIP_SCORER  # the ``image.scorer`` value that selects this scorer: a keyword, never a path
DEFAULT_PROMPT = "a photo of {title}, {description}."
SHARD_ROWS = 4096  # entities per shard of the on-disk build (a progress mark after each)
MAX_DESCRIPTION_CHARS = 300  # far beyond CLIP's 77 tokens: the tokenizer truncates, this bounds its work
FORMAT = "gemel-clip-entities/1"

Progress = Callable[[int, int], None]  # (entity texts embedded so far, total)


# ---- prompts -------------------------------------------------------------------------------------
def entity_prompt(template: str, title: str, description: str = "") -> str:
    """The entity's prompt: ``template`` with ``{title}`` and ``{description}`` filled in; without a description,
    the punctuation left dangling before the end is dropped ("a photo of Moon, ." -> "a photo of Moon.")."""
    text = template.format(title=title.strip(), description=" ".join(description.split())[:MAX_DESCRIPTION_CHARS])
    if not description.strip():
        text = re.sub(r"\s*[,;:]\s*(?=[.!?]?$)", "", text.strip())
    return text


def check_template(template: str) -> None:
    """Refuse a prompt template that does not name the entity or names unknown fields."""
    try:
        text = template.format(title="\0", description="")
    except (KeyError, IndexError, ValueError) as e:
        raise ProfileError(f"image.clip_prompt {template!r} is not a template of {{title}} and {{description}} "
                           f"({type(e).__name__}: {e}): write e.g. {DEFAULT_PROMPT!r}") from e
    if "\0" not in text:
        raise ProfileError(f"image.clip_prompt {template!r} never uses {{title}}: every entity would get the same "
                           f"text; write e.g. {DEFAULT_PROMPT!r}")


def prompts(entities: Sequence[Any], template: str, lo: int = 0, hi: int | None = None) -> list[str]:
    """The prompts of entities[lo:hi] (objects with ``title`` and ``description``)."""
    return [entity_prompt(template, e.title, e.description) for e in entities[lo:hi]]


# ---- text encoding -------------------------------------------------------------------------------
def _prefix_ok(model: torch.nn.Module) -> bool:
    """Whether the text tower may be run on a prefix: open_clip's own CLIP text transformer, causal, pooled at the
    end-of-text token (the largest token id). Other towers (Hugging Face text models) run whole."""
    import open_clip

    return (isinstance(model, open_clip.CLIP) and getattr(model, "text_pool_type", "") == "argmax"
            and getattr(model, "attn_mask", None) is not None)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are (the CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.inference_mode()
def encode_text(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """(B, C) token ids -> (B, E) unit CLIP text embeddings on the model's device: ``model.encode_text(tokens,
    normalize=True)``, computed on the tokens up to the batch's last end-of-text token only (the same numbers: the
    tower is causal and pools at that token). The tokens may be anywhere: they are moved to the model's device."""
    device = model_device(model)
    if not _prefix_ok(model):
        return model.encode_text(tokens.to(device), normalize=True).float()
    from open_clip.transformer import text_global_pool

    n = int(tokens.argmax(dim=-1).max()) + 1  # read where the tokens are (a GPU sync saved)
    t = tokens[:, :n].to(device)  # (B, n)
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(t).to(cast) + model.positional_embedding[:n].to(cast)  # (B, n, W)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = text_global_pool(model.ln_final(x), t, "argmax")  # (B, W)
    proj = model.text_projection
    x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj if proj is not None else x  # (B, E)
    return torch.nn.functional.normalize(x.float(), dim=-1)


def encode_texts(clip: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """(N, E) unit float32 CLIP text embeddings of ``texts`` (``clip``: a :class:`gemel.models.vision.ClipText`),
    in batches of similar token counts (shortest first), each run only as long as its longest text, on the model's
    device; the result is on the CPU."""
    out = np.zeros((len(texts), clip.image_projection.shape[1]), dtype=np.float32)
    if not texts:
        return out
    tokens = clip.tokenizer(list(texts))  # (N, C), truncated to the context
    order = torch.argsort(tokens.argmax(dim=-1), stable=True)
    for lo in range(0, len(texts), batch_size):
        rows = order[lo:lo + batch_size]
        out[rows.numpy()] = encode_text(clip.model, tokens[rows]).cpu().numpy()
    return out


def model_fingerprint(clip: Any) -> str:
    """A short content hash of the model's weights that the scores depend on most (text projection, positional
    embedding, final norm, image projection, logit scale): two models with other weights get other caches; the same
    weights on any device get the same key (read back to the CPU)."""
    m = clip.model
    parts = [getattr(m, "text_projection", None), getattr(m, "positional_embedding", None),
             getattr(getattr(m, "ln_final", None), "weight", None), clip.image_projection,
             torch.tensor([clip.logit_scale])]
    h = hashlib.sha256(clip.name.encode())
    for p in parts:
        if isinstance(p, torch.nn.Linear):
            p = p.weight
        if isinstance(p, torch.Tensor):
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---- the on-disk entity vectors ------------------------------------------------------------------
def cache_key(clip: Any, entities: Sequence[Any], template: str) -> str:
    """Key of the entity vectors: model weights, template and every prompt (the KB's titles and descriptions)."""
    h = hashlib.sha256(f"{FORMAT}|{model_fingerprint(clip)}|{template}|{len(entities)}|".encode())
    for lo in range(0, len(entities), SHARD_ROWS):
        h.update("\n".join(prompts(entities, template, lo, lo + SHARD_ROWS)).encode())
        h.update(b"\n")
    return h.hexdigest()[:20]


def entity_text_vectors(clip: Any, entities: Sequence[Any], template: str = DEFAULT_PROMPT, batch_size: int = 64,
                        folder: str | Path | None = None, progress: Progress | None = None) -> np.ndarray:
    """(N, E) unit float32 CLIP text embeddings of the entities' prompts, memory-mapped from the cache: read when
    there, else built shard by shard (resuming an interrupted build) with a progress bar, the log and ``progress``
    (called after each shard with (done, total)) saying how far it is."""
    check_template(template)
    folder = Path(folder) if folder is not None else cache_dir("clip-entities", cache_key(clip, entities, template))
    folder.mkdir(parents=True, exist_ok=True)
    n, dim = len(entities), int(clip.image_projection.shape[1])
    with _locked(folder):
        done = _rows_done(folder, n, dim)
        if done < n:
            _build(clip, entities, template, batch_size, folder, done, progress)
        elif progress is not None:
            progress(n, n)
    return np.load(folder / "vectors.npy", mmap_mode="r")


def _rows_done(folder: Path, n: int, dim: int) -> int:
    """Rows already embedded in ``folder`` (0 when nothing usable is there)."""
    try:
        mark = json.loads((folder / "progress.json").read_text())
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    except (OSError, ValueError):
        return 0
    if mark.get("format") != FORMAT or vectors.shape != (n, dim):
        return 0
    return int(mark.get("rows_done", 0))


def _build(clip: Any, entities: Sequence[Any], template: str, batch_size: int, folder: Path, done: int,
           progress: Progress | None) -> None:
    n, dim = len(entities), int(clip.image_projection.shape[1])
    path = folder / "vectors.npy"
    mode = "r+" if done > 0 else "w+"
    vectors = np.load(path, mmap_mode="r+") if mode == "r+" else np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(n, dim))
    log.info("embedding %s KB entity texts for CLIP's image-entity score into %s (%s done; once, then cached)",
             f"{n:,}", folder, f"{done:,}")
    with tqdm(total=n, initial=done, desc="CLIP entity texts", unit="text", mininterval=5) as bar:
        for lo in range(done, n, SHARD_ROWS):
            hi = min(n, lo + SHARD_ROWS)
            vectors[lo:hi] = encode_texts(clip, prompts(entities, template, lo, hi), batch_size)
            vectors.flush()
            _write_json(folder / "progress.json", {"format": FORMAT, "rows_done": hi, "rows": n, "dim": dim,
                                                   "model": clip.name, "template": template})
            bar.update(hi - lo)
            log.info("CLIP entity texts: %s/%s embedded (%.0f%%)", f"{hi:,}", f"{n:,}", 100 * hi / max(1, n))
            if progress is not None:
                progress(hi, n)
    del vectors


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One builder per cache folder at a time (a second process waits, then reads what the first built)."""
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---- the scorer ----------------------------------------------------------------------------------
def clip_of(encoder: Any) -> Any:
    """The encoder's CLIP text side (:class:`gemel.models.vision.ClipText`), or a ProfileError saying what to use."""
    clip = getattr(encoder, "clip", None)
    if clip is None:
        config = getattr(encoder, "config", None)
        what = f"{config.kind!r} {config.name!r}" if config is not None else "no vision encoder"
        raise ProfileError(f"image.scorer = {SCORER!r} needs an open_clip vision encoder (vision.kind = 'open_clip'), "
                           f"not {what}: choose an open_clip model or an image scorer artifact")
    return clip


class ClipEntityScorer:
    """CLIP's zero-shot score of a picture against entities (see the module docstring).

    ``encoder``: an open_clip :class:`gemel.models.vision.VisionEncoder` (its ``clip`` parts); ``kb_vectors`` /
    ``kb_titles``: the KB entities' unit CLIP text embeddings (:func:`entity_text_vectors`) and titles."""

    exemplars = None  # no colour-layout exemplars: the picture facts and the picture memory read this
    fusion = FusionConfig(temperature=1.0)  # probabilities = softmax(logits): CLIP's own zero-shot probabilities

    def __init__(self, encoder: Any, kb_vectors: np.ndarray, kb_titles: Sequence[str], template: str = DEFAULT_PROMPT
                 ) -> None:
        clip = clip_of(encoder)
        if len(kb_titles) != len(kb_vectors):
            raise ImageScoreError(f"{len(kb_titles)} KB titles for {len(kb_vectors)} CLIP entity vectors")
        self.encoder, self.clip, self.template = encoder, clip, template
        self.kb_vectors, self.kb_titles = kb_vectors, kb_titles  # a built KB's titles stay lazy (1M rows)
        self.dim = int(clip.image_projection.shape[1])
        self.version = f"clip-{model_fingerprint(clip)[:12]}"

    @classmethod
    def for_kb(cls, encoder: Any, kb: Any, template: str = DEFAULT_PROMPT, batch_size: int = 64,
               progress: Progress | None = None) -> "ClipEntityScorer":
        """The scorer over a KB (``kb.entities``, ``kb.titles``), its entity vectors read from the cache or built."""
        vectors = entity_text_vectors(clip_of(encoder), kb.entities, template, batch_size, progress=progress)
        return cls(encoder, vectors, kb.titles, template)

    # ---- inputs --------------------------------------------------------------------------------
    def image_embeddings(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """(B, W) pooled features (what the encoder gives the mapper) -> (B, E) unit CLIP image embeddings."""
        f = torch.as_tensor(np.asarray(features, dtype=np.float32)).reshape(-1, self.clip.image_projection.shape[0])
        with torch.inference_mode():
            return torch.nn.functional.normalize(f @ self.clip.image_projection.float(), dim=-1).numpy()

    def feature(self, feature_or_image: Any) -> torch.Tensor:
        """A (W,) pooled feature: given as a tensor/array, or encoded from an image (path, bytes, PIL)."""
        if isinstance(feature_or_image, (torch.Tensor, np.ndarray)):
            f = torch.as_tensor(np.asarray(feature_or_image, dtype=np.float32)).reshape(-1)
            if f.numel() != self.encoder.dim:
                raise ImageScoreError(f"feature has {f.numel()} values, CLIP's scorer expects {self.encoder.dim} "
                                      f"({self.clip.name}'s pooled feature)")
            return f
        image = load_image(feature_or_image)
        if image is None:
            raise ImageScoreError("no image given: the image score needs a picture or its feature")
        return self.encoder.encode([image])[0].float()

    def layout(self, image: ImageInput) -> None:
        """No colour layout: CLIP has no exemplars."""
        return None

    def check_entities(self, entity_vectors: np.ndarray) -> np.ndarray:
        e = entity_vectors if isinstance(entity_vectors, np.memmap) else np.asarray(entity_vectors, np.float32)
        if e.ndim != 2 or e.shape[1] != self.dim:
            raise ImageScoreError(f"entity_vectors must be (N, {self.dim}) CLIP text embeddings of the entities' "
                                  f"prompts by {self.clip.name}, got shape {e.shape}")
        return e

    # ---- scoring -------------------------------------------------------------------------------
    def raw_scores(self, features: torch.Tensor, entity_vectors: np.ndarray, titles: Sequence[str] | None = None,
                   layouts: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """{"clip": (B, N) cosines} of the pictures' CLIP image embeddings with the entities' text embeddings."""
        return {"clip": dot_rows(self.image_embeddings(features), self.check_entities(entity_vectors))}

    def fuse(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """(B, N) CLIP logits: logit_scale x cosine."""
        return (self.clip.logit_scale * np.asarray(raw["clip"], dtype=np.float32)).astype(np.float32)

    def score(self, feature_or_image: Any, entity_vectors: np.ndarray, titles: Sequence[str] | None = None,
              layout: np.ndarray | None = None) -> ImageScores:
        """CLIP's logits of one picture against N entities given by their (N, E) text embeddings."""
        raw = self.raw_scores(self.feature(feature_or_image)[None], entity_vectors)
        fused = self.fuse(raw)[0]
        probs = softmax(fused / self.fusion.temperature)
        confidence = float(probs.max()) if len(probs) else 0.0
        return ImageScores(fused, probs, {k: v[0] for k, v in raw.items()}, confidence)

    def similarities(self, feature_or_image: Any, entity_vectors: np.ndarray,
                     titles: Sequence[str] | None = None) -> np.ndarray:
        """(N,) CLIP logits of the picture against N entities."""
        return self.score(feature_or_image, entity_vectors, titles).fused

    def score_batch(self, features: torch.Tensor, entity_vectors: np.ndarray, titles: Sequence[str] | None = None,
                    layouts: np.ndarray | None = None) -> np.ndarray:
        """(B, W) features against N shared entities -> (B, N) CLIP logits."""
        return self.fuse(self.raw_scores(features, entity_vectors))

    def top_k(self, feature_or_image: Any, k: int = 10) -> list[tuple[str, float]]:
        """The k KB entities the picture fits best, as (title, CLIP logit), best first."""
        if k < 1:
            raise ImageScoreError(f"k={k} must be >= 1")
        fused = self.score(feature_or_image, self.kb_vectors).fused
        best = np.argsort(-fused, kind="stable")[:k]
        return [(self.kb_titles[i], float(fused[i])) for i in best]


__all__ = ["ClipEntityScorer", "DEFAULT_PROMPT", "SCORER", "cache_key", "encode_text", "encode_texts",
           "entity_prompt", "entity_text_vectors", "model_fingerprint"]
