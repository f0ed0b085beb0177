"""Dataset readers: hand-written fixtures in each released layout (one test per quirk), malformed input, CLIP
features, titles, and how `gemel eval` / `gemel train` report and use what the readers mark."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemel.data.formats.clip_features import read_clip_features
from gemel.data.formats.gemel_json import read_gemel
from gemel.data.formats.images import IMAGE_EXTENSIONS, mimic_image_name, wikidiverse_image_name
from gemel.data.formats.jsonl import read_jsonl, write_jsonl
from gemel.data.formats.mentions import linkable_mention, locate_mention
from gemel.data.formats.richpedia import read_richpedia
from gemel.data.formats.titles import read_titles
from gemel.data.formats.wikidiverse import read_wikidiverse, wikipedia_title
from gemel.data.formats.wikimel import read_wikimel
from gemel.data.readers import (
    FORMATS,
    DatasetError,
    DatasetFormatError,
    DataSummary,
    Split,
    UnknownFormatError,
    detect_format,
    read_dataset,
    read_split,
    summarize,
)
from gemel.types import Example, Prediction

FIX = Path(__file__).parent / "fixtures" / "datasets"
FIXTURES = {"ours.jsonl": "jsonl", "gemel_wikidiverse.json": "gemel", "gemel_wikimel.json": "gemel",
            "wikidiverse.json": "wikidiverse", "wikidiverse_w_10cands.json": "wikidiverse",
            "wiki_diverse_test.json": "wikidiverse", "wikimel.json": "wikimel", "melbench_wikimel.json": "wikimel",
            "drin_WIKIMEL_test.json": "wikimel", "richpedia_train.json": "richpedia"}
READERS = {"jsonl": read_jsonl, "gemel": read_gemel, "wikidiverse": read_wikidiverse, "wikimel": read_wikimel,
           "richpedia": read_richpedia}
SPLITS = FIX / "wikimel_splits.json"  # MEL-GHMFC's splits.json layout over the keys of melbench_wikimel.json
LIONS_URL = "https://upload.wikimedia.org/wikipedia/commons/0/06/DetroitLionsRunningPlay-2007.jpg"


def _write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def _md5(segment: str) -> str:
    return hashlib.md5(segment.encode()).hexdigest()


# ----------------------------------------------------------------------------- fixtures, every format and release


@pytest.mark.parametrize("name,fmt", FIXTURES.items())
def test_detect_format_of_each_fixture(name: str, fmt: str) -> None:
    assert detect_format(FIX / name) == fmt


@pytest.mark.parametrize("name,fmt", FIXTURES.items())
def test_every_example_is_well_formed(name: str, fmt: str) -> None:
    examples = list(READERS[fmt](FIX / name))
    assert examples and examples == list(read_dataset(FIX / name))
    for ex in examples:
        assert isinstance(ex, Example) and ex.text and ex.mention and ex.id
        verbatim = ex.meta.get("verbatim", True)
        if "start" in ex.meta and verbatim:
            assert ex.text[ex.meta["start"]:ex.meta["end"]] == ex.mention
        assert verbatim == (ex.mention in ex.text) or "start" in ex.meta
        assert verbatim or ex.text[slice(*ex.meta["mention_span"])] == linkable_mention(ex)
        assert linkable_mention(ex) in ex.text
        assert ex.entity is None or (ex.entity == ex.entity.strip() and ex.entity)
    assert len({ex.id for ex in examples}) == len(examples), "ids are unique within a file"


def test_read_jsonl_fields_meta_and_images() -> None:
    q1, q2, q3, q4 = read_jsonl(FIX / "ours.jsonl")
    assert q1.image == str(FIX / "images" / "eiffel.jpg")  # relative -> against the file's folder
    assert q2.image == "https://example.org/jordan.jpg" and q2.meta == {"type": "Person"}
    assert (q3.entity, q3.image, q3.source, q3.id) == (None, None, "annotations", "4")  # id = line number
    assert q4.meta == {"start": 0, "end": 5, "split": "dev"}


def test_read_jsonl_image_dir_overrides_the_base(tmp_path: Path) -> None:
    first = next(read_jsonl(FIX / "ours.jsonl", image_dir=tmp_path))
    assert first.image == str(tmp_path / "images" / "eiffel.jpg")


# ---- GEMEL's preprocessed files: target + golden, img_url / img_name


def test_read_gemel_wikidiverse_nil_and_image_key() -> None:
    lions, packers, embassy, obama = read_gemel(FIX / "gemel_wikidiverse.json")
    assert (lions.entity, packers.entity, embassy.entity, obama.entity) == (
        "Detroit Lions", "Green Bay Packers", None, "Barack Obama")
    assert lions.meta["image_key"] == LIONS_URL and lions.meta["golden"] == "Detroit Lions"
    assert lions.image == lions.meta["image_key"] and lions.source == "gemel"


def test_read_gemel_wikimel_target_golden_and_img_name(tmp_path: Path) -> None:
    (tmp_path / "WikiMEL_12.jpg").write_bytes(b"x")
    rogers, smith, beethoven = read_gemel(FIX / "gemel_wikimel.json", image_dir=tmp_path)
    assert smith.entity == "Charles L. Smith (Seattle politician)" and beethoven.entity == "Ludwig van Beethoven"
    assert rogers.image == str(tmp_path / "WikiMEL_12.jpg") and rogers.meta["image_key"] == "WikiMEL_12.jpg"
    assert beethoven.image is None and beethoven.meta["image_missing"] == str(tmp_path / "WikiMEL_40.jpg")


def test_read_gemel_finds_wikidiverse_images_by_the_release_name(tmp_path: Path) -> None:
    (tmp_path / (_md5("DetroitLionsRunningPlay-2007.jpg") + ".jpg")).write_bytes(b"x")
    (tmp_path / (_md5("Obama_in_Berlin.svg") + ".png")).write_bytes(b"x")
    lions, _, embassy, obama = read_gemel(FIX / "gemel_wikidiverse.json", image_dir=tmp_path)
    assert lions.image == str(tmp_path / (_md5("DetroitLionsRunningPlay-2007.jpg") + ".jpg"))
    assert obama.image == str(tmp_path / (_md5("Obama_in_Berlin.svg") + ".png"))
    assert embassy.image is None and "image_missing" in embassy.meta
    assert embassy.meta["image_key"].endswith("Protest_at_the_embassy.JPG")  # the hdf5 key is kept


# ---- WikiDiverse: annotated data, data with candidates, MIMIC's re-release


def test_read_wikidiverse_one_example_per_mention() -> None:
    examples = list(read_wikidiverse(FIX / "wikidiverse.json"))
    assert [e.entity for e in examples] == ["Detroit Lions", "Green Bay Packers", "Genève", None, "Barack Obama",
                                           "Berlin"]
    assert [e.id for e in examples] == ["0-0", "0-1", "1-0", "1-1", "2-0", "2-1"]
    lions = examples[0]
    assert lions.meta["type"] == "Organization" and lions.meta["topic"] == "sports"
    assert lions.image == lions.meta["image_url"] == LIONS_URL


@pytest.mark.parametrize("url,segment,extension", [
    (LIONS_URL, "DetroitLionsRunningPlay-2007.jpg", ".jpg"),
    ("https://upload.wikimedia.org/wikinews/en/1/1a/Geneva_talks_2021.svg", "Geneva_talks_2021.svg", ".png"),
    ("https://upload.wikimedia.org/wikinews/en/3/3c/Obama_in_Berlin.JPG", "Obama_in_Berlin.JPG", ".JPG"),
    ("https://upload.wikimedia.org/wikipedia/commons/a/ab/Logo.SVG", "Logo.SVG", ".png"),
    ("https://upload.wikimedia.org/x/%C3%89cole_2009.jpeg", "%C3%89cole_2009.jpeg", ".jpeg"),  # escapes kept
    ("https://upload.wikimedia.org/x/Map.gif", "Map.gif", "Map.gif"),  # no known extension: the segment whole
])
def test_wikidiverse_image_name_is_the_md5_of_the_last_url_segment(url: str, segment: str, extension: str) -> None:
    assert wikidiverse_image_name(url) == _md5(segment) + extension
    assert wikidiverse_image_name(url) != _md5(url) + extension  # not the md5 of the whole URL


def test_read_wikidiverse_finds_released_images_and_counts_missing_ones(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    released = {LIONS_URL: _md5("DetroitLionsRunningPlay-2007.jpg") + ".jpg",
                "geneva": _md5("Geneva_talks_2021.svg") + ".png"}
    for name in released.values():
        (tmp_path / name).write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="gemel.data.readers"):
        lions, packers, geneva, _, obama, _ = read_wikidiverse(FIX / "wikidiverse.json", image_dir=tmp_path)
    assert lions.image == packers.image == str(tmp_path / released[LIONS_URL])
    assert geneva.image == str(tmp_path / released["geneva"])  # .svg was saved as .png
    assert obama.image is None and obama.meta["image_missing"] == str(tmp_path / (_md5("Obama_in_Berlin.JPG") + ".JPG"))
    assert "2 of 6 mentions have no image file" in caplog.text


def test_read_wikidiverse_with_candidates() -> None:
    lions, obama, embassy = read_dataset(FIX / "wikidiverse_w_10cands.json")
    assert lions.meta["candidates"] == ["Detroit Lions", "Lions (album)", "British & Irish Lions"]  # no repeats
    assert (lions.mention, lions.entity, lions.meta["type"], lions.meta["topic"]) == (
        "Lions", "Detroit Lions", "Organization", "sports")
    assert obama.entity == "Barack Obama"  # "nhttps://..." as released
    assert (obama.mention, obama.meta["verbatim"], linkable_mention(obama)) == ("Obamma", False, "Obama")
    assert embassy.entity is None and embassy.meta["candidates"][0] == "Embassy"
    assert [e.id for e in (lions, obama, embassy)] == ["0", "1", "2"] and lions.source == "wikidiverse"


def test_mimic_wikidiverse_files_are_tagged_wikidiverse(tmp_path: Path) -> None:
    lions, garros, embassy = read_dataset(FIX / "wiki_diverse_test.json")
    assert {e.source for e in (lions, garros, embassy)} == {"wikidiverse"}
    assert (lions.entity, garros.mention, embassy.entity) == ("Detroit Lions", "Roland Garros", None)
    assert [e.source for e in read_wikimel(FIX / "wiki_diverse_test.json")] == ["wikidiverse"] * 3
    (tmp_path / "9c8b2d.jpg").write_bytes(b"x")
    lions, garros, embassy = read_wikidiverse(FIX / "wiki_diverse_test.json", image_dir=tmp_path)
    assert (lions.image, garros.image, embassy.image) == (str(tmp_path / "9c8b2d.jpg"), None, None)
    assert embassy.meta["image_missing"] == str(tmp_path / "ab12ef.jpg")  # MIMIC converted every image to JPEG


# ---- WikiMEL: MIMIC's release and the original (MELBench)


def test_read_wikimel_unquotes_and_follows_mimic_image_names(tmp_path: Path) -> None:
    for name in ("WikiMEL_0.jpg", "WikiMEL_3.jpg"):
        (tmp_path / name).write_bytes(b"x")
    smith, _rogers, sailor, ada, beethoven = read_wikimel(FIX / "wikimel.json", image_dir=tmp_path)
    assert smith.mention == "Charles L. Smith" and smith.entity == "Charles L. Smith (Seattle politician)"
    assert smith.meta["qid"] == "Q5080000" and smith.id == "WIKIMEL_0"
    assert (sailor.entity, sailor.image, sailor.meta["qid"]) == (None, None, None)
    assert smith.image == str(tmp_path / "WikiMEL_0.jpg")  # MIMIC: <name up to the first dot>.jpg
    assert ada.image == str(tmp_path / "WikiMEL_3.jpg") and ada.meta["desc"] == "English mathematician"
    assert beethoven.image is None and beethoven.meta["image_missing"] == str(tmp_path / "WikiMEL_4.jpg")


def test_mimic_image_name_cuts_at_the_first_dot() -> None:
    assert mimic_image_name("img/WikiMEL_3.v2.jpeg") == "WikiMEL_3.jpg"
    assert mimic_image_name("WikiMEL_0.png") == "WikiMEL_0.jpg"


def test_read_the_original_wikimel_release(tmp_path: Path) -> None:
    assert (FIX / "melbench_wikimel.json").read_text().startswith("{\n")  # one object keyed by id, indented
    smith, rogers, beethoven, ada = read_wikimel(FIX / "melbench_wikimel.json")
    assert [e.id for e in (smith, rogers, beethoven, ada)] == ["101-0", "101-1", "102-0", "107-0"]
    assert (smith.entity, rogers.entity, rogers.meta["qid"]) == (
        "Charles L. Smith (Seattle politician)", "Will Rogers", "Q381178")
    assert smith.image is None and smith.source == "wikimel"  # no image reference in this release
    (tmp_path / "101.jpg").write_bytes(b"x")
    (tmp_path / "107.png").write_bytes(b"x")
    smith, rogers, beethoven, ada = read_wikimel(FIX / "melbench_wikimel.json", image_dir=tmp_path)
    assert smith.image == rogers.image == str(tmp_path / "101.jpg") and ada.image == str(tmp_path / "107.png")
    assert beethoven.image is None and beethoven.meta["image_missing"] == str(tmp_path / "102.jpg")


def test_detect_the_original_wikimel_release_with_a_large_first_record(tmp_path: Path) -> None:
    record = {"id": "1", "sentence": "a b " + "x" * 70_000, "mentions": ["a"], "entities": ["A"], "answer": ["Q1"]}
    path = _write(tmp_path, "Wikidata-MEL.json", json.dumps({"1": record, "2": {**record, "id": "2"}}, indent=2))
    assert detect_format(path) == "wikimel"
    assert [e.id for e in read_dataset(path)] == ["1-0", "2-0"]


# ---- WikiMEL's official split (MEL-GHMFC's splits.json)


def test_read_split_of_the_official_split_file() -> None:
    test = read_split(f"{SPLITS}:test")
    assert (test.name, test.path, test.ids) == ("test", SPLITS, frozenset({"102"}))
    assert isinstance(test, Split) and read_split(test) is test and test.spec == f"{SPLITS}:test"
    assert list(json.loads(SPLITS.read_text())) == ["train", "test", "dev"]  # as data_split.py writes it


def test_a_split_keeps_only_its_records_of_the_original_release() -> None:
    by_split = {name: [e.id for e in read_dataset(FIX / "melbench_wikimel.json", split=f"{SPLITS}:{name}")]
                for name in ("train", "test", "dev")}
    assert by_split == {"train": ["101-0", "101-1"], "test": ["102-0"], "dev": ["107-0"]}
    assert [e.id for e in read_wikimel(FIX / "melbench_wikimel.json", split=read_split(f"{SPLITS}:dev"))] == ["107-0"]


def test_a_split_selects_keyed_mentions_and_the_ids_of_arrays(tmp_path: Path) -> None:
    splits = _write(tmp_path, "splits.json", json.dumps({"test": ["13280", "WIKIMEL_0", "WIKIMEL_3"]}))
    drin = read_dataset(FIX / "drin_WIKIMEL_test.json", split=f"{splits}:test")
    assert [e.id for e in drin] == ["13280-0", "13280-1"]  # DRIN's <id>-<i> keys belong to sentence <id>
    mimic = read_dataset(FIX / "wikimel.json", split=f"{splits}:test")
    assert [e.id for e in mimic] == ["WIKIMEL_0", "WIKIMEL_3"]  # a JSON array: the examples' ids decide


def test_records_outside_the_split_are_not_parsed(tmp_path: Path) -> None:
    good = {"id": "1", "sentence": "a b", "mentions": ["a"], "entities": ["A"], "answer": ["Q1"]}
    data = _write(tmp_path, "Wikidata-MEL.json", json.dumps({"1": good, "2": {"sentence": 7}}))
    splits = _write(tmp_path, "splits.json", json.dumps({"train": ["2"], "test": ["1"]}))
    assert [e.id for e in read_dataset(data, split=f"{splits}:test")] == ["1-0"]
    with pytest.raises(DatasetFormatError, match="record 2"):
        list(read_dataset(data, split=f"{splits}:train"))


def test_split_ids_missing_from_the_file_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    splits = _write(tmp_path, "splits.json", json.dumps({"test": ["102", "999"], "other": ["5", "6"]}))
    with caplog.at_level(logging.WARNING, logger="gemel.data.readers"):
        assert [e.id for e in read_dataset(FIX / "melbench_wikimel.json", split=f"{splits}:test")] == ["102-0"]
    assert "1 of the 2 ids of split 'test'" in caplog.text and "(first: 999)" in caplog.text
    with pytest.raises(DatasetError, match=r"none of the 2 ids of split 'other' .* is a record of this file"):
        list(read_dataset(FIX / "melbench_wikimel.json", split=f"{splits}:other"))


@pytest.mark.parametrize("spec,fragment", [
    ("{splits}", r"names no split: add one of the file's splits \(train, test, dev\), e.g. .*:train"),
    ("{splits}:valid", r"has no split 'valid'; its splits are train, test, dev"),
    ("{data}:test", r"is not a split file \(one JSON object of id lists"),
    ("{absent}:test", r"no such file"),
])
def test_a_bad_split_says_what_to_pass(tmp_path: Path, spec: str, fragment: str) -> None:
    spec = spec.format(splits=SPLITS, data=FIX / "melbench_wikimel.json", absent=tmp_path / "splits.json")
    with pytest.raises((DatasetError, FileNotFoundError), match=fragment):
        read_split(spec)


@pytest.mark.parametrize("n_ids", [3, 4_000, 20_000])  # the head holds the whole file, its first list, neither
def test_a_split_file_given_as_data_says_how_to_use_it(tmp_path: Path, n_ids: int) -> None:
    ids = [str(13_000 + i) for i in range(n_ids)]
    path = _write(tmp_path, "splits.json", json.dumps({"train": ids, "test": ids[:2], "dev": ids[2:3]}, indent=2))
    with pytest.raises(UnknownFormatError, match=rf"{path} is a split file \(the ids of train, test, dev\), not "
                                                  rf"data: .*--split {path}:train"):
        detect_format(path)


# ---- Richpedia-MEL (MELBench, MEL-GHMFC): an object keyed by QID, one string mention per record


def test_read_richpedia_skips_a_blank_mention_naming_its_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gemel.data.readers"):
        examples = list(read_richpedia(FIX / "richpedia_train.json"))  # on_error="raise": no crash all the same
    assert [e.id for e in examples] == ["Q78513", "Q77057", "Q62664"]  # Q79179's mention is "\n\n"
    assert "record Q79179: the mention is blank ('\\n\\n')" in caplog.text
    assert "skipped 1 record(s) that the data set leaves blank: record Q79179" in caplog.text
    weininger, hartmann, mohl = examples
    assert {e.source for e in examples} == {"richpedia"}
    assert (mohl.mention, mohl.entity, mohl.meta["qid"]) == ("Mohl", "Robert von Mohl", "Q62664")
    assert hartmann.meta["verbatim"] is False and weininger.image is None and "image_missing" not in weininger.meta
    assert summarize(examples).not_verbatim == 1


def test_richpedia_images_are_found_where_the_release_keeps_them(tmp_path: Path) -> None:
    folder = tmp_path / "Richpedia-MEL"  # MEL-GHMFC: datasets/Richpedia-MEL/{train.json, images/<QID>.jpg}
    (folder / "images").mkdir(parents=True)
    data = folder / "train.json"
    data.write_text((FIX / "richpedia_train.json").read_text())
    (folder / "images" / "Q78513.jpg").write_bytes(b"x")
    (folder / "images" / "Q62664.PNG").write_bytes(b"x")
    for image_dir in (None, folder / "images", folder):  # next to the file, the folder itself, the data's folder
        weininger, hartmann, mohl = read_dataset(data, image_dir=image_dir)
        assert weininger.image == str(folder / "images" / "Q78513.jpg")
        assert mohl.image == str(folder / "images" / "Q62664.PNG")
        assert hartmann.image is None and hartmann.meta["image_missing"].endswith("Q77057.jpg")


def test_mimic_richpedia_files_are_tagged_richpedia(tmp_path: Path) -> None:
    record = {"id": "RichpediaMEL_0", "sentence": "Robert von Mohl  was a German jurist.", "mentions": "Mohl",
              "entities": "Robert%20von%20Mohl", "answer": "Q62664", "imgPath": "RichpediaMEL_0.jpg"}
    path = _write(tmp_path, "RichpediaMEL_test.json", json.dumps([record]))
    assert detect_format(path) == "wikimel"  # MIMIC's layout ...
    (mohl,) = read_dataset(path)
    assert (mohl.source, mohl.entity) == ("richpedia", "Robert von Mohl")  # ... and the data set it holds


def test_richpedia_record_errors_name_the_record(tmp_path: Path) -> None:
    lists = _write(tmp_path, "r.json", json.dumps({"Q1": {"id": "Q1", "sentence": "a b", "mentions": ["a"],
                                                          "entities": ["A"], "answer": ["Q1"]}}))
    with pytest.raises(DatasetFormatError, match=r"record Q1: 'mentions' must be the mention .* --format wikimel"):
        list(read_richpedia(lists))
    nameless = _write(tmp_path, "s.json", json.dumps({"Q1": {"id": "Q1", "sentence": "a b", "mentions": "a",
                                                             "answer": "Q1"}}))
    with pytest.raises(DatasetFormatError, match="record Q1: answer 'Q1' has no entity name"):
        list(read_richpedia(nameless))


# ---- image names by id: the extensions the releases use, in order; DRIN's keys as ids


def test_images_named_by_id_try_the_extensions_in_order(tmp_path: Path) -> None:
    assert IMAGE_EXTENSIONS[:7] == (".jpg", ".png", ".jpeg", ".JPG", ".JPEG", ".PNG", ".tif")
    for name in ("101.JPG", "107.jpeg", "107.png", "107.tif"):
        (tmp_path / name).write_bytes(b"x")
    smith, rogers, beethoven, ada = read_wikimel(FIX / "melbench_wikimel.json", image_dir=tmp_path)
    assert smith.image == rogers.image == str(tmp_path / "101.JPG")
    assert ada.image == str(tmp_path / "107.png")  # .png before .jpeg before .tif
    assert beethoven.meta["image_missing"] == str(tmp_path / "102.jpg")  # the first name is the one reported
    (tmp_path / "102.tif").write_bytes(b"x")
    assert list(read_wikimel(FIX / "melbench_wikimel.json", image_dir=tmp_path))[2].image == str(tmp_path / "102.tif")


def test_mimic_images_with_another_extension_are_found(tmp_path: Path) -> None:
    (tmp_path / "WikiMEL_4.JPEG").write_bytes(b"x")
    beethoven = list(read_wikimel(FIX / "wikimel.json", image_dir=tmp_path))[-1]
    assert beethoven.image == str(tmp_path / "WikiMEL_4.JPEG")


def test_drin_keys_are_the_example_ids(tmp_path: Path) -> None:
    (tmp_path / "13280.JPG").write_bytes(b"x")  # DRIN opens KVQAimgs/<id> with the extensions it tries
    ada, smith, rogers = read_dataset(FIX / "drin_WIKIMEL_test.json", image_dir=tmp_path)
    assert [e.id for e in (ada, smith, rogers)] == ["13269", "13280-0", "13280-1"]  # the records' id repeats
    assert smith.meta["record_id"] == rogers.meta["record_id"] == "13280"
    assert smith.image == rogers.image == str(tmp_path / "13280.JPG")
    assert ada.image is None and ada.meta["image_missing"] == str(tmp_path / "13269.jpg")
    assert (smith.entity, smith.meta["qid"], smith.source) == ("Charles L. Smith (Seattle politician)", "Q5080000",
                                                              "wikimel")


# ---- mentions that are not verbatim in their text


@pytest.mark.parametrize("text,mention,span_text", [
    ("Hermann von Beckerath.", "Hermann Beckerath", "Hermann von Beckerath"),
    ("The Earl of Aberdeen in the 1850s", "Earl Aberdeen", "Earl of Aberdeen"),
    ("Victor de Riqueti, marquis de Mirabeau", "Victor Riqueti marquis Mirabeau",
     "Victor de Riqueti, marquis de Mirabeau"),
    ('Bart writing "HDTV is worth every cent" on the board.', "HDTB", "HDTV"),
    ("Isabella II of Spain in exile in Paris", "Isabella II Spain", "Isabella II of Spain"),
    ("John Fletcher Moulton, Baron Moulton, c. 1913", "John Fletcher Moulton Baron Moulton",
     "John Fletcher Moulton, Baron Moulton"),
    ("A portrait of Jan van den Brink, 1960.", "Jan Brink", "Jan van den Brink"),
    ("Francisco Cajigal de la Vega, governor", "Francisco Cajigal Vega", "Francisco Cajigal de la Vega"),
    ("hopper wrote the compiler", "Hopper", "hopper"),  # case only
    ("Hopper wrote the compiler", "Hopper", "Hopper"),
    ("...", "x", "..."),  # no word at all: the whole text
])
def test_locate_mention_finds_the_closest_span(text: str, mention: str, span_text: str) -> None:
    start, end = locate_mention(text, mention)
    assert text[start:end] == span_text


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=60).filter(str.strip), mention=st.text(min_size=1, max_size=20))
def test_locate_mention_gives_a_span_of_the_text(text: str, mention: str) -> None:
    start, end = locate_mention(text, mention)
    assert 0 <= start < end <= len(text)
    if mention in text:
        assert text[start:end] == mention


@pytest.mark.parametrize("name,reader,verbatim_false", [
    ("gemel_wikimel.json", read_gemel, ["Ludwig Beethoven"]),
    ("gemel_wikidiverse.json", read_gemel, ["Obamma"]),
    ("wikimel.json", read_wikimel, ["Ludwig Beethoven"]),
    ("melbench_wikimel.json", read_wikimel, ["Ludwig Beethoven"]),
    ("wikidiverse.json", read_wikidiverse, ["Obamma"]),
])
def test_mentions_not_in_the_text_are_read_as_given_and_counted(
        name: str, reader, verbatim_false: list[str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gemel.data.readers"):
        examples = list(reader(FIX / name))
    assert [e.mention for e in examples if e.meta.get("verbatim") is False] == verbatim_false
    assert f"{len(verbatim_false)} of {len(examples)} mentions do not occur verbatim" in caplog.text
    odd = next(e for e in examples if e.meta.get("verbatim") is False)
    assert linkable_mention(odd) in ("Ludwig van Beethoven", "Obama")
    assert summarize(examples).not_verbatim == len(verbatim_false)


def test_skip_mode_keeps_mentions_that_are_not_verbatim(tmp_path: Path) -> None:
    lines = [{"text": "Hermann von Beckerath.", "mention": "Hermann Beckerath", "target": "Hermann von Beckerath",
              "golden": "Hermann von Beckerath", "img_name": "1.jpg"}, "{broken"]
    path = _write(tmp_path, "test.json", "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    (beckerath,) = read_gemel(path, on_error="skip")
    assert beckerath.meta["mention_span"] == [0, 21] and beckerath.mention == "Hermann Beckerath"


def test_not_verbatim_mentions_survive_a_jsonl_round_trip(tmp_path: Path) -> None:
    examples = list(read_wikimel(FIX / "melbench_wikimel.json"))
    write_jsonl(tmp_path / "out.jsonl", examples)
    back = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [b.to_dict() for b in back] == [{**e.to_dict(), "source": e.source} for e in examples]


def test_summarize_counts_what_the_readers_mark(tmp_path: Path) -> None:
    examples = list(read_wikidiverse(FIX / "wikidiverse_w_10cands.json", image_dir=tmp_path))
    summary = summarize(examples)
    assert summary == DataSummary(examples=3, nil=1, not_verbatim=1, missing_images=3, with_candidates=3)
    assert summary.line() == ("3 mentions (1 gold NIL); 1 not verbatim in their text (prompted as given, as the "
                              "official code does); 3 without their image file (text-only); 3 with candidates from "
                              "the data")


def test_json_lines_variant_of_wikidiverse(tmp_path: Path) -> None:
    entries = json.loads((FIX / "wikidiverse.json").read_text(encoding="utf-8"))
    path = _write(tmp_path, "wd.jsonl", "\n".join(json.dumps(e) for e in entries) + "\n")
    assert detect_format(path) == "wikidiverse"
    assert list(read_dataset(path)) == list(read_wikidiverse(FIX / "wikidiverse.json"))


def test_readers_stream_json_lines(tmp_path: Path) -> None:
    good = json.dumps({"text": "a b", "mention": "a", "entity": "A"})
    reader = read_jsonl(_write(tmp_path, "x.jsonl", good + "\n{broken\n"))
    assert next(reader).entity == "A"  # the first record comes before the broken line is read
    with pytest.raises(DatasetFormatError, match=r"x\.jsonl:2: not valid JSON"):
        next(reader)


def test_a_broken_first_line_is_reported_in_its_turn(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.jsonl", "{broken\n" + json.dumps({"text": "a b", "mention": "a"}) + "\n")
    assert [e.mention for e in read_jsonl(path, on_error="skip")] == ["a"]


# ----------------------------------------------------------------------------- round trip


_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(str.strip)


@st.composite
def _examples(draw: st.DrawFn) -> Example:
    text = draw(_texts)
    start = draw(st.integers(0, len(text) - 1))
    end = draw(st.integers(start + 1, len(text)))
    mention = text[start:end]
    if not mention.strip():
        mention = text
    return Example(text=text, mention=mention, id=draw(st.text(min_size=1, max_size=5)),
                   entity=draw(st.none() | _texts), image=draw(st.none() | st.sampled_from(
                       ["img/a.jpg", "https://x.org/b.png", "/abs/c.jpg", "../up/d.jpg"])),
                   source=draw(st.sampled_from(["", "seed", "annotations"])),
                   meta=draw(st.dictionaries(st.sampled_from(["type", "topic", "id", "meta"]), st.integers(),
                                             max_size=2)))


def _same_file(a: str | None, b: str | None) -> bool:
    if a is None or b is None or "://" in a:
        return a == b
    return os.path.abspath(a) == os.path.abspath(b)


@settings(max_examples=30, deadline=None)
@given(examples=st.lists(_examples(), max_size=4))
def test_write_then_read_jsonl_is_identical(tmp_path_factory: pytest.TempPathFactory,
                                            examples: list[Example]) -> None:
    path = tmp_path_factory.getbasetemp() / "roundtrip" / "sub" / "out.jsonl"
    assert write_jsonl(path, examples) == len(examples)
    back = list(read_jsonl(path))
    assert [{**b.to_dict(), "image": None} for b in back] == [{**e.to_dict(), "image": None} for e in examples]
    assert all(_same_file(b.image, e.image) for b, e in zip(back, examples)), "images point to the same files"
    assert not list(path.parent.glob("*.tmp"))


def test_written_images_resolve_from_another_folder(tmp_path: Path) -> None:
    image = str(tmp_path / "pics" / "a.jpg")
    out = tmp_path / "deep" / "er" / "set.jsonl"
    write_jsonl(out, [Example(text="a b", mention="a", entity="A", image=image, id="1")])
    assert json.loads(out.read_text())["image"] == image  # absolute stays absolute
    rel_out = tmp_path / "x.jsonl"
    write_jsonl(rel_out, [Example(text="a b", mention="a", image="rel/a.jpg", id="1")])
    assert json.loads(rel_out.read_text())["image"].endswith("a.jpg")


# ----------------------------------------------------------------------------- malformed input


_LIONS = "The Lions versus the Packers (2007)."
MALFORMED = [
    ("jsonl", '{"text": "a b", "mention": "a"}\n{not json}\n', "2", "not valid JSON"),
    ("jsonl", '{"text": "a b", "mention": "zebra", "entity": "Z"}\n', "1", "mention 'zebra' does not occur"),
    ("jsonl", '{"text": "a b", "mention": "zebra", "verbatim": true}\n', "1", 'or mark the record "verbatim": false'),
    ("jsonl", '{"mention": "a", "entity": "A"}\n', "1", "field 'text' must be a non-empty string, got missing"),
    ("jsonl", '{"text": "a b", "mention": "", "entity": "A"}\n', "1", "field 'mention'"),
    ("jsonl", '{"text": "a b", "mention": "a", "entity": ""}\n', "1", "or null for NIL"),
    ("jsonl", '{"text": "a b", "mention": "a", "image": 3}\n', "1", "image 3 must be a path"),
    ("jsonl", '{"text": "a b", "mention": "a", "start": 2, "end": 9}\n', "1", "offsets (start, end)=(2, 9)"),
    ("jsonl", '{"text": "a b", "mention": "a", "end": 1}\n', "1", "offsets (start, end)=(None, 1)"),
    ("jsonl", '{"text": "a b", "mention": "a", "meta": [1]}\n', "1", "meta must be a JSON object"),
    ("jsonl", '["a b", "a"]\n["c d", "c"]\n', "1", "expected a JSON object, found list"),
    ("jsonl", '["a b", "a"]\n', "record 0", "expected a JSON object, found str"),
    ("gemel", '{"text": "a b", "mention": "a", "img_url": "u"}\n', "1", "no 'target' field"),
    ("gemel", '{"text": "a b", "mention": "a", "answer": "A", "img_url": "u"}\n', "1", "no 'target' field"),
    ("gemel", '{"text": "a b", "mention": "a", "target": "A", "img_url": "u"}\n', "1", "no 'golden' field"),
    ("gemel", '{"text": "a b", "mention": "a", "target": 5, "golden": "A"}\n', "1", "'target' must be the entity name"),
    ("gemel", '{"text": "a b", "mention": "a", "target": "A", "golden": "A", "img_name": 7}\n', "1",
     "img_url/img_name"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "sports"]]), "record 0", "a WikiDiverse entry is"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "sports", [["Lions", "Org", 4, 90, "nil"]]]]),
     "record 0 mention 0", "do not fit a text of 36 characters"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "sports", [["Lions", "Org", 4, 9, "https://en.wikipedia.org/"]]]]),
     "record 0 mention 0", "no page title"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "sports", [["Lions", "Org"]]]]), "record 0 mention 0",
     "a mention is [mention, type, start, end, Wikipedia URL]"),
    ("wikidiverse", json.dumps([["", "u", "sports", []]]), "record 0", "the text (first element)"),
    ("wikidiverse", '[\n  ["a", "u", "t", []],\n  oops\n]', "3", "not valid JSON"),
    ("wikidiverse", json.dumps([[_LIONS, "u", 3, "Org", [], [], "nil", [], "sports", 4, 9]]), "record 0",
     "the mention (third element) is a non-empty string"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "Lions", "Org", [], [], "nil", [7], "sports", 4, 9]]), "record 0",
     "candidate 7 is not a Wikipedia URL"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "Lions", "Org", [], [], "nil", [], "sports", 4, 99]]), "record 0",
     "do not fit a text of 36 characters"),
    ("wikimel", json.dumps([{"mentions": "a", "answer": "nil", "imgPath": ""}]), "record 0", "'sentence'"),
    ("wikimel", json.dumps([{"sentence": "a b", "mentions": "a", "answer": "Q1", "imgPath": ""}]), "record 0",
     "answer 'Q1' has no entity name"),
    ("wikimel", json.dumps([{"sentence": "a b", "mentions": "a", "answer": "nil", "imgPath": 4}]), "record 0",
     "imgPath must be a string"),
    ("wikimel", json.dumps({"7": {"sentence": "a b", "mentions": ["a", "b"], "entities": ["A"], "answer": ["Q1"]}}),
     "record 7", "lists 'mentions', 'entities' and 'answer' (QIDs) of one length, got [2, 1, 1]"),
    ("wikimel", json.dumps({"7": {"sentence": "a b", "mentions": ["a"], "entities": [""], "answer": ["Q1"]}}),
     "record 7 mention 0", "answer 'Q1' has no entity name"),
    ("wikimel", json.dumps({"7": {"sentence": "a b", "mentions": [""], "entities": ["A"], "answer": ["Q1"]}}),
     "record 7 mention 0", "the mention must be a non-empty string"),
]


@pytest.mark.parametrize("fmt,content,where,fragment", MALFORMED)
def test_malformed_input_names_file_location_and_fix(tmp_path: Path, fmt: str, content: str, where: str,
                                                     fragment: str) -> None:
    path = _write(tmp_path, f"bad.{fmt}", content)
    with pytest.raises(DatasetFormatError) as info:
        list(READERS[fmt](path))
    assert str(info.value).startswith(f"{path}:{where}: ")
    assert fragment in str(info.value)
    assert info.value.path == str(path)


def test_on_error_skip_logs_and_keeps_the_good_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = ['{"text": "a b", "mention": "a", "entity": "A"}', "{broken", '{"text": "a b", "mention": "z"}',
             '{"text": "c d", "mention": "d", "entity": null}', '{"text": "c d", "mention": "e", "end": 9}',
             '{"text": "c d", "mention": "x", "verbatim": false}']
    path = _write(tmp_path, "mixed.jsonl", "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="gemel.data.readers"):
        examples = list(read_jsonl(path, on_error="skip"))
    assert [e.mention for e in examples] == ["a", "d", "x"]  # "x" is marked as a data set's mention
    assert "skipped 3 malformed record(s)" in caplog.text and f"{path}:2:" in caplog.text
    assert "1 of 3 mentions do not occur verbatim" in caplog.text and examples[-1].meta["mention_span"] == [0, 1]


@pytest.mark.parametrize("kwargs,fragment", [
    ({"on_error": "ignore"}, "on_error='ignore' is not one of"),
    ({"image_dir": "/no/such/folder"}, "is not a folder"),
])
def test_read_options_are_checked(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        read_jsonl(FIX / "ours.jsonl", **kwargs)


def test_missing_file_is_reported_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_wikimel(tmp_path / "absent.json")


@pytest.mark.parametrize("name,content,fragment", [
    ("odd.json", '{"foo": 1}\n', "Known formats: jsonl"),
    ("table.csv", "text,mention\na b,a\n", "not JSON"),
    ("empty.json", "  \n", "empty"),
    ("feats.hdf5", "x", "read_clip_features"),
    ("arr.json", '[{"text": "a", "whatever": 1}]', "cannot tell the format"),
    ("keyed.json", '{\n  "1": {"title": "A"}\n}', r"cannot tell the format from the first record \(\['title'\]\)"),
    ("broken.json", '{\n  "1": {"sentence": \n', "not valid JSON"),
])
def test_read_dataset_cannot_tell(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    with pytest.raises(UnknownFormatError, match=fragment):
        read_dataset(_write(tmp_path, name, content))


def test_read_dataset_explicit_format_and_bad_name() -> None:
    assert len(list(read_dataset(FIX / "wikimel.json", format="wikimel"))) == 5
    with pytest.raises(ValueError, match="format='csv' is not one of auto, " + ", ".join(FORMATS)):
        read_dataset(FIX / "wikimel.json", format="csv")


def test_detect_format_of_a_large_first_record(tmp_path: Path) -> None:
    big = {"sentence": "a b " + "x" * 70_000, "mentions": "a", "entities": "A", "answer": "Q1", "imgPath": ""}
    path = _write(tmp_path, "big.json", json.dumps([big, big]))
    assert detect_format(path) == "wikimel"


# ----------------------------------------------------------------------------- Wikipedia titles


@pytest.mark.parametrize("url,title", [
    ("https://en.wikipedia.org/wiki/Detroit_Lions", "Detroit Lions"),
    ("https://en.wikipedia.org/wiki/Gen%C3%A8ve", "Genève"),
    ("https://en.wikipedia.org/wiki/AC/DC", "AC/DC"),
    ("https://en.wikipedia.org/wiki/Paris,_Texas#History", "Paris, Texas"),
    ("https://en.wikipedia.org/w/index.php?title=Will_Rogers&oldid=1", "Will Rogers"),
    (None, None), ("nil", None), ("NIL", None), ("", None),
])
def test_wikipedia_title(url: str | None, title: str | None) -> None:
    assert wikipedia_title(url) == title


@pytest.mark.parametrize("url,error", [("https://en.wikipedia.org/", ValueError), (42, TypeError)])
def test_wikipedia_title_rejects(url: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        wikipedia_title(url)


# ----------------------------------------------------------------------------- CLIP features (hdf5)


@pytest.fixture()
def clip_h5(tmp_path: Path) -> Path:
    path = tmp_path / "clip_vit_large_patch14_1024.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h:
        for ex in read_gemel(FIX / "gemel_wikidiverse.json"):
            if ex.meta["image_key"] not in h:
                h[ex.meta["image_key"]] = rng.standard_normal(1024).astype(np.float16)
        h["WikiMEL_12.jpg"] = rng.standard_normal((1, 1024))
        h["bad.jpg"] = np.zeros(512)
    return path


def test_clip_features_cover_every_gemel_image(clip_h5: Path) -> None:
    with read_clip_features(clip_h5) as feats:
        for ex in read_gemel(FIX / "gemel_wikidiverse.json"):
            vec = feats[ex.meta["image_key"]]
            assert vec.shape == (1024,) and vec.dtype == np.float32
        assert feats["WikiMEL_12.jpg"].shape == (1024,)  # (1, 1024) is squeezed
        assert len(feats) == 5 and "WikiMEL_12.jpg" in list(feats)
        assert "absent.jpg" not in feats and 3 not in feats


def test_clip_features_errors(clip_h5: Path, tmp_path: Path) -> None:
    feats = read_clip_features(clip_h5)
    with pytest.raises(KeyError, match="img_url / img_name"):
        feats["absent.jpg"]
    with pytest.raises(DatasetFormatError, match=r"bad\.jpg: feature has shape \(512,\), expected \(1024,\)"):
        feats["bad.jpg"]
    assert read_clip_features(clip_h5, dim=512)["bad.jpg"].shape == (512,)
    feats.close()
    with pytest.raises(DatasetFormatError, match="not an HDF5 file"):
        read_clip_features(_write(tmp_path, "fake.hdf5", "not hdf5"))
    with pytest.raises(ValueError, match="dim=0"):
        read_clip_features(clip_h5, dim=0)


# ----------------------------------------------------------------------------- KB titles


@pytest.mark.parametrize("name,expected", [
    ("titles.tsv", [("Eiffel Tower", "wrought-iron lattice tower in Paris"),
                    ("Michael Jordan", "American basketball player"),
                    ("Paris, Texas", "city in Texas, United States\tsecond tab kept")]),
    ("titles.jsonl", [("Eiffel Tower", "wrought-iron lattice tower in Paris"),
                      ("Michael Jordan", "American basketball player"), ("Ada Lovelace", "")]),
    ("titles.txt", [("Eiffel Tower", ""), ("Michael Jordan", ""), ("Ada Lovelace", "")]),
])
def test_read_titles(name: str, expected: list[tuple[str, str]]) -> None:
    assert list(read_titles(FIX / name)) == expected


def test_read_titles_sniffs_an_unknown_extension(tmp_path: Path) -> None:
    assert list(read_titles(_write(tmp_path, "kb.list", "A\tdesc a\nB\t\n"))) == [("A", "desc a"), ("B", "")]
    assert list(read_titles(_write(tmp_path, "kb.dump", '{"title": "A"}\n'))) == [("A", "")]


@pytest.mark.parametrize("name,content,fragment", [
    ("kb.tsv", "A\tok\n\tno title\n", "kb.tsv:2: empty title"),
    ("kb.jsonl", '{"title": "A"}\n{"name": "B"}\n', "kb.jsonl:2: each line must be"),
    ("kb.jsonl", '{"title": "A", "description": 3}\n', "kb.jsonl:1: description must be a string"),
    ("kb.txt", "A\nB\tdesc\n", "kb.txt:2: a tab in a plain list"),
])
def test_read_titles_errors(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    with pytest.raises(DatasetFormatError, match=fragment):
        list(read_titles(_write(tmp_path, name, content)))


# ----------------------------------------------------------------------------- what eval and train make of it


class _Linker:
    """A stand-in with `Linker.link`'s interface (plus the ``candidates=`` keyword): records what it is asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []

    def link(self, image, text, mention, *, exclude=(), candidates=None, verbatim=True):
        assert mention in text or not verbatim, "a mention not in its text is passed with verbatim=False"
        self.calls.append((text, mention, candidates))
        return Prediction(entity=candidates[0] if candidates else None, candidates=[], demonstrations=[])


