"""Tests for gemel/models/embedder.py: the transformers-only encoder computes what sentence-transformers computes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gemel.config import EmbedderConfig
from gemel.models.embedder import MeanPooledEncoder, TextEmbedder

TEXTS = ["a", "grace hopper | grace hopper at her desk", "apple", "the kiwi is a bird of new zealand " * 40,
         "orange and lemon", "b c d"]  # one longer than max_seq_length, lengths mixed across batches


def test_mean_pooled_encoder_matches_sentence_transformers(tiny_dir):
    from sentence_transformers import SentenceTransformer

    folder = tiny_dir / "tiny-st"
    assert MeanPooledEncoder.fits(folder)
    lean = TextEmbedder.load(EmbedderConfig(source=str(folder), batch_size=4))
    assert isinstance(lean.model, MeanPooledEncoder)
    reference = TextEmbedder(SentenceTransformer(str(folder), device="cpu"), lean.config, lean.name)
    assert lean.dim == reference.dim
    for texts in (TEXTS, TEXTS[:1]):
        got, want = lean.encode(texts), reference.encode(texts)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_a_bulk_encode_hands_back_each_batch_and_a_single_batch_does_not(tiny_dir, monkeypatch):
    from gemel.models import embedder

    lean = TextEmbedder.load(EmbedderConfig(source=str(tiny_dir / "tiny-st"), batch_size=4))
    trimmed = lean.encode(TEXTS)  # with the real malloc_trim after each batch
    calls = []
    monkeypatch.setattr(embedder, "trim_heap", lambda: calls.append(1) or True)
    untrimmed = lean.encode(TEXTS)  # 6 texts in batches of 4: 2 batches
    assert len(calls) == 2
    np.testing.assert_array_equal(trimmed, untrimmed)  # handing memory back changes no number
    calls.clear()
    lean.encode(TEXTS[:3])  # one batch (a link's query): nothing to hand back, no cost
    assert calls == []


def _copy_with(tiny_dir: Path, tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    shutil.copytree(tiny_dir / "tiny-st", folder)
    edit(folder)
    return folder


def _pooling(folder: Path, mode: str) -> None:
    pooling = next(m["path"] for m in json.loads((folder / "modules.json").read_text()) if "Pooling" in m["type"])
    cfg_path = folder / pooling / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg = {k: (k == f"pooling_mode_{mode}") if k.startswith("pooling_mode_") else v for k, v in cfg.items()}
    if "pooling_mode" in cfg:  # sentence-transformers >= 6 writes one "pooling_mode" key
        cfg["pooling_mode"] = mode.removesuffix("_token")
    cfg_path.write_text(json.dumps(cfg))


def _prompts(folder: Path) -> None:
    path = folder / "config_sentence_transformers.json"
    cfg = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**cfg, "prompts": {"query": "query: "}, "default_prompt_name": "query"}))


def _lower_case(folder: Path) -> None:
    path = folder / "sentence_bert_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "do_lower_case": True}))


@pytest.mark.parametrize("name,edit", [("cls", lambda f: _pooling(f, "cls_token")), ("prompts", _prompts),
                                       ("lower-case", _lower_case),
                                       ("no-modules", lambda f: (f / "modules.json").unlink())])
def test_other_layouts_are_left_to_sentence_transformers(tiny_dir, tmp_path, name, edit):
    assert not MeanPooledEncoder.fits(_copy_with(tiny_dir, tmp_path, name, edit))
