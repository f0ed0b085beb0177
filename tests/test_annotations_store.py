"""Recording corrections: fields, validation errors, images, entity checks, verbatim text."""

from __future__ import annotations

import io
import sqlite3
import threading
from pathlib import Path

import pytest
import sqlite_utils
from PIL import Image

from annotations import (
    AnnotationError,
    ConfigError,
    EmptyMentionError,
    InvalidDecisionError,
    InvalidImageError,
    MentionNotInTextError,
    MissingImageError,
    NotFoundError,
    Store,
    StoreConfig,
    UnknownEntityError,
    default_db_path,
)

KB = {"Paris", "Paris, Texas", "Barack Obama"}
CANDS = [{"name": "Paris", "score": -0.1}, {"name": "Paris, Texas", "score": -0.4}]
TEXT = "Barack Obama visits Paris."


@pytest.fixture
def store(tmp_path):
    return Store(sqlite_utils.Database(memory=True), entity_exists=KB.__contains__,
                 config={"images_dir": str(tmp_path / "images")})


def png(color="red") -> Image.Image:
    return Image.new("RGB", (2, 2), color)


def png_bytes(color="red") -> bytes:
    buf = io.BytesIO()
    png(color).save(buf, format="PNG")
    return buf.getvalue()


def test_record_stores_every_field(store):
    cid = store.record("alice", "candidate", "Paris, Texas", text=TEXT, mention="Paris", model_entity="Paris",
                       candidates=CANDS, profile="tiny", mapper_version="v2", comment="the Texan one",
                       at="2024-05-01T12:00:00+02:00")
    row = store.get(cid)
    assert row["annotator"] == "alice" and row["decision"] == "candidate" and row["entity"] == "Paris, Texas"
    assert (row["mention_start"], row["mention_end"]) == (20, 25)
    assert row["candidates"] == CANDS and row["profile"] == "tiny" and row["mapper_version"] == "v2"
    assert row["time"] == "2024-05-01T10:00:00.000000+00:00"  # converted to UTC
    assert row["comment"] == "the Texan one" and row["status"] == "current" and row["image"] is None


def test_accept_takes_the_model_entity(store):
    cid = store.record("alice", "accept", text=TEXT, mention="Paris", model_entity="Paris", candidates=CANDS)
    assert store.get(cid)["entity"] == "Paris"


@pytest.mark.parametrize("decision", ["nil", "more_context"])
def test_no_entity_decisions_store_none(store, decision):
    cid = store.record("alice", decision, text=TEXT, mention="Paris", model_entity="Paris")
    assert store.get(cid)["entity"] is None


def test_offsets_select_a_later_occurrence(store):
    text = "Paris Hilton is not in Paris."
    cid = store.record("alice", "search", "Paris", text=text, mention="Paris", start=23)
    row = store.get(cid)
    assert text[row["mention_start"]:row["mention_end"]] == "Paris" and row["mention_start"] == 23


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"mention": ""}, EmptyMentionError),
        ({"mention": "   "}, EmptyMentionError),
        ({"mention": "London"}, MentionNotInTextError),
        ({"mention": "paris"}, MentionNotInTextError),  # case matters
        ({"mention": "Paris", "start": 0}, MentionNotInTextError),
        ({"mention": "Paris", "start": 20, "end": 24}, MentionNotInTextError),
        ({"decision": "maybe"}, InvalidDecisionError),
        ({"decision": "nil", "entity": "Paris"}, InvalidDecisionError),
        ({"decision": "search", "entity": None}, InvalidDecisionError),
        ({"decision": "accept", "model_entity": None}, InvalidDecisionError),
        ({"decision": "accept", "entity": "Paris, Texas"}, InvalidDecisionError),
        ({"decision": "candidate", "entity": "Barack Obama"}, InvalidDecisionError),  # not a candidate
        ({"decision": "search", "entity": "Atlantis"}, UnknownEntityError),
        ({"annotator": ""}, InvalidDecisionError),
        ({"at": "yesterday"}, InvalidDecisionError),
        ({"image": "/no/such/image.png"}, MissingImageError),
        ({"image": b"not an image"}, InvalidImageError),
        ({"image": 42}, InvalidImageError),
        ({"image": b""}, InvalidImageError),
        ({"image": __file__}, InvalidImageError),  # a file that is not an image
    ],
)
def test_invalid_corrections_raise_named_errors(store, kwargs, error):
    args = {"annotator": "alice", "decision": "search", "entity": "Paris", "text": TEXT, "mention": "Paris",
            "model_entity": "Paris", "candidates": CANDS, **kwargs}
    with pytest.raises(error) as info:
        store.record(args.pop("annotator"), args.pop("decision"), args.pop("entity"), **args)
    assert isinstance(info.value, AnnotationError) and len(str(info.value)) > 20
    assert store.history() == []  # nothing half-written


def test_unknown_entity_message_names_the_entity(store):
    with pytest.raises(UnknownEntityError, match="'Atlantis' is not in the knowledge base"):
        store.record("alice", "search", "Atlantis", text=TEXT, mention="Paris")


