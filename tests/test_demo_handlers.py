"""The demo's handlers without a browser: a tiny linker, a temp-file store, the `Studio` methods."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import gradio as gr
import pytest

from demo.config import AppConfig
from demo.handlers import DecisionError, Studio, annotator_name, decision_for


@pytest.fixture
def linker(tiny_linker):
    """A variant of the session's tiny linker with a private copy of its labelled pool (corrections must not
    leak into other tests)."""
    return tiny_linker.replace(pool=tiny_linker.labelled_pool.with_examples())


@pytest.fixture
def store(linker, tmp_path):
    from annotations import Store

    with Store.open(tmp_path / "gemel.db", entity_exists=linker.kb.__contains__) as s:
        yield s


@pytest.fixture
def studio(linker, store, tmp_path):
    return Studio(linker, store, AppConfig(work_dir=str(tmp_path / "work")))


@pytest.fixture
def photo(tiny_dir) -> str:
    return str(Path(tiny_dir) / "img.png")


CAPTION = "Hopper wrote the first compiler for the Navy."


@pytest.fixture(scope="module")
def query(tiny_linker, tiny_dir) -> dict:
    """A linked query as the Link tab keeps it (linked once per module: linking is the slow part)."""
    image = str(Path(tiny_dir) / "img.png")
    pred = tiny_linker.link(image, CAPTION, "Hopper").to_dict()
    return {"text": CAPTION, "mention": "Hopper", "image": image, "prediction": pred}


def db_rows(store) -> list[dict]:
    con = sqlite3.connect(store.path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM corrections ORDER BY id")]
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------- pure logic
@pytest.mark.parametrize("action, choice, model, expected", [
    ("save", "A", "A", ("accept", "A")),
    ("save", "B", "A", ("candidate", "B")),
    ("save", None, "A", ("accept", "A")),
    ("save", None, None, ("nil", None)),
    ("save", "Z", "A", ("search", "Z")),
    ("search", "B", "A", ("candidate", "B")),
    ("search", "A", "A", ("accept", "A")),
    ("search", "Z", None, ("search", "Z")),
    ("nil", "B", "A", ("nil", None)),
    ("more_context", "B", "A", ("more_context", None)),
])
def test_decision_for(action, choice, model, expected):
    assert decision_for(action, choice, model, ["A", "B"]) == expected


@pytest.mark.parametrize("action, choice", [("search", None), ("search", ""), ("delete", "A")])
def test_decision_for_refuses(action, choice):
    with pytest.raises(DecisionError):
        decision_for(action, choice, "A", ["A", "B"])


@pytest.mark.parametrize("typed, login, expected", [
    ("alice", None, "alice"), ("  bob ", None, "bob"), ("alice", "hf-carol", "hf-carol"), ("", "dave", "dave"),
])
def test_annotator_name_prefers_the_login(typed, login, expected):
    assert annotator_name(typed, login) == expected


@pytest.mark.parametrize("typed", [None, "", "   "])
def test_annotator_name_required(typed):
    with pytest.raises(DecisionError, match="Annotator box"):
        annotator_name(typed)


# ---------------------------------------------------------------------------------------------- link tab
def test_link_view_shows_the_prediction(studio, photo):
    v = studio.link(photo, CAPTION, "Hopper")
    pred = v.query["prediction"]
    names = [c["name"] for c in pred["candidates"]]
    assert v.selected == pred["entity"] and pred["entity"] in names
    assert [value for _, value in v.choices] == names[: studio.config.candidates_shown]
    assert all(label.startswith(f"{i}. ") for i, (label, _) in enumerate(v.choices, 1))
    assert all(name in v.bars for name in names[:3]) and "language model" in v.bars
    assert "tiny" in v.meta and "untrained" in v.meta and " s</b>" in v.meta
    assert 'class="gemel-why"' in v.meta and "because" in v.meta and "the numbers" in v.meta  # why, in words
    assert pred["demonstrations"] and all(d["mention"] in v.demos for d in pred["demonstrations"])
    assert v.query["text"] == CAPTION and v.query["image"] == photo


def test_nil_prediction_is_shown_as_not_in_kb(studio, linker, photo, monkeypatch):
    import copy

    ranker = copy.deepcopy(linker.ranker)
    ranker.nil_below = 1.01  # no probability reaches it
    monkeypatch.setattr(linker, "ranker", ranker)
    v = studio.link(photo, CAPTION, "Hopper")
    assert v.query["prediction"]["entity"] is None and v.selected is None
    assert "not in the KB (below threshold)" in v.card
    assert v.choices  # the candidates are still offered


def test_a_shipped_example_is_not_its_own_demonstration(linker, store, tmp_path, photo):
    text, mention = "Hopper wrote the first compiler for a programming language.", "Hopper"  # seed-0
    keep = linker.replace(config=linker.config.replace(demos={"same_caption": "keep"}))  # else dropped by caption
    studio = Studio(keep, store, AppConfig(work_dir=str(tmp_path / "work")))

    def demos(exclude):
        return [(d["text"], d["mention"]) for d in studio.link(photo, text, mention, exclude).query["prediction"][
            "demonstrations"]]

    assert (text, mention) in demos([])
    assert (text, mention) not in demos(["seed-0"])


@pytest.mark.parametrize("caption, mention, message", [
    ("", "Hopper", "caption is empty"),
    (CAPTION, "", "mention is empty"),
    (CAPTION, "Turing", "does not occur"),
])
def test_link_input_errors_are_sentences(studio, caption, mention, message):
    with pytest.raises(gr.Error) as err:
        studio.link(None, caption, mention)
    assert err.value.message.startswith("Could not link: ") and message in err.value.message
    assert "Traceback" not in err.value.message


def test_bad_upload_is_refused_with_a_sentence(studio, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(gr.Error, match="not an image PIL can read"):
        studio.link(str(bad), CAPTION, "Hopper")


def test_oversized_upload_is_refused_before_decoding(studio, tmp_path, monkeypatch):
    from PIL import Image

    import gemel.images

    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    monkeypatch.setattr(gemel.images, "MAX_PIXELS", 100 * 100)
    monkeypatch.setattr(gemel.images.load_image, "__defaults__", (100 * 100,))
    with pytest.raises(gr.Error, match="over the cap"):
        studio.link(str(big), CAPTION, "Hopper")


def test_unexpected_errors_hide_the_traceback(studio, linker, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret internals at /srv/x.py line 3")

    monkeypatch.setattr(linker, "link", boom)
    with pytest.raises(gr.Error) as err:
        studio.link(None, CAPTION, "Hopper")
    assert "RuntimeError" in err.value.message and "secret" not in err.value.message


def test_search_kb_autocompletes(studio):
    assert studio.search_kb("hop") == ["Grace Hopper", "Edward Hopper"]  # word-prefix matches, shortest first
    assert studio.search_kb("") == []


# ---------------------------------------------------------------------------------------------- corrections
def test_correction_is_stored_and_becomes_a_demonstration(studio, store, linker, photo):
    v = studio.link(photo, CAPTION, "Hopper")
    other = v.choices[1][1]
    pool_before = len(linker.labelled_pool)
    message = studio.correct(v.query, "alice", "save", other, comment="  the painter, surely ")
    rows = db_rows(store)
    assert len(rows) == 1
    assert rows[0]["annotator"] == "alice" and rows[0]["decision"] == "candidate" and rows[0]["entity"] == other
    assert rows[0]["model_entity"] == v.selected and rows[0]["comment"] == "the painter, surely"
    assert rows[0]["profile"] == "tiny" and rows[0]["mapper_version"] == "untrained"
    assert f"#{rows[0]['id']}" in message and other in message
    assert len(linker.labelled_pool) == pool_before + 1
    added = linker.labelled_pool.examples[-1]
    assert (added.text, added.mention, added.entity, added.source) == (CAPTION, "Hopper", other, "annotations")
    assert added.image and Path(added.image).is_file()  # the store's copy of the photo
    # the very same item is answered from the correction; another caption retrieves it as a demonstration
    again = studio.link(photo, CAPTION, "Hopper").query["prediction"]
    assert (again["entity"], again["source"], again["corrected_by"]) == (other, "correction", "alice")
    assert not any(d["source"] == "annotations" for d in again["demonstrations"])  # not its own demonstration
    elsewhere = studio.link(photo, "Hopper wrote the first compiler for the Army.", "Hopper").query["prediction"]
    assert any(d["entity"] == other and d["source"] == "annotations" for d in elsewhere["demonstrations"])
    assert elsewhere["source"] == "model"


@pytest.mark.parametrize("action, choice, decision, has_entity", [
    ("save", None, "accept", True), ("nil", None, "nil", False), ("more_context", None, "more_context", False),
    ("search", "Moon", "search", True),
])
def test_every_action_is_recorded(studio, store, linker, query, action, choice, decision, has_entity):
    before = len(linker.labelled_pool)
    studio.correct(query, "bob", action, choice)
    row = db_rows(store)[-1]
    assert row["decision"] == decision and (row["entity"] is not None) == has_entity
    assert len(linker.labelled_pool) == before + has_entity


@pytest.mark.parametrize("linked, name, choice, message", [
    (False, "alice", "Moon", "link a mention first"),
    (True, "", "Moon", "Annotator box"),
    (True, "alice", "Atlantis", "not an entity of the knowledge base"),
])
def test_correction_errors_are_sentences(studio, store, query, linked, name, choice, message):
    q = query if linked else None
    with pytest.raises(gr.Error) as err:
        studio.correct(q, name, "search", choice)
    assert err.value.message.startswith("Could not save the decision: ") and message in err.value.message
    assert db_rows(store) == []


def test_undo_last(studio, store, query):
    studio.correct(query, "alice", "nil", None)
    assert "Undid" in studio.undo_last("alice")
    assert store.decisions() == []
    with pytest.raises(gr.Error, match="Could not undo: .*no decision left"):
        studio.undo_last("alice")


def test_undo_withdraws_the_demonstration_and_restores_the_earlier_one(studio, linker, query):
    first = query["prediction"]["candidates"][0]["name"]
    other = query["prediction"]["candidates"][1]["name"]
    studio.correct(query, "alice", "save", first)
    studio.correct(query, "alice", "save", other)
    live = [e.entity for e in linker.labelled_pool.live() if e.text == CAPTION]
    assert live == [other]  # the re-decision replaced alice's first label
    studio.undo_last("alice")
    assert [e.entity for e in linker.labelled_pool.live() if e.text == CAPTION] == [first]


def test_api_correct_uses_the_login_over_the_typed_name(studio, store, photo):
    cid = studio.api_correct(photo, CAPTION, "Hopper", "Grace Hopper", "mallory", login="alice")
    row = store.get(cid)
    assert (row["annotator"], row["decision"], row["entity"]) == ("alice", "search", "Grace Hopper")
    nil_id = studio.api_correct(None, CAPTION, "Navy", "", "bob")
    assert store.get(nil_id)["decision"] == "nil"


def test_api_link_is_json(studio, photo):
    out = studio.api_link(photo, CAPTION, "Hopper")
    assert json.loads(json.dumps(out)) == out
    assert {"entity", "candidates", "demonstrations", "profile", "mapper", "timings"} <= set(out)


def test_startup_loads_stored_corrections_into_the_pool(linker, store, tmp_path):
    store.record("carol", "search", "Moon", text="The Moon rose.", mention="Moon")
    before = len(linker.labelled_pool)
    Studio(linker, store, AppConfig(work_dir=str(tmp_path / "w"))).load_corrections()
    assert len(linker.labelled_pool) == before + 1 and linker.labelled_pool.examples[-1].entity == "Moon"


# ---------------------------------------------------------------------------------------------- review queue
def write_batch(folder: Path, photo: str) -> list[str]:
    (folder / "pics").mkdir(parents=True)
    Path(folder / "pics" / "red.png").write_bytes(Path(photo).read_bytes())
    lines = [{"text": "Jordan scored 40 points.", "mention": "Jordan", "image": "pics/red.png"},
             {"text": "Mercury is hot.", "mention": "Mercury"},
             {"text": "The Moon rose over the Jordan.", "mention": "Moon"}]
    (folder / "batch.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return [str(folder / "batch.jsonl"), str(folder / "pics" / "red.png")]


def test_an_accepted_item_undone_from_review_no_longer_answers_the_api(studio, photo, tmp_path):
    """An Enter pressed by mistake in Review becomes the item's answer for every later call; one Undo takes it
    back, through the API too."""
    studio.enqueue(write_batch(tmp_path / "up", photo))
    shown = studio.next_item("alice")
    it = shown.item
    other = next(name for _, name in shown.choices if name != shown.selected)
    decided = studio.decide_item(it, "alice", "save", other)
    assert f"answer {other}" in decided.message
    api = studio.api_link(it["image"], it["text"], it["mention"])
    assert api["source"] == "correction" and api["entity"] == other
    assert "Undid your last decision" in studio.undo_last("alice")
    again = studio.api_link(it["image"], it["text"], it["mention"])
    assert again["source"] == "model" and again["entity"] == shown.selected
    assert studio.store.progress("alice")["done"] == 0  # back in the queue


def test_review_queue_round_trip(studio, store, linker, photo, tmp_path):
    message = studio.enqueue(write_batch(tmp_path / "up", photo))
    assert message == "Added 3 new items to the queue, least certain first."
    first = studio.next_item("alice")
    assert first.item is not None and "<b>3</b> left" in first.progress
    assert first.choices and first.selected == first.item["prediction"]["entity"]
    assert "<mark" in first.caption
    assert 'class="gemel-why"' in first.meta and "because" in first.meta  # Review = Link's why
    assert all(d["mention"] in first.demos for d in first.item["prediction"]["demonstrations"])

    nxt = studio.decide_item(first.item, "alice", "save", first.choices[-1][1])
    assert "Saved #" in nxt.message and nxt.item["item_id"] != first.item["item_id"]
    assert f"From now on this caption, mention and picture answer {first.choices[-1][1]}" in nxt.message
    assert nxt.item["margin"] >= first.item["margin"]  # least certain (smallest margin) first
    skipped = studio.skip("alice", nxt.item)
    assert skipped.item["item_id"] != nxt.item["item_id"] and "Skipped" in skipped.message
    assert store.progress("alice")["done"] == 1

    last = studio.decide_item(skipped.item, "alice", "nil", None)
    assert last.item["item_id"] == nxt.item["item_id"]  # the skipped item comes back last
    after = studio.decide_item(last.item, "alice", "more_context", None)
    assert after.item is None and "queue is empty" in after.message
    assert store.progress("alice") == {"total": 3, "done": 3, "skipped": 0, "left": 0}
    assert "Undid" in studio.undo_last("alice")
    assert store.progress("alice")["left"] == 1


def test_enqueue_reports_items_it_could_not_link(studio, tmp_path, photo):
    up = tmp_path / "up"
    up.mkdir()
    (up / "b.jsonl").write_text(json.dumps({"text": "Mercury is hot.", "mention": "Mercury"}) + "\n"
                                + json.dumps({"text": "Moon", "mention": "Moon", "image": "x.png"}) + "\n")
    (up / "x.png").write_text("not an image")
    message = studio.enqueue([str(up / "b.jsonl"), str(up / "x.png")])
    assert message.startswith("Added 1 new item to the queue, least certain first. 1 item could not be linked "
                              "and was left out; first: b.jsonl:2")


def test_a_batch_added_again_says_its_items_were_already_queued(studio, store, tmp_path, photo):
    batch = write_batch(tmp_path / "up", photo)
    assert studio.enqueue(batch) == "Added 3 new items to the queue, least certain first."
    assert studio.enqueue(batch) == "Added 0 new items; 3 were already in the queue."
    assert store.progress("alice")["total"] == 3
    more = tmp_path / "more.jsonl"
    more.write_text(Path(batch[0]).read_text().splitlines()[1] + "\n"
                    + json.dumps({"text": "The Moon is bright.", "mention": "Moon"}) + "\n")
    assert studio.enqueue([str(more)]) == ("Added 1 new item to the queue, least certain first; 1 was already in "
                                           "the queue.")


@pytest.mark.parametrize("new, already, message", [
    (1, 0, "Added 1 new item to the queue, least certain first."),
    (2, 2, "Added 2 new items to the queue, least certain first; 2 were already in the queue."),
    (0, 1, "Added 0 new items; 1 was already in the queue."),
    (0, 0, "Added 0 new items."),
])
def test_added_message_counts_new_and_already_queued_items(new, already, message):
    from demo.handlers import _added

    assert _added(new, already) == message


def test_enqueue_without_jsonl_is_a_sentence(studio, photo):
    with pytest.raises(gr.Error, match="Could not add the batch: no .jsonl file"):
        studio.enqueue([photo])


def test_server_paths_are_refused_by_default(studio, tmp_path, photo):
    batch = write_batch(tmp_path / "srv", photo)[0]
    with pytest.raises(gr.Error, match="does not read files on the server"):
        studio.enqueue([], batch)


# ---------------------------------------------------------------------------------------------- data tab
def test_stats_and_plot(studio, query):
    studio.correct(query, "alice", "save", None)
    studio.correct(query, "bob", "nil", None)
    s = studio.stats()
    assert "alice" in s.counts and "bob" in s.counts and "not in the KB" in s.counts
    assert "percent agreement <b>0.0%</b>" in s.agreement and "2 annotators" in s.agreement
    assert Path(s.plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_chart_has_no_point_without_scored_decisions_and_counts_on_every_point(studio, query, monkeypatch):
    import demo.handlers

    drawn = []
    monkeypatch.setattr(demo.handlers, "plot_corrections", lambda per_day, scores, path: drawn.append(scores) or path)
    studio.stats()
    studio.correct(query, "alice", "more_context", None)  # not a verdict on the answer: not scored
    studio.stats()
    studio.correct(query, "bob", "save", None)
    studio.stats()
    assert drawn[:2] == [[], []]
    assert [(s.accuracy, s.n) for s in drawn[2]] == [(1.0, 1)]


@pytest.mark.parametrize("totals, line", [
    ({"current_decisions": 1, "corrections": 1, "inputs": 1, "queue_items": 1},
     "1 current decision · 1 correction in all · 1 input · 1 queued item"),
    ({"current_decisions": 2, "corrections": 3, "inputs": 0, "queue_items": 2},
     "2 current decisions · 3 corrections in all · 0 inputs · 2 queued items"),
])
def test_totals_agree_with_their_counts(totals, line):
    from demo.handlers import totals_html

    assert totals_html(totals) == f'<div class="gemel-meta">{line}</div>'


def test_stats_totals_say_1_decision_and_1_input(studio, query):
    studio.correct(query, "alice", "save", None)
    assert "1 current decision · 1 correction in all · 1 input · 0 queued items" in studio.stats().totals


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export(studio, query, fmt):
    import zipfile

    studio.correct(query, "alice", "search", "Grace Hopper")
    files, message = studio.export(fmt)
    assert f"Exported 1 current decision as {fmt.upper()}" in message and files[0].endswith(f".{fmt}")
    names = zipfile.ZipFile(files[1]).namelist()
    assert f"corrections.{fmt}" in names and any(n.startswith("corrections_images/") for n in names)
    if fmt == "jsonl":
        rec = json.loads(Path(files[0]).read_text().splitlines()[0])
        assert (rec["mention"], rec["entity"], rec["annotator"]) == ("Hopper", "Grace Hopper", "alice")


def test_export_refuses_unknown_format(studio):
    with pytest.raises(gr.Error, match="not one of jsonl, parquet"):
        studio.export("csv")


def test_a_corrected_item_comes_back_corrected_after_a_restart(tiny_linker, tmp_path, photo):
    from annotations import Store

    db = tmp_path / "gemel.db"
    first = Studio(tiny_linker.replace(pool=[]), Store.open(db), AppConfig(work_dir=str(tmp_path / "a")))
    view = first.link(photo, CAPTION, "Hopper")
    other = next(name for _, name in view.choices if name != view.selected)
    first.correct(view.query, "alice", "save", other)
    first.store.close()

    restarted = Studio(tiny_linker.replace(pool=[]), Store.open(db), AppConfig(work_dir=str(tmp_path / "b")))
    restarted.load_corrections()
    again = restarted.link(photo, CAPTION, "Hopper")
    assert again.selected == other and "answered from memory" in again.meta and "alice" in again.meta
    assert "the model's own answer and ranking, without that memory" in again.meta
    api = restarted.api_link(photo, CAPTION, "Hopper")
    assert (api["entity"], api["source"], api["corrected_by"]) == (other, "correction", "alice")
    restarted.store.close()


# ---- uploads are named as their owner knows them (the server keeps them under a temporary path) ------------
def _faulty(folder: Path, kind: str) -> Path:
    from test_demo_api import bad_file

    cache = folder / "gradio-cache" / "0a1b2c"
    cache.mkdir(parents=True)
    return bad_file(cache, kind)


@pytest.mark.parametrize("kind, sentence", [("not-image", "image file 'my notes.png' is not an image PIL can read"),
                                            ("empty", "image file 'my notes.png' is empty"),
                                            ("bomb", "image file 'my notes.png' is too large to decode safely")])
@pytest.mark.parametrize("call", ["link", "api_link", "api_correct"])
def test_faulty_uploads_are_named_by_their_upload_name(studio, tmp_path, kind, sentence, call):
    from demo.handlers import Upload

    upload = Upload(str(_faulty(tmp_path, kind)), "my notes.png")
    args = (upload, CAPTION, "Hopper") + (("Grace Hopper", "alice") if call == "api_correct" else ())
    with pytest.raises(gr.Error) as err:
        getattr(studio, call)(*args)
    assert sentence in err.value.message and "gradio-cache" not in err.value.message


def test_a_good_upload_links_and_is_stored_by_content(studio, store, photo):
    from demo.handlers import Upload

    view = studio.link(Upload(photo, "hopper.png"), CAPTION, "Hopper")
    assert view.query["image"] == photo  # the server path travels on; the name is for messages
    cid = studio.api_correct(Upload(photo, "hopper.png"), CAPTION, "Hopper", "Grace Hopper", "alice")
    assert db_rows(store)[-1]["id"] == cid


def test_enqueue_failures_name_the_image_not_the_upload_folder(studio, tmp_path):
    up = tmp_path / "gradio-cache" / "9f8e"
    up.mkdir(parents=True)
    (up / "b.jsonl").write_text(json.dumps({"text": "Moon", "mention": "Moon", "image": "x.png"}) + "\n"
                                + json.dumps({"text": "Mercury is hot.", "mention": "Mercury"}) + "\n")
    (up / "x.png").write_bytes(b"")
    message = studio.enqueue([str(up / "b.jsonl"), str(up / "x.png")])
    assert "b.jsonl:1: image file 'x.png' is empty" in message and "gradio-cache" not in message


def test_an_over_long_caption_is_a_named_input_error(studio):
    with pytest.raises(gr.Error) as err:
        studio.link(None, "Hopper " + "x" * 200_000, "Hopper")
    assert err.value.message.startswith("Could not link: the caption is 200,007 characters, over the limit")


def test_every_image_input_reaches_the_handler_unopened(linker, store, tmp_path):
    """The Link tab and the API take images through `UploadedImage` (the handler checks the file), which the
    page still draws as Gradio's image widget."""
    from gradio.data_classes import FileData

    from demo.app import build_app
    from demo.handlers import Upload
    from demo.uploads import UploadedImage

    app = build_app(linker, store, AppConfig(work_dir=str(tmp_path / "work")))
    inputs = {id(c): c for fn in app.fns.values() for c in fn.inputs}
    images = [c for c in inputs.values() if isinstance(c, gr.Image)]
    assert len(images) == 2 and all(isinstance(c, UploadedImage) for c in images)
    assert all(c.get_block_name() == "image" for c in images)
    bad = tmp_path / "tmp123" / "upload.png"
    bad.parent.mkdir()
    bad.write_text("not an image")
    value = images[0].preprocess(FileData(path=str(bad), orig_name="holiday.png"))
    assert value == Upload(str(bad), "holiday.png")  # not opened: no PIL error before the handler runs


