"""What the demo's buttons do, without Gradio components: `Studio` joins one `gemel.Linker` and one
`annotations.Store`, and returns plain views (HTML strings, choices, paths) that `demo.app` lays out.

The annotation loop is human-in-the-loop entity linking: the linker answers, a person accepts or corrects,
the correction is stored *and* added to the linker's demonstration pool at once, so the next query that
resembles it retrieves it as an in-context example (GEMEL's demonstrations are retrieved by mention
similarity, Shi et al. 2024, Sec. 3.3). Review batches are linked when they are enqueued, so the queue can
serve the least certain item first (margin sampling, see `annotations.queue`).

Errors of the model library and of the store are turned into `gr.Error` once, here, with a sentence a
person understands; anything unexpected is logged with its traceback and shown as a short sentence.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from annotations import export_jsonl, export_parquet
from annotations.loop import CorrectionLoop
from gemel.data.plots import mapper_scores, plot_corrections
from gemel.errors import InputError
from gemel.images import ImageError, load_image

from . import render
from .batch import BatchError, read_batch, shipped_examples
from .config import AppConfig
from .errors import StudioError, user_facing
from .retrain_job import RetrainJob
from .wording import count, was_were

log = logging.getLogger(__name__)

ACTIONS = ("save", "search", "nil", "more_context")
EXPORT_FORMATS = ("jsonl", "parquet")


class DecisionError(StudioError):
    """A correction cannot be made as asked (no name, no linked query, unknown entity ...)."""


def annotator_name(typed: str | None, login: str | None = None) -> str:
    """Who makes the decision: the logged-in user (Hugging Face OAuth on a Space, or the app's ``--auth``)
    when there is one, else the name typed in the page; a logged-in person cannot record under another name."""
    for name in (login, typed):
        if name and name.strip():
            return name.strip()
    raise DecisionError("type your name in the Annotator box at the top first (this browser remembers it)")


def decision_for(action: str, choice: str | None, model_entity: str | None,
                 candidate_names: Sequence[str]) -> tuple[str, str | None]:
    """(store decision, entity) for a button press: ``save`` keeps the selected candidate (``accept`` when
    it is the model's answer; with nothing selected, the model's answer, NIL included), ``search`` takes an
    entity found by name, ``nil`` and ``more_context`` carry no entity."""
    if action in ("nil", "more_context"):
        return action, None
    if action not in ACTIONS:
        raise DecisionError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    if not choice:
        if action == "search":
            raise DecisionError("type a name in the KB search box and pick an entity first")
        return ("nil", None) if model_entity is None else ("accept", model_entity)
    if choice == model_entity:
        return "accept", choice
    return ("candidate" if choice in candidate_names else "search"), choice


@dataclass(frozen=True)
class Upload:
    """A file a person uploaded: where the server keeps it (Gradio's cache folder) and the name they uploaded
    it under, which is what messages about it say (`demo.uploads.UploadedImage` makes these)."""

    path: str
    name: str


ImageArg = str | Upload | None  # an upload, a path on the server (shipped examples, tests), or no image


def upload_path(image: ImageArg) -> tuple[str | None, str | None]:
    """(path on the server, name its owner knows it by: None for a plain path) of an image argument."""
    if not image:
        return None, None
    return (image.path, image.name) if isinstance(image, Upload) else (str(image), None)


@contextlib.contextmanager
def named_upload(image: ImageArg) -> Iterator[str | None]:
    """The image's server path, for the block's checks; an `ImageError` raised in the block names an upload by
    its upload name instead of Gradio's temporary path (the sentence is otherwise the CLI's)."""
    path, name = upload_path(image)
    try:
        yield path
    except ImageError as e:
        if path is None or name is None:
            raise
        raise ImageError(_renamed(str(e), path, name)) from e


def checked_image(image: ImageArg) -> str | None:
    """The server path of an image argument once `gemel.images.load_image` has accepted the file (existence,
    size, pixel cap before decoding, a readable format), as the linker would; None without an image."""
    with named_upload(image) as path:
        if path is not None:
            load_image(path)
        return path


def _renamed(message: str, path: str, name: str) -> str:
    """``message`` with the server path of a file replaced by the name its owner knows it by."""
    return message.replace(repr(path), repr(name)).replace(path, name)


@dataclass(frozen=True)
class LinkView:
    query: dict[str, Any]  # text, mention, image (path or None), prediction (Prediction.to_dict())
    card: str
    bars: str
    demos: str
    meta: str
    choices: list[tuple[str, str]]  # (label "1. Title", value "Title")
    selected: str | None


@dataclass(frozen=True)
class ItemView:
    item: dict[str, Any] | None  # the queue item shown, None when the queue is empty
    image: str | None
    caption: str
    card: str
    bars: str
    choices: list[tuple[str, str]]
    selected: str | None
    progress: str
    message: str
    meta: str = ""  # why the answer, and how the picture took part (as on the Link tab)
    demos: str = ""  # the demonstrations placed in the prompt


@dataclass(frozen=True)
class StatsView:
    counts: str
    agreement: str
    totals: str
    plot: str  # PNG path


@dataclass
class Studio:
    """The demo's state: one linker and one store, shared by every session (models load once)."""

    linker: Any  # gemel.linker.Linker
    store: Any  # annotations.Store
    config: AppConfig = field(default_factory=AppConfig)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()  # the linker's pools are not thread-safe
        self.loop = CorrectionLoop(self.store, self.linker, self.lock)  # decisions -> demonstrations
        self.work_dir = Path(self.config.work_dir or tempfile.mkdtemp(prefix="gemel-studio-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.examples = shipped_examples(self.config.examples)
        self.retrain = RetrainJob(self)  # "Re-train from corrections" (Data tab), one background job at a time
        self.retrain.restore()  # after a restart: the last accepted re-trained mapper serves again

    @property
    def kb(self) -> Any:
        return self.linker.kb

    def swap_linker(self, change: Callable[[Any], Any]) -> Any:
        """Serve ``change(current linker)`` from now on, to the page and the correction loop alike, under the
        lock (a link or a save in flight finishes with the old one); returns the new linker."""
        with self.lock:
            self.linker = change(self.linker)
            self.loop.linker = self.linker
            return self.linker

    def load_corrections(self) -> int:
        """Add the store's current decisions to the linker's pool (at start-up); returns how many were new."""
        return self.loop.load()

    # ---- linking ------------------------------------------------------------------------------
    def _predict(self, image: ImageArg, caption: str, mention: str, exclude: Sequence[str] = ()) -> Any:
        # the linker reads the file as `gemel link --image` does: size and pixel caps, the CLI's sentences, and
        # the file's content identifies a corrected item (a decoded picture would hash differently)
        with named_upload(image) as path, self.lock:
            return self.linker.link(path, caption or "", mention or "", exclude=tuple(exclude))

    def _choices(self, candidates: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
        names = [str(c["name"]) for c in candidates][: self.config.candidates_shown]
        return [(f"{i}. {name}", name) for i, name in enumerate(names, 1)]

    def _card(self, name: str | None) -> str:
        return render.entity_card(self.kb.get(name) if name else None, name)

    @user_facing("Could not link")
    def link(self, image: ImageArg, caption: str, mention: str, exclude: Sequence[str] = ()) -> LinkView:
        """Link the mention; the view holds everything the Link tab shows. ``exclude``: ids of pool examples
        not to use as demonstrations (a shipped example must not be its own demonstration)."""
        pred = self._predict(image, caption, mention, exclude).to_dict()
        query = {"text": caption, "mention": mention, "image": upload_path(image)[0], "prediction": pred}
        return LinkView(query=query, card=self._card(pred["entity"]),
                        bars=render.candidate_bars(pred["candidates"], pred["entity"], self.config.candidates_shown,
                                                   (pred.get("why") or {}).get("picture_unknown", ())),
                        demos=render.demonstrations_html(pred["demonstrations"], self.config.thumbnails),
                        meta=render.meta_html(pred), choices=self._choices(pred["candidates"]),
                        selected=pred["entity"])

    @user_facing("KB search failed")
    def search_kb(self, query: str, limit: int = 20) -> list[str]:
        """Titles for the autocomplete box."""
        return self.kb.search(query or "", limit)

    # ---- recording ----------------------------------------------------------------------------
    def _check_entity(self, entity: str | None) -> None:
        if entity is not None and entity not in self.kb:
            raise DecisionError(f"{entity!r} is not an entity of the knowledge base; pick a title the KB search "
                                "offers, or press 'Not in the KB'")

    def _record(self, annotator: str, decision: str, entity: str | None, query: Mapping[str, Any],
                comment: str | None) -> int:
        self._check_entity(entity)
        pred = query.get("prediction") or {}
        return self.loop.record(annotator, decision, entity, text=query["text"], mention=query["mention"],
                                image=query.get("image"), model_entity=pred.get("entity"),
                                candidates=pred.get("candidates"), profile=pred.get("profile"),
                                mapper_version=pred.get("mapper"), comment=(comment or "").strip() or None)

    @user_facing("Could not save the decision")
    def correct(self, query: Mapping[str, Any] | None, annotator: str | None, action: str, choice: str | None,
                comment: str | None = None, login: str | None = None) -> str:
        """Record a decision on the last linked query; returns the status message."""
        annotator = annotator_name(annotator, login)
        if not query or "prediction" not in query:
            raise DecisionError("link a mention first, then accept or correct the answer")
        pred = query["prediction"]
        names = [c["name"] for c in pred.get("candidates", [])]
        decision, entity = decision_for(action, choice, pred.get("entity"), names)
        cid = self._record(annotator, decision, entity, query, comment)
        return _saved(cid, annotator, decision, entity)

    # ---- API ----------------------------------------------------------------------------------
    @user_facing("Could not link")
    def api_link(self, image: ImageArg, caption: str, mention: str) -> dict[str, Any]:
        """``/link``: the prediction as JSON (entity, candidates, demonstrations, profile, mapper, timings)."""
        return self._predict(image, caption, mention).to_dict()

    @user_facing("Could not save the correction")
    def api_correct(self, image: ImageArg, caption: str, mention: str, entity: str | None,
                    annotator: str | None, login: str | None = None) -> int:
        """``/correct``: store that ``mention`` is ``entity`` (empty: not in the KB); returns the correction id."""
        annotator = annotator_name(annotator, login)
        entity = (entity or "").strip() or None
        path = checked_image(image)  # the same checks and sentences as a link
        query = {"text": caption or "", "mention": mention or "", "image": path}
        return self._record(annotator, "search" if entity else "nil", entity, query, None)

    # ---- review queue -------------------------------------------------------------------------
    @user_facing("Could not add the batch")
    def enqueue(self, files: Sequence[str] | None, server_path: str | None = None) -> str:
        """Read a batch, link every item (so the queue can rank by uncertainty) and enqueue it."""
        paths = [str(f) for f in files or []]
        if server_path and server_path.strip():
            if not self.config.allow_server_paths:
                raise BatchError("this app does not read files on the server; upload the JSONL and its images")
            paths.append(server_path.strip())
        items = read_batch(paths, self.config.allow_server_paths, self.config.max_batch_items)
        queued, failed = [], []
        for it in tqdm(items, desc="linking the batch", disable=None):
            try:
                pred = self._predict(it.image, it.text, it.mention).to_dict()
            except (InputError, ImageError) as e:
                message = _renamed(str(e), it.image, Path(it.image).name) if it.image else str(e)
                failed.append(f"{it.where}: {message}")
                continue
            queued.append({"text": it.text, "mention": it.mention, "image": it.image, "prediction": pred})
        watermark = self.store.last_queue_item_id()
        ids = set(self.store.enqueue(queued, batch=Path(paths[0]).name) if queued else [])
        message = _added(len([i for i in ids if i > watermark]), len([i for i in ids if i <= watermark]))
        if failed:
            message += (f" {count(len(failed), 'item')} could not be linked and {was_were(len(failed))} left out; "
                        f"first: {failed[0]}")
        return message

    def _item_view(self, annotator: str, message: str) -> ItemView:
        item = self.store.next_item(annotator)
        progress = render.progress_html(self.store.progress(annotator))
        if item is None:
            empty = "Your queue is empty: add a batch above."
            return ItemView(None, None, "", "", "", [], None, progress, f"{message} {empty}".strip())
        pred = item.get("prediction") or {}
        cands = pred.get("candidates") or []
        return ItemView(item=item, image=item.get("image"), caption=render.mention_html(item["text"], item["mention"]),
                        card=self._card(pred.get("entity")) if pred else "",
                        bars=render.candidate_bars(cands, pred.get("entity"), self.config.candidates_shown,
                                                   (pred.get("why") or {}).get("picture_unknown", ())),
                        choices=self._choices(cands), selected=pred.get("entity"), progress=progress,
                        message=message, meta=render.meta_html(pred) if pred else "",
                        demos=render.demonstrations_html(pred.get("demonstrations") or [], self.config.thumbnails))

    @user_facing("Could not load the queue")
    def next_item(self, annotator: str | None, login: str | None = None, message: str = "") -> ItemView:
        """The item to show the annotator (the least certain one they have not decided)."""
        return self._item_view(annotator_name(annotator, login), message)

    @user_facing("Could not save the decision")
    def decide_item(self, item: Mapping[str, Any] | None, annotator: str | None, action: str, choice: str | None,
                    comment: str | None = None, login: str | None = None) -> ItemView:
        """Record a decision on the shown queue item; returns the next item."""
        annotator = annotator_name(annotator, login)
        if not item:
            raise DecisionError("there is no item to decide: add a batch, or wait for one to load")
        pred = item.get("prediction") or {}
        names = [c["name"] for c in pred.get("candidates") or []]
        decision, entity = decision_for(action, choice, pred.get("entity"), names)
        self._check_entity(entity)
        cid = self.loop.record_item(item["item_id"], annotator, decision, entity,
                                    comment=(comment or "").strip() or None)
        return self._item_view(annotator, _saved(cid, annotator, decision, entity))

    @user_facing("Could not skip")
    def skip(self, annotator: str | None, item: Mapping[str, Any] | None, login: str | None = None) -> ItemView:
        """Move the shown item to the end of the annotator's queue; returns the next item."""
        annotator = annotator_name(annotator, login)
        self.store.skip(annotator, item["item_id"] if item else None)
        return self._item_view(annotator, "Skipped: the item moved to the end of your queue.")

    @user_facing("Could not undo")
    def undo_last(self, annotator: str | None, login: str | None = None) -> str:
        """Undo the annotator's most recent decision; its demonstration leaves the pool (the earlier one returns)."""
        annotator = annotator_name(annotator, login)
        _, now = self.loop.undo_last(annotator)
        back = (f" Your earlier decision on it is current again: {now['entity'] or now['decision']}."
                if now else " The item is back in your queue.")
        return "Undid your last decision." + back

    # ---- data -----------------------------------------------------------------------------------
    @user_facing("Could not compute the statistics")
    def stats(self) -> StatsView:
        """The Data tab: counts per annotator, agreement, totals and the chart (`gemel.data.plots.plot_corrections`: a count on every
        bar and point, no point for a mapper version without scored decisions)."""
        s = self.store.stats()
        per_day = [(str(r["day"]), int(r["corrections"])) for r in s["per_day"]]
        plot_dir = self.work_dir / "plots"
        for old in sorted(plot_dir.glob("*.png"))[:-20]:
            old.unlink(missing_ok=True)
        path = plot_corrections(per_day, mapper_scores(s["model_accuracy"]), plot_dir / f"corrections-{_stamp()}.png")
        return StatsView(render.counts_table(s["per_annotator"]), render.agreement_html(s["agreement"]),
                         totals_html(s["totals"]), str(path))

    @user_facing("Could not export")
    def export(self, fmt: str) -> tuple[list[str], str]:
        """Write the current decisions as JSONL or Parquet (+ a zip with the images); returns (files, message)."""
        if fmt not in EXPORT_FORMATS:
            raise DecisionError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
        folder = self.work_dir / "exports" / _stamp()
        out = folder / f"corrections.{fmt}"
        folder.mkdir(parents=True)
        n = (export_jsonl if fmt == "jsonl" else export_parquet)(self.store, out)
        archive = shutil.make_archive(str(folder.parent / f"corrections-{fmt}-{folder.name}"), "zip", folder)
        message = f"Exported {count(n, 'current decision')} as {fmt.upper()} (the zip adds the images)."
        return [str(out), archive], message


def _saved(cid: int, annotator: str, decision: str, entity: str | None) -> str:
    """The status after a save: what was stored, and what it does from now on (and how to take it back)."""
    label = render.DECISION_LABELS[decision]
    said = f"Saved #{cid}: {annotator} → {entity} ({label})." if entity else f"Saved #{cid}: {annotator} → {label}."
    if decision == "more_context":
        return said
    answer = entity or "not in the KB"
    return (f"{said} From now on this caption, mention and picture answer {answer}, and it is a labelled example "
            "for similar ones; “Undo my last decision” takes it back.")


def totals_html(totals: Mapping[str, Any]) -> str:
    """The Data tab's totals line, its nouns agreeing with their counts ("1 current decision", "2 inputs")."""
    parts = [count(int(totals["current_decisions"]), "current decision"),
             count(int(totals["corrections"]), "correction") + " in all", count(int(totals["inputs"]), "input"),
             count(int(totals["queue_items"]), "queued item")]
    return f'<div class="gemel-meta">{" · ".join(parts)}</div>'


def _added(new: int, already: int) -> str:
    """What adding a batch did: the items new to the queue, and those it held already (a batch added twice
    adds nothing the second time, and a bare count of the batch would read as if it had)."""
    message = f"Added {count(new, 'new item')}" + (" to the queue, least certain first" if new else "")
    return message + (f"; {already} {was_were(already)} already in the queue." if already else ".")


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
