"""The learning loop on the real offline default: a stored correction reaches the next, different caption.

"Hubble" in a caption about the astronomer: an annotator decides it once in the store; the store's decisions are
added to the linker's demonstrations (as `gemel link --annotations DB` and the UI do), and a *different* caption
about the astronomer then has the decision among its demonstrations (a stored caption is no ranker feature: a
caption template shared by two entities made it a trap, docs/RANKER.md). No retraining involved. The answer
before depends on the shipped ranker (the fused score and the ranker with two weight vectors said the telescope
until corrected, the one-vector ranker the astronomer); after, it is the astronomer.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.offline_model

WRONG = ("Hubble showed in 1929 that the galaxies are moving away from each other at speeds that grow with "
         "distance.", "Hubble")
LATER = ("Hubble spent his career at the Mount Wilson Observatory measuring the distances to nebulae.", "Hubble")


def test_a_stored_correction_reaches_a_different_caption(offline_linker, tmp_path):
    from annotations import Store
    from annotations.loop import open_loop

    linker = offline_linker.replace(pool=offline_linker.labelled_pool.with_examples())  # the session's stays clean
    before = linker.link(None, *LATER)
    assert not any(d.source == "annotations" for d in before.demonstrations)  # no decision stored yet

    db = tmp_path / "gemel.db"
    with Store.open(db, entity_exists=linker.kb.__contains__) as store:
        first = linker.link(None, *WRONG)
        store.record("alice", "search", "Edwin Hubble", text=WRONG[0], mention=WRONG[1],
                     model_entity=first.entity, candidates=[c.to_dict() for c in first.candidates],
                     profile=first.profile, mapper_version=first.mapper)
    before_pool = len(linker.labelled_pool)
    open_loop(db, linker)  # what `gemel link --annotations DB` does
    assert len(linker.labelled_pool) == before_pool + 1
    after = linker.link(None, *LATER)
    assert after.entity == "Edwin Hubble" and after.source == "model"
    assert any(d.entity == "Edwin Hubble" and d.source == "annotations" for d in after.demonstrations)
    assert "decision_caption" not in after.candidates[0].features


CAPTION = ("Jordan, as seen in this picture.", "Jordan")
PICTURES = {"basketball.jpg": "Michael Jordan", "lake.jpg": "Jordan River"}


def test_a_correction_is_not_copied_to_the_same_caption_with_another_picture(offline_linker, tmp_path):
    """Two items share a caption and differ only in the picture: correcting one leaves the other's answer as
    it was (no copying through a same-caption demonstration); correcting the other too makes both right."""
    from pathlib import Path

    from annotations import Store
    from annotations.loop import CorrectionLoop

    images = {name: str(Path(__file__).parents[1] / "assets" / "images" / name) for name in PICTURES}
    linker = offline_linker.replace(pool=offline_linker.labelled_pool.with_examples())
    before = {name: linker.link(img, *CAPTION).entity for name, img in images.items()}
    with Store.open(tmp_path / "gemel.db", entity_exists=linker.kb.__contains__) as store:
        loop = CorrectionLoop(store, linker)
        loop.record("alice", "search", PICTURES["basketball.jpg"], text=CAPTION[0], mention=CAPTION[1],
                    image=images["basketball.jpg"])
        lake = linker.link(images["lake.jpg"], *CAPTION)
        assert lake.source == "model" and lake.entity == before["lake.jpg"]
        loop.record("alice", "search", PICTURES["lake.jpg"], text=CAPTION[0], mention=CAPTION[1],
                    image=images["lake.jpg"])
        after = {name: linker.link(img, *CAPTION) for name, img in images.items()}
    assert {name: p.entity for name, p in after.items()} == PICTURES
    assert all(p.source == "correction" for p in after.values())
