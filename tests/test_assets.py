"""Properties of the shipped real-photo assets: seed demonstrations and evaluation sets.

The assets (gemel/assets/seed/examples.jsonl, assets/eval/{dev,test}.jsonl, gemel/assets/images/) are the
product's first demonstrations and the benchmark that decides whether the linker beats a plain
embedding lookup, so every line must be well-formed, point at a real image and a real KB title,
and the evaluation captions must not leak from the seed pool.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FILES = {"seed": "../gemel/assets/seed/examples.jsonl", "dev": "eval/dev.jsonl", "test": "eval/test.jsonl"}
MIN_LINES = {"seed": 48, "dev": 30, "test": 42}
REQUIRED = ("id", "image", "text", "mention", "entity")
ALLOWED = set(REQUIRED) | {"nil", "hard"}
MAX_SIDE = 384


def _read(split: str) -> list[dict[str, Any]]:
    lines = (ASSETS / FILES[split]).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


SPLITS = {split: _read(split) for split in FILES}
ALL = [(split, rec) for split, rows in SPLITS.items() for rec in rows]
RECORD_IDS = [rec.get("id", f"{split}-?") for split, rec in ALL]
PACKAGE_IMAGES = ASSETS.parent / "gemel" / "assets" / "images"
IMAGES = sorted(PACKAGE_IMAGES.glob("*"))


@pytest.mark.parametrize("split", list(FILES))
def test_split_has_enough_lines(split: str) -> None:
    assert len(SPLITS[split]) >= MIN_LINES[split]


@pytest.mark.parametrize(("split", "rec"), ALL, ids=RECORD_IDS)
def test_record_shape(split: str, rec: dict[str, Any]) -> None:
    assert set(REQUIRED) <= set(rec), f"missing {set(REQUIRED) - set(rec)}"
    assert set(rec) <= ALLOWED, f"unknown keys {set(rec) - ALLOWED}"
    assert re.fullmatch(rf"{split}-\d{{3}}", rec["id"])
    assert all(isinstance(rec[k], str) and rec[k].strip() for k in ("image", "text", "mention"))
    assert rec["mention"] in rec["text"], "mention must occur verbatim in the text"
    assert 8 <= len(rec["text"].split()) <= 30


@pytest.mark.parametrize(("split", "rec"), ALL, ids=RECORD_IDS)
def test_entity_is_kb_title_or_flagged_nil(
    split: str, rec: dict[str, Any], kb_titles: set[str]
) -> None:
    if rec["entity"] is None:
        assert split == "dev" and rec.get("nil") is True, "only dev lines flagged nil may be NIL"
    else:
        assert rec["entity"] in kb_titles, f"{rec['entity']!r} is not a KB title"
        assert "nil" not in rec


def test_ids_unique_across_files() -> None:
    assert len(RECORD_IDS) == len(set(RECORD_IDS))


def test_nil_lines_only_in_dev_and_few() -> None:
    nil_counts = {s: sum(r["entity"] is None for r in rows) for s, rows in SPLITS.items()}
    assert nil_counts["seed"] == nil_counts["test"] == 0
    assert 3 <= nil_counts["dev"] <= 5


@pytest.mark.parametrize("split", ["dev", "test"])
def test_eval_captions_differ_from_seed(split: str) -> None:
    seed_texts = {r["text"].strip().casefold() for r in SPLITS["seed"]}
    leaked = [r["id"] for r in SPLITS[split] if r["text"].strip().casefold() in seed_texts]
    assert not leaked


@pytest.mark.parametrize("split", ["dev", "test"])
def test_eval_mixes_seen_and_unseen_entities(split: str) -> None:
    seed_entities = {r["entity"] for r in SPLITS["seed"]}
    linked = [r for r in SPLITS[split] if r["entity"] is not None]
    seen = sum(r["entity"] in seed_entities for r in linked) / len(linked)
    assert 0.35 <= seen <= 0.65, f"{seen:.0%} of {split} entities are seed entities; aim for ~50%"


def test_eval_has_ambiguous_names_resolved_differently() -> None:
    """Some surface forms must map to different entities in different lines (real ambiguity)."""
    by_mention: dict[str, set[str]] = {}
    for _, rec in ALL:
        if rec["entity"] is not None:
            by_mention.setdefault(rec["mention"].casefold(), set()).add(rec["entity"])
    ambiguous = {m for m, ents in by_mention.items() if len(ents) > 1}
    assert {"apple", "jordan", "mercury", "hopper", "windows"} <= ambiguous


@pytest.mark.parametrize(("split", "rec"), ALL, ids=RECORD_IDS)
def test_image_is_a_shipped_package_image(split: str, rec: dict[str, Any]) -> None:
    path = (ASSETS / rec["image"]).resolve()  # assets/images links to the package's images
    assert path.is_file() and path.parent == PACKAGE_IMAGES.resolve()


@pytest.mark.parametrize("path", IMAGES, ids=[p.name for p in IMAGES])
def test_image_opens_and_is_small(path: Path) -> None:
    assert path.suffix == ".jpg"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert max(im.size) <= MAX_SIDE


def test_every_image_is_used_and_listed_in_sources() -> None:
    used = {rec["image"] for _, rec in ALL}
    on_disk = {f"images/{p.name}" for p in IMAGES}
    sources = (ASSETS / "SOURCES.md").read_text(encoding="utf-8")
    assert on_disk == used, f"unused: {on_disk - used}, missing: {used - on_disk}"
    assert not [p for p in sorted(on_disk) if f"`{p}`" not in sources]


def test_licence_files_present() -> None:
    sources = (ASSETS / "SOURCES.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in sources and "CC0" in sources
    assert (ASSETS / "LICENSE").is_file()


def test_assets_total_size_under_5_mb() -> None:
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024, f"assets/ is {total / 1e6:.1f} MB"


# ---- the out-of-pool photos (eval/outpool.jsonl) ---------------------------------------------------------
def test_outpool_photos_load_from_the_package_and_are_in_no_pool(kb_titles) -> None:
    import hashlib

    from gemel.kb.demonstrations import load_jsonl_examples

    rows = load_jsonl_examples(ASSETS / "eval" / "outpool.jsonl", "outpool")
    assert len(rows) >= 12 and all(Path(r.image).is_file() for r in rows)
    assert all(r.mention in r.text and r.entity in kb_titles for r in rows)
    sha = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()  # noqa: E731
    shipped = {sha(p) for p in IMAGES}
    assert not {sha(r.image) for r in rows} & shipped  # never a picture of the seed pool or the other splits
    texts = {rec["text"].strip().casefold() for _, rec in ALL}
    assert not {r.text.strip().casefold() for r in rows} & texts


def test_a_package_picture_that_is_not_installed_is_named(tmp_path) -> None:
    from gemel.kb.demonstrations import load_jsonl_examples
    from gemel.sources import SourceError

    bad = tmp_path / "x.jsonl"
    bad.write_text(json.dumps({"image": "package:no_such_pkg/a.png", "text": "A b.", "mention": "b"}) + "\n")
    with pytest.raises(SourceError, match="package 'no_such_pkg'"):
        load_jsonl_examples(bad, "x")
