"""Review batches: a JSONL uploaded with its images (loose or as a folder); server paths only when allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo.batch import BatchError, read_batch, shipped_examples, split_upload


def upload(tmp_path: Path, name: str, content: bytes | str) -> str:
    """A file as Gradio stores an upload: alone in its own temporary folder."""
    folder = tmp_path / f"upload{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_images_are_matched_among_the_uploads(tmp_path):
    files = [upload(tmp_path, "b.jsonl", jsonl({"text": "Hopper was here.", "mention": "Hopper", "image": "pics/a.png"},
                                                {"text": "Moon.", "mention": "Moon"},
                                                {"text": "Sun.", "mention": "Sun", "image": "./b.png"})),
             upload(tmp_path, "a.png", b"png"), upload(tmp_path, "b.png", b"png")]
    items = read_batch(files)
    assert [(i.mention, i.image and Path(i.image).name, i.where) for i in items] == [
        ("Hopper", "a.png", "b.jsonl:1"), ("Moon", None, "b.jsonl:2"), ("Sun", "b.png", "b.jsonl:3")]
    assert all(i.image is None or i.image in files for i in items)


def test_a_folder_upload_prefers_the_longest_matching_path(tmp_path):
    root = tmp_path / "up"
    (root / "x").mkdir(parents=True)
    (root / "y").mkdir()
    (root / "x" / "p.png").write_bytes(b"1")
    (root / "y" / "p.png").write_bytes(b"2")
    (root / "c.jsonl").write_text(jsonl({"text": "A B", "mention": "B", "image": "y/p.png"}))
    items = read_batch([str(root / "c.jsonl"), str(root / "x" / "p.png"), str(root / "y" / "p.png")])
    assert items[0].image == str(root / "y" / "p.png")


@pytest.mark.parametrize("record, message", [
    ({"text": "A", "mention": "A", "image": "http://example.org/a.jpg"}, "is a URL"),
    ({"text": "A", "mention": "A", "image": "/etc/hostname"}, "does not read server paths"),
    ({"text": "A", "mention": "A", "image": "../../secret.png"}, "does not read server paths"),
    ({"text": "A", "mention": "A", "image": "missing.png"}, "was not uploaded"),
    ({"text": "A", "mention": "B"}, "b.jsonl:1"),
    ({"mention": "A"}, "b.jsonl:1"),
])
def test_batch_errors_name_the_line_and_the_fix(tmp_path, record, message):
    with pytest.raises(BatchError, match=message):
        read_batch([upload(tmp_path, "b.jsonl", jsonl(record))])


def test_server_paths_when_allowed(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"png")
    batch = upload(tmp_path, "b.jsonl", jsonl({"text": "A", "mention": "A", "image": str(photo)}))
    assert read_batch([batch], allow_server_paths=True)[0].image == str(photo)


@pytest.mark.parametrize("files, message", [
    ([], "no .jsonl file"),
    (["only.png"], "no .jsonl file"),
])
def test_a_batch_needs_a_jsonl(tmp_path, files, message):
    paths = [upload(tmp_path, f, b"x") for f in files]
    with pytest.raises(BatchError, match=message):
        read_batch(paths)


def test_empty_and_oversized_batches(tmp_path):
    with pytest.raises(BatchError, match="holds no items"):
        read_batch([upload(tmp_path, "e.jsonl", "\n")])
    big = upload(tmp_path, "big.jsonl", jsonl(*[{"text": f"A{i}", "mention": "A"} for i in range(5)]))
    with pytest.raises(BatchError, match="5 items, over this app's limit of 4"):
        read_batch([big], max_items=4)


def test_split_upload():
    jsonl_files, others = split_upload(["a.JSONL", "b.png", "", "c.ndjson"])
    assert [p.name for p in jsonl_files] == ["a.JSONL", "c.ndjson"] and others == ["b.png"]


def test_shipped_examples_have_images_and_are_distinct():
    from demo.config import AppConfig

    examples = shipped_examples(AppConfig().examples)
    assert len(examples) >= 40
    assert all(Path(e.image).is_file() and e.mention in e.text for e in examples)
    keys = [(e.image, e.text, e.mention) for e in examples]
    assert len(keys) == len(set(keys))
