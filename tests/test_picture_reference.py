"""The reference pictures: the level a labelled picture must beat to count (gemel.image.reference), the features
made from it, and the shipped reference for the offline encoder."""

from __future__ import annotations

import numpy as np
import pytest

from gemel.config import VisionConfig
from gemel.image.configs import ExemplarConfig
from gemel.image.reference import PictureReference, ReferenceError, descriptor_identity, encoder_identity
from gemel.rank.features import NAMES, Evidence, candidate_features


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)


def _reference() -> PictureReference:
    features = np.stack([_unit(1, 0, 0), _unit(1, 0.2, 0), _unit(0, 1, 0), _unit(0, 0, 1)])
    return PictureReference(features, None, ("Cat", "Cat", "Dog", "Flag"), ("p-cat1", "p-cat2", "p-dog", "p-flag"),
                            encoder_identity(VisionConfig()), "")


def test_the_level_is_the_nearest_reference_picture_of_another_entity():
    ref = _reference()
    level = ref.level(_unit(1, 0.1, 0), None, None, None)
    near_cat = float(_unit(1, 0.1, 0) @ _unit(1, 0.2, 0))
    near_dog = float(_unit(1, 0.1, 0) @ _unit(0, 1, 0))
    assert level.of("Dog") == pytest.approx((near_cat, near_cat))  # for a Dog: the cats are the others
    assert level.of("Cat") == pytest.approx((near_dog, near_dog))  # for a Cat: its own pictures do not count
    assert level.of("Anything") == pytest.approx((near_cat, near_cat))


def test_the_query_picture_never_counts_as_its_own_reference():
    ref = _reference()
    assert ref.level(_unit(1, 0.2, 0), None, "p-cat2", None).of("Dog")[0] == pytest.approx(
        float(_unit(1, 0.2, 0) @ _unit(1, 0, 0)))  # its copy left out, the other cat counts
    assert ref.level(_unit(1, 0.2, 0), None, None, None).of("Dog")[0] == pytest.approx(1.0)


def test_excess_features_count_only_what_beats_the_level():
    ev = Evidence("the thing", ["Cat", "Dog", "Flag"], [(), (), ()], [0, 1, 2], llm_sum=[-1.0, -2.0, -3.0],
                  tokens=[1, 1, 1], retrieval_sim=[0.1, 0.2, 0.3], memory={"Cat": 0.9, "Dog": 0.4},
                  decisions={"Dog": (0.8, 0.45), "Flag": (0.9, 0.0)},
                  levels={"Cat": (0.5, 0.4), "Dog": (0.6, 0.3), "Flag": (0.6, 0.3)})
    x = candidate_features(ev)
    col = {n: i for i, n in enumerate(NAMES)}
    assert x[:, col["memory_excess"]].tolist() == pytest.approx([0.4, 0.0, 0.0])  # Dog's 0.4 is below its level
    assert x[:, col["decision_excess"]].tolist() == pytest.approx([0.0, 0.15, 0.0])  # Flag's decision: no picture
    assert "memory_sim" not in col and "decision_picture" not in col  # no raw similarity is a feature


def test_without_a_reference_the_excess_features_are_zero():
    ev = Evidence("the thing", ["Cat"], [()], [0], llm_sum=[-1.0], tokens=[1], retrieval_sim=[0.1],
                  memory={"Cat": 0.9}, decisions={"Cat": (0.8, 0.7)})
    x = candidate_features(ev)
    assert x[0, NAMES.index("memory_excess")] == 0.0 and x[0, NAMES.index("decision_excess")] == 0.0


def test_a_reference_fits_its_encoder_and_descriptor_only():
    ref = PictureReference(np.eye(2, dtype=np.float32), np.zeros((2, 3), np.float32), ("A", "B"), ("a", "b"),
                           encoder_identity(VisionConfig()), descriptor_identity(ExemplarConfig()))
    assert ref.fits(VisionConfig(), ExemplarConfig())
    assert ref.fits(VisionConfig(), ExemplarConfig(width=0.5))  # the kernel width is the memory's, not the layout's
    assert not ref.fits(VisionConfig(kind="open_clip", name="ViT-B-32", weights="openai"), None)
    assert not ref.fits(VisionConfig(), ExemplarConfig(palette_temperature=0.0))


def test_round_trip_and_a_bad_file_is_a_sentence(tmp_path):
    ref = _reference()
    back = PictureReference.load(ref.save(tmp_path / "ref.npz"))
    assert back.titles == ref.titles and back.pictures == ref.pictures and back.encoder == ref.encoder
    np.testing.assert_allclose(back.features, ref.features, atol=1e-3)  # stored as float16
    (tmp_path / "bad.npz").write_bytes(b"not a reference")
    with pytest.raises(ReferenceError, match="is not a picture reference.*gemel corpus reference"):
        PictureReference.load(tmp_path / "bad.npz")


@pytest.mark.offline_model
def test_the_shipped_reference_is_the_offline_encoders(offline_linker):
    """The offline default reads the shipped reference; a picture's level for an entity is the nearest reference
    picture of another, never the picture itself."""
    from gemel.images import image_key
    from gemel.training.first_start import ASSETS

    ref = offline_linker.image_signal.reference
    assert ref is not None and ref.manifest["split"] == "train" and len(ref.titles) >= 256
    assert ref.manifest["pool_pictures"] >= 30  # photos too: against drawings alone any photo looks near
    picture = str(ASSETS / "images" / "apple.jpg")
    assert image_key(picture) in ref.pictures  # a seed photo: among the reference, never its own level
    levels = offline_linker.image_signal.levels(picture, ["Apple", "Banana"])
    assert all(0.0 < sim < 1.9 and -1.0 <= cos < 0.99 for sim, cos in levels.values())  # its copy would be 2 and 1


def test_a_decision_on_this_picture_about_another_mention_is_no_picture_evidence(tmp_path):
    """As in the picture memory: the same photo's decision for "Van Gogh" says nothing about which entity its
    "Post-Impressionism" is; for the same mention, or another picture, the cosine counts."""
    import torch
    from PIL import Image

    from gemel.rank.decisions import picture_similarities
    from gemel.types import Example

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(a)
    Image.new("RGB", (8, 8), (0, 0, 200)).save(b)

    class Features:
        def get(self, image):
            return torch.tensor([1.0, 0.0]) if "a.png" in str(image) else torch.tensor([0.6, 0.8])

    decisions = [(Example("t", "Van Gogh", "Vincent van Gogh", str(a)), np.zeros(2)),
                 (Example("t", "Post-Impressionism", "Post-Impressionism", str(a)), np.zeros(2)),
                 (Example("t", "Van Gogh", "Vincent van Gogh", str(b)), np.zeros(2))]
    sims = picture_similarities(decisions, Features(), str(a), "post-impressionism")
    assert sims == pytest.approx([0.0, 1.0, 0.6])
