"""HTML fragments of the demo: the entity card, candidate score bars, demonstration cards, statistics.

Every string that comes from a person (captions, mentions, comments, annotator names) or from the knowledge
base (titles, descriptions, extracts) goes through `html.escape` before it is placed in markup; URLs are
built from the title and percent-encoded. The fragments use inline styles with the theme's CSS variables
(``var(--body-text-color)`` ...), so they read well in light and dark mode without a stylesheet. Images of
demonstrations are inlined as small JPEG data URIs (made through `gemel.images.load_image`, which caps
pixels), so no server path is ever exposed to the browser.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import quote

from .wording import count

log = logging.getLogger(__name__)

NIL_TEXT = "not in the KB (below threshold)"
DECISION_LABELS = {"accept": "accepted", "candidate": "other candidate", "search": "found by search",
                   "nil": "not in the KB", "more_context": "needs more context"}
_SENTENCE_END = re.compile(r"(?<=[a-z0-9\)\"'][.!?])\s+(?=[A-Z])")


MAX_OTHER_NAMES = 6  # an entity card lists at most this many of the entity's other names (aliases)


class EntityLike(Protocol):
    title: str
    description: str
    extract: str


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML elements and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def wiki_url(title: str) -> str:
    """English Wikipedia URL of a title, percent-encoded (no quote or angle bracket survives)."""
    return "https://en.wikipedia.org/wiki/" + quote(title.replace(" ", "_"), safe="_(),:'-.")


def lead(extract: str, max_chars: int = 420, max_sentences: int = 3) -> str:
    """The first sentences of an extract, at most ``max_chars`` characters (cut at a word, with "…")."""
    text = " ".join((extract or "").split())
    if not text:
        return ""
    out = " ".join(_SENTENCE_END.split(text)[:max_sentences])
    if len(out) > max_chars:
        out = out[:max_chars].rsplit(" ", 1)[0] + " …"
    return out


def mention_html(text: str, mention: str) -> str:
    """``text`` escaped, with the first occurrence of ``mention`` in a <mark>."""
    i = text.find(mention) if mention else -1
    if i < 0:
        return esc(text)
    return (esc(text[:i]) + '<mark class="gemel-mention">' + esc(mention) + "</mark>"
            + esc(text[i + len(mention):]))


def entity_card(entity: EntityLike | None, name: str | None) -> str:
    """The linked entity: title (link to Wikipedia), description, its other names (a mention may name it by one:
    "sweets" -> Candy), the extract's first sentences. ``name`` None means NIL; a name the KB lacks is shown bare."""
    if name is None:
        return ('<div class="gemel-card gemel-nil"><div class="gemel-card-title">NIL</div>'
                f"<div>{esc(NIL_TEXT)}</div></div>")
    title = entity.title if entity is not None else name
    desc = f'<div class="gemel-card-desc">{esc(entity.description)}</div>' if entity and entity.description else ""
    names = list(getattr(entity, "aliases", ()) or ())[:MAX_OTHER_NAMES]
    if names:
        desc += f'<div class="gemel-card-also">Also called: {esc(", ".join(names))}</div>'
    body = f'<p class="gemel-card-extract">{esc(lead(entity.extract))}</p>' if entity and entity.extract else ""
    link = (f'<a href="{esc(wiki_url(title))}" target="_blank" rel="noopener noreferrer">'
            "Wikipedia page ↗</a>")
    return (f'<div class="gemel-card"><div class="gemel-card-title">{esc(title)}</div>{desc}{body}'
            f"<div>{link}</div></div>")


def _fraction(value: float, low: float, high: float) -> float:
    if high - low < 1e-12:
        return 1.0
    return 0.08 + 0.92 * (value - low) / (high - low)


