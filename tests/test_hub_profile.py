"""The shipped ``hub`` profile: the offline default's LLM, embedder and KB, CLIP from the Hugging Face Hub; without
the hub (this machine) loading it is one sentence, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HUB_TINY, offline_hub_env
from gemel.config import load_profile
from gemel.models.vision import HubModelError, VisionEncoder, fetch_open_clip

ROOT = Path(__file__).resolve().parents[1]


def test_hub_shares_the_offline_defaults_llm_embedder_and_kb():
    hub, offline = load_profile("hub"), load_profile("offline")
    assert (hub.llm, hub.embedder, hub.kb) == (offline.llm, offline.embedder, offline.kb)
    assert hub.decode == offline.decode and hub.mapper == offline.mapper


def test_hub_uses_clip_three_ways():
    hub = load_profile("hub")
    assert (hub.vision.kind, hub.vision.name) == ("open_clip", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert hub.image.scorer == "clip" and hub.image.candidates > 0  # its top entity joins the candidates
    assert hub.demos.w_image > 0  # the picture helps choose the demonstrations
    assert hub.mapper.prefix_length == 4  # CLIP's pooled feature feeds the mapper, as in the paper
    assert not hub.rank.active and hub.rank.fit_at_start  # the text ranker until one is fitted on CLIP's scores


def test_without_the_hub_the_model_is_one_sentence(tmp_path, monkeypatch):
    with offline_hub_env(tmp_path / "empty-hub-cache", monkeypatch):
        with pytest.raises(HubModelError) as e:
            VisionEncoder.load(load_profile("hub").vision)
    message = str(e.value)
    assert "\n" not in message and message.count(". ") == 0, message
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message and "--profile offline" in message


def test_fetch_finds_a_cached_model_offline(hub_cache, monkeypatch):
    with offline_hub_env(hub_cache, monkeypatch):
        config, weights = fetch_open_clip(f"hf-hub:{HUB_TINY}")
    assert config.name == "open_clip_config.json" and weights.name == "open_clip_model.safetensors"
    assert weights.stat().st_size > 0


def test_a_profile_that_disagrees_with_the_models_preprocessing_is_refused(hub_cache, monkeypatch):
    from gemel.config import ProfileError, VisionConfig

    config = VisionConfig(kind="open_clip", name=f"hf-hub:{HUB_TINY}", image_size=32, crop_pct=1.0)  # mean 0.5
    with offline_hub_env(hub_cache, monkeypatch), pytest.raises(ProfileError, match=r"vision.mean .* the model's"):
        VisionEncoder.load(config)


@pytest.mark.slow  # a subprocess that loads the offline LLM before the vision model fails
@pytest.mark.offline_model
def test_gemel_link_with_the_hub_profile_says_one_sentence(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "gemel", "link", "--profile", "hub", "--text",
                          "Hopper built a compiler.", "--mention", "Hopper"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("gemel: error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "CLIP-ViT-B-32-laion2B-s34B-b79K" in errors[0]


def test_a_clip_profile_has_no_scorer_artifact_to_load_or_retrain():
    from gemel.training.image_scorer import profile_artifact

    assert profile_artifact("hub") is None and profile_artifact("paper") is None  # "clip" is a keyword, not a file
    assert profile_artifact("offline").name == "image_scorer.pt"
