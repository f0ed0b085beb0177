"""The Tux Paint photo set (gemel/training/stamps.py, `gemel corpus stamps`): the reviewed table, the split by
entity, the photos as written, the captions, and the sentences for what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from gemel.kb.entities import Entity, KnowledgeBase
from gemel.training.corpus import CorpusError
from gemel.training.stamps import MAX_SIDE, photo_path, read_table, split_of, stamp_captions, stamp_items, write_photo

TINY_KB = KnowledgeBase([Entity("Mouse", "small rodent"), Entity("Mouse (computing)", "hand-held pointing device"),
                         Entity("Koala", "arboreal herbivorous marsupial native to Australia"),
                         Entity("Apple", "fruit of the apple tree")], name="tiny")
TINY_TABLE = [("animals/mouse.png", "Mouse"), ("animals/koala.png", "Koala"), ("food/apple_red.png", "Apple"),
              ("food/apple_green.png", "Apple")]


def _stamp(path: Path, size: tuple[int, int] = (600, 300)) -> None:
    """A red disc on a transparent background, as the stamps are cut out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    for x in range(size[0] // 3, 2 * size[0] // 3):
        for y in range(size[1] // 3, 2 * size[1] // 3):
            im.putpixel((x, y), (200, 20, 20, 255))
    im.save(path)


def test_the_shipped_table_is_well_formed(kb_titles) -> None:
    rows = read_table()
    paths = [p for p, _ in rows]
    assert len(rows) >= 150 and len(set(paths)) == len(paths)
    assert all(p.endswith(".png") and "cartoon" not in p for p in paths)
    missing = sorted({t for _, t in rows} - kb_titles)
    assert not missing, f"titles that are not in the offline KB: {missing}"


def test_the_split_is_by_entity_and_holds_both_halves() -> None:
    rows = read_table()
    splits = {t: split_of(t) for _, t in rows}
    assert split_of("Koala") == split_of("Koala")  # stable: a hash, not a random draw
    share = sum(s == "test" for s in splits.values()) / len(splits)
    assert 0.35 < share < 0.65
    items = stamp_items(TINY_KB, _tiny_dir_for(TINY_TABLE), TINY_TABLE)
    by_entity = {}
    for it in items:
        by_entity.setdefault(it.entity, set()).add(it.split)
    assert all(len(s) == 1 for s in by_entity.values())  # both apples in one split


def _tiny_dir_for(table, root: Path | None = None) -> Path:
    import tempfile

    root = root or Path(tempfile.mkdtemp())
    for path, _ in table:
        _stamp(root / path, (60, 40))
    return root


def test_a_missing_folder_file_or_title_is_a_sentence(tmp_path) -> None:
    with pytest.raises(CorpusError, match="make stamps"):
        stamp_items(TINY_KB, tmp_path / "nowhere", TINY_TABLE)
    root = _tiny_dir_for(TINY_TABLE[:1], tmp_path)
    with pytest.raises(CorpusError, match="koala.png is missing"):
        stamp_items(TINY_KB, root, TINY_TABLE[:2])
    with pytest.raises(CorpusError, match="'Hedgehog' .* not a title"):
        stamp_items(TINY_KB, root, [("animals/mouse.png", "Hedgehog")])
    bad = tmp_path / "bad.tsv"
    bad.write_text("# comment\nanimals/mouse.png\n")
    with pytest.raises(CorpusError, match="bad.tsv:2"):
        read_table(bad)


def test_a_photo_is_written_on_white_and_small(tmp_path) -> None:
    _stamp(tmp_path / "in.png", (900, 450))
    out = write_photo(tmp_path / "in.png", tmp_path / "out" / "in.jpg")
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and max(im.size) == MAX_SIDE
        corner, centre = im.getpixel((2, 2)), im.getpixel((im.width // 2, im.height // 2))
    assert min(corner) > 245  # the transparent background is white, not black
    assert centre[0] > 150 and centre[1] < 80


def test_two_captions_per_photo_one_naming_nothing() -> None:
    items = stamp_items(TINY_KB, _tiny_dir_for(TINY_TABLE), TINY_TABLE)
    caps = stamp_captions(items, TINY_KB)
    assert len(caps) == 2 * len(items)
    by_id = {c.id: c for c in caps}
    mouse = by_id["tuxpaint/animals/mouse.png#0"]
    assert mouse.kind == "ambiguous" and mouse.mention == "Mouse" and mouse.mention in mouse.text
    koala = by_id["tuxpaint/animals/koala.png#0"]
    assert koala.kind == "ordinary" and "marsupial" in koala.text and koala.mention in koala.text
    hidden = by_id["tuxpaint/animals/koala.png#h"]
    assert hidden.kind == "hidden" and hidden.mention == "the thing" and hidden.entity == "Koala"
    assert all(c.image == photo_path(it) for it in items for c in caps if c.id.startswith(it.id + "#"))
    assert {c.split for c in caps} <= {"dev", "test"}


@pytest.mark.slow
def test_the_command_writes_both_splits(tmp_path, kb_titles) -> None:
    from gemel.cli.main import main

    stamps = _tiny_dir_for(read_table(), tmp_path / "stamps")
    assert main(["corpus", "stamps", "--stamps", str(stamps), "--images", str(tmp_path / "img"),
                 "--out", str(tmp_path / "out")]) == 0
    rows = {s: [json.loads(line) for line in (tmp_path / "out" / f"stamps-{s}.jsonl").read_text().splitlines()]
            for s in ("dev", "test")}
    assert rows["dev"] and rows["test"]
    assert not {r["entity"] for r in rows["dev"]} & {r["entity"] for r in rows["test"]}
    assert all(Path(r["image"]).is_file() and r["mention"] in r["text"] for rs in rows.values() for r in rs)
    assert sum(len(r) for r in rows.values()) == 2 * len(read_table())
