"""Precision of the frozen LLM (gemel/models/precision.py): what "auto" picks, and that bfloat16 keeps the answers.

Tolerance of the tiny-model tests: bfloat16 keeps 8 bits of mantissa, so each token log-probability moves a
little; over a name of ~12 character tokens the summed score may move by at most ``TOL`` = 0.05 nat (measured:
0.005 for bfloat16, 0.009 for int8). Every two candidates whose float32 scores are more than 2 x TOL apart
keep their order in bfloat16 (on the fixed prompt all of them are: the ranking is identical).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gemel.config import LinkerConfig, LLMConfig, ProfileError
from gemel.generation.decoding import prefill, score_sequences
from gemel.models import precision
from gemel.models.llm import LanguageModel
from gemel.types import Example, Prediction

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["Grace Hopper", "Edward Hopper", "Grace Kelly", "Compiler", "Hopper", "Moon", "Mo", "Apple Inc."]
PROMPT = "[Text]Hopper wrote compilers.\n[Question]What does Hopper mentioned in the text refer to?\n[Answer]"
TOL = 0.05  # nats, on a summed name score (see the module docstring)


# ---- what "auto" means here ---------------------------------------------------------------------------
@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU has the given /proc/cpuinfo flags."""
    def set_flags(*names: str) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": frozenset(names))
        precision._native_bf16_cpu.cache_clear()

    yield set_flags
    precision._native_bf16_cpu.cache_clear()


@pytest.mark.parametrize("cpu,expected", [
    (("avx512f", "avx512_bf16", "avx512_vnni"), "bfloat16"),  # Cooper Lake, Zen 4
    (("avx512f", "amx_bf16", "amx_tile"), "bfloat16"),  # Sapphire Rapids
    (("avx512f", "avx512bw", "avx2"), "float32"),  # Skylake-SP: bf16 would be emulated, slower than fp32
    ((), "float32"),  # no /proc/cpuinfo (not Linux)
])
def test_auto_picks_bfloat16_only_where_the_cpu_has_it(flags, cpu, expected):
    flags(*cpu)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_dtype("auto") == getattr(torch, expected)
    assert precision.describe("auto").startswith(f"auto -> {expected} (")


@pytest.mark.parametrize("name,dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16),
                                        ("float16", torch.float16), ("int8", torch.float32)])
def test_explicit_precisions_are_kept(flags, name, dtype):
    flags("avx512_bf16")
    assert precision.resolve_precision(name) == name and precision.resolve_dtype(name) == dtype
    assert precision.describe(name) == name


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_flags(info) == {"fpu", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("name,device,message", [
    ("int8", "cuda", "runs on the CPU only"),
    ("float64", "cpu", "is not one of auto, float32"),
])
def test_impossible_precisions_are_refused(name, device, message):
    with pytest.raises(precision.PrecisionError, match=message):
        precision.resolve_precision(name, device)


@pytest.mark.parametrize("value", ["bf16", "fp32", "float64", ""])
def test_config_refuses_an_unknown_dtype_naming_the_choices(value):
    with pytest.raises(ProfileError, match=rf"llm.dtype '{value}' is not one of auto, float32, bfloat16, float16, "
                                          "int8.*'float32' forces full precision"):
        LLMConfig(source="x", dtype=value)


def test_shipped_profiles_offline_auto_paper_float16():
    from gemel.config import load_profile

    assert load_profile("offline").llm.dtype == "auto"
    assert load_profile("paper").llm.dtype == "float16"


# ---- bfloat16 vs float32 on the tiny model --------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tiny_config) -> dict[str, LanguageModel]:
    return {name: LanguageModel.load(dataclasses.replace(tiny_config.llm, dtype=name))
            for name in ("float32", "bfloat16", "int8")}


def name_scores(lm: LanguageModel) -> list[float]:
    embeds = lm.embed(lm.bos_ids + lm.encode(PROMPT))[None]  # (1, T, H)
    return score_sequences(lm.model, prefill(lm.model, embeds), [lm.encode(n) + [lm.eos_id] for n in NAMES])


def test_loaded_precision_is_recorded(models):
    assert {k: lm.dtype_name for k, lm in models.items()} == {"float32": "float32", "bfloat16": "bfloat16",
                                                               "int8": "int8"}
    assert models["bfloat16"].model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert models["bfloat16"].hidden_size == models["float32"].hidden_size


def test_bfloat16_ranks_the_candidates_as_float32(models):
    full, half = name_scores(models["float32"]), name_scores(models["bfloat16"])
    assert max(abs(a - b) for a, b in zip(full, half)) <= TOL
    assert sorted(NAMES, key=lambda n: -half[NAMES.index(n)]) == sorted(NAMES, key=lambda n: -full[NAMES.index(n)])
    for i in range(len(NAMES)):
        for j in range(len(NAMES)):
            if full[i] - full[j] > 2 * TOL:
                assert half[i] > half[j], (NAMES[i], NAMES[j], full, half)


def test_bfloat16_tree_scores_equal_plain_forward_passes(models):
    """The tree-attention mask uses bfloat16's own minimum: scores match one forward pass per name."""
    lm = models["bfloat16"]
    ids = lm.bos_ids + lm.encode(PROMPT)
    tree = name_scores(lm)
    for name, got in zip(NAMES, tree):
        seq = lm.encode(name) + [lm.eos_id]
        with torch.no_grad():
            logp = lm.model(input_ids=torch.tensor([ids + seq[:-1]])).logits[0].float().log_softmax(-1)
        ref = sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(seq))
        assert got == pytest.approx(ref, abs=0.1)  # bf16 rounding differs between the two attention paths


