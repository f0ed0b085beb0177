"""The vision encoder's ImageNet classes read as KB entities (gemel/image/classes.py): which rows a class names,
the class score of each row, the ranker's ``image_class`` feature, the candidates they add, and encoders without a
classifier (open_clip) giving nothing.

A random-weight timm ``test_efficientnet`` (1000-class head) stands in for EfficientNet-Lite0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gemel.config import VisionConfig
from gemel.image.classes import TOP_CLASSES, ClassNames, class_lemmas, rows_of_class
from gemel.image.configs import FusionConfig, ScorerSpec
from gemel.image.facts import PictureFactsCache
from gemel.image.projection import Projection
from gemel.image.scorer import ImageEntityScorer
from gemel.image.signal import ImageSignal
from gemel.kb.entities import Entity, KnowledgeBase
from gemel.models.vision import VisionEncoder
from gemel.rank.features import NAMES, Evidence, PictureEvidence, candidate_features

KB = KnowledgeBase([Entity("Penguin", "flightless bird"), Entity("Tiger", "large cat"), Entity("Lion", "big cat"),
                    Entity("Pinniped", "seals and sea lions", aliases=("sea lion",)), Entity("Guitar", "instrument"),
                    Entity("Electric guitar", "guitar with pickups")], name="tiny")


def test_the_real_lemma_lists_are_imagenet_1k() -> None:
    lemmas = class_lemmas()
    assert len(lemmas) == 1000
    assert lemmas[0][0] == "tench" and "king penguin" in lemmas[145]


def test_a_class_names_what_its_lemmas_name_else_its_head_word() -> None:
    row = {t: KB.index(t) for t in KB.titles}
    assert rows_of_class(KB, ("tiger", "Panthera tigris")) == (row["Tiger"],)
    assert rows_of_class(KB, ("king penguin", "Aptenodytes patagonica")) == (row["Penguin"],)  # head word
    assert rows_of_class(KB, ("sea lion",)) == (row["Pinniped"],)  # an alias, not the head word "lion"
    assert rows_of_class(KB, ("electric guitar",)) == (row["Electric guitar"],)  # exact before the head word
    assert rows_of_class(KB, ("tigers",)) == (row["Tiger"],)  # up to a plural
    assert rows_of_class(KB, ("abacus",)) == ()


def test_scores_sum_the_top_classes_that_name_a_row() -> None:
    lemmas = [("tiger",), ("tiger cat",), ("king penguin",), ("abacus",)] + [("x",)] * (TOP_CLASSES + 2)
    names = ClassNames(KB, lemmas)
    logits = torch.full((len(lemmas),), -20.0)
    logits[0], logits[1], logits[2] = 2.0, 1.0, 0.0  # tiger, tiger cat (no KB "cat": its head word), king penguin
    p = torch.softmax(logits, -1)
    s = names.scores(logits)
    assert s[KB.index("Tiger")] == pytest.approx(float(p[0]))
    assert s[KB.index("Penguin")] == pytest.approx(float(p[2]))
    assert set(s) == {KB.index("Tiger"), KB.index("Penguin")}
    assert names.scores(torch.zeros(7)) == {}  # another head: no class scores, not a wrong mapping


@pytest.fixture(scope="module")
def encoder() -> VisionEncoder:
    torch.manual_seed(0)
    return VisionEncoder.load(VisionConfig(kind="timm", name="test_efficientnet", weights="", image_size=32,
                                           crop_pct=1.0))


def _signal(encoder: VisionEncoder, classes: ClassNames | None) -> ImageSignal:
    vecs = np.eye(len(KB), 8, dtype=np.float32)
    spec = ScorerSpec(vision=encoder.config.name, vision_dim=encoder.dim, embedder="random", embed_dim=8)
    scorer = ImageEntityScorer(spec, encoder, Projection(encoder.dim, 8), FusionConfig(), vecs, KB.titles)
    features = type("Features", (), {"get": lambda self, im: encoder.encode([im])[0]})()
    return ImageSignal(scorer, features, KB, PictureFactsCache(), {}, None, classes)


def test_the_picture_carries_the_class_scores_of_its_encoder(encoder) -> None:
    lemmas = [("tiger",), ("king penguin",)] + [("x",)] * 998
    image = Image.new("RGB", (40, 30), (200, 120, 30))
    picture = _signal(encoder, ClassNames(KB, lemmas)).picture(image)
    logits = encoder.classify(image)[0]
    expected = ClassNames(KB, lemmas).scores(logits)
    assert picture.classes.keys() == expected.keys()
    assert all(picture.classes[r] == pytest.approx(v, abs=1e-5) for r, v in expected.items())
    assert _signal(encoder, None).picture(image).classes == {}  # no class table: nothing


def test_the_feature_is_the_class_score_of_each_candidate() -> None:
    picture = PictureEvidence(np.zeros(len(KB)), 0.1, classes={KB.index("Tiger"): 0.8, KB.index("Lion"): 0.05})
    rows = [KB.index("Tiger"), KB.index("Penguin")]
    ev = Evidence("the thing", ["Tiger", "Penguin"], [(), ()], rows, llm_sum=[-3.0, -2.0], tokens=[2, 2],
                  retrieval_sim=[0.1, 0.2], picture=picture)
    x = candidate_features(ev)
    assert x[:, NAMES.index("image_class")].tolist() == [0.8, 0.0]


def test_the_entities_the_classes_name_most_join_the_candidates(tiny_linker) -> None:
    query = tiny_linker.embedder.encode(["Look at this Apple."])
    text = tiny_linker.retrieve_candidates(query)
    outside = [r for r in range(len(tiny_linker.kb)) if r not in text]
    classes = {outside[0]: 0.1, outside[1]: 0.6, outside[2]: 0.3}
    linker = tiny_linker.replace(config=tiny_linker.config.replace(image={"class_candidates": 2}))
    assert linker.retrieve_candidates(query, class_scores=classes) == text + [outside[1], outside[2]]
    assert tiny_linker.retrieve_candidates(query, class_scores=classes) == text  # class_candidates = 0


def test_an_encoder_without_a_classifier_gives_no_class_scores(tiny_linker, tiny_dir) -> None:
    assert not tiny_linker.vision.has_classifier  # the tiny open_clip tower
    signal = tiny_linker.image_signal
    assert signal._class_scores(torch.zeros(tiny_linker.vision.dim)) == {}
