"""A Space's choice of profile (demo/space.py): the offline default at once, `hub` (CLIP) switched to in the
background when the model hub answers or CLIP is in the local cache; GEMEL_PROFILE overrides; a failed download is
one sentence and the offline default keeps serving. The hub is simulated by huggingface_hub's own cache read with
``HF_HUB_OFFLINE=1`` (random-weight models saved in its layout, conftest); the studio by a stand-in with the
real `Studio.swap_linker`'s contract."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest

from bench._hub import alias
from conftest import HUB_B32, HUB_TINY, hub_like_profile, offline_hub_env
from demo import space
from gemel.config import LinkerConfig, load_profile
from gemel.image.clip import ClipEntityScorer
from gemel.types import Example

HUB_REPO = load_profile("hub").vision.name.removeprefix("hf-hub:")


def never_answers(repo: str, timeout_s: float) -> bool:
    return False


def always_answers(repo: str, timeout_s: float) -> bool:
    return True


# ---- the plan ------------------------------------------------------------------------------------------------
def test_gemel_profile_overrides_everything():
    plan = space.plan_start({"GEMEL_PROFILE": "paper"}, answers=lambda *a: pytest.fail("the hub must not be asked"))
    assert (plan.serve, plan.upgrade) == ("paper", None) and "GEMEL_PROFILE=paper" in plan.note


def test_an_unreachable_hub_without_clip_cached_serves_offline_and_says_so(tmp_path, monkeypatch):
    with offline_hub_env(tmp_path / "empty", monkeypatch):
        plan = space.plan_start({}, timeout_s=3, answers=never_answers)
    assert (plan.serve, plan.upgrade) == ("offline", None)
    assert plan.note.startswith("the model hub did not answer within 3 s and CLIP is not in the local cache")
    assert "serving the offline default" in plan.note and "\n" not in plan.note


def test_a_reachable_hub_serves_offline_first_then_switches_to_hub(tmp_path, monkeypatch):
    plan = space.plan_start({}, answers=always_answers)
    assert (plan.serve, plan.upgrade, plan.hub_reachable) == ("offline", "hub", True)


@pytest.mark.slow  # the random-weight ViT-B-32 in the hub cache (600 MB, built once and kept)
def test_with_clip_in_the_local_cache_the_space_chooses_hub(hub_cache_b32, tmp_path, monkeypatch):
    cache = alias(hub_cache_b32, HUB_B32, HUB_REPO, tmp_path / "hub")
    with offline_hub_env(cache, monkeypatch):
        plan = space.plan_start(dict(os.environ), answers=lambda *a: pytest.fail("offline: the hub is not asked"))
        assert (plan.serve, plan.upgrade, plan.hub_reachable) == ("offline", "hub", False)
        assert "HF_HUB_OFFLINE" in plan.note and "in the local cache" in plan.note
        # ... and the hub profile's vision model loads from that cache, as the switch will load it
        from gemel.models.vision import VisionEncoder

        encoder = VisionEncoder.load(load_profile("hub").vision)
    assert encoder.dim == 768 and encoder.clip.image_projection.shape == (768, 512)


def test_persistent_storage_keeps_the_hub_cache(tmp_path):
    env: dict[str, str] = {}
    assert space.default_hub_home(env, storage=tmp_path / "absent") is None and env == {}
    assert space.default_hub_home(env, storage=tmp_path) == tmp_path / "huggingface"
    assert space.default_hub_home({"HF_HOME": "/mine"}, storage=tmp_path) is None


def test_the_hub_check_gives_up_in_time():
    import time

    t0 = time.perf_counter()
    assert not space.hub_answers("org/name", timeout_s=0.5, env={"HF_ENDPOINT": "http://10.255.255.1:9"})
    assert time.perf_counter() - t0 < 2


# ---- the switch ----------------------------------------------------------------------------------------------
class StandInStudio:
    """What `HubUpgrade` uses of `demo.handlers.Studio`: ``linker`` and ``swap_linker`` under a lock."""

    def __init__(self, linker) -> None:
        self.linker = linker
        self.lock = threading.RLock()
        self.swaps = 0

    def swap_linker(self, change):
        with self.lock:
            self.linker = change(self.linker)
            self.swaps += 1
            return self.linker


@pytest.fixture
def serving(tiny_linker):
    """A studio serving a variant of the tiny linker with one correction in its pool."""
    live = tiny_linker.replace(pool=[])
    live.add_demonstrations([Example(id="c1", text="We saw the river.", mention="the river", entity="Jordan River",
                                     source="correction")])
    return StandInStudio(live)


def test_the_switch_serves_hub_and_keeps_the_corrections(serving, tiny_dir, offline_hub, caplog):
    caplog.set_level(logging.INFO)
    config = LinkerConfig.from_dict(hub_like_profile(tiny_dir), name="hub-tiny", base_dir=tiny_dir)
    before = serving.linker
    upgrade = space.HubUpgrade(serving, config, local_only=True).start()
    assert upgrade.done.wait(120)
    assert upgrade.switched and serving.swaps == 1, upgrade.status
    hub = serving.linker
    assert hub.config.name == "hub-tiny" and isinstance(hub.image_scorer, ClipEntityScorer)
    assert hub.lm is before.lm and hub.kb is before.kb and hub.embedder is before.embedder  # one LLM, one KB
    assert "c1" in {e.id for e in hub.labelled_pool.live()}
    assert upgrade.status.startswith("serving 'hub-tiny'")
    serving.hub_upgrade = upgrade
    assert space.header_note(serving) == (f"profile hub-tiny · pictures: {hub.image_scorer.version} · decided by "
                                          f"{hub.ranker.version}")
    assert "embedding entity texts for CLIP" in caplog.text or "CLIP entity texts" in caplog.text
    pred = hub.link(str(tiny_dir / "img.png"), "We saw the river from the bus.", "the river")
    assert pred.profile == "hub-tiny" and any(c.image_score is not None for c in pred.candidates)


def test_a_failed_download_is_one_sentence_and_offline_keeps_serving(serving, tiny_dir, tmp_path, monkeypatch,
                                                                      caplog):
    caplog.set_level(logging.INFO)
    d = hub_like_profile(tiny_dir)
    d["vision"]["name"] = "hf-hub:gemel-test/not-downloaded"
    config = LinkerConfig.from_dict(d, name="hub-tiny", base_dir=tiny_dir)
    before = serving.linker
    with offline_hub_env(tmp_path / "empty", monkeypatch):
        upgrade = space.HubUpgrade(serving, config, local_only=True)
        upgrade.run()  # in this thread: the same steps
    assert serving.linker is before and serving.swaps == 0 and not upgrade.switched
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "\n" not in message and "gemel-test/not-downloaded" in message and "--profile offline" in message
    assert upgrade.status.startswith("still on the offline default: the open_clip model")
    serving.hub_upgrade = upgrade
    assert space.header_note(serving).startswith(f"profile tiny · pictures: prefix only · decided by "
                                                 f"{serving.linker.ranker.version} · still on the offline")


def test_upgrade_when_ready_starts_nothing_without_an_upgrade():
    plan = space.StartPlan("offline", None, "the model hub did not answer")
    assert space.upgrade_when_ready(plan)(object()) is None


def test_the_tiny_hub_linker_scores_pictures_like_its_scorer(serving, tiny_dir, offline_hub):
    """Both ways of building the hub linker (the switch's, beside the live one; Linker.load's) give the same
    image scores."""
    from gemel.linker import Linker

    config = LinkerConfig.from_dict(hub_like_profile(tiny_dir), name="hub-tiny", base_dir=tiny_dir)
    upgrade = space.HubUpgrade(serving, config, local_only=True)
    upgrade.run()
    beside = serving.linker.image_scorer
    alone = Linker.load(config).image_scorer
    picture = tiny_dir / "img.png"
    assert np.allclose(beside.score(picture, beside.kb_vectors).fused, alone.score(picture, alone.kb_vectors).fused,
                       atol=1e-6)
    assert HUB_TINY in config.vision.name
