"""Tests for gemel/config.py: shipped profiles, TOML loading, and every check naming the bad key and the fix."""

from __future__ import annotations

import dataclasses

import pytest

from gemel.config import (
    PROFILE_DIR,
    ProfileError,
    DecodeConfig,
    LinkerConfig,
    list_profiles,
    load_profile,
)

MINIMAL = {
    "llm": {"source": "org/llm"},
    "vision": {},
    "embedder": {"source": "org/embedder"},
    "kb": {"source": "kb.jsonl"},
}


def profile(**sections: dict) -> dict:
    """MINIMAL with some sections' keys changed (a section set to None is removed)."""
    d = {k: dict(v) for k, v in MINIMAL.items()}
    for name, values in sections.items():
        if values is None:
            d.pop(name, None)
        else:
            d[name] = {**d.get(name, {}), **values}
    return d


def toml_text(d: dict) -> str:
    lines = []
    for section, values in d.items():
        if not isinstance(values, dict):
            lines.append(f"{section} = {values!r}".replace("'", '"'))
            continue
        lines.append(f"[{section}]")
        for key, value in values.items():
            text = ("true" if value else "false") if isinstance(value, bool) else repr(value).replace("'", '"')
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


# ---- shipped profiles -------------------------------------------------------------------------------
def test_shipped_profiles_are_listed():
    assert list_profiles() == ["hub", "offline", "paper"]


@pytest.mark.parametrize("name", ["hub", "offline", "paper"])
def test_shipped_profiles_load_with_their_own_name(name):
    cfg = load_profile(name)
    assert cfg.name == name
    assert cfg.description
    assert cfg.base_dir == str(PROFILE_DIR)
    assert cfg.mapper.prefix_length == 4 and cfg.demos.n == 16  # the paper's k and n in both


def test_paper_profile_is_the_published_setting():
    cfg = load_profile("paper")
    # OpenAI's ViT-L/14 weights, in open_clip's QuickGELU definition of the model (tests/test_paper_clip.py)
    assert (cfg.vision.kind, cfg.vision.name, cfg.vision.weights) == ("open_clip", "ViT-L-14-quickgelu", "openai")
    assert cfg.llm.source == "facebook/opt-6.7b"
    assert (cfg.decode.mode, cfg.decode.num_beams, cfg.decode.max_new_tokens, cfg.decode.candidates) == (
        "beam", 5, 32, 0)


def test_offline_profile_needs_no_hub():
    cfg = load_profile("offline")
    for source in (cfg.llm.source, cfg.vision.weights, cfg.embedder.source, cfg.kb.source):
        assert source.startswith("package:"), source


def test_to_dict_round_trips():
    cfg = load_profile("offline")
    d = cfg.to_dict()
    again = LinkerConfig.from_dict({k: v for k, v in d.items() if k not in ("base_dir",)},
                                   base_dir=cfg.base_dir)
    assert again == cfg


def test_defaults_fill_missing_sections():
    cfg = LinkerConfig.from_dict(MINIMAL)
    assert cfg.name == "custom"
    assert cfg.decode == DecodeConfig()
    assert cfg.vision.kind == "timm"


# ---- unknown and missing names ----------------------------------------------------------------------
def test_unknown_section_is_named():
    with pytest.raises(ProfileError, match=r"unknown profile section\(s\) \['decoder'\].*known:.*decode"):
        LinkerConfig.from_dict(profile(decoder={"num_beams": 3}))


@pytest.mark.parametrize("section", ["llm", "vision", "embedder", "kb", "mapper", "demos", "decode"])
def test_unknown_key_is_named_with_the_known_ones(section):
    with pytest.raises(ProfileError, match=rf"unknown key\(s\) \['colour'\] in \[{section}\]; known: \["):
        LinkerConfig.from_dict(profile(**{section: {"colour": "red"}}))


