"""The Data tab's chart: corrections per day (bars, left) and the model's accuracy on the decisions made with each
mapper version (points, right), every bar and point labelled with its count, since an accuracy of 0.0 on one
decision and on a hundred look alike. A version without a scored decision gets no point: the panel says "no
scored decisions yet" instead of drawing a dot at 0.0.

Drawn like `gemel.data.plots` (matplotlib's object API on an Agg canvas, never ``pyplot``'s global state, so a
web server's worker threads can draw; matplotlib imported inside the functions), with its `PlotConfig` sizes
and its `PlotError` for data that cannot be drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemel.data.plots import PlotConfig, PlotError

NO_SCORES = "no scored decisions yet"
NO_CORRECTIONS = "no corrections yet"


@dataclass(frozen=True)
class MapperScore:
    """The model's accuracy on ``n`` current decisions made while mapper ``version`` served."""

    version: str
    accuracy: float
    n: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise PlotError(f"mapper {self.version!r}: n={self.n!r} must be an integer >= 1 (drop unscored versions)")
        if not 0.0 <= self.accuracy <= 1.0:
            raise PlotError(f"mapper {self.version!r}: accuracy {self.accuracy!r} must be a fraction in [0, 1], "
                            "not a percentage")


def mapper_scores(rows: Sequence[Mapping[str, Any]]) -> list[MapperScore]:
    """The ``model_accuracy`` rows of `annotations.Store.stats` that hold scored decisions, as points to draw:
    a row without decisions or without an accuracy is left out (it would be a dot at 0.0 that means nothing)."""
    out = []
    for r in rows:
        n, acc = int(r.get("decisions") or 0), r.get("accuracy")
        if n > 0 and acc is not None and not math.isnan(float(acc)):
            out.append(MapperScore(str(r.get("mapper_version")), float(acc), n))
    return out


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_per_day(ax: Any, per_day: Sequence[tuple[str, int]]) -> None:
    """Bars of corrections per day, each with its count on top."""
    if not per_day:
        _empty(ax, NO_CORRECTIONS)
        return
    bars = ax.bar(range(len(per_day)), [int(c) for _, c in per_day], color="tab:orange")
    ax.bar_label(bars, fontsize=8)
    ax.yaxis.get_major_locator().set_params(integer=True)  # corrections are whole numbers
    ax.set_xticks(range(len(per_day)), [str(d) for d, _ in per_day], rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="corrections", title="corrections per day")


def _draw_scores(ax: Any, scores: Sequence[MapperScore]) -> None:
    """One point per mapper version with scored decisions, labelled "n=<decisions>"; none without data."""
    if not scores:
        _empty(ax, NO_SCORES)
        return
    xs = range(len(scores))
    ax.plot(xs, [s.accuracy for s in scores], marker="o", color="tab:green")
    for x, s in zip(xs, scores):
        ax.annotate(f"n={s.n}", (x, s.accuracy), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_xticks(xs, [s.version for s in scores], rotation=45, ha="right", fontsize=8)
    # room around the points: a point at 0.0 or 1.0, or a lone version, is drawn whole with its label
    ax.set(xlim=(-0.5, len(scores) - 0.5), ylim=(-0.05, 1.12), ylabel="accuracy",
           title="model accuracy by mapper version")


def corrections_figure(per_day: Sequence[tuple[str, int]], scores: Sequence[MapperScore],
                       config: PlotConfig | None = None) -> Any:
    """The chart as a matplotlib ``Figure`` (its axes hold the labels: what the tests read)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    config = config or PlotConfig()
    fig = Figure(figsize=(config.width / config.dpi, config.height / config.dpi), dpi=config.dpi,
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax_days, ax_scores = fig.subplots(1, 2)
    _draw_per_day(ax_days, per_day)
    _draw_scores(ax_scores, scores)
    return fig


def corrections_chart(per_day: Sequence[tuple[str, int]], scores: Sequence[MapperScore], path: str | Path,
                      config: PlotConfig | None = None) -> Path:
    """`corrections_figure` saved as a PNG at ``path`` (its folder is made); returns the path."""
    config = config or PlotConfig()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    corrections_figure(per_day, scores, config).savefig(path, format="png", dpi=config.dpi)
    return path
