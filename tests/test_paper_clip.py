"""The `paper` profile's CLIP: OpenAI's ViT-L/14 weights built with the QuickGELU they were trained with, and CLIP's
towers on the device the profile asks for (``vision.device``).

Models are built through the real loader (``VisionEncoder.load``), never a mock of it, and nothing is downloaded:
the paper's own vision section with ``weights = ""`` is open_clip's random initialisation of the same definition
(the activation is the definition's, whatever the weights); the slow test in test_hub_ranker.py reads the paper's
``openai`` weights, random ones, from a local hub cache. No GPU here: the device plumbing is checked on the CPU and on
torch's ``meta`` device, a stand-in for a GPU where an operation that mixes a CPU tensor into the model's raises.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import HUB_TINY, OPENAI_MEAN, OPENAI_STD, offline_hub_env
from PIL import Image

from gemel.config import LinkerConfig, ProfileError, VisionConfig, load_profile
from gemel.image import clip as clip_mod
from gemel.models import vision as vision_mod
from gemel.models.mapper import FeatureMapper, MapperMismatchError, MapperSpec
from gemel.models.vision import VisionEncoder, vision_device

pytestmark = pytest.mark.usefixtures("one_thread")


def activations(module: torch.nn.Module) -> set[str]:
    """The names of the GELU-family activation modules in ``module``."""
    from open_clip.transformer import QuickGELU

    return {type(m).__name__ for m in module.modules() if isinstance(m, (torch.nn.GELU, QuickGELU))}


# ---- QuickGELU -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paper_clip() -> VisionEncoder:
    """The paper's vision section through the real loader, random weights (``weights = ""``: no download; about 3 s
    and 1.7 GB, once for the module)."""
    return VisionEncoder.load(dataclasses.replace(load_profile("paper").vision, weights="", device="cpu"))


def test_the_paper_clip_runs_quickgelu_in_both_towers(paper_clip):
    model = paper_clip.clip.model
    assert activations(model.visual) == {"QuickGELU"}  # the image tower (the mapper's input, the picture's score)
    assert activations(model.transformer) == {"QuickGELU"}  # the text tower (the KB's entity prompts)
    assert paper_clip.dim == 1024 and tuple(paper_clip.clip.image_projection.shape) == (1024, 768)


def test_the_paper_names_open_clips_definition_for_the_openai_weights():
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    vision = load_profile("paper").vision
    assert (vision.name, vision.weights) == ("ViT-L-14-quickgelu", "openai")
    assert get_pretrained_cfg(vision.name, vision.weights)["quick_gelu"]  # how the weights were trained
    assert open_clip.get_model_config(vision.name)["quick_gelu"]  # how the definition builds
    assert get_pretrained_cfg(vision.name, vision.weights)["hf_hub"] == get_pretrained_cfg("ViT-L-14", "openai")[
        "hf_hub"]  # the same weights file as before


@pytest.mark.parametrize("name, tag, fix", [
    ("ViT-L-14", "openai", "set vision.name = 'ViT-L-14-quickgelu'"),
    ("ViT-B-32", "openai", "set vision.name = 'ViT-B-32-quickgelu'"),
    ("ViT-B-32", "laion400m_e31", "set vision.name = 'ViT-B-32-quickgelu'"),  # open_clip's QuickGELU LAION weights
])
def test_the_gelu_definition_of_quickgelu_weights_is_refused_before_any_download(name, tag, fix, tmp_path,
                                                                                 monkeypatch):
    config = VisionConfig(kind="open_clip", name=name, weights=tag, image_size=224, crop_pct=1.0,
                          mean=tuple(OPENAI_MEAN), std=tuple(OPENAI_STD))
    with offline_hub_env(tmp_path / "empty-hub", monkeypatch):  # nothing cached: a download would fail otherwise
        with pytest.raises(ProfileError, match=rf"vision.name '{name}' builds open_clip's GELU activation, but the "
                                               rf"'{tag}' weights were trained with QuickGELU.*{fix}"):
            VisionEncoder.load(config)


def test_a_mapper_trained_on_the_gelu_features_is_refused_naming_the_fix(tmp_path):
    """A paper mapper saved before the change records ``ViT-L-14``: it learnt from GELU features, so it is refused
    (not silently fed QuickGELU ones), with the command that makes a new one."""
    spec = {"vision_dim": 8, "llm": "facebook/opt-6.7b", "hidden_size": 4, "prefix_length": 2}
    FeatureMapper(MapperSpec(vision="ViT-L-14", **spec)).save(tmp_path / "old.pt")
    with pytest.raises(MapperMismatchError, match=r"learnt from 'ViT-L-14' features computed with GELU.*QuickGELU.*"
                                                  r"'ViT-L-14-quickgelu'.*gemel train --profile paper"):
        FeatureMapper.load(tmp_path / "old.pt", expected=MapperSpec(vision="ViT-L-14-quickgelu", **spec))


# ---- the device ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_the_device_names_a_profile_may_use(device):
    assert VisionConfig(device=device).device == device


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:x", "", "tpu"])
def test_another_device_name_is_refused_with_the_known_ones(device):
    with pytest.raises(ProfileError, match=rf"vision.device '{device}' is not one of auto, cpu, cuda, cuda:N, mps"):
        LinkerConfig.from_dict({"llm": {"source": "org/llm"}, "vision": {"device": device},
                                "embedder": {"source": "org/st"}, "kb": {"source": "kb.jsonl"}})


def test_the_paper_asks_for_the_gpu_and_the_cpu_profiles_keep_the_cpu():
    assert load_profile("paper").vision.device == "auto"
    assert load_profile("hub").vision.device == load_profile("offline").vision.device == "cpu"


def test_auto_is_the_gpu_where_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert vision_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert vision_device("auto") == torch.device("cpu")
    assert vision_device("cpu") == torch.device("cpu")


def test_a_gpu_that_is_not_there_is_one_sentence(monkeypatch, tiny_config):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ProfileError, match=r"vision.device = 'cuda' but torch sees no CUDA GPU here: use 'auto'"):
        VisionEncoder.load(dataclasses.replace(tiny_config.vision, device="cuda"), tiny_config.base_dir)


@pytest.fixture
def tiny_on(offline_hub, monkeypatch):
    """The tiny hub CLIP through the real loader, on the device its ``vision.device`` resolves to; ``tiny_on(
    "meta")`` makes that resolution give the meta device (this machine has no GPU)."""
    def load(device: str) -> VisionEncoder:
        chosen: list[str] = []

        def resolve(name: str) -> torch.device:
            chosen.append(name)
            return torch.device(device)

        monkeypatch.setattr(vision_mod, "vision_device", resolve)
        config = VisionConfig(kind="open_clip", name=f"hf-hub:{HUB_TINY}", weights="", image_size=32, crop_pct=1.0,
                              mean=tuple(OPENAI_MEAN), std=tuple(OPENAI_STD), device="auto")
        encoder = VisionEncoder.load(config)
        assert chosen == ["auto"]  # the profile's vision.device is what the loader resolves
        return encoder
    return load


def test_both_towers_go_to_the_chosen_device(tiny_on):
    encoder = tiny_on("meta")
    assert encoder.device == torch.device("meta")
    assert {p.device.type for p in encoder.clip.model.parameters()} == {"meta"}  # image and text towers
    assert {b.device.type for b in encoder.clip.model.buffers()} == {"meta"}  # the causal mask too
    assert encoder.clip.image_projection.device.type == "cpu"  # applied to features back on the CPU


def test_entity_prompts_are_embedded_on_the_models_device(tiny_on):
    """CPU token ids go in and are moved to the model's device; every tensor of the text tower's pass is there (a
    CPU tensor mixed into a meta model's linear layers raises), and so is the result."""
    clip = tiny_on("meta").clip
    seen = []
    clip.model.token_embedding.register_forward_pre_hook(lambda module, args: seen.append(args[0].device))
    tokens = clip.tokenizer(["a photo of Moon.", "a photo of Grace Hopper, American computer scientist."])
    out = clip_mod.encode_text(clip.model, tokens)
    assert out.device.type == "meta" and tuple(out.shape) == (2, 8)
    assert seen == [torch.device("meta")]


def test_the_entity_vectors_are_computed_in_batches_there_and_brought_back(tiny_on):
    """The cache's build (encode_texts) runs each batch on the model's device, then copies it to the CPU array: on
    the meta device that copy is what fails, after the first batch ran there."""
    clip = tiny_on("meta").clip
    seen = []
    clip.model.token_embedding.register_forward_pre_hook(lambda module, args: seen.append(args[0].device))
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        clip_mod.encode_texts(clip, ["a photo of Moon.", "a photo of Cat.", "a photo of Coffee."], batch_size=2)
    assert seen == [torch.device("meta")]


def test_pictures_are_encoded_on_the_models_device_and_come_back(tiny_on):
    encoder = tiny_on("meta")
    seen = []
    encoder.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].device))
    with pytest.raises(NotImplementedError, match="meta"):  # the features' copy back to the CPU: a meta tensor has
        encoder.encode([Image.new("RGB", (40, 30), (200, 30, 30))])  # no data to copy, a GPU's would
    assert seen == [torch.device("meta")]


