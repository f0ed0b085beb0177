"""Calibration of the score fusion weight and the NIL threshold on held-out data (``gemel calibrate``).

GEMEL ranks by the LLM's length-normalised log-probability alone; with small models we fuse it with the
retrieval similarity, ``score = w_llm * llm_logprob + w_ret * retrieval_sim`` (w_llm fixed to 1), and answer
NIL when the best score is below ``nil_threshold``. Both parts of every candidate's score are independent of the
weights, so the linker runs once per example (:func:`collect`) and every weight of the grid re-ranks the stored
candidates (:func:`rerank`). For each weight the best threshold is exact: accuracy only changes where the
threshold crosses an example's best score, so the midpoints between sorted best scores are all the candidates
(:func:`best_threshold`). The chosen values go into a copy of the profile (:func:`write_profile`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gemel.config import CLIP_SCORER, LinkerConfig
from gemel.data.metrics import exact_match, wilson_interval
from gemel.errors import GemelError
from gemel.types import Example, Prediction

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
PATH_FIELDS = {"llm": ("source",), "vision": ("weights",), "embedder": ("source",), "kb": ("source",),
               "mapper": ("checkpoint",), "demos": ("seed_pool",),
               "image": ("scorer",), "rank": ("model",)}


class CalibrationError(GemelError):
    """Calibration cannot run as asked; the message names the value and the fix."""


@dataclass(frozen=True)
class CalibrateConfig:
    weights: tuple[float, ...] = DEFAULT_WEIGHTS  # grid of decode.w_ret values (w_llm = 1)
    threshold: str = "auto"  # "auto": search nil_threshold when the data has gold NIL; "search"; "keep"
    confidence: float = 0.95  # level of the Wilson intervals in the table

    def __post_init__(self) -> None:
        if not self.weights:
            raise CalibrationError("weights is empty: give the w_ret values to try, e.g. 0,0.5,1,2,4")
        bad = [w for w in self.weights if not math.isfinite(w) or w < 0]
        if bad:
            raise CalibrationError(f"weights {bad} must be finite and >= 0 (w_ret scales a cosine similarity)")
        if self.threshold not in ("auto", "search", "keep"):
            raise CalibrationError(f"threshold={self.threshold!r} is not one of auto, search, keep")


@dataclass(frozen=True)
class Scored:
    """One example's candidates with the two parts of their scores, as the linker computed them once."""

    gold: str | None
    names: tuple[str, ...]
    llm: np.ndarray  # (C,) length-normalised log-probabilities
    sim: np.ndarray  # (C,) retrieval similarities

    @classmethod
    def of(cls, prediction: Prediction, gold: str | None) -> "Scored":
        c = prediction.candidates
        return cls(gold, tuple(x.name for x in c), np.array([x.llm_logprob for x in c], dtype=np.float64),
                   np.array([x.retrieval_sim for x in c], dtype=np.float64))


@dataclass(frozen=True)
class GridRow:
    w_ret: float
    nil_threshold: float
    correct: int
    n: int
    ci: tuple[float, float]

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


@dataclass(frozen=True)
class Calibration:
    rows: list[GridRow]  # one per weight, with its best threshold
    chosen: GridRow
    searched_threshold: bool

    def table(self) -> str:
        lines = [f"{'w_ret':>8}  {'nil_threshold':>14}  {'accuracy':>8}  95% CI", "-" * 54]
        for r in self.rows:
            mark = "  <- chosen" if r is self.chosen else ""
            lines.append(f"{r.w_ret:>8.3g}  {r.nil_threshold:>14.4g}  {r.accuracy:>8.4f}  "
                         f"[{r.ci[0]:.4f}, {r.ci[1]:.4f}]{mark}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        row = lambda r: {"w_ret": r.w_ret, "nil_threshold": r.nil_threshold, "accuracy": r.accuracy,  # noqa: E731
                         "correct": r.correct, "n": r.n, "ci_low": r.ci[0], "ci_high": r.ci[1]}
        return {"chosen": row(self.chosen), "rows": [row(r) for r in self.rows],
                "searched_threshold": self.searched_threshold}


# ---- one pass, then re-ranking ----------------------------------------------------------------------------
def collect(linker: Any, examples: Sequence[Example], *, progress: bool = True) -> list[Scored]:
    """Run the linker once per example (itself excluded from the demonstrations) and keep the score parts."""
    from gemel.data.evaluate import predict

    preds = predict(linker, examples, progress=progress, desc="scoring")
    return [Scored.of(p, ex.entity) for p, ex in zip(preds, examples)]


def fused(item: Scored, w_ret: float, w_llm: float = 1.0) -> np.ndarray:
    return w_llm * item.llm + w_ret * item.sim  # (C,)


def rerank(scored: Sequence[Scored], w_ret: float, nil_threshold: float = -math.inf,
           w_llm: float = 1.0) -> list[str | None]:
    """The entity each example gets with these weights: the best fused candidate, None below the threshold."""
    out: list[str | None] = []
    for item in scored:
        if not item.names:
            out.append(None)
            continue
        s = fused(item, w_ret, w_llm)
        best = int(np.argmax(s))
        out.append(item.names[best] if s[best] >= nil_threshold else None)
    return out