def test_int8_moves_scores_more_but_stays_finite(models):
    """int8 is opt-in: here only that it runs; how far it moves the answers is measured on real data."""
    scores = name_scores(models["int8"])
    assert all(math.isfinite(s) and s < 0 for s in scores)


def test_mapper_gets_a_finite_gradient_through_a_bfloat16_llm(tiny_config):
    from gemel.linker import Linker
    from gemel.training.train import answer_loss, training_prompt

    linker = Linker.load(tiny_config.replace(llm={"dtype": "bfloat16"}))
    assert linker.mapper.linear.weight.dtype == torch.float32  # the trained part stays float32
    ex = Example(text="Hopper wrote a compiler for the Navy.", mention="Hopper", entity="Grace Hopper",
                 image=str(linker.labelled_pool.examples[0].image), id="q")
    embeds = training_prompt(linker, linker.mapper, ex)
    assert embeds.dtype == torch.bfloat16
    loss = answer_loss(linker, embeds, linker.lm.answer_tokens(ex.entity))
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    loss.backward()
    grad = linker.mapper.linear.weight.grad
    assert grad.dtype == torch.float32 and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_training_refuses_an_int8_llm(tiny_config, tmp_path):
    """Quantised Linears pass no gradient back (the mapper would silently not learn): refused by name."""
    from gemel.linker import Linker
    from gemel.training.train import TrainConfig, TrainError, train

    linker = Linker.load(tiny_config.replace(llm={"dtype": "int8"}))
    examples = [ex for ex in linker.labelled_pool.examples if ex.image]
    with pytest.raises(TrainError, match="'int8' is for inference only"):
        train(linker, examples, tmp_path / "run", TrainConfig(epochs=1), progress=False)


# ---- the precision is shown -------------------------------------------------------------------------------
def test_prediction_carries_the_precision(tiny_config, tiny_dir):
    from gemel.linker import Linker

    linker = Linker.load(tiny_config.replace(llm={"dtype": "bfloat16"}))
    pred = linker.link(tiny_dir / "img.png", "Hopper wrote the first compiler.", "Hopper")
    assert pred.precision == "bfloat16" and pred.to_dict()["precision"] == "bfloat16"
    assert Prediction(entity=None, candidates=[], demonstrations=[]).precision == ""  # optional field


def test_meta_line_shows_the_precision():
    from demo.render import meta_html

    assert "<b>bfloat16</b>" in meta_html({"profile": "offline", "mapper": "untrained", "precision": "bfloat16",
                                          "timings": {"total": 0.5}})
    assert "float" not in meta_html({"profile": "offline", "mapper": "untrained"})


def test_profiles_command_shows_what_auto_resolves_to(flags, capsys):
    from gemel.cli.main import main

    flags("avx512_bf16")
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "llm.dtype = auto -> bfloat16 (avx512_bf16)" in out and "llm.dtype = float16" in out


# ---- the real offline default over the dev split ------------------------------------------------------------
DEV_CASES = 12  # the first 12 cases of dev.jsonl: on a CPU without native bf16 (emulated, ~3x slower than
# float32) the whole split takes > 20 min on one thread; bench/precision.py compares all of dev and test


@pytest.mark.offline_model
def test_bfloat16_and_float32_answer_the_same_on_dev(offline_linker):
    from pathlib import Path

    from gemel.data.evaluate import load_examples, predict

    dev = load_examples(Path(__file__).resolve().parents[1] / "assets/eval/dev.jsonl", limit=DEV_CASES)
    answers = {}
    for name in ("float32", "bfloat16"):
        linker = with_precision(offline_linker, name)
        answers[name] = [p.entity for p in predict(linker, dev, progress=False)]
    differ = [ex.id for ex, a, b in zip(dev, answers["float32"], answers["bfloat16"]) if a != b]
    assert len(differ) <= 1, differ


def with_precision(linker, name: str):
    """The same linker (shared KB, embedder, vision encoder, mapper, pool) with its LLM loaded in ``name``."""
    from gemel.components import Components
    from gemel.linker import Linker

    if linker.lm.dtype_name == name:
        return linker
    config = linker.config.replace(llm={"dtype": name})
    lm = LanguageModel.load(config.llm, config.base_dir)
    parts = Components(lm=lm, embedder=linker.embedder, kb=linker.kb, vision=linker.vision, mapper=linker.mapper,
                       seed_examples=list(linker.labelled_pool.examples))
    return Linker(config, parts)


def test_linker_config_round_trips_auto():
    cfg = LinkerConfig.from_dict({"llm": {"source": "x", "dtype": "auto"}, "vision": {"kind": "none"},
                                  "embedder": {"source": "e"}, "kb": {"source": "k"}})
    assert cfg.llm.dtype == "auto" and cfg.replace(llm={"dtype": "float32"}).llm.dtype == "float32"
