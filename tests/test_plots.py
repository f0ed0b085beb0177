"""Report plots: each writes a PNG of the configured size; bad data raises PlotError naming the value."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gemel.data.plots import (
    NO_SCORES,
    MapperScore,
    PlotConfig,
    PlotError,
    corrections_figure,
    mapper_scores,
    plot_ablation,
    plot_corrections,
    plot_precision,
    plot_training,
)

SMALL = PlotConfig(width=320, height=200, dpi=80)
LOG = [{"step": i, "loss": 3.0 / (i + 1)} for i in range(30)] + [
    {"epoch": 1, "dev_accuracy": 0.42}, {"epoch": 2, "dev_acc": 0.51, "step": 30, "loss": 0.1}]
ROWS = [{"name": "GEMEL (full)", "accuracy": 0.8, "ci_low": 0.7, "ci_high": 0.88},
        {"name": "no image prefix", "accuracy": 0.6, "ci_low": 0.5, "ci_high": 0.7},
        {"name": "no demonstrations", "accuracy": 0.0, "ci_low": 0.0, "ci_high": 0.1}]
PER_DAY = [(dt.date(2024, 5, d), d % 4) for d in range(1, 8)]
BY_MAPPER = [MapperScore("untrained", 0.31, 4), MapperScore("v1", 0.45, 11), MapperScore("v2-2024-05-07", 0.52, 25)]
PRECISION = [{"dtype": "float32", "link_p50_s": 1.3, "floor_s": 0.8, "dev_accuracy": 0.79, "test_accuracy": 0.81,
              "rss_mb": 2080.0},
             {"dtype": "bfloat16", "link_p50_s": 0.6, "floor_s": 0.5, "dev_accuracy": 0.79, "test_accuracy": 0.79,
              "rss_mb": 1500.0}]


def _png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 1000, "a real picture, not an empty file"
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.parametrize("draw", [
    lambda p, c: plot_training(LOG, p, c),
    lambda p, c: plot_training([{"loss": 1.0}, {"loss": 0.5}], p, c),  # no dev evaluation yet
    lambda p, c: plot_ablation(ROWS, p, c),
    lambda p, c: plot_corrections(PER_DAY, BY_MAPPER, p, c),
    lambda p, c: plot_corrections([("2024-05-01", 3)], [], p, c),  # nothing evaluated yet
    lambda p, c: plot_corrections([], [], p, c),
    lambda p, c: plot_precision(PRECISION, p, c),
], ids=["training", "training-no-dev", "ablation", "corrections", "corrections-no-mapper", "corrections-empty",
        "precision"])
@pytest.mark.parametrize("config", [SMALL, PlotConfig(width=500, height=301, dpi=100)], ids=["small", "odd"])
def test_writes_png_of_configured_size(tmp_path: Path, draw, config: PlotConfig) -> None:
    path = tmp_path / "out" / "figure.png"
    returned = draw(path, config)
    assert Path(returned) == path
    assert _png_size(path) == (config.width, config.height)


def test_default_size(tmp_path: Path) -> None:
    assert _png_size(plot_ablation(ROWS[:1], tmp_path / "a.png")) == (PlotConfig().width, PlotConfig().height)


@pytest.mark.parametrize("draw,fragment", [
    (lambda p: plot_training([], p), "nothing to plot"),
    (lambda p: plot_training([{"epoch": 1}], p), "nothing to plot"),
    (lambda p: plot_training(["loss=1"], p), r"log\[0\] = .loss=1. is not a dict"),
    (lambda p: plot_training([{"step": 1, "loss": "high"}], p), r"log\[0\]\['loss'\] must be a number"),
    (lambda p: plot_ablation([], p), "no rows"),
    (lambda p: plot_ablation([{"accuracy": 0.5}], p), "must be a dict with name"),
    (lambda p: plot_ablation([{"name": "a", "accuracy": 80, "ci_low": 70, "ci_high": 90}], p), "not percentages"),
    (lambda p: plot_ablation([{"name": "a", "accuracy": 0.5, "ci_low": 0.6, "ci_high": 0.9}], p),
     r"rows\[0\] \('a'\): need 0 <= ci_low <= accuracy"),
    (lambda p: plot_corrections([(dt.date(2024, 1, 1), -2)], [], p), "count -2 must be an integer >= 0"),
    (lambda p: plot_corrections([(20240101, 2)], [], p), "must be a datetime.date or an ISO date string"),
    (lambda p: plot_corrections([], [MapperScore("v1", 45.0, 2)], p), "fraction in \\[0, 1\\]"),
    (lambda p: plot_precision([], p), "no rows"),
    (lambda p: plot_precision([{**PRECISION[0], "dev_accuracy": 79.0}], p), "not percentages"),
    (lambda p: plot_precision([{"dtype": "int8", "link_p50_s": 1.0}], p), r"rows\[0\]\['floor_s'\] must be a number"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_data_is_refused(tmp_path: Path, draw, fragment: str) -> None:
    path = tmp_path / "x.png"
    with pytest.raises(PlotError, match=fragment):
        draw(path)
    assert not path.exists()


@pytest.mark.parametrize("kwargs,fragment", [
    ({"width": 10}, "size 10x480 px"),
    ({"height": 9000}, "size 900x9000 px"),
    ({"dpi": 5}, "dpi=5"),
])
def test_plot_config_rejects(kwargs: dict, fragment: str) -> None:
    with pytest.raises(PlotError, match=fragment):
        PlotConfig(**kwargs)


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, gemel.data.plots; sys.exit('matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=root, timeout=60).returncode == 0


# ---- the Data tab's chart: a count on every bar and point, no point without scored decisions ----------------
def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def points(ax) -> list[tuple[float, float]]:
    return [tuple(xy) for line in ax.get_lines() for xy in line.get_xydata()]


def test_without_scored_decisions_there_is_no_point_and_the_panel_says_so():
    fig = corrections_figure([], mapper_scores([]))
    _, scores = fig.axes
    assert points(scores) == [] and texts(scores) == [NO_SCORES]


def test_rows_without_decisions_or_accuracy_are_not_drawn():
    rows = [{"mapper_version": "v0", "decisions": 0, "correct": None, "accuracy": None},
            {"mapper_version": "v1", "decisions": 0, "correct": 0, "accuracy": 0.0},
            {"mapper_version": "v2", "decisions": 3, "correct": 2, "accuracy": 2 / 3}]
    assert mapper_scores(rows) == [MapperScore("v2", 2 / 3, 3)]


def test_every_point_and_bar_carries_its_count():
    fig = corrections_figure([("2024-05-01", 1), ("2024-05-02", 4)], [MapperScore("v1", 0.0, 1),
                                                                     MapperScore("v2", 0.75, 4)])
    days, scores = fig.axes
    assert points(scores) == [(0.0, 0.0), (1.0, 0.75)]
    assert [t for t in texts(scores)] == ["n=1", "n=4"]
    assert texts(days) == ["1", "4"]


def test_the_png_is_written(tmp_path):
    path = plot_corrections([("2024-05-01", 2)], [MapperScore("v1", 0.5, 2)], tmp_path / "sub" / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("score, message", [
    (lambda: MapperScore("v1", 45.0, 2), "fraction in \\[0, 1\\], not a percentage"),
    (lambda: MapperScore("v1", 0.5, 0), "n=0 must be an integer >= 1"),
])
def test_bad_scores_are_named(score, message):
    with pytest.raises(PlotError, match=message):
        score()