def best_threshold(scored: Sequence[Scored], w_ret: float) -> tuple[float, int]:
    """(threshold, correct) maximising exact-match accuracy; ties go to the lowest threshold (fewest NILs)."""
    best = np.array([fused(x, w_ret).max() if x.names else -np.inf for x in scored])  # (N,)
    linked = rerank(scored, w_ret)
    right_if_linked = np.array([exact_match(e, x.gold) for e, x in zip(linked, scored)])
    right_if_nil = np.array([x.gold is None for x in scored])
    order = np.argsort(best, kind="stable")
    b, lk, nl = best[order], right_if_linked[order], right_if_nil[order]
    # threshold between positions j-1 and j: the first j examples (lowest best scores) become NIL
    nil_hits = np.concatenate([[0], np.cumsum(nl)])  # (N+1,)
    link_hits = np.concatenate([np.cumsum(lk[::-1])[::-1], [0]])  # (N+1,)
    correct = nil_hits + link_hits
    cuts = [j for j in range(len(b) + 1) if j in (0, len(b)) or b[j - 1] < b[j]]
    j = max(cuts, key=lambda c: (correct[c], -c))
    return _threshold_at(b, j), int(correct[j])


def _threshold_at(b: np.ndarray, j: int) -> float:
    if j == 0:
        return -math.inf
    if j == len(b):
        return float(b[-1]) + 1.0
    if not np.isfinite(b[j - 1]):  # examples without candidates sort first
        return float(b[j]) - 1.0
    return float((b[j - 1] + b[j]) / 2)


def search(scored: Sequence[Scored], config: CalibrateConfig | None = None,
           keep_threshold: float = -math.inf) -> Calibration:
    """Every weight of the grid with its best threshold; the chosen row maximises accuracy (ties: the middle
    of the tied weights, which sits inside the plateau rather than on its edge)."""
    config = config or CalibrateConfig()
    if not scored:
        raise CalibrationError("no examples to calibrate on")
    has_nil = any(x.gold is None for x in scored)
    do_search = config.threshold == "search" or (config.threshold == "auto" and has_nil)
    rows = []
    for w in sorted(set(config.weights)):
        if do_search:
            t, correct = best_threshold(scored, w)
        else:
            t = keep_threshold
            correct = sum(exact_match(e, x.gold) for e, x in zip(rerank(scored, w, t), scored))
        rows.append(GridRow(w, t, correct, len(scored), wilson_interval(correct, len(scored), config.confidence)))
    top = max(r.correct for r in rows)
    tied = [r for r in rows if r.correct == top]
    return Calibration(rows, tied[(len(tied) - 1) // 2], do_search)


# ---- writing the calibrated profile -----------------------------------------------------------------------
def profile_toml(config: LinkerConfig, header: str = "") -> str:
    """A complete profile TOML for ``config``; relative paths become absolute, so the file can live anywhere."""
    data = config.to_dict()
    lines = [f"# {line}" for line in header.splitlines()] + [
        f"name = {_toml_value(data['name'])}", f"description = {_toml_value(data['description'])}"]
    for section in ("llm", "vision", "embedder", "kb", "mapper", "demos", "decode", "image", "rank"):
        lines += ["", f"[{section}]"]
        for key, value in data[section].items():
            if key in PATH_FIELDS.get(section, ()) and not _keyword(config, section, key, value):
                value = _absolute(value, config.base_dir)
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _keyword(config: LinkerConfig, section: str, key: str, value: str) -> bool:
    """A value of a path field that names something else, never a file beside the profile, even where a folder of
    that name sits there: ``image.scorer = "clip"`` (CLIP's own score), an open_clip pretrained tag ("openai") as
    ``vision.weights``, which the loader reads as a path only when it is a file."""
    if (section, key) == ("image", "scorer"):
        return value == CLIP_SCORER
    if (section, key) == ("vision", "weights") and config.vision.kind == "open_clip" and value:
        return not (Path(config.base_dir) / value).expanduser().is_file()
    return False


def _absolute(value: str, base_dir: str) -> str:
    if not value or value.startswith("package:") or Path(value).expanduser().is_absolute() or not base_dir:
        return value
    candidate = Path(base_dir) / value
    return str(candidate.resolve()) if candidate.exists() else value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise CalibrationError(f"cannot write {value!r} ({type(value).__name__}) to a TOML profile")


def write_profile(config: LinkerConfig, path: str | Path, *, w_ret: float, nil_threshold: float,
                  mapper: str | None = None, note: str = "", image: dict[str, Any] | None = None) -> Path:
    """Write a copy of ``config`` with the calibrated ``decode.w_ret`` / ``nil_threshold`` (and mapper, and the
    fitted ``[image]`` values)."""
    changes: dict[str, dict[str, Any]] = {"decode": {"w_llm": 1.0, "w_ret": float(w_ret),
                                                     "nil_threshold": float(nil_threshold)}}
    if mapper:
        changes["mapper"] = {"checkpoint": str(Path(mapper).resolve())}
    if image:
        changes["image"] = dict(image)
    calibrated = config.replace(**changes)
    path = Path(path)
    if path.suffix != ".toml":
        raise CalibrationError(f"--out {str(path)!r} must end in .toml (it is a profile file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile_toml(calibrated, note), encoding="utf-8")
    return path
