"""A profile fits its decision rule for its own image scorer at its first start (``[rank] fit_at_start``,
gemel/training/first_start.py): fitted once on the fitting data and cached per scorer, recorded with that scorer,
read at the next start, refused for another scorer; until then the profile's unfitted rule decides and the answer
says so. The `paper` profile gets the same CLIP scorer from its ViT-L/14.

The CLIP is conftest's random-weight tiny one in a local hub cache, read with ``HF_HUB_OFFLINE=1`` through the real
loader (``hf-hub:gemel-test/clip-tiny``); the fitting set is conftest's tiny seed file (the shipped path uses
``FITTING_DATA``, checked here to ship)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from fnmatch import fnmatch
from pathlib import Path

import pytest
import tomllib
from conftest import HUB_TINY, hub_like_profile

from demo import space
from gemel.config import LinkerConfig, load_profile
from gemel.image.clip import ClipEntityScorer
from gemel.rank.model import Ranker, RankerError, fitted_path
from gemel.training import first_start

ROOT = Path(__file__).resolve().parents[1]
RULE = "decided by the shipped ranker that reads no picture feature (no ranker fitted on CLIP's scores yet)"
QUERY = ("We saw the river from the bus.", "the river")

pytestmark = pytest.mark.usefixtures("one_thread")


def fitting_config(tiny_dir, **sections) -> LinkerConfig:
    d = hub_like_profile(tiny_dir)
    d["rank"] = {"fit_at_start": True}
    for key, values in sections.items():
        d[key] = {**d.get(key, {}), **values}
    return LinkerConfig.from_dict(d, name="hub-tiny", base_dir=tiny_dir)


@pytest.fixture
def hub_tiny(tiny_dir, offline_hub):
    """The tiny hub-like linker that fits its ranker at start (a fresh GEMEL_CACHE: nothing fitted yet)."""
    from gemel.linker import Linker

    return Linker.load(fitting_config(tiny_dir))


@pytest.fixture
def tiny_fit_data(tiny_dir):
    return [tiny_dir / "seed.jsonl"]


def link(linker, tiny_dir):
    return linker.link(str(tiny_dir / "img.png"), *QUERY)


# ---- until a ranker is fitted --------------------------------------------------------------------------------
def test_until_fitted_the_answer_names_the_unfitted_rule(hub_tiny, tiny_dir):
    from gemel.rank.model import TEXT_RANKER, Ranker

    assert hub_tiny.awaits_fit and hub_tiny.ranker.version == Ranker.load(TEXT_RANKER).version
    pred = link(hub_tiny, tiny_dir)
    rule = pred.why["rule"]
    assert rule == RULE
    assert all(c.contributions[n] == 0.0 for c in pred.candidates for n in ("image_photo", "image_drawing"))
    assert rule in pred.why["sentence"] and pred.to_dict()["why"]["rule"] == rule  # the API and `gemel link`
    from gemel.cli.main import format_prediction

    assert RULE in format_prediction(pred)


def test_the_hub_profiles_rule_is_the_one_its_comment_states():
    from gemel.linker import unfitted_rule

    assert unfitted_rule(load_profile("hub")) == RULE
    comment = " ".join(line.lstrip("# ") for line in (ROOT / "gemel/profiles/hub.toml").read_text().splitlines())
    assert "until a ranker is fitted on CLIP's scores: the shipped one that reads no picture feature" in comment


def test_a_profile_that_fits_no_ranker_answers_as_before(tiny_linker, tiny_dir):
    pred = tiny_linker.link(str(tiny_dir / "img.png"), *QUERY)
    assert "rule" not in pred.why and "unfitted" not in pred.why.get("sentence", "")


# ---- the first start -----------------------------------------------------------------------------------------
def test_the_first_start_fits_caches_and_records_the_scorer(hub_tiny, tiny_dir, tiny_fit_data, monkeypatch):
    from gemel.linker import Linker

    seen = []
    fitted = first_start.with_ranker(hub_tiny, tiny_fit_data, progress=False, on_each=lambda d, n: seen.append(d))
    scorer = hub_tiny.image_scorer.version
    path = fitted_path(scorer)
    assert not fitted.awaits_fit and hub_tiny.awaits_fit  # a variant; the first linker is unchanged
    assert fitted.ranker.reads_picture and not hub_tiny.ranker.reads_picture
    assert path.is_file() and path.parent.name == "rankers" and path.name == f"{scorer}.json"
    assert seen == list(range(1, 9))  # the tiny seed file's 8 mentions, each linked once
    manifest = json.loads(path.read_text())["manifest"]
    assert manifest["scorer"] == {"version": scorer, "model": f"hf-hub:{HUB_TINY}"}
    assert manifest["mentions"] == 8 and (path.parent / manifest["groups"]).is_file()
    assert "rule" not in link(fitted, tiny_dir).why

    # the second start reads it: nothing is linked to fit again
    monkeypatch.setattr(first_start, "collect", lambda *a, **k: pytest.fail("the cached ranker must be read"))
    again = Linker.load(fitting_config(tiny_dir))
    assert not again.awaits_fit and again.ranker.version == fitted.ranker.version
    assert first_start.with_ranker(again, tiny_fit_data) is again
    assert "rule" not in link(again, tiny_dir).why


def test_a_ranker_recorded_for_another_scorer_is_not_used(hub_tiny, tiny_dir, caplog):
    from gemel.linker import Linker

    path = fitted_path(hub_tiny.image_scorer.version)
    other = Ranker.uniform()
    other.manifest = {"scorer": {"version": "clip-0123456789ab", "model": "hf-hub:org/another-clip"}}
    other.save(path)
    caplog.set_level(logging.WARNING)
    started = Linker.load(fitting_config(tiny_dir))  # ignored at start (and refitted by the first start)
    assert started.awaits_fit and RULE in link(started, tiny_dir).why["rule"]
    assert "not using the cached ranker" in caplog.text and "clip-0123456789ab" in caplog.text
    with pytest.raises(RankerError, match=r"fitted on the scores of the image scorer clip-0123456789ab "
                                          r"\(hf-hub:org/another-clip\), this profile scores pictures with clip-"):
        Linker.load(fitting_config(tiny_dir, rank={"model": str(path)}))  # named by a profile: refused


def test_fit_ranker_cli_does_what_the_first_start_does(hub_tiny, tiny_dir, tmp_path, capsys):
    from gemel.cli.main import main
    from gemel.config import profile_toml

    profile = tmp_path / "hub-tiny.toml"  # written as `gemel calibrate` does: "clip" and [rank] kept as they are
    profile.write_text(profile_toml(hub_tiny.config))  # (tiny_dir, the profile's folder, has a clip/ folder)
    data = tmp_path / "seed.jsonl"  # the tiny seed file, its picture made absolute
    data.write_text("".join(json.dumps({**d, "image": str(tiny_dir / d["image"]) if d.get("image") else None}) + "\n"
                            for d in map(json.loads, (tiny_dir / "seed.jsonl").read_text().splitlines())))
    assert main(["fit-ranker", "--profile", str(profile), "--data", str(data), "--folds", "2", "--quiet",
                 "--cache", str(tmp_path / "groups")]) == 0
    path = fitted_path(hub_tiny.image_scorer.version)  # no --out: where the profile's start reads it
    assert f"ranker written to {path}" in capsys.readouterr().out
    assert json.loads(path.read_text())["manifest"]["scorer"]["version"] == hub_tiny.image_scorer.version


# ---- the Space: fitted in the background, before the switch --------------------------------------------------
class StandInStudio:
    def __init__(self, linker) -> None:
        self.linker, self.lock = linker, threading.RLock()

    def swap_linker(self, change):
        with self.lock:
            self.linker = change(self.linker)
            return self.linker


def test_the_space_fits_before_it_switches(tiny_linker, tiny_dir, tiny_fit_data, offline_hub):
    studio = StandInStudio(tiny_linker.replace(pool=[]))
    upgrade = space.HubUpgrade(studio, fitting_config(tiny_dir), local_only=True, fit_data=tiny_fit_data)
    upgrade.run()
    assert upgrade.switched and studio.linker.ranker is not None, upgrade.status
    assert upgrade.timings["ranker"] > 0 and fitted_path(studio.linker.image_scorer.version).is_file()
    studio.hub_upgrade = upgrade
    assert space.header_note(studio).endswith(f"· decided by {studio.linker.ranker.version}")


def test_a_failed_fit_serves_the_unfitted_rule_and_says_so(tiny_linker, tiny_dir, tmp_path, offline_hub, caplog):
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "x", "text": "Hopper built a compiler.", "mention": "Hopper",
                               "entity": "Grace Hopper"}) + "\n")
    studio = StandInStudio(tiny_linker.replace(pool=[]))
    caplog.set_level(logging.INFO)
    upgrade = space.HubUpgrade(studio, fitting_config(tiny_dir), local_only=True, fit_data=[one])
    upgrade.run()
    assert upgrade.switched and studio.linker.awaits_fit
    assert "no ranker fitted (1 labelled mention(s)" in caplog.text
    assert space.header_note(studio).endswith(f"· {RULE}") and RULE in link(studio.linker, tiny_dir).why["rule"]


# ---- the shipped fitting data --------------------------------------------------------------------------------
def test_the_fitting_data_ships_inside_the_package_and_never_the_test_split():
    files = first_start.FITTING_DATA
    assert [f.name for f in files] == ["examples.jsonl", "dev.jsonl", "outpool.jsonl"]
    assert all(f.is_file() and (ROOT / "gemel") in f.resolve().parents for f in files)
    assert not any("test" in f.name for f in files)
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gemel"]
    examples = [ex for f in files for ex in first_start.fitting_examples(f)]
    shipped = [Path(ex.image) for ex in examples if ex.image and "site-packages" not in ex.image]
    for path in [*files, *shipped]:
        rel = path.resolve().relative_to(ROOT / "gemel").as_posix()
        assert any(fnmatch(rel, p) and "/" not in rel[len(p.split("*")[0]):] for p in patterns), rel
    assert len(examples) == 65 + 43 + 16  # scikit-image is installed here: its three pictures are read
    # the eval files under assets/ are the packaged ones
    assert (ROOT / "assets/eval/dev.jsonl").resolve() == files[1] and (ROOT / "assets/eval/outpool.jsonl").resolve() \
        == files[2]


def test_a_line_whose_package_picture_is_not_installed_is_left_out(tmp_path, caplog):
    data = tmp_path / "eval" / "fit.jsonl"
    (tmp_path / "images").mkdir()
    data.parent.mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    rows = [{"id": "a", "image": "images/a.png", "text": "A b.", "mention": "b", "entity": "B"},
            {"id": "m", "image": "package:no_such_pkg/moon.png", "text": "A c.", "mention": "c", "entity": "C"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    caplog.set_level(logging.INFO)
    kept = first_start.fitting_examples(data)
    assert [ex.id for ex in kept] == ["a"] and Path(kept[0].image) == (tmp_path / "images" / "a.png").resolve()
    assert "1 of 2 lines left out of the fitting data" in caplog.text


# ---- the paper profile: CLIP ViT-L/14 scores pictures too ---------------------------------------------------
def test_the_paper_profile_scores_pictures_with_its_clip_like_hub():
    paper, hub = load_profile("paper"), load_profile("hub")
    assert (paper.vision.kind, paper.vision.name, paper.vision.weights) == ("open_clip", "ViT-L-14-quickgelu",
                                                                             "openai")
    same = ("scorer", "clip_prompt", "candidates")
    assert {k: getattr(paper.image, k) for k in same} == {k: getattr(hub.image, k) for k in same}
    assert paper.image.scorer == "clip" and paper.rank.fit_at_start and not paper.rank.active
    assert (paper.decode.mode, paper.decode.candidates) == ("beam", 0)  # the paper's decoding is kept


def test_the_paper_profiles_sections_wire_the_clip_scorer(tiny_dir, offline_hub):
    """The paper's [image], [rank] and [decode] on the tiny models (ViT-L/14 itself is too slow to embed a KB on
    CPU): CLIP's scorer, beam search over the whole KB, the unfitted rule said."""
    from gemel.linker import Linker

    paper = load_profile("paper")
    d = hub_like_profile(tiny_dir, **{k: v for k, v in paper.to_dict()["image"].items() if k != "clip_batch_size"})
    d["rank"], d["decode"] = paper.to_dict()["rank"], {**paper.to_dict()["decode"], "max_new_tokens": 24,
                                                        "num_beams": 3}
    linker = Linker.load(LinkerConfig.from_dict(d, name="paper-tiny", base_dir=tiny_dir))
    assert isinstance(linker.image_scorer, ClipEntityScorer) and linker.awaits_fit
    pred = link(linker, tiny_dir)
    assert pred.why["rule"] == RULE
    assert pred.candidates and all(c.name in linker.kb for c in pred.candidates)