@pytest.mark.parametrize("section", ["llm", "vision", "embedder", "kb"])
def test_required_section_missing_is_named(section):
    with pytest.raises(ProfileError, match=rf"profile 'mine' lacks the \[{section}\] section"):
        LinkerConfig.from_dict(profile(**{section: None}), name="mine")


def test_section_that_is_not_a_table_is_refused():
    with pytest.raises(ProfileError, match=r"\[decode\] must be a table"):
        LinkerConfig.from_dict({**MINIMAL, "decode": "beam"})


# ---- every dataclass's checks -----------------------------------------------------------------------
BAD_VALUES = [
    ("llm", "source", "", "llm.source is empty"),
    ("llm", "dtype", "float64", "llm.dtype 'float64' is not one of auto, float32, bfloat16, float16, int8"),
    ("llm", "dtype", "bf16", "llm.dtype 'bf16' is not one of .*'float32' forces full precision"),
    ("llm", "max_prompt_tokens", 63, "llm.max_prompt_tokens=63 must be >= 64"),
    ("vision", "kind", "resnet", "vision.kind 'resnet' is not one of timm, open_clip, none"),
    ("vision", "image_size", 7, "vision.image_size=7 must be >= 8"),
    ("vision", "crop_pct", 0.05, r"vision.crop_pct=0.05 must be in \[0.1, 1\]"),
    ("vision", "crop_pct", 1.5, r"vision.crop_pct=1.5 must be in \[0.1, 1\]"),
    ("vision", "mean", [0.5, 0.5], "vision.mean/std must be 3 numbers"),
    ("vision", "std", [0.5, 0.0, 0.5], "vision.mean/std must be 3 numbers with std > 0"),
    ("embedder", "source", "", "embedder.source is empty"),
    ("embedder", "batch_size", 0, "embedder.batch_size=0 must be >= 1"),
    ("kb", "source", "", "kb.source is empty.*gemel kb build"),
    ("mapper", "prefix_length", 0, "mapper.prefix_length=0 must be in 1..64"),
    ("mapper", "prefix_length", 65, "mapper.prefix_length=65 must be in 1..64"),
    ("demos", "n", -1, "demos.n=-1 must be in 0..64"),
    ("demos", "n", 65, "demos.n=65 must be in 0..64"),
    ("demos", "max_kb_share", 1.5, r"demos.max_kb_share=1.5 must be in \[0, 1\]"),
    ("decode", "mode", "greedy", "decode.mode 'greedy' is not one of beam, score"),
    ("decode", "num_beams", 0, "decode.num_beams=0 must be >= 1"),
    ("decode", "max_new_tokens", 0, "decode.max_new_tokens=0 must be >= 1"),
    ("decode", "candidates", -1, r"decode.candidates=-1 must be >= 0 \(0 = whole KB\)"),
]


@pytest.mark.parametrize("section,key,value,message", BAD_VALUES, ids=[f"{s}.{k}={v!r}" for s, k, v, _ in BAD_VALUES])
def test_bad_value_raises_config_error_naming_the_key(section, key, value, message):
    with pytest.raises(ProfileError, match=message):
        LinkerConfig.from_dict(profile(**{section: {key: value}}))


BAD_TYPES = [
    ("demos", "n", "16", "demos.n = '16' must be of type int"),
    ("demos", "n", 16.0, "demos.n = 16.0 must be of type int"),
    ("demos", "kb_demos", "false", "demos.kb_demos = 'false' must be of type bool"),
    ("decode", "num_beams", True, "decode.num_beams = True must be of type int"),
    ("decode", "length_penalty", "2", "decode.length_penalty = '2' must be of type float"),
    ("vision", "image_size", "224", "vision.image_size = '224' must be of type int"),
    ("vision", "mean", 0.5, r"vision.mean = 0.5 must be a list of numbers"),
    ("vision", "std", ["a", "b", "c"], r"vision.std = \['a', 'b', 'c'\] must be a list of numbers"),
    ("llm", "source", 3, "llm.source = 3 must be a string"),
]


