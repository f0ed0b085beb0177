"""The Data tab's chart (`demo.charts`): a count on every bar and point, no point without scored decisions."""

from __future__ import annotations

import pytest

from demo.charts import NO_SCORES, MapperScore, corrections_chart, corrections_figure, mapper_scores
from gemel.data.plots import PlotError


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
    path = corrections_chart([("2024-05-01", 2)], [MapperScore("v1", 0.5, 2)], tmp_path / "sub" / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("score, message", [
    (lambda: MapperScore("v1", 45.0, 2), "fraction in \\[0, 1\\], not a percentage"),
    (lambda: MapperScore("v1", 0.5, 0), "n=0 must be an integer >= 1"),
])
def test_bad_scores_are_named(score, message):
    with pytest.raises(PlotError, match=message):
        score()
