"""Tests for gemel/models/vision.py: lukemelas -> timm renaming, preprocessing, the open_clip tower without `proj`.

Unit tests use random timm weights and the tiny open_clip config of conftest; the one ``offline_model`` test
loads the real EfficientNet-Lite0 weights and checks they classify two scikit-image photos correctly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from gemel.config import VisionConfig
from gemel.models.vision import _DS_BLOCK, _IR_BLOCK, _STEM_HEAD, VisionEncoder, lukemelas_to_timm

LITE0 = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def lite0():
    import timm

    torch.manual_seed(0)
    return timm.create_model(LITE0, pretrained=False).eval()


def to_lukemelas(state: dict[str, torch.Tensor], stage_sizes: list[int]) -> dict[str, torch.Tensor]:
    """The inverse of lukemelas_to_timm, written independently from the tables: timm names -> EfficientNet-PyTorch."""
    starts = np.cumsum([0, *stage_sizes])
    stem = {v: k for k, v in _STEM_HEAD.items()}
    ds, ir = {v: k for k, v in _DS_BLOCK.items()}, {v: k for k, v in _IR_BLOCK.items()}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            stage, j = int(parts[1]), int(parts[2])
            table = ds if stage == 0 else ir
            out[".".join(["_blocks", str(starts[stage] + j), table[parts[3]], *parts[4:]])] = value
        else:
            out[".".join([stem[parts[0]], *parts[1:]])] = value
    return out


def stage_sizes(model) -> list[int]:
    return [len(stage) for stage in model.blocks]


# ---- lukemelas_to_timm ------------------------------------------------------------------------------
def test_lukemelas_names_map_back_to_a_strict_timm_load(lite0):
    state = lite0.state_dict()
    luke = to_lukemelas(state, stage_sizes(lite0))
    assert all(k.startswith(("_conv_stem", "_bn0", "_blocks.", "_conv_head", "_bn1", "_fc")) for k in luke)
    assert len(luke) == len(state)
    renamed = lukemelas_to_timm(luke, stage_sizes(lite0))
    assert renamed.keys() == state.keys()
    assert all(renamed[k] is state[k] for k in state)  # one-to-one: every tensor lands on its own name
    lite0.load_state_dict(renamed, strict=True)  # no missing, unexpected or mis-shaped key


def test_flat_block_indices_follow_the_stage_sizes():
    t = torch.zeros(1)
    luke = {"_blocks.0._depthwise_conv.weight": t, "_blocks.1._expand_conv.weight": t,
            "_blocks.2._project_conv.weight": t, "_blocks.3._bn2.bias": t, "_fc.weight": t}
    assert set(lukemelas_to_timm(luke, [1, 2, 1])) == {
        "blocks.0.0.conv_dw.weight", "blocks.1.0.conv_pw.weight", "blocks.1.1.conv_pwl.weight",
        "blocks.2.0.bn3.bias", "classifier.weight"}


def test_timm_encoder_loads_a_lukemelas_checkpoint_file(lite0, tmp_path):
    path = tmp_path / "lite0.pth"
    torch.save(to_lukemelas(lite0.state_dict(), stage_sizes(lite0)), path)
    enc = VisionEncoder.load(VisionConfig(kind="timm", name=LITE0, weights=str(path), image_size=64))
    assert enc.dim == 1280
    im = Image.new("RGB", (80, 60), (10, 120, 240))
    x = enc.preprocess(im)[None]
    with torch.no_grad():
        want = lite0.forward_head(lite0.forward_features(x), pre_logits=True)
    assert torch.allclose(enc.encode([im]), want, atol=1e-5)
    assert not any(p.requires_grad for p in enc.parameters())  # frozen


def test_timm_weights_must_be_a_local_file():
    with pytest.raises(ValueError, match=r"vision.weights 'org/weights': give a local file"):
        VisionEncoder.load(VisionConfig(kind="timm", name=LITE0, weights="org/weights"))


def test_kind_none_has_no_encoder():
    with pytest.raises(ValueError, match=r"vision.kind 'none' has no encoder"):
        VisionEncoder.load(VisionConfig(kind="none"))


# ---- preprocessing ----------------------------------------------------------------------------------
class _Identity(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)


def encoder(**cfg) -> VisionEncoder:
    return VisionEncoder(_Identity(), VisionConfig(**cfg), dim=0)


@pytest.mark.parametrize("size", [(5, 3), (32, 32), (300, 40), (40, 300), (1000, 999)])
def test_preprocess_gives_a_square_of_the_configured_side(size):
    enc = encoder(image_size=24, crop_pct=0.875)
    x = enc.preprocess(Image.new("RGB", size, (0, 0, 0)))
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32


@pytest.mark.parametrize("mean,std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                      ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
def test_preprocess_normalises_per_channel(mean, std):
    enc = encoder(image_size=16, mean=mean, std=std)
    rgb = (255, 128, 0)
    x = enc.preprocess(Image.new("RGB", (20, 30), rgb))
    for c in range(3):
        want = (rgb[c] / 255 - mean[c]) / std[c]
        assert torch.allclose(x[c], torch.full((16, 16), want), atol=1e-5)


def test_preprocess_keeps_the_aspect_ratio_and_crops_the_centre():
    im = Image.new("RGB", (300, 100), (255, 0, 0))  # red | green | blue thirds
    im.paste((0, 255, 0), (100, 0, 200, 100))
    im.paste((0, 0, 255), (200, 0, 300, 100))
    x = encoder(image_size=32, crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1)).preprocess(im)
    assert torch.allclose(x[:, 4:28, 4:28].mean(dim=(1, 2)), torch.tensor([0.0, 1.0, 0.0]), atol=0.02)


def test_crop_pct_zooms_in():
    im = Image.new("RGB", (100, 100), (0, 0, 0))
    im.paste((255, 255, 255), (10, 10, 90, 90))  # a white square with a black border of 10 %
    whole = encoder(image_size=50, crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1)).preprocess(im)
    zoomed = encoder(image_size=50, crop_pct=0.5, mean=(0, 0, 0), std=(1, 1, 1)).preprocess(im)
    assert whole[0, 0, 0] < 0.1  # the border is in the full view
    assert zoomed.min() > 0.9  # the centre half is all white


def test_preprocess_accepts_any_mode():
    enc = encoder(image_size=8)
    assert enc.preprocess(Image.new("L", (10, 10), 128)).shape == (3, 8, 8)
    assert enc.preprocess(Image.new("RGBA", (10, 10))).shape == (3, 8, 8)


# ---- open_clip tower --------------------------------------------------------------------------------
def test_open_clip_tower_has_no_projection(tiny_config):
    import open_clip

    enc = VisionEncoder.load(tiny_config.vision, tiny_config.base_dir)
    width = 16  # conftest's tiny-vit: width 16, embed_dim 8
    assert enc.model.proj is None
    assert enc.dim == width == enc.model.output_dim
    assert open_clip.create_model(tiny_config.vision.name).visual.output_dim == 8  # with the projection
    images = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (30, 50), (0, 0, 255))]
    feats = enc.encode(images)
    assert feats.shape == (2, width) and feats.dtype == torch.float32
    assert not torch.allclose(feats[0], feats[1])
    assert enc.encode([]).shape == (0, width)


def test_open_clip_feature_is_the_one_before_the_projection(tiny_config):
    import open_clip

    torch.manual_seed(0)
    full = open_clip.create_model(tiny_config.vision.name).visual.eval()
    proj = full.proj.detach().clone()
    torch.manual_seed(0)
    enc = VisionEncoder.load(tiny_config.vision, tiny_config.base_dir)  # same seed, same random weights
    im = Image.new("RGB", (32, 32), (90, 160, 20))
    x = enc.preprocess(im)[None]
    with torch.no_grad():
        assert torch.allclose(enc.encode([im]) @ proj, full(x), atol=1e-5)


def test_encode_is_deterministic_and_batch_independent(tiny_config):
    enc = VisionEncoder.load(tiny_config.vision, tiny_config.base_dir)
    a, b = Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (30, 50), (0, 0, 255))
    both = enc.encode([a, b])
    assert torch.allclose(both[0], enc.encode([a])[0], atol=1e-5)
    assert torch.allclose(both[1], enc.encode([b])[0], atol=1e-5)


# ---- the real offline weights -----------------------------------------------------------------------
@pytest.mark.offline_model
def test_offline_weights_are_really_pretrained():
    from skimage import data

    from gemel.config import load_profile
    from gemel.sources import resolve

    cfg = load_profile("offline")
    real = torch.load(resolve(cfg.vision.weights, cfg.base_dir), map_location="cpu", weights_only=True)
    enc = VisionEncoder.load(cfg.vision, cfg.base_dir)  # strict load of the renamed file
    assert set(real) == set(to_lukemelas(enc.model.inner.state_dict(), stage_sizes(enc.model.inner)))
    cat = enc.classify(Image.fromarray(data.chelsea()))[0]
    coffee = enc.classify(Image.fromarray(data.coffee()))[0]
    assert cat.argmax().item() in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    assert coffee.argmax().item() == 967  # espresso
    assert enc.encode([Image.fromarray(data.chelsea())]).shape == (1, 1280)
    assert dataclasses.asdict(cfg.vision)["image_size"] == 224