def test_predict_prompts_a_mention_not_in_its_text_as_given() -> None:
    from gemel.data.evaluate import predict

    linker = _Linker()
    predict(linker, list(read_wikimel(FIX / "melbench_wikimel.json")), progress=False)
    assert [c[1] for c in linker.calls] == ["Charles L. Smith", "Will Rogers", "Ludwig Beethoven", "Ada Lovelace"]
    assert [c[2] for c in linker.calls] == [None] * 4  # candidates are retrieved unless asked otherwise


def test_predict_passes_the_candidates_of_the_data_when_asked() -> None:
    from gemel.data.evaluate import predict

    linker = _Linker()
    examples = list(read_wikidiverse(FIX / "wikidiverse_w_10cands.json"))
    predictions = predict(linker, examples, progress=False, candidates_from_data=True)
    assert [c[2] for c in linker.calls] == [e.meta["candidates"] for e in examples]
    assert linker.calls[1][1] == "Obamma"  # as the file writes it (at the offsets of "Obama")
    assert [p.entity for p in predictions] == ["Detroit Lions", "Barack Obama", "Embassy"]


def test_candidates_from_data_refuses_examples_without_candidates_before_linking() -> None:
    from gemel.data.evaluate import EvaluationError, predict

    linker = _Linker()
    examples = list(read_wikidiverse(FIX / "wikidiverse_w_10cands.json")) + list(read_wikimel(FIX / "wikimel.json"))
    with pytest.raises(EvaluationError, match=r"5 of 8 examples list no candidates \(first: example 'WIKIMEL_0'\)"):
        predict(linker, examples, progress=False, candidates_from_data=True)
    assert linker.calls == []