@pytest.mark.parametrize("kind", ["bytes", "path", "pil"])
def test_images_are_stored_content_addressed(store, tmp_path, kind):
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes())
    image = {"bytes": png_bytes(), "path": path, "pil": png()}[kind]
    row = store.get(store.record("alice", "search", "Paris", text=TEXT, mention="Paris", image=image))
    import hashlib

    stored = Path(row["image"]).read_bytes()

    assert row["image_sha256"] == hashlib.sha256(stored).hexdigest()
    assert row["image"].endswith(f"images/{row['image_sha256']}.png")


def test_same_image_is_stored_once_and_identifies_the_input(store, tmp_path):
    a = store.record("alice", "search", "Paris", text=TEXT, mention="Paris", image=png_bytes())
    b = store.record("bob", "search", "Paris", text=TEXT, mention="Paris", image=png_bytes())
    c = store.record("bob", "search", "Paris", text=TEXT, mention="Paris", image=png_bytes("blue"))
    assert store.get(a)["input_id"] == store.get(b)["input_id"] != store.get(c)["input_id"]
    assert len(list((tmp_path / "images").iterdir())) == 2


def test_jpeg_keeps_its_format_and_find_input_stores_nothing(store, tmp_path):
    buf = io.BytesIO()
    png().save(buf, format="JPEG")
    row = store.get(store.record("alice", "nil", text=TEXT, mention="Paris", image=buf.getvalue()))
    assert row["image"].endswith(".jpg")
    assert store.find_input(TEXT, "Paris", image=buf.getvalue()) == row["input_id"]
    with pytest.raises(NotFoundError):
        store.find_input(TEXT, "Paris", image=png_bytes("green"))
    assert len(list((tmp_path / "images").iterdir())) == 1


def test_in_memory_store_without_images_dir_refuses_images():
    store = Store(sqlite_utils.Database(memory=True))
    with pytest.raises(ConfigError, match="images_dir"):
        store.record("alice", "nil", text=TEXT, mention="Paris", image=png_bytes())


HOSTILE = [
    "Robert'); DROP TABLE corrections;--",
    "<script>alert('x')</script> & <b>bold</b>",
    "' OR '1'='1",
    "emoji 🎉 and RTL مرحبا and \u0000 nul",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_user_text_is_stored_verbatim(store, text):
    cid = store.record(text, "search", "Paris", text=f"{text} in Paris", mention="Paris", comment=text)
    row = store.get(cid)
    assert (row["annotator"], row["comment"], row["text"]) == (text, text, f"{text} in Paris")
    assert store.db["corrections"].count == 1 and "inputs" in store.db.table_names()


def test_missing_rows_raise_not_found(store):
    with pytest.raises(NotFoundError):
        store.get(123)
    with pytest.raises(NotFoundError):
        store.find_input(TEXT, "Paris")


def test_file_store_uses_wal_and_creates_folders(tmp_path):
    with Store.open(tmp_path / "a" / "b" / "gemel.db") as store:
        store.record("alice", "nil", text=TEXT, mention="Paris", image=png_bytes())
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert len(list((tmp_path / "a" / "b" / "images").glob("*.png"))) == 1


def test_a_sqlite_utils_file_database_is_a_full_store(tmp_path):
    store = Store(sqlite_utils.Database(tmp_path / "g.db"))
    assert store.path == tmp_path / "g.db" and store.images_dir == tmp_path / "images"
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_reopens_with_its_data(tmp_path):
    with Store.open(tmp_path / "gemel.db") as store:
        cid = store.record("alice", "nil", text=TEXT, mention="Paris")
    with Store.open(tmp_path / "gemel.db") as store:
        assert store.get(cid)["decision"] == "nil"


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.setenv("GEMEL_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("GEMEL_DB")
    assert default_db_path(spaces_dir=tmp_path) == tmp_path / "gemel.db"
    monkeypatch.chdir(tmp_path)
    assert default_db_path(spaces_dir=tmp_path / "missing") == tmp_path / "data" / "gemel.db"


@pytest.mark.parametrize("settings", [{"busy_timeout_s": -1}, {"max_wait_s": 0}, {"synchronous": "SOMETIMES"},
                                      {"busy_timeut_s": 1}])
def test_bad_config_is_refused(settings):
    with pytest.raises(ConfigError):
        StoreConfig.from_dict(settings)


def test_open_refuses_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="folder"):
        Store.open(tmp_path)


def test_threads_share_one_store(tmp_path):
    store = Store.open(tmp_path / "gemel.db")
    errors: list[BaseException] = []

    def work(n):
        try:
            for i in range(20):
                store.record(f"t{n}", "search", "Paris", text=f"{i} Paris", mention="Paris")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and store.db["corrections"].count == 80


def test_a_locked_database_waits_instead_of_failing(tmp_path):
    store = Store.open(tmp_path / "gemel.db", config={"busy_timeout_s": 0.01})
    other = sqlite3.connect(tmp_path / "gemel.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        cid = store.record("alice", "nil", text=TEXT, mention="Paris")  # waits ~0.3 s, then succeeds
    finally:
        timer.join()
    assert store.get(cid)["decision"] == "nil"


def test_patience_runs_out_with_a_named_error(tmp_path):
    from annotations import StoreBusyError

    store = Store.open(tmp_path / "gemel.db", config={"busy_timeout_s": 0.01, "max_wait_s": 0.2})
    other = sqlite3.connect(tmp_path / "gemel.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreBusyError, match="locked by other writers"):
        store.record("alice", "nil", text=TEXT, mention="Paris")
    other.execute("ROLLBACK")
