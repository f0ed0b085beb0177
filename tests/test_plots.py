"""Report plots: each writes a PNG of the configured size; bad data raises PlotError naming the value."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from gemel.data.plots import PlotConfig, PlotError, plot_ablation, plot_corrections, plot_precision, plot_training

SMALL = PlotConfig(width=320, height=200, dpi=80)
LOG = [{"step": i, "loss": 3.0 / (i + 1)} for i in range(30)] + [
    {"epoch": 1, "dev_accuracy": 0.42}, {"epoch": 2, "dev_acc": 0.51, "step": 30, "loss": 0.1}]
ROWS = [{"name": "GEMEL (full)", "accuracy": 0.8, "ci_low": 0.7, "ci_high": 0.88},
        {"name": "no image prefix", "accuracy": 0.6, "ci_low": 0.5, "ci_high": 0.7},
        {"name": "no demonstrations", "accuracy": 0.0, "ci_low": 0.0, "ci_high": 0.1}]
PER_DAY = [(dt.date(2024, 5, d), d % 4) for d in range(1, 8)]
BY_MAPPER = [("untrained", 0.31), ("v1", 0.45), ("v2-2024-05-07", 0.52)]
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
    (lambda p: plot_corrections([], [("v1", 45.0)], p), "fractions in \\[0, 1\\]"),
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