PAPER_REPO = "timm/vit_large_patch14_clip_224.openai"  # where open_clip 3.x fetches ViT-L-14's "openai" weights
# (for the QuickGELU definition too: the weights hold no activation)


@pytest.fixture(scope="module")
def hub_cache_l14(hub_cache):
    """A random-weight ViT-L-14 in the hub cache as open_clip fetches the paper's ``openai`` weights (1.7 GB and
    about a minute the first time, then kept beside the ViT-B-32)."""
    import open_clip

    from bench._hub import save_to_hub_cache

    save_to_hub_cache(hub_cache, PAPER_REPO, open_clip.get_model_config("ViT-L-14"), 224, arch="ViT-L-14")
    return hub_cache


@pytest.mark.slow  # a random ViT-L-14 built (once), loaded twice
def test_the_paper_profiles_vit_l14_scores_entities_as_open_clip_does(hub_cache_l14, monkeypatch, tmp_path):
    """The paper's own vision section, loaded through the real loader (``pretrained="openai"`` from the hub cache),
    gives CLIP's scorer over a small KB, equal to open_clip's zero-shot classifier on the same model, with the
    QuickGELU the weights were trained with and no warning of a mismatch from open_clip."""
    import warnings

    import numpy as np
    import open_clip
    import torch
    from conftest import offline_hub_env
    from test_clip_scorer import KB, pictures

    from gemel.models.vision import VisionEncoder

    monkeypatch.setenv("GEMEL_CACHE", str(tmp_path / "gemel-cache"))
    paper = load_profile("paper")
    with offline_hub_env(hub_cache_l14, monkeypatch), warnings.catch_warnings():
        warnings.filterwarnings("error", message="QuickGELU mismatch")
        encoder = VisionEncoder.load(dataclasses.replace(paper.vision, device="cpu"))  # no GPU here ("auto")
        scorer = ClipEntityScorer.for_kb(encoder, KB, paper.image.clip_prompt)
        model, _, preprocess = open_clip.create_model_and_transforms(paper.vision.name, pretrained="openai")
    assert encoder.dim == 1024 and tuple(scorer.clip.image_projection.shape) == (1024, 768)
    assert {type(m).__name__ for m in encoder.clip.model.modules() if "GELU" in type(m).__name__} == {"QuickGELU"}
    tokenizer = open_clip.get_tokenizer(paper.vision.name)
    classnames = [f"{e.title}, {e.description}" if e.description else e.title for e in KB]
    classifier = open_clip.build_zero_shot_classifier(model.eval(), tokenizer, classnames, ["a photo of {}."])
    picture = pictures(224)[0]
    with torch.no_grad():
        image = model.encode_image(preprocess(picture)[None], normalize=True)
        reference = (model.logit_scale.exp() * image @ classifier)[0].numpy()
    assert np.abs(scorer.score(picture, scorer.kb_vectors).fused - reference).max() < 1e-4
