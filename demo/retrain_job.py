"""The Data tab's "Re-train from corrections": `gemel.training.retrain.retrain` in a background thread of the app.

One `RetrainJob` belongs to the `demo.handlers.Studio`. ``start`` checks the store's decisions at once (bad input
gets one sentence, nothing starts), then refits a copy of the trained part on a snapshot of the linker while the
app keeps serving: the ranker that decides (seconds to minutes; `gemel.training.retrain.parts_for`). The Data tab polls ``view`` for the progress line and the result. An
accepted candidate (the acceptance rule of `gemel.training.retrain`) is saved as ``mappers/<version>.pt`` (a mapper)
or ``mappers/<version>.json`` (a ranker) next to the annotation store (or in the app's work folder for an
in-memory store) and swapped in under the studio's lock, the correction loop re-pointed to it, so every later
prediction records it. Any failure, or a rejected candidate, leaves the serving linker exactly as it was.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from annotations import AnnotationError
from annotations.validation import ENTITY_DECISIONS
from gemel.errors import GemelError
from gemel.training.retrain import RetrainConfig, RetrainResult, check_decisions, parts_for, retrain
from gemel.types import Example

from . import render
from .config import ASSETS
from .errors import StudioError, user_facing
from .wording import count

log = logging.getLogger(__name__)

TEST_SPLIT = ASSETS / "eval" / "test.jsonl"  # the shipped test split: the candidate must not do worse on it


class RetrainBusyError(StudioError):
    """A re-training is already running."""


@dataclass(frozen=True)
class JobState:
    """What the Data tab shows; replaced as a whole (never mutated), so a reader sees one consistent state."""

    running: bool = False
    fraction: float = 0.0  # progress in [0, 1]
    message: str = ""  # what is happening, or how it ended
    started: str = ""  # UTC time, HH:MM:SS
    result: RetrainResult | None = None
    error: str | None = None  # one sentence, when the job failed
    saved: str | None = None  # the accepted mapper's file


@dataclass(frozen=True)
class RetrainView:
    progress: str  # HTML: the progress line
    result: str  # HTML: before/after figures and the decision
    running: bool


class RetrainJob:
    """Re-trains the studio's linker from its store's decisions in the background; one job at a time."""

    def __init__(self, studio: Any, config: RetrainConfig | None = None,
                 test_examples: Sequence[Example] | None = None, test_path: str | Path = TEST_SPLIT,
                 parts: Sequence[Any] | None = None) -> None:
        self.studio = studio
        self.parts = None if parts is None else tuple(parts)  # what a re-train fits; None: parts_for the linker
        self.config = config or RetrainConfig()
        self.test_path = Path(test_path)
        self._test = None if test_examples is None else list(test_examples)  # None: read test_path on first use
        self._lock = threading.Lock()
        self.state = JobState()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.state.running

    @property
    def mappers_dir(self) -> Path:
        """Where accepted mappers are kept: ``mappers/`` beside the store file, else in the work folder."""
        path = getattr(self.studio.store, "path", None)
        return (Path(path).parent if path is not None else self.studio.work_dir) / "mappers"

    def restore(self) -> str | None:
        """Serve the last accepted part again after a restart (read from ``retrain-log.jsonl`` in `mappers_dir`):
        a mapper (``.pt``) or a ranker (``.json``); returns its version, or None when there is none. A file that is
        gone, was trained for another profile, or a ranker for a profile that decides without one, is skipped with
        a warning: the profile's own part keeps serving."""
        saved = last_accepted(self.mappers_dir / "retrain-log.jsonl")
        if saved is None:
            return None
        try:
            name, version, swap = _restored(self.studio.linker, saved)
        except (OSError, GemelError) as e:
            log.warning("not restoring the re-trained part %s: %s; serving the profile's", saved, e)
            return None
        if swap is None:
            return None
        self.studio.swap_linker(swap)
        log.info("serving the re-trained %s %s again (%s)", name, version, saved)
        return version

    # ---- starting -------------------------------------------------------------------------------------
    @user_facing("Could not start re-training")
    def start(self) -> RetrainView:
        """Check the decisions and start the background job; refused while one runs."""
        with self._lock:
            if self.state.running:
                raise RetrainBusyError(f"a re-training is already running (started at {self.state.started} UTC, "
                                       f"{100 * self.state.fraction:.0f}% done): wait for it to finish")
            with self.studio.lock:  # a private pool: corrections saved meanwhile must not race the job
                linker = self.studio.linker.replace(pool=self.studio.linker.labelled_pool.with_examples())
            examples = self.decisions()
            check_decisions(linker, examples, self.config, self.parts or parts_for(linker))
            test = self.test_examples()
            self.state = JobState(running=True, message="starting", started=_now("%H:%M:%S"))
            self.thread = threading.Thread(target=self._run, args=(linker, examples, test), daemon=True,
                                           name="gemel-retrain")
            self.thread.start()
        return self.view()

    def decisions(self) -> list[Example]:
        """The store's gold examples: one majority label per decided input, NIL decisions included."""
        rows = self.studio.store.training_examples((*ENTITY_DECISIONS, "nil"))
        return [Example.from_dict(d) for d in rows]

    def test_examples(self) -> list[Example]:
        if self._test is None:
            from gemel.data.evaluate import load_examples

            self._test = load_examples(self.test_path) if self.test_path.is_file() else []
            if not self._test:
                log.warning("no test split at %s: re-training is judged on the held-out decisions only",
                            self.test_path)
        return self._test

    # ---- the thread -----------------------------------------------------------------------------------
    def _run(self, linker: Any, examples: list[Example], test: list[Example]) -> None:
        try:
            out = self.studio.work_dir / "retrain" / _now("%Y%m%d-%H%M%S-%f")
            result = retrain(linker, examples, out, self.config, test_examples=test, progress_cb=self._progress,
                             parts=self.parts or parts_for(linker))
            saved = self._adopt(result) if result.accepted else None
            self._finish(result=result, saved=saved)
        except (AnnotationError, GemelError, StudioError) as e:
            log.warning("re-training failed: %s", e)
            self._finish(error=f"Re-training failed: {_clause(e)}; the serving model is unchanged.")
        except Exception as e:  # a bug, or the machine: the traceback goes to the log, the page gets a sentence
            log.exception("re-training failed")
            self._finish(error=f"Re-training failed with an internal error ({type(e).__name__}), so the serving "
                               "model is unchanged; the details are in the server log.")

    def _progress(self, fraction: float, message: str) -> None:
        self.state = replace(self.state, fraction=fraction, message=message)

    def _adopt(self, result: RetrainResult) -> str:
        """Save the accepted part under its version, then swap it in (under the studio's lock)."""
        folder = self.mappers_dir
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint = Path(result.checkpoints[result.part])
        saved = folder / f"{result.version}{checkpoint.suffix}"
        shutil.copyfile(checkpoint, saved)
        with (folder / "retrain-log.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps({"time": _now("%Y-%m-%dT%H:%M:%SZ"), **result.to_dict(), "saved": str(saved)}) + "\n")
        self.studio.swap_linker(result.adopt)  # adopted by the live linker: corrections saved meanwhile are kept
        log.info("now serving %s %s (saved as %s)", result.part, result.version, saved)
        return str(saved)

    def _finish(self, result: RetrainResult | None = None, error: str | None = None, saved: str | None = None) -> None:
        message = error or ("done: accepted" if result and result.accepted else "done: not accepted")
        self.state = replace(self.state, running=False, fraction=1.0 if error is None else self.state.fraction,
                             message=message, result=result, error=error, saved=saved)

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job ends (tests, scripts); returns the final state."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.state

    # ---- the view -------------------------------------------------------------------------------------
    def view(self) -> RetrainView:
        s = self.state
        return RetrainView(progress_html(s), result_html(s, serving_version(self.studio.linker, s.result)), s.running)


def serving_version(linker: Any, result: RetrainResult | None) -> str:
    """The version of the part a re-train fits, as the linker serves it now."""
    return linker.ranker.version if result is None or result.part == "ranker" else linker.mapper_version


def _restored(linker: Any, saved: Path) -> tuple[str, str, Any]:
    """(part name, version, swap for `Studio.swap_linker` or None when this linker has no such part) of a saved
    re-trained part."""
    if saved.suffix == ".json":
        from gemel.rank.model import load_ranker

        ranker = load_ranker(saved)
        return "ranker", ranker.version, lambda live: live.replace(ranker=ranker)
    from gemel.models.mapper import FeatureMapper

    if linker.mapper is None:
        return "mapper", "", None
    mapper = FeatureMapper.load(saved, expected=linker.mapper.spec)
    return "mapper", mapper.version, lambda live: live.replace(mapper=mapper)


def last_accepted(log_path: Path) -> Path | None:
    """The file of the last accepted mapper that still exists, from a re-train log (None without one)."""
    if not log_path.is_file():
        return None
    for line in reversed(log_path.read_text(encoding="utf-8").splitlines()):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            log.warning("skipping an unreadable line of %s", log_path)
            continue
        saved = Path(entry.get("saved") or "")
        if entry.get("accepted") and saved.is_file():
            return saved
    return None


def progress_html(s: JobState) -> str:
    if not s.started:
        return ""
    pct = 100 * s.fraction
    return (f'<div class="gemel-meta"><progress value="{s.fraction:.3f}" max="1"></progress> '
            f'{pct:.0f}% · {render.esc(s.message)} (started {render.esc(s.started)} UTC)</div>')


def result_html(s: JobState, serving: str) -> str:
    if s.error:
        return render.status_html(s.error, "error")
    r = s.result
    if r is None:
        return ""
    rows = [("held-out decisions", r.n_held_out, r.before.held_out, r.after.held_out),
            ("shipped test split", r.n_test, r.before.test, r.after.test)]
    cells = "".join(f"<tr><td>{name} (n={n})</td><td>{_pct(b)}</td><td>{_pct(a)}</td></tr>" for name, n, b, a in rows)
    table = (f'<table class="gemel-table"><tr><th>accuracy</th><th>serving ({render.esc(r.previous.get(r.part))})'
             f'</th><th>new ({render.esc(r.version)})</th></tr>{cells}</table>')
    if r.accepted:
        verdict = f"Accepted: {r.reason}; now serving {serving} (saved as {s.saved})."
    else:
        verdict = f"Not accepted: {r.reason}; still serving {serving}."
    return table + render.status_html(f"{verdict} Trained on {count(r.n_train, 'decision')} in {r.seconds:.0f} s.")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _clause(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).rstrip(".")


def _now(fmt: str) -> str:
    return datetime.now(timezone.utc).strftime(fmt)
