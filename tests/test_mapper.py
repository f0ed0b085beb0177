"""Tests for gemel/models/mapper.py: shapes, checkpoints that carry their spec, official .pkl files, safe loading."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from gemel.models.mapper import FeatureMapper, MapperMismatchError, MapperSpec, check_compatible

SPEC = MapperSpec(vision="tiny-vit", vision_dim=6, llm="tiny-llm", hidden_size=5, prefix_length=3)


def _touch(path: str) -> None:  # what a malicious pickle would run on load
    Path(path).write_text("pwned")


class Payload:
    """Unpickling this calls _touch: torch.load(weights_only=True) must refuse it before that happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def outputs(mapper: FeatureMapper, seed: int = 1) -> torch.Tensor:
    x = torch.randn(4, mapper.spec.vision_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return mapper(x)


# ---- the module -------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 4])
def test_output_shape_is_batch_k_hidden(batch):
    out = FeatureMapper(SPEC)(torch.randn(batch, 6))
    assert out.shape == (batch, 3, 5)


def test_input_dtype_is_cast_to_the_weights():
    mapper = FeatureMapper(SPEC)
    x = torch.randn(2, 6, dtype=torch.float64)
    assert torch.allclose(mapper(x), mapper(x.float()))
    assert mapper(x).dtype == torch.float32


def test_each_prefix_slot_is_its_own_slice_of_the_linear():
    mapper = FeatureMapper(SPEC)
    x = torch.randn(2, 6)
    flat = mapper.linear(x)  # (B, k*H)
    out = mapper(x)
    for j in range(SPEC.prefix_length):
        assert torch.equal(out[:, j], flat[:, j * 5:(j + 1) * 5])


def test_trainable_parameters_are_the_linear_only():
    assert FeatureMapper(SPEC).trainable_parameters == 6 * 15 + 15


def test_scaled_init_is_seeded_and_matches_the_llm_scale():
    spec = dataclasses.replace(SPEC, vision_dim=512, hidden_size=64)
    a, b, c = (FeatureMapper(spec, init_std=0.3, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.linear.weight, b.linear.weight)
    assert not torch.equal(a.linear.weight, c.linear.weight)
    assert torch.count_nonzero(a.linear.bias) == 0
    x = torch.randn(64, 512)  # unit-RMS features
    with torch.no_grad():
        assert a(x).std().item() == pytest.approx(0.3, rel=0.1)  # the embeddings' own scale


@pytest.mark.parametrize("field", ["vision_dim", "hidden_size", "prefix_length"])
def test_spec_refuses_non_positive_sizes(field):
    with pytest.raises(ValueError, match=f"mapper {field}=0 must be >= 1"):
        dataclasses.replace(SPEC, **{field: 0})


# ---- our checkpoints --------------------------------------------------------------------------------
def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    mapper = FeatureMapper(SPEC, init_std=0.5, seed=3)
    version = mapper.save(tmp_path / "m.pt", extra={"epochs": 2})
    assert re.fullmatch(r"mapper-[0-9a-f]{12}", version) and mapper.version == version
    loaded = FeatureMapper.load(tmp_path / "m.pt", expected=SPEC)
    assert loaded.version == version
    assert loaded.spec == SPEC
    assert torch.equal(outputs(loaded), outputs(mapper))
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert blob["extra"] == {"epochs": 2} and blob["format"] == "gemel-mapper/1"


def test_version_is_a_content_hash(tmp_path):
    a = FeatureMapper(SPEC, init_std=0.5, seed=3)
    same = FeatureMapper(SPEC, init_std=0.5, seed=3)
    other = FeatureMapper(SPEC, init_std=0.5, seed=4)
    va, vs, vo = a.save(tmp_path / "a.pt"), same.save(tmp_path / "s.pt"), other.save(tmp_path / "o.pt")
    assert va == vs != vo
    with torch.no_grad():
        a.linear.bias[0] += 1e-3
    assert a.save(tmp_path / "a2.pt") != va


def test_load_without_expected_spec_takes_the_checkpoints(tmp_path):
    FeatureMapper(SPEC).save(tmp_path / "m.pt")
    assert FeatureMapper.load(str(tmp_path / "m.pt")).spec == SPEC


@pytest.mark.parametrize("changes,named", [
    ({"vision_dim": 7}, ["vision_dim: checkpoint 6 vs profile 7"]),
    ({"prefix_length": 4}, ["prefix_length: checkpoint 3 vs profile 4"]),
    ({"llm": "other-llm", "hidden_size": 8},
     ["llm: checkpoint 'tiny-llm' vs profile 'other-llm'", "hidden_size: checkpoint 5 vs profile 8"]),
    ({"vision": "ViT-L-14"}, ["vision: checkpoint 'tiny-vit' vs profile 'ViT-L-14'"]),
])
def test_load_into_a_mismatched_profile_names_every_differing_field(tmp_path, changes, named):
    FeatureMapper(SPEC).save(tmp_path / "m.pt")
    with pytest.raises(MapperMismatchError) as info:
        FeatureMapper.load(tmp_path / "m.pt", expected=dataclasses.replace(SPEC, **changes))
    msg = str(info.value)
    for part in named:
        assert part in msg
    for field in {"vision", "vision_dim", "llm", "hidden_size", "prefix_length"} - set(changes):
        assert f"{field}: checkpoint" not in msg
    assert "gemel train" in msg and "m.pt" in msg


def test_check_compatible_accepts_equal_specs_and_ignores_the_tokenizer_label():
    check_compatible(SPEC, dataclasses.replace(SPEC, tokenizer="renamed"), "x")


def test_load_of_a_bare_linear_state_dict_points_to_load_official(tmp_path):
    torch.save(torch.nn.Linear(6, 15).state_dict(), tmp_path / "official.pkl")
    with pytest.raises(MapperMismatchError, match=r"bare nn.Linear state dict.*FeatureMapper.load_official"):
        FeatureMapper.load(tmp_path / "official.pkl", expected=SPEC)


@pytest.mark.parametrize("blob", [{"format": "other/1"}, [1, 2], {"weight": torch.zeros(2)}])
def test_load_of_another_checkpoint_is_refused(tmp_path, blob):
    torch.save(blob, tmp_path / "x.pt")
    with pytest.raises(MapperMismatchError, match="is not a GEMEL Studio mapper checkpoint"):
        FeatureMapper.load(tmp_path / "x.pt")


def test_load_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mapper checkpoint '.*nope\.pt' does not exist"):
        FeatureMapper.load(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FeatureMapper.load_official(tmp_path / "nope.pkl", SPEC)


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint"])
def test_load_of_a_file_that_is_no_checkpoint(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(MapperMismatchError, match="is not a readable torch checkpoint"):
        FeatureMapper.load(tmp_path / "x.pt")


# ---- official checkpoints ---------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "module.", "mapper.linear."])
def test_load_official_reads_a_linear_state_dict_with_any_key_prefix(tmp_path, prefix):
    linear = torch.nn.Linear(6, 15)
    torch.save({prefix + k: v for k, v in linear.state_dict().items()}, tmp_path / "official.pkl")
    mapper = FeatureMapper.load_official(tmp_path / "official.pkl", SPEC)
    assert re.fullmatch(r"official-[0-9a-f]{12}", mapper.version)
    x = torch.randn(2, 6)
    with torch.no_grad():
        assert torch.equal(mapper(x), linear(x).view(2, 3, 5))


def test_load_official_refuses_the_wrong_shape_and_names_the_paper_profile(tmp_path):
    torch.save(torch.nn.Linear(6, 20).state_dict(), tmp_path / "official.pkl")
    with pytest.raises(MapperMismatchError) as info:
        FeatureMapper.load_official(tmp_path / "official.pkl", SPEC)
    msg = str(info.value)
    assert "weight shape (20, 6)" in msg and "6 -> 3 x 5" in msg
    assert "'paper' profile" in msg and "1024" in msg and "4096" in msg


@pytest.mark.parametrize("blob,found", [
    ({"a": torch.zeros(1), "b": torch.zeros(1), "c": torch.zeros(1)}, "keys: ['a', 'b', 'c']"),
    ([torch.zeros(1)], "a list"),
    (torch.zeros(3), "a Tensor"),
])
def test_load_official_refuses_what_is_not_a_linear(tmp_path, blob, found):
    torch.save(blob, tmp_path / "x.pkl")
    with pytest.raises(MapperMismatchError, match=re.escape(f"is not an nn.Linear state dict ({found}")):
        FeatureMapper.load_official(tmp_path / "x.pkl", SPEC)


# ---- safe loading -----------------------------------------------------------------------------------
@pytest.mark.parametrize("loader", ["load", "load_official"])
def test_a_pickle_with_arbitrary_objects_is_refused_and_runs_nothing(tmp_path, loader):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pkl"
    torch.save({"weight": torch.zeros(15, 6), "bias": Payload(marker)}, path)
    with pytest.raises(MapperMismatchError, match="weights_only=True, so a pickle cannot run code"):
        if loader == "load":
            FeatureMapper.load(path)
        else:
            FeatureMapper.load_official(path, SPEC)
    assert not marker.exists()


def test_the_payload_would_run_without_weights_only(tmp_path):
    """Guards the test above: the payload is real, so its refusal means something."""
    marker = tmp_path / "marker.txt"
    torch.save({"bias": Payload(marker)}, tmp_path / "evil.pkl")
    torch.load(tmp_path / "evil.pkl", weights_only=False)
    assert marker.read_text() == "pwned"
