"""The named endpoints ``/link`` and ``/correct`` through `gradio_client`, against a served app."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from conftest import served_demo

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CAPTION = "Hopper wrote the first compiler for the Navy."


@pytest.fixture(scope="module")
def served(tiny_linker, tmp_path_factory):
    """The app on 127.0.0.1 (tiny linker with a private pool, temp store), closed after the module."""
    with served_demo(tiny_linker, tmp_path_factory.mktemp("demo-api")) as (url, store):
        yield url, store


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[0], verbose=False, download_files=False)


def test_only_link_and_correct_are_public(client):
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert endpoints == {"/link", "/correct"}


def test_link(client, tiny_dir):
    from gradio_client import handle_file

    out = client.predict(handle_file(str(Path(tiny_dir) / "img.png")), CAPTION, "Hopper", api_name="/link")
    assert {"entity", "candidates", "demonstrations", "profile", "mapper", "timings"} <= set(out)
    assert out["entity"] == out["candidates"][0]["name"] and out["profile"] == "tiny"
    assert all({"name", "score", "llm_logprob", "retrieval_sim"} <= set(c) for c in out["candidates"])
    assert out["demonstrations"] and all("similarity" in d for d in out["demonstrations"])


def test_link_without_image(client):
    out = client.predict(None, CAPTION, "Navy", api_name="/link")
    assert out["candidates"]


def test_link_error_is_a_sentence(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Could not link: mention 'Turing' does not occur"):
        client.predict(None, CAPTION, "Turing", api_name="/link")


def test_link_matches_a_mention_typed_in_another_case(client):
    out = client.predict(None, "I love paris in spring", "Paris", api_name="/link")
    assert out["candidates"]


def test_link_suggests_the_caption_s_spelling_in_the_page_s_sentence(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(None, "Paris is not PARIS", "paris", api_name="/link")
    assert str(err.value) == ("Could not link: mention 'paris' does not occur in the caption as typed (case matters); "
                              "did you mean 'Paris'?")


def test_correct_stores_a_row(client, served, tiny_dir):
    from gradio_client import handle_file

    cid = client.predict(handle_file(str(Path(tiny_dir) / "img.png")), CAPTION, "Hopper", "Grace Hopper", "api-user",
                         api_name="/correct")
    assert isinstance(cid, int)
    con = sqlite3.connect(served[1].path)
    try:
        row = con.execute("SELECT annotator, decision, entity FROM corrections WHERE id = ?", (cid,)).fetchone()
    finally:
        con.close()
    assert row == ("api-user", "search", "Grace Hopper")
    # the very item is answered with the decision at once, marked as such
    out = client.predict(handle_file(str(Path(tiny_dir) / "img.png")), CAPTION, "Hopper", api_name="/link")
    assert (out["entity"], out["source"], out["corrected_by"]) == ("Grace Hopper", "correction", "api-user")
    # and it is a demonstration for another caption at once
    other = CAPTION.replace("Hopper", "Hopper, the admiral,", 1)
    out = client.predict(None, other, "Hopper", api_name="/link")
    assert any(d["source"] == "annotations" and d["entity"] == "Grace Hopper" for d in out["demonstrations"])


def test_correct_refuses_unknown_entities(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="'Atlantis' is not an entity of the knowledge base"):
        client.predict(None, CAPTION, "Navy", "Atlantis", "api-user", api_name="/correct")


# ---- faulty uploads: the handler checks the file, so the API gives the CLI's sentences ----------------------
def bad_file(folder: Path, kind: str) -> Path:
    """A file a person might upload by mistake: not an image, empty, or a 30k x 30k decompression bomb."""
    import struct
    import zlib

    from PIL import Image

    path = folder / {"not-image": "notes.png", "empty": "empty.jpg", "bomb": "bomb.png"}[kind]
    if kind == "not-image":
        path.write_text("these are my notes, not a picture")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        Image.new("RGB", (1, 1)).save(path)
        data = path.read_bytes()
        ihdr = struct.pack(">II", 30_000, 30_000) + data[24:29]
        path.write_bytes(data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:])
    return path


FAULTY = [("not-image", "image file 'notes.png' is not an image PIL can read"),
          ("empty", "image file 'empty.jpg' is empty"),
          ("bomb", "image file 'bomb.png' is too large to decode safely")]


@pytest.mark.parametrize("kind, sentence", FAULTY)
@pytest.mark.parametrize("endpoint", ["/link", "/correct"])
def test_faulty_uploads_get_the_cli_sentence(client, tmp_path, kind, sentence, endpoint):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    args = [handle_file(str(bad_file(tmp_path, kind))), CAPTION, "Hopper"]
    args += ["Grace Hopper", "api-user"] if endpoint == "/correct" else []
    with pytest.raises(AppError) as err:
        client.predict(*args, api_name=endpoint)
    message = str(err.value)
    assert sentence in message and message.startswith("Could not "), message
    assert "upstream Gradio app" not in message and "gradio" not in message.lower() and str(tmp_path) not in message


def test_the_cli_says_the_same_of_those_files(tmp_path, capsys):
    """The API's sentence is the CLI's (`gemel link --image`), the file named as its owner knows it."""
    from gemel.images import ImageError, load_image

    for kind, sentence in FAULTY:
        path = bad_file(tmp_path, kind)
        with pytest.raises(ImageError) as err:
            load_image(str(path))
        assert sentence.replace(f"'{path.name}'", repr(str(path))) in str(err.value)


def test_an_over_long_caption_is_a_named_input_error(client):
    from gradio_client.exceptions import AppError

    from gemel.linker import MAX_CAPTION_CHARS

    caption = "Hopper wrote the first compiler. " + "x" * 200_000
    with pytest.raises(AppError) as err:
        client.predict(None, caption, "Hopper", api_name="/link")
    assert str(err.value).startswith(f"Could not link: the caption is {len(caption):,} characters, over the limit "
                                     f"of {MAX_CAPTION_CHARS:,}"), str(err.value)