def candidate_bars(candidates: Sequence[Mapping[str, Any]], chosen: str | None, limit: int = 9,
                   picture_unknown: Sequence[str] = ()) -> str:
    """One row per candidate: shortcut digit, name, description, a bar (the learned ranker's probability, or, in
    an answer saved before the ranker replaced the fused score, that score scaled between the lowest and highest
    shown) and the parts of its score, which add up to it
    (``contributions``: the largest three under the ranker). ``picture_unknown``: candidates the picture scorer
    has never seen, marked so their low picture score is not read as evidence."""
    shown = list(candidates)[:limit]
    if not shown:
        return '<div class="gemel-empty">No candidates.</div>'
    unknown = set(picture_unknown)
    note = ('<div class="gemel-legend">“picture unknown”: the picture scorer has never seen this entity, so the '
            "picture cannot speak for it</div>" if unknown & {c.get("name") for c in shown} else "")
    if all(isinstance(c.get("probability"), (int, float)) for c in shown):  # the learned ranker decided
        rows = [_ranked_row(i, c, c.get("name") == chosen, c.get("name") in unknown) for i, c in enumerate(shown, 1)]
        legend = ('<div class="gemel-legend">bar: the ranker\'s probability · the parts that add most to its '
                  "score (and take most from it)</div>")
        return '<div class="gemel-cands">' + "".join(rows) + legend + note + "</div>"
    scores = [float(c.get("score", 0.0)) for c in shown]
    low, high = min(scores), max(scores)
    rows = [_candidate_row(i, c, _fraction(s, low, high), c.get("name") == chosen, c.get("name") in unknown)
            for i, (c, s) in enumerate(zip(shown, scores), 1)]
    legend = ('<div class="gemel-legend">bar: the score, scaled to the shown range · it is the sum of its parts: '
              "the language model's log-probability of the name, how well the description matches the caption, "
              "and the picture where it took part</div>")
    return '<div class="gemel-cands">' + "".join(rows) + legend + note + "</div>"


def _parts(c: Mapping[str, Any], top: int | None = None) -> str:
    """The candidate's score parts in words, largest first (``top`` of them), e.g. "language model -3.90"."""
    from gemel.rank.reasons import LABELS

    items = [(k, float(v)) for k, v in (c.get("contributions") or {}).items() if abs(float(v)) > 5e-4]
    items.sort(key=lambda kv: -abs(kv[1]))
    return " · ".join(f"{esc(LABELS.get(k, k))} {v:+.2f}" for k, v in items[:top]) or "–"


def _head(rank: int, c: Mapping[str, Any], chosen: bool, unknown: bool) -> str:
    mark = " gemel-chosen" if chosen else ""
    desc = f' <span class="gemel-desc">— {esc(c.get("description"))}</span>' if c.get("description") else ""
    flag = ' <span class="gemel-unknown">picture unknown</span>' if unknown else ""
    return (f'<div class="gemel-cand{mark}"><div class="gemel-cand-head"><kbd>{rank}</kbd> '
            f'<b>{esc(c.get("name"))}</b>{flag}{desc}</div>')


def _candidate_row(rank: int, c: Mapping[str, Any], fraction: float, chosen: bool, unknown: bool = False) -> str:
    score = c.get("score")
    total = f"{float(score):.2f}" if isinstance(score, (int, float)) else "–"
    return (_head(rank, c, chosen, unknown)
            + f'<div class="gemel-bar-track"><div class="gemel-bar" style="width:{100 * fraction:.1f}%"></div></div>'
            f'<div class="gemel-nums">score {total} = {_parts(c)}</div></div>')


def _ranked_row(rank: int, c: Mapping[str, Any], chosen: bool, unknown: bool = False, top: int = 3) -> str:
    """A candidate under the learned ranker: its probability as the bar, and its largest contributions."""
    p = float(c["probability"])
    return (_head(rank, c, chosen, unknown)
            + f'<div class="gemel-bar-track"><div class="gemel-bar" style="width:{100 * p:.1f}%"></div></div>'
            f'<div class="gemel-nums">p {p:.3f} · {_parts(c, top)}</div></div>')


