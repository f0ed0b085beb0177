"""Dataset readers: hand-written fixtures in each documented format, malformed input, CLIP features, titles."""

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

from gemel.datasets import (
    FORMATS,
    DatasetFormatError,
    UnknownFormatError,
    detect_format,
    read_clip_features,
    read_dataset,
    read_gemel,
    read_jsonl,
    read_titles,
    read_wikidiverse,
    read_wikimel,
    wikipedia_title,
    write_jsonl,
)
from gemel.types import Example

FIX = Path(__file__).parent / "fixtures" / "datasets"
FIXTURES = {"ours.jsonl": "jsonl", "gemel_wikidiverse.json": "gemel", "gemel_wikimel.json": "gemel",
            "wikidiverse.json": "wikidiverse", "wikimel.json": "wikimel"}
READERS = {"jsonl": read_jsonl, "gemel": read_gemel, "wikidiverse": read_wikidiverse, "wikimel": read_wikimel}


def _write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- fixtures, every format


@pytest.mark.parametrize("name,fmt", FIXTURES.items())
def test_detect_format_of_each_fixture(name: str, fmt: str) -> None:
    assert detect_format(FIX / name) == fmt


@pytest.mark.parametrize("name,fmt", FIXTURES.items())
def test_every_example_is_well_formed(name: str, fmt: str) -> None:
    examples = list(READERS[fmt](FIX / name))
    assert examples and examples == list(read_dataset(FIX / name))
    for ex in examples:
        assert isinstance(ex, Example) and ex.text and ex.mention and ex.id
        if "start" in ex.meta:
            assert ex.text[ex.meta["start"]:ex.meta["end"]] == ex.mention
        assert ex.mention in ex.text
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


def test_read_gemel_wikidiverse_nil_and_image_key() -> None:
    lions, packers, embassy = read_gemel(FIX / "gemel_wikidiverse.json")
    assert (lions.entity, packers.entity, embassy.entity) == ("Detroit Lions", "Green Bay Packers", None)
    assert lions.meta["image_key"].endswith("DetroitLionsRunningPlay-2007.jpg")
    assert lions.image == lions.meta["image_key"] and lions.source == "gemel"


def test_read_gemel_wikimel_uses_answer_and_img_name(tmp_path: Path) -> None:
    (tmp_path / "WikiMEL_12.jpg").write_bytes(b"x")
    rogers, smith, bowie = read_gemel(FIX / "gemel_wikimel.json", image_dir=tmp_path)
    assert smith.entity == "Charles L. Smith (Seattle politician)" and bowie.entity == "David Bowie"
    assert rogers.image == str(tmp_path / "WikiMEL_12.jpg") and rogers.meta["image_key"] == "WikiMEL_12.jpg"


def test_read_wikidiverse_one_example_per_mention() -> None:
    examples = list(read_wikidiverse(FIX / "wikidiverse.json"))
    assert [e.entity for e in examples] == ["Detroit Lions", "Green Bay Packers", "Genève", None,
                                           "Stade Roland Garros"]
    assert [e.id for e in examples] == ["0-0", "0-1", "1-0", "1-1", "2-0"]
    lions = examples[0]
    assert lions.meta["type"] == "Organization" and lions.meta["topic"] == "sports"
    assert lions.image == lions.meta["image_url"] and lions.image.startswith("https://")


@pytest.mark.parametrize("local_name", ["DetroitLionsRunningPlay-2007.jpg", "md5"])
def test_read_wikidiverse_finds_downloaded_images(tmp_path: Path, local_name: str) -> None:
    url = "https://upload.wikimedia.org/wikipedia/commons/0/06/DetroitLionsRunningPlay-2007.jpg"
    name = hashlib.md5(url.encode()).hexdigest() + ".jpg" if local_name == "md5" else local_name
    (tmp_path / name).write_bytes(b"x")
    lions = next(read_wikidiverse(FIX / "wikidiverse.json", image_dir=tmp_path))
    assert lions.image == str(tmp_path / name)


