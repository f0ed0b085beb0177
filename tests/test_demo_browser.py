"""End to end in a real browser (Debian's chromium, headless, driven by Playwright): upload a photo, type a
caption, pick the mention by clicking a highlighted span, link, pick a candidate with the keyboard, save, and
find the row in SQLite; then the annotator name survives a reload and the Data tab counts the decision.

Screenshots go to the test's tmp folder (``link.png``, ``data.png``). CI installs chromium
(``apt-get install chromium``); without it this test fails and says so.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from conftest import served_demo

from demo.batch import shipped_examples
from demo.config import AppConfig

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "assets" / "images" / "grace_hopper.jpg"
CAPTION = "Hopper wrote the first compiler for the Navy."

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tiny_linker, tmp_path_factory):
    """The app on 127.0.0.1 (tiny linker with a private pool, temp store), closed after the module."""
    with served_demo(tiny_linker, tmp_path_factory.mktemp("demo-browser")) as (url, store):
        yield url, Path(store.path)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (CI installs it); "
                    "Playwright's own browser download does not work offline")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def field(page, elem_id: str):
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT annotator, decision, entity, model_entity, comment FROM corrections "
                           "ORDER BY id").fetchall()
    finally:
        con.close()


def test_link_pick_save_in_a_browser(served, browser, tmp_path):
    url, db = served
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.locator("#link-button").wait_for()

    field(page, "annotator").fill("alice")
    page.locator("#link-image input[type=file]").set_input_files(str(PHOTO))
    caption = field(page, "link-caption")
    caption.click()
    caption.press_sequentially(CAPTION, delay=5)
    spans = page.locator("#link-spans")
    spans.get_by_text("Navy", exact=True).wait_for()  # suggestions are highlighted as one types
    spans.get_by_text("Hopper", exact=True).click()  # a click makes the span the mention
    page.wait_for_function("document.querySelector('#link-mention textarea, #link-mention input').value === 'Hopper'")

    page.locator("#link-button").click()
    radios = page.locator("#link-choice input[type=radio]")
    radios.first.wait_for()
    names = [radios.nth(i).get_attribute("value") for i in range(radios.count())]
    assert len(names) >= 2
    assert page.locator("#link-card").inner_text().startswith(names[0])  # the card shows the linked entity
    assert "profile tiny" in page.locator("#link-meta").inner_text()
    why = page.locator("#link-meta .gemel-why").inner_text()
    assert f"{names[0]} over {names[1]}" in why and "because" in why  # the why, in words
    assert page.locator("#link-demos .gemel-demo").count() >= 1

    # typing in a text box must not trigger the shortcuts ("n" would be "not in the KB")
    field(page, "link-comment").fill("")
    field(page, "link-comment").press_sequentially("nice 2", delay=5)
    page.locator("h1").click()  # focus leaves the text box
    page.keyboard.press("2")  # pick the second candidate
    page.wait_for_function("document.querySelectorAll('#link-choice input[type=radio]')[1].checked")
    page.keyboard.press("Enter")  # save it
    try:
        page.locator("#link-status").get_by_text("Saved #").wait_for()
    finally:
        page.screenshot(path=str(tmp_path / "link.png"), full_page=True)  # also when the save failed

    assert rows(db) == [("alice", "candidate", names[1], names[0], "nice 2")]
    said = page.locator("#link-status").inner_text()
    assert f"From now on this caption, mention and picture answer {names[1]}" in said and "Undo" in said
    page.locator("#link-button").click()  # the same item again: memory answers, labelled as memory
    page.locator("#link-meta .gemel-memory").get_by_text("answered from memory").wait_for()
    assert page.locator("#link-meta .gemel-why").inner_text().startswith(f"{names[0]} over")  # the model's own

    page.reload()  # the annotator's name is remembered by the browser
    page.locator("#link-button").wait_for()
    page.wait_for_function("document.querySelector('#annotator textarea, #annotator input').value === 'alice'")

    first = shipped_examples(AppConfig().examples)[0]
    page.locator("#examples img").first.click()  # a shipped example fills the form
    page.wait_for_function("t => document.querySelector('#link-caption textarea').value === t", arg=first.text)
    assert field(page, "link-mention").input_value() == first.mention

    page.get_by_role("tab", name="Data").click()
    page.locator("#data-counts table").wait_for()
    assert "alice" in page.locator("#data-counts").inner_text()
    page.locator("#data-plot img").wait_for()
    page.screenshot(path=str(tmp_path / "data.png"), full_page=True)
    assert not errors, errors
    context.close()


def open_link_tab(browser, **context_args):
    """A fresh page on the Link tab, with page errors collected (the context is closed by the caller)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **context_args)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, errors