def _tiny_profile(tiny_config, tmp_path: Path) -> Path:
    from gemel.config import profile_toml

    profile = tmp_path / "tiny.toml"
    profile.write_text(profile_toml(tiny_config))
    return profile


def _original_wikimel(tmp_path: Path) -> Path:
    """The original WikiMEL layout over the tiny KB's entities, one mention not verbatim in its sentence."""
    records = {"1": {"id": "1", "sentence": "Grace B. Hopper wrote the first compiler.", "mentions": ["Grace Hopper"],
                     "entities": ["Grace Hopper"], "answer": ["Q11591"]},
               "2": {"id": "2", "sentence": "Jordan scored 40 points for the Bulls.", "mentions": ["Jordan"],
                     "entities": ["Michael Jordan"], "answer": ["Q41421"]},
               "3": {"id": "3", "sentence": "Nighthawks is a painting by Hopper.", "mentions": ["Hopper"],
                     "entities": ["Edward Hopper"], "answer": ["Q203401"]}}
    return _write(tmp_path, "Wikidata-MEL.json", json.dumps(records, indent=2))


@pytest.mark.usefixtures("one_thread")
def test_gemel_eval_reports_and_scores_mentions_not_in_their_text(tiny_config, tmp_path: Path, capsys) -> None:
    from gemel.cli.main import main

    report = tmp_path / "report.json"
    assert main(["eval", "--profile", str(_tiny_profile(tiny_config, tmp_path)), "--data",
                 str(_original_wikimel(tmp_path)), "--report", str(report), "--quiet",
                 "--set", "decode.num_beams=2"]) == 0
    out = capsys.readouterr().out
    assert "data: 3 mentions (0 gold NIL); 1 not verbatim in their text" in out
    blob = json.loads(report.read_text())
    assert blob["n"] == 3 and blob["data_summary"]["not_verbatim"] == 1 and blob["candidates"] == "retrieval"
    assert [row["mention"] for row in blob["predictions"]] == ["Grace Hopper", "Jordan", "Hopper"]  # as given