def why_html(prediction: Mapping[str, Any]) -> str:
    """Why the model answered what it did, in words (``prediction["why"]``, `gemel.rank.reasons`), with the
    numbers one click away; an answer from memory says so first, and that the reasons are the model's own."""
    from gemel.rank.reasons import LABELS

    why = prediction.get("why") or {}
    if not why.get("sentence"):
        return ""
    memory = ""
    if prediction.get("source") == "correction":
        who = esc(prediction.get("corrected_by") or "an annotator")
        memory = (f'<div class="gemel-memory">✔ <b>answered from memory</b>: {who} decided this exact item '
                  f"(caption, mention and picture) as <b>{esc(prediction.get('entity') or 'not in the KB')}</b>. "
                  "Below: the model's own answer and ranking, without that memory.</div>")
    reasons = "".join(f"<li>{esc(r['text'])}</li>" for r in why.get("reasons", []))
    against = "".join(f"<li>{esc(r['text'])}</li>" for r in why.get("against", []))
    parts = sorted((why.get("parts") or {}).items(), key=lambda kv: -abs(kv[1]))
    rows = "".join(f"<tr><td>{esc(LABELS.get(k, k))}</td><td>{v:+.3f}</td></tr>" for k, v in parts if abs(v) > 5e-4)
    answer, runner = why.get("answer"), why.get("runner_up")
    head = (f"<b>{esc(answer)}</b> over <b>{esc(runner)}</b>" if answer and runner else esc(why["sentence"]))
    body = (f"<div>because</div><ul>{reasons or '<li>nothing stands out</li>'}</ul>"
            + (f"<div>{esc(runner)} had</div><ul>{against}</ul>" if against else "") if answer and runner else "")
    unknown = why.get("picture_unknown") or []
    note = (f'<div class="gemel-legend">The picture took part only among what its scorer knows; it has never seen '
            f"{esc(', '.join(unknown[:3]))}{' and others' if len(unknown) > 3 else ''}.</div>" if unknown else "")
    numbers = (f'<details><summary>the numbers</summary><table class="gemel-table">{rows}<tr><td><b>lead</b></td>'
               f"<td><b>{float(why.get('gap', 0.0)):+.3f}</b></td></tr></table></details>" if rows else "")
    return memory + f'<div class="gemel-why">{head}{body}{note}{numbers}</div>'


def demonstrations_html(demos: Sequence[Mapping[str, Any]], thumbs: bool = True) -> str:
    """Cards of the in-context demonstrations (most similar first): photo (or "text only"), caption with the
    mention marked, gold entity, similarity and source pool."""
    if not demos:
        return '<div class="gemel-empty">No demonstrations were retrieved.</div>'
    ordered = sorted(demos, key=lambda d: -float(d.get("similarity", 0.0)))
    return '<div class="gemel-demos">' + "".join(_demo_card(d, thumbs) for d in ordered) + "</div>"


def _demo_card(d: Mapping[str, Any], thumbs: bool) -> str:
    uri = thumbnail_uri(str(d["image"])) if thumbs and d.get("image") else None
    if uri:
        media = f'<img src="{uri}" alt="demonstration photo" loading="lazy">'
    else:
        media = '<div class="gemel-textonly">text only</div>'
    return (f'<div class="gemel-demo">{media}<div class="gemel-demo-text">'
            f'{mention_html(str(d.get("text", "")), str(d.get("mention", "")))}</div>'
            f'<div>→ <b>{esc(d.get("entity"))}</b></div>'
            f'<div class="gemel-nums">sim {float(d.get("similarity", 0.0)):.3f} · {esc(d.get("source") or "pool")}'
            "</div></div>")


@lru_cache(maxsize=1024)
def _thumbnail(path: str, mtime: float, size: int) -> str | None:
    from gemel.images import ImageError, load_image

    try:
        im = load_image(path)
    except (ImageError, OSError) as e:
        log.warning("no thumbnail for %s: %s", path, e)
        return None
    assert im is not None
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_uri(path: str, size: int = 160) -> str | None:
    """A JPEG data URI of the image at ``path`` at most ``size`` px a side; None when it cannot be read."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return None
    return _thumbnail(path, mtime, size)


def meta_html(prediction: Mapping[str, Any]) -> str:
    """Why the answer (:func:`why_html`, which also says when it came from memory), then the profile, mapper
    version, the LLM's precision, time taken and how the picture took part."""
    total = prediction.get("timings", {}).get("total")
    took = f"{float(total):.2f} s" if isinstance(total, (int, float)) else "–"
    precision = f' · <b>{esc(prediction["precision"])}</b>' if prediction.get("precision") else ""
    image = f' · the picture: <b>{esc(prediction["image"])}</b>' if prediction.get("image") else ""
    return (why_html(prediction) + f'<div class="gemel-meta">profile <b>{esc(prediction.get("profile"))}</b> · '
            f'mapper <b>{esc(prediction.get("mapper"))}</b>{precision} · took <b>{took}</b>{image}</div>')


def progress_html(progress: Mapping[str, int]) -> str:
    """Queue progress of one annotator: done / total, left, skipped."""
    total, done = int(progress.get("total", 0)), int(progress.get("done", 0))
    pct = 100.0 * done / total if total else 0.0
    return (f'<div class="gemel-meta"><b>{done}</b> done / <b>{total}</b> · <b>{int(progress.get("left", 0))}</b>'
            f' left · {int(progress.get("skipped", 0))} skipped</div>'
            f'<div class="gemel-bar-track"><div class="gemel-bar" style="width:{pct:.1f}%"></div></div>')


