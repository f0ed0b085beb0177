"""The Gradio app of GEMEL Studio: Link, Review and Data tabs, and the ``/link`` and ``/correct`` API.

``build_app(linker, store)`` lays out the page and wires each control to a `demo.handlers.Studio` method;
nothing here touches the model or SQL. The linker and the store are built once by the caller (`main`, or a
test with a tiny linker) and shared by every visitor; Gradio's queue runs at most
``AppConfig.concurrency_limit`` model calls at once. Layout follows Gradio's Blocks guide: one ``gr.Blocks``,
tabs, rows and columns; page-wide script and CSS go to ``launch()`` (Gradio 6 moved ``head``/``css`` there).
"""

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from . import render
from .config import AppConfig, launch_kwargs, oauth_enabled, parse_auth
from .errors import user_facing
from .handlers import ItemView, LinkView, Studio, Upload
from .hub import HubPushConfig, start_hub_push
from .mentions import highlight_segments, resolve_mention
from .uploads import UploadedImage

log = logging.getLogger(__name__)

HEADER = """# {title}
Link a mention in a caption (and its photo) to a Wikipedia entity with **GEMEL**: a frozen vision encoder,
a feature mapper to visual prefix tokens of a frozen LLM, retrieved in-context demonstrations and
constrained decoding over the knowledge base's names. Every decision you save is stored and becomes a
demonstration at once, so the next similar query benefits.

**Keyboard** (when not typing in a box): <kbd>1</kbd>–<kbd>9</kbd> pick a candidate ·
<kbd>Enter</kbd> save the selected candidate · <kbd>n</kbd> not in the KB.
"""

COLORS = {"mention": "#ffd966", "suggestion": "#b4d2ff"}
PRIVATE = {"api_visibility": "private"}
LIGHT = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}


@user_facing("Could not link")
def linkable_mention(caption: str | None, mention: str | None) -> str:
    """The mention as the caption spells it (`demo.mentions.resolve_mention`), before the linker runs: the page
    and ``/link`` alike; a mention the caption does not hold is one ``gr.Error`` sentence with a suggestion."""
    return resolve_mention(caption or "", mention or "")


def _login(request: gr.Request | None, profile: gr.OAuthProfile | None) -> str | None:
    """The logged-in user: Hugging Face OAuth first, then the app's own ``--auth`` login."""
    if profile is not None:
        return profile.username
    return getattr(request, "username", None) if request is not None else None


# ---------------------------------------------------------------------------------------------- layout
class Controls:
    """The correction controls shared by the Link and Review tabs (elem classes drive the shortcuts)."""

    def __init__(self, tab: str) -> None:
        self.choice = gr.Radio(label="Candidates — press 1–9 to pick", choices=[], elem_id=f"{tab}-choice",
                               elem_classes=["gemel-cand-radio"])
        self.bars = gr.HTML()
        with gr.Row():
            self.save = gr.Button("✓ Save selected (Enter)", variant="primary", elem_id=f"{tab}-accept",
                                  elem_classes=["gemel-accept"])
            self.nil = gr.Button("Not in the KB (n)", elem_id=f"{tab}-nil", elem_classes=["gemel-nil"])
            self.more = gr.Button("Need more context", elem_id=f"{tab}-more")
        with gr.Row(equal_height=True):
            self.search = gr.Dropdown(label="…or search the KB by name", choices=[], value=None,
                                      allow_custom_value=True, filterable=True, scale=4, elem_id=f"{tab}-search")
            self.use = gr.Button("Use this entity", scale=1, elem_id=f"{tab}-use")
        self.comment = gr.Textbox(label="Comment (optional)", lines=1, elem_id=f"{tab}-comment")
        self.status = gr.HTML(elem_id=f"{tab}-status")

    def actions(self) -> list[tuple[gr.Button, str]]:
        return [(self.save, "save"), (self.nil, "nil"), (self.more, "more_context"), (self.use, "search")]


def _examples_gallery(studio: Studio) -> gr.Gallery:
    items = [(ex.image, f"{ex.mention} — {ex.text}") for ex in studio.examples]
    return gr.Gallery(value=items, columns=6, height=240, allow_preview=False, show_label=False,
                      object_fit="cover", elem_id="examples")


