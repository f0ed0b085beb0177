"""Report figures as PNG files: the training curve, an ablation chart with confidence intervals, and the
annotation loop (corrections per day, accuracy per mapper version).

Figures are drawn with matplotlib's object API on an Agg canvas (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``), never through ``pyplot``'s global state, so they can be made from a web server's
worker threads; matplotlib is imported inside the functions, which keeps ``import gemel`` light.
The ablation chart follows the habit of reporting small-sample accuracies with their intervals
(see `gemel.data.metrics.wilson_interval`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemel.errors import GemelError


class PlotError(GemelError):
    """The data given to a plot function cannot be drawn; the message names the bad value."""


@dataclass(frozen=True)
class PlotConfig:
    width: int = 900  # pixels of the PNG
    height: int = 480  # pixels of the PNG
    dpi: int = 100  # dots per inch; the figure is width/dpi x height/dpi inches

    def __post_init__(self) -> None:
        if not (64 <= self.width <= 8000 and 64 <= self.height <= 8000):
            raise PlotError(f"size {self.width}x{self.height} px must be within 64..8000 on each side")
        if not 20 <= self.dpi <= 600:
            raise PlotError(f"dpi={self.dpi} must be within 20..600 (100 is the default)")


def _figure(config: PlotConfig, ncols: int) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(config.width / config.dpi, config.height / config.dpi), dpi=config.dpi,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Any, path: str | Path, config: PlotConfig) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=config.dpi)
    return path


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise PlotError(f"{what} must be a number, got {value!r}")
    return float(value)


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- training curve


def _training_series(log: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    loss: list[tuple[float, float]] = []
    dev: list[tuple[float, float]] = []
    for i, entry in enumerate(log):
        if not isinstance(entry, Mapping):
            raise PlotError(f"log[{i}] = {entry!r} is not a dict like {{'step': 10, 'loss': 2.3}}")
        if entry.get("loss") is not None:
            step = entry.get("step", len(loss))
            loss.append((_number(step, f"log[{i}]['step']"), _number(entry["loss"], f"log[{i}]['loss']")))
        acc = entry.get("dev_accuracy", entry.get("dev_acc"))
        if acc is not None:
            epoch = entry.get("epoch", len(dev) + 1)
            dev.append((_number(epoch, f"log[{i}]['epoch']"), _number(acc, f"log[{i}]['dev_accuracy']")))
    return loss, dev


def plot_training(log: Sequence[Mapping[str, Any]], path: str | Path, config: PlotConfig | None = None) -> Path:
    """Training loss per step (left) and dev accuracy per epoch (right) -> PNG at path.

    ``log`` entries are ``{"step", "loss"}`` and ``{"epoch", "dev_accuracy"}`` dicts (``dev_acc`` accepted),
    in any mix; an entry may hold both.
    """
    config = config or PlotConfig()
    loss, dev = _training_series(log)
    if not loss and not dev:
        raise PlotError("the log has no 'loss' and no 'dev_accuracy' entries: nothing to plot")
    fig, (ax_loss, ax_dev) = _figure(config, 2)
    if loss:
        ax_loss.plot([s for s, _ in loss], [v for _, v in loss], color="tab:blue", linewidth=1)
        ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    else:
        _empty(ax_loss, "no loss logged")
    if dev:
        ax_dev.plot([e for e, _ in dev], [v for _, v in dev], marker="o", color="tab:green")
        ax_dev.set(xlabel="epoch", ylabel="dev accuracy", title="dev accuracy", ylim=(0, 1))
    else:
        _empty(ax_dev, "no dev evaluation yet")
    return _save(fig, path, config)


# ----------------------------------------------------------------------------- ablation


def _ablation_row(i: int, row: Mapping[str, Any]) -> tuple[str, float, float, float]:
    if not isinstance(row, Mapping) or "name" not in row:
        raise PlotError(f"rows[{i}] = {row!r} must be a dict with name, accuracy, ci_low, ci_high")
    acc = _number(row.get("accuracy"), f"rows[{i}]['accuracy']")
    low = _number(row.get("ci_low", acc), f"rows[{i}]['ci_low']")
    high = _number(row.get("ci_high", acc), f"rows[{i}]['ci_high']")
    if not 0.0 <= low <= acc <= high <= 1.0:
        raise PlotError(f"rows[{i}] ({row['name']!r}): need 0 <= ci_low <= accuracy <= ci_high <= 1, got "
                        f"{low} <= {acc} <= {high}; accuracies are fractions, not percentages")
    return str(row["name"]), acc, low, high


def plot_ablation(rows: Sequence[Mapping[str, Any]], path: str | Path, config: PlotConfig | None = None) -> Path:
    """Horizontal bars of accuracy with confidence-interval whiskers, first row on top -> PNG at path."""
    config = config or PlotConfig()
    parsed = [_ablation_row(i, r) for i, r in enumerate(rows)]
    if not parsed:
        raise PlotError("no rows to plot: give at least one {name, accuracy, ci_low, ci_high} dict")
    fig, (ax,) = _figure(config, 1)
    accs = [p[1] for p in parsed]
    errors = [[a - lo for _, a, lo, _ in parsed], [hi - a for _, a, _, hi in parsed]]
    ys = list(range(len(parsed)))
    ax.barh(ys, accs, xerr=errors, color="tab:blue", alpha=0.8, capsize=4, error_kw={"elinewidth": 1})
    labels = [f"{name}\n{acc:.3f} [{low:.3f}, {high:.3f}]" for name, acc, low, high in parsed]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="accuracy (whiskers: confidence interval)", title="ablation")
    return _save(fig, path, config)


# ----------------------------------------------------------------------------- annotation loop


def _day_label(day: Any, i: int) -> str:
    if isinstance(day, (dt.date, dt.datetime)):
        return day.isoformat()[:10]
    if isinstance(day, str) and day:
        return day
    raise PlotError(f"per_day[{i}] date {day!r} must be a datetime.date or an ISO date string")


def _count(value: Any, i: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PlotError(f"per_day[{i}] count {value!r} must be an integer >= 0")
    return value


NO_SCORES = "no scored decisions yet"


@dataclass(frozen=True)
class MapperScore:
    """The model's accuracy on ``n`` current decisions made while mapper ``version`` served."""

    version: str
    accuracy: float  # a fraction in [0, 1]
    n: int  # decisions scored (>= 1)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise PlotError(f"mapper {self.version!r}: n={self.n!r} must be an integer >= 1 (drop unscored versions)")
        if not 0.0 <= _number(self.accuracy, f"accuracy of mapper {self.version!r}") <= 1.0:
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