def counts_table(per_annotator: Mapping[str, Mapping[str, int]]) -> str:
    """Decisions per annotator (rows) and kind (columns), with totals."""
    if not per_annotator:
        return '<div class="gemel-empty">No decisions yet.</div>'
    kinds = list(DECISION_LABELS)
    head = "".join(f"<th>{esc(DECISION_LABELS[k])}</th>" for k in kinds)
    body = ""
    for name in sorted(per_annotator):
        counts = per_annotator[name]
        cells = "".join(f"<td>{int(counts.get(k, 0))}</td>" for k in kinds)
        body += f"<tr><td>{esc(name)}</td>{cells}<td><b>{sum(int(v) for v in counts.values())}</b></td></tr>"
    return (f'<table class="gemel-table"><thead><tr><th>annotator</th>{head}<th>total</th></tr></thead>'
            f"<tbody>{body}</tbody></table>")


def agreement_html(agreement: Mapping[str, Any]) -> str:
    """Inter-annotator agreement summary (inputs decided by two or more annotators)."""
    items = int(agreement.get("items") or 0)
    if not items:
        return '<div class="gemel-empty">Agreement needs inputs decided by two or more annotators.</div>'

    def fmt(key: str, suffix: str = "") -> str:
        v = agreement.get(key)
        return f"{float(v):.{1 if suffix else 3}f}{suffix}" if isinstance(v, (int, float)) else "–"

    people, dis = agreement.get("annotators"), agreement.get("disagreements")
    n_people = len(people) if isinstance(people, (list, tuple)) else int(people or 0)
    n_dis = len(dis) if isinstance(dis, (list, tuple)) else int(dis or 0)
    return (f'<div class="gemel-meta">{count(items, "shared input")} · {count(n_people, "annotator")} · '
            f"percent agreement <b>{fmt('percent_agreement', '%')}</b> · Fleiss κ <b>{fmt('fleiss_kappa')}</b> · "
            f"Cohen κ <b>{fmt('cohen_kappa')}</b> · {count(n_dis, 'disagreement')}</div>")


CSS = """
.gemel-card{border:1px solid var(--border-color-primary);border-radius:8px;padding:10px 14px}
.gemel-card-title{font-size:1.3em;font-weight:700}
.gemel-card-desc{color:var(--body-text-color-subdued);margin-bottom:4px}
.gemel-card-extract{margin:6px 0}
.gemel-nil{border-style:dashed}
.gemel-cand{padding:4px 0;border-bottom:1px solid var(--border-color-primary)}
.gemel-chosen b{color:var(--color-accent)}
.gemel-desc,.gemel-nums,.gemel-legend,.gemel-empty{color:var(--body-text-color-subdued);font-size:.88em}
.gemel-bar-track{background:var(--background-fill-secondary);border-radius:4px;height:10px;margin:3px 0}
.gemel-bar{background:var(--color-accent);border-radius:4px;height:10px}
.gemel-unknown{font-size:.78em;border:1px dashed var(--border-color-primary);border-radius:4px;padding:0 4px;
  color:var(--body-text-color-subdued)}
.gemel-why{border-left:3px solid var(--color-accent);padding:4px 10px;margin-bottom:6px}
.gemel-why ul{margin:2px 0 4px 18px}
.gemel-memory{background:#ecfdf5;border:1px solid #10b981;border-radius:6px;padding:6px 10px;margin-bottom:6px}
.gemel-demos{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.gemel-demo{border:1px solid var(--border-color-primary);border-radius:8px;padding:6px;font-size:.9em}
.gemel-demo img{width:100%;height:110px;object-fit:cover;border-radius:6px}
.gemel-textonly{height:28px;display:flex;align-items:center;justify-content:center;border-radius:6px;
  background:var(--background-fill-secondary);color:var(--body-text-color-subdued)}
mark.gemel-mention{background:#ffe08a;color:#000;border-radius:3px;padding:0 2px}
.gemel-table{border-collapse:collapse}.gemel-table td,.gemel-table th{padding:3px 10px;
  border-bottom:1px solid var(--border-color-primary);text-align:left}
kbd{border:1px solid var(--border-color-primary);border-radius:3px;padding:0 4px;font-size:.85em}
"""


def status_html(message: str, kind: str = "ok") -> str:
    """A one-line status message (escaped)."""
    return f'<div class="gemel-status gemel-{esc(kind)}">{esc(message)}</div>' if message else ""