def _official_splits(tmp_path: Path) -> Path:
    """MEL-GHMFC's splits.json layout over the keys of `_original_wikimel`."""
    return _write(tmp_path, "splits.json", json.dumps({"train": ["2"], "test": ["1", "3"], "dev": []}, indent=2))


@pytest.mark.usefixtures("one_thread")
def test_gemel_eval_on_the_official_test_split(tiny_config, tmp_path: Path, capsys) -> None:
    from gemel.cli.main import main

    report, splits = tmp_path / "report.json", _official_splits(tmp_path)
    assert main(["eval", "--profile", str(_tiny_profile(tiny_config, tmp_path)), "--data",
                 str(_original_wikimel(tmp_path)), "--split", f"{splits}:test", "--report", str(report), "--quiet",
                 "--pool", str(_original_wikimel(tmp_path)), "--pool-split", f"{splits}:train",
                 "--set", "decode.num_beams=2"]) == 0
    out = capsys.readouterr().out
    assert ("data: split 'test' of splits.json (2 ids, 2 read): 2 mentions (0 gold NIL); 1 not verbatim in their "
            "text") in out
    blob = json.loads(report.read_text())
    assert blob["n"] == 2 and [row["id"] for row in blob["predictions"]] == ["1-0", "3-0"]
    assert blob["split"] == {"file": str(splits), "name": "test", "ids": 2, "read": 2}
    assert blob["data_summary"]["not_verbatim"] == 1