def build_app(linker: Any, store: Any, config: AppConfig | None = None) -> gr.Blocks:
    """The app over one loaded linker and one open store (both shared by all sessions)."""
    config = config or AppConfig()
    studio = Studio(linker, store, config)
    studio.load_corrections()
    with gr.Blocks(title=config.title, analytics_enabled=False) as app:
        gr.Markdown(HEADER.format(title=render.esc(config.title)))
        _serving_line(studio)
        with gr.Row(equal_height=True):
            annotator = gr.Textbox(label="Annotator", placeholder="your name (remembered in this browser)",
                                   scale=4, elem_id="annotator")
            if oauth_enabled():
                gr.LoginButton(scale=1)
        saved_name = gr.BrowserState("", storage_key="gemel-studio-annotator")
        with gr.Tabs():
            with gr.Tab("Link", id="link"):
                _link_tab(studio, annotator)
            with gr.Tab("Review", id="review") as review_tab:
                _review_tab(studio, annotator, review_tab)
            with gr.Tab("Data", id="data") as data_tab:
                _data_tab(studio, data_tab)
        _api(studio)
        _remember_name(app, annotator, saved_name)
    app.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue_size)
    app.studio = studio  # type: ignore[attr-defined]  # for launch() and tests
    return app


def _serving_line(studio: Studio) -> None:
    """Which profile and image scorer answer, and a switch to the `hub` profile under way (`demo.space`),
    refreshed every few seconds while one runs."""
    from .space import header_note

    def line() -> str:
        return f'<div class="gemel-meta" id="serving-line">{render.esc(header_note(studio))}</div>'

    html = gr.HTML(line(), elem_id="serving")
    timer = gr.Timer(5.0, active=True)
    timer.tick(lambda: (line(), gr.Timer(active=getattr(studio, "hub_upgrade", None) is not None
                                         and not studio.hub_upgrade.switched)), None, [html, timer], **LIGHT)


def _remember_name(app: gr.Blocks, annotator: gr.Textbox, saved_name: gr.BrowserState) -> None:
    def restore(saved: str, request: gr.Request, profile: gr.OAuthProfile | None) -> Any:
        login = _login(request, profile)
        if login:
            return gr.update(value=login, interactive=False, info="signed in")
        return saved if saved else gr.update()  # nothing saved: keep what may already be typed

    app.load(restore, [saved_name], [annotator], **LIGHT)
    annotator.change(lambda name: name, [annotator], [saved_name], **LIGHT)


# ---------------------------------------------------------------------------------------------- Link tab
def _link_tab(studio: Studio, annotator: gr.Textbox) -> None:
    query = gr.State(None)
    example = gr.State(None)  # the shipped example that filled the form, if any
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            image = UploadedImage(label="Photo (optional)", type="filepath", image_mode=None,
                                  sources=["upload", "clipboard"], height=250, elem_id="link-image")
            caption = gr.Textbox(label="Caption", lines=2, elem_id="link-caption",
                                 placeholder="the sentence the mention occurs in")
            spans = gr.HighlightedText(label="Click a highlighted span to make it the mention", color_map=COLORS,
                                       show_legend=False, show_inline_category=False, interactive=False,
                                       elem_id="link-spans")
            mention = gr.Textbox(label="Mention", placeholder="words of the caption to link", elem_id="link-mention")
            hint = gr.HTML(elem_id="link-mention-hint")  # the caption's spelling taken, or a suggestion
            link_btn = gr.Button("Link", variant="primary", elem_id="link-button")
            with gr.Accordion("Examples — click one to fill the form", open=True):
                gallery = _examples_gallery(studio)
        with gr.Column(scale=6):
            meta = gr.HTML(elem_id="link-meta")
            card = gr.HTML(elem_id="link-card")
            controls = Controls("link")
            undo = gr.Button("Undo my last decision", size="sm", elem_id="link-undo")
    with gr.Accordion("Demonstrations placed in the prompt (most similar first)", open=True):
        demos = gr.HTML(elem_id="link-demos")

    def on_text(text: str, men: str) -> list:
        return highlight_segments(text or "", men or "")

    def on_span(text: str, men: str, evt: gr.SelectData) -> tuple:
        picked = _span_value(evt, highlight_segments(text or "", men or ""))
        new = picked or men
        return new, highlight_segments(text or "", new or "")

    def on_example(evt: gr.SelectData) -> tuple:
        ex = studio.examples[evt.index]
        picked = {"id": ex.id, "text": ex.text, "mention": ex.mention}
        return ex.image, ex.text, ex.mention, highlight_segments(ex.text, ex.mention), picked

    def on_link(img: Upload | None, text: str, men: str, picked: dict | None) -> tuple:
        return link_outputs(studio, img, text, men, picked)

    # `.change`, not `.input`: Gradio's textbox sends "input" on a keypress only, and a paste (Ctrl+V), a cut
    # or a Backspace presses none; "change" follows the value however it changed
    caption.change(on_text, [caption, mention], [spans], trigger_mode="always_last", **LIGHT)
    mention.change(on_text, [caption, mention], [spans], trigger_mode="always_last", **LIGHT)
    spans.select(on_span, [caption, mention], [mention, spans], **LIGHT)
    gallery.select(on_example, None, [image, caption, mention, spans, example], **PRIVATE)
    outputs = [query, meta, card, controls.choice, controls.bars, demos, controls.status, mention, hint]
    link_btn.click(on_link, [image, caption, mention, example], outputs, concurrency_id="model", **PRIVATE)
    mention.submit(on_link, [image, caption, mention, example], outputs, concurrency_id="model", **PRIVATE)
    _wire_search(studio, controls)

    for button, action in controls.actions():
        button.click(_link_decision(studio, action), [query, annotator, controls.choice, controls.search,
                                                      controls.comment], [controls.status, controls.comment],
                     concurrency_id="model", **PRIVATE)

    def on_undo(name: str, request: gr.Request, profile: gr.OAuthProfile | None) -> str:
        return render.status_html(studio.undo_last(name, _login(request, profile)))

    undo.click(on_undo, [annotator], [controls.status], **PRIVATE)