def test_a_pasted_caption_is_highlighted_at_once(served, browser):
    """Ctrl+V fires no keypress: the suggestions must follow the caption's value, not the keys typed."""
    url, _ = served
    context, page, errors = open_link_tab(browser, permissions=["clipboard-read", "clipboard-write"])
    page.goto(url)
    page.locator("#link-button").wait_for()
    caption = field(page, "link-caption")
    caption.click()
    page.evaluate("t => navigator.clipboard.writeText(t)", CAPTION)
    page.keyboard.press("ControlOrMeta+V")
    page.wait_for_function("t => document.querySelector('#link-caption textarea').value === t", arg=CAPTION)
    spans = page.locator("#link-spans")
    spans.get_by_text("Navy", exact=True).wait_for(timeout=10_000)  # no other key pressed
    assert spans.get_by_text("Hopper", exact=True).count() == 1
    caption.fill("")  # any change of the value (here: emptied) redraws the highlights too
    spans.get_by_text("Navy", exact=True).wait_for(state="detached", timeout=10_000)
    assert not errors, errors
    context.close()


def error_badges(page) -> int:
    """Gradio's red "Error" badges over components, plus error toasts."""
    return page.locator("span.error:visible, .toast-body.error:visible").count()


def test_a_mention_typed_in_another_case_is_matched_or_suggested(served, browser, tmp_path):
    url, _ = served
    context, page, errors = open_link_tab(browser)
    page.goto(url)
    page.locator("#link-button").wait_for()
    hint = page.locator("#link-mention-hint")

    field(page, "link-caption").fill("I love paris in spring")
    field(page, "link-mention").fill("Paris")  # one span of the caption ignoring case: linked as the caption spells it
    page.locator("#link-button").click()
    page.locator("#link-choice input[type=radio]").first.wait_for()
    page.wait_for_function("document.querySelector('#link-mention textarea, #link-mention input').value === 'paris'")
    hint.get_by_text("Linked 'paris', the caption's spelling of 'Paris'.").wait_for()
    assert error_badges(page) == 0

    field(page, "link-caption").fill("Paris is not PARIS")
    field(page, "link-mention").fill("paris")  # two spellings ignoring case: one suggestion, nothing linked
    page.locator("#link-button").click()
    hint.get_by_text("did you mean 'Paris'?").wait_for()
    page.wait_for_timeout(500)  # an error badge or toast would have come with the message
    try:
        assert error_badges(page) == 0
        assert page.get_by_text("did you mean").count() == 1  # one message on the page
    finally:
        page.screenshot(path=str(tmp_path / "mention-case.png"), full_page=True)
    assert not errors, errors
    context.close()


def test_review_shows_the_why_and_demonstrations_and_undo_restores_the_api(served, browser, tmp_path):
    """Review = Link's why: an item shows the why, the picture line and the demonstrations; Enter saves it, the
    API then answers from memory, and one Undo takes that back (the API answers with the model again)."""
    import json

    from gradio_client import Client, handle_file

    url, _ = served
    photo = ROOT / "gemel" / "assets" / "images" / "grace_hopper.jpg"
    batch = tmp_path / "batch.jsonl"
    item = {"text": "Hopper led the team that built the A-0 compiler.", "mention": "Hopper", "image": photo.name}
    batch.write_text(json.dumps(item) + "\n")
    context, page, errors = open_link_tab(browser)
    page.goto(url)
    page.locator("#link-button").wait_for()
    field(page, "annotator").fill("rita")
    page.get_by_role("tab", name="Review").click()
    page.locator("#review-add").wait_for()  # the tab is drawn: its upload box takes files
    page.locator("#review-progress").wait_for(state="attached")
    page.locator("#review-files input[type=file]").set_input_files([str(batch), str(photo)])
    page.locator("#review-files").get_by_text("batch.jsonl").first.wait_for(timeout=40_000)
    page.locator("#review-add").click()
    page.locator("#review-meta .gemel-why").wait_for()
    assert "because" in page.locator("#review-meta .gemel-why").inner_text()
    page.locator("#review-demos-accordion").get_by_text("Demonstrations placed in the prompt").click()
    page.locator("#review-demos .gemel-demo").first.wait_for()
    client = Client(url, verbose=False)
    before = client.predict(handle_file(str(photo)), item["text"], item["mention"], api_name="/link")
    assert before["source"] == "model"
    page.locator("h1").click()
    page.keyboard.press("Enter")  # accept the shown answer, as a slip of the finger would
    page.locator("#review-status").get_by_text("From now on this caption").wait_for()
    saved = client.predict(handle_file(str(photo)), item["text"], item["mention"], api_name="/link")
    assert saved["source"] == "correction" and saved["entity"] == before["entity"]
    page.locator("#review-undo").click()
    page.locator("#review-status").get_by_text("Undid your last decision").wait_for()
    after = client.predict(handle_file(str(photo)), item["text"], item["mention"], api_name="/link")
    assert after["source"] == "model"
    assert not errors, errors
    context.close()