@pytest.mark.parametrize("argv,fragment", [
    (["--split", "{splits}"], "names no split: add one of the file's splits (train, test, dev)"),
    (["--split", "{splits}:valid"], "has no split 'valid'; its splits are train, test, dev"),
    (["--pool-split", "{splits}:train"], "--pool-split {splits}:train splits the --pool file: give --pool too"),
])
def test_gemel_eval_refuses_a_bad_split_before_loading_models(tmp_path: Path, capsys, monkeypatch, argv: list[str],
                                                               fragment: str) -> None:
    from gemel.cli import eval as eval_cli
    from gemel.cli.main import main

    splits = _official_splits(tmp_path)
    monkeypatch.setattr(eval_cli, "load_for_eval", lambda args: pytest.fail("models loaded before the check"))
    argv = [a.format(splits=splits) for a in argv]
    assert main(["eval", "--data", str(_original_wikimel(tmp_path)), *argv]) == 2
    assert fragment.format(splits=splits) in capsys.readouterr().err


def test_gemel_annotations_import_one_split(tmp_path: Path, capsys) -> None:
    from annotations import Store

    from gemel.cli.main import main

    db, splits = tmp_path / "gold.db", _official_splits(tmp_path)
    argv = ["annotations", "import", str(_original_wikimel(tmp_path)), "--format", "wikimel", "--annotator", "gold",
            "--db", str(db), "--split", f"{splits}:test"]
    assert main(argv) == 0
    assert "imported 2 decisions" in capsys.readouterr().out
    with Store.open(db) as store:
        assert sorted(d["mention"] for d in store.decisions()) == ["Grace B. Hopper", "Hopper"]  # closest span
    assert main(["annotations", "import", str(FIX / "richpedia_train.json"), "--format", "richpedia",
                 "--annotator", "gold", "--db", str(db)]) == 0
    assert "imported 3 decisions" in capsys.readouterr().out
    assert main(["annotations", "import", str(FIX / "ours.jsonl"), "--annotator", "gold", "--db", str(db),
                 "--split", f"{splits}:test"]) == 1
    assert "--split selects records of a data set's released file" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_gemel_eval_candidates_from_data(tiny_config, tmp_path: Path, capsys, monkeypatch) -> None:
    from gemel.cli.main import main
    from gemel.linker import Linker

    profile = _tiny_profile(tiny_config, tmp_path)
    data = _original_wikimel(tmp_path)
    assert main(["eval", "--profile", str(profile), "--data", str(data), "--candidates", "from-data"]) == 2
    assert "3 of 3 examples list no candidates" in capsys.readouterr().err

    asked: list[object] = []

    real_link = Linker.link

    def link(self, image, text, mention, **kwargs):  # the real linker, recording the candidates it is given
        asked.append(kwargs.get("candidates"))
        return real_link(self, image, text, mention, **kwargs)

    monkeypatch.setattr(Linker, "link", link)
    # one candidate of each list is in the tiny KB: the data's candidates decide the answer
    cands = [["Grace Hopper", "Hopper", "nil"], ["Michael Jordan", "Jordan Rivers"]]
    rows = [["Grace B. Hopper wrote the first compiler.", "", "Grace Hopper", "Person", [], [],
             "https://en.wikipedia.org/wiki/Grace_Hopper",
             ["https://en.wikipedia.org/wiki/" + c for c in cands[0]], "technology", 0, 15],
            ["Jordan scored 40 points for the Bulls.", "", "Jordan", "Person", [], [],
             "https://en.wikipedia.org/wiki/Michael_Jordan", cands[1], "sports", 0, 6]]
    report = tmp_path / "cands.json"
    assert main(["eval", "--profile", str(profile), "--data", str(_write(tmp_path, "test_w_10cands.json",
                 json.dumps(rows))), "--candidates", "from-data", "--quiet", "--report", str(report)]) == 0
    assert asked == [["Grace Hopper", "Hopper"], ["Michael Jordan", "Jordan Rivers"]]
    assert "2 with candidates from the data" in capsys.readouterr().out
    blob = json.loads(report.read_text())
    assert blob["accuracy"] == 1.0 and blob["candidates"] == "from-data"
    assert blob["baseline"]["candidates"] == "retrieval"