def _draw_per_day(ax: Any, per_day: Sequence[tuple[Any, int]]) -> None:
    """Bars of corrections per day, each with its count on top."""
    if not per_day:
        _empty(ax, "no corrections yet")
        return
    labels = [_day_label(day, i) for i, (day, _) in enumerate(per_day)]
    counts = [_count(c, i) for i, (_, c) in enumerate(per_day)]
    bars = ax.bar(range(len(counts)), counts, color="tab:orange")
    ax.bar_label(bars, fontsize=8)
    ax.yaxis.get_major_locator().set_params(integer=True)  # corrections are whole numbers
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="corrections", title="corrections per day")


def _draw_by_mapper(ax: Any, scores: Sequence[MapperScore]) -> None:
    """One point per mapper version with scored decisions, labelled "n=<decisions>" (an accuracy of 0.0 on one
    decision and on a hundred look alike otherwise); none without data."""
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


def corrections_figure(per_day: Sequence[tuple[Any, int]], scores: Sequence[MapperScore],
                       config: PlotConfig | None = None) -> Any:
    """Corrections made per day (bars, left) and the model's accuracy per mapper version (points, right), every
    bar and point labelled with its count, as a matplotlib ``Figure``."""
    fig, (ax_days, ax_mapper) = _figure(config or PlotConfig(), 2)
    _draw_per_day(ax_days, per_day)
    _draw_by_mapper(ax_mapper, scores)
    return fig


def plot_corrections(per_day: Sequence[tuple[Any, int]], scores: Sequence[MapperScore],
                     path: str | Path, config: PlotConfig | None = None) -> Path:
    """:func:`corrections_figure` -> PNG at ``path`` (the Data tab's chart)."""
    config = config or PlotConfig()
    return _save(corrections_figure(per_day, scores, config), path, config)


# ----------------------------------------------------------------------------- precision


_PRECISION_KEYS = ("link_p50_s", "floor_s", "dev_accuracy", "test_accuracy", "rss_mb")


def _precision_row(i: int, row: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    if not isinstance(row, Mapping) or "dtype" not in row:
        raise PlotError(f"rows[{i}] = {row!r} must be a dict with dtype, {', '.join(_PRECISION_KEYS)}")
    values = {k: _number(row.get(k), f"rows[{i}]['{k}']") for k in _PRECISION_KEYS}
    if not all(0.0 <= values[k] <= 1.0 for k in ("dev_accuracy", "test_accuracy")):
        raise PlotError(f"rows[{i}] ({row['dtype']!r}): accuracies must be fractions in [0, 1], not percentages")
    return str(row["dtype"]), values


def plot_precision(rows: Sequence[Mapping[str, Any]], path: str | Path, config: PlotConfig | None = None) -> Path:
    """One group per LLM precision: link p50 beside its prefill floor (left), dev and test accuracy
    (middle), peak RSS (right) -> PNG at path."""
    config = config or PlotConfig()
    parsed = [_precision_row(i, r) for i, r in enumerate(rows)]
    if not parsed:
        raise PlotError("no rows to plot: give at least one {dtype, link_p50_s, floor_s, ...} dict")
    fig, (ax_time, ax_acc, ax_rss) = _figure(config, 3)
    xs = list(range(len(parsed)))
    names = [name for name, _ in parsed]
    for ax, keys, labels, ylabel, title in (
            (ax_time, ("link_p50_s", "floor_s"), ("link p50", "prefill floor"), "seconds", "link time"),
            (ax_acc, ("dev_accuracy", "test_accuracy"), ("dev", "test"), "accuracy", "accuracy")):
        for j, (key, label) in enumerate(zip(keys, labels)):
            ax.bar([x + (j - 0.5) * 0.38 for x in xs], [v[key] for _, v in parsed], width=0.38, label=label)
        ax.set_xticks(xs, names)
        ax.set(ylabel=ylabel, title=title)
        ax.legend(fontsize=8)
    ax_acc.set_ylim(0, 1)
    ax_rss.bar(xs, [v["rss_mb"] for _, v in parsed], color="tab:gray")
    ax_rss.set_xticks(xs, names)
    ax_rss.set(ylabel="MB", title="peak RSS")
    return _save(fig, path, config)
