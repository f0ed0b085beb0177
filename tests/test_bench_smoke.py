"""Benches cannot rot: every ``bench/*.py`` runs its ``--smoke`` mode and prints its last line's figures.

Each bench runs as ``python bench/X.py --smoke`` in a subprocess (seconds to a minute on tiny inputs, the same code
as the full run, outputs under ``bench/out/smoke/``); the test checks its exit status and that its last stdout
line holds the ``key=value`` figures the full run prints. The image benches use the stand-in corpus of
``bench/_smoke.py``, so they run without the picture packages. ``pytest -k smoke`` selects them all (about 6
minutes on 2 cores, the offline models' cache filled).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench._smoke import last_line_keys

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TIMEOUT_S = 600  # one bench; the longest takes ~75 s on 2 busy cores
NOT_WRITTEN = ROOT / "docs" / "img"  # full runs plot here; a smoke run must not
MACHINE_PRINTED = {"ranker", "learning_curve"}  # accuracy benches that say where they ran (bench/_machine.py)

STYLE_TRANSFER = ([f"proj_top1_aug{c}" for c in range(5)] + [f"fused_aug{c}" for c in range(5)]
                  + [f"fused_width{w}" for w in ("0.5", "0.75", "1.0", "1.5")]
                  + [f"nearest_bonus{b}" for b in ("0.0", "0.5", "1.0", "2.0")]
                  + ["selfsim_best", "palette_only_noto_twemoji"])

# bench -> the keys of its full run's last line
LAST_LINE: dict[str, list[str]] = {
    "ablation": ["n", "baseline", "reference", "full-kb-5", "n0", "seed-only", "kb-only", "text-only", "untrained",
                 "full-kb-1"],
    "annotations_load": ["writers", "acknowledged", "lost", "errors", "rate"],
    "demos": ["n4_cv", "n8_cv", "n16_cv", "n4_p50_s", "n8_p50_s", "n16_p50_s", "chosen_n"],
    "hub_first_start": ["entity_embed_s", "first_start_s", "link_p50_s", "offline_p50_s", "rss_mb"],
    "image_latency": ["image_ratio", "with_p50_s", "without_p50_s", "image_scores_ms"],
    "image_score": ["style_top1", "style_top10", "picture_top1", "entity_top1", "entity_top10", "groups_all_right",
                    "groups", "groups_projection", "groups_exemplars", "flags_top1", "flags_among_flags",
                    "flags_projection", "flags_exemplars", "pairs_unseen", "pairs_seen"],
    "kb_scale": ["entries", "build_s", "build_peak_mb", "open_s", "rss_mb", "recall16", "link_p50_s"],
    "learning_curve": ["n0", "n10", "n25", "n50", "refit50", "served50", "gate", "flips", "rec_n0", "rec_n10", "rec_n25",
                       "rec_n50", "rec_refit50", "rec_served50", "rec_gate", "rec_flips"],
    "link_latency": ["overhead_ratio", "naive_ratio", "floor_ratio", "link_p50_s", "rss_mb"],
    "memory": ["rss_mb", "rss_trimmed_mb", "peak_mb", "torch_mb", "libs_mb", "llm_mb", "embedder_mb", "vision_mb",
               "kb_mb", "gpu_libs_released_mb", "served_rss_mb", "served_peak_mb"],
    "precision": ["dtype", "link_p50_s", "floor_ratio", "rss_mb", "dev", "test", "changed_vs_fp32"],
    "quality": ["baseline_acc", "linker_acc", "n", "recall_at_k", "link_p50_s", "in_pool", "out_of_pool"],
    "ray_scale": ["items", "single_s", "ray1_s", "ray2_s", "speedup2", "same_answers"],
    "ranker": ["rule_test", "ranker_test", "ranker_cv", "groups", "flags", "photos_outpool", "nil_f1", "link_p50_s"],
    "scale": ["size", "array_build_s", "array_peak_mb", "array_held_mb", "array_file_mb", "array_lookup_us",
              "dict_build_s", "dict_peak_mb", "dict_lookup_us", "retrieval_size", "exact_ms", "hnsw_ms",
              "hnsw_recall16"],
    "style_transfer": STYLE_TRANSFER,
}


def benches() -> list[str]:
    """The bench scripts (``bench/_*.py`` are helpers)."""
    return sorted(p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def test_every_bench_has_a_smoke_test():
    """A new bench must come with its last line's keys here (and so with a --smoke mode)."""
    assert benches() == sorted(LAST_LINE), "add the new bench to LAST_LINE (and give it a --smoke mode)"


@pytest.mark.parametrize("bench", sorted(LAST_LINE))
def test_bench_smoke(bench: str):
    before = mtimes(NOT_WRITTEN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    try:
        run = subprocess.run([sys.executable, str(BENCH / f"{bench}.py"), "--smoke"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bench/{bench}.py --smoke ran over {TIMEOUT_S} s")
    assert run.returncode == 0, f"bench/{bench}.py --smoke exited {run.returncode}:\n{run.stderr[-4000:]}"
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert lines, f"bench/{bench}.py --smoke printed nothing on stdout:\n{run.stderr[-2000:]}"
    got = last_line_keys(lines[-1])
    missing = [k for k in LAST_LINE[bench] if k not in got]
    assert not missing, f"the last line of bench/{bench}.py --smoke lacks {missing}: {lines[-1]!r}"
    assert all(got[k] for k in LAST_LINE[bench]), f"empty figures in {lines[-1]!r}"
    if bench in MACHINE_PRINTED:
        assert any(line.startswith("machine: ") for line in lines), f"bench/{bench}.py printed no machine line"
    assert mtimes(NOT_WRITTEN) == before, f"bench/{bench}.py --smoke wrote into {NOT_WRITTEN}"