@pytest.mark.parametrize("section,key,value,message", BAD_TYPES, ids=[f"{s}.{k}={v!r}" for s, k, v, _ in BAD_TYPES])
def test_wrongly_typed_value_raises_config_error_not_type_error(section, key, value, message):
    with pytest.raises(ProfileError, match=message):
        LinkerConfig.from_dict(profile(**{section: {key: value}}))


@pytest.mark.parametrize("section,key,value", [
    ("decode", "length_penalty", 2),  # an int is a fine float
    ("demos", "w_image", 1),  # an int is a fine float
    ("vision", "mean", [0, 1, 0.5]),
    ("demos", "kb_demos", False),
])
def test_well_typed_values_are_accepted(section, key, value):
    cfg = LinkerConfig.from_dict(profile(**{section: {key: value}}))
    got = getattr(getattr(cfg, section), key)
    assert got == (tuple(value) if isinstance(value, list) else value)


def test_score_mode_refuses_the_whole_kb_and_points_to_beam():
    with pytest.raises(ProfileError, match=r"decode.mode='score'.*decode.candidates > 0.*mode='beam'"):
        LinkerConfig.from_dict(profile(decode={"mode": "score", "candidates": 0}))
    cfg = LinkerConfig.from_dict(profile(decode={"mode": "beam", "candidates": 0}))
    assert cfg.decode.candidates == 0


def test_config_error_is_a_value_error():
    assert issubclass(ProfileError, ValueError)  # the CLI turns ValueError into a one-line message


# ---- replace ----------------------------------------------------------------------------------------
def test_replace_changes_only_the_named_fields():
    cfg = load_profile("offline")
    new = cfg.replace(decode={"num_beams": 1}, demos={"n": 2})
    assert (new.decode.num_beams, new.demos.n) == (1, 2)
    assert cfg.decode.num_beams == 5 and cfg.demos.n == 16  # the original is untouched (frozen)
    for section in ("llm", "vision", "embedder", "kb", "mapper"):
        assert getattr(new, section) == getattr(cfg, section)
    assert dataclasses.replace(new.decode, num_beams=5) == cfg.decode
    assert new.name == cfg.name and new.base_dir == cfg.base_dir


def test_replace_validates_values():
    cfg = load_profile("offline")
    with pytest.raises(ProfileError, match="decode.num_beams=0"):
        cfg.replace(decode={"num_beams": 0})
    with pytest.raises(ProfileError, match="decode.mode='score'.*candidates > 0"):
        cfg.replace(decode={"candidates": 0})
    assert cfg.replace(decode={"candidates": 0, "mode": "beam"}).decode.candidates == 0


@pytest.mark.parametrize("sections,message", [
    ({"decode": {"beams": 3}}, r"unknown key\(s\) \['beams'\] in \[decode\]"),
    ({"decoder": {"num_beams": 3}}, r"cannot replace 'decoder': not a profile section; known: \["),
    ({"name": {"x": 1}}, r"cannot replace 'name'"),
    ({"demos": {"n": "3"}}, r"demos.n = '3' must be of type int"),
])
def test_replace_names_unknown_sections_and_keys(sections, message):
    with pytest.raises(ProfileError, match=message):
        load_profile("offline").replace(**sections)


# ---- load_profile on files --------------------------------------------------------------------------
def test_load_profile_from_a_toml_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(toml_text({**profile(decode={"mode": "beam", "candidates": 0}, demos={"n": 3})}))
    cfg = load_profile(path)
    assert cfg.name == "mine"  # the file's stem when the file has no name
    assert cfg.base_dir == str(tmp_path)  # relative paths resolve against the profile's folder
    assert (cfg.decode.mode, cfg.decode.candidates, cfg.demos.n) == ("beam", 0, 3)
    assert load_profile(str(path)) == cfg