# ---------------------------------------------------------------------------------------------- Link tab wiring
@pytest.fixture
def app(linker, store, tmp_path):
    from demo.app import build_app

    return build_app(linker, store, AppConfig(work_dir=str(tmp_path / "work")))


def test_highlights_follow_any_change_of_the_caption(app):
    """Gradio's textbox sends "input" on a keypress only: a paste (Ctrl+V) presses none, so the highlights
    must follow "change" (the value, however it changed)."""
    ids = {b.elem_id: b._id for b in app.blocks.values() if getattr(b, "elem_id", None)}
    spans = ids["link-spans"]
    triggers = {(t, e) for fn in app.fns.values() if spans in [o._id for o in fn.outputs] for t, e in fn.targets}
    assert (ids["link-caption"], "change") in triggers and (ids["link-mention"], "change") in triggers


def test_a_mention_in_another_case_is_linked_as_the_caption_spells_it(studio):
    from demo.app import link_outputs

    out = link_outputs(studio, None, "I love paris in spring", "Paris", None)
    query, status, mention, hint = out[0], out[6], out[7], out[8]
    assert query["mention"] == "paris" and mention == "paris" and status == ""
    assert "Linked &#x27;paris&#x27;, the caption&#x27;s spelling of &#x27;Paris&#x27;" in hint


def test_a_mention_not_in_the_caption_is_one_suggestion_and_no_error(studio):
    from demo.app import link_outputs

    out = link_outputs(studio, None, "Paris is not PARIS", "paris", None)
    hint = out[-1]
    assert hint.count("did you mean") == 1 and "did you mean &#x27;Paris&#x27;?" in hint and "gemel-error" in hint
    assert all(o == gr.skip() for o in out[:-1])  # nothing else changes: no error badges


@pytest.mark.parametrize("mention, sentence", [
    ("PARIS!", "Could not link: mention 'PARIS!' does not occur in the caption as typed; did you mean 'paris'?"),
    ("Turing", "Could not link: mention 'Turing' does not occur in the caption 'I love paris in spring': type "
               "words of the caption as it spells them, or click a highlighted span."),
])
def test_the_page_and_the_api_get_the_same_sentence(studio, mention, sentence):
    from demo.app import link_outputs, linkable_mention

    with pytest.raises(gr.Error) as err:
        linkable_mention("I love paris in spring", mention)
    assert err.value.message == sentence
    hint = link_outputs(studio, None, "I love paris in spring", mention, None)[-1]
    assert f">{sentence.replace(chr(39), '&#x27;')}<" in hint