@pytest.mark.usefixtures("one_thread")
def test_gemel_train_prints_the_counts_of_its_data(tiny_config, tmp_path: Path, capsys) -> None:
    from gemel.cli.main import main

    assert main(["train", "--profile", str(_tiny_profile(tiny_config, tmp_path)), "--data",
                 str(_original_wikimel(tmp_path)), "--epochs", "1", "--grad-accum", "2", "--no-eval-before",
                 "--out", str(tmp_path / "run")]) == 0
    assert "training data: 3 mentions (0 gold NIL); 1 not verbatim in their text" in capsys.readouterr().out


@pytest.mark.usefixtures("one_thread")
def test_gemel_train_on_the_official_splits(tiny_config, tmp_path: Path, capsys) -> None:
    from gemel.cli.main import main

    data, splits = str(_original_wikimel(tmp_path)), _official_splits(tmp_path)
    assert main(["train", "--profile", str(_tiny_profile(tiny_config, tmp_path)), "--data", data, "--split",
                 f"{splits}:test", "--dev", data, "--dev-split", f"{splits}:train", "--epochs", "1", "--grad-accum",
                 "2", "--no-eval-before", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert ("training data: split 'test' of splits.json (2 ids, 2 read): 2 mentions (0 gold NIL); 1 not verbatim in "
            "their text") in out
    assert "dev data: split 'train' of splits.json (1 id, 1 read): 1 mentions (0 gold NIL); 0 not verbatim" in out