def test_on_the_cpu_the_entity_vectors_are_those_of_the_whole_model(tiny_on):
    """CPU behaviour unchanged: batches of the cache's build equal open_clip's own encode_text, on the CPU."""
    clip = tiny_on("cpu").clip
    texts = ["a photo of Moon.", "a photo of Grace Hopper, American computer scientist.", "x " * 200]
    with torch.no_grad():
        whole = clip.model.encode_text(clip.tokenizer(texts), normalize=True)
    vectors = clip_mod.encode_texts(clip, texts, batch_size=2)
    assert vectors.dtype.name == "float32" and torch.allclose(torch.from_numpy(vectors), whole, atol=1e-6)


def test_an_open_clip_tag_is_not_read_as_a_folder_beside_the_profile(tmp_path, monkeypatch):
    """``weights = "openai"`` with a folder ``openai/`` beside the profile is still the tag (the loader reads a local
    path only when it is a file): here, with nothing in the hub cache, the tag's download is what fails."""
    from gemel.models.vision import HubModelError

    (tmp_path / "openai").mkdir()
    config = VisionConfig(kind="open_clip", name="ViT-B-32-quickgelu", weights="openai", image_size=224, crop_pct=1.0,
                          mean=tuple(OPENAI_MEAN), std=tuple(OPENAI_STD))
    with offline_hub_env(tmp_path / "empty-hub", monkeypatch):
        with pytest.raises(HubModelError, match=r"Failed to download weights for tag 'openai'"):
            VisionEncoder.load(config, base_dir=tmp_path)