def test_load_profile_keeps_a_name_written_in_the_file(tmp_path):
    path = tmp_path / "file.toml"
    path.write_text('name = "fancy"\ndescription = "d"\n' + toml_text(MINIMAL))
    cfg = load_profile(path)
    assert (cfg.name, cfg.description) == ("fancy", "d")


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[llm\nsource = 'x'\n")
    with pytest.raises(ProfileError, match=r"profile file '.*broken\.toml' is not valid TOML"):
        load_profile(path)


def test_missing_toml_file_is_named(tmp_path):
    with pytest.raises(ProfileError, match=r"profile file '.*absent\.toml' does not exist"):
        load_profile(tmp_path / "absent.toml")


def test_unknown_profile_name_lists_the_shipped_ones():
    with pytest.raises(ProfileError, match=r"unknown profile 'ofline': choose one of \['hub', 'offline', 'paper'\]"):
        load_profile("ofline")


def test_bad_value_in_a_file_names_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(toml_text(profile(decode={"num_beams": 0})))
    with pytest.raises(ProfileError, match="decode.num_beams=0"):
        load_profile(path)


def test_every_profile_key_has_a_meaning_and_is_read():
    """Each field of each profile section has a comment on its line (or the line above) saying what it means,
    and some module of the library reads it (``.name``): no knob nobody can explain, none that does nothing."""
    import dataclasses
    import re
    from pathlib import Path

    import gemel.config as config

    root = Path(config.__file__).parent
    src = Path(config.__file__).read_text().splitlines()
    code = "\n".join(p.read_text() for p in root.rglob("*.py") if p.name != "config.py")
    missing = []
    for klass in config._SECTIONS.values():
        start = next(i for i, line in enumerate(src) if line.startswith(f"class {klass.__name__}"))
        for f in dataclasses.fields(klass):
            i = next(i for i, line in enumerate(src) if i > start and re.match(rf"\s+{f.name}: ", line))
            if "#" not in src[i] and not src[i - 1].strip().startswith("#"):
                missing.append(f"{klass.__name__}.{f.name}: no comment")
            if not re.search(rf"\.{f.name}\b", code):
                missing.append(f"{klass.__name__}.{f.name}: never read")
    assert not missing, missing


# ---- a profile written out (gemel calibrate) -------------------------------------------------------------------
def test_a_written_profile_keeps_keywords_that_a_folder_beside_it_could_shadow(tmp_path):
    """``image.scorer = "clip"`` and the open_clip tag ``openai`` are names, not paths: folders called ``clip/`` and
    ``openai/`` beside the profile change nothing; a real file in a path field still becomes absolute."""
    import tomllib

    from gemel.config import profile_toml

    (tmp_path / "clip").mkdir()
    (tmp_path / "openai").mkdir()
    (tmp_path / "seed.jsonl").write_text("")
    cfg = LinkerConfig.from_dict(profile(vision={"kind": "open_clip", "name": "ViT-B-32-quickgelu", "weights": "openai"},
                                         image={"scorer": "clip", "candidates": 1}, demos={"seed_pool": "seed.jsonl"}),
                                 base_dir=tmp_path)
    written = tomllib.loads(profile_toml(cfg))
    assert written["image"]["scorer"] == "clip" and written["vision"]["weights"] == "openai"
    assert written["demos"]["seed_pool"] == str((tmp_path / "seed.jsonl").resolve())


def test_a_written_profile_keeps_its_decision_rule(tmp_path):
    """[rank] is written too: a written `hub` profile still fits its ranker at the first start, and a named ranker
    file stays the profile's (its path made absolute)."""
    import tomllib

    from gemel.config import profile_toml

    hub = load_profile("hub")
    assert tomllib.loads(profile_toml(hub))["rank"] == dataclasses.asdict(hub.rank)
    (tmp_path / "ranker.json").write_text("{}")
    named = LinkerConfig.from_dict(profile(rank={"model": "ranker.json"}), base_dir=tmp_path)
    assert tomllib.loads(profile_toml(named))["rank"]["model"] == str((tmp_path / "ranker.json").resolve())
