"""Tests for gemel/image/clip.py: CLIP's image-entity score, its entity-vector cache, and the linker using it.

The models are random-weight open_clip CLIPs saved in the Hugging Face hub's cache layout (conftest: a tiny one
with open_clip's real tokenizer for the fast tier, the real ViT-B-32 architecture for the ``slow`` one), loaded
with ``HF_HUB_OFFLINE=1`` through the code path the ``hub`` profile uses (``hf-hub:org/name``): no mock of a loader.
The reference is open_clip's own ``build_zero_shot_classifier`` on a second copy of the same model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import HUB_B32, HUB_TINY, OPENAI_MEAN, OPENAI_STD, TINY_KB, hub_like_profile, offline_hub_env, tiny_profile
from gemel.config import LinkerConfig, ProfileError, VisionConfig
from gemel.image import clip as clip_mod
from gemel.image.clip import ClipEntityScorer, encode_text, entity_prompt, entity_text_vectors
from gemel.kb.entities import Entity, KnowledgeBase
from gemel.models.vision import VisionEncoder

KB = KnowledgeBase([Entity(t, d, x) for t, d, x in TINY_KB] + [Entity("Nothing described")], name="clip-test")


def vision_config(repo: str, size: int) -> VisionConfig:
    return VisionConfig(kind="open_clip", name=f"hf-hub:{repo}", weights="", image_size=size, crop_pct=1.0,
                        mean=tuple(OPENAI_MEAN), std=tuple(OPENAI_STD))


def pictures(size: int) -> list[Image.Image]:
    """Pictures of several shapes (the resize and crop matter), seeded noise over colour gradients."""
    rng = np.random.default_rng(0)
    out = []
    for w, h in ((3 * size // 2, size), (size // 2 + 7, 2 * size + 3), (size, size), (61, 45)):
        base = np.linspace(0, 255, w * h * 3).reshape(h, w, 3)
        out.append(Image.fromarray(np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)))
    return out


MODELS = [pytest.param((HUB_TINY, 32), id="tiny"),
          pytest.param((HUB_B32, 224), id="ViT-B-32", marks=pytest.mark.slow)]


@pytest.fixture(params=MODELS)
def hub_model(request, monkeypatch, tmp_path):
    """(repo, image size) of a model in the offline hub cache, GEMEL_CACHE in tmp_path."""
    repo, size = request.param
    cache = request.getfixturevalue("hub_cache_b32" if repo == HUB_B32 else "hub_cache")
    monkeypatch.setenv("GEMEL_CACHE", str(tmp_path / "gemel-cache"))
    with offline_hub_env(cache, monkeypatch):
        yield repo, size


# ---- prompts -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("title, description, expected", [
    ("Grace Hopper", "American computer scientist", "a photo of Grace Hopper, American computer scientist."),
    ("Moon", "", "a photo of Moon."),
    ("Moon", "  ", "a photo of Moon."),
    ("Jordan", "Country  in\nWest Asia", "a photo of Jordan, Country in West Asia."),
])
def test_the_prompt_holds_title_and_description(title, description, expected):
    assert entity_prompt(clip_mod.DEFAULT_PROMPT, title, description) == expected


@pytest.mark.parametrize("template, message", [
    ("a photo of {name}", "is not a template"),
    ("a photo.", "never uses {title}"),
])
def test_a_bad_template_is_one_sentence(template, message):
    with pytest.raises(ProfileError, match=message):
        clip_mod.check_template(template)


def test_the_profile_refuses_a_template_without_the_title():
    with pytest.raises(ProfileError, match=r"image.clip_prompt .* must contain \{title\}"):
        LinkerConfig.from_dict({**tiny_profile(Path(".")),
                                "image": {"scorer": "clip", "clip_prompt": "a photo"}})


# ---- exactness: open_clip's own zero-shot classifier ---------------------------------------------------------
def test_scores_equal_open_clips_zero_shot_classifier(hub_model):
    import open_clip

    repo, size = hub_model
    encoder = VisionEncoder.load(vision_config(repo, size))  # our loader: hf-hub:, from the hub's cache
    scorer = ClipEntityScorer.for_kb(encoder, KB, batch_size=5)
    model, _, preprocess = open_clip.create_model_and_transforms(f"hf-hub:{repo}")  # a second copy, open_clip's
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"hf-hub:{repo}")
    classnames = [f"{e.title}, {e.description}" if e.description else e.title for e in KB]
    classifier = open_clip.build_zero_shot_classifier(model, tokenizer, classnames, ["a photo of {}."],
                                                      num_classes_per_batch=4)  # (E, N)
    for picture in pictures(size):
        with torch.no_grad():
            image = model.encode_image(preprocess(picture)[None], normalize=True)  # (1, E)
            reference = (model.logit_scale.exp() * image @ classifier)[0].numpy()
        ours = scorer.score(picture, scorer.kb_vectors)
        assert np.abs(ours.fused - reference).max() < 1e-5, np.abs(ours.fused - reference).max()
        assert ours.probabilities == pytest.approx(torch.softmax(torch.from_numpy(reference).double(), 0).numpy(),
                                                   abs=1e-6)
    assert scorer.clip.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()))


def test_the_encoders_picture_is_open_clips(hub_model):
    """The pixels the tower sees are those of open_clip's own transform, whatever the picture's shape."""
    import open_clip

    repo, size = hub_model
    encoder = VisionEncoder.load(vision_config(repo, size))
    _, _, preprocess = open_clip.create_model_and_transforms(f"hf-hub:{repo}")
    for picture in pictures(size):
        assert torch.equal(encoder.preprocess(picture), preprocess(picture))


def test_the_text_prefix_gives_the_whole_contexts_embedding(hub_model):
    repo, size = hub_model
    clip = VisionEncoder.load(vision_config(repo, size)).clip
    texts = ["a photo of Moon.", "a photo of Grace Hopper, American computer scientist.", "x " * 200]
    tokens = clip.tokenizer(texts)
    with torch.no_grad():
        whole = clip.model.encode_text(tokens, normalize=True)
    assert torch.allclose(encode_text(clip.model, tokens), whole, atol=1e-6)
    assert torch.allclose(torch.from_numpy(clip_mod.encode_texts(clip, texts, batch_size=2)), whole, atol=1e-6)


# ---- the entity vectors' cache -------------------------------------------------------------------------------
@pytest.fixture
def tiny_clip(offline_hub):
    return VisionEncoder.load(vision_config(HUB_TINY, 32))


def test_entity_vectors_are_built_once_then_read(tiny_clip, monkeypatch):
    seen = []
    first = np.array(entity_text_vectors(tiny_clip.clip, KB.entities, progress=lambda d, n: seen.append((d, n))))
    assert seen[-1] == (len(KB), len(KB)) and first.shape == (len(KB), 8)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    monkeypatch.setattr(clip_mod, "encode_texts", lambda *a, **k: pytest.fail("the cache must be read"))
    again = entity_text_vectors(tiny_clip.clip, KB.entities)
    assert isinstance(again, np.memmap) and np.array_equal(first, again)


def test_an_interrupted_build_resumes_at_its_last_shard(tiny_clip, monkeypatch, tmp_path):
    monkeypatch.setattr(clip_mod, "SHARD_ROWS", 4)
    whole = np.array(entity_text_vectors(tiny_clip.clip, KB.entities, folder=tmp_path / "whole"))
    folder = tmp_path / "resumed"
    calls = []
    real = clip_mod.encode_texts

    def stop_after_two_shards(clip, texts, batch_size=64):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the Space restarted mid-build
        return real(clip, texts, batch_size)

    monkeypatch.setattr(clip_mod, "encode_texts", stop_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        entity_text_vectors(tiny_clip.clip, KB.entities, folder=folder)
    assert json.loads((folder / "progress.json").read_text())["rows_done"] == 8
    calls.clear()
    monkeypatch.setattr(clip_mod, "encode_texts", lambda clip, texts, batch_size=64: calls.append(len(texts))
                        or real(clip, texts, batch_size))
    resumed = entity_text_vectors(tiny_clip.clip, KB.entities, folder=folder)
    assert calls == [4, len(KB) - 12] and np.array_equal(np.asarray(resumed), whole)


def test_the_cache_key_follows_weights_template_and_kb(tiny_clip):
    key = clip_mod.cache_key(tiny_clip.clip, KB.entities, clip_mod.DEFAULT_PROMPT)
    assert key == clip_mod.cache_key(tiny_clip.clip, list(KB.entities), clip_mod.DEFAULT_PROMPT)
    assert key != clip_mod.cache_key(tiny_clip.clip, KB.entities, "{title}")
    edited = [dataclasses.replace(KB.entities[0], description="American admiral")] + list(KB.entities[1:])
    assert key != clip_mod.cache_key(tiny_clip.clip, edited, clip_mod.DEFAULT_PROMPT)
    other = dataclasses.replace(tiny_clip.clip, image_projection=tiny_clip.clip.image_projection + 1)
    assert key != clip_mod.cache_key(other, KB.entities, clip_mod.DEFAULT_PROMPT)


def test_top_k_and_batches_agree_with_score(tiny_clip):
    scorer = ClipEntityScorer.for_kb(tiny_clip, KB)
    picture = pictures(32)[0]
    fused = scorer.score(picture, scorer.kb_vectors).fused
    top = scorer.top_k(picture, 3)
    assert [t for t, _ in top] == [KB.titles[i] for i in np.argsort(-fused, kind="stable")[:3]]
    feature = tiny_clip.encode([picture, pictures(32)[1]])
    batch = scorer.score_batch(feature, scorer.kb_vectors)
    assert np.allclose(batch[0], fused, atol=1e-6) and batch.shape == (2, len(KB))
    assert scorer.exemplars is None and scorer.layout(picture) is None


def test_a_scorer_needs_an_open_clip_encoder():
    class Timm:
        config = VisionConfig()
        clip = None

    with pytest.raises(ProfileError, match="needs an open_clip vision encoder"):
        ClipEntityScorer.for_kb(Timm(), KB)


# ---- the linker ----------------------------------------------------------------------------------------------
def test_the_linker_gets_its_image_scores_from_clip(tiny_dir, offline_hub):
    from gemel.linker import Linker

    config = LinkerConfig.from_dict(hub_like_profile(tiny_dir), name="hub-tiny", base_dir=tiny_dir)
    linker = Linker.load(config)
    assert isinstance(linker.image_scorer, ClipEntityScorer)
    picture = tiny_dir / "img.png"
    expected = linker.image_scorer.score(picture, linker.image_scorer.kb_vectors).fused
    pred = linker.link(str(picture), "We saw the river from the bus.", "the river")
    assert pred.image.startswith("shown, not weighed: the ranker deciding reads no picture feature")
    scored = [c for c in pred.candidates if c.image_score is not None]
    assert scored, pred.image
    z = (expected - expected.mean()) / expected.std()  # shown as the ranker reads it: z over the KB
    for c in scored:
        assert c.image_score == pytest.approx(float(z[linker.kb.index(c.name)]), abs=1e-4)
    best_by_picture = linker.kb.titles[int(np.argmax(expected))]
    assert best_by_picture in [c.name for c in pred.candidates]  # the picture's top entity joined the candidates
    # the ranker's evidence reads the same scores
    evidence = linker.image_signal.picture(str(picture))
    assert np.allclose(evidence.scores, expected, atol=1e-6)


def test_clip_with_a_timm_encoder_fails_at_load_with_a_sentence(tiny_dir, offline_hub):
    from gemel.linker import Linker

    d = hub_like_profile(tiny_dir)
    d["vision"] = {"kind": "none"}
    with pytest.raises(ProfileError, match=r"needs an open_clip vision encoder .*not no vision encoder"):
        Linker.load(LinkerConfig.from_dict(d, name="bad", base_dir=tiny_dir))


def test_a_built_kb_gets_the_same_vectors_as_the_in_memory_one(tiny_clip, tiny_config, tmp_path, monkeypatch):
    """A built KB (gemel kb build: SQLite rows read a shard at a time) and the same entities in memory."""
    from gemel.kb.build import BuildConfig, build
    from gemel.kb.store import StoredKB
    from gemel.models.embedder import TextEmbedder

    source = tmp_path / "kb.jsonl"
    source.write_text("".join(json.dumps({"title": e.title, "description": e.description}) + "\n" for e in KB))
    build(source, tmp_path / "built", TextEmbedder.load(tiny_config.embedder, tiny_config.base_dir),
          config=BuildConfig(chunk=4, embed_batch=3, progress=False))
    monkeypatch.setattr(clip_mod, "SHARD_ROWS", 5)
    stored = ClipEntityScorer.for_kb(tiny_clip, StoredKB(tmp_path / "built"))
    vectors = entity_text_vectors(tiny_clip.clip, KB.entities, folder=tmp_path / "in-memory")  # built apart
    memory = ClipEntityScorer(tiny_clip, vectors, KB.titles)
    assert np.allclose(np.asarray(stored.kb_vectors), np.asarray(memory.kb_vectors), atol=1e-6)
    picture = pictures(32)[2]
    assert stored.top_k(picture, 3) == memory.top_k(picture, 3)
