"""The picture memory (gemel/image/memory.py): what a labelled picture teaches the ranker, and what not."""

from __future__ import annotations

import numpy as np
import pytest

from gemel.image.memory import PictureMemory, Remembered, picture_similarity
from gemel.types import Example


def _unit(*values: float) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


def _entry(key: str, entity: str, feature: np.ndarray, picture: str = "", mention: str = "the thing") -> Remembered:
    return Remembered(key, entity, picture or key, mention, feature, None)


def test_every_remembered_entity_gets_the_similarity_of_its_nearest_picture():
    memory = PictureMemory()
    memory.add(_entry("a", "Archery", _unit(1, 0, 0)))
    memory.add(_entry("a2", "Archery", _unit(0, 0, 1)))
    memory.add(_entry("b", "Darts", _unit(0, 1, 0)))
    query = _unit(1, 0.2, 0)  # cos 0.98 to Archery's first picture, 0 to its second, 0.20 to Darts'
    assert memory.nearest(query, None, "q", "the thing") == {"Archery": pytest.approx(0.98, abs=0.01),
                                                            "Darts": pytest.approx(0.196, abs=0.01)}
    assert PictureMemory().nearest(query, None, "q", "the thing") == {}


def test_a_remembered_copy_of_the_picture_answers_for_its_own_mention_only():
    memory = PictureMemory()
    memory.add(_entry("a", "France", _unit(1, 0), picture="flag.png", mention="the country"))
    feature = _unit(1, 0)
    assert memory.nearest(feature, None, "flag.png", "The  Country") == {"France": pytest.approx(1.0)}
    assert memory.nearest(feature, None, "flag.png", "the capital") == {}  # same picture, another question
    assert memory.nearest(feature, None, "copy.png", "the capital") == {"France": pytest.approx(1.0)}


def test_sync_follows_the_labelled_pool_and_skips_what_cannot_be_remembered():
    examples = [Example("t", "m", "Archery", "a.png", "1"), Example("t", "m", "Darts", "photo.png", "2"),
                Example("t", "m", None, "nil.png", "3"), Example("t", "m", "Chess", None, "4")]
    calls = []

    def remember(e: Example) -> Remembered | None:
        calls.append(e.id)
        return None if e.image == "photo.png" else _entry(e.id, e.entity, _unit(1, 0))

    memory = PictureMemory()
    memory.sync(examples, remember)
    assert len(memory) == 1 and calls == ["1", "2"]  # NIL and text-only decisions are not asked for
    memory.sync(examples, remember)
    assert calls == ["1", "2"]  # computed once, skipped ones too
    memory.sync(examples[1:], remember)  # the correction of "1" was undone
    assert len(memory) == 0 and memory.nearest(_unit(1, 0), None, "q", "m") == {}


def test_similarity_is_cosine_plus_the_layout_kernel():
    feats = np.stack([_unit(1, 0), _unit(0, 1)])
    assert picture_similarity(_unit(1, 0), feats, None) == pytest.approx([1.0, 0.0])
    assert picture_similarity(_unit(1, 0), feats, np.array([1.0, 0.5])) == pytest.approx([2.0, 0.5])


def _target(shift=(0, 0), scale: float = 1.0):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (256, 256), (255, 255, 255))
    draw, (cx, cy) = ImageDraw.Draw(im), (128 + shift[0], 128 + shift[1])
    for r, colour in ((110, (230, 200, 0)), (85, (220, 30, 30)), (60, (40, 90, 200)), (35, (20, 20, 20)),
                      (12, (255, 255, 255))):
        r = int(r * scale)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    return im


def _stripes():
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (256, 256), (255, 255, 255))
    for i in range(8):
        ImageDraw.Draw(im).rectangle([0, i * 32, 256, i * 32 + 16], fill=(30, 140, 60))
    return im


@pytest.mark.offline_model
def test_a_correction_teaches_the_picture_and_only_that_picture(offline_linker, tmp_path):
    """Real offline default: an annotator says a drawn archery target is `Archery` (the scorer never saw one and
    reads an eye); a re-drawn target (shifted, smaller) is then linked to `Archery` under the same caption, for the
    picture memory's reasons; a different picture under that caption keeps its answer, and undoing the correction
    forgets it."""
    caption, mention = "This is the thing in the picture.", "the thing"
    linker = offline_linker.replace(pool=list(offline_linker.labelled_pool.live()))  # a pool of its own
    corrected, redrawn, other = tmp_path / "target.png", _target((10, -6), 0.9), _stripes()
    _target().save(corrected)
    before = {name: linker.link(pic, caption, mention).entity for name, pic in (("redrawn", redrawn), ("other", other))}
    assert before["redrawn"] != "Archery"
    linker.add_demonstrations([Example(caption, mention, "Archery", str(corrected), "corr-1", "annotations")])
    after = linker.link(redrawn, caption, mention)
    assert after.entity == "Archery" and after.source == "model"  # learnt from, not recalled: another picture
    top = after.candidates[0]
    assert max(top.contributions, key=top.contributions.get) in {"memory_lead", "memory_excess"}
    assert linker.link(other, caption, mention).entity == before["other"]
    assert offline_linker.link(redrawn, caption, mention).entity == before["redrawn"]  # the fixture's pool: untouched
    linker.remove_demonstrations(["corr-1"])
    assert linker.link(redrawn, caption, mention).entity == before["redrawn"]