def link_outputs(studio: Studio, img: Upload | None, text: str, men: str, picked: dict | None) -> tuple:
    """The Link button's outputs (query, meta, card, choices, bars, demos, status, mention, hint). The mention is
    first matched to the caption's spelling (the box takes it, the hint under it says so). A mention the caption
    does not hold leaves every output as it was but the hint, which gets the one sentence with its suggestion,
    next to the box it is about: a raised error would put a red "Error" badge on each of the nine outputs."""
    try:
        typed, men = men, linkable_mention(text, men)
    except gr.Error as e:
        return (*[gr.skip()] * 8, render.status_html(e.message, "error"))
    same = picked is not None and (picked["text"], picked["mention"]) == (text, men)
    v: LinkView = studio.link(img, text, men, exclude=[picked["id"]] if same else [])
    note = "" if men == typed else f"Linked {men!r}, the caption's spelling of {typed!r}."
    return (v.query, v.meta, v.card, gr.update(choices=v.choices, value=v.selected), v.bars, v.demos, "",
            men if men != typed else gr.skip(), render.status_html(note))


def _span_value(evt: gr.SelectData, segments: Sequence[tuple[str, str | None]]) -> str | None:
    """The clicked span's text, whether Gradio sends the segment's index or its (text, label) value."""
    value = evt.value
    if isinstance(value, (list, tuple)) and value:
        return str(value[0]) if len(value) < 2 or value[1] is not None else None
    if isinstance(value, dict) and "token" in value:
        return str(value["token"])
    index = evt.index if isinstance(evt.index, int) else None
    if index is not None and 0 <= index < len(segments) and segments[index][1] is not None:
        return segments[index][0]
    return None


