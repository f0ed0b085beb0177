"""The image -> entity scorer: projection, fusion, normalisation, artifact, odd pictures.

A random-weight timm ``test_efficientnet`` (256-d feature, 1000-class head) stands in for EfficientNet-Lite0,
random unit vectors for the text embedder's space. The test that loads the real offline encoder is marked
``offline_model``.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from gemel.config import VisionConfig
from gemel.image.configs import ExemplarConfig, FusionConfig, ImageScoreError, ScorerSpec
from gemel.image.exemplars import ColourExemplars, colour_layout
from gemel.image.projection import Projection
from gemel.image.scorer import ImageEntityScorer
from gemel.image.vectors import normalise
from gemel.images import load_image, to_rgb
from gemel.models.vision import VisionEncoder
from gemel.training.fusion import fit_fusion
from gemel.training.projection import ProjectionConfig, train_projection

D = 16  # embedder dim of the tests


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return VisionEncoder.load(VisionConfig(kind="timm", name="test_efficientnet", weights="", image_size=32,
                                           crop_pct=1.0))


@pytest.fixture(scope="module")
def kb():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(12, D)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True), [f"Entity {i}" for i in range(12)]


@pytest.fixture(scope="module")
def scorer(encoder, kb):
    torch.manual_seed(1)
    spec = ScorerSpec(vision=encoder.config.name, vision_dim=encoder.dim, embedder="random", embed_dim=D,
                      corpus_manifest="abc")
    projection = Projection(encoder.dim, D)
    return ImageEntityScorer(spec, encoder, projection, FusionConfig(), kb[0], kb[1])


def test_logits_from_features_equal_classify(encoder):
    image = Image.new("RGB", (40, 30), (10, 200, 30))
    feature = encoder.encode([image])
    assert torch.allclose(encoder.logits_from_features(feature)[0], encoder.classify(image)[0], atol=1e-4)
    assert encoder.has_classifier


def test_similarities_shape_and_feature_equals_image(scorer, encoder, kb):
    image = Image.new("RGB", (50, 50), (120, 30, 200))
    by_image = scorer.similarities(image, kb[0][:5])
    by_feature = scorer.similarities(encoder.encode([image])[0], kb[0][:5])
    assert by_image.shape == (5,) and np.allclose(by_image, by_feature, atol=1e-5)


def test_scores_are_normalised_across_candidates(scorer, kb):
    feature = torch.randn(scorer.spec.vision_dim)
    s = scorer.score(feature, kb[0][:7])
    assert abs(float(s.fused.mean())) < 1e-4  # z-scores of each component sum to a zero mean
    assert s.probabilities.sum() == pytest.approx(1.0) and s.confidence == pytest.approx(s.probabilities.max())
    assert set(s.components) == {"projection"}
    one = scorer.score(feature, kb[0][:1])  # a single candidate: nothing to compare, no NaN
    assert np.isfinite(one.fused).all() and one.confidence == pytest.approx(1.0)


@pytest.mark.parametrize("how", ["zscore", "softmax", "none"])
def test_normalise_keeps_the_order(how):
    s = np.array([[0.1, 0.5, 0.3], [2.0, 1.0, 3.0]])
    assert (np.argsort(normalise(s, how), axis=1) == np.argsort(s, axis=1)).all()
    assert np.allclose(normalise(s + 7, "zscore"), normalise(s, "zscore"))


def test_top_k_returns_k_distinct_kb_titles_best_first(scorer, kb):
    top = scorer.top_k(torch.randn(scorer.spec.vision_dim), k=5)
    assert len(top) == 5 and len({t for t, _ in top}) == 5 and all(t in kb[1] for t, _ in top)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)


def test_an_artifact_saved_with_an_abstain_threshold_scores_as_before(scorer, encoder, kb, tmp_path):
    """Abstaining was a gate of the fused score (the ranker reads the scorer's confidence itself): an artifact
    saved with ``abstain_below`` loads, and scores as the same weights without it."""
    path = tmp_path / "old.pt"
    scorer.save(path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["fusion"]["abstain_below"] = 0.4
    torch.save(blob, path)
    loaded = ImageEntityScorer.load(path, encoder, kb_vectors=kb[0], kb_titles=kb[1])
    feature = torch.randn(scorer.spec.vision_dim)
    assert loaded.fusion == scorer.fusion
    np.testing.assert_allclose(loaded.score(feature, kb[0]).fused, scorer.score(feature, kb[0]).fused, atol=1e-2)


def test_replace_shares_weights_and_drops_components(scorer, kb):
    only = scorer.replace(use_exemplars=False)
    assert only.projection is scorer.projection and only.exemplars is None
    assert set(only.score(torch.randn(256), kb[0]).components) == {"projection"}
    assert scorer.fusion == FusionConfig()  # the original is unchanged


@pytest.mark.parametrize("bad,match", [
    (lambda s, kb: s.similarities(torch.randn(7), kb[0]), "expects 256"),
    (lambda s, kb: s.similarities(torch.randn(256), kb[0][:, :3]), "entity_vectors must be"),
    (lambda s, kb: s.similarities(None, kb[0]), "no image given"),
    (lambda s, kb: s.top_k(torch.randn(256), k=0), "k=0"),
])
def test_bad_use_is_a_clear_error(scorer, kb, bad, match):
    with pytest.raises(ImageScoreError, match=match):
        bad(scorer, kb)


@pytest.mark.parametrize("kwargs", [dict(w_projection=-1.0), dict(w_projection=0.0, w_exemplar=0.0),
                                    dict(normalise="rank"), dict(temperature=0.0)])
def test_fusion_config_checks(kwargs):
    with pytest.raises(ImageScoreError):
        FusionConfig(**kwargs)


def test_save_load_roundtrip_is_small_and_checked(scorer, encoder, kb, tmp_path):
    path = tmp_path / "scorer.pt"
    version = scorer.save(path)
    assert version.startswith("image-scorer-") and path.stat().st_size < 5 * 2**20
    loaded = ImageEntityScorer.load(path, encoder, "random", kb[0], kb[1], corpus_manifest="abc")
    feature = torch.randn(256)
    assert np.allclose(loaded.similarities(feature, kb[0]), scorer.similarities(feature, kb[0]), atol=2e-2)
    assert loaded.fusion == scorer.fusion
    with pytest.raises(ImageScoreError, match="embedder: artifact 'random' vs given 'other'"):
        ImageEntityScorer.load(path, encoder, "other")
    with pytest.raises(ImageScoreError, match="corpus_manifest"):
        ImageEntityScorer.load(path, encoder, corpus_manifest="def")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ImageScoreError, match="not a readable"):
        ImageEntityScorer.load(tmp_path / "junk.pt", encoder)


def test_training_learns_a_separable_mapping_and_fusion_fits(scorer, kb):
    torch.manual_seed(0)
    targets = torch.from_numpy(kb[0][:6])
    centres = torch.randn(6, 256) * 3
    labels = torch.arange(6).repeat(20)
    feats = centres[labels] + 0.3 * torch.randn(len(labels), 256)
    result = train_projection(feats, targets, labels, ProjectionConfig(epochs=30, batch_size=32, seed=0))
    assert result.losses[-1] < result.losses[0]
    pred = (result.projection(feats) @ targets.T).argmax(1)
    assert (pred == labels).float().mean() > 0.95
    trained = scorer.replace()
    trained.projection = result.projection
    fusion = fit_fusion(trained, feats, labels.tolist(), kb[0][:6])
    assert fusion.w_projection == 1.0


def test_scorer_needs_a_component(scorer, kb):
    with pytest.raises(ImageScoreError, match="needs a projection"):
        ImageEntityScorer(scorer.spec, scorer.encoder)


# ---- odd pictures --------------------------------------------------------------------------------
def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def odd_pictures() -> dict[str, bytes | Image.Image]:
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (10, 10, 30, 30))
    palette = Image.new("P", (30, 30), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    wide = Image.fromarray(np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16))
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return {
        "alpha": _png(rgba), "palette": _png(palette, transparency=0), "16-bit": _png(wide),
        "cmyk": _png(Image.new("CMYK", (32, 32), (0, 100, 200, 0)), format="JPEG"),
        "animated-gif": gif.getvalue(), "16x16": _png(Image.new("RGB", (16, 16), (9, 9, 9))),
        "la": _png(Image.new("LA", (20, 20), (100, 0))),
    }


@pytest.mark.parametrize("name", sorted(odd_pictures()))
def test_odd_pictures_score(scorer, kb, name):
    s = scorer.score(odd_pictures()[name], kb[0])
    assert np.isfinite(s.fused).all() and s.fused.shape == (12,)


def test_24_megapixel_picture_scores(scorer, kb):
    big = Image.new("RGB", (6000, 4000), (30, 60, 90))
    assert np.isfinite(scorer.similarities(big, kb[0])).all()


def test_transparency_is_composited_on_white_everywhere(scorer, kb, encoder):
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(_png(rgba)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert torch.allclose(encoder.encode([rgba]), encoder.encode([white]))  # the encoder composites too
    assert np.allclose(scorer.similarities(rgba, kb[0]), scorer.similarities(white, kb[0]), atol=1e-5)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    wide = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    assert to_rgb(wide).getpixel((0, 0)) == (128, 128, 128)


# ---- colour-layout exemplars ----------------------------------------------------------------------
def _flag(colours, vertical=True, size=(60, 40), pad=8) -> Image.Image:
    """A tricolour on a transparent canvas, like an emoji flag."""
    w, h = size
    im = Image.new("RGBA", (w + 2 * pad, h + 2 * pad), (0, 0, 0, 0))
    for i, c in enumerate(colours):
        box = (pad + i * w // 3, pad, pad + (i + 1) * w // 3, pad + h) if vertical else \
            (pad, pad + i * h // 3, pad + w, pad + (i + 1) * h // 3)
        im.paste(c + (255,), box)
    return im


FLAGS = {"France": ((0, 35, 149), (255, 255, 255), (237, 41, 57)), "Italy": ((0, 146, 70), (241, 242, 241), (206, 43, 55)),
         "Germany": ((0, 0, 0), (221, 0, 0), (255, 206, 0))}


@pytest.mark.parametrize("palette, channels", [(0.0, 3), (0.2, 9)])
def test_colour_layout_ignores_the_transparent_margin(palette, channels):
    config = ExemplarConfig(palette_temperature=palette)
    a = colour_layout(_flag(FLAGS["France"], pad=2), config)
    b = colour_layout(_flag(FLAGS["France"], pad=30), config)
    assert a.shape == (channels * sum(w * h for w, h in config.grids),) and np.allclose(a, b, atol=0.05)
    assert colour_layout(Image.new("RGB", (10, 10), (255, 255, 255)), config).shape == a.shape  # all background


def test_palette_layout_carries_a_flag_across_art_styles():
    """Another style's shades of the same flag (a paler blue, a brick red) stay nearer the flag than a different
    tricolour does, and more so with palette shares than with mean colours."""
    other_style = ((40, 70, 190), (246, 246, 246), (205, 70, 60))
    ratio = {}
    for palette in (0.0, 0.2):
        config = ExemplarConfig(palette_temperature=palette)
        france, restyled, italy = (colour_layout(_flag(c), config) for c in (FLAGS["France"], other_style,
                                                                               FLAGS["Italy"]))
        ratio[palette] = np.linalg.norm(france - restyled) / np.linalg.norm(france - italy)
    assert ratio[0.2] < ratio[0.0] and ratio[0.2] < 0.5


def test_exemplars_find_the_flag_in_another_drawing(encoder, kb):
    layouts = np.stack([colour_layout(_flag(c, vertical=(t != "Germany"))) for t, c in FLAGS.items()])
    ex = ColourExemplars.build(layouts, list(FLAGS))
    redrawn = _flag(FLAGS["Italy"], size=(90, 50), pad=3)  # another size and margin: another "style"
    sims = ex.similarities(colour_layout(redrawn)[None], ["France", "Italy", "Germany", "Moon"])[0]
    assert sims.argmax() == 1 and sims[3] == 0.0 and 0 <= sims.min() and sims.max() <= 1


def test_a_wider_kernel_keeps_the_nearest_exemplar_of_a_picture_far_from_all_of_them():
    """A picture in an unseen style can be further from its own flag than half the usual distance between two
    pictures: at width 0.5 every kernel is 0 and its nearest exemplar is lost; at 1.0 it still ranks first."""
    rng = np.random.default_rng(0)
    layouts = rng.random((40, 12)).astype(np.float32)
    titles = [f"t{i}" for i in range(40)]
    narrow, wide = (ColourExemplars.build(layouts, titles, ExemplarConfig(width=w)) for w in (0.5, 1.0))
    assert wide.scale == pytest.approx(2 * narrow.scale)
    far = layouts[7] + 0.7 * narrow.scale * np.eye(12, dtype=np.float32)[0] / 0.5  # beyond the narrow scale
    assert np.linalg.norm(far - layouts[7]) > narrow.scale
    assert narrow.similarities(far[None], titles)[0].max() == 0.0
    sims = wide.similarities(far[None], titles)[0]
    nearest = int(np.linalg.norm(layouts - far, axis=1).argmin())
    assert sims.argmax() == nearest and sims.max() > 0
    with pytest.raises(ImageScoreError, match="width=0"):
        ExemplarConfig(width=0)


def test_exemplars_join_the_scorer_only_with_a_picture_and_titles(scorer, kb, tmp_path, encoder):
    layouts = np.stack([colour_layout(_flag(c)) for c in FLAGS.values()])
    ex = ColourExemplars.build(layouts, kb[1][:3])
    with_ex = ImageEntityScorer(scorer.spec, encoder, scorer.projection, FusionConfig(w_exemplar=4.0), kb[0], kb[1],
                                ex)
    image = _flag(list(FLAGS.values())[1])
    assert "exemplar" in with_ex.score(image, kb[0], kb[1]).components
    assert "exemplar" not in with_ex.score(image, kb[0]).components  # no titles: skipped
    assert "exemplar" not in with_ex.score(encoder.encode([image])[0], kb[0], kb[1]).components  # a feature
    assert with_ex.top_k(image, 1)[0][0] == kb[1][1]
    with_ex.save(tmp_path / "s.pt")
    loaded = ImageEntityScorer.load(tmp_path / "s.pt", encoder, kb_vectors=kb[0], kb_titles=kb[1])
    assert loaded.exemplars.titles == kb[1][:3] and loaded.fusion.w_exemplar == 4.0
    assert np.allclose(loaded.similarities(image, kb[0], kb[1]), with_ex.similarities(image, kb[0], kb[1]), atol=5e-2)


def test_scores_against_float16_rows_are_computed_a_chunk_at_a_time_with_the_same_numbers():
    from gemel.image.vectors import dot_rows

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((1000, 16)).astype(np.float16)  # like a built KB's memory-mapped vectors
    queries = rng.standard_normal((2, 16)).astype(np.float32)
    got = dot_rows(queries, rows, chunk=300)
    assert got.dtype == np.float32 and got.shape == (2, 1000)
    np.testing.assert_allclose(got, queries @ rows.astype(np.float32).T, rtol=1e-6, atol=1e-5)


def test_exemplar_columns_are_found_once_per_titles_object_and_follow_a_new_one():
    from gemel.image.exemplars import ColourExemplars

    ex = ColourExemplars(np.eye(3, dtype=np.float32), ["b", "x", "a"], scale=1.0)  # other exemplars: kernel 0
    titles = ["a", "b", "c"]
    first = ex.similarities(np.eye(3, dtype=np.float32), titles)
    assert ex._columns(titles) is ex._columns(titles)  # kept for the same titles object
    np.testing.assert_allclose(first[:, 0], [0, 0, 1])  # "a" is the third exemplar
    np.testing.assert_allclose(first[:, 1], [1, 0, 0])
    assert first[:, 2].tolist() == [0, 0, 0]  # "c" has no exemplar
    other = ex.similarities(np.eye(3, dtype=np.float32), ["x", "a"])  # another object: looked up again
    np.testing.assert_allclose(other[:, 0], [0, 1, 0])
    np.testing.assert_allclose(other[:, 1], [0, 0, 1])


# ---- the shipped artifact, after the ImageNet bridge was removed ----------------------------------------------
REFERENCE = Path(__file__).parent / "fixtures" / "image_scorer_reference.npz"
SHIPPED = Path(__file__).resolve().parent.parent / "gemel" / "assets" / "models" / "image_scorer.pt"


def _shipped(encoder=None, **kb) -> ImageEntityScorer:
    """The shipped scorer; loading checks only the encoder's name and size, which a stand-in can give."""
    encoder = encoder or SimpleNamespace(config=SimpleNamespace(name="tf_efficientnet_lite0"), dim=1280)
    return ImageEntityScorer.load(SHIPPED, encoder, **kb)


def test_the_shipped_scorer_scores_exactly_as_before_the_bridge_was_removed():
    """Five pictures' features and colour layouts (four photos and drawings of gemel/assets/images, a drawn
    tricolour) against 14 candidates, fused by the code that still computed the bridge on every call (commit
    10ed9d6) and saved in the fixture: the artifact keeps its bridge entries at weight 0, ignored now."""
    blob = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert blob["fusion"]["w_bridge"] == 0.0 and "bridge.class_vectors" in blob["state_dict"]
    ref = np.load(REFERENCE)
    scorer = _shipped()
    assert scorer.version == "image-scorer-28911efcb5fe"
    for feature, layout, fused in zip(ref["features"], ref["layouts"], ref["fused"]):
        scores = scorer.score(feature, ref["vectors"], list(ref["titles"]), layout=layout)
        assert set(scores.components) == {"projection", "exemplar"}
        np.testing.assert_allclose(scores.fused, fused, rtol=0, atol=1e-6)


def test_a_shipped_scorer_that_weighs_the_bridge_is_refused(tmp_path):
    blob = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    blob["fusion"]["w_bridge"] = 0.3
    torch.save(blob, tmp_path / "weighed.pt")
    stand_in = SimpleNamespace(config=SimpleNamespace(name="tf_efficientnet_lite0"), dim=1280)
    with pytest.raises(ImageScoreError, match=r"w_bridge=0.3, but the bridge no longer exists: retrain the scorer"):
        ImageEntityScorer.load(tmp_path / "weighed.pt", stand_in)


@pytest.mark.offline_model
def test_the_shipped_scorer_scores_the_whole_kb_as_before_the_bridge_was_removed():
    """As the linker calls it (every KB entity, z-scored over the KB): the same fused scores at each picture's
    top 10 and the 14 candidates, the same confidence; and the pictures still give the fixture's features."""
    from gemel.training.image_scorer import load_parts

    ref = np.load(REFERENCE)
    parts = load_parts("offline")
    scorer = _shipped(parts.encoder, kb_vectors=parts.kb_vectors, kb_titles=parts.kb.titles)
    for feature, layout, rows, fused, confidence in zip(ref["features"], ref["layouts"], ref["kb_rows"],
                                                        ref["kb_fused"], ref["kb_confidence"]):
        scores = scorer.score(feature, parts.kb_vectors, parts.kb.titles, layout=layout)
        np.testing.assert_allclose(scores.fused[rows], fused, rtol=0, atol=1e-6)
        assert scores.confidence == pytest.approx(float(confidence), abs=1e-6)
    assets = Path(__file__).resolve().parent.parent / "gemel" / "assets" / "images"
    photos = [Image.open(assets / str(name)).convert("RGB") for name in ref["names"][:4]]
    np.testing.assert_allclose(parts.encoder.encode(photos).numpy(), ref["features"][:4], rtol=0, atol=1e-3)