def test_read_wikimel_unquotes_and_follows_mimic_image_names(tmp_path: Path) -> None:
    smith, _rogers, sailor, ada = read_wikimel(FIX / "wikimel.json", image_dir=tmp_path)
    assert smith.mention == "Charles L. Smith" and smith.entity == "Charles L. Smith (Seattle politician)"
    assert smith.meta["qid"] == "Q5080000" and smith.id == "WIKIMEL_0"
    assert (sailor.entity, sailor.image, sailor.meta["qid"]) == (None, None, None)
    assert smith.image == str(tmp_path / "WikiMEL_0.jpg")  # MIMIC: <stem>.jpg in the mention image folder
    assert ada.image == str(tmp_path / "WikiMEL_3.jpg") and ada.meta["desc"] == "English mathematician"


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
    ("jsonl", '{"mention": "a", "entity": "A"}\n', "1", "field 'text' must be a non-empty string, got missing"),
    ("jsonl", '{"text": "a b", "mention": "", "entity": "A"}\n', "1", "field 'mention'"),
    ("jsonl", '{"text": "a b", "mention": "a", "entity": ""}\n', "1", "or null for NIL"),
    ("jsonl", '{"text": "a b", "mention": "a", "image": 3}\n', "1", "image 3 must be a path"),
    ("jsonl", '{"text": "a b", "mention": "a", "start": 2, "end": 9}\n', "1", "offsets (start, end)=(2, 9)"),
    ("jsonl", '{"text": "a b", "mention": "a", "meta": [1]}\n', "1", "meta must be a JSON object"),
    ("jsonl", '["a b", "a"]\n["c d", "c"]\n', "1", "expected a JSON object, found list"),
    ("jsonl", '["a b", "a"]\n', "record 0", "expected a JSON object, found str"),
    ("gemel", '{"text": "a b", "mention": "a", "img_url": "u"}\n', "1", "no entity field"),
    ("gemel", '{"text": "a b", "mention": "a", "target": 5}\n', "1", "'target' must be the entity name"),
    ("gemel", '{"text": "a b", "mention": "a", "target": "A", "img_name": 7}\n', "1", "img_url/img_name"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "sports"]]), "record 0", "a WikiDiverse entry is"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "sports", [["Lions", "Org", 4, 90, "nil"]]]]),
     "record 0 mention 0", "do not fit a text of 36 characters"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "sports", [["Lions", "Org", 4, 9, "https://en.wikipedia.org/"]]]]),
     "record 0 mention 0", "no page title"),
    ("wikidiverse", json.dumps([[_LIONS, "u", "sports", [["Lions", "Org"]]]]), "record 0 mention 0",
     "a mention is [mention, type, start, end, Wikipedia URL]"),
    ("wikidiverse", json.dumps([["", "u", "sports", []]]), "record 0", "the text (first element)"),
    ("wikidiverse", '[\n  ["a", "u", "t", []],\n  oops\n]', "3", "not valid JSON"),
    ("wikimel", json.dumps([{"mentions": "a", "answer": "nil", "imgPath": ""}]), "record 0", "'sentence'"),
    ("wikimel", json.dumps([{"sentence": "a b", "mentions": "a", "answer": "Q1", "imgPath": ""}]), "record 0",
     "answer 'Q1' has no entity name"),
    ("wikimel", json.dumps([{"sentence": "a b", "mentions": "c", "answer": "nil", "imgPath": ""}]), "record 0",
     "mention 'c' does not occur"),
    ("wikimel", json.dumps([{"sentence": "a b", "mentions": "a", "answer": "nil", "imgPath": 4}]), "record 0",
     "imgPath must be a string"),
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
             '{"text": "c d", "mention": "d", "entity": null}']
    path = _write(tmp_path, "mixed.jsonl", "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="gemel.datasets"):
        examples = list(read_jsonl(path, on_error="skip"))
    assert [e.mention for e in examples] == ["a", "d"]
    assert "skipped 2 malformed record(s)" in caplog.text and f"{path}:2:" in caplog.text


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
])
def test_read_dataset_cannot_tell(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    with pytest.raises(UnknownFormatError, match=fragment):
        read_dataset(_write(tmp_path, name, content))


def test_read_dataset_explicit_format_and_bad_name() -> None:
    assert len(list(read_dataset(FIX / "wikimel.json", format="wikimel"))) == 4
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
        assert len(feats) == 4 and "WikiMEL_12.jpg" in list(feats)
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