def _link_decision(studio: Studio, action: str) -> Any:
    def decide(query: dict | None, name: str, choice: str | None, searched: str | None, comment: str,
               request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        pick = searched if action == "search" else choice
        message = studio.correct(query, name, action, pick, comment, login=_login(request, profile))
        return render.status_html(message), ""

    return decide


def _wire_search(studio: Studio, controls: Controls) -> None:
    def on_key(data: gr.KeyUpData) -> Any:
        return gr.update(choices=studio.search_kb(data.input_value))

    controls.search.key_up(on_key, None, [controls.search], **LIGHT)


# ---------------------------------------------------------------------------------------------- Review tab
def _review_tab(studio: Studio, annotator: gr.Textbox, tab: gr.Tab) -> None:
    item = gr.State(None)
    gr.Markdown("Add a batch: a JSONL file (one `{\"text\", \"mention\", \"image\"}` object per line, `image` "
                "relative to the file) with its images, or a folder holding both. Each item is linked when it "
                "is added, and your queue serves the least certain item first.")
    with gr.Row():
        files = gr.File(label="JSONL batch + its images", file_count="multiple", elem_id="review-files")
        folder = gr.File(label="…or a folder (captions JSONL + images)", file_count="directory",
                         elem_id="review-folder")
    server_path = gr.Textbox(label="…or a JSONL path on this server", visible=studio.config.allow_server_paths)
    add = gr.Button("Add to the queue", elem_id="review-add")
    added = gr.HTML(elem_id="review-added")
    progress = gr.HTML(elem_id="review-progress")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            image = gr.Image(label="Photo", type="filepath", interactive=False, height=250, elem_id="review-image")
            caption = gr.HTML(elem_id="review-caption")
            card = gr.HTML(elem_id="review-card")
        with gr.Column(scale=6):
            meta = gr.HTML(elem_id="review-meta")
            controls = Controls("review")
            with gr.Row():
                skip = gr.Button("Skip", size="sm", elem_id="review-skip")
                undo = gr.Button("Undo my last decision", size="sm", elem_id="review-undo")
    with gr.Accordion("Demonstrations placed in the prompt (most similar first)", open=False,
                      elem_id="review-demos-accordion"):
        demos = gr.HTML(elem_id="review-demos")
    view_outputs = [item, image, caption, card, controls.choice, controls.bars, progress, controls.status,
                    controls.comment, meta, demos]

    def show(v: ItemView) -> tuple:
        return (v.item, v.image, v.caption, v.card, gr.update(choices=v.choices, value=v.selected), v.bars,
                v.progress, render.status_html(v.message), "", v.meta, v.demos)

    def on_show(name: str, request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        return show(studio.next_item(name, _login(request, profile)))

    def on_add(uploaded: list | None, tree: list | None, path: str) -> str:
        return render.status_html(studio.enqueue(list(uploaded or []) + list(tree or []), path))

    def on_skip(name: str, current: dict | None, request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        return show(studio.skip(name, current, _login(request, profile)))

    def on_undo(name: str, request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        login = _login(request, profile)
        return show(studio.next_item(name, login, message=studio.undo_last(name, login)))

    tab.select(on_show, [annotator], view_outputs, **PRIVATE)
    add.click(on_add, [files, folder, server_path], [added], concurrency_id="model", **PRIVATE).then(
        on_show, [annotator], view_outputs, **PRIVATE)
    skip.click(on_skip, [annotator, item], view_outputs, **PRIVATE)
    undo.click(on_undo, [annotator], view_outputs, **PRIVATE)
    _wire_search(studio, controls)
    for button, action in controls.actions():
        button.click(_review_decision(studio, action, show), [item, annotator, controls.choice, controls.search,
                                                              controls.comment], view_outputs,
                     concurrency_id="model", **PRIVATE)


def _review_decision(studio: Studio, action: str, show: Any) -> Any:
    def decide(current: dict | None, name: str, choice: str | None, searched: str | None, comment: str,
               request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        pick = searched if action == "search" else choice
        return show(studio.decide_item(current, name, action, pick, comment, login=_login(request, profile)))

    return decide


# ---------------------------------------------------------------------------------------------- Data tab
def _data_tab(studio: Studio, tab: gr.Tab) -> None:
    refresh = gr.Button("Refresh", size="sm", elem_id="data-refresh")
    totals = gr.HTML(elem_id="data-totals")
    counts = gr.HTML(elem_id="data-counts")
    agreement = gr.HTML(elem_id="data-agreement")
    plot = gr.Image(label="Corrections per day · model accuracy by mapper version", type="filepath",
                    interactive=False, elem_id="data-plot")
    gr.Markdown("Export the current decisions (one per input and annotator); the zip adds their images.")
    with gr.Row():
        as_jsonl = gr.Button("Export JSONL", elem_id="export-jsonl")
        as_parquet = gr.Button("Export Parquet", elem_id="export-parquet")
    exported = gr.File(label="Download", file_count="multiple", interactive=False, elem_id="export-files")
    export_status = gr.HTML()
    _retrain_controls(studio, tab)

    def on_stats() -> tuple:
        v = studio.stats()
        return v.totals, v.counts, v.agreement, v.plot

    def exporter(fmt: str) -> Any:
        def run() -> tuple:
            files, message = studio.export(fmt)
            return files, render.status_html(message)

        return run

    for trigger in (tab.select, refresh.click):
        trigger(on_stats, None, [totals, counts, agreement, plot], **PRIVATE)
    as_jsonl.click(exporter("jsonl"), None, [exported, export_status], **PRIVATE)
    as_parquet.click(exporter("parquet"), None, [exported, export_status], **PRIVATE)


def _retrain_controls(studio: Studio, tab: gr.Tab) -> None:
    """Re-train from corrections: start the background job, poll its progress while it runs."""
    what = ("Refit the learned ranker on the decisions (one link per decision); the new one is used only if it does no "
            "worse on held-out decisions and on the shipped test split.")
    gr.Markdown(what)
    start = gr.Button("Re-train from corrections", elem_id="retrain-start")
    progress = gr.HTML(elem_id="retrain-progress")
    result = gr.HTML(elem_id="retrain-result")
    timer = gr.Timer(1.0, active=False)

    def show(v: Any) -> tuple:
        return v.progress, v.result, gr.Timer(active=v.running)

    start.click(lambda: show(studio.retrain.start()), None, [progress, result, timer], **PRIVATE)
    for trigger in (tab.select, timer.tick):  # a job started in another session shows here too
        trigger(lambda: show(studio.retrain.view()), None, [progress, result, timer], **LIGHT)


# ---------------------------------------------------------------------------------------------- API
def _api(studio: Studio) -> None:
    """``/link`` and ``/correct`` for ``gradio_client``, on hidden components; the image is checked by the
    handler (`UploadedImage`), so a bad file gets the same sentence as in the CLI and the page."""
    with gr.Column(visible=False):
        image = UploadedImage(type="filepath", image_mode=None, label="image")
        caption = gr.Textbox(label="caption")
        mention = gr.Textbox(label="mention")
        entity = gr.Textbox(label="entity")
        annotator = gr.Textbox(label="annotator")
        prediction = gr.JSON(label="prediction")
        correction_id = gr.Number(label="correction id", precision=0)
        link_btn = gr.Button()
        correct_btn = gr.Button()

    def link(image: Upload | None, caption: str, mention: str) -> dict:
        """Link `mention` in `caption` (and the image); returns entity, candidates, demonstrations, timings."""
        return studio.api_link(image, caption, linkable_mention(caption, mention))

    def correct(image: Upload | None, caption: str, mention: str, entity: str, annotator: str,
                request: gr.Request, profile: gr.OAuthProfile | None) -> int:
        """Store that `mention` refers to `entity` (empty: not in the KB); returns the correction id."""
        return studio.api_correct(image, caption, mention, entity, annotator, _login(request, profile))

    link_btn.click(link, [image, caption, mention], [prediction], api_name="link", concurrency_id="model")
    correct_btn.click(correct, [image, caption, mention, entity, annotator], [correction_id], api_name="correct",
                      concurrency_id="model")


# ---------------------------------------------------------------------------------------------- entry points
def launch(app: gr.Blocks, auth: list[tuple[str, str]] | None = None, **overrides: Any) -> Any:
    """``app.launch`` with the demo's settings (`demo.config.launch_kwargs`); ``overrides`` win."""
    studio: Studio = app.studio  # type: ignore[attr-defined]
    images = studio.store.images_dir
    kwargs = launch_kwargs(studio.config, auth, extra_paths=(str(images),) if images else ())
    return app.launch(**{**kwargs, **overrides})


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo", description="Serve GEMEL Studio (Gradio).")
    p.add_argument("--profile", default=os.environ.get("GEMEL_PROFILE", "offline"),
                   help="linker profile name or TOML path (env GEMEL_PROFILE; default: offline)")
    p.add_argument("--db", default=None, help="annotation database (default: $GEMEL_DB, /data/gemel.db on a "
                                              "Space with storage, else ./data/gemel.db)")
    p.add_argument("--auth", default=os.environ.get("GEMEL_AUTH"),
                   help="require a login: user:password[,user2:password2] (env GEMEL_AUTH)")
    p.add_argument("--allow-server-paths", action="store_true",
                   help="let review batches name image paths on this machine (local use only)")
    p.add_argument("--work-dir", default=None, help="folder for exports and plots (default: a temp folder)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, on_ready: Callable[[gr.Blocks], Any] | None = None) -> None:
    """Load the linker once, open the store, start the optional hub push, serve the app; ``on_ready(app)`` before
    serving (`demo.space`'s switch to the `hub` profile, once the app exists)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from annotations import Store
    from gemel.linker import Linker

    auth = parse_auth(args.auth)
    linker = Linker.load(args.profile)
    kb_demos = linker.kb_pool  # built on first use (embeds the KB's sentences once): now, not in the first visit
    log.info("linker ready: %d entities, %d KB demonstrations", len(linker.kb), len(kb_demos) if kb_demos else 0)
    store = Store.open(args.db, entity_exists=linker.kb.__contains__)
    log.info("annotations in %s", store.path)
    app = build_app(linker, store, AppConfig(allow_server_paths=args.allow_server_paths, work_dir=args.work_dir))
    hub = HubPushConfig.from_env()
    if hub is not None:
        try:
            start_hub_push(store, hub, app.studio.work_dir / "hub-export")  # type: ignore[attr-defined]
            log.info("pushing exported corrections to the dataset %s every %.0f min", hub.repo_id, hub.every_minutes)
        except Exception as e:  # the app must serve even when the hub cannot be reached
            log.error("not pushing corrections to %s: %s", hub.repo_id, e)
    if on_ready is not None:
        on_ready(app)
    launch(app, auth)


__all__ = ["build_app", "launch", "main"]
