"""Export / import: JSONL and Parquet, images copied alongside, round trip into a fresh store."""

from __future__ import annotations

import io
import json
import tempfile
from datetime import timezone
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from annotations import (
    ImportFormatError,
    MentionNotInTextError,
    MissingImageError,
    Store,
    UnknownEntityError,
    export_jsonl,
    export_parquet,
    import_jsonl,
    import_parquet,
)
from annotations.io import FIELDS, images_folder

CANDS = [{"name": "Paris", "score": -0.1}, {"name": "Paris, Texas", "score": -0.4}]


def png_bytes(color="red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), color).save(buf, format="PNG")
    return buf.getvalue()


def new_store(folder: Path) -> Store:
    return Store.open(folder / "gemel.db")


@pytest.fixture
def filled(tmp_path) -> Store:
    s = new_store(tmp_path / "a")
    s.record("alice", "accept", text="Obama in Paris", mention="Paris", image=png_bytes(), model_entity="Paris",
             candidates=CANDS, profile="tiny", mapper_version="v1", comment="ok")
    s.record("bob", "candidate", "Paris, Texas", text="Obama in Paris", mention="Paris", image=png_bytes(),
             model_entity="Paris", candidates=CANDS)
    s.record("bob", "nil", text="Obama in Paris", mention="Paris", image=png_bytes())  # supersedes bob's first
    s.record("alice", "more_context", text="Just Paris", mention="Paris")
    return s


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_has_one_line_per_current_decision_with_provenance(filled, tmp_path):
    out = tmp_path / "out" / "corrections.jsonl"
    out.parent.mkdir()
    assert export_jsonl(filled, out) == 3
    recs = read_jsonl(out)
    assert all(list(r) == list(FIELDS) for r in recs)
    alice = recs[0]
    assert (alice["annotator"], alice["decision"], alice["entity"], alice["mapper_version"]) == ("alice", "accept", "Paris", "v1")
    assert alice["candidates"] == CANDS and alice["mention_start"] == 9 and alice["time"].endswith("+00:00")
    assert alice["image"] == f"corrections_images/{alice['image_sha256']}.png"
    assert (out.parent / alice["image"]).read_bytes() == png_bytes()
    assert [r["decision"] for r in recs] == ["accept", "nil", "more_context"]


def test_jsonl_round_trip_into_a_fresh_store(filled, tmp_path):
    out = tmp_path / "x" / "export.jsonl"
    out.parent.mkdir()
    export_jsonl(filled, out)
    fresh = new_store(tmp_path / "b")
    assert import_jsonl(fresh, out) == {"imported": 3, "skipped": 0}
    again = tmp_path / "y" / "export.jsonl"
    again.parent.mkdir()
    export_jsonl(fresh, again)
    assert read_jsonl(again) == read_jsonl(out)
    assert len(list((tmp_path / "b" / "images").iterdir())) == 1  # image copied into the store


def test_import_is_idempotent(filled, tmp_path):
    out = tmp_path / "export.jsonl"
    export_jsonl(filled, out)
    assert import_jsonl(filled, out) == {"imported": 0, "skipped": 3}
    assert len(filled.history()) == 4


def test_parquet_export_reads_back_and_loads_in_datasets(filled, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "export.parquet"
    assert export_parquet(filled, out) == 3
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 3 and set(FIELDS) <= set(ds.column_names)
    assert ds[0]["text"] == "Obama in Paris" and json.loads(ds[0]["candidates"]) == CANDS
    assert ds[2]["image"] is None and ds[0]["mention_start"] == 9
    fresh = new_store(tmp_path / "b")
    assert import_parquet(fresh, out)["imported"] == 3
    assert [d["decision"] for d in fresh.decisions()] == ["accept", "nil", "more_context"]


def test_empty_store_exports_empty_files(tmp_path):
    s = new_store(tmp_path)
    assert export_jsonl(s, tmp_path / "e.jsonl") == 0 and (tmp_path / "e.jsonl").read_text() == ""
    assert export_parquet(s, tmp_path / "e.parquet") == 0
    assert not images_folder(tmp_path / "e.jsonl").exists()


def write_lines(path: Path, *records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


GOOD = {"text": "Obama in Paris", "mention": "Paris", "annotator": "alice", "decision": "search", "entity": "Paris"}


@pytest.mark.parametrize(
    "bad, error, where",
    [
        ("{not json", ImportFormatError, "line 2"),
        ({"text": "x"}, ImportFormatError, "line 2"),
        ([1, 2], ImportFormatError, "line 2"),
        ({**GOOD, "mention": "London"}, MentionNotInTextError, "line 2"),
        ({**GOOD, "image": "missing.png"}, MissingImageError, "line 2"),
        ({**GOOD, "entity": "Atlantis"}, UnknownEntityError, "line 2"),
    ],
)
def test_bad_lines_name_the_line_and_import_nothing(tmp_path, bad, error, where):
    s = Store.open(tmp_path / "gemel.db", entity_exists={"Paris"}.__contains__)
    path = write_lines(tmp_path / "in.jsonl", GOOD, bad)
    with pytest.raises(error, match=where):
        import_jsonl(s, path)
    assert s.history() == []


def test_import_checks_the_image_hash(tmp_path):
    (tmp_path / "img.png").write_bytes(png_bytes())
    path = write_lines(tmp_path / "in.jsonl", {**GOOD, "image": "img.png", "image_sha256": "0" * 64})
    with pytest.raises(ImportFormatError, match="sha256"):
        import_jsonl(new_store(tmp_path / "s"), path)


def test_import_of_a_missing_file(tmp_path):
    with pytest.raises(ImportFormatError, match="does not exist"):
        import_jsonl(new_store(tmp_path), tmp_path / "nope.jsonl")


# ---- property: export -> import -> export is the identity, for arbitrary unicode ------------

nonblank = st.text(min_size=1, max_size=12).filter(str.strip)


@st.composite
def corrections(draw):
    mention = draw(nonblank)
    text = draw(st.text(max_size=20)) + mention + draw(st.text(max_size=20))
    decision = draw(st.sampled_from(["accept", "candidate", "search", "nil", "more_context"]))
    names = draw(st.lists(nonblank, min_size=1, max_size=3, unique=True))
    cands = [{"name": n, "score": draw(st.floats(-50, 0))} for n in names]
    entity = {"accept": None, "candidate": names[-1], "search": draw(nonblank)}.get(decision)
    return {
        "annotator": draw(st.sampled_from(["alice", "bob", "ünïcode ✍"])), "decision": decision, "entity": entity,
        "text": text, "mention": mention, "model_entity": names[0], "candidates": cands,
        "image": draw(st.sampled_from([None, "red", "blue"])), "comment": draw(st.none() | st.text(max_size=20)),
        "profile": draw(st.none() | nonblank), "mapper_version": draw(st.none() | nonblank),
        "at": draw(st.datetimes(timezones=st.just(timezone.utc))),
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(corrections(), max_size=6))
def test_export_import_round_trip_property(records):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = Store(sqlite_utils.Database(memory=True), config={"images_dir": str(tmp / "a_images")})
        for r in records:
            image = None if r["image"] is None else png_bytes(r["image"])
            a.record(r.pop("annotator"), r.pop("decision"), r.pop("entity"), **{**r, "image": image})
        for name in ("a", "b"):
            (tmp / name).mkdir()
        export_jsonl(a, tmp / "a" / "x.jsonl")
        b = Store(sqlite_utils.Database(memory=True), config={"images_dir": str(tmp / "b_images")})
        import_jsonl(b, tmp / "a" / "x.jsonl")
        export_jsonl(b, tmp / "b" / "x.jsonl")
        exported_a, exported_b = read_jsonl(tmp / "a" / "x.jsonl"), read_jsonl(tmp / "b" / "x.jsonl")
        key = lambda r: json.dumps(r, sort_keys=True)
        assert sorted(map(key, exported_a)) == sorted(map(key, exported_b))
        assert len(exported_a) == len(a.decisions())


# ---- gold: a labelled data set imported as one annotator's decisions ----------------------------------------
GOLD = {"text": "Obama in Paris", "mention": "Paris", "entity": "Paris"}


def test_gold_becomes_search_and_nil_decisions(tmp_path):
    from annotations.io import import_gold

    (tmp_path / "img.png").write_bytes(png_bytes())
    path = write_lines(tmp_path / "gold.jsonl", {**GOLD, "image": "img.png"},
                       {"text": "Obama in Paris", "mention": "Obama", "entity": ""},
                       {"text": "Mercury is hot.", "mention": "Mercury", "entity": None, "id": "m1"})
    s = new_store(tmp_path / "s")
    assert import_gold(s, path, "gold") == {"imported": 3, "skipped": 0}
    got = [(d["annotator"], d["decision"], d["entity"], d["image_sha256"] is not None) for d in s.decisions()]
    assert got == [("gold", "search", "Paris", True), ("gold", "nil", None, False), ("gold", "nil", None, False)]
    assert import_gold(s, path, "gold") == {"imported": 0, "skipped": 3}  # a second import adds nothing
    assert import_gold(s, path, "second-team")["imported"] == 3  # another annotator's labels are new


@pytest.mark.parametrize("bad, error, where", [
    ("{not json", ImportFormatError, "line 2"),
    ({"text": "Obama in Paris", "mention": "Paris"}, ImportFormatError, "line 2: a labelled record needs"),
    ({**GOLD, "entity": 3}, ImportFormatError, "line 2: entity 3 must be a KB title"),
    ({**GOLD, "mention": "London"}, MentionNotInTextError, "line 2"),
    ({**GOLD, "image": "missing.png"}, MissingImageError, "line 2"),
    ({**GOLD, "image": "https://example.org/a.jpg"}, MissingImageError, "line 2: image .* is a URL"),
    ({**GOLD, "entity": "Atlantis"}, UnknownEntityError, "line 2"),
])
def test_bad_gold_lines_name_the_line_and_import_nothing(tmp_path, bad, error, where):
    from annotations.io import import_gold

    s = Store.open(tmp_path / "gemel.db", entity_exists={"Paris"}.__contains__)
    with pytest.raises(error, match=where):
        import_gold(s, write_lines(tmp_path / "gold.jsonl", GOLD, bad), "gold")
    assert s.history() == []


def test_an_export_importer_points_gold_to_annotator(tmp_path):
    with pytest.raises(ImportFormatError, match="line 1: .*labelled example.*pass --annotator NAME"):
        import_jsonl(new_store(tmp_path), write_lines(tmp_path / "gold.jsonl", GOLD))


def test_reader_examples_import_with_their_span_and_missing_images(tmp_path):
    from types import SimpleNamespace as Ex

    from annotations.io import import_examples

    (tmp_path / "a.png").write_bytes(png_bytes())
    examples = [
        Ex(id="1", text="Obama in Paris", mention="Paris", entity="Paris", image=str(tmp_path / "a.png"), meta={}),
        Ex(id="2", text="Hermann von Beckerath.", mention="Hermann Beckerath", entity="Hermann von Beckerath",
           image=None, meta={"verbatim": False, "mention_span": [0, 21], "image_missing": "x/2.jpg"}),
        Ex(id="3", text="A nil one.", mention="nil", entity=None, image=None, meta={}),
    ]
    s = new_store(tmp_path / "s")
    result = import_examples(s, examples, "gold", tmp_path / "wikimel.json")
    assert result == {"imported": 3, "skipped": 0, "not_verbatim": 1, "missing_images": 1}
    beckerath = s.decisions()[1]
    assert beckerath["mention"] == "Hermann von Beckerath" and "'Hermann Beckerath'" in beckerath["comment"]
    assert [d["decision"] for d in s.decisions()] == ["search", "search", "nil"]
    with pytest.raises(MentionNotInTextError, match=r"wikimel.json: example 1 \(id x\)"):
        import_examples(s, [Ex(id="x", text="abc", mention="zz", entity="Paris", image=None, meta={})], "gold",
                        tmp_path / "wikimel.json")
