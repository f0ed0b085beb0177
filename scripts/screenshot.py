"""Screenshots of GEMEL Studio for the README: the Link tab (and the Review tab) with a real linker.

Serves the demo app (`demo.app.build_app`) on a free 127.0.0.1 port with the linker of ``--profile`` and an
annotation store in a temporary folder, drives Debian's chromium headless through Playwright, links one shipped
photo on the Link tab and saves what the page shows. Nothing in the repository is written but the PNGs.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/screenshot.py                 # docs/img/ui_link.png, ui_review.png
    .venv/bin/python scripts/screenshot.py --out-dir /tmp/shots --profile offline --no-review

``ui_link.png``: the photo of Grace Hopper, the caption "Hopper wrote the first compiler for the Navy." with the
mention "Hopper" picked by clicking its highlighted span, the linked entity's card, the ranked candidates and the
demonstrations placed in the prompt. ``ui_review.png``: the Review tab after a one-item batch (a JSONL and its
photo) was uploaded and linked.

Needs ``/usr/bin/chromium`` (``bash scripts/ensure_chromium.sh`` installs Debian's); Playwright's own browser
download does not work offline. The first load of the offline linker takes about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
IMAGES = ROOT / "gemel" / "assets" / "images"
LINK_PHOTO = IMAGES / "grace_hopper.jpg"
LINK_CAPTION = "Hopper wrote the first compiler for the Navy."
LINK_MENTION = "Hopper"
REVIEW_ITEM = {"text": "Jordan rose over two defenders for the dunk in the final seconds.", "mention": "Jordan",
               "image": "basketball.jpg"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default="docs/img", help="folder for ui_link.png / ui_review.png (default: docs/img)")
    p.add_argument("--profile", default="offline", help="linker profile name or TOML path (default: offline)")
    p.add_argument("--width", type=int, default=1400, help="browser viewport width in CSS pixels (default: 1400)")
    p.add_argument("--max-kb", type=int, default=400,
                   help="above this size a PNG is saved with a 256-colour palette (default: 400)")
    p.add_argument("--no-review", action="store_true", help="only the Link tab")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for one model call (default: 300)")
    return p.parse_args(argv)


@contextlib.contextmanager
def served_app(linker, folder: Path):
    """The Gradio app on a free 127.0.0.1 port over ``linker`` and a store in ``folder``; yields the URL."""
    from demo.local import served

    with served(linker, folder) as (url, _store):
        yield url


def field(page, elem_id: str):
    """The text box inside the Gradio component ``#elem_id``."""
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def wait_images(page) -> None:
    """Until every <img> on the page has loaded (photo, thumbnails, gallery); lazy ones are made eager, since
    a full-page screenshot shows them too. A broken image only gives a warning after 20 s."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
    try:
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=20_000)
    except PlaywrightTimeout:
        pending = page.evaluate("Array.from(document.images).filter(i => !i.complete).map(i => i.src)")
        print(f"warning: {len(pending)} image(s) still loading: {pending[:3]}", file=sys.stderr)


def shoot(page, path: Path, bottom_selector: str, max_kb: int) -> None:
    """A screenshot from the page's top to the bottom of ``bottom_selector`` (plus a margin), full width;
    reduced to a 256-colour palette when the PNG is over ``max_kb``."""
    page.wait_for_timeout(500)  # let transitions and progress bars settle
    box = page.locator(bottom_selector).bounding_box()
    size = page.evaluate("({w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight})")
    height = min(size["h"], int(box["y"] + box["height"] + 12)) if box else size["h"]
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": size["w"], "height": height})
    if path.stat().st_size > max_kb * 1024:  # photos make a large PNG: 256 colours keep the text crisp
        from PIL import Image

        with Image.open(path) as im:
            small = im.convert("RGB").quantize(256)
        small.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def link_tab(page, url: str, out: Path, timeout_ms: float, max_kb: int) -> None:
    page.goto(url)
    page.locator("#link-button").wait_for()
    field(page, "annotator").fill("alice")
    page.locator("#link-image input[type=file]").set_input_files(str(LINK_PHOTO))
    caption = field(page, "link-caption")
    caption.click()
    caption.press_sequentially(LINK_CAPTION, delay=5)
    spans = page.locator("#link-spans")
    spans.get_by_text("Navy", exact=True).wait_for()  # suggestions are highlighted as one types
    spans.get_by_text(LINK_MENTION, exact=True).click()  # a click makes the span the mention
    page.wait_for_function("m => document.querySelector('#link-mention textarea, #link-mention input').value === m",
                           arg=LINK_MENTION)
    page.locator("#link-button").click()
    page.locator("#link-choice input[type=radio]").first.wait_for(timeout=timeout_ms)
    page.locator("#link-demos .gemel-demo").first.wait_for()
    page.locator("h1").click()  # no focus ring in the picture
    wait_images(page)
    shoot(page, out, "#link-demos", max_kb)


def review_tab(page, folder: Path, out: Path, timeout_ms: float, max_kb: int) -> None:
    batch = folder / "batch.jsonl"
    batch.write_text(json.dumps(REVIEW_ITEM) + "\n", encoding="utf-8")
    page.get_by_role("tab", name="Review").click()
    page.locator("#review-add").wait_for()
    page.locator("#review-files input[type=file]").set_input_files([str(batch), str(IMAGES / REVIEW_ITEM["image"])])
    page.locator("#review-files").get_by_text("batch.jsonl").first.wait_for()  # the upload is done
    page.locator("#review-add").click()
    page.locator("#review-choice input[type=radio]").first.wait_for(timeout=timeout_ms)
    page.locator("#review-image img").first.wait_for()
    page.locator("h1").click()
    wait_images(page)
    shoot(page, out, "#review-undo", max_kb)  # down to the Skip / Undo row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: run `bash scripts/ensure_chromium.sh` (installs Debian's chromium)",
              file=sys.stderr)
        return 1
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    from gemel.linker import Linker

    t0 = time.time()
    linker = Linker.load(args.profile)
    _ = linker.kb_pool  # built on first use: now, not during the first link (as demo.app.main does)
    print(f"linker {args.profile!r} ready in {time.time() - t0:.0f} s")
    timeout_ms = args.timeout * 1000
    with tempfile.TemporaryDirectory(prefix="gemel-screenshot-") as tmp, served_app(linker, Path(tmp)) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": args.width, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            link_tab(page, url, out_dir / "ui_link.png", timeout_ms, args.max_kb)
            if not args.no_review:
                review_tab(page, Path(tmp), out_dir / "ui_review.png", timeout_ms, args.max_kb)
            context.close()
        finally:
            browser.close()
    if errors:
        print("errors on the page:", *errors, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
